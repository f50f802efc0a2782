package labtest

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/ispbalance/ispbalance/internal/lab"
	"github.com/ispbalance/ispbalance/internal/monitor"
)

// monitorConf probes the internet server through every ISP, so a silent
// upstream failure is seen, not only a dead gateway.
func monitorConf(weights ...int) string {
	var b strings.Builder
	for i, w := range weights {
		fmt.Fprintf(&b, "ISP%d wan%d isp 203.0.113.10 %d\n", i+1, i+1, w)
	}
	b.WriteString("LAN lan1 lan\n")
	return b.String()
}

// startMonitor runs `ifup-balance monitor` in the router namespace until
// the test ends, and waits until it has rebuilt and started probing.
func (r *router) startMonitor(extra ...string) {
	r.t.Helper()
	logPath := filepath.Join(r.dir, "monitor.log")
	logf, err := os.Create(logPath)
	if err != nil {
		r.t.Fatal(err)
	}
	args := append([]string{"netns", "exec", r.lab.NS("router"), binary, "-c", r.conf, "--state-dir", r.stateDir, "--run-dir", r.runDir()}, extra...)
	cmd := exec.Command("ip", append(args, "monitor")...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	r.t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			r.t.Errorf("monitor did not stop on SIGTERM")
		}
		logf.Close()
		if r.t.Failed() {
			log, _ := os.ReadFile(logPath)
			r.t.Logf("monitor log:\n%s", log)
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(filepath.Join(r.runDir(), "monitor.json")); err == nil {
			return
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(logPath)
			r.t.Fatalf("monitor exited: %v\n%s", err, log)
		case <-time.After(50 * time.Millisecond):
		}
	}
	r.t.Fatal("monitor did not publish its status within 5 s")
}

// waitState waits until the state file of service says want.
func (r *router) waitState(service, want string, limit time.Duration) time.Duration {
	r.t.Helper()
	start := time.Now()
	for time.Since(start) < limit {
		data, _ := os.ReadFile(filepath.Join(r.stateDir, service+".state"))
		if strings.TrimSpace(string(data)) == want {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.t.Fatalf("%s did not become %s within %v", service, want, limit)
	return 0
}

// waitMonitor waits until the monitor itself (not a state file written
// by the first rebuild) reports service in state want.
func (r *router) waitMonitor(service, want string, limit time.Duration) {
	r.t.Helper()
	for start := time.Now(); time.Since(start) < limit; time.Sleep(100 * time.Millisecond) {
		snap, err := monitor.ReadSnapshot(filepath.Join(r.runDir(), "monitor.json"))
		if err != nil {
			continue
		}
		for _, is := range snap.ISPs {
			if is.Service == service && is.State == want {
				return
			}
		}
	}
	r.t.Fatalf("the monitor did not report %s %s within %v", service, want, limit)
}

// allVia waits until n connections in a row leave via ISP k, and returns
// how long after start the first of them began.
func (r *router) allVia(k, n int, start time.Time, limit time.Duration) time.Duration {
	r.t.Helper()
	took, err := r.lab.FirstStreak(1, serverPort, n, func(isp int) bool { return isp == k }, start, limit, 250*time.Millisecond)
	if err != nil {
		r.t.Fatalf("connections via ISP%d: %v", k, err)
	}
	return took
}

// TestMonitorSilentFailure: ISP1's upstream drops everything while its
// carrier stays up; new connections succeed via ISP2 within 2 s (the
// original: 8.5 s). The figure is logged; the assertion allows three times the
// target so a loaded machine does not make the test flaky (tools/bench
// reports the figure against the target).
func TestMonitorSilentFailure(t *testing.T) {
	t.Parallel()
	r := newRouter(t, lab.Options{Prefix: "msil"}, monitorConf(1, 1))
	r.startServer()
	r.startMonitor()
	r.waitMonitor("ISP1", "up", 10*time.Second)
	r.waitMonitor("ISP2", "up", 10*time.Second)
	undo, err := r.lab.SilentDrop(1)
	if err != nil {
		t.Fatal(err)
	}
	fault := time.Now()
	took := r.allVia(2, 10, fault, 6*time.Second)
	t.Logf("silent failure: new connections all via ISP2 %.2f s after the fault (target 2 s)", took.Seconds())
	r.waitState("ISP1", "down", time.Second)
	// Recovery after a 25 s outage: ISP1 carries connections again within 5 s (20 s allowed).
	time.Sleep(25*time.Second - time.Since(fault))
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	repaired := time.Now()
	back := r.waitState("ISP1", "up", 20*time.Second)
	for i := 0; ; i++ {
		k, err := r.lab.WhichISP(1, serverPort, time.Second)
		if err == nil && k == 1 {
			break
		}
		if time.Since(repaired) > 20*time.Second {
			t.Fatalf("ISP1 carries no new connection 20 s after the repair")
		}
	}
	t.Logf("recovery: ISP1 up %.2f s after the repair, carrying connections %.2f s after (target 5 s)", back.Seconds(), time.Since(repaired).Seconds())
}

// TestMonitorCarrierLoss: ISP1 loses carrier; new connections succeed via
// ISP2 within 0.5 s (the original: 7.8 s).
func TestMonitorCarrierLoss(t *testing.T) {
	t.Parallel()
	r := newRouter(t, lab.Options{Prefix: "mcar"}, monitorConf(1, 1))
	r.startServer()
	r.startMonitor()
	r.waitMonitor("ISP1", "up", 10*time.Second)
	undo, err := r.lab.CarrierDown(1)
	if err != nil {
		t.Fatal(err)
	}
	fault := time.Now()
	took := r.allVia(2, 10, fault, 2*time.Second)
	t.Logf("carrier loss: new connections all via ISP2 %.3f s after the fault (target 0.5 s)", took.Seconds())
	if took > time.Second {
		t.Errorf("failover after carrier loss took %v, want at most 0.5 s (1 s allowed)", took)
	}
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	r.allVia(1, 1, time.Now(), 20*time.Second)
}

// TestMonitorRandomLoss: 10 % random loss for 60 s causes no down event;
// 70 % loss does.
func TestMonitorRandomLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("60 s of probing")
	}
	t.Parallel()
	r := newRouter(t, lab.Options{Prefix: "mloss"}, monitorConf(1, 1))
	r.startMonitor()
	r.waitMonitor("ISP1", "up", 10*time.Second)
	undo, err := r.lab.RandomLoss(1, 0.10)
	if err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(60 * time.Second)
	for time.Now().Before(end) {
		data, _ := os.ReadFile(filepath.Join(r.stateDir, "ISP1.state"))
		if strings.TrimSpace(string(data)) != "up" {
			t.Fatalf("10 %% loss brought ISP1 %s", data)
		}
		time.Sleep(100 * time.Millisecond)
	}
	undo()
	if _, err := r.lab.RandomLoss(1, 0.70); err != nil {
		t.Fatal(err)
	}
	took := r.waitState("ISP1", "down", 30*time.Second)
	t.Logf("70 %% loss: ISP1 down after %.1f s", took.Seconds())
}

// TestMonitorFlushesDeadConnections: after ISP1 goes down, a LAN
// connection that was on ISP1 is gone from the connection table, and one
// on ISP2 is still there and still flowing.
func TestMonitorFlushesDeadConnections(t *testing.T) {
	t.Parallel()
	r := newRouter(t, lab.Options{Prefix: "mct"}, monitorConf(1, 1))
	r.startServer()
	r.startMonitor()
	r.waitMonitor("ISP1", "up", 10*time.Second)
	conns := map[int]*bufio.ReadWriter{}
	ports := map[int]string{}
	for tries := 0; len(conns) < 2 && tries < 100; tries++ {
		c, err := r.lab.DialTCP("lan1", netip.AddrPortFrom(r.lab.ServerAddr(), serverPort), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		rw := bufio.NewReadWriter(bufio.NewReader(c), bufio.NewWriter(c))
		line, err := rw.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		k := r.lab.ISPForAddr(netip.MustParseAddr(strings.TrimSpace(line)))
		if _, have := conns[k]; have {
			c.Close()
			continue
		}
		t.Cleanup(func() { c.Close() })
		conns[k] = rw
		ports[k] = strconv.Itoa(int(netip.MustParseAddrPort(c.LocalAddr().String()).Port()))
	}
	if len(conns) != 2 {
		t.Fatalf("could not get a connection on each ISP")
	}
	tracked := func(k int) bool {
		out, _ := r.lab.Exec("router", "conntrack", "-L", "-p", "tcp", "--sport", ports[k])
		return strings.Contains(string(out), "sport="+ports[k])
	}
	if !tracked(1) || !tracked(2) {
		t.Fatalf("connections not tracked before the fault")
	}
	if _, err := r.lab.SilentDrop(1); err != nil {
		t.Fatal(err)
	}
	r.waitState("ISP1", "down", 10*time.Second)
	time.Sleep(200 * time.Millisecond)
	if tracked(1) {
		t.Errorf("the connection on dead ISP1 is still tracked")
	}
	if !tracked(2) {
		t.Errorf("the connection on healthy ISP2 was flushed too")
	}
	rw := conns[2]
	rw.WriteString("still there?\n")
	rw.Flush()
	if echo, err := rw.ReadString('\n'); err != nil || echo != "still there?\n" {
		t.Errorf("the connection on ISP2 stopped flowing: %q, %v", echo, err)
	}
}

// TestMonitorThreeISPsOneCut: with three ISPs 2:1:1 and ISP1 cut, ISP2 and
// ISP3 keep sharing by weight.
func TestMonitorThreeISPsOneCut(t *testing.T) {
	t.Parallel()
	r := newRouter(t, lab.Options{Prefix: "m3", ISPs: 3}, monitorConf(2, 1, 1))
	r.startServer()
	r.startMonitor()
	for k := 1; k <= 3; k++ {
		r.waitMonitor("ISP"+itoa(k), "up", 10*time.Second)
	}
	if _, err := r.lab.SilentDrop(1); err != nil {
		t.Fatal(err)
	}
	r.waitState("ISP1", "down", 10*time.Second)
	counts := r.shares(1, 600)
	t.Logf("after cutting ISP1: %v", counts)
	if counts[1] != 0 {
		t.Errorf("%d connections went to the cut ISP1", counts[1])
	}
	if share := float64(counts[2]) / 600; share < 0.44 || share > 0.56 {
		t.Errorf("ISP2 got %.1f %% of connections, want 50 %% ± 6", share*100)
	}
}

// TestMonitorEventScripts: an event script receives lsm's 16 arguments;
// a script that hangs does not delay failover.
func TestMonitorEventScripts(t *testing.T) {
	t.Parallel()
	r := newRouter(t, lab.Options{Prefix: "mev"}, monitorConf(1, 1))
	downD := filepath.Join(r.dir, "balance", "lsm", "down.d")
	os.MkdirAll(downD, 0o755)
	record := filepath.Join(r.dir, "args.txt")
	os.WriteFile(filepath.Join(downD, "00-hang"), []byte("#!/bin/sh\nsleep 600\n"), 0o755)
	os.WriteFile(filepath.Join(downD, "10-record"), []byte("#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done > "+record+".tmp && mv "+record+".tmp "+record+"\n"), 0o755)
	os.WriteFile(filepath.Join(downD, "20-record~"), []byte("#!/bin/sh\ntouch "+record+".leftover\n"), 0o755)
	r.startServer()
	r.startMonitor()
	r.waitMonitor("ISP1", "up", 10*time.Second)
	if _, err := r.lab.SilentDrop(1); err != nil {
		t.Fatal(err)
	}
	fault := time.Now()
	r.waitState("ISP1", "down", 10*time.Second)
	took := r.allVia(2, 5, fault, 6*time.Second)
	t.Logf("failover with a hanging event script: %.2f s", took.Seconds())
	var args []string
	for start := time.Now(); time.Since(start) < 5*time.Second; time.Sleep(50 * time.Millisecond) {
		if data, err := os.ReadFile(record); err == nil {
			args = strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
			break
		}
	}
	if len(args) != 16 {
		t.Fatalf("event script got %d arguments, want 16: %q", len(args), args)
	}
	for i, want := range map[int]string{0: "down", 1: "ISP1", 2: "203.0.113.10", 3: "wan1", 13: "100.64.1.2", 14: "up"} {
		if args[i] != want {
			t.Errorf("$%d = %q, want %q", i+1, args[i], want)
		}
	}
	ts, err := strconv.ParseInt(args[15], 10, 64)
	if err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
		t.Errorf("$16 = %q is not a plausible timestamp", args[15])
	}
	if _, err := os.Stat(record + ".leftover"); err == nil {
		t.Errorf("an editor leftover (name ending in ~) was run")
	}
}

// TestMonitorDeviceRecreated: ISP1's device is deleted and created again
// with a new address; the monitor probes it again and it returns to
// balancing, with no restart.
func TestMonitorDeviceRecreated(t *testing.T) {
	t.Parallel()
	r := newRouter(t, lab.Options{Prefix: "mre"}, monitorConf(1, 1))
	r.startServer()
	r.startMonitor()
	r.waitMonitor("ISP1", "up", 10*time.Second)
	r.sh("router", "ip", "link", "del", "wan1")
	r.waitState("ISP1", "down", 10*time.Second)
	// A new veth with the same names, ISP side first in the router, then
	// moved: the router side gets 100.64.1.3 this time.
	routerNS, err := netns.GetFromName(r.lab.NS("router"))
	if err != nil {
		t.Fatal(err)
	}
	defer routerNS.Close()
	ispNS, err := netns.GetFromName(r.lab.NS("isp1"))
	if err != nil {
		t.Fatal(err)
	}
	defer ispNS.Close()
	h, err := netlink.NewHandleAt(routerNS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "wan1"}, PeerName: "down0", PeerNamespace: netlink.NsFd(ispNS)}
	if err := h.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	r.sh("isp1", "ip", "addr", "add", "100.64.1.1/24", "dev", "down0")
	r.sh("isp1", "ip", "link", "set", "down0", "up")
	r.sh("router", "ip", "addr", "add", "100.64.1.3/24", "dev", "wan1")
	r.sh("router", "ip", "link", "set", "wan1", "up")
	r.waitState("ISP1", "up", 20*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		c, err := r.lab.DialTCP("lan1", netip.AddrPortFrom(r.lab.ServerAddr(), serverPort), time.Second)
		if err != nil {
			continue
		}
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if strings.TrimSpace(line) == "100.64.1.3" {
			return
		}
	}
	t.Fatalf("no connection left via the re-created ISP1 (100.64.1.3)")
}

// TestMonitorInstanceStatusAndReload: one monitor per router; -s shows
// what it sees; a bad configuration on SIGHUP keeps it running on the old
// one; -k stops it.
func TestMonitorInstanceStatusAndReload(t *testing.T) {
	t.Parallel()
	r := newRouter(t, lab.Options{Prefix: "minst"}, "ISP1 wan1 isp 203.0.113.10\nISP2 wan2 isp\nLAN lan1 lan\n")
	r.startMonitor()
	r.waitMonitor("ISP1", "up", 10*time.Second)
	r.waitMonitor("ISP2", "up", 10*time.Second)
	out, err := r.lab.Exec("router", binary, "-c", r.conf, "--state-dir", r.stateDir, "--run-dir", r.runDir(), "monitor")
	if err == nil || !strings.Contains(string(out), "a monitor already runs") {
		t.Errorf("a second monitor was not refused: %s, %v", out, err)
	}
	wants := []string{"Monitor: running", "203.0.113.10: reply in", "100.64.2.1: reply in", "warning: ISP2: probing the gateway only"}
	var st string
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		st = r.mustRun("-s")
		missing := ""
		for _, want := range wants {
			if !strings.Contains(st, want) {
				missing = want
			}
		}
		if missing == "" {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Errorf("status lacks %q after 5 s:\n%s", missing, st)
			break
		}
	}
	js := r.mustRun("-s", "--json")
	if !strings.Contains(js, `"loss_percent"`) || !strings.Contains(js, `"services"`) {
		t.Errorf("-s --json lacks fields:\n%s", js)
	}
	// SIGUSR1 logs everything about each connection, as lsm does.
	pidData0, _ := os.ReadFile(filepath.Join(r.runDir(), "monitor.pid"))
	pid0, _ := strconv.Atoi(strings.TrimSpace(string(pidData0)))
	syscall.Kill(pid0, syscall.SIGUSR1)
	time.Sleep(300 * time.Millisecond)
	if log, _ := os.ReadFile(filepath.Join(r.dir, "monitor.log")); !strings.Contains(string(log), "msg=connection component=monitor isp=ISP2") || !strings.Contains(string(log), "cons_miss=") {
		t.Errorf("SIGUSR1 did not log a per-connection dump:\n%s", log)
	}
	// A bad configuration on reload is reported; the monitor keeps going.
	r.writeConf("ISP1 wan1 isp 203.0.113.10\nISP2 wan2 isp\nLAN lan1 lan\nmax_packet_loss=lots\n")
	pidData, _ := os.ReadFile(filepath.Join(r.runDir(), "monitor.pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pidData)))
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	log, _ := os.ReadFile(filepath.Join(r.dir, "monitor.log"))
	if !strings.Contains(string(log), "configuration not reloaded") || !strings.Contains(string(log), ":4:") {
		t.Errorf("bad reload not reported with file:line:\n%s", log)
	}
	if !alive(pid) {
		t.Fatalf("monitor died on a bad reload")
	}
	if out, err := r.run("-k"); err != nil {
		t.Fatalf("-k: %v %s", err, out)
	}
	if alive(pid) {
		t.Errorf("monitor still runs after -k")
	}
}

// TestPlainRunStartsMonitor: `ifup-balance` with no service names makes
// sure a monitor runs (here, with no systemd managing it, a background
// process of its own); -d never starts one; -k stops it.
func TestPlainRunStartsMonitor(t *testing.T) {
	t.Parallel()
	r := newRouter(t, lab.Options{Prefix: "mstart"}, monitorConf(1, 1))
	common := []string{binary, "-c", r.conf, "--state-dir", r.stateDir, "--run-dir", r.runDir()}
	pidFile := filepath.Join(r.runDir(), "monitor.pid")
	if out, err := r.lab.Exec("router", append(common, "-d")...); err != nil {
		t.Fatalf("-d: %v\n%s", err, out)
	}
	if _, err := os.Stat(pidFile); err == nil {
		t.Fatalf("-d started a monitor")
	}
	if out, err := r.lab.Exec("router", common...); err != nil {
		t.Fatalf("plain run: %v\n%s", err, out)
	}
	t.Cleanup(func() { r.lab.Exec("router", append(common, "-k")...) })
	var pid int
	for start := time.Now(); time.Since(start) < 5*time.Second && pid == 0; time.Sleep(50 * time.Millisecond) {
		data, _ := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(data)))
	}
	if pid == 0 || !alive(pid) {
		t.Fatalf("no monitor runs after a plain run")
	}
	// A second plain run finds it running and starts no other.
	if out, err := r.lab.Exec("router", common...); err != nil {
		t.Fatalf("second plain run: %v\n%s", err, out)
	}
	if data, _ := os.ReadFile(pidFile); strings.TrimSpace(string(data)) != strconv.Itoa(pid) {
		t.Errorf("a second monitor replaced the first")
	}
	r.waitMonitor("ISP1", "up", 10*time.Second)
	if out, err := r.lab.Exec("router", append(common, "-k")...); err != nil {
		t.Fatalf("-k: %v\n%s", err, out)
	}
	if alive(pid) {
		t.Errorf("monitor pid %d still runs after -k", pid)
	}
	// stop also stops a running monitor, which would otherwise put the
	// balancing back at its next verdict.
	if out, err := r.lab.Exec("router", common...); err != nil {
		t.Fatalf("plain run: %v\n%s", err, out)
	}
	for start := time.Now(); time.Since(start) < 5*time.Second; time.Sleep(50 * time.Millisecond) {
		if data, _ := os.ReadFile(pidFile); strings.TrimSpace(string(data)) != strconv.Itoa(pid) && strings.TrimSpace(string(data)) != "" {
			break
		}
	}
	data, _ := os.ReadFile(pidFile)
	pid, _ = strconv.Atoi(strings.TrimSpace(string(data)))
	if out, err := r.lab.Exec("router", append(common, "stop")...); err != nil {
		t.Fatalf("stop: %v\n%s", err, out)
	}
	if alive(pid) {
		t.Errorf("monitor pid %d still runs after stop", pid)
	}
	if out := r.sh("router", "ip", "rule"); strings.Contains(out, "lookup 4200") {
		t.Errorf("rules left after stop:\n%s", out)
	}
}

// alive reports whether pid runs: a zombie (exited, not yet reaped by
// whichever process inherited it) does not count.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(stat)
	i := strings.LastIndex(s, ")")
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// TestMonitorLSMConfig: a foolsm configuration sets per-connection
// options by service name; an invalid one is refused with file:line.
func TestMonitorLSMConfig(t *testing.T) {
	t.Parallel()
	r := newRouter(t, lab.Options{Prefix: "mlsm"}, monitorConf(1, 1))
	lsmConf := filepath.Join(r.dir, "lsm.conf")
	os.WriteFile(lsmConf, []byte("defaults {\n  interval_ms=200\n  max_successive_pkts_lost=3\n  min_successive_pkts_rcvd=3\n  max_packet_loss=10\n  min_packet_loss=2\n}\nconnection {\n  name=ISP1\n  checkip=203.0.113.10\n}\n"), 0o644)
	r.startMonitor("--lsm-config", lsmConf)
	r.waitMonitor("ISP1", "up", 10*time.Second)
	if _, err := r.lab.SilentDrop(1); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r.waitState("ISP1", "down", 5*time.Second)
	t.Logf("with 3 successive losses at 200 ms, ISP1 down after %.2f s", time.Since(start).Seconds())
	bad := filepath.Join(r.dir, "bad-lsm.conf")
	os.WriteFile(bad, []byte("defaults {\n  interval_ms=fast\n}\n"), 0o644)
	out, err := r.lab.Exec("router", binary, "-c", r.conf, "--state-dir", r.stateDir, "--run-dir", filepath.Join(r.dir, "run2"), "--lsm-config", bad, "monitor")
	if err == nil || !strings.Contains(string(out), bad+":2:") {
		t.Errorf("bad foolsm configuration: %v\n%s", err, out)
	}
}

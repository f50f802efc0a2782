package labtest

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ispbalance/ispbalance/internal/lab"
)

// repairBound is the README's promise: what other software deletes of
// ispbalance's is back within 5 s while the monitor runs.
const repairBound = 5 * time.Second

// TestRepairOutsideInterference: with the monitor running and the LAN
// pinging every 10 ms, each kind of outside interference is undone within
// repairBound, to exactly the state before, and an established LAN
// connection survives them all.
func TestRepairOutsideInterference(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "heal"}, monitorConf(1, 1))
	r.startServer()
	r.startMonitor()
	r.waitMonitor("ISP1", "up", 10*time.Second)
	r.waitMonitor("ISP2", "up", 10*time.Second)
	steady := r.waitSteady()

	conn, err := r.lab.DialTCP("lan1", netip.AddrPortFrom(r.lab.ServerAddr(), serverPort), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rw := bufio.NewReadWriter(bufio.NewReader(conn), bufio.NewWriter(conn))
	if _, err := rw.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	ping, err := r.lab.StartPing("lan1", r.lab.ServerAddr(), 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}

	emptyFilter := "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
	cases := []struct {
		name string
		do   func()
	}{
		{"ip rule flush", func() {
			r.sh("router", "ip", "rule", "flush")
			// What the kernel starts with, as an admin would put back
			// (the flush keeps priority 0's rule itself).
			left := r.sh("router", "ip", "rule")
			for _, def := range []struct{ prio, table string }{{"0", "local"}, {"32766", "main"}, {"32767", "default"}} {
				if !strings.Contains(left, def.prio+":\tfrom all lookup "+def.table) {
					r.sh("router", "ip", "rule", "add", "priority", def.prio, "lookup", def.table)
				}
			}
		}},
		{"ip route flush table 4201", func() { r.sh("router", "ip", "route", "flush", "table", "4201") }},
		{"iptables -F; iptables -X", func() {
			r.sh("router", "iptables", "-F")
			r.sh("router", "iptables", "-X")
		}},
		{"the FORWARD jump deleted", func() { r.sh("router", "iptables", "-D", "FORWARD", "-j", "ISPB-FORWARD") }},
		{"iptables-restore of an empty ruleset", func() { r.shIn("router", emptyFilter, "iptables-restore") }},
		{"ip6tables -F", func() { r.sh("router", "ip6tables", "-F") }},
	}
	for _, c := range cases {
		repairs := r.repairsLogged()
		c.do()
		// The repair may be done before the test looks, so the monitor's
		// log is what proves the interference was real and seen.
		took, ok := r.waitKernel(steady, 2*repairBound, func() bool { return r.repairsLogged() > repairs })
		if !ok {
			t.Errorf("%s: not repaired within %v; now:\n%s\nwant:\n%s", c.name, 2*repairBound, r.kernelStateAll(), steady)
			continue
		}
		t.Logf("%s: repaired %.2f s after (bound %v)", c.name, took.Seconds(), repairBound)
		if took > repairBound {
			t.Errorf("%s: repaired after %v, want within %v", c.name, took, repairBound)
		}
	}
	sent, received, err := ping.Stop()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("LAN ping every 10 ms: %d sent, %d lost during the interference", sent, sent-received)
	// The established connection still carries data.
	fmt.Fprintf(rw, "still there\n")
	rw.Flush()
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	if line, err := rw.ReadString('\n'); err != nil || line != "still there\n" {
		t.Errorf("the established LAN connection did not survive the interference: %q %v", line, err)
	}
}

// kernelStateAll is kernelState with the IPv6 firewall.
func (r *router) kernelStateAll() string {
	r.t.Helper()
	return r.kernelState() + lab.StripCounters(r.sh("router", "ip6tables-save"))
}

// waitSteady waits until two snapshots of the kernel state a second apart
// agree (the monitor's first verdict rebuilds are done) and returns it.
func (r *router) waitSteady() string {
	r.t.Helper()
	prev := r.kernelStateAll()
	for start := time.Now(); time.Since(start) < 15*time.Second; {
		time.Sleep(time.Second)
		now := r.kernelStateAll()
		if now == prev && strings.Contains(now, "ISPB-FORWARD") {
			return now
		}
		prev = now
	}
	r.t.Fatal("the router's state did not settle")
	return ""
}

// repairsLogged counts the repairs the monitor has logged so far.
func (r *router) repairsLogged() int {
	data, _ := os.ReadFile(filepath.Join(r.dir, "monitor.log"))
	return strings.Count(string(data), "repairing what other software removed")
}

// waitKernel polls until the kernel state is want again and also holds.
func (r *router) waitKernel(want string, limit time.Duration, also func() bool) (time.Duration, bool) {
	start := time.Now()
	for time.Since(start) < limit {
		if also() && r.kernelStateAll() == want {
			return time.Since(start), true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return 0, false
}

// shIn runs a command in a lab namespace with input on its standard input.
func (r *router) shIn(ns, input string, args ...string) {
	r.t.Helper()
	out, err := r.lab.ExecInput(ns, input, args...)
	if err != nil {
		r.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

package labtest

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ispbalance/ispbalance/internal/lab"
)

// TestFailoverMode: everything leaves by the heaviest ISP; naming only the
// other ISP moves new connections to it.
func TestFailoverMode(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "fo"}, "mode=failover\nCABLE wan1 isp default 1\nDSL wan2 isp default 3\nLAN lan1 lan\n")
	r.startServer()
	r.mustRun()
	if c := r.shares(1, 50); c[2] != 50 {
		t.Errorf("failover with both up: connections per ISP %v, want all 50 via DSL (ISP 2)", c)
	}
	r.mustRun("CABLE")
	if c := r.shares(1, 50); c[1] != 50 {
		t.Errorf("after `ifup-balance CABLE`: connections per ISP %v, want all 50 via CABLE (ISP 1)", c)
	}
	r.mustRun("down", "CABLE")
	// With CABLE recorded down and DSL recorded down by the previous run,
	// nothing is judged up, but both have carrier: the last resort keeps
	// the LAN online through the failover choice, DSL, and says so.
	if c := r.shares(1, 20); c[2] != 20 {
		t.Errorf("every ISP judged down: connections per ISP %v, want all 20 via DSL as a last resort", c)
	}
	if st := r.mustRun("-s"); !strings.Contains(st, "LAST RESORT") {
		t.Errorf("status does not show the last resort:\n%s", st)
	}
	// last_resort=unreachable keeps the strict behaviour: the balance
	// table is empty.
	r.writeConf("last_resort=unreachable\nmode=failover\nCABLE wan1 isp default 1\nDSL wan2 isp default 3\nLAN lan1 lan\n")
	r.mustRun("down", "CABLE")
	if out := r.sh("router", "ip", "route", "show", "table", "4200"); strings.TrimSpace(out) != "" {
		t.Errorf("no ISP up and last_resort=unreachable, but the balance table has routes:\n%s", out)
	}
	if st := r.mustRun("-s"); strings.Contains(st, "LAST RESORT") {
		t.Errorf("status shows a last resort with last_resort=unreachable:\n%s", st)
	}
	r.mustRun("up", "DSL", "extra", "lsm", "args")
	if c := r.shares(1, 20); c[2] != 20 {
		t.Errorf("after `up DSL`: connections per ISP %v, want all via DSL", c)
	}
	st := r.mustRun("-s")
	for _, want := range []string{"CABLE", "down", "DSL", "up", "yes", "Firewall: installed"} {
		if !strings.Contains(st, want) {
			t.Errorf("status lacks %q:\n%s", want, st)
		}
	}
}

// TestHitlessRebuilds: an established connection keeps its ISP and keeps
// flowing across 20 rebuilds in which the other ISP goes down and up, and
// a ping every 2 ms through the router loses nothing.
func TestHitlessRebuilds(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "hit"}, ispConf(1, 1))
	r.startServer()
	r.mustRun()
	conn, err := r.lab.DialTCP("lan1", netip.AddrPortFrom(r.lab.ServerAddr(), serverPort), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rd := bufio.NewReader(conn)
	seen, err := rd.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	mine := r.lab.ISPForAddr(netip.MustParseAddr(strings.TrimSpace(seen)))
	other := 3 - mine
	ping, err := r.lab.StartPing("lan1", r.lab.ServerAddr(), 2*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		verdict := "down"
		if i%2 == 1 {
			verdict = "up"
		}
		r.mustRun(verdict, "ISP"+itoa(other))
		echoRound(t, conn, rd, i)
	}
	sent, received, err := ping.Stop()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ping stream over 20 rebuilds: %d sent, %d received", sent, received)
	if sent < 100 || sent != received {
		t.Errorf("ping stream lost %d of %d packets across rebuilds", sent-received, sent)
	}
	// The connection must still be on its ISP: conntrack's mark says so.
	ct := r.sh("router", "conntrack", "-L", "-p", "tcp", "--dport", itoa(serverPort), "-m", strconv.FormatUint(uint64(mine)<<24, 10)+"/0x3f000000")
	if !strings.Contains(ct, "ESTABLISHED") {
		t.Errorf("the established connection is not marked for ISP %d any more:\n%s", mine, ct)
	}
}

// TestInboundOnSecondISP: a connection from the internet to the router's
// ISP2 address is answered via ISP2 even though the router's own default
// prefers ISP1 (failover mode makes it prefer ISP1 for sure). The ISPs
// drop spoofed sources, so a reply out of ISP1 would be lost.
func TestInboundOnSecondISP(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "in"}, "mode=failover\nISP1 wan1 isp default 5\nISP2 wan2 isp default 1\nLAN lan1 lan\n")
	const sshPort, telnetPort = 22, 23
	r.listen("router", netip.AddrPortFrom(netip.IPv4Unspecified(), sshPort))
	r.listen("router", netip.AddrPortFrom(netip.IPv4Unspecified(), telnetPort))
	telnet := netip.AddrPortFrom(r.lab.RouterISPAddr(2), telnetPort)
	// Before ispbalance, with a route back through ISP2, the internet
	// reaches the port that is to be rejected.
	r.beforeBalancing(2, func() { r.answers("inet", telnet, "before ispbalance") })
	r.mustRun()
	// ssh is open from the internet; a listener on the router answers.
	for k := 1; k <= 2; k++ {
		if !r.reachable("inet", netip.AddrPortFrom(r.lab.RouterISPAddr(k), sshPort), settle) {
			t.Errorf("ssh port via ISP%d's address does not answer the internet", k)
		}
	}
	// Anything else is rejected, though it answers the LAN, and ssh
	// through the same address shows that the way back works.
	r.blocked("lan1", "inet", telnet, "port 23 on the router from the internet")
}

// TestFirewallFromOutside: from the internet nothing but ssh reaches the
// router, nothing reaches the LAN, and a second LAN outside the first
// LAN's forwarding group cannot be reached from it. Each listener first
// answers the same client before ispbalance, and an allowed one after.
func TestFirewallFromOutside(t *testing.T) {
	conf := "ISP1 wan1 isp\nISP2 wan2 isp\nLAN lan1 lan\nGUEST lan2 lan\n" +
		"forwarding_group=LAN :isp\nforwarding_group=GUEST :isp\n"
	r := newRouter(t, lab.Options{Prefix: "fw", LANs: 2}, conf)
	r.startServer()
	lanHost := netip.AddrPortFrom(r.lab.LANHost(1), 8000)
	routerWeb := netip.AddrPortFrom(r.lab.RouterISPAddr(1), 80)
	r.listen("lan1", netip.AddrPortFrom(netip.IPv4Unspecified(), lanHost.Port()))
	r.listen("router", netip.AddrPortFrom(netip.IPv4Unspecified(), routerWeb.Port()))
	// The internet host gets a route to the LAN host, and ISP1 routes it.
	r.routeLANFromInternet(1)
	r.beforeBalancing(1, func() {
		r.answers("inet", lanHost, "before ispbalance")
		r.answers("inet", routerWeb, "before ispbalance")
	})
	r.answers("lan2", lanHost, "before ispbalance")
	r.mustRun()
	// The internet host cannot reach a LAN host, nor can GUEST, while
	// the router can.
	r.blocked("router", "inet", lanHost, "the LAN host from the internet")
	r.blocked("router", "lan2", lanHost, "LAN from GUEST, outside its forwarding group")
	// Both LANs still reach the internet.
	for j := 1; j <= 2; j++ {
		if _, err := r.lab.WhichISP(j, serverPort, 2*time.Second); err != nil {
			t.Errorf("lan%d cannot reach the internet: %v", j, err)
		}
	}
	// Router services other than ssh are rejected from the internet,
	// though the LAN reaches them, and ping is answered (rate-limited).
	if _, err := r.lab.Exec("inet", "ping", "-c1", "-W1", r.lab.RouterISPAddr(1).String()); err != nil {
		t.Errorf("router does not answer ping from the internet: %v", err)
	}
	r.blocked("lan1", "inet", routerWeb, "port 80 on the router from the internet")
}

// TestForeignStateSurvives: routes, tables, rules and chains of other
// software survive 20 rebuilds and stop; stop leaves the router exactly as
// it was before the first rebuild.
func TestForeignStateSurvives(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "own"}, ispConf(1, 1))
	r.sh("router", "ip", "route", "add", "10.99.0.0/16", "via", "192.168.1.10")
	r.sh("router", "ip", "route", "add", "default", "via", "100.64.1.1", "table", "100")
	r.sh("router", "ip", "rule", "add", "priority", "500", "from", "192.168.1.77", "lookup", "100")
	r.sh("router", "iptables", "-N", "FAIL2BAN")
	r.sh("router", "iptables", "-A", "FAIL2BAN", "-s", "198.51.100.200", "-j", "DROP")
	r.sh("router", "iptables", "-I", "INPUT", "-j", "FAIL2BAN")
	r.sh("router", "iptables", "-t", "nat", "-N", "DOCKER")
	before := r.kernelState()
	for i := 0; i < 20; i++ {
		verdict := "down"
		if i%2 == 1 {
			verdict = "up"
		}
		r.mustRun(verdict, "ISP2")
		now := r.kernelState()
		for _, want := range []string{
			"10.99.0.0/16 via 192.168.1.10 dev lan1",
			"default via 100.64.1.1 dev wan1 table 100",
			"500:\tfrom 192.168.1.77 lookup 100",
			"-A FAIL2BAN -s 198.51.100.200/32 -j DROP",
			"-A INPUT -j FAIL2BAN",
			":DOCKER",
		} {
			if !strings.Contains(now, want) {
				t.Fatalf("rebuild %d removed %q:\n%s", i, want, now)
			}
		}
	}
	// Routes in main more specific than a default still win for marked
	// LAN traffic and for the router's own traffic.
	for _, mark := range []string{"0x1000000", "0x2000000", "0"} {
		if got := r.sh("router", "ip", "route", "get", "10.99.1.1", "mark", mark); !strings.Contains(got, "dev lan1") {
			t.Errorf("route in main ignored for mark %s: %s", mark, got)
		}
	}
	// Our jumps exist exactly once.
	save := r.sh("router", "iptables-save")
	if n := strings.Count(save, "-A INPUT -j ISPB-INPUT"); n != 1 {
		t.Errorf("jump to ISPB-INPUT appears %d times after 20 rebuilds", n)
	}
	r.mustRun("stop")
	if after := r.kernelState(); lab.WithoutEmptyTables(after) != lab.WithoutEmptyTables(before) {
		t.Errorf("stop did not restore the router:\n--- before\n%s\n--- after\n%s", before, after)
	}
}

// TestBadConfigChangesNothing: a config error exits non-zero naming
// file:line and leaves the kernel state byte for byte as it was.
func TestBadConfigChangesNothing(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "bad"}, ispConf(1, 1))
	r.mustRun()
	before := r.kernelState()
	bad := []struct{ conf, want string }{
		{"ISP1 wan1 isp\nISP2 wan2 wan\n", ":2: role \"wan\" is unknown"},
		{"ISP1 wan1 isp default 0\n", ":1: weight \"0\""},
		{"ISP1 wan1 isp\nmode=random\n", ":2: mode must be"},
		{"ISP1 wan1 isp\nforwarding_group=ISP1 NOPE\n", ":2: forwarding_group names unknown service"},
	}
	for _, b := range bad {
		r.writeConf(b.conf)
		out, err := r.run()
		if err == nil {
			t.Errorf("config %q accepted", b.conf)
		}
		if !strings.Contains(out, r.conf+b.want) {
			t.Errorf("error output %q lacks %q", out, r.conf+b.want)
		}
		if after := r.kernelState(); after != before {
			t.Errorf("a bad config changed the kernel state:\n--- before\n%s\n--- after\n%s", before, after)
		}
	}
	// A service named on the command line that is not in the config.
	r.writeConf(ispConf(1, 1))
	if out, err := r.run("NOPE"); err == nil || !strings.Contains(out, `no service named "NOPE"`) {
		t.Errorf("unknown service on the command line: %q, %v", out, err)
	}
	if after := r.kernelState(); after != before {
		t.Errorf("an unknown service changed the kernel state")
	}
}

// TestFailedApplyRollsBack: when the firewall cannot be installed (a
// restore binary that fails), routing is put back as it was.
func TestFailedApplyRollsBack(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "rb"}, ispConf(1, 1))
	r.mustRun()
	before := r.kernelState()
	// ISP2 down changes routes and the firewall; a broken iptables-restore
	// earlier in PATH makes the firewall step fail.
	fake := t.TempDir()
	os.Chmod(fake, 0o755)
	script := "#!/bin/sh\necho 'iptables-restore: line 3 failed' >&2\nexit 1\n"
	if err := os.WriteFile(fake+"/iptables-restore", []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := r.lab.Exec("router", "env", "PATH="+fake+":"+os.Getenv("PATH"), binary, "-c", r.conf, "--state-dir", r.stateDir, "--run-dir", r.runDir(), "down", "ISP2")
	if err == nil {
		t.Fatalf("apply with a failing iptables-restore succeeded: %s", out)
	}
	if !strings.Contains(string(out), "installing the firewall") {
		t.Errorf("error does not say what failed: %s", out)
	}
	if after := r.kernelState(); after != before {
		t.Errorf("failed apply was not rolled back:\n--- before\n%s\n--- after\n%s", before, after)
	}
	if st, _ := os.ReadFile(r.stateDir + "/ISP2.state"); strings.TrimSpace(string(st)) == "down" {
		t.Errorf("failed apply recorded ISP2 as down")
	}
}

// TestDryRunAsUser: -d as an ordinary user prints the plan and changes
// nothing.
func TestDryRunAsUser(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "dry"}, ispConf(1, 1))
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	before := r.kernelState()
	out, err := r.lab.Exec("router", "setpriv", "--reuid", nobody.Uid, "--regid", nobody.Gid, "--clear-groups",
		binary, "-d", "-c", r.conf, "--state-dir", r.stateDir, "--run-dir", r.runDir())
	if err != nil {
		t.Fatalf("-d as nobody: %v\n%s", err, out)
	}
	for _, want := range []string{
		"ip route replace default table 4200 proto 177 nexthop via 100.64.1.1 dev wan1 weight 1 nexthop via 100.64.2.1 dev wan2 weight 1",
		"ip rule add priority 9000 lookup main suppress_prefixlength 0",
		"iptables-restore --noflush",
		"-A ISPB-POSTROUTING -o wan1 -j MASQUERADE",
		"sysctl -q -w net.ipv4.ip_forward=1",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("dry run lacks %q", want)
		}
	}
	if after := r.kernelState(); after != before {
		t.Errorf("-d changed the kernel state")
	}
	for _, dir := range []string{r.stateDir, r.runDir()} {
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("-d created %s", dir)
		}
	}
}

// TestUnchangedFirewallIsLeftAlone: our rules are written in the form
// iptables-save prints, so a rebuild with unchanged facts recognises every
// chain as current and runs no firewall transaction at all; a change of
// one ISP's state rewrites only the balancing chain.
func TestUnchangedFirewallIsLeftAlone(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "same", LANs: 2}, "ISP1 wan1 isp default 3\nISP2 wan2 isp default 2\nLAN lan1 lan\nGUEST lan2 lan\nforwarding_group=LAN :isp\nforwarding_group=GUEST ISP1\n")
	r.mustRun()
	out := r.mustRun("-v")
	if strings.Contains(out, "iptables-restore") {
		t.Errorf("a rebuild with unchanged facts rewrote the firewall; the rendered rules differ from iptables-save's form:\n%s", out)
	}
	out = r.mustRun("-v", "down", "ISP2")
	var rewritten []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, ":") {
			rewritten = append(rewritten, strings.Fields(line[1:])[0])
		}
	}
	if len(rewritten) != 1 || rewritten[0] != "ISPB-BALANCE" {
		t.Errorf("taking ISP2 down rewrote chains %v, want only ISPB-BALANCE", rewritten)
	}
}

// TestBurstOfRebuilds: 20 concurrent invocations serialise, all succeed,
// and leave one consistent state with no duplicate rules.
func TestBurstOfRebuilds(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "burst"}, ispConf(1, 1))
	r.mustRun()
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		verdict := []string{"down", "up"}[i%2]
		go func() {
			out, err := r.run(verdict, "ISP2")
			if err != nil {
				err = fmt.Errorf("%v: %s", err, out)
			}
			errs <- err
		}()
	}
	for i := 0; i < 20; i++ {
		if err := <-errs; err != nil {
			t.Errorf("concurrent rebuild failed: %v", err)
		}
	}
	rules := r.sh("router", "ip", "-4", "rule")
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(rules), "\n") {
		if seen[line] {
			t.Errorf("duplicate rule after a burst: %s", line)
		}
		seen[line] = true
	}
	// The state reached is the plan for the last recorded verdict: one
	// more rebuild with the same facts changes nothing.
	if out := r.mustRun("-v"); strings.Contains(out, "iptables-restore") || strings.Contains(out, "ip rule add") || strings.Contains(out, "ip rule del") {
		t.Errorf("state after the burst is not the plan's:\n%s", out)
	}
}

// TestFlushClearsOthers: -f empties the built-in chains and deletes other
// software's chains, as the original's --flush did, and keeps policies.
func TestFlushClearsOthers(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "flush"}, ispConf(1, 1))
	r.sh("router", "iptables", "-N", "OLDFW")
	r.sh("router", "iptables", "-A", "INPUT", "-j", "OLDFW")
	r.sh("router", "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan1", "-j", "SNAT", "--to-source", "100.64.1.2")
	r.mustRun("-f")
	save := r.sh("router", "iptables-save")
	for _, gone := range []string{"OLDFW", "--to-source 100.64.1.2"} {
		if strings.Contains(save, gone) {
			t.Errorf("-f left %q:\n%s", gone, save)
		}
	}
	for _, kept := range []string{"-A INPUT -j ISPB-INPUT", "-A POSTROUTING -j ISPB-POSTROUTING"} {
		if !strings.Contains(save, kept) {
			t.Errorf("-f lost our own %q", kept)
		}
	}
	r.sh("router", "iptables", "-N", "LATER")
	r.mustRun("stop", "-f")
	if save := r.sh("router", "iptables-save"); strings.Contains(save, "LATER") || strings.Contains(save, "ISPB-") {
		t.Errorf("stop -f left chains:\n%s", save)
	}
}

// TestLSMEventRunsScripts: an event delivered the way an external lsm
// delivers it (`ifup-balance down NAME` and lsm's other arguments) runs
// balance/lsm/down.d/ with those arguments, as the original did.
func TestLSMEventRunsScripts(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "lsmev"}, ispConf(1, 1))
	got := filepath.Join(r.dir, "got")
	r.writeRules("lsm/down.d", "10-record", "#!/bin/sh\necho \"$@\" > "+got+"\n")
	os.Chmod(filepath.Join(r.dir, "balance", "lsm", "down.d", "10-record"), 0o755)
	r.mustRun()
	r.mustRun("down", "ISP2", "203.0.113.10", "wan2")
	data, err := os.ReadFile(got)
	if err != nil || strings.TrimSpace(string(data)) != "down ISP2 203.0.113.10 wan2" {
		t.Errorf("event script got %q, %v", data, err)
	}
}

// TestMissingDeviceSkipped: a configured ISP whose device does not exist
// is skipped with a warning; the others balance; once the device appears,
// the next rebuild includes it.
func TestMissingDeviceSkipped(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "miss"}, "ISP1 wan1 isp\nISP2 wan2 isp\nLAN lan1 lan\n")
	r.sh("router", "ip", "link", "set", "wan2", "name", "later2")
	r.startServer()
	out := r.mustRun()
	if !strings.Contains(out, "skipped") || !strings.Contains(out, "wan2") {
		t.Errorf("no warning about the missing device:\n%s", out)
	}
	if c := r.shares(1, 50); c[1] != 50 {
		t.Errorf("with ISP2's device missing: %v, want all via ISP1", c)
	}
	r.sh("router", "ip", "link", "set", "later2", "down")
	r.sh("router", "ip", "link", "set", "later2", "name", "wan2")
	r.sh("router", "ip", "link", "set", "wan2", "up")
	r.mustRun()
	if c := r.shares(1, 200); c[2] < 60 {
		t.Errorf("after the device appeared: %v, want ISP2 balanced in", c)
	}
}

// echoRound sends one line on an established connection to the lab's
// echoing server and fails the test unless the same line comes back
// within 2 s.
func echoRound(t *testing.T, conn net.Conn, rd *bufio.Reader, round int) {
	t.Helper()
	msg := fmt.Sprintf("round %d\n", round)
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte(msg)); err != nil {
		t.Fatalf("round %d: writing on the established connection: %v", round, err)
	}
	if echo, err := rd.ReadString('\n'); err != nil || echo != msg {
		t.Fatalf("round %d: echo %q, %v; want %q", round, echo, err, msg)
	}
}

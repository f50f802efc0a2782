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

// The dual-stack lab adds IPv6 to the IPv4 lab: ISP k's segment is
// 2001:db8:k::/64 (router ::2, ISP ::1), ISP k reaches the internet host
// over 2001:db8:f0:k::/64, the internet server is 2001:db8:ff::10, and
// the LAN is numbered from a ULA, fd00:100::/64 (router ::1, host ::10).
// The router learns each ISP's gateway as a link-local address, as
// router advertisements teach it.
var (
	v6Server  = netip.MustParseAddr("2001:db8:ff::10")
	v6ULAHost = netip.MustParseAddr("fd00:100::10")
	v6ULARtr  = netip.MustParseAddr("fd00:100::1")
)

func v6RouterISP(k int) netip.Addr { return netip.MustParseAddr(fmt.Sprintf("2001:db8:%d::2", k)) }

// ispForAddr6 names the ISP whose segment an address is from, 0 if none.
func ispForAddr6(a netip.Addr, isps int) int {
	for k := 1; k <= isps; k++ {
		if netip.MustParsePrefix(fmt.Sprintf("2001:db8:%d::/64", k)).Contains(a) {
			return k
		}
	}
	return 0
}

// dualStackISPs gives every ISP of the lab IPv6 and the router an RA-style
// default route through each, and starts an IPv6 server on the internet
// host that reports the source it sees.
func (r *router) dualStackISPs() {
	r.t.Helper()
	r.sh("inet", "ip", "-6", "addr", "add", v6Server.String()+"/128", "dev", "lo")
	for k := 1; k <= r.lab.ISPs(); k++ {
		isp, wan := fmt.Sprintf("isp%d", k), fmt.Sprintf("wan%d", k)
		r.sh(isp, "ip", "-6", "addr", "add", fmt.Sprintf("2001:db8:%d::1/64", k), "dev", "down0", "nodad")
		r.sh("router", "ip", "-6", "addr", "add", v6RouterISP(k).String()+"/64", "dev", wan, "nodad")
		r.sh(isp, "ip", "-6", "addr", "add", fmt.Sprintf("2001:db8:f0:%d::1/64", k), "dev", "up0", "nodad")
		r.sh("inet", "ip", "-6", "addr", "add", fmt.Sprintf("2001:db8:f0:%d::2/64", k), "dev", isp, "nodad")
		r.sh(isp, "ip", "-6", "route", "add", "2001:db8:ff::/64", "via", fmt.Sprintf("2001:db8:f0:%d::2", k))
		r.sh("inet", "ip", "-6", "route", "add", fmt.Sprintf("2001:db8:%d::/64", k), "via", fmt.Sprintf("2001:db8:f0:%d::1", k))
		r.sh(isp, "sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1")
		gw := r.linkLocal(isp, "down0")
		// What the kernel installs from a router advertisement.
		r.sh("router", "ip", "-6", "route", "add", "default", "via", gw.String(), "dev", wan, "proto", "ra", "metric", fmt.Sprint(1024+k))
	}
	r.sh("router", "ip", "-6", "addr", "add", v6ULARtr.String()+"/64", "dev", "lan1", "nodad")
	r.sh("lan1", "ip", "-6", "addr", "add", v6ULAHost.String()+"/64", "dev", "eth0", "nodad")
	r.sh("lan1", "ip", "-6", "route", "add", "default", "via", v6ULARtr.String())
	r.listen("inet", netip.AddrPortFrom(v6Server, serverPort))
	r.settle6()
}

// whichISP6 connects from the LAN host to the IPv6 server and returns
// which ISP's address the server saw.
func (r *router) whichISP6() (int, error) {
	seen, err := r.lab.Greet("lan1", netip.AddrPortFrom(v6Server, serverPort), 2*time.Second)
	if err != nil {
		return 0, err
	}
	a, err := netip.ParseAddr(seen)
	if err != nil {
		return 0, err
	}
	k := ispForAddr6(a, r.lab.ISPs())
	if k == 0 {
		return 0, fmt.Errorf("the server saw %s, which is no ISP address of the router", a)
	}
	return k, nil
}

// TestDualStackBalancing: with IPv6 from both ISPs (gateways learned as
// link-local addresses) and a LAN numbered from a ULA, new IPv6
// connections from the LAN split across the ISPs by weight, each leaving
// with the ISP's own address (NAT66); the router's own IPv6 and IPv4 work
// through both; taking an ISP down moves IPv6 too; stop removes every
// IPv6 rule, route and chain of ours and leaves foreign ones.
func TestDualStackBalancing(t *testing.T) {
	t.Parallel()
	r := newRouter(t, lab.Options{Prefix: "dual"}, ispConf(3, 1))
	r.startServer()
	r.dualStackISPs()
	// Without ispbalance the ULA LAN reaches nothing over IPv6: the ISPs
	// have no route back to it.
	if _, err := r.whichISP6(); err == nil {
		t.Fatal("the ULA LAN reaches the IPv6 server without ispbalance: the test cannot tell NAT66 from plain routing")
	}
	foreignRule := []string{"ip", "-6", "rule", "add", "priority", "100", "from", "2001:db8:77::/48", "lookup", "77"}
	r.sh("router", foreignRule...)

	dry := r.mustRun("-d")
	for _, want := range []string{"ip -6 route replace default table 4200 proto 177 nexthop via fe80::", "ip -6 rule add priority 9201 from 2001:db8:1::2/128 lookup 4201", "-A ISPB-POSTROUTING -o wan1 -j MASQUERADE"} {
		if !strings.Contains(dry, want) {
			t.Errorf("-d lacks %q:\n%s", want, dry)
		}
	}
	r.mustRun()

	r.checkSplit6(0.75)
	// A rebuild with nothing new leaves every IPv6 route in place.
	r.mustRun()
	for k := 1; k <= 2; k++ {
		if out := r.sh("router", "ip", "-6", "route", "show", "table", fmt.Sprint(4200+k)); !strings.Contains(out, "default via fe80::") {
			t.Errorf("after a second rebuild ISP%d's IPv6 table lost its default:\n%s", k, out)
		}
	}
	// IPv4 is balanced as before.
	if c := r.shares(1, 40); c[1] == 0 || c[2] == 0 {
		t.Errorf("IPv4 connections per ISP %v, want both used", c)
	}
	// The router's own IPv6 leaves through each ISP by its address.
	for k := 1; k <= 2; k++ {
		r.sh("router", "ping", "-6", "-c1", "-W2", "-I", v6RouterISP(k).String(), v6Server.String())
	}

	// ISP1 taken down: new IPv6 connections go through ISP2.
	r.mustRun("down", "ISP1")
	for i := 0; i < 20; i++ {
		if k, err := r.whichISP6(); err != nil || k != 2 {
			t.Fatalf("with ISP1 down, IPv6 connection %d: ISP %d, %v; want ISP 2\n%s\n%s\n%s", i, k, err,
				r.sh("router", "ip6tables-save", "-t", "mangle"), r.sh("router", "ip", "-6", "route", "show", "table", "4200"), r.sh("router", "ip", "-6", "rule"))
		}
	}
	r.mustRun("up", "ISP1")

	r.mustRun("stop")
	rules := r.sh("router", "ip", "-6", "rule")
	routes := r.sh("router", "ip", "-6", "route", "show", "table", "all")
	save := r.sh("router", "ip6tables-save")
	for _, ours := range []string{"lookup 420", "9000:", "9900:"} {
		if strings.Contains(rules, ours) {
			t.Errorf("stop left an IPv6 rule of ours (%s):\n%s", ours, rules)
		}
	}
	if strings.Contains(routes, "table 420") || strings.Contains(routes, "proto 177") {
		t.Errorf("stop left IPv6 routes of ours:\n%s", routes)
	}
	if strings.Contains(save, "ISPB-") {
		t.Errorf("stop left IPv6 chains:\n%s", save)
	}
	if !strings.Contains(rules, "from 2001:db8:77::/48 lookup 77") {
		t.Errorf("stop removed a foreign IPv6 rule:\n%s", rules)
	}
}

// TestIPv6GatewayFollowed: with the monitor running, a router
// advertisement that names another gateway (here: the route the kernel
// would install for it) is followed in the ISP's IPv6 table within 2 s,
// with no command typed, and LAN IPv6 traffic through that ISP works.
func TestIPv6GatewayFollowed(t *testing.T) {
	t.Parallel()
	r := newRouter(t, lab.Options{Prefix: "ra6"}, monitorConf(1, 1))
	r.startServer()
	r.dualStackISPs()
	r.startMonitor()
	r.waitMonitor("ISP1", "up", 10*time.Second)
	old := r.linkLocal("isp1", "down0")
	if out := r.sh("router", "ip", "-6", "route", "show", "table", "4201"); !strings.Contains(out, "default via "+old.String()) {
		t.Fatalf("ISP1's IPv6 table does not route via its gateway %s:\n%s", old, out)
	}
	// ISP1's router is replaced by one at fe80::99.
	r.sh("isp1", "ip", "-6", "addr", "add", "fe80::99/64", "dev", "down0", "nodad")
	r.sh("router", "ip", "-6", "route", "del", "default", "via", old.String(), "dev", "wan1")
	r.sh("router", "ip", "-6", "route", "add", "default", "via", "fe80::99", "dev", "wan1", "proto", "ra", "metric", "1025")
	changed := time.Now()
	for {
		out := r.sh("router", "ip", "-6", "route", "show", "table", "4201")
		if strings.Contains(out, "default via fe80::99") {
			break
		}
		if time.Since(changed) > 2*time.Second {
			t.Fatalf("ISP1's IPv6 table did not follow the new gateway within 2 s:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("new IPv6 gateway followed %.3f s after the route changed", time.Since(changed).Seconds())
	// Traffic through ISP1 goes via the new gateway.
	r.sh("router", "ping", "-6", "-c1", "-W2", "-I", v6RouterISP(1).String(), v6Server.String())
}

// TestIPv6SilentFailure: ISP1's IPv6 upstream dies while its IPv4 works.
// The monitor, probing each family apart, takes ISP1 out of IPv6
// balancing within 2 s (6 s allowed on a loaded machine) while IPv4 keeps
// using it, and takes it back within 5 s (20 s allowed) of the repair;
// event scripts learn the family.
func TestIPv6SilentFailure(t *testing.T) {
	t.Parallel()
	conf := "ISP1 wan1 isp 203.0.113.10,2001:db8:ff::10 1\nISP2 wan2 isp 203.0.113.10,2001:db8:ff::10 1\nLAN lan1 lan\n"
	r := newRouter(t, lab.Options{Prefix: "sil6"}, conf)
	r.startServer()
	r.dualStackISPs()
	script := r.eventScriptRecordingFamily("down")
	r.startMonitor()
	r.waitMonitor("ISP1", "up", 10*time.Second)
	r.waitMonitor("ISP1.ipv6", "up", 10*time.Second)
	r.waitMonitor("ISP2.ipv6", "up", 10*time.Second)
	// ISP1 drops IPv6 it forwards, nothing else.
	r.sh("isp1", "ip6tables", "-I", "FORWARD", "-j", "DROP")
	fault := time.Now()
	streak := 0
	for streak < 10 {
		if time.Since(fault) > 6*time.Second {
			t.Fatalf("new IPv6 connections still use ISP1 6 s after its IPv6 died")
		}
		k, err := r.whichISP6()
		if err == nil && k == 2 {
			streak++
		} else {
			streak = 0
		}
	}
	t.Logf("IPv6 silent failure: new IPv6 connections avoid ISP1 %.2f s after the fault (target 2 s)", time.Since(fault).Seconds())
	r.waitState("ISP1.ipv6", "down", time.Second)
	r.waitState("ISP1", "up", time.Second)
	if c := r.shares(1, 40); c[1] == 0 {
		t.Errorf("ISP1's IPv6 is down but its IPv4 works: IPv4 connections per ISP %v, want ISP1 still used", c)
	}
	if got := r.waitFileContains(script, "family=ipv6 ISP1", 5*time.Second); !got {
		t.Errorf("the down script did not learn the family")
	}
	r.sh("isp1", "ip6tables", "-D", "FORWARD", "-j", "DROP")
	repaired := time.Now()
	r.waitState("ISP1.ipv6", "up", 20*time.Second)
	for {
		if k, err := r.whichISP6(); err == nil && k == 1 {
			break
		}
		if time.Since(repaired) > 20*time.Second {
			t.Fatal("ISP1 carries no new IPv6 connection 20 s after the repair")
		}
	}
	t.Logf("IPv6 recovery: ISP1 carries IPv6 again %.2f s after the repair (target 5 s)", time.Since(repaired).Seconds())
}

// eventScriptRecordingFamily installs balance/lsm/<state>.d/10-record,
// which appends "family=<ISPBALANCE_FAMILY> <name>" to a file, and
// returns the file's path.
func (r *router) eventScriptRecordingFamily(state string) string {
	r.t.Helper()
	dir := filepath.Join(r.dir, "balance", "lsm", state+".d")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.t.Fatal(err)
	}
	out := filepath.Join(r.dir, state+"-events.txt")
	script := "#!/bin/sh\necho \"family=$ISPBALANCE_FAMILY $2\" >> " + out + "\n"
	if err := os.WriteFile(filepath.Join(dir, "10-record"), []byte(script), 0o755); err != nil {
		r.t.Fatal(err)
	}
	return out
}

// waitFileContains polls a file until it holds want.
func (r *router) waitFileContains(path, want string, limit time.Duration) bool {
	for start := time.Now(); time.Since(start) < limit; time.Sleep(50 * time.Millisecond) {
		if data, err := os.ReadFile(path); err == nil && strings.Contains(string(data), want) {
			return true
		}
	}
	return false
}

// kernelState6 is the IPv6 state a rebuild must leave alone and stop
// must restore exactly.
func (r *router) kernelState6() string {
	r.t.Helper()
	return r.sh("router", "ip", "-6", "rule") + lab.WithoutCarrierFlags(r.sh("router", "ip", "-6", "route", "show", "table", "all")) +
		lab.StripCounters(r.sh("router", "ip6tables-save"))
}

// TestHitlessRebuilds6: a ping every 2 ms over IPv6 from the LAN loses
// nothing, and an established IPv6 connection keeps its ISP and keeps
// flowing, across 20 rebuilds that take the other ISP down and up;
// foreign IPv6 routes, rules and ip6tables chains survive every rebuild,
// and stop leaves IPv6 exactly as it was before ispbalance.
func TestHitlessRebuilds6(t *testing.T) {
	t.Parallel()
	r := newRouter(t, lab.Options{Prefix: "hit6"}, ispConf(1, 1))
	r.startServer()
	r.dualStackISPs()
	r.sh("router", "ip", "-6", "route", "add", "2001:db8:99::/48", "via", v6ULAHost.String())
	r.sh("router", "ip", "-6", "rule", "add", "priority", "500", "from", "fd00:100::77", "lookup", "100")
	r.sh("router", "ip6tables", "-N", "FAIL2BAN6")
	r.sh("router", "ip6tables", "-A", "FAIL2BAN6", "-s", "2001:db8:bad::/48", "-j", "DROP")
	r.sh("router", "ip6tables", "-I", "INPUT", "-j", "FAIL2BAN6")
	before := r.kernelState6()
	r.mustRun()
	// The first packets of a fresh lab wait for neighbour discovery all
	// along the path; that is not what this test measures.
	r.sh("lan1", "ping", "-6", "-c1", "-W2", v6Server.String())
	// An established connection keeps its ISP and keeps flowing while
	// the other ISP goes down and up.
	conn, err := r.lab.DialTCP("lan1", netip.AddrPortFrom(v6Server, serverPort), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rd := bufio.NewReader(conn)
	seen, err := rd.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	mine := ispForAddr6(netip.MustParseAddr(strings.TrimSpace(seen)), 2)
	if mine == 0 {
		t.Fatalf("the server saw %q, which is no ISP's address", seen)
	}
	other := 3 - mine
	ping, err := r.lab.StartPing("lan1", v6Server, 2*time.Millisecond)
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
		now := r.kernelState6()
		for _, want := range []string{"2001:db8:99::/48 via fd00:100::10 dev lan1", "500:\tfrom fd00:100::77 lookup 100",
			"-A FAIL2BAN6 -s 2001:db8:bad::/48 -j DROP", "-A INPUT -j FAIL2BAN6"} {
			if !strings.Contains(now, want) {
				t.Fatalf("rebuild %d removed %q:\n%s", i, want, now)
			}
		}
	}
	sent, received, err := ping.Stop()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("IPv6 ping stream over 20 rebuilds: %d sent, %d received", sent, received)
	if sent < 100 || sent != received {
		t.Errorf("IPv6 ping stream lost %d of %d packets across rebuilds", sent-received, sent)
	}
	r.mustRun("stop")
	if after := r.kernelState6(); lab.WithoutEmptyTables(after) != lab.WithoutEmptyTables(before) {
		t.Errorf("stop did not restore IPv6:\n--- before\n%s\n--- after\n%s", before, after)
	}
}

// settle6 waits until no address in the lab is still doing duplicate
// address detection: until then the kernel adds their routes, and
// neighbour discovery through them stalls.
func (r *router) settle6() {
	r.t.Helper()
	lab.WaitFor(r.t, "duplicate address detection in the lab", 10*time.Second, func() bool {
		for _, ns := range r.lab.Names() {
			if out, _ := r.lab.Exec(ns, "ip", "-6", "addr", "show", "tentative"); strings.TrimSpace(string(out)) != "" {
				return false
			}
		}
		return true
	})
}

// checkSplit6 opens 2000 IPv6 connections from the LAN host and checks
// that ISP 1 carries its share within 4 %, as the issue asks: with 2000
// connections that is at least 4 standard deviations of the binomial
// share, so a correct split fails it about once in 16000 runs.
func (r *router) checkSplit6(want float64) {
	r.t.Helper()
	counts := map[int]int{}
	const n = 2000
	for i := 0; i < n; i++ {
		k, err := r.whichISP6()
		if err != nil {
			r.t.Fatalf("IPv6 connection %d from the LAN: %v", i, err)
		}
		counts[k]++
	}
	share := float64(counts[1]) / n
	r.t.Logf("%d IPv6 connections per ISP: %v (ISP1 %.1f %%, want %.0f %%)", n, counts, 100*share, 100*want)
	if share < want-0.04 || share > want+0.04 {
		r.t.Errorf("IPv6 split %v does not follow the weights (ISP1 %.1f %%, want %.0f %% ± 4 %%)", counts, 100*share, 100*want)
	}
}

// TestDualStackEvenSplit: with weights 1:1, 2000 new IPv6 connections
// split evenly, each leaving with its ISP's own address.
func TestDualStackEvenSplit(t *testing.T) {
	t.Parallel()
	r := newRouter(t, lab.Options{Prefix: "even6"}, ispConf(1, 1))
	r.startServer()
	r.dualStackISPs()
	r.mustRun()
	r.checkSplit6(0.5)
}

// TestInboundOnSecondISP6: a connection from the internet to the
// router's IPv6 address on ISP 2 is answered via ISP 2, though the
// router's own IPv6 default prefers ISP 1. ISP 1 drops sources that are
// not its customers', so a reply out of ISP 1 is lost: before ispbalance
// it is.
func TestInboundOnSecondISP6(t *testing.T) {
	t.Parallel()
	r := newRouter(t, lab.Options{Prefix: "in6"}, "mode=failover\nISP1 wan1 isp default 5\nISP2 wan2 isp default 1\nLAN lan1 lan\n")
	r.dualStackISPs()
	r.sh("isp1", "ip6tables", "-A", "FORWARD", "-i", "down0", "!", "-s", "2001:db8:1::/64", "-j", "DROP")
	const sshPort = 22
	r.listen("router", netip.AddrPortFrom(netip.IPv6Unspecified(), sshPort))
	viaISP2 := netip.AddrPortFrom(v6RouterISP(2), sshPort)
	viaISP1 := netip.AddrPortFrom(v6RouterISP(1), sshPort)
	if !r.reachable("inet", viaISP1, 3*time.Second) {
		t.Fatalf("before ispbalance the router's ISP1 address does not answer: the lab is broken")
	}
	if _, err := r.lab.Greet("inet", viaISP2, time.Second); err == nil {
		t.Fatalf("before ispbalance the router's ISP2 address answers although replies leave by ISP1: the test cannot tell")
	}
	r.mustRun()
	if !r.reachable("inet", viaISP2, 3*time.Second) {
		t.Errorf("the router's IPv6 address on ISP2 is not answered via ISP2")
	}
}

// TestBadIPv6ConfigChangesNothing: a bad IPv6 value in balance.conf
// names the file and line and leaves both families exactly as they were.
func TestBadIPv6ConfigChangesNothing(t *testing.T) {
	t.Parallel()
	r := newRouter(t, lab.Options{Prefix: "bad6"}, ispConf(1, 1))
	r.dualStackISPs()
	r.mustRun()
	before := r.kernelState() + r.kernelState6()
	for _, b := range []struct{ line, want string }{
		{"ipv6_gateway=ISP1 fe80::1%wan1", ":1: ipv6_gateway: \"fe80::1%wan1\" is not an IPv6 address"},
		{"ipv6_prefix=ISP1 2001:db8:100::1/56", ":1: ipv6_prefix: 2001:db8:100::1/56 has host bits set"},
		{"ipv6_prefix=LAN 2001:db8:100::/56", ":1: ipv6_prefix names \"LAN\", which is no isp service"},
		{"ipv6_nat=npt", ":1: ipv6_nat must be auto, failover or off"},
		{"ipv6=maybe", ":1: ipv6:"},
	} {
		r.writeConf(b.line + "\n" + ispConf(1, 1))
		out, err := r.run()
		if err == nil {
			t.Errorf("%q accepted", b.line)
		}
		if !strings.Contains(out, r.conf+b.want) {
			t.Errorf("error output %q lacks %q", out, r.conf+b.want)
		}
		if after := r.kernelState() + r.kernelState6(); after != before {
			t.Errorf("%q changed the kernel state:\n--- before\n%s\n--- after\n%s", b.line, before, after)
		}
	}
}

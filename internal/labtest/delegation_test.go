package labtest

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ispbalance/ispbalance/internal/lab"
)

// The delegation lab adds prefix delegation to the dual-stack lab: ISP 1
// delegates a /56 through a real DHCPv6 server (ISC dhcpd -6) to a real
// client on the router (dhclient -6 -P, with the distribution's exit
// hook), ISP 2's /56 is static and pinned in balance.conf. lan1 is
// numbered from a ULA, lan2 from ISP 1's delegation; each ISP routes its
// delegation to the router, as a real one does.
const (
	pd1First  = "2001:db8:100::/56"
	pd1Second = "2001:db8:300::/56"
	pd2Static = "2001:db8:200::/56"
)

var (
	lan2Host = netip.MustParseAddr("2001:db8:100:2::10")
	lan2Rtr  = netip.MustParseAddr("2001:db8:100:2::1")
)

// dhcpd6 serves prefix delegation on ISP 1's customer link, renewing
// every few seconds so that renewals happen within the test. It returns a
// function that stops the server and waits until it is gone.
func (r *router) dhcpd6(t *testing.T, prefix string) func() {
	t.Helper()
	p := netip.MustParsePrefix(prefix)
	conf := filepath.Join(r.dir, "dhcpd6-"+strings.ReplaceAll(p.Addr().String(), ":", "_")+".conf")
	text := fmt.Sprintf(`default-lease-time 120;
preferred-lifetime 60;
max-lease-time 240;
option dhcp-renewal-time 2;
option dhcp-rebinding-time 3;
subnet6 2001:db8:1::/64 {
  prefix6 %s %s /%d;
}
`, p.Addr(), p.Addr(), p.Bits())
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	leases, pid := filepath.Join(r.dir, "dhcpd6.leases"), filepath.Join(r.dir, "dhcpd6.pid")
	os.WriteFile(leases, nil, 0o644) // a new server knows no earlier lease
	os.Remove(pid)
	cmd := background(t, conf+".log", "ip", "netns", "exec", r.lab.NS("isp1"), "dhcpd", "-6", "-f", "-cf", conf, "-lf", leases, "-pf", pid, "down0")
	return func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		lab.WaitFor(t, "dhcpd to stop", 5*time.Second, func() bool { return syscall.Kill(cmd.Process.Pid, 0) != nil })
	}
}

// delegationLab builds the lab described above and returns the router.
func delegationLab(t *testing.T, conf string) *router {
	r := newRouter(t, lab.Options{Prefix: "pd", LANs: 2}, conf)
	r.startServer()
	r.dualStackISPs()
	r.sh("router", "ip", "-6", "addr", "add", lan2Rtr.String()+"/64", "dev", "lan2", "nodad")
	r.sh("lan2", "ip", "-6", "addr", "add", lan2Host.String()+"/64", "dev", "eth0", "nodad")
	r.sh("lan2", "ip", "-6", "route", "add", "default", "via", lan2Rtr.String())
	for k, prefixes := range map[int][]string{1: {pd1First, pd1Second}, 2: {pd2Static}} {
		for _, p := range prefixes {
			r.sh(fmt.Sprintf("isp%d", k), "ip", "-6", "route", "add", p, "via", v6RouterISP(k).String())
			r.sh("inet", "ip", "-6", "route", "add", p, "via", fmt.Sprintf("2001:db8:f0:%d::1", k))
		}
	}
	return r
}

// dhclient6 runs dhclient -6 -P on wan1 with the distribution's exit hook
// (pointed at this router's files), writing its leases where Debian's
// dhclient does, under the router's --root.
func (r *router) dhclient6(t *testing.T) {
	t.Helper()
	// dhclient -6 binds to the link-local address, which must have
	// finished duplicate address detection.
	lab.WaitFor(t, "wan1's link-local address", 5*time.Second, func() bool {
		out, _ := r.lab.Exec("router", "ip", "-6", "addr", "show", "dev", "wan1", "scope", "link", "-tentative")
		return strings.Contains(string(out), "fe80::")
	})
	leaseDir := filepath.Join(r.dir, "var/lib/dhcp")
	os.MkdirAll(leaseDir, 0o755)
	script := filepath.Join(r.dir, "dhclient-script")
	text := "#!/bin/sh\n. " + r.distroHook("debian/dhclient-exit-hook") + "\n"
	if err := os.WriteFile(script, []byte(text), 0o755); err != nil {
		t.Fatal(err)
	}
	background(t, filepath.Join(r.dir, "dhclient6.log"), "ip", "netns", "exec", r.lab.NS("router"),
		"dhclient", "-6", "-P", "-d", "-v", "-sf", script, "-pf", filepath.Join(r.dir, "dhclient6.pid"),
		"-lf", filepath.Join(leaseDir, "dhclient6.wan1.leases"), "wan1")
}

// settled checks that what was just installed reads back as installed:
// -s sees no drift, and a rebuild with nothing new writes no firewall.
func (r *router) settled(args ...string) {
	r.t.Helper()
	if st := r.mustRun(append(args, "-s")...); strings.Contains(st, "Installed differs") {
		r.t.Errorf("-s reports drift right after a rebuild:\n%s", st)
	}
	if out := r.mustRun(append(args, "-v")...); strings.Contains(out, "iptables-restore") {
		r.t.Errorf("a rebuild with nothing new rewrote the firewall:\n%s", out)
	}
}

// sources connects n times from a LAN namespace to the IPv6 server and
// counts the sources the server saw.
func (r *router) sources(ns string, n int) map[netip.Addr]int {
	r.t.Helper()
	seen := map[netip.Addr]int{}
	for i := 0; i < n; i++ {
		s, err := r.lab.Greet(ns, netip.AddrPortFrom(v6Server, serverPort), 2*time.Second)
		if err != nil {
			r.t.Fatalf("IPv6 connection %d from %s: %v", i, ns, err)
		}
		seen[netip.MustParseAddr(s)]++
	}
	return seen
}

// TestDelegatedPrefix: a prefix delegated by a real DHCPv6 server is
// discovered and shown; with ipv6_nat=auto a ULA LAN leaves each ISP
// mapped 1:1 into that ISP's delegation (the host part kept) and a LAN
// numbered from ISP 1's delegation leaves ISP 1 untranslated and ISP 2
// mapped into ISP 2's; unused delegated addresses are unreachable rather
// than looping to the ISP; a new delegation is followed by the monitor
// with no command typed.
func TestDelegatedPrefix(t *testing.T) {
	t.Parallel()
	needTools(t, "dhcpd", "dhclient")
	conf := "ISP1 wan1 isp\nISP2 wan2 isp\nLAN1 lan1 lan\nLAN2 lan2 lan\nipv6_prefix=ISP2 " + pd2Static + "\n"
	r := delegationLab(t, conf)
	// Without ispbalance, neither LAN's IPv6 reaches the server: lan1's
	// ULA is routed nowhere, and lan2 has no route out of the router.
	if _, err := r.lab.Greet("lan2", netip.AddrPortFrom(v6Server, serverPort), time.Second); err == nil {
		t.Fatal("lan2 reaches the server without ispbalance: the test cannot tell")
	}
	stopServer := r.dhcpd6(t, pd1First)
	defer func() { stopServer() }()
	r.dhclient6(t)
	leases := filepath.Join(r.dir, "var/lib/dhcp/dhclient6.wan1.leases")
	lab.WaitFor(t, "dhclient's lease of "+pd1First, 20*time.Second, func() bool {
		data, _ := os.ReadFile(leases)
		return strings.Contains(string(data), "iaprefix "+pd1First)
	})

	r.startMonitor("--root", r.dir)
	lab.WaitFor(t, "the unreachable route for ISP1's delegation", 5*time.Second, func() bool {
		out, _ := r.lab.Exec("router", "ip", "-6", "route", "show", "table", "main", "proto", "177")
		return strings.Contains(string(out), "unreachable "+pd1First)
	})
	r.settled("--root", r.dir)
	status := r.mustRun("--root", r.dir, "-s")
	for _, want := range []string{"delegated " + pd1First, "delegated " + pd2Static + " (config)"} {
		if !strings.Contains(status, want) {
			t.Errorf("-s lacks %q:\n%s", want, status)
		}
	}

	// The ULA host leaves each ISP mapped into its delegation, host part
	// kept: fd00:100::10 is 2001:db8:100::10 and 2001:db8:200::10.
	ula := r.sources("lan1", 60)
	mapped1, mapped2 := netip.MustParseAddr("2001:db8:100::10"), netip.MustParseAddr("2001:db8:200::10")
	if len(ula) != 2 || ula[mapped1] == 0 || ula[mapped2] == 0 {
		t.Errorf("sources the server saw from the ULA host: %v, want %v and %v", ula, mapped1, mapped2)
	}
	// The host numbered from ISP 1's delegation keeps its address through
	// ISP 1 and is mapped into ISP 2's delegation through ISP 2.
	own := r.sources("lan2", 60)
	if len(own) != 2 || own[lan2Host] == 0 || own[netip.MustParseAddr("2001:db8:200:2::10")] == 0 {
		t.Errorf("sources the server saw from %s: %v, want itself and 2001:db8:200:2::10", lan2Host, own)
	}
	t.Logf("sources seen: ULA host %v; delegated host %v", ula, own)

	// An address of the delegation that no LAN uses is refused by the
	// router instead of going back out to the ISP.
	// (`ip route get` reports the unreachable route as an error.)
	if out, _ := r.lab.Exec("router", "ip", "-6", "route", "get", "2001:db8:100:ff::1", "from", v6Server.String(), "iif", "wan1"); !strings.Contains(string(out), "No route to host") {
		t.Errorf("an unused delegated address is routed:\n%s", out)
	}
	if out, err := r.lab.Exec("router", "ip", "-6", "route", "get", lan2Host.String(), "from", v6Server.String(), "iif", "wan1"); err != nil || !strings.Contains(string(out), "dev lan2") {
		t.Errorf("a used delegated address is not routed to its LAN: %v\n%s", err, out)
	}

	// ISP 1's server now delegates another prefix; dhclient's next
	// renewal (REBIND6) brings it, and the hook hands it to the monitor.
	stopServer()
	stopServer = r.dhcpd6(t, pd1Second)
	record := filepath.Join(r.dir, "run/ispbalance/leases/wan1.ipv6")
	lab.WaitFor(t, "the hook's record of "+pd1Second, 30*time.Second, func() bool {
		data, _ := os.ReadFile(record)
		return strings.Contains(string(data), pd1Second)
	})
	took := lab.WaitFor(t, "the plan to follow "+pd1Second, 5*time.Second, func() bool {
		out, _ := r.lab.Exec("router", "ip", "-6", "rule")
		return strings.Contains(string(out), "from "+pd1Second+" lookup 4201")
	})
	t.Logf("new delegation followed %v after the hook recorded it", took.Round(time.Millisecond))
	if out := r.sh("router", "ip", "-6", "route", "show", "table", "main", "proto", "177"); strings.Contains(out, pd1First) {
		t.Errorf("the old delegation's route stayed:\n%s", out)
	}
}

// TestIPv6NATFailover: with ipv6_nat=failover and both ISPs up, a host
// numbered from ISP 1's delegation reaches the server with its own
// address every time (no translation, no balancing); with ISP 1 down it
// still reaches the server, mapped into ISP 2's delegation; with ISP 1
// back its new connections are its own again.
func TestIPv6NATFailover(t *testing.T) {
	t.Parallel()
	conf := "ipv6_nat=failover\nISP1 wan1 isp\nISP2 wan2 isp\nLAN1 lan1 lan\nLAN2 lan2 lan\n" +
		"ipv6_prefix=ISP1 " + pd1First + "\nipv6_prefix=ISP2 " + pd2Static + "\n"
	r := delegationLab(t, conf)
	r.mustRun()
	r.settled()
	if seen := r.sources("lan2", 40); len(seen) != 1 || seen[lan2Host] != 40 {
		t.Errorf("both ISPs up: the server saw %v, want %s itself every time", seen, lan2Host)
	}
	// The ULA LAN has no ISP's prefix: it is balanced and translated.
	if seen := r.sources("lan1", 40); len(seen) != 2 {
		t.Errorf("both ISPs up: the server saw %v from the ULA host, want both ISPs' mappings", seen)
	}
	r.mustRun("down", "ISP1")
	mapped := netip.MustParseAddr("2001:db8:200:2::10")
	if seen := r.sources("lan2", 20); len(seen) != 1 || seen[mapped] != 20 {
		t.Errorf("ISP1 down: the server saw %v, want %s (mapped into ISP2's delegation) every time", seen, mapped)
	}
	r.mustRun("up", "ISP1")
	if seen := r.sources("lan2", 20); len(seen) != 1 || seen[lan2Host] != 20 {
		t.Errorf("ISP1 back: the server saw %v, want %s itself every time", seen, lan2Host)
	}
}

// TestLinkLocalUplink: ISP 1 numbers the uplink with link-local
// addresses only and delegates a prefix. The router still balances IPv6
// through it, with its LAN address from the delegation as its own source
// there: LAN hosts leave ISP 1 untranslated or mapped into the
// delegation, the router's own traffic through ISP 1 works, and the
// monitor judges ISP 1's IPv6 up by probing from that address.
func TestLinkLocalUplink(t *testing.T) {
	t.Parallel()
	conf := "ISP1 wan1 isp\nISP2 wan2 isp\nLAN1 lan1 lan\nLAN2 lan2 lan\n" +
		"ipv6_prefix=ISP1 " + pd1First + "\nipv6_prefix=ISP2 " + pd2Static + "\n"
	r := delegationLab(t, conf)
	r.sh("router", "ip", "-6", "addr", "del", v6RouterISP(1).String()+"/64", "dev", "wan1")
	wanLL := r.linkLocal("router", "wan1")
	for _, p := range []string{pd1First, pd1Second} {
		r.sh("isp1", "ip", "-6", "route", "replace", p, "via", wanLL.String(), "dev", "down0")
	}
	r.startMonitor()
	r.waitMonitor("ISP1.ipv6", "up", 10*time.Second)
	r.settled()
	if st := r.mustRun("-s"); !strings.Contains(st, "(link-local uplink)") {
		t.Errorf("-s does not show ISP1's link-local uplink:\n%s", st)
	}
	own := r.sources("lan2", 60)
	if len(own) != 2 || own[lan2Host] == 0 || own[netip.MustParseAddr("2001:db8:200:2::10")] == 0 {
		t.Errorf("sources the server saw from %s: %v, want itself and 2001:db8:200:2::10", lan2Host, own)
	}
	ula := r.sources("lan1", 60)
	if len(ula) != 2 || ula[netip.MustParseAddr("2001:db8:100::10")] == 0 || ula[netip.MustParseAddr("2001:db8:200::10")] == 0 {
		t.Errorf("sources the server saw from the ULA host: %v, want 2001:db8:100::10 and 2001:db8:200::10", ula)
	}
	r.sh("router", "ping", "-6", "-c1", "-W2", "-I", lan2Rtr.String(), v6Server.String())
}

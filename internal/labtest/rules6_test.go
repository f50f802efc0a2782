package labtest

import (
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ispbalance/ispbalance/internal/lab"
)

// A LAN host of the rule-file IPv6 test also has an address from a global
// prefix that ISP1 routes to the router, as a delegated prefix would be.
var (
	v6GlobalLAN  = netip.MustParsePrefix("2001:db8:100::/64")
	v6GlobalRtr  = netip.MustParseAddr("2001:db8:100::1")
	v6GlobalHost = netip.MustParseAddr("2001:db8:100::10")
)

// bothStates is kernelState with IPv6's rules, routes and firewall.
func (r *router) bothStates() string {
	r.t.Helper()
	return r.kernelState() + r.kernelState6()
}

// TestRules6: a rule file's ip6tables, ip -6 route and ip -6 rule lines
// and IPv6 forwards join the atomic plan: -d shows them, they work, the
// chains are not rewritten while nothing changes, stop removes them. Bad
// IPv6 lines and values, in a rule file or balance.conf, fail with the
// file and line and leave IPv4 and IPv6 exactly as they were.
func TestRules6(t *testing.T) {
	t.Parallel()
	r := newRouter(t, lab.Options{Prefix: "rul6"}, ispConf(1, 1))
	r.startServer()
	r.dualStackISPs()
	r.sh("router", "ip", "-6", "addr", "add", v6GlobalRtr.String()+"/64", "dev", "lan1", "nodad")
	r.sh("lan1", "ip", "-6", "addr", "add", v6GlobalHost.String()+"/64", "dev", "eth0", "nodad")
	r.sh("isp1", "ip", "-6", "route", "add", v6GlobalLAN.String(), "via", v6RouterISP(1).String())
	r.sh("inet", "ip", "-6", "route", "add", v6GlobalLAN.String(), "via", "2001:db8:f0:1::1")
	r.listen("inet", netip.AddrPortFrom(v6Server, 9999))
	r.listen("lan1", netip.AddrPortFrom(netip.IPv6Unspecified(), 80))
	r.listen("lan1", netip.AddrPortFrom(netip.IPv6Unspecified(), 81))
	web, other := netip.AddrPortFrom(v6GlobalHost, 80), netip.AddrPortFrom(v6GlobalHost, 81)
	// Without a firewall, the internet reaches both of the LAN host's
	// ports: what stays closed later is closed by ispbalance.
	r.sh("router", "sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1")
	for _, dst := range []netip.AddrPort{web, other} {
		r.answers("inet", dst, "before ispbalance")
	}
	r.mustRun()
	blockedPort := netip.AddrPortFrom(v6Server, 9999)
	r.answers("lan1", blockedPort, "before the rule file")
	if _, err := r.lab.Greet("inet", web, time.Second); err == nil {
		t.Fatalf("the IPv6 firewall lets the internet reach %s before any forward", web)
	}

	r.writeRules("firewall", "10.v6", `# IPv6 rules of the site
ip6tables -A FORWARD -p tcp --dport 9999 -j REJECT
ip6tables -N SITE6
ip6tables -A SITE6 -j RETURN
ip6tables -A INPUT -s fd00:100::10 -p tcp --dport 2222 -j SITE6
ip -6 route add 2001:db8:99::/48 via ${ISP1.gw6} dev ${ISP1.dev} table ${ISP1.table}
ip -6 rule add from 2001:db8:98::/48 lookup ${ISP2.table}
forward 80 2001:db8:100::10
forward 8080 [fd00:100::10]:81
`)
	dry := r.mustRun("-d")
	for _, want := range []string{
		"-A ISPB-U-FORWARD -p tcp --dport 9999 -j REJECT",
		"-A ISPB-U-INPUT -s fd00:100::10 -p tcp --dport 2222 -j ISPB-U-SITE6",
		"-A ISPB-U-PREROUTING -i wan2 -d 2001:db8:2::2 -p tcp --dport 8080 -j DNAT --to-destination [fd00:100::10]:81",
		"ip -6 route replace 2001:db8:99::/48 via fe80::",
		"ip -6 rule add priority 9400 from 2001:db8:98::/48 lookup 4202  # ",
	} {
		if !strings.Contains(dry, want) {
			t.Errorf("-d lacks %q:\n%s", want, dry)
		}
	}
	r.mustRun()

	if _, err := r.lab.Greet("lan1", blockedPort, time.Second); err == nil {
		t.Errorf("the LAN reaches %s despite the ip6tables REJECT line", blockedPort)
	}
	r.answers("lan1", netip.AddrPortFrom(v6Server, serverPort), "with the REJECT line for another port")
	r.answers("inet", web, "through forward to a global IPv6 host")
	if seen, err := r.lab.Greet("inet", other, time.Second); err == nil {
		t.Errorf("forward 80 also opened %s (the server saw %s)", other, seen)
	}
	for k := 1; k <= 2; k++ {
		r.answers("inet", netip.AddrPortFrom(v6RouterISP(k), 8080), "through forward to a ULA host via ISP"+itoa(k))
	}
	if out := r.sh("router", "ip", "-6", "route", "show", "table", "4201", "2001:db8:99::/48"); !strings.Contains(out, "via fe80::") || !strings.Contains(out, "proto 177") {
		t.Errorf("the ip -6 route line is not installed as ispbalance's: %q", out)
	}
	if out := r.sh("router", "ip", "-6", "rule"); !strings.Contains(out, "9400:\tfrom 2001:db8:98::/48 lookup 4202") {
		t.Errorf("the ip -6 rule line is not at 9400:\n%s", out)
	}

	// Removed by someone else, they show as drift, as IPv4's do.
	if st := r.mustRun("-s"); strings.Contains(st, "Installed differs") {
		t.Errorf("-s reports drift right after a rebuild:\n%s", st)
	}
	r.sh("router", "ip", "-6", "rule", "del", "priority", "9400")
	r.sh("router", "ip", "-6", "route", "del", "2001:db8:99::/48", "table", "4201")
	st := r.mustRun("-s")
	for _, want := range []string{"priority 9400 from 2001:db8:98::/48 lookup 4202", "2001:db8:99::/48 via fe80::"} {
		if !strings.Contains(st, "Installed differs") || !strings.Contains(st, want) {
			t.Errorf("-s does not list the deleted %q as drift:\n%s", want, st)
		}
	}
	r.mustRun()

	// Spelled unlike ip6tables-save (-s fd00:100::10 comes back /128):
	// learnt at the next rebuild, and then left alone.
	r.mustRun()
	if out := r.mustRun("-v"); strings.Contains(out, "ip6tables-restore") {
		t.Errorf("a rebuild with nothing new rewrote the IPv6 firewall:\n%s", out)
	}

	before := r.bothStates()
	conf := ispConf(1, 1)
	for _, c := range []struct{ text, want string }{
		{"ip -6 route add 10.0.0.0/8 dev lan1\n", "20.bad:1:"},
		{"# IPv4 value\nip6tables -A INPUT -s ${:lan.net} -j ACCEPT\n", "20.bad:2:"},
		{"ip6tables -A INPUT -s ${ISP1.prefix6} -j ACCEPT\nip6tables -A INPUT -s 2001:db8::/129 -j ACCEPT\n", "20.bad:2:"},
		{"\n\nip6tables -A INPUT -m nosuchmatch -j ACCEPT\n", "20.bad:3:"},
		{"ip6tables -A INPUT -p udp -j REJECT --reject-with tcp-reset\n", "20.bad:1:"},
		{"ip -6 route add 2001:db8:97::/48 via fe80::1 dev nosuchdev\n", "20.bad:1:"},
		{"forward 80 fe80::1\n", "20.bad:1:"},
		{"ip -6 rule add from fd00::/8 lookup 5 priority 9950\n", "20.bad:1:"},
	} {
		path := r.writeRules("firewall", "20.bad", c.text)
		out, err := r.run()
		t.Logf("%q -> %s", c.text, lastLine(out))
		if err == nil {
			t.Errorf("bad rule file accepted: %q", c.text)
		}
		if !strings.Contains(out, c.want) {
			t.Errorf("error for %q does not name %s:\n%s", c.text, c.want, out)
		}
		if after := r.bothStates(); after != before {
			t.Errorf("bad rule file %q changed the kernel state:\n--- before\n%s\n--- after\n%s", c.text, before, after)
		}
		os.Remove(path)
	}
	for _, bad := range []string{"ipv6_gateway=ISP1 2001:db8::zz\n", "ipv6_gateway=ISP1 ff02::1\n"} {
		r.writeConf(conf + bad)
		out, err := r.run()
		t.Logf("%q -> %s", bad, lastLine(out))
		if err == nil || !strings.Contains(out, ":4:") {
			t.Errorf("balance.conf with %q: %v, want an error naming line 4:\n%s", bad, err, out)
		}
		if after := r.bothStates(); after != before {
			t.Errorf("balance.conf with %q changed the kernel state", bad)
		}
	}
	r.writeConf(conf)

	r.mustRun("stop")
	save := r.sh("router", "ip6tables-save")
	routes := r.sh("router", "ip", "-6", "route", "show", "table", "all")
	rules := r.sh("router", "ip", "-6", "rule")
	if strings.Contains(save, "ISPB-") || strings.Contains(routes, "proto 177") || strings.Contains(rules, "9400:") {
		t.Errorf("stop left the rule file's IPv6 objects:\n%s\n%s\n%s", save, routes, rules)
	}
}

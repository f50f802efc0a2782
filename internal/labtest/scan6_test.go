package labtest

import (
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ispbalance/ispbalance/internal/lab"
)

// scanPorts are the well-known ports plus the lab's listeners above them.
func scanPorts() []int {
	ports := make([]int, 0, 1030)
	for p := 1; p <= 1024; p++ {
		ports = append(ports, p)
	}
	return append(ports, 2323, 8080, 9090)
}

// TestIPv6ScanRAAndPathMTU: in the dual-stack lab with a LAN host on a
// global prefix, a port scan from the ISP side of the router's global and
// link-local addresses and of the LAN host finds only ssh on the router
// (the same scan before ispbalance, and from the LAN after, finds every
// listener, so the scanner can see them). A real router advertisement
// (dnsmasq --enable-ra) reaches the router through the firewall and its
// gateway is followed, and path-MTU discovery through a 1280-byte hop
// works for the LAN (an ICMPv6 packet-too-big reaches the host), which it
// does not when that message is dropped.
func TestIPv6ScanRAAndPathMTU(t *testing.T) {
	t.Parallel()
	needTools(t, "dnsmasq")
	r := newRouter(t, lab.Options{Prefix: "scan6"}, ispConf(1, 1))
	r.startServer()
	r.dualStackISPs()
	lanRtr, lanHost := netip.MustParseAddr("2001:db8:77::1"), netip.MustParseAddr("2001:db8:77::10")
	r.sh("router", "ip", "-6", "addr", "add", lanRtr.String()+"/64", "dev", "lan1", "nodad")
	r.sh("lan1", "ip", "-6", "addr", "add", lanHost.String()+"/64", "dev", "eth0", "nodad")
	r.sh("isp1", "ip", "-6", "route", "add", "2001:db8:77::/64", "via", v6RouterISP(1).String())
	r.sh("router", "sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1")

	routerListens := []int{22, 53, 80, 443, 2323, 8080}
	for _, p := range routerListens {
		r.listen("router", netip.AddrPortFrom(netip.IPv6Unspecified(), uint16(p)))
	}
	hostListens := []int{22, 80, 443, 8080}
	for _, p := range hostListens {
		r.listen("lan1", netip.AddrPortFrom(netip.IPv6Unspecified(), uint16(p)))
	}
	wanLL := r.linkLocal("router", "wan1").WithZone("down0")
	targets := []struct {
		name string
		addr netip.Addr
		want []int // open from the ISP side once ispbalance runs
		all  []int // open before it
	}{
		{"router's global address", v6RouterISP(1), []int{22}, routerListens},
		{"router's link-local address", wanLL, []int{22}, routerListens},
		{"LAN host", lanHost, nil, hostListens},
	}
	scan := func(ns string, a netip.Addr) []int {
		t.Helper()
		// Resolve the neighbour first: the kernel queues only a few
		// packets per unresolved neighbour, and a thousand SYNs at once
		// would mostly be dropped before the first answer.
		r.lab.Exec(ns, "ping", "-6", "-c1", "-W1", a.String())
		open, err := r.lab.ScanTCP(ns, a, scanPorts(), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return open
	}
	for _, tg := range targets {
		if got := scan("isp1", tg.addr); !slices.Equal(got, tg.all) {
			t.Fatalf("before ispbalance the scan of the %s found %v, want every listener %v: the scanner cannot tell", tg.name, got, tg.all)
		}
	}

	r.mustRun()
	for _, tg := range targets {
		got := scan("isp1", tg.addr)
		t.Logf("scan of the %s (%s) from the ISP: open %v", tg.name, tg.addr, got)
		if !slices.Equal(got, tg.want) {
			t.Errorf("scan of the %s from the ISP side found %v open, want %v", tg.name, got, tg.want)
		}
	}
	if got := scan("lan1", lanRtr); !slices.Equal(got, routerListens) {
		t.Errorf("scan of the router from the LAN found %v, want every listener %v", got, routerListens)
	}

	// A router advertisement from ISP 1 naming another gateway: the
	// kernel must receive it through the firewall (accept_ra=2, set by
	// ispbalance because forwarding is on), and the rebuild follows it.
	r.sh("isp1", "ip", "-6", "addr", "add", "fe80::99/64", "dev", "down0", "nodad")
	r.sh("router", "ip", "-6", "route", "del", "default", "dev", "wan1")
	background(t, filepath.Join(r.dir, "dnsmasq-ra.log"), "ip", "netns", "exec", r.lab.NS("isp1"),
		"dnsmasq", "-k", "--interface=down0", "--bind-interfaces", "--enable-ra", "--dhcp-range=2001:db8:1::,ra-only,64",
		"--ra-param=down0,3,600", "--no-resolv", "--no-hosts", "-p", "0", "--log-facility=-",
		"--pid-file="+filepath.Join(r.dir, "dnsmasq-ra.pid"))
	lab.WaitFor(t, "a default route from ISP 1's router advertisement", 20*time.Second, func() bool {
		out, _ := r.lab.Exec("router", "ip", "-6", "route", "show", "default", "dev", "wan1", "proto", "ra")
		return strings.Contains(string(out), "via fe80::")
	})
	r.mustRun()
	if st := r.mustRun("-s"); !strings.Contains(st, "(ra)") {
		t.Errorf("-s does not show the RA-learned gateway:\n%s", st)
	}

	// Path MTU: ISP 1's hop to the internet carries 1280 bytes. A
	// 1400-byte ping from the LAN host with "don't fragment" draws a
	// packet-too-big, which must reach the host.
	for _, ns := range []string{"isp1", "inet"} {
		dev := "up0"
		if ns == "inet" {
			dev = "isp1"
		}
		r.sh(ns, "ip", "link", "set", dev, "mtu", "1280")
	}
	r.writeConf("ISP1 wan1 isp\nLAN lan1 lan\n") // ISP 1 alone: every packet takes the small hop
	r.mustRun()
	learned := func() bool {
		r.lab.Exec("lan1", "ping", "-6", "-c1", "-W1", "-M", "do", "-s", "1400", v6Server.String())
		out, _ := r.lab.Exec("lan1", "ip", "-6", "route", "get", v6Server.String())
		return strings.Contains(string(out), "mtu 1280")
	}
	// Dropped, the message never arrives: the host cannot learn.
	r.sh("router", "ip6tables", "-I", "FORWARD", "-p", "ipv6-icmp", "--icmpv6-type", "packet-too-big", "-j", "DROP")
	if learned() {
		t.Fatal("the LAN host learned the path MTU though packet-too-big was dropped: the check cannot tell")
	}
	r.sh("router", "ip6tables", "-D", "FORWARD", "-p", "ipv6-icmp", "--icmpv6-type", "packet-too-big", "-j", "DROP")
	lab.WaitFor(t, "the LAN host to learn the 1280-byte path MTU", 5*time.Second, learned)
	if out, err := r.lab.Exec("lan1", "ping", "-6", "-c1", "-W2", "-s", "1232", "-M", "do", v6Server.String()); err != nil {
		t.Errorf("a 1280-byte ping through the small hop failed: %v\n%s", err, out)
	}
	if out, err := r.lab.Exec("lan1", "ping", "-6", "-c1", "-W2", "-s", "1400", v6Server.String()); err != nil {
		t.Errorf("a fragmented 1448-byte ping failed: %v\n%s", err, out)
	}
}

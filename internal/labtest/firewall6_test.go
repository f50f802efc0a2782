package labtest

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ispbalance/ispbalance/internal/lab"
)

// IPv6 addresses of the dual-stack firewall test (documentation prefix):
// ISP1's segment 2001:db8:1::/64 (router ::2, ISP ::1), the LAN
// 2001:db8:100::/64 (router ::1, host ::10).
var (
	v6RouterWAN = netip.MustParseAddr("2001:db8:1::2")
	v6ISP       = netip.MustParseAddr("2001:db8:1::1")
	v6RouterLAN = netip.MustParseAddr("2001:db8:100::1")
	v6LANHost   = netip.MustParseAddr("2001:db8:100::10")
)

// dualStack gives ISP1's segment and the LAN global IPv6 addresses and
// routes, and turns IPv6 forwarding on in the router, as an ISP handing
// out IPv6 and an admin forwarding it to the LAN would.
func (r *router) dualStack() {
	r.t.Helper()
	r.sh("router", "ip", "-6", "addr", "add", v6RouterWAN.String()+"/64", "dev", "wan1", "nodad")
	r.sh("isp1", "ip", "-6", "addr", "add", v6ISP.String()+"/64", "dev", "down0", "nodad")
	r.sh("router", "ip", "-6", "addr", "add", v6RouterLAN.String()+"/64", "dev", "lan1", "nodad")
	r.sh("lan1", "ip", "-6", "addr", "add", v6LANHost.String()+"/64", "dev", "eth0", "nodad")
	r.sh("lan1", "ip", "-6", "route", "add", "default", "via", v6RouterLAN.String())
	r.sh("router", "ip", "-6", "route", "add", "default", "via", v6ISP.String(), "dev", "wan1")
	r.sh("isp1", "ip", "-6", "route", "add", "2001:db8:100::/64", "via", v6RouterWAN.String())
	r.sh("router", "sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1")
}

// linkLocal returns the link-local address of dev in ns.
func (r *router) linkLocal(ns, dev string) netip.Addr {
	r.t.Helper()
	out := r.sh(ns, "ip", "-6", "-o", "addr", "show", "dev", dev, "scope", "link")
	for _, f := range strings.Fields(out) {
		if p, err := netip.ParsePrefix(f); err == nil && p.Addr().IsLinkLocalUnicast() {
			return p.Addr()
		}
	}
	r.t.Fatalf("no link-local address on %s in %s:\n%s", dev, ns, out)
	return netip.Addr{}
}

func (r *router) listen(ns string, addr netip.AddrPort) {
	r.t.Helper()
	stop, err := r.lab.StartListener(ns, addr)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(stop)
}

// reachable waits up to limit for ns to complete a greeting with dst
// (addresses may still be settling), and reports whether it did.
func (r *router) reachable(ns string, dst netip.AddrPort, limit time.Duration) bool {
	for start := time.Now(); ; {
		if _, err := r.lab.Greet(ns, dst, time.Second); err == nil {
			return true
		}
		if time.Since(start) > limit {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFirewall6FromOutside: IPv6 gets the same default-deny policy as
// IPv4. From the ISP's side, the router's listeners answer neither over
// the uplink's global address nor over its link-local address, and LAN
// hosts are not reachable though IPv6 forwarding is on; ssh is open and
// rate-limited; neighbour discovery and echo work. Every "blocked" is
// preceded by the same listener answering an allowed client.
func TestFirewall6FromOutside(t *testing.T) {
	t.Parallel()
	r := newRouter(t, lab.Options{Prefix: "fw6"}, ispConf(1, 1))
	r.dualStack()
	wanLL := r.linkLocal("router", "wan1").WithZone("down0")
	const svcPort, sshPort = 2323, 22
	r.listen("router", netip.AddrPortFrom(netip.IPv6Unspecified(), svcPort))
	r.listen("router", netip.AddrPortFrom(netip.IPv6Unspecified(), sshPort))
	r.listen("lan1", netip.AddrPortFrom(netip.IPv6Unspecified(), 8080))
	r.listen("isp1", netip.AddrPortFrom(v6ISP, 9090))

	routerGlobal := netip.AddrPortFrom(v6RouterWAN, svcPort)
	routerLL := netip.AddrPortFrom(wanLL, svcPort)
	lanHost := netip.AddrPortFrom(v6LANHost, 8080)
	// Without ispbalance the hole is open: each listener answers the ISP.
	for _, dst := range []netip.AddrPort{routerGlobal, routerLL, lanHost} {
		if !r.reachable("isp1", dst, 5*time.Second) {
			t.Fatalf("before ispbalance, %s does not answer from the ISP side: the test cannot tell a blocked port", dst)
		}
	}

	r.mustRun()

	// The same listeners answer allowed clients.
	if !r.reachable("lan1", netip.AddrPortFrom(v6RouterLAN, svcPort), 2*time.Second) {
		t.Errorf("the router's service does not answer the LAN over IPv6")
	}
	if !r.reachable("lan1", netip.AddrPortFrom(v6ISP, 9090), 2*time.Second) {
		t.Errorf("the LAN host cannot reach the ISP side over IPv6 (forwarding LAN -> ISP)")
	}
	if !r.reachable("router", lanHost, 2*time.Second) {
		t.Errorf("the LAN host's listener does not answer the router")
	}
	// And nothing from outside.
	for _, dst := range []netip.AddrPort{routerGlobal, routerLL, lanHost} {
		if _, err := r.lab.Greet("isp1", dst, time.Second); err == nil {
			t.Errorf("%s answers from the ISP side over IPv6 while IPv4 is default-deny", dst)
		}
	}
	// Neighbour discovery and echo work: the router answers a ping from
	// the ISP over both addresses.
	r.sh("isp1", "ping", "-6", "-c1", "-W2", v6RouterWAN.String())
	r.sh("isp1", "ping", "-6", "-c1", "-W2", wanLL.String())
	// ssh is open from the Internet (one connection: the rate limit's
	// bucket holds six)...
	ssh := netip.AddrPortFrom(v6RouterWAN, sshPort)
	if !r.reachable("isp1", ssh, 2*time.Second) {
		t.Errorf("ssh does not answer the Internet over IPv6")
	}
	// ...and internet_ssh=no closes it in both families, while the LAN
	// still reaches it; with no new connection let through, the bucket
	// is not drawn on.
	r.writeConf("internet_ssh=no\n" + ispConf(1, 1))
	r.mustRun()
	if _, err := r.lab.Greet("isp1", ssh, time.Second); err == nil {
		t.Errorf("internet_ssh=no, but ssh answers the Internet over IPv6")
	}
	if !r.reachable("lan1", netip.AddrPortFrom(v6RouterLAN, sshPort), 2*time.Second) {
		t.Errorf("internet_ssh=no closed ssh to the LAN too")
	}
	// Open again, with the same per-source rate limit as IPv4: of nine
	// quick connections, the five left in the bucket answer.
	r.writeConf(ispConf(1, 1))
	r.mustRun()
	answered := 0
	for i := 0; i < 9; i++ {
		if _, err := r.lab.Greet("isp1", ssh, 500*time.Millisecond); err == nil {
			answered++
		}
	}
	if answered == 0 || answered > 6 {
		t.Errorf("%d of 9 IPv6 ssh connections from the Internet answered, want 1 to 6 (open, rate-limited)", answered)
	}
	if st := r.mustRun("-s"); !strings.Contains(st, "IPv6") {
		t.Errorf("status does not speak of the IPv6 firewall:\n%s", st)
	}

	// stop removes the IPv6 chains and leaves foreign ones.
	r.sh("router", "ip6tables", "-N", "FOREIGN6")
	r.mustRun("stop")
	save := r.sh("router", "ip6tables-save")
	if strings.Contains(save, "ISPB-") {
		t.Errorf("stop left IPv6 chains:\n%s", save)
	}
	if !strings.Contains(save, ":FOREIGN6") {
		t.Errorf("stop removed a foreign IPv6 chain:\n%s", save)
	}
	if !r.reachable("isp1", routerGlobal, 2*time.Second) {
		t.Errorf("after stop, the router's IPv6 listener does not answer as before")
	}
}

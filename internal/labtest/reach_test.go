package labtest

import (
	"net/netip"
	"time"
)

// A check that something is blocked passes just as well when nothing
// listens, or when the packets die on the way for reasons of the lab's
// own. So every such check first has the very listener answer a client
// that may reach it, over a path that differs from the forbidden one
// only in what the firewall decides.

// settle is how long a listener, a route or a rebuild gets to start
// answering an allowed client.
const settle = 5 * time.Second

// answers fails the test unless ns completes a greeting with dst within
// settle: without that answer, a later "blocked" would prove nothing.
func (r *router) answers(ns string, dst netip.AddrPort, when string) {
	r.t.Helper()
	if !r.reachable(ns, dst, settle) {
		r.t.Fatalf("%s, %s does not answer %s: the test could not tell a blocked port", when, dst, r.lab.NS(ns))
	}
}

// blocked checks that the listener at dst answers allowed, then that it
// does not answer forbidden.
func (r *router) blocked(allowed, forbidden string, dst netip.AddrPort, what string) {
	r.t.Helper()
	r.answers(allowed, dst, "for "+what)
	if seen, err := r.lab.Greet(forbidden, dst, time.Second); err == nil {
		r.t.Errorf("%s: %s answered %s (it saw %s)", what, dst, r.lab.NS(forbidden), seen)
	}
}

// routeLANFromInternet makes LAN j routable from the internet through
// ISP1, as for a customer whose ISP routes a network to the router:
// the internet host gets a route, ISP1 forwards to the router and lets
// the LAN's addresses back out through its spoofing filter. Only the
// router then stands between the internet and the LAN host.
func (r *router) routeLANFromInternet(j int) {
	r.t.Helper()
	lan := netip.PrefixFrom(r.lab.LANHost(j), 24).Masked().String()
	r.sh("isp1", "ip", "route", "add", lan, "via", r.lab.RouterISPAddr(1).String())
	r.sh("isp1", "iptables", "-w", "-I", "FORWARD", "-i", "down0", "-s", lan, "-j", "ACCEPT")
	r.sh("inet", "ip", "route", "add", lan, "via", "198.51.100.1")
}

// beforeBalancing runs check while the router, not yet balancing and so
// without a firewall, has a default route via ISP k's gateway: it shows
// that the internet reaches what the firewall is to close later. The
// route goes again before ispbalance runs, which is to find main as the
// lab left it.
func (r *router) beforeBalancing(k int, check func()) {
	r.t.Helper()
	gw := r.lab.ISPGateway(k).String()
	r.sh("router", "ip", "route", "add", "default", "via", gw)
	check()
	r.sh("router", "ip", "route", "del", "default", "via", gw)
}

package detect

import (
	"net"
	"net/netip"
	"strings"

	"github.com/ispbalance/ispbalance/internal/kernelnames"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Where a gateway came from, as reported in Link.GatewayFrom. A gateway read
// from a DHCP lease is reported as FromLeasePrefix followed by the file path.
const (
	FromConfig      = "config"
	FromRoute       = "route"
	FromPeer        = "peer"
	FromLeasePrefix = "lease:"
	FromGuess       = "guess"
	// FromHookPrefix is followed by the hook that told us ("hook:dhclient RENEW").
	FromHookPrefix     = "hook:"
	FromNetworkManager = "networkmanager"
)

// Reasons for Present == false, as reported in Link.Problem.
const (
	ProblemNoDevice  = "no such device"
	ProblemNoAddress = "no IPv4 address"
)

// splitDevice turns a configured device name into the kernel link name and,
// for an alias such as "eth3:0", the address label. `ip addr` prints VLANs
// and other stacked links as "eth0.10@bond0"; people copy that into the
// configuration, so the "@parent" part is dropped wherever it appears.
func splitDevice(dev string) (kernel, label string) {
	name := dev
	if at := strings.IndexByte(name, '@'); at >= 0 {
		end := len(name)
		if c := strings.IndexByte(name[at:], ':'); c >= 0 {
			end = at + c
		}
		name = name[:at] + name[end:]
	}
	if c := strings.IndexByte(name, ':'); c >= 0 {
		return name[:c], name
	}
	return name, ""
}

// KernelName is the kernel link a configured device name refers to:
// "eth3" for the alias "eth3:0", "eth0.10" for "eth0.10@bond0".
func KernelName(dev string) string {
	kernel, _ := splitDevice(dev)
	return kernel
}

// view indexes one set of netlink dumps for repeated per-device lookups.
type view struct {
	links  map[string]*netlink.LinkAttrs
	addrs  map[int][]netlink.Addr
	routes []netlink.Route
}

func newView(links []netlink.Link, addrs []netlink.Addr, routes []netlink.Route) *view {
	v := &view{
		links:  make(map[string]*netlink.LinkAttrs, len(links)),
		addrs:  make(map[int][]netlink.Addr),
		routes: routes,
	}
	for _, l := range links {
		a := l.Attrs()
		v.links[a.Name] = a
	}
	for _, a := range addrs {
		v.addrs[a.LinkIndex] = append(v.addrs[a.LinkIndex], a)
	}
	return v
}

// describe fills in everything about one requested device that the kernel
// dumps can tell, and returns the gateway candidates it found on the way.
// Lease files are the caller's business.
func (v *view) describe(req Request) (Link, gatewayFacts) {
	kernel, label := splitDevice(req.Device)
	l := Link{Device: req.Device, Kernel: kernel}
	facts := gatewayFacts{Config: req.Gateway}

	attrs, ok := v.links[kernel]
	if !ok {
		l.Problem = ProblemNoDevice
		return l, facts
	}
	l.Index = attrs.Index
	l.Up = linkUp(attrs)
	l.AdminDown = attrs.Flags&net.FlagUp == 0
	l.PointToPoint = attrs.Flags&net.FlagPointToPoint != 0

	a, ok := pickAddr(v.addrs[attrs.Index], kernel, label)
	if !ok {
		l.Problem = ProblemNoAddress
		if label != "" {
			l.Problem = ProblemNoAddress + " labelled " + label
		}
		return l, facts
	}
	l.Addr, l.Net, l.Peer, ok = addrFacts(a)
	if !ok {
		l.Problem = ProblemNoAddress
		return l, facts
	}
	l.Present = true
	if l.Peer.IsValid() {
		l.PointToPoint = true
	}

	facts.Addr = l.Addr
	facts.Peer = l.Peer
	facts.Route = routeGateway(v.routes, l.Index, l.Addr)
	return l, facts
}

// linkUp wants all three signals because each alone lies somewhere: admin
// up says nothing about the cable, carrier says nothing about whether the
// administrator wants the link used, and operational state stays "unknown"
// forever on drivers that do not report it (ppp, tun), so unknown counts.
func linkUp(a *netlink.LinkAttrs) bool {
	if a.Flags&net.FlagUp == 0 {
		return false
	}
	if a.OperState != netlink.OperUp && a.OperState != netlink.OperUnknown {
		return false
	}
	return a.RawFlags&unix.IFF_LOWER_UP != 0
}

// pickAddr chooses the device's IPv4 address among those on its link. The
// kernel labels every IPv4 address, by default with the link name, so an
// alias owns exactly the addresses carrying its label, and the plain device
// prefers the addresses labelled with its own name over its aliases'.
// Primary addresses come before secondary ones in the same subnet.
func pickAddr(addrs []netlink.Addr, kernel, label string) (netlink.Addr, bool) {
	want := label
	if want == "" {
		want = kernel
	}
	best, bestRank := netlink.Addr{}, 0
	for _, a := range addrs {
		if a.IP.To4() == nil {
			continue
		}
		rank := 1 // any address on the link
		if a.Label == want {
			rank = 3
			if a.Flags&unix.IFA_F_SECONDARY != 0 {
				rank = 2
			}
		} else if label != "" {
			continue // an alias never borrows another label's address
		}
		if rank > bestRank {
			best, bestRank = a, rank
		}
	}
	return best, bestRank > 0
}

// addrFacts converts a netlink address. For a point-to-point address the
// prefix belongs to the peer (`ip addr add A peer B/len`), and the network
// is the one the kernel routes to, i.e. the peer's.
func addrFacts(a netlink.Addr) (addr, network netip.Prefix, peer netip.Addr, ok bool) {
	local, ok := ipv4(a.IP)
	if !ok || a.IPNet == nil {
		return addr, network, peer, false
	}
	if a.Peer != nil {
		if p, isV4 := ipv4(a.Peer.IP); isV4 && p != local {
			bits, _ := a.Peer.Mask.Size()
			return netip.PrefixFrom(local, bits), netip.PrefixFrom(p, bits).Masked(), p, true
		}
	}
	bits, _ := a.Mask.Size()
	addr = netip.PrefixFrom(local, bits)
	return addr, addr.Masked(), peer, addr.IsValid()
}

func ipv4(ip net.IP) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip)
	a = a.Unmap()
	return a, ok && a.Is4()
}

// routeGateway picks the gateway of the best main-table route through the
// device's link. A gateway on the device's own subnet (or a route whose
// preferred source is the device's address) is preferred over one that
// merely leaves through the same link, which matters for aliases: they
// share the link index with their parent but not its gateway. Then default
// routes beat more specific ones, then the lower metric wins. Routes tagged
// with ispbalance's own protocol are skipped so a rebuild never learns from
// what the previous one installed.
func routeGateway(routes []netlink.Route, index int, addr netip.Prefix) netip.Addr {
	type candidate struct {
		gw          netip.Addr
		fits, deflt bool
		metric      int
	}
	var best *candidate
	better := func(c candidate) bool {
		switch {
		case best == nil:
			return true
		case c.fits != best.fits:
			return c.fits
		case c.deflt != best.deflt:
			return c.deflt
		default:
			return c.metric < best.metric
		}
	}
	subnet := addr.Masked()
	consider := func(r *netlink.Route, linkIndex int, gwIP net.IP) {
		if linkIndex != index || gwIP == nil {
			return
		}
		gw, ok := ipv4(gwIP)
		if !ok || gw.IsUnspecified() {
			return
		}
		src, _ := ipv4(r.Src)
		c := candidate{
			gw:     gw,
			fits:   subnet.Contains(gw) || (src.IsValid() && src == addr.Addr()),
			deflt:  r.Dst == nil || isDefault(r.Dst),
			metric: r.Priority,
		}
		if better(c) {
			best = &c
		}
	}
	for i := range routes {
		r := &routes[i]
		if r.Table != unix.RT_TABLE_MAIN || r.Protocol == kernelnames.RouteProtocol {
			continue
		}
		consider(r, r.LinkIndex, r.Gw)
		for _, nh := range r.MultiPath {
			consider(r, nh.LinkIndex, nh.Gw)
		}
	}
	if best == nil {
		return netip.Addr{}
	}
	return best.gw
}

func isDefault(n *net.IPNet) bool {
	ones, _ := n.Mask.Size()
	return ones == 0
}

// gatewayFacts holds every gateway candidate for one device, in the raw.
type gatewayFacts struct {
	Config    netip.Addr   // the configuration's GATEWAY column
	Hook      netip.Addr   // from a hook's lease record
	HookFrom  string       // which hook recorded it
	NM        netip.Addr   // from NetworkManager over D-Bus
	Route     netip.Addr   // from a main-table route
	Peer      netip.Addr   // point-to-point peer
	Lease     netip.Addr   // from a DHCP lease
	LeasePath string       // the lease file Lease came from
	Addr      netip.Prefix // the device's own address; invalid when absent
}

// chooseGateway applies the original's order: configuration, route, peer,
// lease, then a guess at the subnet's first host; a hook's record of the
// current lease comes right after the configuration (it is newer than any
// route a DHCP client left behind), and NetworkManager's word right before
// the lease files (it is what they would say, only fresher). Only the configuration is
// trusted blindly; any discovered candidate equal to the device's own
// address is nonsense (a misconfigured route or a hostile lease) and is
// passed over.
func chooseGateway(f gatewayFacts) (netip.Addr, string) {
	if f.Config.IsValid() {
		return f.Config, FromConfig
	}
	own := f.Addr.Addr()
	usable := func(a netip.Addr) bool { return a.IsValid() && a != own }
	switch {
	case usable(f.Hook):
		return f.Hook, FromHookPrefix + f.HookFrom
	case usable(f.Route):
		return f.Route, FromRoute
	case usable(f.Peer):
		return f.Peer, FromPeer
	case usable(f.NM):
		return f.NM, FromNetworkManager
	case usable(f.Lease):
		return f.Lease, FromLeasePrefix + f.LeasePath
	}
	if g := guessGateway(f.Addr); g.IsValid() {
		return g, FromGuess
	}
	return netip.Addr{}, ""
}

// needsLease reports whether a lease could still improve on a choice.
func needsLease(from string) bool { return from == "" || from == FromGuess }

// guessGateway returns the subnet's first host, the usual place for an ISP's
// router. On a /31 (RFC 3021) the only other address is the gateway; a /32
// has nobody to guess, and if the first host is the device itself the
// guess is known to be wrong, so there is none.
func guessGateway(p netip.Prefix) netip.Addr {
	if !p.IsValid() || !p.Addr().Is4() || p.Bits() >= 32 {
		return netip.Addr{}
	}
	network := p.Masked().Addr()
	if p.Bits() == 31 {
		if p.Addr() == network {
			return network.Next()
		}
		return network
	}
	g := network.Next()
	if g == p.Addr() {
		return netip.Addr{}
	}
	return g
}

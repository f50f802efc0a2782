package plan

import (
	"net/netip"
	"slices"
	"sort"

	"github.com/ispbalance/ispbalance/internal/config"
	kn "github.com/ispbalance/ispbalance/internal/kernelnames"
)

// IPv6 mirrors IPv4: the same table numbers, priorities and marks (the
// kernel keeps each family's routes and rules apart), so an ISP is the
// same number in `ip rule` and `ip -6 rule`.
//
// How LAN connections pick an ISP depends on ipv6_nat. With auto, a new
// connection gets an ISP by weight and keeps it, as in IPv4. With
// failover and off, hosts numbered from an ISP's delegated prefix go by
// that ISP (RFC 8678 style: the host chose its ISP when it chose its
// source address). Whatever leaves by an ISP whose prefix it does not
// carry is translated (not with off): mapped 1:1 into the ISP's delegated
// prefix when one is long enough for the LAN's prefix, so hosts stay
// apart and reachable where the firewall allows, else NAT66 to the
// uplink address. The 1:1 mapping uses NETMAP rather than the stateless
// SNPT/DNPT targets: those run after connection tracking has recorded
// the untranslated addresses, so replies would arrive as new connections
// and the default-deny forward policy would drop them.

var defaultRoute6 = netip.MustParsePrefix("::/0")

// ipv6ISPs lists the ISPs that carry IPv6.
func ipv6ISPs(p Plan) []ISP {
	var out []ISP
	for _, isp := range p.ISPs {
		if isp.HasIPv6() {
			out = append(out, isp)
		}
	}
	return out
}

func planRoutes6(p Plan) []Route {
	var routes []Route
	var routing []ISP
	for _, isp := range ipv6ISPs(p) {
		if isp.Addr6.IsValid() {
			routes = append(routes,
				Route{Table: isp.Table, Dst: defaultRoute6, Gateway: isp.Gateway6, Device: isp.Kernel},
				Route{Table: isp.Table, Dst: isp.Addr6.Masked(), Device: isp.Kernel})
		} else {
			// Without an address of its own on the uplink the kernel
			// would pick any global address as the source, another ISP's
			// included; the router's address from the delegation is the
			// one this ISP routes back.
			routes = append(routes, Route{Table: isp.Table, Dst: defaultRoute6, Gateway: isp.Gateway6, Device: isp.Kernel, Src: isp.Src6})
		}
		if isp.Routing6 {
			routing = append(routing, isp)
		}
	}
	for _, isp := range ipv6ISPs(p) {
		if isp.Delegated6.IsValid() {
			// The ISP routes all of its delegation to the router; what no
			// LAN uses must be refused here (RFC 7084, WPD-5), or it would
			// follow the default route back to the ISP and loop.
			routes = append(routes, Route{Table: mainTable, Dst: isp.Delegated6, Unreachable: true})
		}
	}
	switch {
	case len(routing) == 0:
	case p.Mode == config.Failover || len(routing) == 1:
		best := heaviest(routing)
		routes = append(routes, Route{Table: kn.BalanceTable, Dst: defaultRoute6, Gateway: best.Gateway6, Device: best.Kernel})
	default:
		r := Route{Table: kn.BalanceTable, Dst: defaultRoute6}
		for _, isp := range routing {
			r.Nexthops = append(r.Nexthops, Nexthop{Gateway: isp.Gateway6, Device: isp.Kernel, Weight: isp.Weight})
		}
		routes = append(routes, r)
	}
	return routes
}

func planRules6(p Plan) []Rule {
	isps := ipv6ISPs(p)
	if len(isps) == 0 {
		return nil
	}
	rules := []Rule{{Priority: kn.PrioSuppressMain, Table: mainTable, SuppressPrefixlen: 0, IPv6: true}}
	for _, isp := range isps {
		rules = append(rules,
			Rule{Priority: kn.PrioFwmarkBase + isp.Index, Table: isp.Table, Mark: isp.Mark, Mask: kn.MarkMask, SuppressPrefixlen: -1, IPv6: true},
			Rule{Priority: kn.PrioSourceBase + isp.Index, Table: isp.Table, Src: netip.PrefixFrom(isp.Src6, 128), SuppressPrefixlen: -1, IPv6: true},
			Rule{Priority: kn.PrioOifBase + isp.Index, Table: isp.Table, Oif: isp.Kernel, SuppressPrefixlen: -1, IPv6: true},
		)
		if isp.Delegated6.IsValid() && isp.Routing6 {
			// Hosts numbered from the ISP's delegation leave by it; while
			// it is down they fall through to the live ISPs, translated.
			rules = append(rules, Rule{Priority: kn.PrioSourceBase + isp.Index, Table: isp.Table, Src: isp.Delegated6, SuppressPrefixlen: -1, IPv6: true})
		}
	}
	rules = append(rules, Rule{Priority: kn.PrioBalance, Table: kn.BalanceTable, SuppressPrefixlen: -1, IPv6: true})
	sort.SliceStable(rules, func(i, j int) bool { return rules[i].Priority < rules[j].Priority })
	return rules
}

// planSysctls6 lets the router forward IPv6 for its LANs. Uplinks first
// get accept_ra=2: with forwarding on, the kernel otherwise ignores
// router advertisements, and the ISPs' RA-learned gateways would expire.
func planSysctls6(p Plan) []Sysctl {
	isps := ipv6ISPs(p)
	if len(isps) == 0 || len(p.LANs) == 0 {
		return nil
	}
	var s []Sysctl
	for _, isp := range isps {
		s = append(s, Sysctl{Path: []string{"net", "ipv6", "conf", isp.Kernel, "accept_ra"}, Value: "2"})
	}
	return append(s, Sysctl{Path: []string{"net", "ipv6", "conf", "all", "forwarding"}, Value: "1"})
}

// mangleTable6 marks IPv6 connections as mangleTable marks IPv4 ones.
// LANs are matched by device: their IPv6 prefixes come and go with the
// ISPs' delegations.
func mangleTable6(p Plan) Table {
	mask := kn.FormatMark(kn.MarkMask)
	pre := Chain{Name: kn.ChainPrerouting, Rules: [][]string{
		r("-j", "CONNMARK", "--restore-mark", "--nfmask", mask, "--ctmask", mask),
		r("-m", "mark", "!", "--mark", "0x0/"+mask, "-j", "RETURN"),
	}}
	var chains []Chain
	var routing []ISP
	for _, isp := range ipv6ISPs(p) {
		chains = append(chains, markChain(isp))
		pre.add(r("-i", isp.Kernel, "-m", "conntrack", "--ctstate", "NEW", "-j", kn.MarkChain(isp.Name)))
		if isp.Routing6 {
			routing = append(routing, isp)
		}
	}
	if p.IPv6NAT != config.IPv6NATOff {
		for _, lan := range p.LANs {
			if p.IPv6NAT == config.IPv6NATFailover {
				// Hosts with a live ISP's prefix go by source-prefix rules.
				for _, isp := range routing {
					if isp.Delegated6.IsValid() {
						pre.add(r("-s", isp.Delegated6.String(), "-i", lan.Kernel, "-j", "RETURN"))
					}
				}
			}
			pre.add(r("-i", lan.Kernel, "-m", "conntrack", "--ctstate", "NEW", "-m", "addrtype", "!", "--dst-type", "LOCAL", "-j", kn.ChainBalance))
		}
	}
	balance := Chain{Name: kn.ChainBalance, Rules: balanceCascade(p.Mode, routing)}
	forward := Chain{Name: kn.ChainForward, Rules: mssClamps(ipv6ISPs(p))}
	chains = append([]Chain{pre, balance, forward}, chains...)
	return Table{Name: "mangle", Chains: chains, Jumps: []Jump{{"PREROUTING", kn.ChainPrerouting}, {"FORWARD", kn.ChainForward}}}
}

// Rules are spelled as ip6tables-save prints them (addresses before
// devices), so that the drift check and the unchanged-rebuild check see
// them as installed.

// natTable6 translates LAN connections that leave by an ISP whose
// prefix they do not carry (see the top of this file).
func natTable6(p Plan) Table {
	pre := Chain{Name: kn.ChainPrerouting}
	post := Chain{Name: kn.ChainPostrouting}
	if len(p.LANs) == 0 || p.IPv6NAT == config.IPv6NATOff {
		return natTable6Of(pre, post)
	}
	for _, isp := range ipv6ISPs(p) {
		for _, own := range ownPrefixes6(isp) {
			post.add(r("-s", own.String(), "-o", isp.Kernel, "-j", "RETURN"))
		}
		for _, m := range prefixMaps6(p, isp) {
			post.add(r("-s", m.lan.String(), "-o", isp.Kernel, "-j", "NETMAP", "--to", m.outside.String()))
			// Inbound to the mapped prefix reaches the host behind it,
			// where the forward policy lets it through at all.
			pre.add(r("-d", m.outside.String(), "-i", isp.Kernel, "-j", "NETMAP", "--to", m.lan.String()))
		}
		if isp.Addr6.IsValid() {
			post.add(r("-o", isp.Kernel, "-j", "MASQUERADE"))
		} else {
			// MASQUERADE would take any global address of the router;
			// the ISP routes back only its own delegation.
			post.add(r("-o", isp.Kernel, "-j", "SNAT", "--to-source", isp.Src6.String()))
		}
	}
	return natTable6Of(pre, post)
}

func natTable6Of(pre, post Chain) Table {
	return Table{Name: "nat", Chains: []Chain{pre, post},
		Jumps: []Jump{{"PREROUTING", kn.ChainPrerouting}, {"POSTROUTING", kn.ChainPostrouting}}}
}

// ownPrefixes6 are the sources an ISP carries untranslated: its uplink's
// prefix and its delegation.
func ownPrefixes6(isp ISP) []netip.Prefix {
	var own []netip.Prefix
	if isp.Addr6.IsValid() {
		own = append(own, isp.Addr6.Masked())
	}
	if isp.Delegated6.IsValid() && (len(own) == 0 || !isp.Delegated6.Overlaps(own[0])) {
		own = append(own, isp.Delegated6)
	}
	return own
}

// delegatedSource finds the router's LAN address inside a delegation:
// the source an ISP with a link-local uplink routes back.
func delegatedSource(cfg *config.Config, in Input, delegated netip.Prefix) netip.Addr {
	if !delegated.IsValid() {
		return netip.Addr{}
	}
	for _, s := range cfg.LANs() {
		if l, ok := in.Links[s.Device]; ok && l.Present && delegated.Contains(l.V6Addr.Addr()) {
			return l.V6Addr.Addr()
		}
	}
	return netip.Addr{}
}

// prefixMap6 is one LAN prefix mapped 1:1 into an ISP's delegation.
type prefixMap6 struct {
	lan, outside netip.Prefix
}

// prefixMaps6 maps each LAN prefix that the ISP does not carry into the
// ISP's delegation, keeping the LAN's subnet bits (a ULA's fd00:a:b:3::/64
// leaves by a /56 delegation as its subnet 3). A LAN prefix shorter than
// the delegation cannot fit, and a target that collides with a LAN
// numbered from the delegation, or with another LAN's target, would mix
// two networks' hosts: those LANs fall back to NAT66.
func prefixMaps6(p Plan, isp ISP) []prefixMap6 {
	d := isp.Delegated6
	if !d.IsValid() {
		return nil
	}
	var maps []prefixMap6
	taken := func(t netip.Prefix) bool {
		for _, lan := range p.LANs {
			if lan.Addr6.IsValid() && lan.Addr6.Masked().Overlaps(t) {
				return true
			}
		}
		for _, m := range maps {
			if m.outside.Overlaps(t) {
				return true
			}
		}
		return false
	}
	for _, lan := range p.LANs {
		l := lan.Addr6.Masked()
		if !l.IsValid() || l.Bits() < d.Bits() || slices.ContainsFunc(ownPrefixes6(isp), l.Overlaps) {
			continue
		}
		if t := graft(d, l); !taken(t) {
			maps = append(maps, prefixMap6{lan: l, outside: t})
		}
	}
	return maps
}

// graft returns the prefix of l's length that starts with d and keeps l's
// bits after d's length.
func graft(d, l netip.Prefix) netip.Prefix {
	db, lb := d.Addr().As16(), l.Addr().As16()
	var out [16]byte
	for bit := 0; bit < l.Bits(); bit++ {
		src := lb
		if bit < d.Bits() {
			src = db
		}
		if src[bit/8]&(0x80>>(bit%8)) != 0 {
			out[bit/8] |= 0x80 >> (bit % 8)
		}
	}
	return netip.PrefixFrom(netip.AddrFrom16(out), l.Bits())
}

// planRouting6 decides which ISPs carry the LAN's IPv6: those routing
// IPv4 whose IPv6 the monitor has not judged down. When that leaves none
// but some route IPv4 with IPv6 to offer, IPv6 goes through all of those
// as a last resort, as IPv4 does: a probe target that stops answering
// over IPv6 must not take the LAN's IPv6 away. It reports the last resort.
func planRouting6(cfg *config.Config, isps []ISP, down6 map[string]bool) bool {
	routing, candidates := false, 0
	for i := range isps {
		isps[i].Routing6 = isps[i].Routing && isps[i].HasIPv6() && !down6[isps[i].Name]
		routing = routing || isps[i].Routing6
		if isps[i].Routing && isps[i].HasIPv6() {
			candidates++
		}
	}
	if routing || candidates == 0 || cfg.LastResort == config.LastResortUnreachable {
		return false
	}
	for i := range isps {
		isps[i].Routing6 = isps[i].Routing && isps[i].HasIPv6()
	}
	return true
}

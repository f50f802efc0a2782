package plan

import (
	"net/netip"
	"sort"

	"github.com/ispbalance/ispbalance/internal/config"
	kn "github.com/ispbalance/ispbalance/internal/kernelnames"
)

// IPv6 mirrors IPv4: the same table numbers, priorities and marks (the
// kernel keeps each family's routes and rules apart), so an ISP is the
// same number in `ip rule` and `ip -6 rule`. A LAN connection is given an
// ISP by weight when it starts and keeps it, and leaves with its source
// translated to that ISP's address (NAT66): the LAN may be numbered from
// a ULA, or from any one ISP's prefix, and still balance and fail over
// across all of them.

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
		routes = append(routes,
			Route{Table: isp.Table, Dst: defaultRoute6, Gateway: isp.Gateway6, Device: isp.Kernel},
			Route{Table: isp.Table, Dst: isp.Addr6.Masked(), Device: isp.Kernel})
		if isp.Routing6 {
			routing = append(routing, isp)
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
			Rule{Priority: kn.PrioSourceBase + isp.Index, Table: isp.Table, Src: netip.PrefixFrom(isp.Addr6.Addr(), 128), SuppressPrefixlen: -1, IPv6: true},
			Rule{Priority: kn.PrioOifBase + isp.Index, Table: isp.Table, Oif: isp.Kernel, SuppressPrefixlen: -1, IPv6: true},
		)
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
	for _, lan := range p.LANs {
		pre.add(r("-i", lan.Kernel, "-m", "conntrack", "--ctstate", "NEW", "-m", "addrtype", "!", "--dst-type", "LOCAL", "-j", kn.ChainBalance))
	}
	balance := Chain{Name: kn.ChainBalance, Rules: balanceCascade(p.Mode, routing)}
	forward := Chain{Name: kn.ChainForward, Rules: mssClamps(ipv6ISPs(p))}
	chains = append([]Chain{pre, balance, forward}, chains...)
	return Table{Name: "mangle", Chains: chains, Jumps: []Jump{{"PREROUTING", kn.ChainPrerouting}, {"FORWARD", kn.ChainForward}}}
}

// natTable6 translates LAN connections to the address of the ISP they
// leave by (NAT66), so any LAN prefix works through every ISP.
func natTable6(p Plan) Table {
	post := Chain{Name: kn.ChainPostrouting}
	if len(p.LANs) > 0 {
		for _, isp := range ipv6ISPs(p) {
			post.add(r("-o", isp.Kernel, "-j", "MASQUERADE"))
		}
	}
	return Table{Name: "nat", Chains: []Chain{post}, Jumps: []Jump{{"POSTROUTING", kn.ChainPostrouting}}}
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

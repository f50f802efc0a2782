package apply

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	kn "github.com/ispbalance/ispbalance/internal/kernelnames"
	"github.com/ispbalance/ispbalance/internal/plan"
)

// routingState is what ispbalance owns in the routing subsystem now: the
// rules in its priority range and the routes in its tables.
type routingState struct {
	rules  []netlink.Rule
	routes []netlink.Route
}

func (a *Applier) readRouting() (routingState, error) {
	var st routingState
	rules, err := a.nl.RuleList(netlink.FAMILY_V4)
	if err != nil {
		return st, fmt.Errorf("listing policy rules: %w", err)
	}
	for _, r := range rules {
		if r.Priority >= kn.PrioMin && r.Priority <= kn.PrioMax {
			st.rules = append(st.rules, r)
		}
	}
	routes, err := a.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return st, fmt.Errorf("listing routes: %w", err)
	}
	for _, r := range routes {
		// Routes of rule files may live in any table, main included; the
		// protocol tag says they are ours.
		if kn.IsOurTable(r.Table) || r.Protocol == kn.RouteProtocol {
			st.routes = append(st.routes, r)
		}
	}
	return st, nil
}

// ruleKey identifies a rule by what it matches and where it sends
// packets; two rules with the same key are the same rule to us.
func ruleKey(r netlink.Rule) string {
	src := ""
	if r.Src != nil {
		src = r.Src.String()
	}
	var mask uint32
	if r.Mask != nil {
		mask = *r.Mask
	}
	dst := ""
	if r.Dst != nil {
		dst = r.Dst.String()
	}
	return fmt.Sprintf("%d|%d|%x/%x|%s|%s|%s|%s|%d", r.Priority, r.Table, r.Mark, mask, src, dst, r.IifName, r.OifName, r.SuppressPrefixlen)
}

func routeKey(r netlink.Route) string {
	dst := "0.0.0.0/0"
	if r.Dst != nil {
		dst = r.Dst.String()
	}
	return fmt.Sprintf("%d|%s|%d", r.Table, dst, r.Priority)
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func toNetlinkRule(r plan.Rule) netlink.Rule {
	nr := netlink.NewRule()
	nr.Family = netlink.FAMILY_V4
	nr.Priority = r.Priority
	nr.Table = r.Table
	if r.Mask != 0 {
		nr.Mark = r.Mark
		mask := r.Mask
		nr.Mask = &mask
	}
	if r.Src.IsValid() {
		nr.Src = ipNet(r.Src)
	}
	if r.Dst.IsValid() {
		nr.Dst = ipNet(r.Dst)
	}
	nr.IifName = r.Iif
	nr.OifName = r.Oif
	nr.SuppressPrefixlen = r.SuppressPrefixlen
	return *nr
}

func (a *Applier) toNetlinkRoute(r plan.Route, index map[string]int) (netlink.Route, error) {
	nr := netlink.Route{Family: netlink.FAMILY_V4, Table: r.Table, Dst: ipNet(r.Dst), Protocol: kn.RouteProtocol, Priority: r.Metric}
	dev := func(name string) (int, error) {
		i, ok := index[name]
		if !ok {
			return 0, fmt.Errorf("device %s does not exist", name)
		}
		return i, nil
	}
	if len(r.Nexthops) > 0 {
		for _, nh := range r.Nexthops {
			i, err := dev(nh.Device)
			if err != nil {
				return nr, err
			}
			info := &netlink.NexthopInfo{LinkIndex: i, Gw: nh.Gateway.AsSlice(), Hops: nh.Weight - 1}
			if nh.OnLink {
				info.Flags = int(netlink.FLAG_ONLINK)
			}
			nr.MultiPath = append(nr.MultiPath, info)
		}
		return nr, nil
	}
	if r.Device != "" {
		i, err := dev(r.Device)
		if err != nil {
			return nr, err
		}
		nr.LinkIndex = i
	}
	if r.Gateway.IsValid() {
		nr.Gw = r.Gateway.AsSlice()
	} else {
		nr.Scope = netlink.SCOPE_LINK
	}
	if r.Src.IsValid() {
		nr.Src = r.Src.AsSlice()
	}
	if r.OnLink {
		nr.Flags = int(netlink.FLAG_ONLINK)
	}
	return nr, nil
}

// setRouting makes our rules and routes exactly the wanted ones. Routes
// are replaced in place (atomic per route, so the default route never
// disappears), rules are added before stale ones are deleted, so no
// packet finds a gap.
func (a *Applier) setRouting(now routingState, want desiredRouting) error {
	wantRoutes := map[string]bool{}
	for i, r := range want.routes {
		r := r
		if err := a.nl.RouteReplace(&r); err != nil {
			return fmt.Errorf("replacing route %s: %w", want.routeText[i], err)
		}
		a.echo("ip route replace %s", want.routeText[i])
		wantRoutes[routeKey(r)] = true
	}
	have := map[string]bool{}
	for _, r := range now.rules {
		have[ruleKey(r)] = true
	}
	wantRules := map[string]bool{}
	for i, r := range want.rules {
		r := r
		k := ruleKey(r)
		wantRules[k] = true
		if have[k] {
			continue
		}
		if err := a.nl.RuleAdd(&r); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("adding rule %s: %w", want.ruleText[i], err)
		}
		a.echo("ip rule add %s", want.ruleText[i])
	}
	for _, r := range now.rules {
		r := r
		if wantRules[ruleKey(r)] {
			continue
		}
		if err := a.nl.RuleDel(&r); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("deleting stale rule %s: %w", ruleKey(r), err)
		}
		a.echo("ip rule del %s", describeRule(r))
	}
	for _, r := range now.routes {
		r := r
		if wantRoutes[routeKey(r)] {
			continue
		}
		if err := a.nl.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("deleting stale route %s: %w", describeRoute(r), err)
		}
		a.echo("ip route del %s", describeRoute(r))
	}
	return nil
}

// desiredRouting is a target for setRouting, with the text echoed for
// each object under -v.
type desiredRouting struct {
	rules     []netlink.Rule
	ruleText  []string
	routes    []netlink.Route
	routeText []string
}

// restorable turns listed rules and routes back into a target, for rollback.
func restorable(st routingState) desiredRouting {
	rules := make([]netlink.Rule, 0, len(st.rules))
	for _, r := range st.rules {
		nr := netlink.NewRule()
		nr.Family = netlink.FAMILY_V4
		nr.Priority, nr.Table, nr.Mark, nr.Mask = r.Priority, r.Table, r.Mark, r.Mask
		nr.Src, nr.Dst, nr.OifName, nr.IifName = r.Src, r.Dst, r.OifName, r.IifName
		nr.SuppressPrefixlen = r.SuppressPrefixlen
		rules = append(rules, *nr)
	}
	routes := append([]netlink.Route(nil), st.routes...)
	sort.SliceStable(routes, func(i, j int) bool { return routes[i].Table < routes[j].Table })
	want := desiredRouting{rules: rules, routes: routes}
	for _, r := range rules {
		want.ruleText = append(want.ruleText, describeRule(r))
	}
	for _, r := range routes {
		want.routeText = append(want.routeText, describeRoute(r))
	}
	return want
}

func describeRoute(r netlink.Route) string {
	dst := "default"
	if r.Dst != nil && r.Dst.String() != "0.0.0.0/0" {
		dst = r.Dst.String()
	}
	s := dst
	for _, nh := range r.MultiPath {
		s += fmt.Sprintf(" nexthop via %s dev#%d weight %d", nh.Gw, nh.LinkIndex, nh.Hops+1)
	}
	if r.Gw != nil {
		s += " via " + r.Gw.String()
	}
	if r.LinkIndex != 0 {
		s += fmt.Sprintf(" dev#%d", r.LinkIndex)
	}
	return s + fmt.Sprintf(" table %d", r.Table)
}

func describeRule(r netlink.Rule) string { return ruleKey(r) }

// BalancedDevices reads which devices the balance table's default route
// uses now, by kernel device name: the live answer to "is this ISP
// routing?".
func BalancedDevices() (map[string]bool, error) {
	out := map[string]bool{}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: kn.BalanceTable}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("listing the balance table: %w", err)
	}
	name := func(index int) string {
		l, err := netlink.LinkByIndex(index)
		if err != nil {
			return ""
		}
		return l.Attrs().Name
	}
	for _, r := range routes {
		if r.LinkIndex != 0 {
			out[name(r.LinkIndex)] = true
		}
		for _, nh := range r.MultiPath {
			out[name(nh.LinkIndex)] = true
		}
	}
	return out, nil
}

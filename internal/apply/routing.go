package apply

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	kn "github.com/ispbalance/ispbalance/internal/kernelnames"
	"github.com/ispbalance/ispbalance/internal/plan"
)

// Routing is the part of netlink the applier uses. *netlink.Handle is the
// real one; tests pass an in-memory kernel (see package kernelfake).
type Routing interface {
	LinkList() ([]netlink.Link, error)
	RuleList(family int) ([]netlink.Rule, error)
	RouteListFiltered(family int, filter *netlink.Route, filterMask uint64) ([]netlink.Route, error)
	RouteReplace(route *netlink.Route) error
	RouteDel(route *netlink.Route) error
	RuleAdd(rule *netlink.Rule) error
	RuleDel(rule *netlink.Rule) error
	Close()
}

var _ Routing = (*netlink.Handle)(nil)

// routingState is what ispbalance owns in the routing subsystem now: the
// rules in its priority range and the routes in its tables.
type routingState struct {
	rules  []netlink.Rule
	routes []netlink.Route
}

func (a *Applier) readRouting() (routingState, error) {
	var st routingState
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rules, err := a.nl.RuleList(family)
		if err != nil {
			if family == netlink.FAMILY_V6 && !ipv6Enabled() {
				continue // a kernel without IPv6 has nothing of ours there
			}
			return st, fmt.Errorf("listing %s policy rules: %w", familyName(family), err)
		}
		for _, r := range rules {
			if r.Priority >= kn.PrioMin && r.Priority <= kn.PrioMax {
				r.Family = family
				st.rules = append(st.rules, r)
			}
		}
		routes, err := a.nl.RouteListFiltered(family, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return st, fmt.Errorf("listing %s routes: %w", familyName(family), err)
		}
		for _, r := range routes {
			// Routes of rule files may live in any table, main included; the
			// protocol tag says they are ours.
			if kn.IsOurTable(r.Table) || r.Protocol == kn.RouteProtocol {
				r.Family = family
				st.routes = append(st.routes, r)
			}
		}
	}
	return st, nil
}

// onlink reports whether a route (or any of its legs) is installed
// onlink; the kernel's own flags (linkdown, dead) do not count.
func onlink(r netlink.Route) bool {
	if r.Flags&int(netlink.FLAG_ONLINK) != 0 {
		return true
	}
	for _, nh := range r.MultiPath {
		if nh.Flags&int(netlink.FLAG_ONLINK) != 0 {
			return true
		}
	}
	return false
}

// ipv6DefaultMetric is IP6_RT_PRIO_USER, the metric the kernel gives an
// IPv6 route that names none.
const ipv6DefaultMetric = 1024

// ipFamily is the `ip` option for a family: "-6 " for IPv6, "" for IPv4.
func ipFamily(family int) string {
	if family == netlink.FAMILY_V6 {
		return "-6 "
	}
	return ""
}

func familyName(family int) string {
	if family == netlink.FAMILY_V6 {
		return "IPv6"
	}
	return "IPv4"
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
	return fmt.Sprintf("%d|%d|%d|%x/%x|%s|%s|%s|%s|%d", r.Family, r.Priority, r.Table, r.Mark, mask, src, dst, r.IifName, r.OifName, r.SuppressPrefixlen)
}

func routeKey(r netlink.Route) string {
	dst := "0.0.0.0/0"
	if r.Family == netlink.FAMILY_V6 {
		dst = "::/0"
	}
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
	if r.IPv6 {
		nr.Family = netlink.FAMILY_V6
	}
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
	if r.IPv6() {
		nr.Family = netlink.FAMILY_V6
		if nr.Priority == 0 {
			// The kernel gives an IPv6 route without a metric 1024 and
			// lists it so; asking for that keeps the route recognisable,
			// instead of looking stale and being deleted right after.
			nr.Priority = ipv6DefaultMetric
		}
	}
	dev := func(name string) (int, error) {
		i, ok := index[name]
		if !ok {
			return 0, fmt.Errorf("device %s does not exist", name)
		}
		return i, nil
	}
	if r.Unreachable {
		nr.Type = unix.RTN_UNREACHABLE
		return nr, nil
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

// ErrFactsChanged marks a failure caused by the kernel changing under the
// rebuild: a device or address vanished between discovery and apply
// (ifdown, NetworkManager, a PPP redial). The caller should discover
// again and plan anew instead of reporting an error.
var ErrFactsChanged = errors.New("a device or address changed during the rebuild")

// factsError wraps a netlink error that a vanished device or address
// explains, so errors.Is finds both ErrFactsChanged and the errno.
type factsError struct{ err error }

func (e factsError) Error() string   { return e.err.Error() }
func (e factsError) Unwrap() []error { return []error{ErrFactsChanged, e.err} }

// vanished reports whether err is what the kernel says about a route
// through a device that is down or gone, or via a gateway no longer on a
// connected network. A gateway route through a down device is
// ENETUNREACH (its subnet went with it), an onlink or device route
// ENETDOWN.
func vanished(err error) bool {
	return errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.ENETDOWN) || errors.Is(err, unix.ENODEV) ||
		errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EADDRNOTAVAIL)
}

// setRouting makes our rules and routes exactly the wanted ones. Routes
// are replaced in place (atomic per route, so the default route never
// disappears), rules are added before stale ones are deleted, so no
// packet finds a gap. With bestEffort (a rollback), a route the kernel
// can no longer carry is logged and passed over instead of stopping the
// rest from being restored.
func (a *Applier) setRouting(now routingState, want desiredRouting, bestEffort bool) error {
	installed := map[string]netlink.Route{}
	for _, r := range now.routes {
		installed[routeKey(r)] = r
	}
	wantRoutes := map[string]bool{}
	for i, r := range want.routes {
		r := r
		if have, ok := installed[routeKey(r)]; ok && sameRoute(have, r) && onlink(have) == onlink(r) {
			// Already there: a rebuild whose facts did not change sends
			// the kernel nothing.
			wantRoutes[routeKey(r)] = true
			continue
		}
		if err := a.nl.RouteReplace(&r); err != nil {
			if vanished(err) {
				if bestEffort {
					a.log.Warn("not restoring a route the kernel can no longer carry", "route", want.routeText[i], "err", err)
					continue
				}
				err = factsError{err}
			}
			return fmt.Errorf("replacing route %s: %w", want.routeText[i], err)
		}
		a.echo("ip %sroute replace %s", ipFamily(r.Family), want.routeText[i])
		wantRoutes[routeKey(r)] = true
	}
	have := map[string]bool{}
	for _, r := range now.rules {
		have[ruleKey(r)] = true
	}
	wantRules := map[string]bool{}
	// taken are wanted rules the kernel refused as existing although
	// they were not there: it compares from and to only when the new rule
	// has them, so a stale rule that adds one of them counts as the same.
	var taken []int
	for i, r := range want.rules {
		r := r
		k := ruleKey(r)
		wantRules[k] = true
		if have[k] {
			continue
		}
		if err := a.nl.RuleAdd(&r); err != nil {
			if !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("adding rule %s: %w", want.ruleText[i], err)
			}
			taken = append(taken, i)
			continue
		}
		a.echo("ip %srule add %s", ipFamily(r.Family), want.ruleText[i])
	}
	for _, r := range now.rules {
		r := r
		if wantRules[ruleKey(r)] {
			continue
		}
		if err := a.nl.RuleDel(&r); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("deleting stale rule %s: %w", describeRule(r), err)
		}
		a.echo("ip %srule del %s", ipFamily(r.Family), describeRule(r))
	}
	for _, i := range taken {
		// The stale rule that stood in the way is gone now. EEXIST again
		// means a rule appeared meanwhile that the kernel calls the same.
		r := want.rules[i]
		if err := a.nl.RuleAdd(&r); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("adding rule %s: %w", want.ruleText[i], err)
		}
		a.echo("ip %srule add %s", ipFamily(r.Family), want.ruleText[i])
	}
	for _, r := range now.routes {
		r := r
		if wantRoutes[routeKey(r)] {
			continue
		}
		if err := a.nl.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("deleting stale route %s: %w", describeRoute(r), err)
		}
		a.echo("ip %sroute del %s", ipFamily(r.Family), describeRoute(r))
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

// restorable turns listed rules and routes back into a target, for
// rollback. A route through a device that is now down or gone is left out
// (a multipath route keeps its other legs): the kernel would refuse it,
// and insisting would fail the rollback of everything else.
func restorable(st routingState, usable func(linkIndex int) bool) desiredRouting {
	rules := make([]netlink.Rule, 0, len(st.rules))
	for _, r := range st.rules {
		nr := netlink.NewRule()
		nr.Family = r.Family
		nr.Priority, nr.Table, nr.Mark, nr.Mask = r.Priority, r.Table, r.Mark, r.Mask
		nr.Src, nr.Dst, nr.OifName, nr.IifName = r.Src, r.Dst, r.OifName, r.IifName
		nr.SuppressPrefixlen = r.SuppressPrefixlen
		rules = append(rules, *nr)
	}
	var routes []netlink.Route
	for _, r := range st.routes {
		if r, ok := carriable(r, usable); ok {
			routes = append(routes, r)
		}
	}
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

// kernelFlags are the nexthop flags the kernel reports for a device that
// is down or without carrier; given back in a route, they make it EINVAL.
const kernelFlags = unix.RTNH_F_DEAD | unix.RTNH_F_LINKDOWN

// carriable trims a route to the legs whose devices can still carry it,
// and clears the flags only the kernel may set.
func carriable(r netlink.Route, usable func(linkIndex int) bool) (netlink.Route, bool) {
	r.Flags &^= kernelFlags
	if len(r.MultiPath) == 0 {
		return r, r.LinkIndex == 0 || usable(r.LinkIndex)
	}
	var legs []*netlink.NexthopInfo
	for _, nh := range r.MultiPath {
		if usable(nh.LinkIndex) {
			leg := *nh
			leg.Flags &^= kernelFlags
			legs = append(legs, &leg)
		}
	}
	switch len(legs) {
	case 0:
		return r, false
	case 1:
		single := r
		single.MultiPath = nil
		single.LinkIndex, single.Gw, single.Flags = legs[0].LinkIndex, legs[0].Gw, legs[0].Flags
		return single, true
	default:
		r.MultiPath = legs
		return r, true
	}
}

// usableLinks returns whether a link index names a device that exists and
// is administratively up, from one link dump.
func (a *Applier) usableLinks() func(int) bool {
	up := map[int]bool{}
	links, err := a.nl.LinkList()
	if err != nil {
		// Without a dump, try every route; the rollback is best effort.
		return func(int) bool { return true }
	}
	for _, l := range links {
		up[l.Attrs().Index] = l.Attrs().Flags&net.FlagUp != 0
	}
	return func(i int) bool { return up[i] }
}

// linkName names a link index for messages; tests replace it. An index
// that no longer resolves is written as iproute2 writes it, "if3".
var linkName = func(index int) string {
	if l, err := netlink.LinkByIndex(index); err == nil {
		return l.Attrs().Name
	}
	return fmt.Sprintf("if%d", index)
}

// routeTypes are the route types iproute2 writes before the destination;
// a unicast route has none.
var routeTypes = map[int]string{
	unix.RTN_LOCAL: "local", unix.RTN_BROADCAST: "broadcast", unix.RTN_ANYCAST: "anycast",
	unix.RTN_MULTICAST: "multicast", unix.RTN_BLACKHOLE: "blackhole", unix.RTN_UNREACHABLE: "unreachable",
	unix.RTN_PROHIBIT: "prohibit", unix.RTN_THROW: "throw", unix.RTN_NAT: "nat",
}

// describeRoute renders a kernel route as arguments of `ip route`, so a
// line echoed by -v or quoted in an error can be pasted into a shell.
// Nexthops come last because iproute2 reads everything after the first
// `nexthop` as nexthops.
func describeRoute(r netlink.Route) string {
	var b strings.Builder
	if t, ok := routeTypes[r.Type]; ok {
		b.WriteString(t + " ")
	}
	if r.Dst == nil || isDefaultDst(r.Dst) {
		b.WriteString("default")
	} else {
		b.WriteString(r.Dst.String())
	}
	if r.Gw != nil {
		fmt.Fprintf(&b, " via %s", r.Gw)
	}
	if r.LinkIndex != 0 {
		fmt.Fprintf(&b, " dev %s", linkName(r.LinkIndex))
	}
	fmt.Fprintf(&b, " table %s", describeTable(r.Table))
	if r.Protocol != 0 {
		fmt.Fprintf(&b, " proto %d", r.Protocol)
	}
	if r.Scope == netlink.SCOPE_LINK && len(r.MultiPath) == 0 {
		b.WriteString(" scope link")
	}
	if r.Src != nil {
		fmt.Fprintf(&b, " src %s", r.Src)
	}
	if r.Priority != 0 {
		fmt.Fprintf(&b, " metric %d", r.Priority)
	}
	if r.Flags&int(netlink.FLAG_ONLINK) != 0 {
		b.WriteString(" onlink")
	}
	for _, nh := range r.MultiPath {
		b.WriteString(" nexthop")
		if nh.Gw != nil {
			fmt.Fprintf(&b, " via %s", nh.Gw)
		}
		if nh.LinkIndex != 0 {
			fmt.Fprintf(&b, " dev %s", linkName(nh.LinkIndex))
		}
		fmt.Fprintf(&b, " weight %d", nh.Hops+1)
		if nh.Flags&int(netlink.FLAG_ONLINK) != 0 {
			b.WriteString(" onlink")
		}
	}
	return b.String()
}

func isDefaultDst(n *net.IPNet) bool {
	ones, _ := n.Mask.Size()
	return ones == 0 && n.IP.IsUnspecified()
}

// describeRule renders a kernel rule as arguments of `ip rule`, in the
// order render.RuleArgs uses for the rules ispbalance adds.
func describeRule(r netlink.Rule) string {
	var b strings.Builder
	fmt.Fprintf(&b, "priority %d", r.Priority)
	if r.Invert {
		b.WriteString(" not")
	}
	if r.Src != nil {
		fmt.Fprintf(&b, " from %s", r.Src)
	}
	switch {
	case r.Mask != nil:
		fmt.Fprintf(&b, " fwmark %s/%s", kn.FormatMark(r.Mark), kn.FormatMark(*r.Mask))
	case r.Mark != 0:
		fmt.Fprintf(&b, " fwmark %s", kn.FormatMark(r.Mark))
	}
	if r.Dst != nil {
		fmt.Fprintf(&b, " to %s", r.Dst)
	}
	if r.IifName != "" {
		fmt.Fprintf(&b, " iif %s", r.IifName)
	}
	if r.OifName != "" {
		fmt.Fprintf(&b, " oif %s", r.OifName)
	}
	fmt.Fprintf(&b, " lookup %s", describeTable(r.Table))
	if r.SuppressPrefixlen >= 0 {
		fmt.Fprintf(&b, " suppress_prefixlength %d", r.SuppressPrefixlen)
	}
	return b.String()
}

// describeTable writes the kernel's reserved tables by the names iproute2
// gives them.
func describeTable(t int) string {
	switch t {
	case unix.RT_TABLE_MAIN:
		return "main"
	case unix.RT_TABLE_DEFAULT:
		return "default"
	case unix.RT_TABLE_LOCAL:
		return "local"
	}
	return strconv.Itoa(t)
}

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

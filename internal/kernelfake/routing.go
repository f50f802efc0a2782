package kernelfake

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrUnsupported marks a request that uses something the fakes do not
// model. It is never what a kernel would say: a test that meets it needs
// a better fake, not a different expectation.
var ErrUnsupported = errors.New("kernelfake: not modelled")

// Routing is an IPv4 routing subsystem: links, policy rules and routes.
// Its methods with netlink's names behave as a *netlink.Handle talking to
// the kernel would, down to the errno; the others set the scene.
//
// Not modelled: the local table, IPv6, route types other than unicast,
// rule actions other than lookup, nexthop objects.
type Routing struct {
	mu     sync.Mutex
	links  []*link
	rules  []rule // in the kernel's order: by priority, then age
	routes []route
	log    []string
	// requests counts changing calls, no-ops included.
	requests int
	closed   bool
	// lastIndex is the newest device's index; like the kernel, the fake
	// does not hand out an index again.
	lastIndex int

	// Fail, when set, is asked before every change with the line Log
	// would record for it; an error it returns fails that change, and
	// nothing changes. It runs with the fake locked.
	Fail func(op string) error
	// Observe, when set, is called after every change, with the fake
	// unlocked, so a test can look at each intermediate state.
	Observe func()
}

type link struct {
	name    string
	index   int
	up      bool // administratively
	carrier bool
	addrs   []netip.Prefix
}

type rule struct {
	pref       int // -1: not given, only in a request to delete
	table      int
	mark, mask uint32
	src, dst   netip.Prefix
	iif, oif   string
	suppress   int // -1: none
	proto      uint8
}

type route struct {
	table    int
	dst      netip.Prefix
	priority int
	proto    netlink.RouteProtocol
	scope    netlink.Scope
	src      netip.Addr
	// hops holds the single path, or the legs of a multipath route.
	hops      []hop
	multipath bool
}

type hop struct {
	dev    int
	gw     netip.Addr
	weight int // netlink's Hops: weight - 1
	flags  int // as requested: only onlink is settable
}

// NewRouting returns a kernel with only lo and the three rules every
// kernel starts with.
func NewRouting() *Routing {
	k := &Routing{lastIndex: 1}
	k.links = append(k.links, &link{name: "lo", index: 1, up: true, carrier: true})
	for _, r := range []struct{ pref, table int }{{0, unix.RT_TABLE_LOCAL}, {32766, unix.RT_TABLE_MAIN}, {32767, unix.RT_TABLE_DEFAULT}} {
		k.rules = append(k.rules, rule{pref: r.pref, table: r.table, suppress: -1, proto: unix.RTPROT_KERNEL})
	}
	return k
}

// AddLink adds an administratively up device with carrier and the given
// addresses, with their subnets' routes in main as the kernel adds them,
// and returns its index.
func (k *Routing) AddLink(name string, addrs ...netip.Prefix) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.linkByName(name) != nil {
		panic("kernelfake: link " + name + " exists")
	}
	k.lastIndex++
	l := &link{name: name, index: k.lastIndex, up: true, carrier: true, addrs: addrs}
	k.links = append(k.links, l)
	k.addConnected(l)
	return l.index
}

// SetUp sets a device administratively up or down. Down, the kernel
// deletes every route through it (a multipath route only when no leg is
// left) and the device's addresses stop being local; up, the subnet
// routes come back, the others do not.
func (k *Routing) SetUp(name string, up bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	l := k.mustLink(name)
	if l.up == up {
		return
	}
	l.up = up
	if up {
		k.addConnected(l)
		return
	}
	k.routes = slices.DeleteFunc(k.routes, func(r route) bool {
		for _, h := range r.hops {
			if d := k.linkByIndex(h.dev); d != nil && d.up {
				return false
			}
		}
		return true
	})
}

// SetCarrier sets whether a device has carrier. Routes through a device
// without carrier stay, flagged linkdown.
func (k *Routing) SetCarrier(name string, carrier bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.mustLink(name).carrier = carrier
}

// DelLink removes a device and every route with a path through it.
func (k *Routing) DelLink(name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	l := k.mustLink(name)
	k.links = slices.DeleteFunc(k.links, func(x *link) bool { return x == l })
	k.routes = slices.DeleteFunc(k.routes, func(r route) bool {
		return slices.ContainsFunc(r.hops, func(h hop) bool { return h.dev == l.index })
	})
}

// Requests counts the changing netlink calls made, no-ops included: a
// rebuild whose facts did not change should make none.
func (k *Routing) Requests() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.requests
}

// Log returns every change made through the netlink methods, one line
// each, oldest first; a route replaced by an identical one is no change.
func (k *Routing) Log() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.log)
}

// Dump renders every rule (in the kernel's order) and every route (sorted)
// as text, so that two kernels can be compared whole.
func (k *Routing) Dump() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var b strings.Builder
	for _, r := range k.rules {
		fmt.Fprintf(&b, "rule %s\n", r)
	}
	var routes []string
	for _, r := range k.routes {
		routes = append(routes, "route "+k.describeRoute(r))
	}
	slices.Sort(routes)
	b.WriteString(strings.Join(routes, "\n"))
	return b.String()
}

func (k *Routing) mustLink(name string) *link {
	l := k.linkByName(name)
	if l == nil {
		panic("kernelfake: no link " + name)
	}
	return l
}

func (k *Routing) linkByName(name string) *link {
	for _, l := range k.links {
		if l.name == name {
			return l
		}
	}
	return nil
}

func (k *Routing) linkByIndex(index int) *link {
	for _, l := range k.links {
		if l.index == index {
			return l
		}
	}
	return nil
}

func (k *Routing) addConnected(l *link) {
	for _, a := range l.addrs {
		if a.Bits() == 32 || !a.Addr().Is4() {
			continue // a /32 has no subnet route, only a local one
		}
		r := route{table: unix.RT_TABLE_MAIN, dst: a.Masked(), proto: unix.RTPROT_KERNEL, scope: netlink.SCOPE_LINK,
			src: a.Addr(), hops: []hop{{dev: l.index}}}
		if i := k.findRoute(r); i < 0 {
			k.routes = append(k.routes, r)
		}
	}
}

// change runs one request under the lock: Fail first, then do, then the
// log line and Observe if do changed anything. describe names the
// request for Fail and the log.
func (k *Routing) change(describe func() string, do func() (changed bool, err error)) error {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return unix.EBADF
	}
	op := describe()
	k.requests++
	if k.Fail != nil {
		if err := k.Fail(op); err != nil {
			k.mu.Unlock()
			return err
		}
	}
	changed, err := do()
	if changed {
		k.log = append(k.log, op)
	}
	observe := k.Observe
	k.mu.Unlock()
	if changed && observe != nil {
		observe()
	}
	return err
}

// Close makes every later call fail, as on a closed socket.
func (k *Routing) Close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.closed = true
}

// LinkList lists the devices.
func (k *Routing) LinkList() ([]netlink.Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil, unix.EBADF
	}
	var out []netlink.Link
	for _, l := range k.links {
		attrs := netlink.NewLinkAttrs()
		attrs.Name, attrs.Index, attrs.OperState = l.name, l.index, netlink.OperDown
		if l.up {
			attrs.Flags |= net.FlagUp
			attrs.RawFlags |= unix.IFF_UP
			if l.carrier {
				attrs.RawFlags |= unix.IFF_RUNNING | unix.IFF_LOWER_UP
				attrs.OperState = netlink.OperUp
			}
		}
		out = append(out, &netlink.Device{LinkAttrs: attrs})
	}
	return out, nil
}

// RuleList lists the IPv4 rules as the kernel dumps them.
func (k *Routing) RuleList(family int) ([]netlink.Rule, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil, unix.EBADF
	}
	if family != netlink.FAMILY_V4 && family != netlink.FAMILY_ALL {
		return nil, nil
	}
	out := make([]netlink.Rule, 0, len(k.rules))
	for _, r := range k.rules {
		nr := netlink.NewRule()
		nr.Family, nr.Priority, nr.Table, nr.Protocol = netlink.FAMILY_V4, r.pref, r.table, r.proto
		if r.mark != 0 || r.mask != 0 {
			nr.Mark = r.mark
			mask := r.mask
			nr.Mask = &mask
		}
		nr.Src, nr.Dst = ipNet(r.src), ipNet(r.dst)
		nr.IifName, nr.OifName, nr.SuppressPrefixlen = r.iif, r.oif, r.suppress
		out = append(out, *nr)
	}
	return out, nil
}

// RuleAdd adds a rule as netlink's RuleAdd does, with NLM_F_EXCL: a rule
// the kernel considers the same is EEXIST. The kernel compares every
// field exactly but the source and destination, which it compares only
// when the new rule has them.
func (k *Routing) RuleAdd(nr *netlink.Rule) error {
	r, err := ruleFrom(nr)
	if err != nil {
		return err
	}
	if r.pref < 0 || r.table == 0 {
		return fmt.Errorf("%w: a rule without priority or table (the kernel picks them)", ErrUnsupported)
	}
	return k.change(func() string { return "rule add " + r.String() }, func() (bool, error) {
		for _, have := range k.rules {
			if have.pref == r.pref && have.table == r.table && have.iif == r.iif && have.oif == r.oif &&
				have.mark == r.mark && have.mask == r.mask && have.suppress == r.suppress &&
				(!r.src.IsValid() || have.src == r.src) && (!r.dst.IsValid() || have.dst == r.dst) {
				return false, unix.EEXIST
			}
		}
		i := 0
		for i < len(k.rules) && k.rules[i].pref <= r.pref {
			i++
		}
		k.rules = slices.Insert(k.rules, i, r)
		return true, nil
	})
}

// RuleDel deletes the first rule that matches every field the request
// gives (zero fields match anything, as in the kernel), or fails ENOENT.
func (k *Routing) RuleDel(nr *netlink.Rule) error {
	r, err := ruleFrom(nr)
	if err != nil {
		return err
	}
	return k.change(func() string { return "rule del " + r.String() }, func() (bool, error) {
		for i, have := range k.rules {
			if (r.table == 0 || have.table == r.table) && (r.pref < 0 || have.pref == r.pref) &&
				(r.iif == "" || have.iif == r.iif) && (r.oif == "" || have.oif == r.oif) &&
				(r.mark == 0 || have.mark == r.mark) && (r.mask == 0 || have.mask == r.mask) &&
				(r.suppress < 0 || have.suppress == r.suppress) && (r.proto == 0 || have.proto == r.proto) &&
				(!r.src.IsValid() || have.src == r.src) && (!r.dst.IsValid() || have.dst == r.dst) {
				k.rules = slices.Delete(k.rules, i, i+1)
				return true, nil
			}
		}
		return false, unix.ENOENT
	})
}

// ruleFrom reads a request as the kernel receives it from netlink's
// ruleHandle: a mark without a mask means all bits, suppress_prefixlength
// travels only with a table below 256.
func ruleFrom(nr *netlink.Rule) (rule, error) {
	c := *nr
	c.Priority, c.Family, c.Table, c.Mark, c.Mask, c.Src, c.Dst = -1, 0, 0, 0, nil, nil, nil
	c.IifName, c.OifName, c.SuppressPrefixlen, c.Protocol = "", "", -1, 0
	if !reflect.DeepEqual(c, *netlink.NewRule()) || (nr.Family != 0 && nr.Family != netlink.FAMILY_V4) {
		return rule{}, fmt.Errorf("%w: rule %+v", ErrUnsupported, *nr)
	}
	r := rule{pref: max(nr.Priority, -1), table: nr.Table, iif: nr.IifName, oif: nr.OifName, suppress: -1, proto: nr.Protocol}
	if nr.Mark != 0 || nr.Mask != nil {
		r.mark = nr.Mark
		if r.mark != 0 {
			r.mask = 0xffffffff
		}
		if nr.Mask != nil {
			r.mask = *nr.Mask
		}
	}
	if nr.Table > 0 && nr.Table < 256 && nr.SuppressPrefixlen >= 0 {
		r.suppress = nr.SuppressPrefixlen
	}
	var err error
	if r.src, err = prefix(nr.Src); err != nil {
		return rule{}, err
	}
	if r.dst, err = prefix(nr.Dst); err != nil {
		return rule{}, err
	}
	return r, nil
}

func (r rule) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "priority %d", r.pref)
	if r.src.IsValid() {
		fmt.Fprintf(&b, " from %s", r.src)
	}
	if r.mark != 0 || r.mask != 0 {
		fmt.Fprintf(&b, " fwmark %#x/%#x", r.mark, r.mask)
	}
	if r.dst.IsValid() {
		fmt.Fprintf(&b, " to %s", r.dst)
	}
	if r.iif != "" {
		fmt.Fprintf(&b, " iif %s", r.iif)
	}
	if r.oif != "" {
		fmt.Fprintf(&b, " oif %s", r.oif)
	}
	fmt.Fprintf(&b, " lookup %d", r.table)
	if r.suppress >= 0 {
		fmt.Fprintf(&b, " suppress_prefixlength %d", r.suppress)
	}
	if r.proto != 0 {
		fmt.Fprintf(&b, " proto %d", r.proto)
	}
	return b.String()
}

// prefix reads an IPv4 network; nil is none.
func prefix(n *net.IPNet) (netip.Prefix, error) {
	if n == nil || n.IP == nil {
		return netip.Prefix{}, nil
	}
	a, ok := netip.AddrFromSlice(n.IP.To4())
	ones, bits := n.Mask.Size()
	if !ok || bits != 32 {
		return netip.Prefix{}, fmt.Errorf("%w: IPv6 or malformed network %v", ErrUnsupported, n)
	}
	return netip.PrefixFrom(a, ones), nil
}

func addr(ip net.IP) (netip.Addr, error) {
	if ip == nil {
		return netip.Addr{}, nil
	}
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok {
		return netip.Addr{}, fmt.Errorf("%w: IPv6 or malformed address %v", ErrUnsupported, ip)
	}
	return a, nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	if !p.IsValid() {
		return nil
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}

func ip(a netip.Addr) net.IP {
	if !a.IsValid() {
		return nil
	}
	return a.AsSlice()
}

// RouteListFiltered lists routes as netlink does: main only, unless the
// filter names a table (RT_TABLE_UNSPEC for all). Other filters are not
// modelled.
func (k *Routing) RouteListFiltered(family int, filter *netlink.Route, mask uint64) ([]netlink.Route, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil, unix.EBADF
	}
	if mask&^netlink.RT_FILTER_TABLE != 0 {
		return nil, fmt.Errorf("%w: route filter %#x", ErrUnsupported, mask)
	}
	if family != netlink.FAMILY_V4 && family != netlink.FAMILY_ALL {
		return nil, nil
	}
	table := unix.RT_TABLE_MAIN
	if filter != nil && mask&netlink.RT_FILTER_TABLE != 0 {
		table = filter.Table
	}
	var out []netlink.Route
	for _, r := range k.routes {
		if table == unix.RT_TABLE_UNSPEC || r.table == table {
			out = append(out, k.dumped(r))
		}
	}
	return out, nil
}

// linkdown is set on every path through a device without carrier; dead
// marks a multipath leg through a device that is down.
const (
	linkdown = unix.RTNH_F_LINKDOWN
	dead     = unix.RTNH_F_DEAD
)

// dumped renders a route as netlink's dump parses it, with the flags the
// kernel adds for devices that are down or without carrier.
func (k *Routing) dumped(r route) netlink.Route {
	nr := netlink.Route{
		Family: netlink.FAMILY_V4, Table: r.table, Type: unix.RTN_UNICAST, Protocol: r.proto, Scope: r.scope,
		Priority: r.priority, Src: ip(r.src),
		Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)},
	}
	if r.dst.Bits() > 0 {
		nr.Dst = ipNet(r.dst)
	}
	flags := func(h hop) int {
		f := h.flags
		if l := k.linkByIndex(h.dev); l != nil && (!l.up || !l.carrier) {
			f |= linkdown
			if !l.up {
				f |= dead
			}
		}
		return f
	}
	if !r.multipath {
		h := r.hops[0]
		nr.LinkIndex, nr.Gw, nr.Flags = h.dev, ip(h.gw), flags(h)
		return nr
	}
	for _, h := range r.hops {
		nr.MultiPath = append(nr.MultiPath, &netlink.NexthopInfo{LinkIndex: h.dev, Gw: ip(h.gw), Hops: h.weight, Flags: flags(h)})
	}
	return nr
}

// RouteReplace replaces the route with the same table, destination and
// metric, or adds one, checking each path as the kernel does: a gateway
// must be on a subnet of its device in the route's table or main (else
// ENETUNREACH), unless onlink; the device must exist (ENODEV) and be up
// (ENETDOWN); a source must be a local address (EINVAL); and flags the
// kernel sets itself (dead, linkdown) may not be given (EINVAL).
func (k *Routing) RouteReplace(nr *netlink.Route) error {
	r, err := routeFrom(nr)
	if err != nil {
		return err
	}
	return k.change(func() string { return "route replace " + k.describeRoute(r) }, func() (bool, error) {
		if err := k.check(r); err != nil {
			return false, err
		}
		i := k.findRoute(r)
		if i < 0 {
			k.routes = append(k.routes, r)
			return true, nil
		}
		changed := !reflect.DeepEqual(k.routes[i], r)
		k.routes[i] = r
		return changed, nil
	})
}

func (k *Routing) check(r route) error {
	for _, h := range r.hops {
		if h.flags&(dead|linkdown) != 0 {
			return unix.EINVAL
		}
		l := k.linkByIndex(h.dev)
		if h.gw.IsValid() && h.flags&unix.RTNH_F_ONLINK == 0 {
			if !k.onSubnet(r.table, h) {
				return unix.ENETUNREACH
			}
		}
		switch {
		case h.dev == 0:
			return unix.EINVAL
		case l == nil:
			return unix.ENODEV
		case !l.up:
			return unix.ENETDOWN
		}
	}
	if r.src.IsValid() && !k.local(r.src) {
		return unix.EINVAL
	}
	return nil
}

// onSubnet reports whether a gateway is reachable directly through its
// device by a link-scope route in table or main.
func (k *Routing) onSubnet(table int, h hop) bool {
	for _, r := range k.routes {
		if (r.table == table || r.table == unix.RT_TABLE_MAIN) && !r.multipath && r.scope == netlink.SCOPE_LINK &&
			r.hops[0].dev == h.dev && !r.hops[0].gw.IsValid() && r.dst.Contains(h.gw) {
			return true
		}
	}
	return false
}

func (k *Routing) local(a netip.Addr) bool {
	for _, l := range k.links {
		if l.up && slices.ContainsFunc(l.addrs, func(p netip.Prefix) bool { return p.Addr() == a }) {
			return true
		}
	}
	return false
}

func (k *Routing) findRoute(r route) int {
	return slices.IndexFunc(k.routes, func(x route) bool {
		return x.table == r.table && x.dst == r.dst && x.priority == r.priority
	})
}

// RouteDel deletes the route with the request's table, destination and
// scope that matches whatever else the request gives (metric, protocol,
// source, devices, gateways), or fails ESRCH.
func (k *Routing) RouteDel(nr *netlink.Route) error {
	req, err := routeFrom(nr)
	if err != nil {
		return err
	}
	return k.change(func() string { return "route del " + k.describeRoute(req) }, func() (bool, error) {
		for i, r := range k.routes {
			if r.table != req.table || r.dst != req.dst || r.scope != req.scope ||
				(nr.Priority != 0 && r.priority != req.priority) || (nr.Protocol != 0 && r.proto != req.proto) ||
				(req.src.IsValid() && r.src != req.src) || !hopsMatch(req, r) {
				continue
			}
			k.routes = slices.Delete(k.routes, i, i+1)
			return true, nil
		}
		return false, unix.ESRCH
	})
}

// hopsMatch compares the paths a delete request gives with a route's.
func hopsMatch(req, r route) bool {
	if !req.multipath {
		h := req.hops[0]
		return (h.dev == 0 || h.dev == r.hops[0].dev) && (!h.gw.IsValid() || h.gw == r.hops[0].gw)
	}
	if len(req.hops) != len(r.hops) {
		return false
	}
	for i, h := range req.hops {
		if (h.dev != 0 && h.dev != r.hops[i].dev) || (h.gw.IsValid() && h.gw != r.hops[i].gw) {
			return false
		}
	}
	return true
}

// routeFrom reads a request as netlink's prepareRouteReq sends it: table
// 0 is main, protocol 0 is boot, no destination is the default route.
func routeFrom(nr *netlink.Route) (route, error) {
	c := *nr
	c.Family, c.Table, c.Dst, c.Type, c.Protocol, c.Scope, c.Src = 0, 0, nil, 0, 0, 0, nil
	c.Gw, c.LinkIndex, c.Priority, c.Flags, c.MultiPath = nil, 0, 0, 0, nil
	bad := !reflect.DeepEqual(c, netlink.Route{}) || (nr.Family != 0 && nr.Family != netlink.FAMILY_V4) ||
		(nr.Type != 0 && nr.Type != unix.RTN_UNICAST) ||
		(len(nr.MultiPath) > 0 && (nr.LinkIndex != 0 || nr.Gw != nil || nr.Flags != 0))
	for _, nh := range nr.MultiPath {
		bad = bad || !reflect.DeepEqual(netlink.NexthopInfo{LinkIndex: nh.LinkIndex, Gw: nh.Gw, Hops: nh.Hops, Flags: nh.Flags}, *nh)
	}
	if bad {
		return route{}, fmt.Errorf("%w: route %+v", ErrUnsupported, *nr)
	}
	r := route{table: nr.Table, priority: nr.Priority, proto: nr.Protocol, scope: nr.Scope,
		dst: netip.PrefixFrom(netip.IPv4Unspecified(), 0)}
	if r.table == 0 {
		r.table = unix.RT_TABLE_MAIN
	}
	if r.proto == 0 {
		r.proto = unix.RTPROT_BOOT
	}
	var err error
	if nr.Dst != nil {
		if r.dst, err = prefix(nr.Dst); err != nil {
			return route{}, err
		}
		if r.dst != r.dst.Masked() {
			return route{}, unix.EINVAL
		}
	}
	if r.src, err = addr(nr.Src); err != nil {
		return route{}, err
	}
	if len(nr.MultiPath) == 0 {
		gw, err := addr(nr.Gw)
		if err != nil {
			return route{}, err
		}
		r.hops = []hop{{dev: nr.LinkIndex, gw: gw, flags: nr.Flags}}
		return r, nil
	}
	r.multipath = true
	for _, nh := range nr.MultiPath {
		gw, err := addr(nh.Gw)
		if err != nil {
			return route{}, err
		}
		r.hops = append(r.hops, hop{dev: nh.LinkIndex, gw: gw, weight: nh.Hops, flags: nh.Flags})
	}
	return r, nil
}

func (k *Routing) describeRoute(r route) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s table %d", r.dst, r.table)
	if r.priority != 0 {
		fmt.Fprintf(&b, " metric %d", r.priority)
	}
	fmt.Fprintf(&b, " proto %d scope %d", r.proto, r.scope)
	if r.src.IsValid() {
		fmt.Fprintf(&b, " src %s", r.src)
	}
	for _, h := range r.hops {
		if r.multipath {
			fmt.Fprintf(&b, " nexthop weight %d", h.weight+1)
		}
		if h.gw.IsValid() {
			fmt.Fprintf(&b, " via %s", h.gw)
		}
		if h.dev != 0 {
			name := fmt.Sprintf("if%d", h.dev)
			if l := k.linkByIndex(h.dev); l != nil {
				name = l.name
			}
			fmt.Fprintf(&b, " dev %s", name)
		}
		if h.flags != 0 {
			fmt.Fprintf(&b, " flags %#x", h.flags)
		}
	}
	return b.String()
}

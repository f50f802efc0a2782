package kernelfake_test

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ispbalance/ispbalance/internal/kernelfake"
)

func cidr(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

// twoLinks is a kernel with wan1 (up) and wan2 (down), as in the
// measurements the expectations below come from.
func twoLinks(t *testing.T) (k *kernelfake.Routing, wan1, wan2 int) {
	t.Helper()
	k = kernelfake.NewRouting()
	wan1 = k.AddLink("wan1", netip.MustParsePrefix("100.64.1.2/24"))
	wan2 = k.AddLink("wan2", netip.MustParsePrefix("100.64.2.2/24"))
	k.SetUp("wan2", false)
	return k, wan1, wan2
}

// TestRouteErrnos: the errors are the kernel's for each way a route can
// be refused (measured on Linux 6.18 with vishvananda/netlink).
func TestRouteErrnos(t *testing.T) {
	k, wan1, wan2 := twoLinks(t)
	gw := func(s string) net.IP { return net.ParseIP(s).To4() }
	tests := []struct {
		name  string
		route netlink.Route
		want  error
	}{
		{"gateway through a down device", netlink.Route{Table: 4202, Gw: gw("100.64.2.1"), LinkIndex: wan2}, unix.ENETUNREACH},
		{"onlink through a down device", netlink.Route{Table: 4202, Gw: gw("100.64.2.1"), LinkIndex: wan2, Flags: int(netlink.FLAG_ONLINK)}, unix.ENETDOWN},
		{"device route through a down device", netlink.Route{Table: 4202, Dst: cidr("100.64.2.0/24"), LinkIndex: wan2, Scope: netlink.SCOPE_LINK}, unix.ENETDOWN},
		{"multipath with a down leg", netlink.Route{Table: 4200, MultiPath: []*netlink.NexthopInfo{{LinkIndex: wan1, Gw: gw("100.64.1.1")}, {LinkIndex: wan2, Gw: gw("100.64.2.1")}}}, unix.ENETUNREACH},
		{"gateway through a missing device", netlink.Route{Table: 4202, Gw: gw("100.64.2.1"), LinkIndex: 99}, unix.ENETUNREACH},
		{"device route through a missing device", netlink.Route{Table: 4201, Dst: cidr("10.1.0.0/16"), LinkIndex: 99, Scope: netlink.SCOPE_LINK}, unix.ENODEV},
		{"gateway off every subnet", netlink.Route{Table: 4201, Gw: gw("100.64.7.1"), LinkIndex: wan1}, unix.ENETUNREACH},
		{"source not local", netlink.Route{Table: 4201, Dst: cidr("100.64.1.0/24"), LinkIndex: wan1, Scope: netlink.SCOPE_LINK, Src: gw("100.64.9.9")}, unix.EINVAL},
		{"source of a down device", netlink.Route{Table: 4201, Dst: cidr("100.64.1.0/24"), LinkIndex: wan1, Scope: netlink.SCOPE_LINK, Src: gw("100.64.2.2")}, unix.EINVAL},
		{"linkdown flag given", netlink.Route{Table: 4201, Gw: gw("100.64.1.1"), LinkIndex: wan1, Flags: unix.RTNH_F_LINKDOWN}, unix.EINVAL},
		{"host bits in the destination", netlink.Route{Table: 4201, Dst: &net.IPNet{IP: gw("10.1.2.3"), Mask: net.CIDRMask(16, 32)}, LinkIndex: wan1, Scope: netlink.SCOPE_LINK}, unix.EINVAL},
		{"gateway on a subnet", netlink.Route{Table: 4201, Gw: gw("100.64.1.1"), LinkIndex: wan1}, nil},
	}
	for _, tt := range tests {
		if err := k.RouteReplace(&tt.route); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
	}
	if err := k.RouteDel(&netlink.Route{Table: 4201, Dst: cidr("10.0.0.0/8")}); !errors.Is(err, unix.ESRCH) {
		t.Errorf("deleting a missing route: got %v, want ESRCH", err)
	}
	if err := k.RouteReplace(&netlink.Route{Table: 4201, Dst: cidr("10.1.0.0/16"), LinkIndex: wan1, Scope: netlink.SCOPE_LINK}); err != nil {
		t.Fatal(err)
	}
	if err := k.RouteDel(&netlink.Route{Table: 4201, Dst: cidr("10.1.0.0/16")}); !errors.Is(err, unix.ESRCH) {
		t.Errorf("delete with another scope: got %v, want ESRCH (netlink always sends the scope)", err)
	}
	if err := k.RouteDel(&netlink.Route{Table: 4201, Dst: cidr("10.1.0.0/16"), Scope: netlink.SCOPE_LINK}); err != nil {
		t.Errorf("delete: %v", err)
	}
	if err := k.RouteReplace(&netlink.Route{Table: 4201, Dst: cidr("10.2.0.0/16"), Encap: &netlink.MPLSEncap{}}); !errors.Is(err, kernelfake.ErrUnsupported) {
		t.Errorf("an attribute the fake does not model: got %v", err)
	}
}

// TestRuleSemantics: EXCL adds compare exactly but for source and
// destination, deletes match whatever the request leaves out, and a mark
// without a mask means all bits.
func TestRuleSemantics(t *testing.T) {
	k := kernelfake.NewRouting()
	rule := func(prio, table int, set func(r *netlink.Rule)) *netlink.Rule {
		r := netlink.NewRule()
		r.Priority, r.Table = prio, table
		if set != nil {
			set(r)
		}
		return r
	}
	mask := func(m uint32) *uint32 { return &m }
	marked := rule(9101, 4201, func(r *netlink.Rule) { r.Mark, r.Mask = 1, mask(0x3f) })
	steps := []struct {
		name string
		do   func(*netlink.Rule) error
		rule *netlink.Rule
		want error
	}{
		{"add marked", k.RuleAdd, marked, nil},
		{"add it again", k.RuleAdd, marked, unix.EEXIST},
		{"same with another mask", k.RuleAdd, rule(9101, 4201, func(r *netlink.Rule) { r.Mark, r.Mask = 1, mask(0xff) }), nil},
		{"same without mark", k.RuleAdd, rule(9101, 4201, nil), nil},
		{"add from", k.RuleAdd, rule(9201, 4201, func(r *netlink.Rule) { r.Src = cidr("100.64.1.2/32") }), nil},
		{"add without from: the kernel calls it the same", k.RuleAdd, rule(9201, 4201, nil), unix.EEXIST},
		{"add oif", k.RuleAdd, rule(9301, 4201, func(r *netlink.Rule) { r.OifName = "wan1" }), nil},
		{"add without oif", k.RuleAdd, rule(9301, 4201, nil), nil},
		{"delete mark without mask: all bits", k.RuleDel, rule(9101, 4201, func(r *netlink.Rule) { r.Mark = 1 }), unix.ENOENT},
		{"delete missing", k.RuleDel, rule(9102, 4201, nil), unix.ENOENT},
		{"delete without from takes the rule with one", k.RuleDel, rule(9201, 4201, nil), nil},
		{"which is gone then", k.RuleDel, rule(9201, 4201, nil), unix.ENOENT},
	}
	for _, s := range steps {
		if err := s.do(s.rule); !errors.Is(err, s.want) || (s.want == nil) != (err == nil) {
			t.Errorf("%s: got %v, want %v", s.name, err, s.want)
		}
	}
	// Left: the kernel's three, both 9101 marks, plain 9101, both 9301.
	if rules, _ := k.RuleList(netlink.FAMILY_V4); len(rules) != 3+5 {
		t.Errorf("%d rules left, want 8:\n%s", len(rules), k.Dump())
	}
	if err := k.RuleAdd(&netlink.Rule{Priority: 9400, Table: 4201}); !errors.Is(err, kernelfake.ErrUnsupported) {
		t.Errorf("a zero netlink.Rule is a goto rule to netlink, which the fake must refuse: got %v", err)
	}
}

// TestLinkDown: taking a device down deletes routes through it, keeps a
// multipath route with another leg (that leg dumped dead), and bringing
// it back up restores only the subnet route.
func TestLinkDown(t *testing.T) {
	k := kernelfake.NewRouting()
	wan1 := k.AddLink("wan1", netip.MustParsePrefix("100.64.1.2/24"))
	wan2 := k.AddLink("wan2", netip.MustParsePrefix("100.64.2.2/24"))
	for _, r := range []netlink.Route{
		{Table: 4202, Gw: net.ParseIP("100.64.2.1"), LinkIndex: wan2},
		{Table: 4200, MultiPath: []*netlink.NexthopInfo{{LinkIndex: wan1, Gw: net.ParseIP("100.64.1.1")}, {LinkIndex: wan2, Gw: net.ParseIP("100.64.2.1")}}},
	} {
		if err := k.RouteReplace(&r); err != nil {
			t.Fatal(err)
		}
	}
	k.SetCarrier("wan2", false)
	routes, _ := k.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: 4202}, netlink.RT_FILTER_TABLE)
	if len(routes) != 1 || routes[0].Flags&unix.RTNH_F_LINKDOWN == 0 {
		t.Fatalf("without carrier: %v, want the route flagged linkdown", routes)
	}
	replay := routes[0]
	if err := k.RouteReplace(&replay); !errors.Is(err, unix.EINVAL) {
		t.Errorf("replaying a dumped linkdown route: got %v, want EINVAL as from the kernel", err)
	}
	k.SetUp("wan2", false)
	all, _ := k.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{}, netlink.RT_FILTER_TABLE)
	if len(all) != 2 || all[1].Table != 4200 || all[1].MultiPath[1].Flags&unix.RTNH_F_DEAD == 0 {
		t.Errorf("after down: %v, want main's wan1 subnet and the multipath route with a dead leg", all)
	}
	k.SetUp("wan2", true)
	if d := k.Dump(); strings.Contains(d, "table 4202") || !strings.Contains(d, "100.64.2.0/24 table 254") {
		t.Errorf("after up:\n%s", d)
	}
}

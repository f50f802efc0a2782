package detect

import (
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func v6addr(idx int, cidr string, flags int) netlink.Addr {
	ip, n, err := net.ParseCIDR(cidr)
	if err != nil {
		panic(err)
	}
	n.IP = ip
	return netlink.Addr{IPNet: n, LinkIndex: idx, Flags: flags, Scope: unix.RT_SCOPE_UNIVERSE}
}

func TestPickAddr6(t *testing.T) {
	linkLocal := v6addr(2, "fe80::2/64", 0)
	linkLocal.Scope = unix.RT_SCOPE_LINK
	addrs := []netlink.Addr{
		linkLocal,
		v6addr(2, "2001:db8:1::99/64", unix.IFA_F_TEMPORARY),
		v6addr(2, "2001:db8:1::2/64", 0),
		v6addr(2, "2001:db8:1::3/64", unix.IFA_F_TENTATIVE),
		v6addr(3, "2001:db8:2::2/64", unix.IFA_F_DEPRECATED),
		v6addr(3, "fd00:2::2/64", 0),
		v6addr(4, "fe80::4/64", 0),
	}
	tests := []struct {
		index int
		want  string
	}{
		{2, "2001:db8:1::2/64"}, // stable beats temporary; tentative and link-local never
		{3, "fd00:2::2/64"},     // preferred ULA beats a deprecated global
		{4, ""},                 // only link-local: no IPv6 for the ISP
		{5, ""},
	}
	for _, tt := range tests {
		got := pickAddr6(addrs, tt.index)
		if (tt.want == "" && got.IsValid()) || (tt.want != "" && got != netip.MustParsePrefix(tt.want)) {
			t.Errorf("link %d: picked %v, want %q", tt.index, got, tt.want)
		}
	}
}

func TestRouteGateway6(t *testing.T) {
	ra := netlink.Route{LinkIndex: 2, Gw: net.ParseIP("fe80::1"), Protocol: routeProtocolRA, Priority: 1024}
	static := netlink.Route{LinkIndex: 2, Gw: net.ParseIP("fe80::99"), Priority: 2048}
	other := netlink.Route{LinkIndex: 3, Gw: net.ParseIP("fe80::3"), Priority: 10}
	specific := netlink.Route{LinkIndex: 2, Gw: net.ParseIP("fe80::5"), Dst: &net.IPNet{IP: net.ParseIP("2001:db8:9::"), Mask: net.CIDRMask(48, 128)}}
	gw, from := routeGateway6([]netlink.Route{static, other, specific, ra}, 2)
	if gw != netip.MustParseAddr("fe80::1") || from != FromRA {
		t.Errorf("gateway %v from %q, want fe80::1 from %q (lowest metric default via the device)", gw, from, FromRA)
	}
	if gw, _ := routeGateway6([]netlink.Route{specific}, 2); gw.IsValid() {
		t.Errorf("a non-default route gave gateway %v", gw)
	}
	if v6 := describe6([]netlink.Addr{v6addr(2, "2001:db8:1::2/64", 0)}, []netlink.Route{ra}, 2, netip.MustParseAddr("fe80::7")); v6.Gateway != netip.MustParseAddr("fe80::7") || v6.GatewayFrom != FromConfig {
		t.Errorf("a pinned gateway gave %+v", v6)
	}
	// An uplink numbered link-local only still has its gateway: the ISP
	// may delegate a prefix over it.
	if v6 := describe6(nil, []netlink.Route{ra}, 2, netip.Addr{}); v6.Addr.IsValid() || v6.Gateway != netip.MustParseAddr("fe80::1") {
		t.Errorf("link-local uplink: got IPv6 facts %+v, want no address and gateway fe80::1", v6)
	}
}

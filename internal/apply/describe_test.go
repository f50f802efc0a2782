package apply

import (
	"fmt"
	"net"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	kn "github.com/ispbalance/ispbalance/internal/kernelnames"
)

func fakeLinkNames(t *testing.T) {
	t.Helper()
	saved := linkName
	t.Cleanup(func() { linkName = saved })
	names := map[int]string{3: "wan1", 4: "wan2"}
	linkName = func(i int) string {
		if n, ok := names[i]; ok {
			return n
		}
		return fmt.Sprintf("if%d", i)
	}
}

func cidr(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

func TestDescribeRoute(t *testing.T) {
	fakeLinkNames(t)
	tests := []struct {
		route netlink.Route
		want  string
	}{
		{netlink.Route{Table: 4201, Dst: cidr("0.0.0.0/0"), Gw: net.ParseIP("100.64.1.1"), LinkIndex: 3, Protocol: kn.RouteProtocol},
			"default via 100.64.1.1 dev wan1 table 4201 proto 177"},
		{netlink.Route{Table: 4201, Dst: cidr("100.64.1.0/24"), LinkIndex: 3, Scope: netlink.SCOPE_LINK, Src: net.ParseIP("100.64.1.2"), Protocol: kn.RouteProtocol},
			"100.64.1.0/24 dev wan1 table 4201 proto 177 scope link src 100.64.1.2"},
		{netlink.Route{Table: 4202, Gw: net.ParseIP("100.64.9.1"), LinkIndex: 9, Flags: int(netlink.FLAG_ONLINK), Priority: 10, Protocol: kn.RouteProtocol},
			"default via 100.64.9.1 dev if9 table 4202 proto 177 metric 10 onlink"},
		{netlink.Route{Table: 254, Dst: cidr("10.99.0.0/16"), Type: unix.RTN_UNREACHABLE, Protocol: kn.RouteProtocol},
			"unreachable 10.99.0.0/16 table main proto 177"},
		{netlink.Route{Table: 4200, Dst: cidr("0.0.0.0/0"), Protocol: kn.RouteProtocol, MultiPath: []*netlink.NexthopInfo{
			{LinkIndex: 3, Gw: net.ParseIP("100.64.1.1"), Hops: 1},
			{LinkIndex: 4, Gw: net.ParseIP("100.64.2.1"), Flags: int(netlink.FLAG_ONLINK)},
		}}, "default table 4200 proto 177 nexthop via 100.64.1.1 dev wan1 weight 2 nexthop via 100.64.2.1 dev wan2 weight 1 onlink"},
	}
	for _, tt := range tests {
		if got := describeRoute(tt.route); got != tt.want {
			t.Errorf("got  %s\nwant %s", got, tt.want)
		}
	}
}

func TestDescribeRule(t *testing.T) {
	mask := kn.MarkMask
	withMark := netlink.NewRule()
	withMark.Priority, withMark.Table, withMark.Mark, withMark.Mask = 9101, 4201, 0x1000000, &mask
	main := netlink.NewRule()
	main.Priority, main.Table, main.SuppressPrefixlen = 9000, unix.RT_TABLE_MAIN, 0
	from := netlink.NewRule()
	from.Priority, from.Table, from.Src = 9201, 4201, cidr("100.64.1.2/32")
	oif := netlink.NewRule()
	oif.Priority, oif.Table, oif.OifName = 9301, 4201, "wan1"
	user := netlink.NewRule()
	user.Priority, user.Table, user.Dst, user.IifName, user.Mark = 9400, 100, cidr("10.0.0.0/8"), "lan1", 7
	tests := []struct {
		rule *netlink.Rule
		want string
	}{
		{withMark, "priority 9101 fwmark 0x1000000/0x3f000000 lookup 4201"},
		{main, "priority 9000 lookup main suppress_prefixlength 0"},
		{from, "priority 9201 from 100.64.1.2/32 lookup 4201"},
		{oif, "priority 9301 oif wan1 lookup 4201"},
		{user, "priority 9400 fwmark 0x7 to 10.0.0.0/8 iif lan1 lookup 100"},
	}
	for _, tt := range tests {
		if got := describeRule(*tt.rule); got != tt.want {
			t.Errorf("got  %s\nwant %s", got, tt.want)
		}
	}
}

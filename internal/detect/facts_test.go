package detect

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ispbalance/ispbalance/internal/kernelnames"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestSplitDevice(t *testing.T) {
	tests := []struct{ dev, kernel, label string }{
		{"eth0", "eth0", ""},
		{"eth3:0", "eth3", "eth3:0"},
		{"eth0.10@bond0", "eth0.10", ""},
		{"eth0.10@bond0:1", "eth0.10", "eth0.10:1"},
		{"ppp0", "ppp0", ""},
		{"", "", ""},
	}
	for _, tt := range tests {
		kernel, label := splitDevice(tt.dev)
		if kernel != tt.kernel || label != tt.label {
			t.Errorf("splitDevice(%q) = %q, %q; want %q, %q", tt.dev, kernel, label, tt.kernel, tt.label)
		}
	}
}

func addr(s string) netip.Addr {
	if s == "" {
		return netip.Addr{}
	}
	return netip.MustParseAddr(s)
}

func prefix(s string) netip.Prefix {
	if s == "" {
		return netip.Prefix{}
	}
	return netip.MustParsePrefix(s)
}

func TestChooseGateway(t *testing.T) {
	tests := []struct {
		name                       string
		config, route, peer, lease string
		own                        string
		want, wantFrom             string
	}{
		{"config wins over everything", "192.0.2.9", "192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.10/24", "192.0.2.9", FromConfig},
		{"config without address (device missing)", "192.0.2.9", "", "", "", "", "192.0.2.9", FromConfig},
		{"route before peer", "", "192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.10/24", "192.0.2.1", FromRoute},
		{"peer before lease", "", "", "100.64.9.1", "100.64.9.3", "100.64.9.2/32", "100.64.9.1", FromPeer},
		{"lease before guess", "", "", "", "192.0.2.3", "192.0.2.10/24", "192.0.2.3", FromLeasePrefix + "/l"},
		{"guess last", "", "", "", "", "192.0.2.10/24", "192.0.2.1", FromGuess},
		{"route equal to own address skipped", "", "192.0.2.10", "", "", "192.0.2.10/24", "192.0.2.1", FromGuess},
		{"lease equal to own address skipped", "", "", "", "192.0.2.10", "192.0.2.10/24", "192.0.2.1", FromGuess},
		{"nothing at all", "", "", "", "", "", "", ""},
		{"/32 without peer: no guess", "", "", "", "", "203.0.113.5/32", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := gatewayFacts{
				Config: addr(tt.config), Route: addr(tt.route), Peer: addr(tt.peer),
				Lease: addr(tt.lease), LeasePath: "/l", Addr: prefix(tt.own),
			}
			got, from := chooseGateway(f)
			if got != addr(tt.want) || from != tt.wantFrom {
				t.Errorf("chooseGateway = %v, %q; want %v, %q", got, from, tt.want, tt.wantFrom)
			}
		})
	}
}

func TestGuessGateway(t *testing.T) {
	tests := []struct{ own, want string }{
		{"192.168.1.77/24", "192.168.1.1"},
		{"100.64.0.200/10", "100.64.0.1"},
		{"192.168.1.1/24", ""}, // we are the first host
		{"198.51.100.6/30", "198.51.100.5"},
		{"198.51.100.6/31", "198.51.100.7"},
		{"198.51.100.7/31", "198.51.100.6"},
		{"198.51.100.7/32", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := guessGateway(prefix(tt.own)); got != addr(tt.want) {
			t.Errorf("guessGateway(%s) = %v, want %v", tt.own, got, tt.want)
		}
	}
}

func ipnet(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

func TestRouteGateway(t *testing.T) {
	main := unix.RT_TABLE_MAIN
	route := func(dst string, idx int, gw string, metric int) netlink.Route {
		return netlink.Route{Table: main, Dst: ipnet(dst), LinkIndex: idx, Gw: net.ParseIP(gw).To4(), Priority: metric}
	}
	tests := []struct {
		name   string
		routes []netlink.Route
		index  int
		own    string
		want   string
	}{
		{
			name:   "default route via the device",
			routes: []netlink.Route{route("0.0.0.0/0", 2, "192.0.2.1", 0), route("0.0.0.0/0", 3, "198.51.100.1", 10)},
			index:  3, own: "198.51.100.7/24", want: "198.51.100.1",
		},
		{
			name:   "default beats a specific route, both on the subnet",
			routes: []netlink.Route{route("10.0.0.0/8", 2, "192.0.2.254", 0), route("0.0.0.0/0", 2, "192.0.2.1", 100)},
			index:  2, own: "192.0.2.10/24", want: "192.0.2.1",
		},
		{
			name:   "lower metric among defaults",
			routes: []netlink.Route{route("0.0.0.0/0", 2, "192.0.2.2", 200), route("0.0.0.0/0", 2, "192.0.2.1", 100)},
			index:  2, own: "192.0.2.10/24", want: "192.0.2.1",
		},
		{
			name:   "alias: gateway on its own subnet beats the parent's default",
			routes: []netlink.Route{route("0.0.0.0/0", 2, "203.0.113.1", 0), route("192.0.2.0/24", 2, "198.51.100.254", 0)},
			index:  2, own: "198.51.100.2/24", want: "198.51.100.254",
		},
		{
			name:   "onlink default outside a /32 is still used",
			routes: []netlink.Route{route("0.0.0.0/0", 2, "203.0.113.1", 0)},
			index:  2, own: "203.0.113.5/32", want: "203.0.113.1",
		},
		{
			name: "our own protocol and other tables are ignored",
			routes: []netlink.Route{
				{Table: main, Dst: ipnet("0.0.0.0/0"), LinkIndex: 2, Gw: net.ParseIP("192.0.2.99"), Protocol: kernelnames.RouteProtocol},
				{Table: 1, Dst: ipnet("0.0.0.0/0"), LinkIndex: 2, Gw: net.ParseIP("192.0.2.98")},
			},
			index: 2, own: "192.0.2.10/24", want: "",
		},
		{
			name:   "connected routes have no gateway",
			routes: []netlink.Route{{Table: main, Dst: ipnet("192.0.2.0/24"), LinkIndex: 2, Src: net.ParseIP("192.0.2.10")}},
			index:  2, own: "192.0.2.10/24", want: "",
		},
		{
			name: "multipath nexthop through the device",
			routes: []netlink.Route{{Table: main, Dst: ipnet("0.0.0.0/0"), MultiPath: []*netlink.NexthopInfo{
				{LinkIndex: 2, Gw: net.ParseIP("192.0.2.1")},
				{LinkIndex: 3, Gw: net.ParseIP("198.51.100.1")},
			}}},
			index: 3, own: "198.51.100.7/24", want: "198.51.100.1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := routeGateway(tt.routes, tt.index, prefix(tt.own)); got != addr(tt.want) {
				t.Errorf("routeGateway = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLinkUp(t *testing.T) {
	up := net.FlagUp
	tests := []struct {
		name  string
		attrs netlink.LinkAttrs
		want  bool
	}{
		{"ethernet with carrier", netlink.LinkAttrs{Flags: up, OperState: netlink.OperUp, RawFlags: unix.IFF_UP | unix.IFF_LOWER_UP}, true},
		{"ppp: oper unknown", netlink.LinkAttrs{Flags: up, OperState: netlink.OperUnknown, RawFlags: unix.IFF_UP | unix.IFF_LOWER_UP}, true},
		{"admin down", netlink.LinkAttrs{OperState: netlink.OperDown, RawFlags: 0}, false},
		{"no carrier", netlink.LinkAttrs{Flags: up, OperState: netlink.OperLowerLayerDown, RawFlags: unix.IFF_UP}, false},
		{"oper down despite carrier", netlink.LinkAttrs{Flags: up, OperState: netlink.OperDown, RawFlags: unix.IFF_UP | unix.IFF_LOWER_UP}, false},
		{"oper unknown without carrier", netlink.LinkAttrs{Flags: up, OperState: netlink.OperUnknown, RawFlags: unix.IFF_UP}, false},
	}
	for _, tt := range tests {
		if got := linkUp(&tt.attrs); got != tt.want {
			t.Errorf("%s: linkUp = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func v4addr(idx int, cidr, label string, flags int) netlink.Addr {
	ip, n, err := net.ParseCIDR(cidr)
	if err != nil {
		panic(err)
	}
	n.IP = ip.To4()
	return netlink.Addr{IPNet: n, Label: label, LinkIndex: idx, Flags: flags}
}

// TestDescribe covers the pure path from netlink dumps to a Link for the
// cases the lab cannot build cheaply (secondary addresses, peer prefixes).
func TestDescribe(t *testing.T) {
	attrs := func(name string, idx int, flags net.Flags) *netlink.Device {
		return &netlink.Device{LinkAttrs: netlink.LinkAttrs{
			Name: name, Index: idx, Flags: flags | net.FlagUp,
			OperState: netlink.OperUp, RawFlags: unix.IFF_UP | unix.IFF_LOWER_UP,
		}}
	}
	ptpAddr := v4addr(4, "100.64.9.2/32", "ppp0", 0)
	ptpAddr.Peer = ipnet("100.64.9.0/30")
	ptpAddr.Peer.IP = net.ParseIP("100.64.9.1").To4()
	links := []netlink.Link{attrs("eth3", 3, 0), attrs("ppp0", 4, net.FlagPointToPoint), attrs("bare", 5, 0)}
	addrs := []netlink.Addr{
		v4addr(3, "198.51.100.2/24", "eth3:0", 0),
		v4addr(3, "203.0.113.2/24", "eth3", 0),
		v4addr(3, "203.0.113.3/24", "eth3", unix.IFA_F_SECONDARY),
		ptpAddr,
	}
	v := newView(links, addrs, nil)
	tests := []struct {
		req  Request
		want Link
	}{
		{Request{Device: "eth3"}, Link{Device: "eth3", Kernel: "eth3", Index: 3, Present: true, Up: true,
			Addr: prefix("203.0.113.2/24"), Net: prefix("203.0.113.0/24")}},
		{Request{Device: "eth3:0"}, Link{Device: "eth3:0", Kernel: "eth3", Index: 3, Present: true, Up: true,
			Addr: prefix("198.51.100.2/24"), Net: prefix("198.51.100.0/24")}},
		{Request{Device: "eth3:1"}, Link{Device: "eth3:1", Kernel: "eth3", Index: 3, Up: true,
			Problem: ProblemNoAddress + " labelled eth3:1"}},
		{Request{Device: "ppp0"}, Link{Device: "ppp0", Kernel: "ppp0", Index: 4, Present: true, Up: true, PointToPoint: true,
			Addr: prefix("100.64.9.2/30"), Net: prefix("100.64.9.0/30"), Peer: addr("100.64.9.1")}},
		{Request{Device: "bare"}, Link{Device: "bare", Kernel: "bare", Index: 5, Up: true, Problem: ProblemNoAddress}},
		{Request{Device: "gone0"}, Link{Device: "gone0", Kernel: "gone0", Problem: ProblemNoDevice}},
	}
	for _, tt := range tests {
		got, _ := v.describe(tt.req)
		if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
			cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
			t.Errorf("describe(%q) (-want +got):\n%s", tt.req.Device, diff)
		}
	}
}

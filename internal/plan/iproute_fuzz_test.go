package plan

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// routeArgs writes rt as `ip route` arguments.
func routeArgs(rt Route) []string {
	args := []string{rt.Dst.String()}
	if rt.Gateway.IsValid() {
		args = append(args, "via", rt.Gateway.String())
	}
	if rt.Device != "" {
		args = append(args, "dev", rt.Device)
	}
	if rt.Src.IsValid() {
		args = append(args, "src", rt.Src.String())
	}
	args = append(args, "table", strconv.Itoa(rt.Table), "metric", strconv.Itoa(rt.Metric))
	if rt.OnLink {
		args = append(args, "onlink")
	}
	return args
}

// ruleArgs writes ru as `ip rule` arguments.
func ruleArgs(ru Rule) []string {
	var args []string
	if ru.Src.IsValid() {
		args = append(args, "from", ru.Src.String())
	}
	if ru.Dst.IsValid() {
		args = append(args, "to", ru.Dst.String())
	}
	if ru.Iif != "" {
		args = append(args, "iif", ru.Iif)
	}
	if ru.Oif != "" {
		args = append(args, "oif", ru.Oif)
	}
	if ru.Mark != 0 || ru.Mask != 0 {
		args = append(args, "fwmark", fmt.Sprintf("%#x/%#x", ru.Mark, ru.Mask))
	}
	if ru.Priority != 0 {
		args = append(args, "priority", strconv.Itoa(ru.Priority))
	}
	return append(args, "lookup", strconv.Itoa(ru.Table))
}

// validTable is what the kernel takes as a table to put a route in or
// look one up: any 32-bit number but unspec (0) and local (255).
func validTable(t int) bool { return t >= 1 && t <= math.MaxUint32-1 && t != 255 }

// FuzzParseRoute reads the arguments of rule files' `ip route` lines, as
// the planner does. An accepted route is one the kernel could take over
// netlink: an IPv4 destination without host bits, IPv4 next hop and
// source, a usable table, a metric that fits its 32 bits, and somewhere
// to send the packets; and written out again it reads the same.
func FuzzParseRoute(f *testing.F) {
	for _, s := range []string{
		"10.1.0.0/16 dev eth1", "default via 192.0.2.1 table 4201", "10.99.0.0/16 via 192.168.10.254 dev eth1",
		"10.0.0.1 dev eth0 src 10.0.0.2 metric 5 onlink scope link", "10.0.0.0/8 proto static dev x",
		"10.0.0.0/8 via 2001:db8::1", "all dev eth0 table main metric 4294967295", "10.0.0.0/8 dev eth0 metric 4294967296",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		args := strings.Fields(text)
		rt, err := parseRoute(args)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "ip route") {
				t.Fatalf("error does not name the command: %v", err)
			}
			return
		}
		if !rt.Dst.IsValid() || !rt.Dst.Addr().Is4() || rt.Dst != rt.Dst.Masked() {
			t.Fatalf("%q: destination %v", args, rt.Dst)
		}
		if g := rt.Gateway; g.IsValid() && !g.Is4() || rt.Src.IsValid() && !rt.Src.Is4() {
			t.Fatalf("%q: via %v src %v", args, rt.Gateway, rt.Src)
		}
		if !rt.Gateway.IsValid() && rt.Device == "" {
			t.Fatalf("%q: a route to nowhere", args)
		}
		if !validTable(rt.Table) || rt.Metric < 0 || rt.Metric > math.MaxUint32 {
			t.Fatalf("%q: table %d, metric %d", args, rt.Table, rt.Metric)
		}
		again, err := parseRoute(routeArgs(rt))
		if err != nil || !cmp.Equal(again, rt, cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})) {
			t.Fatalf("%q written as %q reads as %+v, %v; want %+v", args, routeArgs(rt), again, err, rt)
		}
	})
}

// FuzzParseRule does the same for `ip rule` lines: prefixes are IPv4
// networks, the table is one a rule can look up, and the rule reads the
// same when written out again.
func FuzzParseRule(f *testing.F) {
	for _, s := range []string{
		"from 10.0.0.0/8 table 4201", "fwmark 0x1000000/0x3f000000 lookup 4201 priority 9400", "iif eth0 to 1.2.3.4 lookup main",
		"from all oif wan1 table default pref 9500", "fwmark 0x1 table 5", "fwmark 1/0 table 5", "from 10.0.0.1/8 table 255",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		args := strings.Fields(text)
		ru, err := parseRule(args)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "ip rule") {
				t.Fatalf("error does not name the command: %v", err)
			}
			return
		}
		for _, p := range []struct {
			name string
			ok   bool
		}{{"from", !ru.Src.IsValid() || ru.Src.Addr().Is4() && ru.Src == ru.Src.Masked()},
			{"to", !ru.Dst.IsValid() || ru.Dst.Addr().Is4() && ru.Dst == ru.Dst.Masked()}} {
			if !p.ok {
				t.Fatalf("%q: %s %v / %v", args, p.name, ru.Src, ru.Dst)
			}
		}
		if !validTable(ru.Table) || ru.IPv6 || ru.SuppressPrefixlen != -1 {
			t.Fatalf("%q: %+v", args, ru)
		}
		again, err := parseRule(ruleArgs(ru))
		if err != nil || again != ru {
			t.Fatalf("%q written as %q reads as %+v, %v; want %+v", args, ruleArgs(ru), again, err, ru)
		}
	})
}

// TestParseRouteMetricRange: the kernel keeps a route's metric in 32
// bits; a larger one would be installed cut short and never match the
// plan, so the monitor would see drift on every comparison.
func TestParseRouteMetricRange(t *testing.T) {
	if rt, err := parseRoute([]string{"10.0.0.0/8", "dev", "eth0", "metric", "4294967295"}); err != nil || rt.Metric != math.MaxUint32 {
		t.Errorf("metric 4294967295: %+v, %v", rt, err)
	}
	for _, m := range []string{"4294967296", "99999999999", "-1", "0x10"} {
		if rt, err := parseRoute([]string{"10.0.0.0/8", "dev", "eth0", "metric", m}); err == nil {
			t.Errorf("metric %s accepted: %+v", m, rt)
		}
	}
}

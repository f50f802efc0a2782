package plan_test

import (
	"bytes"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/ispbalance/ispbalance/internal/config"
	"github.com/ispbalance/ispbalance/internal/plan"
	"github.com/ispbalance/ispbalance/internal/plan/plantest"
	"github.com/ispbalance/ispbalance/internal/render"
)

// dualISP is uplink k with IPv6 too: 2001:db8:k::2/64, gateway fe80::k
// learned from router advertisements.
func dualISP(k int) plan.Link {
	l := plantest.ISP(k)
	l.V6Addr = netip.MustParsePrefix("2001:db8:" + strconv.Itoa(k) + "::2/64")
	l.V6Gateway = netip.MustParseAddr("fe80::" + strconv.Itoa(k))
	l.V6GatewayFrom = "ra"
	return l
}

// delegating is dualISP with a delegated prefix.
func delegating(k int, prefix string) plan.Link {
	l := dualISP(k)
	l.V6Delegated = netip.MustParsePrefix(prefix)
	return l
}

// linkLocalUplink is ISP k with no global IPv6 address on the uplink,
// only a gateway and a delegated prefix.
func linkLocalUplink(k int, prefix string) plan.Link {
	l := delegating(k, prefix)
	l.V6Addr = netip.Prefix{}
	return l
}

// lan6 is LAN k with an IPv6 address.
func lan6(k int, addr string) plan.Link {
	l := plantest.LAN(k)
	l.V6Addr = netip.MustParsePrefix(addr)
	return l
}

// delegatedLinks: CABLE delegates a /56 and DSL a /60; lan1 is numbered
// from a ULA, lan2 from CABLE's delegation.
var delegatedLinks = map[string]plan.Link{
	"wan1": delegating(1, "2001:db8:100::/56"), "wan2": delegating(2, "2001:db8:200::/60"),
	"lan1": lan6(1, "fd00:0:0:3::1/64"), "lan2": lan6(2, "2001:db8:100:1::1/64"),
}

// dualStackScenarios are kept apart from plantest.Scenarios, which the
// applier's fake kernel walks and which models IPv4 routing only.
var dualStackScenarios = []plantest.Scenario{
	{
		Name:  "dual-stack-two-isps",
		Conf:  "CABLE wan1 isp default 3\nDSL wan2 isp\nLAN lan1 lan\n",
		Links: map[string]plan.Link{"wan1": dualISP(1), "wan2": dualISP(2), "lan1": plantest.LAN(1)},
		Up:    map[string]bool{"CABLE": true, "DSL": true},
	},
	{
		Name: "dual-stack-three-isps-failover-one-without-ipv6",
		Conf: "mode=failover\nA wan1 isp default 1\nB wan2 isp default 5\nC wan3 isp default 2\nLAN lan1 lan\n",
		Links: map[string]plan.Link{"wan1": dualISP(1), "wan2": plantest.ISP(2), "wan3": dualISP(3),
			"lan1": plantest.LAN(1)},
		Up: map[string]bool{"A": true, "B": true, "C": true},
	},
	{
		Name:  "dual-stack-ipv6-off",
		Conf:  "ipv6=off\nCABLE wan1 isp\nDSL wan2 isp\nLAN lan1 lan\n",
		Links: map[string]plan.Link{"wan1": dualISP(1), "wan2": dualISP(2), "lan1": plantest.LAN(1)},
		Up:    map[string]bool{"CABLE": true, "DSL": true},
	},
	{
		Name:  "dual-stack-delegated-auto",
		Conf:  "CABLE wan1 isp\nDSL wan2 isp\nLAN1 lan1 lan\nLAN2 lan2 lan\n",
		Links: delegatedLinks,
		Up:    map[string]bool{"CABLE": true, "DSL": true},
	},
	{
		Name:  "dual-stack-delegated-failover-one-down",
		Conf:  "ipv6_nat=failover\nCABLE wan1 isp\nDSL wan2 isp\nLAN1 lan1 lan\nLAN2 lan2 lan\n",
		Links: delegatedLinks,
		Up:    map[string]bool{"DSL": true},
	},
	{
		Name:  "dual-stack-nat-off",
		Conf:  "ipv6_nat=off\nCABLE wan1 isp\nDSL wan2 isp\nLAN1 lan1 lan\nLAN2 lan2 lan\n",
		Links: delegatedLinks,
		Up:    map[string]bool{"CABLE": true, "DSL": true},
	},
	{
		// CABLE numbers its uplink link-local only and delegates a /56;
		// the router's LAN address from it is CABLE's IPv6 source.
		Name: "dual-stack-link-local-uplink",
		Conf: "CABLE wan1 isp\nDSL wan2 isp\nLAN1 lan1 lan\n",
		Links: map[string]plan.Link{"wan1": linkLocalUplink(1, "2001:db8:100::/56"), "wan2": dualISP(2),
			"lan1": lan6(1, "2001:db8:100:1::1/64")},
		Up: map[string]bool{"CABLE": true, "DSL": true},
	},
	{
		Name:  "dual-stack-one-down",
		Conf:  "CABLE wan1 isp\nDSL wan2 isp\nLAN lan1 lan\n",
		Links: map[string]plan.Link{"wan1": dualISP(1), "wan2": dualISP(2), "lan1": plantest.LAN(1)},
		Up:    map[string]bool{"DSL": true},
	},
}

func TestGoldenDualStack(t *testing.T) {
	for _, sc := range dualStackScenarios {
		t.Run(sc.Name, func(t *testing.T) { checkGolden(t, sc) })
	}
}

// TestIPv6FollowsIPv4Verdicts: an ISP judged down carries neither family;
// ipv6=off plans no IPv6 routing, NAT or marking, but keeps the IPv6
// firewall.
func TestIPv6FollowsIPv4Verdicts(t *testing.T) {
	for _, sc := range dualStackScenarios {
		p, err := sc.Build()
		if err != nil {
			t.Fatal(err)
		}
		var script bytes.Buffer
		render.Script(&script, p)
		text := script.String()
		switch sc.Name {
		case "dual-stack-one-down":
			if strings.Contains(text, "nexthop via fe80::1") || !strings.Contains(text, "ip -6 route replace default via fe80::2 dev wan2 table 4200") {
				t.Errorf("%s: CABLE is down, but IPv6 still balances through it:\n%s", sc.Name, text)
			}
		case "dual-stack-ipv6-off":
			if strings.Contains(text, "ip -6 route") || strings.Contains(text, "ip -6 rule") || strings.Contains(text, "MASQUERADE\n*") {
				t.Errorf("%s: IPv6 routing planned with ipv6=off:\n%s", sc.Name, text)
			}
			if len(p.Firewall6) != 1 || p.Firewall6[0].Name != "filter" {
				t.Errorf("%s: with ipv6=off want the IPv6 filter table only, got %d tables", sc.Name, len(p.Firewall6))
			}
		}
	}
}

// TestIPv6JudgedApart: an ISP whose IPv6 alone is judged down leaves IPv6
// balancing only; every ISP's IPv6 judged down routes IPv6 through all
// that route IPv4, as a last resort, unless last_resort=unreachable.
func TestIPv6JudgedApart(t *testing.T) {
	links := map[string]plan.Link{"wan1": dualISP(1), "wan2": dualISP(2), "lan1": plantest.LAN(1)}
	build := func(conf string, down6 map[string]bool) plan.Plan {
		t.Helper()
		sc := plantest.Scenario{Conf: conf + "CABLE wan1 isp\nDSL wan2 isp\nLAN lan1 lan\n", Links: links,
			Up: map[string]bool{"CABLE": true, "DSL": true}}
		cfg, err := config.Parse("balance.conf", strings.NewReader(sc.Conf))
		if err != nil {
			t.Fatal(err)
		}
		p, err := plan.Build(plan.Input{Config: cfg, Links: links, Up: sc.Up, Down6: down6})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	routing := func(p plan.Plan) (v4, v6 []string) {
		for _, isp := range p.ISPs {
			if isp.Routing {
				v4 = append(v4, isp.Name)
			}
			if isp.Routing6 {
				v6 = append(v6, isp.Name)
			}
		}
		return v4, v6
	}
	p := build("", map[string]bool{"CABLE": true})
	if v4, v6 := routing(p); strings.Join(v4, ",") != "CABLE,DSL" || strings.Join(v6, ",") != "DSL" || p.LastResort6 {
		t.Errorf("CABLE's IPv6 down: IPv4 via %v, IPv6 via %v (last resort %v); want IPv4 via both, IPv6 via DSL", v4, v6, p.LastResort6)
	}
	p = build("", map[string]bool{"CABLE": true, "DSL": true})
	if _, v6 := routing(p); strings.Join(v6, ",") != "CABLE,DSL" || !p.LastResort6 {
		t.Errorf("every IPv6 down: IPv6 via %v (last resort %v); want both as a last resort", v6, p.LastResort6)
	}
	p = build("last_resort=unreachable\n", map[string]bool{"CABLE": true, "DSL": true})
	if _, v6 := routing(p); len(v6) != 0 || p.LastResort6 {
		t.Errorf("last_resort=unreachable: IPv6 via %v; want none", v6)
	}
}

// TestRulesSpelledAsSaved: every rule the planner writes itself puts its
// options in the order iptables-save prints them (addresses, devices,
// protocol, matches, target). A rule spelled otherwise never compares
// equal to the installed one: every rebuild would rewrite its chain and
// the drift check would report it missing.
func TestRulesSpelledAsSaved(t *testing.T) {
	rank := map[string]int{"-s": 1, "-d": 2, "-i": 3, "-o": 4, "-p": 5, "-m": 6, "-j": 7, "-g": 7}
	var all []plantest.Scenario
	all = append(append(append(all, plantest.Scenarios...), dualStackScenarios...), user6Scenarios...)
	all = append(all, stickyDualStack)
	for _, sc := range all {
		p, err := sc.Build()
		if err != nil {
			t.Fatalf("%s: %v", sc.Name, err)
		}
		for _, tables := range [][]plan.Table{p.Firewall, p.Firewall6} {
			for _, tbl := range tables {
				for _, c := range tbl.Chains {
					if strings.HasPrefix(c.Name, "ISPB-U-") {
						continue // the admin's rules, compared as spelled
					}
					for i, rule := range c.Rules {
						if len(c.Origins) > i && c.Origins[i] != "" {
							continue
						}
						last := 0
						for j, w := range rule {
							if j > 0 && rule[j-1] == "!" && w == "--mark" {
								continue
							}
							rk, ok := rank[w]
							if !ok {
								continue
							}
							if rk < last {
								t.Errorf("%s: %s %s: %q is out of iptables-save's order", sc.Name, tbl.Name, c.Name, strings.Join(rule, " "))
								break
							}
							if rk != 6 || last != 6 {
								last = rk
							}
						}
					}
				}
			}
		}
	}
}

// TestDegradedIPv6: an ISP whose IPv6 alone is degraded leaves IPv6
// balancing while another ISP's IPv6 is healthy, and keeps its IPv4.
func TestDegradedIPv6(t *testing.T) {
	cfg, _ := config.Parse("b", strings.NewReader("A wan1 isp\nB wan2 isp\nLAN lan1 lan\n"))
	links := map[string]plan.Link{"wan1": dualISP(1), "wan2": dualISP(2), "lan1": plantest.LAN(1)}
	p, err := plan.Build(plan.Input{Config: cfg, Links: links, Up: plantest.AllUp("A", "B"), Degraded6: plantest.AllUp("A")})
	if err != nil {
		t.Fatal(err)
	}
	a, b := p.ISPs[0], p.ISPs[1]
	if !a.Routing || a.Routing6 || !a.Degraded6 || !b.Routing || !b.Routing6 {
		t.Fatalf("A routing %v/%v (degraded6 %v), B %v/%v: want A's IPv6 alone out", a.Routing, a.Routing6, a.Degraded6, b.Routing, b.Routing6)
	}
}

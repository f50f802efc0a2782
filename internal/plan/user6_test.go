package plan_test

import (
	"bytes"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/ispbalance/ispbalance/internal/plan"
	"github.com/ispbalance/ispbalance/internal/plan/plantest"
	"github.com/ispbalance/ispbalance/internal/render"
)

// v6Uplink is uplink k with IPv6: 2001:db8:k::2/64, gateway fe80::k from
// router advertisements, and the delegated prefix when one is given.
func v6Uplink(k int, delegated string) plan.Link {
	l := plantest.ISP(k)
	l.V6Addr = netip.MustParsePrefix("2001:db8:" + strconv.Itoa(k) + "::2/64")
	l.V6Gateway = netip.MustParseAddr("fe80::" + strconv.Itoa(k))
	l.V6GatewayFrom = "ra"
	if delegated != "" {
		l.V6Delegated = netip.MustParsePrefix(delegated)
	}
	return l
}

// v6LAN is LAN j with an IPv6 address too.
func v6LAN(j int, addr6 string) plan.Link {
	l := plantest.LAN(j)
	l.V6Addr = netip.MustParsePrefix(addr6)
	return l
}

// ruleFile6 exercises the rule files' IPv6 forms beside IPv4 lines of
// the same shapes.
const ruleFile6 = `# the LANs reach the router's ssh on 2222, in both families
iptables -A INPUT -s ${:lan.net} -i ${:lan.dev} -p tcp --dport 2222 -j ACCEPT
ip6tables -A INPUT -s ${:lan.net6} -i ${:lan.dev} -p tcp --dport 2222 -j ACCEPT
ip6tables -N AUDIT
ip6tables -A AUDIT -j LOG --log-prefix "audit6: "
ip6tables -A FORWARD -d ${GUEST.net6} -j AUDIT
ip6tables -I FORWARD 1 -p tcp --dport 23 -j REJECT
ip6tables -t nat -A POSTROUTING -s ${LAN.net6} -o ${DSL.dev} -j MASQUERADE
ip6tables -t mangle -A OUTPUT -p udp --dport 123 -j DSCP --set-dscp 46
ip6tables -t raw -A PREROUTING -i ${CABLE.dev} -p udp --dport 5353 -j NOTRACK
ip6tables -A INPUT -s ${CABLE.prefix6} -j ACCEPT
ip6tables -A INPUT -s ${DSL.prefix6} -j ACCEPT
forward 443 2001:db8:100:2::20
forward-with-snat 8080 [fd00:1::30]:80
ip -6 route add 2001:db8:99::/48 via fe80::99 dev ${LAN.dev}
ip route add ${CABLE.prefix6} dev ${GUEST.dev} table ${CABLE.table}
ip -6 rule add from ${:lan.net6} lookup ${CABLE.table}
ip rule add from 192.168.2.0/24 lookup ${CABLE.table}
ip -6 rule add fwmark ${DSL.fwmark} lookup ${DSL.table} priority 9450
`

// user6Scenarios are golden scenarios of rule files' IPv6 lines, apart
// from plantest.Scenarios, which the applier's fake kernel walks and
// which models IPv4 routing only.
var user6Scenarios = []plantest.Scenario{
	{
		// CABLE delegates 2001:db8:100::/56, from which GUEST is numbered;
		// LAN has a ULA; DSL has IPv6 but no delegated prefix.
		Name: "dual-stack-rule-files",
		Conf: "CABLE wan1 isp\nDSL wan2 isp\nLAN lan1 lan\nGUEST lan2 lan\n",
		Links: map[string]plan.Link{"wan1": v6Uplink(1, "2001:db8:100::/56"), "wan2": v6Uplink(2, ""),
			"lan1": v6LAN(1, "fd00:1::1/64"), "lan2": v6LAN(2, "2001:db8:100:2::1/64")},
		Up:    plantest.AllUp("CABLE", "DSL"),
		Rules: ruleFile6,
	},
	{
		// No ISP has IPv6: the lines that need an ISP's IPv6 are skipped
		// with a note, the rest still goes into the IPv6 firewall, whose
		// nat, mangle and raw tables then hold the rule files' chains
		// alone.
		Name:  "rule-files-ipv6-without-isp-ipv6",
		Conf:  "CABLE wan1 isp\nDSL wan2 isp\nLAN lan1 lan\nGUEST lan2 lan\n",
		Links: map[string]plan.Link{"wan1": plantest.ISP(1), "wan2": plantest.ISP(2), "lan1": v6LAN(1, "fd00:1::1/64"), "lan2": plantest.LAN(2)},
		Up:    plantest.AllUp("CABLE", "DSL"),
		Rules: ruleFile6,
	},
}

func TestGoldenRuleFiles6(t *testing.T) {
	for _, sc := range user6Scenarios {
		t.Run(sc.Name, func(t *testing.T) { checkGolden(t, sc) })
	}
}

func buildRules6(t *testing.T, rulesText string) (plan.Plan, error) {
	t.Helper()
	sc := user6Scenarios[0]
	sc.Rules = rulesText
	return sc.Build()
}

// TestRuleFiles6Placement: the ip6tables lines' rules are reached from the
// same places in ispbalance's IPv6 chains as iptables lines' are in
// IPv4's, and their own chains are renamed and jumped to by the new name.
func TestRuleFiles6Placement(t *testing.T) {
	p, err := buildRules6(t, ruleFile6)
	if err != nil {
		t.Fatal(err)
	}
	chain := func(tables []plan.Table, table, name string) plan.Chain {
		for _, tb := range tables {
			for _, c := range tb.Chains {
				if tb.Name == table && c.Name == name {
					return c
				}
			}
		}
		t.Fatalf("no chain %s in %s", name, table)
		return plan.Chain{}
	}
	established := "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
	for _, fw := range []struct {
		name   string
		tables []plan.Table
	}{{"IPv4", p.Firewall}, {"IPv6", p.Firewall6}} {
		in := chain(fw.tables, "filter", "ISPB-INPUT")
		for i, rule := range in.Rules {
			if strings.Join(rule, " ") == "-j ISPB-U-INPUT" {
				if i == 0 || strings.Join(in.Rules[i-1], " ") != established {
					t.Errorf("%s: the jump to ISPB-U-INPUT is not right after accepting established traffic:\n%v", fw.name, in.Rules)
				}
			}
		}
	}
	fwd := chain(p.Firewall6, "filter", "ISPB-U-FORWARD")
	if got := strings.Join(fwd.Rules[0], " "); got != "-p tcp --dport 23 -j REJECT" {
		t.Errorf("-I FORWARD 1 is not first in ISPB-U-FORWARD: %q", got)
	}
	if got := strings.Join(fwd.Rules[1], " "); !strings.HasSuffix(got, "-j ISPB-U-AUDIT") {
		t.Errorf("a jump to the file's own chain is not renamed: %q", got)
	}
	if fwd.Origin(0) != "balance/firewall/10.rules:7" {
		t.Errorf("origin of the inserted rule: %q", fwd.Origin(0))
	}
	for _, tb := range p.Firewall6 {
		if tb.Name == "mangle" && !containsJump(tb.Jumps, plan.Jump{From: "OUTPUT", To: "ISPB-U-OUTPUT"}) {
			t.Errorf("mangle OUTPUT does not jump to the rule files' chain: %v", tb.Jumps)
		}
	}
}

func containsJump(jumps []plan.Jump, j plan.Jump) bool {
	for _, have := range jumps {
		if have == j {
			return true
		}
	}
	return false
}

// TestRuleFiles6Routing: IPv6 rules get priorities from 9400 in IPv6's
// own list, so an IPv4 and an IPv6 line may both have 9400; a priority
// del removes a rule of the same family only.
func TestRuleFiles6Routing(t *testing.T) {
	p, err := buildRules6(t, `ip rule add from 192.168.2.0/24 lookup 100
ip -6 rule add from fd00:1::/64 lookup 100
ip rule add from 2001:db8:7::/48 lookup 101
ip -6 rule del from fd00:1::/64 lookup 100
ip -6 route add 2001:db8:99::/48 dev lan1
ip route add default via fe80::1 dev lan1 table 100
`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ru := range p.Rules {
		if ru.Origin != "" {
			got = append(got, strconv.FormatBool(ru.IPv6)+" "+render.RuleArgs(ru))
		}
	}
	want := []string{"false priority 9400 from 192.168.2.0/24 lookup 100", "true priority 9401 from 2001:db8:7::/48 lookup 101"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rule files' rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var routes []string
	for _, rt := range p.Routes {
		if rt.Origin != "" {
			routes = append(routes, strconv.FormatBool(rt.IPv6())+" "+render.RouteArgs(rt))
		}
	}
	wantRoutes := []string{"true 2001:db8:99::/48 dev lan1 scope link table main proto 177", "true default via fe80::1 dev lan1 table 100 proto 177"}
	if strings.Join(routes, "\n") != strings.Join(wantRoutes, "\n") {
		t.Errorf("rule files' routes:\n%s\nwant:\n%s", strings.Join(routes, "\n"), strings.Join(wantRoutes, "\n"))
	}
}

// TestRuleFiles6Errors: a bad IPv6 value fails the plan with the file and
// line, and so does anything that cannot be installed as written.
func TestRuleFiles6Errors(t *testing.T) {
	for _, c := range []struct{ line, want string }{
		{"ip -6 route add 10.0.0.0/8 dev lan1", `balance/firewall/10.rules:2: ip route: destination "10.0.0.0/8" is not an IPv6 address or prefix`},
		{"ip -6 route add 2001:db8::/32 via 192.0.2.1 dev lan1", `balance/firewall/10.rules:2: ip route: via "192.0.2.1" is not an IPv6 address`},
		{"ip route add 2001:db8::/32 via 192.0.2.1 dev lan1", `balance/firewall/10.rules:2: ip route: via "192.0.2.1" is not an IPv6 address`},
		{"ip route add 10.0.0.0/8 via 2001:db8::1", `balance/firewall/10.rules:2: ip route: via "2001:db8::1" is not an IPv4 address`},
		{"ip -6 route add 2001:db8::/32 via fe80::1", "balance/firewall/10.rules:2: ip route: via fe80::1 is link-local and needs dev"},
		{"ip -6 route add 2001:db8::/129 dev lan1", `balance/firewall/10.rules:2: ip route: destination "2001:db8::/129" is not an IPv6 address or prefix`},
		{"ip -6 rule add from 192.168.1.0/24 lookup 5", `balance/firewall/10.rules:2: ip rule: from "192.168.1.0/24"`},
		{"ip -6 rule add from fd00::/8 lookup 5 priority 9000", "balance/firewall/10.rules:2: ip rule priority 9000: rule files may use 9400-9899"},
		{"ip -6 rule del from fd00::/8 lookup 5", "balance/firewall/10.rules:2: ip rule del: no such rule from the rule files"},
		{"ip -6 route del 2001:db8::/32 dev lan1", "balance/firewall/10.rules:2: ip route del: no such route from the rule files"},
		{"ip6tables -N SITE\nip6tables -A SITE -j ACCEPT\nip6tables -X SITE", "balance/firewall/10.rules:4: cannot delete chain SITE: it still has rules"},
		{"ip6tables -D INPUT -j ACCEPT", "balance/firewall/10.rules:2: nothing to delete"},
	} {
		_, err := buildRules6(t, "# first\n"+c.line+"\n")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.line, err, c.want)
		}
	}
	// The families keep separate chains: one name in both is fine.
	if _, err := buildRules6(t, "iptables -N SITE\nip6tables -N SITE\nip6tables -A INPUT -j SITE\n"); err != nil {
		t.Errorf("a chain of the same name in both families: %v", err)
	}
}

// TestRuleFiles6Shown: -d shows the rule files' IPv6 lines in the IPv6
// firewall and routing, with the line each comes from.
func TestRuleFiles6Shown(t *testing.T) {
	p, err := buildRules6(t, ruleFile6)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := render.Script(&b, p); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	_, v6, _ := strings.Cut(text, "ip6tables-restore --noflush")
	for _, want := range []string{
		"-A ISPB-U-INPUT -s fd00:1::/64 -i lan1 -p tcp --dport 2222 -j ACCEPT",
		"-A ISPB-U-POSTROUTING -s fd00:1::/64 -o wan2 -j MASQUERADE",
		"-A ISPB-U-PREROUTING -i wan1 -d 2001:db8:1::2 -p tcp --dport 8080 -j DNAT --to-destination [fd00:1::30]:80",
		"-A ISPB-U-FORWARD -i wan1 -p tcp -d 2001:db8:100:2::20 --dport 443 -j ACCEPT",
		"-A OUTPUT -j ISPB-U-OUTPUT",
	} {
		if !strings.Contains(v6, want) {
			t.Errorf("-d lacks %q in the IPv6 firewall:\n%s", want, v6)
		}
	}
	for _, want := range []string{
		"ip -6 route replace 2001:db8:99::/48 via fe80::99 dev lan1 table main proto 177  # balance/firewall/10.rules:15",
		"ip -6 rule add priority 9450 fwmark 0x2000000/0x3f000000 lookup 4202  # balance/firewall/10.rules:19",
		"# rule files: balance/firewall/10.rules:12: skipped: service DSL has no prefix6",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("-d lacks %q:\n%s", want, text)
		}
	}
}

// BenchmarkBuildRuleFiles plans the IPv4 rule-files scenario and the
// dual-stack one whose rule file has IPv6 lines too, for comparison.
func BenchmarkBuildRuleFiles(b *testing.B) {
	var ipv4 plantest.Scenario
	for _, sc := range plantest.Scenarios {
		if sc.Name == "rule-files" {
			ipv4 = sc
		}
	}
	for _, sc := range []plantest.Scenario{ipv4, user6Scenarios[0]} {
		b.Run(sc.Name, func(b *testing.B) {
			for b.Loop() {
				if _, err := sc.Build(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

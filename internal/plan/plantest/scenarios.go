package plantest

// Address plan (documentation and shared ranges only):
//   ISP k: router 100.64.k.2/24, gateway 100.64.k.1
//   ppp:   router 100.64.9.2/32, peer 100.64.9.1
//   LAN j: router 192.168.j.1/24

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/ispbalance/ispbalance/internal/config"
	"github.com/ispbalance/ispbalance/internal/plan"
	"github.com/ispbalance/ispbalance/internal/rules"
)

// Scenario is a configuration, the facts discovery found and the
// verdicts, from which Build makes a plan.
type Scenario struct {
	Name  string
	Conf  string
	Links map[string]plan.Link
	Up    map[string]bool
	// Rules, when set, is a rule file in balance/firewall.
	Rules string
}

// Build plans the scenario.
func (s Scenario) Build() (plan.Plan, error) {
	cfg, err := config.Parse("balance.conf", strings.NewReader(s.Conf))
	if err != nil {
		return plan.Plan{}, err
	}
	in := plan.Input{Config: cfg, Links: s.Links, Up: s.Up}
	if s.Rules != "" {
		f, err := rules.ParseFile("balance/firewall/10.rules", rules.Firewall, []byte(s.Rules))
		if err != nil {
			return plan.Plan{}, err
		}
		in.RuleFiles = []rules.File{f}
	}
	return plan.Build(in)
}

// Link is a present device with carrier; gw may be empty.
func Link(kernel, addr, gw, from string) plan.Link {
	l := plan.Link{Kernel: kernel, Present: true, Carrier: true, Addr: netip.MustParsePrefix(addr), GatewayFrom: from}
	if gw != "" {
		l.Gateway = netip.MustParseAddr(gw)
	}
	return l
}

// ISP is uplink k: router 100.64.k.2/24, gateway 100.64.k.1, on device wank.
func ISP(k int) plan.Link {
	return Link("wan"+strconv.Itoa(k), "100.64."+strconv.Itoa(k)+".2/24", "100.64."+strconv.Itoa(k)+".1", "route")
}

// LAN is LAN j: router 192.168.j.1/24 on device lanj.
func LAN(j int) plan.Link {
	return Link("lan"+strconv.Itoa(j), "192.168."+strconv.Itoa(j)+".1/24", "", "")
}

// AllUp is a verdict of up for each named service.
func AllUp(names ...string) map[string]bool {
	m := map[string]bool{}
	for _, n := range names {
		m[n] = true
	}
	return m
}

// RuleFile is the rule file of the rule-files scenario.
const RuleFile = `# every LAN may reach the router's ssh on 2222
iptables -A INPUT -s ${:lan.net} -i ${:lan.dev} -p tcp --dport 2222 -j ACCEPT
iptables -N AUDIT
iptables -A AUDIT -j LOG --log-prefix "audit: "
iptables -A FORWARD -d 192.168.2.0/24 -j AUDIT
iptables -t nat -A POSTROUTING -s 192.168.1.5 -o ${DSL.dev} -j SNAT --to-source ${DSL.ip}
forward 8080 192.168.1.10:80
force-route DSL -p tcp --dport 25
ip route add 10.99.0.0/16 via 192.168.1.254 dev ${LAN.dev}
ip rule add from 192.168.2.0/24 lookup ${CABLE.table}
`

// Scenarios are the planner's golden scenarios, each with a golden file
// of the same name in the plan package's testdata.
var Scenarios = []Scenario{
	{
		Name:  "two-isps-balanced",
		Conf:  "CABLE wan1 isp\nDSL wan2 isp\nLAN lan1 lan\n",
		Links: map[string]plan.Link{"wan1": ISP(1), "wan2": ISP(2), "lan1": LAN(1)},
		Up:    AllUp("CABLE", "DSL"),
	},
	{
		Name:  "three-isps-weighted",
		Conf:  "A wan1 isp default 3\nB wan2 isp default 2\nC wan3 isp default 1\nLAN lan1 lan\n",
		Links: map[string]plan.Link{"wan1": ISP(1), "wan2": ISP(2), "wan3": ISP(3), "lan1": LAN(1)},
		Up:    AllUp("A", "B", "C"),
	},
	{
		Name:  "two-isps-failover",
		Conf:  "mode=failover\nCABLE wan1 isp default 1\nDSL wan2 isp default 5\nLAN lan1 lan\n",
		Links: map[string]plan.Link{"wan1": ISP(1), "wan2": ISP(2), "lan1": LAN(1)},
		Up:    AllUp("CABLE", "DSL"),
	},
	{
		Name:  "one-isp-down",
		Conf:  "CABLE wan1 isp\nDSL wan2 isp\nLAN lan1 lan\n",
		Links: map[string]plan.Link{"wan1": ISP(1), "wan2": ISP(2), "lan1": LAN(1)},
		Up:    AllUp("DSL"),
	},
	{
		Name: "two-lans-forwarding-groups",
		Conf: "CABLE wan1 isp\nDSL wan2 isp\nLAN lan1 lan\nGUEST lan2 lan\n" +
			"forwarding_group=LAN :isp\nforwarding_group=GUEST CABLE\ninternet_ssh=no\n",
		Links: map[string]plan.Link{"wan1": ISP(1), "wan2": ISP(2), "lan1": LAN(1), "lan2": LAN(2)},
		Up:    AllUp("CABLE", "DSL"),
	},
	{
		Name: "ppp-isp",
		Conf: "CABLE wan1 isp\nDSL ppp0 isp\nLAN lan1 lan\n",
		Links: map[string]plan.Link{"wan1": ISP(1), "lan1": LAN(1),
			"ppp0": Link("ppp0", "100.64.9.2/32", "100.64.9.1", "peer")},
		Up: AllUp("CABLE", "DSL"),
	},
	{
		Name: "alias-interface",
		Conf: "CABLE eth3 isp\nFIBER eth3:0 isp default 2 100.64.5.1\nLAN lan1 lan\n",
		Links: map[string]plan.Link{"eth3": Link("eth3", "100.64.4.2/24", "100.64.4.1", "route"),
			"eth3:0": Link("eth3", "100.64.5.2/24", "100.64.5.1", "config"), "lan1": LAN(1)},
		Up: AllUp("CABLE", "FIBER"),
	},
	{
		Name:  "rule-files",
		Conf:  "CABLE wan1 isp\nDSL wan2 isp\nLAN lan1 lan\nGUEST lan2 lan\n",
		Links: map[string]plan.Link{"wan1": ISP(1), "wan2": ISP(2), "lan1": LAN(1), "lan2": LAN(2)},
		Up:    AllUp("CABLE", "DSL"),
		Rules: RuleFile,
	},
	{
		// Every verdict is down but both uplinks have carrier: a silent
		// probe target must not take the LAN offline.
		Name:  "all-judged-down-last-resort",
		Conf:  "CABLE wan1 isp\nDSL wan2 isp default 3\nLAN lan1 lan\n",
		Links: map[string]plan.Link{"wan1": ISP(1), "wan2": ISP(2), "lan1": LAN(1)},
		Up:    AllUp(),
	},
	{
		Name:  "all-judged-down-unreachable",
		Conf:  "last_resort=unreachable\nCABLE wan1 isp\nDSL wan2 isp\nLAN lan1 lan\n",
		Links: map[string]plan.Link{"wan1": ISP(1), "wan2": ISP(2), "lan1": LAN(1)},
		Up:    AllUp(),
	},
	{
		// The active failover ISP was taken down with `ip link set wan2
		// down`: nothing may be planned through it.
		Name: "failover-active-admin-down",
		Conf: "mode=failover\nCABLE wan1 isp default 1\nDSL wan2 isp default 5\nLAN lan1 lan\n",
		Links: map[string]plan.Link{"wan1": ISP(1), "lan1": LAN(1),
			"wan2": {Kernel: "wan2", Present: true, AdminDown: true, Addr: netip.MustParsePrefix("100.64.2.2/24"),
				Gateway: netip.MustParseAddr("100.64.2.1"), GatewayFrom: "route"}},
		Up: AllUp("CABLE", "DSL"),
	},
	{
		Name: "missing-device",
		Conf: "CABLE wan1 isp\nDSL wan2 isp\nLAN lan1 lan\nDMZ lan2 lan\n",
		Links: map[string]plan.Link{"wan1": ISP(1), "lan1": LAN(1),
			"wan2": {Kernel: "wan2", Problem: "no such device"},
			"lan2": {Kernel: "lan2", Present: false, Problem: "no IPv4 address"}},
		Up: AllUp("CABLE", "DSL"),
	},
}

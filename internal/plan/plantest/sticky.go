package plantest

import "github.com/ispbalance/ispbalance/internal/plan"

// StickyScenarios are the golden scenarios of sticky=source, kept apart
// from Scenarios because applying them needs a kernel with IP sets.
var StickyScenarios = []Scenario{
	{
		Name:  "sticky-two-isps",
		Conf:  "sticky=source\nCABLE wan1 isp default 3\nDSL wan2 isp\nLAN lan1 lan\n",
		Links: map[string]plan.Link{"wan1": ISP(1), "wan2": ISP(2), "lan1": LAN(1)},
		Up:    AllUp("CABLE", "DSL"),
	},
	{
		// DSL's set is not consulted, and CABLE takes its addresses out of
		// it, so they stay on CABLE after DSL returns.
		Name:  "sticky-one-isp-down",
		Conf:  "sticky=source\nCABLE wan1 isp default 3\nDSL wan2 isp\nLAN lan1 lan\n",
		Links: map[string]plan.Link{"wan1": ISP(1), "wan2": ISP(2), "lan1": LAN(1)},
		Up:    AllUp("CABLE"),
	},
	{
		Name: "sticky-three-isps-short-timeout",
		Conf: "sticky=source\nsticky_timeout=30\nA wan1 isp default 3\nB wan2 isp default 2\nC wan3 isp default 1\n" +
			"LAN lan1 lan\nGUEST lan2 lan\n",
		Links: map[string]plan.Link{"wan1": ISP(1), "wan2": ISP(2), "wan3": ISP(3), "lan1": LAN(1), "lan2": LAN(2)},
		Up:    AllUp("A", "B", "C"),
	},
	{
		// Failover sends everything through one ISP: nothing to keep.
		Name:  "sticky-failover",
		Conf:  "mode=failover\nsticky=source\nCABLE wan1 isp default 3\nDSL wan2 isp\nLAN lan1 lan\n",
		Links: map[string]plan.Link{"wan1": ISP(1), "wan2": ISP(2), "lan1": LAN(1)},
		Up:    AllUp("CABLE", "DSL"),
	},
}

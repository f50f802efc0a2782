package plan

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/ispbalance/ispbalance/internal/config"
	"github.com/ispbalance/ispbalance/internal/kernelnames"
	"github.com/ispbalance/ispbalance/internal/rules"
)

// Link is what discovery found about one configured device.
type Link struct {
	// Kernel is the kernel's name of the device ("eth3" for "eth3:0").
	Kernel  string
	Present bool
	// Carrier is true when the link is administratively up and has carrier.
	Carrier bool
	// AdminDown is true when the link is administratively down: the
	// kernel has removed every route through it and refuses new ones.
	AdminDown bool
	Addr      netip.Prefix
	Gateway   netip.Addr
	// GatewayFrom says where the gateway came from (config, route, peer,
	// lease:FILE, guess), for the status table.
	GatewayFrom string
	// Problem says why the device is not Present.
	Problem string
	// PointToPoint is set for ppp and tun links and addresses with a
	// peer: their gateway is outside the address's subnet by nature.
	PointToPoint bool
	// V6Addr, V6Gateway and V6GatewayFrom are the device's IPv6, when it
	// has a global address.
	V6Addr        netip.Prefix
	V6Gateway     netip.Addr
	V6GatewayFrom string
	// V6Delegated is the prefix the ISP delegated to the router, if any.
	V6Delegated netip.Prefix
}

// Input is everything Build needs.
type Input struct {
	Config *config.Config
	// Links is keyed by the device as written in the configuration.
	Links map[string]Link
	// Up holds the ISP services that the monitor or the admin consider up.
	Up map[string]bool
	// Down6 holds the ISPs whose IPv6 alone the monitor judged down; their
	// IPv4 is judged by Up.
	Down6 map[string]bool
	// Degraded and Degraded6 hold the ISPs whose IPv4 or IPv6 answers
	// the monitor's probes but beyond its quality thresholds (latency,
	// jitter): they carry no new connections while another ISP of the
	// family routes that is not degraded.
	Degraded, Degraded6 map[string]bool
	// RuleFiles are the parsed files of balance/routes, firewall, pre-run
	// and post-run.
	RuleFiles []rules.File
}

// ISP is one ISP service as planned.
type ISP struct {
	Name    string
	Device  string // as configured
	Kernel  string // kernel device name
	Alias   bool   // an address label on a shared device ("eth3:0")
	PPP     bool
	Index   int // 1..N in name order, the original's numbering
	Table   int
	Mark    uint32
	Weight  int
	Addr    netip.Prefix
	Gateway netip.Addr
	GwFrom  string
	Carrier bool
	// Up is the admin's or monitor's verdict; Routing is whether the ISP
	// carries new connections (up, present and with carrier, or any ISP
	// with carrier while the plan is a last resort).
	Up      bool
	Routing bool
	// Degraded and Degraded6 are the monitor's quality verdicts on the
	// ISP's IPv4 and IPv6; a degraded family routes only when no healthy
	// ISP of that family is left.
	Degraded, Degraded6 bool
	// Warnings are what the admin should know about a working but odd
	// setup, for the log and the status table.
	Warnings []string
	// Addr6, Gateway6 and GwFrom6 are the ISP's IPv6; Addr6 is invalid
	// when the uplink has no global address. Routing6 is Routing for
	// IPv6.
	Addr6    netip.Prefix
	Gateway6 netip.Addr
	GwFrom6  string
	Routing6 bool
	// Src6 is the router's own IPv6 address through the ISP: the
	// uplink's, or, on an uplink numbered link-local only, the router's
	// LAN address from the ISP's delegation. Invalid when the ISP
	// carries no IPv6 (none, or ipv6=off).
	Src6 netip.Addr
	// Delegated6 is the prefix the ISP delegated to the router (invalid
	// when none): LAN hosts may be numbered from it, and NPTv6 translates
	// into it.
	Delegated6 netip.Prefix
}

// HasIPv6 says the ISP carries IPv6.
func (isp ISP) HasIPv6() bool { return isp.Src6.IsValid() }

// LAN is one LAN service as planned.
type LAN struct {
	Name   string
	Device string
	Kernel string
	Addr   netip.Prefix
	// Addr6 is the LAN device's IPv6 address and prefix (a ULA or part of
	// a delegated prefix); invalid when it has none.
	Addr6 netip.Prefix
}

// Skipped is a configured service left out because its device is missing
// or has no address; the next rebuild picks it up.
type Skipped struct {
	Service, Device, Reason string
}

// Nexthop is one leg of a multipath route.
type Nexthop struct {
	Gateway netip.Addr
	Device  string
	Weight  int
	OnLink  bool
}

// Route is one route ispbalance owns: in one of its tables, or from a
// rule file (then in any table, recognised by ispbalance's protocol
// tag). Either Nexthops has two or more entries, or Gateway/Device
// describe the single path.
type Route struct {
	Table    int
	Dst      netip.Prefix
	Gateway  netip.Addr
	Device   string
	Src      netip.Addr
	OnLink   bool
	Metric   int
	Nexthops []Nexthop
	// Unreachable makes the route answer "unreachable" instead of
	// forwarding (it then has no gateway or device).
	Unreachable bool
	// Origin is the rule file line the route comes from, "" for ours.
	Origin string
}

// IPv6 says the route is in IPv6's routing tables.
func (r Route) IPv6() bool { return r.Dst.Addr().Is6() }

// Rule is one policy-routing rule. Zero fields do not match.
type Rule struct {
	Priority          int
	Table             int
	Mark, Mask        uint32
	Src, Dst          netip.Prefix
	Iif, Oif          string
	SuppressPrefixlen int // -1: none
	// IPv6 puts the rule in IPv6's rule list (`ip -6 rule`).
	IPv6 bool
	// Origin is the rule file line the rule comes from, "" for ours.
	Origin string
}

// Sysctl is one kernel setting under /proc/sys. Path holds the components
// separately because device names may contain dots.
type Sysctl struct {
	Path  []string
	Value string
}

// Key renders the sysctl the way sysctl(8) spells it (dots between
// components, dots inside a component written as slashes).
func (s Sysctl) Key() string {
	parts := make([]string, len(s.Path))
	for i, p := range s.Path {
		parts[i] = strings.ReplaceAll(p, ".", "/")
	}
	return strings.Join(parts, ".")
}

// Chain is one of our iptables chains; each rule is an argument list as
// it follows `-A CHAIN`, written in the canonical form iptables-save prints
// (options in its order, its units), so that an unchanged chain can be
// recognised and left alone.
type Chain struct {
	Name  string
	Rules [][]string
	// Origins, when set, holds for each rule the rule file line it comes
	// from ("" for ispbalance's own), so a rule iptables-restore rejects
	// is reported by file and line.
	Origins []string
}

// add appends a rule of ours.
func (c *Chain) add(rule []string) { c.addFrom("", rule) }

// addFrom appends a rule with its origin.
func (c *Chain) addFrom(origin string, rule []string) {
	for len(c.Origins) < len(c.Rules) {
		c.Origins = append(c.Origins, "")
	}
	c.Rules = append(c.Rules, rule)
	c.Origins = append(c.Origins, origin)
}

// Origin returns where rule i comes from, "" for ispbalance's own.
func (c Chain) Origin(i int) string {
	if i < len(c.Origins) {
		return c.Origins[i]
	}
	return ""
}

// Jump is the one rule we put into a built-in chain: `-A From -j To`.
type Jump struct {
	From, To string
}

// Table is our part of one iptables table.
type Table struct {
	Name   string
	Chains []Chain
	Jumps  []Jump
}

// Plan is the complete desired state.
type Plan struct {
	Mode config.Mode
	// IPv6NAT is how LAN IPv6 picks an ISP and is translated.
	IPv6NAT config.IPv6NAT
	// LastResort is set when every ISP was judged down and the plan
	// routes through every ISP that still has carrier instead of taking
	// the LAN offline on the strength of probes alone.
	LastResort bool
	// LastResort6 is LastResort for IPv6: every ISP's IPv6 judged down,
	// and IPv6 routed through every ISP that routes IPv4.
	LastResort6 bool
	ISPs        []ISP
	LANs        []LAN
	Skipped     []Skipped
	Routes      []Route
	Rules       []Rule
	Sysctls     []Sysctl
	// Firewall holds the filter, mangle and nat tables, in that order,
	// and raw when rule files use it.
	Firewall []Table
	// Firewall6 holds the IPv6 tables for ip6tables-restore: filter with
	// the same policy as IPv4's, mangle and nat when an ISP has IPv6, and
	// whatever tables the rule files' ip6tables lines use.
	Firewall6 []Table
	// Sticky is set under sticky=source in balanced mode: the sets that
	// keep each LAN address on one ISP.
	Sticky *Sticky
	// PreRun and PostRun are rule-file commands run before and after the
	// plan is applied.
	PreRun, PostRun []Command
	// Notes say what of the rule files was skipped or not run, and why.
	Notes []string
}

// Command is one rule-file command, run without a shell.
type Command struct {
	Origin string
	Argv   []string
}

// Build computes the desired state. It fails only on facts that make a
// safe plan impossible.
func Build(in Input) (Plan, error) {
	cfg := in.Config
	if cfg == nil {
		return Plan{}, fmt.Errorf("building plan: no configuration")
	}
	if len(cfg.ISPs()) == 0 {
		return Plan{}, fmt.Errorf("%s: no isp services are configured", cfg.Path)
	}
	p := Plan{Mode: cfg.Mode, IPv6NAT: cfg.IPv6NAT}
	for i, s := range cfg.ISPs() {
		index := i + 1
		l, ok := in.Links[s.Device]
		if !ok || !l.Present || !l.Addr.IsValid() || l.AdminDown {
			// An administratively down device cannot carry a route: the
			// kernel refuses one through it. Such an ISP is down for this
			// rebuild, and the next rebuild after it comes up takes it back.
			p.Skipped = append(p.Skipped, Skipped{s.Name, s.Device, reason(l, ok)})
			continue
		}
		if !l.Gateway.IsValid() {
			p.Skipped = append(p.Skipped, Skipped{s.Name, s.Device, "no gateway found"})
			continue
		}
		isp := ISP{
			Name: s.Name, Device: s.Device, Kernel: l.Kernel,
			Alias: strings.Contains(s.Device, ":"), PPP: strings.HasPrefix(l.Kernel, "ppp"),
			Index: index, Table: kernelnames.ISPTable(index), Mark: kernelnames.ISPMark(index),
			Weight: s.Weight, Addr: l.Addr, Gateway: l.Gateway, GwFrom: l.GatewayFrom,
			Carrier: l.Carrier, Up: in.Up[s.Name],
		}
		isp.Routing = isp.Up && isp.Carrier
		if cfg.IPv6 && !isp.Alias && l.V6Gateway.IsValid() {
			isp.Addr6, isp.Gateway6, isp.GwFrom6 = l.V6Addr, l.V6Gateway, l.V6GatewayFrom
			isp.Delegated6 = l.V6Delegated
			isp.Src6 = l.V6Addr.Addr()
			if !isp.Src6.IsValid() {
				isp.Src6 = delegatedSource(cfg, in, l.V6Delegated)
			}
		}
		p.ISPs = append(p.ISPs, isp)
	}
	if err := vetGateways(cfg, in, &p); err != nil {
		return Plan{}, err
	}
	leaveDegraded(p.ISPs, in.Degraded, false)
	p.LastResort = lastResort(cfg, p.ISPs)
	p.LastResort6 = planRouting6(cfg, p.ISPs, in.Down6)
	leaveDegraded(p.ISPs, in.Degraded6, true)
	for _, s := range cfg.LANs() {
		l, ok := in.Links[s.Device]
		if !ok || !l.Present || !l.Addr.IsValid() {
			p.Skipped = append(p.Skipped, Skipped{s.Name, s.Device, reason(l, ok)})
			continue
		}
		lan := LAN{Name: s.Name, Device: s.Device, Kernel: l.Kernel, Addr: l.Addr}
		if cfg.IPv6 {
			lan.Addr6 = l.V6Addr
		}
		p.LANs = append(p.LANs, lan)
	}
	user, err := expandRuleFiles(cfg, in, p)
	if err != nil {
		return Plan{}, err
	}
	p.Routes = append(planRoutes(p), planRoutes6(p)...)
	p.Rules = append(planRules(p), planRules6(p)...)
	if err := user.addRouting(&p); err != nil {
		return Plan{}, err
	}
	p.Sysctls = append(planSysctls(p), planSysctls6(p)...)
	if p.Firewall, err = planFirewall(cfg, p, user); err != nil {
		return Plan{}, err
	}
	p.Firewall6 = planFirewall6(cfg, p)
	if len(ipv6ISPs(p)) > 0 {
		p.Firewall6 = append(p.Firewall6, mangleTable6(p), natTable6(p))
	}
	p.Firewall6 = user.addFirewall6(p.Firewall6)
	addStickiness(cfg, &p)
	p.PreRun, p.PostRun = user.commands()
	p.Notes = user.notes()
	return p, nil
}

// lastResort turns on routing through every ISP that has carrier when
// the verdicts leave none: a probe target that stops answering, or probes
// broken by someone flushing our rules, must not take the whole LAN
// offline while the uplinks themselves work. It reports whether it did.
func lastResort(cfg *config.Config, isps []ISP) bool {
	if cfg.LastResort == config.LastResortUnreachable {
		return false
	}
	for _, isp := range isps {
		if isp.Routing {
			return false
		}
	}
	used := false
	for i := range isps {
		if isps[i].Carrier {
			isps[i].Routing = true
			used = true
		}
	}
	return used
}

// leaveDegraded takes the ISPs whose family (IPv4, or IPv6 when ipv6)
// the monitor judged degraded out of that family's routing, when an ISP
// that is not degraded still routes it. Without one they keep routing: a
// slow link is better than none, and one judged down is worse.
func leaveDegraded(isps []ISP, degraded map[string]bool, ipv6 bool) {
	routing := func(isp *ISP) *bool { return &isp.Routing }
	mark := func(isp *ISP) *bool { return &isp.Degraded }
	if ipv6 {
		routing = func(isp *ISP) *bool { return &isp.Routing6 }
		mark = func(isp *ISP) *bool { return &isp.Degraded6 }
	}
	healthy := false
	for i := range isps {
		*mark(&isps[i]) = degraded[isps[i].Name]
		healthy = healthy || *routing(&isps[i]) && !degraded[isps[i].Name]
	}
	if !healthy {
		return
	}
	for i := range isps {
		if degraded[isps[i].Name] {
			*routing(&isps[i]) = false
		}
	}
}

func reason(l Link, found bool) string {
	switch {
	case !found:
		return "device not discovered"
	case l.AdminDown && l.Present:
		return "device is administratively down"
	case l.Problem != "":
		return l.Problem
	default:
		return "no IPv4 address"
	}
}

// onLink is needed when the gateway is outside the device's subnet (a
// point-to-point peer, or an ISP that hands out a /32); the kernel then
// takes our word that the gateway is directly reachable.
func onLink(isp ISP) bool { return !isp.Addr.Masked().Contains(isp.Gateway) }

var defaultRoute = netip.MustParsePrefix("0.0.0.0/0")

func planRoutes(p Plan) []Route {
	var routes []Route
	var routing []ISP
	for _, isp := range p.ISPs {
		routes = append(routes, Route{Table: isp.Table, Dst: defaultRoute, Gateway: isp.Gateway, Device: isp.Kernel, OnLink: onLink(isp)})
		if isp.Addr.Bits() < 32 {
			// The ISP's own subnet in its table keeps the table usable on its
			// own (the monitor's probes to the gateway, `ip route get ...
			// table N`) without depending on main.
			routes = append(routes, Route{Table: isp.Table, Dst: isp.Addr.Masked(), Device: isp.Kernel, Src: isp.Addr.Addr()})
		}
		if isp.Routing {
			routing = append(routing, isp)
		}
	}
	switch {
	case len(routing) == 0:
		// No default in our balance table: the router falls back to
		// whatever main has, as it would without ispbalance.
	case p.Mode == config.Failover:
		best := heaviest(routing)
		routes = append(routes, Route{Table: kernelnames.BalanceTable, Dst: defaultRoute, Gateway: best.Gateway, Device: best.Kernel, OnLink: onLink(best)})
	case len(routing) == 1:
		only := routing[0]
		routes = append(routes, Route{Table: kernelnames.BalanceTable, Dst: defaultRoute, Gateway: only.Gateway, Device: only.Kernel, OnLink: onLink(only)})
	default:
		r := Route{Table: kernelnames.BalanceTable, Dst: defaultRoute}
		for _, isp := range routing {
			r.Nexthops = append(r.Nexthops, Nexthop{Gateway: isp.Gateway, Device: isp.Kernel, Weight: isp.Weight, OnLink: onLink(isp)})
		}
		routes = append(routes, r)
	}
	return routes
}

// heaviest picks the failover ISP: highest weight, ties to the lowest index.
func heaviest(isps []ISP) ISP {
	best := isps[0]
	for _, isp := range isps[1:] {
		if isp.Weight > best.Weight {
			best = isp
		}
	}
	return best
}

func planRules(p Plan) []Rule {
	if len(p.ISPs) == 0 {
		return nil
	}
	rules := []Rule{{Priority: kernelnames.PrioSuppressMain, Table: mainTable, SuppressPrefixlen: 0}}
	for _, isp := range p.ISPs {
		rules = append(rules,
			Rule{Priority: kernelnames.PrioFwmarkBase + isp.Index, Table: isp.Table, Mark: isp.Mark, Mask: kernelnames.MarkMask, SuppressPrefixlen: -1},
			Rule{Priority: kernelnames.PrioSourceBase + isp.Index, Table: isp.Table, Src: netip.PrefixFrom(isp.Addr.Addr(), 32), SuppressPrefixlen: -1},
		)
		if !isp.Alias {
			// An alias shares its device with another address, so a rule
			// by output device would claim the other address's traffic too.
			rules = append(rules, Rule{Priority: kernelnames.PrioOifBase + isp.Index, Table: isp.Table, Oif: isp.Kernel, SuppressPrefixlen: -1})
		}
	}
	rules = append(rules, Rule{Priority: kernelnames.PrioBalance, Table: kernelnames.BalanceTable, SuppressPrefixlen: -1})
	sort.SliceStable(rules, func(i, j int) bool { return rules[i].Priority < rules[j].Priority })
	return rules
}

// mainTable is the kernel's main routing table (RT_TABLE_MAIN).
const mainTable = 254

func planSysctls(p Plan) []Sysctl {
	s := []Sysctl{{Path: []string{"net", "ipv4", "ip_forward"}, Value: "1"}}
	seen := map[string]bool{}
	for _, isp := range p.ISPs {
		if seen[isp.Kernel] {
			continue
		}
		seen[isp.Kernel] = true
		// Loose reverse-path filtering: with several uplinks, a reply may
		// legitimately arrive on an ISP that is not the main table's
		// choice for its source, and strict mode would drop it.
		s = append(s, Sysctl{Path: []string{"net", "ipv4", "conf", isp.Kernel, "rp_filter"}, Value: "2"})
		// A nexthop whose device lost carrier is skipped at once instead of
		// black-holing its share of the router's own traffic.
		s = append(s, Sysctl{Path: []string{"net", "ipv4", "conf", isp.Kernel, "ignore_routes_with_linkdown"}, Value: "1"})
	}
	return s
}

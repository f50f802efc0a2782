package rules

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Service roles, as in balance.conf.
const (
	RoleISP = "isp"
	RoleLAN = "lan"
)

// Service is what the rules may know about one service of balance.conf.
type Service struct {
	Name string
	Role string // RoleISP or RoleLAN
	Dev  string
	IP   netip.Addr
	GW   netip.Addr // ISPs only
	Net  netip.Prefix
	// Fwmark, Table and Weight are set for ISPs only.
	Fwmark uint32
	Table  int
	Weight int
	// IP6 and Net6 are the service's IPv6 address and network (its
	// uplink's, for an ISP); GW6 and Prefix6, an ISP's IPv6 gateway and
	// the prefix it delegated to the router. Each is invalid when the
	// service has none.
	IP6     netip.Addr
	Net6    netip.Prefix
	GW6     netip.Addr
	Prefix6 netip.Prefix
	// Present: the device exists and has an address.
	Present bool
	// Up: for an ISP, the monitor's verdict; for a LAN, its link state.
	Up bool
	// Up6 is Up for the service's IPv6: an ISP's IPv6 may be judged
	// down while its IPv4 works.
	Up6 bool
}

// usable reports whether a line naming the service may be used now.
func (s Service) usable() bool { return s.Present && s.Up }

// Facts is everything Expand needs to know about the system.
type Facts struct {
	Services []Service
	// MarkMask is the fwmark bits ispbalance owns. ${SVC.fwmark} expands
	// to mark/mask when it is set, so a user's mark rules leave other
	// software's bits alone.
	MarkMask uint32
	// IPv6Off says balance.conf turned IPv6 handling off, which is why
	// no service has IPv6 values.
	IPv6Off bool
}

// Result is what the rule files add to a rebuild, in file order.
type Result struct {
	// Chains, IPTables, Routes, IPRules and ForceRoutes join the
	// planner's atomic plan.
	Chains      []Chain
	IPTables    []IPTablesRule
	Routes      []IPCommand // ip route
	IPRules     []IPCommand // ip rule
	ForceRoutes []ForceRoute
	// PreRun runs before the plan is applied, PostRun after it, each
	// command on its own and in order.
	PreRun  []Command
	PostRun []Command
	// Skipped lists lines, or repetitions of a line, left out because a
	// service is absent or down.
	Skipped []Note
}

// Command is a program to run without a shell.
type Command struct {
	Pos  Pos
	Argv []string
}

// Expand resolves placeholders and directives against facts. Identical
// appended iptables rules are kept once, as the original did, because
// several forwards to one host need the same FORWARD opening. On error the
// Result is empty; the error joins an *Error for each bad line.
func Expand(files []File, facts Facts) (Result, error) {
	e := expander{
		services: slices.Clone(facts.Services),
		mask:     facts.MarkMask,
		ipv6Off:  facts.IPv6Off,
		seen:     map[string]bool{},
	}
	slices.SortFunc(e.services, func(a, b Service) int { return strings.Compare(a.Name, b.Name) })
	var errs []error
	for _, f := range files {
		for _, l := range f.Lines {
			if err := e.line(f.Kind, l); err != nil {
				errs = append(errs, &Error{Pos: l.Pos, Err: err})
			}
		}
	}
	if len(errs) > 0 {
		return Result{}, errors.Join(errs...)
	}
	return e.res, nil
}

type expander struct {
	services []Service // sorted by name
	mask     uint32
	ipv6Off  bool
	res      Result
	seen     map[string]bool // appended iptables rules already emitted
}

func (e *expander) service(name string) (Service, bool) {
	i := slices.IndexFunc(e.services, func(s Service) bool { return s.Name == name })
	if i < 0 {
		return Service{}, false
	}
	return e.services[i], true
}

func (e *expander) role(role string) []Service {
	var out []Service
	for _, s := range e.services {
		if s.Role == role {
			out = append(out, s)
		}
	}
	return out
}

func (e *expander) present(role string) []Service {
	var out []Service
	for _, s := range e.role(role) {
		if s.Present {
			out = append(out, s)
		}
	}
	return out
}

func (e *expander) skip(pos Pos, format string, args ...any) {
	e.res.Skipped = append(e.res.Skipped, Note{Pos: pos, Msg: fmt.Sprintf(format, args...)})
}

// roleFields are the fields each role has.
var roleFields = map[string][]string{
	RoleISP: fields,
	RoleLAN: {"dev", "ip", "net", "ip6", "net6"},
}

func groupRole(group string) string {
	if group == groupLAN {
		return RoleLAN
	}
	return RoleISP
}

// line expands one line: once, or once per combination of its groups'
// usable services.
func (e *expander) line(kind Kind, l Line) error {
	var (
		named  []placeholder
		groups []string
		used   = map[string][]string{} // service or group -> fields
	)
	for _, w := range l.words {
		for _, p := range w {
			if p.ph == nil {
				continue
			}
			ph := *p.ph
			if _, ok := used[ph.service]; !ok {
				if ph.group() {
					groups = append(groups, ph.service)
				}
			}
			used[ph.service] = append(used[ph.service], ph.field)
			if !ph.group() {
				named = append(named, ph)
			}
		}
	}
	// Errors first, for every placeholder, so that a mistake is not
	// hidden by a skip.
	for _, ph := range named {
		s, ok := e.service(ph.service)
		if !ok {
			return fmt.Errorf("unknown service %q in %s", ph.service, ph)
		}
		if !slices.Contains(roleFields[s.Role], ph.field) {
			return fmt.Errorf("%s: %s is a %s service and has no %s", ph, s.Name, s.Role, ph.field)
		}
	}
	for _, g := range groups {
		for _, f := range used[g] {
			if r := groupRole(g); !slices.Contains(roleFields[r], f) {
				return fmt.Errorf("${%s.%s}: %s services have no %s", g, f, r, f)
			}
		}
	}
	for _, ph := range named {
		s, _ := e.service(ph.service)
		if why := e.unusable(s, used[s.Name]); why != "" {
			e.skip(l.Pos, "skipped: %s", why)
			return nil
		}
	}
	members := make([][]Service, len(groups))
	for i, g := range groups {
		all := e.role(groupRole(g))
		if len(all) == 0 {
			e.skip(l.Pos, "skipped: there are no %s services", g)
			return nil
		}
		for _, s := range all {
			if why := e.unusable(s, used[g]); why != "" {
				e.skip(l.Pos, "skipped for %s: %s", s.Name, why)
				continue
			}
			members[i] = append(members[i], s)
		}
	}
	for _, combo := range product(members) {
		bound := map[string]Service{}
		for i, g := range groups {
			bound[g] = combo[i]
		}
		argv := renderWords(l.words, func(p placeholder) string {
			s, ok := bound[p.service]
			if !ok {
				s, _ = e.service(p.service)
			}
			v, _ := fieldValue(s, p.field, e.mask)
			return v
		})
		if err := e.dispatch(kind, l, argv); err != nil {
			return err
		}
	}
	return nil
}

// unusable says why a line may not use s now, or "" if it may. A line
// with IPv6 values of a service that has none (an ISP without IPv6 or
// without a delegated prefix) is skipped like one about a down service:
// it means nothing until the service has them.
func (e *expander) unusable(s Service, fields []string) string {
	switch {
	case !s.Present:
		return fmt.Sprintf("service %s is absent (no device or no address)", s.Name)
	case !s.Up:
		return fmt.Sprintf("service %s is down", s.Name)
	}
	ipv6 := false
	for _, f := range fields {
		if _, ok := fieldValue(s, f, 0); !ok {
			if e.ipv6Off && slices.Contains(ipv6Fields, f) {
				return fmt.Sprintf("service %s has no %s (ipv6=off in balance.conf)", s.Name, f)
			}
			return fmt.Sprintf("service %s has no %s", s.Name, f)
		}
		ipv6 = ipv6 || slices.Contains(ipv6Fields, f)
	}
	if ipv6 && !s.Up6 {
		return fmt.Sprintf("service %s's IPv6 is down", s.Name)
	}
	return ""
}

// product returns every combination taking one element of each list,
// the first list varying slowest. No lists give one empty combination.
func product(lists [][]Service) [][]Service {
	out := [][]Service{nil}
	for _, l := range lists {
		var next [][]Service
		for _, prefix := range out {
			for _, s := range l {
				next = append(next, append(slices.Clone(prefix), s))
			}
		}
		out = next
	}
	return out
}

// fieldValue renders a field of s; ok is false when s lacks it.
func fieldValue(s Service, field string, mask uint32) (string, bool) {
	switch field {
	case "dev":
		return s.Dev, s.Dev != ""
	case "ip":
		return s.IP.String(), s.IP.IsValid()
	case "gw":
		return s.GW.String(), s.GW.IsValid()
	case "net":
		return s.Net.Masked().String(), s.Net.IsValid()
	case "fwmark":
		if mask != 0 {
			return fmt.Sprintf("%#x/%#x", s.Fwmark, mask), s.Fwmark != 0
		}
		return fmt.Sprintf("%#x", s.Fwmark), s.Fwmark != 0
	case "table":
		return strconv.Itoa(s.Table), s.Table != 0
	case "weight":
		return strconv.Itoa(s.Weight), true
	case "ip6":
		return s.IP6.String(), s.IP6.IsValid()
	case "gw6":
		return s.GW6.String(), s.GW6.IsValid()
	case "net6":
		return s.Net6.Masked().String(), s.Net6.IsValid()
	case "prefix6":
		return s.Prefix6.Masked().String(), s.Prefix6.IsValid()
	}
	return "", false
}

// dispatch turns one expanded line into results.
func (e *expander) dispatch(kind Kind, l Line, argv []string) error {
	args := argv[1:]
	switch l.kind {
	case lkCommand:
		c := Command{Pos: l.Pos, Argv: argv}
		if kind == PreRun {
			e.res.PreRun = append(e.res.PreRun, c)
		} else {
			e.res.PostRun = append(e.res.PostRun, c)
		}
	case lkIPTables, lkIP6Tables:
		ipt, err := parseIPTables(args)
		if err != nil {
			return err
		}
		ipt.rule.Pos, ipt.rule.IPv6 = l.Pos, l.kind == lkIP6Tables
		if ipt.newChain {
			e.addChain(Chain{Pos: l.Pos, IPv6: ipt.rule.IPv6, Table: ipt.rule.Table, Name: ipt.rule.Chain})
		} else {
			e.addRule(ipt.rule)
		}
	case lkIP:
		object, cmd, err := parseIP(args)
		if err != nil {
			return err
		}
		cmd.Pos = l.Pos
		if object == "route" {
			e.res.Routes = append(e.res.Routes, cmd)
		} else {
			e.res.IPRules = append(e.res.IPRules, cmd)
		}
	case lkForward, lkForwardSNAT:
		f, err := parseForward(argv[0], args)
		if err != nil {
			return err
		}
		if f.host.Is6() {
			e.forward6(l.Pos, argv[0], f, l.kind == lkForwardSNAT)
		} else {
			e.forward(l.Pos, argv[0], f, l.kind == lkForwardSNAT)
		}
	case lkForceRoute:
		f, err := parseForceRoute(args)
		if err != nil {
			return err
		}
		return e.forceRoute(l.Pos, f)
	case lkAddRoute:
		a, err := parseAddRoute(args)
		if err != nil {
			return err
		}
		e.addRoute(l.Pos, a)
	case lkFirewallRule:
		r, err := parseFirewallRule(args)
		if err != nil {
			return err
		}
		r.Pos, r.Directive = l.Pos, dirFirewallRule
		e.addRule(r)
	}
	return nil
}

func (e *expander) addChain(c Chain) {
	key := "-N\x00" + c.Table + "\x00" + c.Name
	if c.IPv6 {
		key = "6\x00" + key
	}
	if e.seen[key] {
		return
	}
	e.seen[key] = true
	e.res.Chains = append(e.res.Chains, c)
}

func (e *expander) addRule(r IPTablesRule) {
	if r.Op == "-A" {
		key := strings.Join(r.Argv(), "\x00")
		if r.IPv6 {
			key = "6\x00" + key
		}
		if e.seen[key] {
			return
		}
		e.seen[key] = true
	}
	e.res.IPTables = append(e.res.IPTables, r)
}

// emit appends a rule made by a directive.
func (e *expander) emit(pos Pos, directive, table, chain string, args ...string) {
	e.addRule(IPTablesRule{Pos: pos, Directive: directive, Table: table, Op: "-A", Chain: chain, Args: args})
}

// emit6 appends an ip6tables rule made by a directive.
func (e *expander) emit6(pos Pos, directive, table, chain string, args ...string) {
	e.addRule(IPTablesRule{Pos: pos, IPv6: true, Directive: directive, Table: table, Op: "-A", Chain: chain, Args: args})
}

// forward opens PORT on every present ISP towards host. Only connections
// that were DNATed are let through (--ctstate DNAT), so the host is not
// reachable at its private address from the ISP side. Sending replies out
// by the ISP they came in on is the planner's marking.
func (e *expander) forward(pos Pos, directive string, f forwardSpec, snat bool) {
	to := f.host.String()
	if f.toPort {
		to = netip.AddrPortFrom(f.host, uint16(f.dport)).String()
	}
	port, dport, host := strconv.Itoa(f.port), strconv.Itoa(f.dport), f.host.String()
	isps := e.present(RoleISP)
	if len(isps) == 0 {
		e.skip(pos, "%s: no ISP is present", directive)
	}
	for _, isp := range isps {
		for _, p := range f.protos {
			e.emit(pos, directive, "nat", "PREROUTING", "-i", isp.Dev, "-p", p, "--dport", port, "-j", "DNAT", "--to-destination", to)
			e.emit(pos, directive, "filter", "FORWARD", "-i", isp.Dev, "-p", p, "-d", host, "--dport", dport, "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT")
		}
	}
	if !snat {
		return
	}
	// Hairpin: a LAN client using the router's public address is sent to
	// the host, and masqueraded so that the host answers through the
	// router instead of straight to the client, who would drop a reply
	// from an address it did not call.
	for _, lan := range e.present(RoleLAN) {
		for _, isp := range isps {
			if !isp.IP.IsValid() {
				continue
			}
			for _, p := range f.protos {
				e.emit(pos, directive, "nat", "PREROUTING", "-i", lan.Dev, "-d", isp.IP.String(), "-p", p, "--dport", port, "-j", "DNAT", "--to-destination", to)
			}
		}
		for _, p := range f.protos {
			e.emit(pos, directive, "filter", "FORWARD", "-i", lan.Dev, "-p", p, "-d", host, "--dport", dport, "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT")
			e.emit(pos, directive, "nat", "POSTROUTING", "-s", lan.Net.Masked().String(), "-d", host, "-p", p, "--dport", dport, "-m", "conntrack", "--ctstate", "DNAT", "-j", "MASQUERADE")
		}
	}
}

// forward6 opens PORT towards an IPv6 LAN host. A host with a global
// address is reachable from the Internet as it is, so its port is only
// opened, on every present ISP, and translated when HOST:PORT names
// another. A host with a unique local address (fc00::/7) cannot be
// reached from outside, so, as in IPv4, connections to PORT at each ISP's
// IPv6 address are translated to it (DNAT); forward-with-snat adds the
// hairpin for the LANs then. Replies leave by the ISP the connection came
// in on through the planner's marking, as in IPv4.
func (e *expander) forward6(pos Pos, directive string, f forwardSpec, snat bool) {
	to := f.host.String()
	if f.toPort {
		to = netip.AddrPortFrom(f.host, uint16(f.dport)).String()
	}
	port, dport, host := strconv.Itoa(f.port), strconv.Itoa(f.dport), f.host.String()
	isps := e.present(RoleISP)
	if !f.host.IsPrivate() {
		if len(isps) == 0 {
			e.skip(pos, "%s: no ISP is present", directive)
		}
		for _, isp := range isps {
			for _, p := range f.protos {
				if f.dport == f.port {
					e.emit6(pos, directive, "filter", "FORWARD", "-i", isp.Dev, "-p", p, "-d", host, "--dport", port, "-j", "ACCEPT")
					continue
				}
				e.emit6(pos, directive, "nat", "PREROUTING", "-i", isp.Dev, "-d", host, "-p", p, "--dport", port, "-j", "DNAT", "--to-destination", to)
				e.emit6(pos, directive, "filter", "FORWARD", "-i", isp.Dev, "-p", p, "-d", host, "--dport", dport, "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT")
			}
		}
		return
	}
	var v6 []Service
	for _, isp := range isps {
		if isp.IP6.IsValid() {
			v6 = append(v6, isp)
		}
	}
	if len(v6) == 0 {
		e.skip(pos, "%s: no ISP has an IPv6 address to forward %s from", directive, host)
		return
	}
	for _, isp := range v6 {
		for _, p := range f.protos {
			// Only connections to the ISP's own address: other LAN hosts'
			// global addresses arrive on the same device.
			e.emit6(pos, directive, "nat", "PREROUTING", "-i", isp.Dev, "-d", isp.IP6.String(), "-p", p, "--dport", port, "-j", "DNAT", "--to-destination", to)
			e.emit6(pos, directive, "filter", "FORWARD", "-i", isp.Dev, "-p", p, "-d", host, "--dport", dport, "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT")
		}
	}
	if !snat {
		return
	}
	for _, lan := range e.present(RoleLAN) {
		if !lan.Net6.IsValid() {
			continue
		}
		for _, isp := range v6 {
			for _, p := range f.protos {
				e.emit6(pos, directive, "nat", "PREROUTING", "-i", lan.Dev, "-d", isp.IP6.String(), "-p", p, "--dport", port, "-j", "DNAT", "--to-destination", to)
			}
		}
		for _, p := range f.protos {
			e.emit6(pos, directive, "filter", "FORWARD", "-i", lan.Dev, "-p", p, "-d", host, "--dport", dport, "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT")
			e.emit6(pos, directive, "nat", "POSTROUTING", "-s", lan.Net6.Masked().String(), "-d", host, "-p", p, "--dport", dport, "-m", "conntrack", "--ctstate", "DNAT", "-j", "MASQUERADE")
		}
	}
}

// forceRoute resolves the target, by service name first and then by
// device, as the original did.
func (e *expander) forceRoute(pos Pos, f forceRouteSpec) error {
	s, ok := e.service(f.target)
	if !ok {
		i := slices.IndexFunc(e.services, func(s Service) bool { return s.Dev == f.target })
		if i < 0 {
			return fmt.Errorf("force-route: %q is neither a service nor the device of one", f.target)
		}
		s = e.services[i]
	}
	if s.Role != RoleISP {
		return fmt.Errorf("force-route: %s is a %s service; connections can only be forced through an ISP", s.Name, s.Role)
	}
	if why := e.unusable(s, nil); why != "" {
		e.skip(pos, "force-route: %s; its connections are balanced meanwhile", why)
		return nil
	}
	e.res.ForceRoutes = append(e.res.ForceRoutes, ForceRoute{Pos: pos, Service: s.Name, Selectors: f.selectors})
	return nil
}

// addRoute makes a network outside balance.conf reachable from the router
// and the LANs: a route in main and in every ISP table (so marked and
// router-sourced traffic finds it too), and the openings the original gave
// it.
func (e *expander) addRoute(pos Pos, a addRouteSpec) {
	const d = dirAddRoute
	n := a.net.String()
	e.res.Routes = append(e.res.Routes, IPCommand{Pos: pos, Directive: d, Op: "add", Args: []string{n, "dev", a.dev}})
	for _, isp := range e.present(RoleISP) {
		if isp.Table != 0 {
			e.res.Routes = append(e.res.Routes, IPCommand{Pos: pos, Directive: d, Op: "add", Args: []string{n, "dev", a.dev, "table", strconv.Itoa(isp.Table)}})
		}
	}
	e.emit(pos, d, "filter", "INPUT", "-i", a.dev, "-s", n, "-j", "ACCEPT")
	e.emit(pos, d, "filter", "OUTPUT", "-o", a.dev, "-d", n, "-j", "ACCEPT")
	for _, lan := range e.present(RoleLAN) {
		ln := lan.Net.Masked().String()
		e.emit(pos, d, "filter", "FORWARD", "-i", lan.Dev, "-s", ln, "-o", a.dev, "-d", n, "-j", "ACCEPT")
		e.emit(pos, d, "filter", "FORWARD", "-i", a.dev, "-s", n, "-o", lan.Dev, "-d", ln, "-j", "ACCEPT")
	}
	if a.masquerade {
		e.emit(pos, d, "nat", "POSTROUTING", "-o", a.dev, "-d", n, "-j", "MASQUERADE")
	}
}

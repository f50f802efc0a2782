package plan

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/ispbalance/ispbalance/internal/config"
	kn "github.com/ispbalance/ispbalance/internal/kernelnames"
	"github.com/ispbalance/ispbalance/internal/rules"
)

// userRules is what the rule files add, turned into plan pieces.
type userRules struct {
	res rules.Result
	// userFirewall holds the iptables lines' chains; v6 the ip6tables
	// lines'. The families keep separate tables in the kernel, so a chain
	// name may be used in both.
	userFirewall
	v6 userFirewall
}

// userFirewall is one family's chains of the rule files.
type userFirewall struct {
	// chains holds, per table, the user chains in order of first use, by
	// the name the files use ("INPUT", "MYCHAIN").
	chains map[string][]*Chain
	custom map[string]map[string]bool // table -> user-created chain names
}

func newUserFirewall() userFirewall {
	return userFirewall{chains: map[string][]*Chain{}, custom: map[string]map[string]bool{}}
}

// ruleFacts describes the services for placeholder expansion.
func ruleFacts(cfg *config.Config, in Input, p Plan) rules.Facts {
	facts := rules.Facts{MarkMask: kn.MarkMask, IPv6Off: !cfg.IPv6}
	isps := map[string]ISP{}
	for _, isp := range p.ISPs {
		isps[isp.Name] = isp
	}
	lans := map[string]LAN{}
	for _, lan := range p.LANs {
		lans[lan.Name] = lan
	}
	for _, s := range cfg.Services {
		svc := rules.Service{Name: s.Name, Role: string(s.Role), Dev: in.Links[s.Device].Kernel}
		if svc.Dev == "" {
			svc.Dev = s.Device
		}
		if isp, ok := isps[s.Name]; ok {
			svc.Present, svc.Up = true, isp.Routing
			svc.IP, svc.GW, svc.Net = isp.Addr.Addr(), isp.Gateway, isp.Addr.Masked()
			svc.Fwmark, svc.Table, svc.Weight = isp.Mark, isp.Table, isp.Weight
			if isp.HasIPv6() {
				svc.IP6, svc.Net6, svc.GW6 = isp.Addr6.Addr(), isp.Addr6, isp.Gateway6
			}
			svc.Prefix6, svc.Up6 = isp.Delegated6, isp.Routing6
		}
		if lan, ok := lans[s.Name]; ok {
			svc.Present, svc.Up, svc.Up6 = true, true, true
			svc.IP, svc.Net = lan.Addr.Addr(), lan.Addr.Masked()
			if lan.Addr6.IsValid() {
				svc.IP6, svc.Net6 = lan.Addr6.Addr(), lan.Addr6
			}
		}
		facts.Services = append(facts.Services, svc)
	}
	return facts
}

func expandRuleFiles(cfg *config.Config, in Input, p Plan) (*userRules, error) {
	u := &userRules{userFirewall: newUserFirewall(), v6: newUserFirewall()}
	if len(in.RuleFiles) == 0 {
		return u, nil
	}
	res, err := rules.Expand(in.RuleFiles, ruleFacts(cfg, in, p))
	if err != nil {
		return nil, err
	}
	u.res = res
	var chains4, chains6 []rules.Chain
	for _, c := range res.Chains {
		if c.IPv6 {
			chains6 = append(chains6, c)
		} else {
			chains4 = append(chains4, c)
		}
	}
	var ipt4, ipt6 []rules.IPTablesRule
	for _, r := range res.IPTables {
		if r.IPv6 {
			ipt6 = append(ipt6, r)
		} else {
			ipt4 = append(ipt4, r)
		}
	}
	if err := errors.Join(u.buildChains(chains4, ipt4), u.v6.buildChains(chains6, ipt6)); err != nil {
		return nil, err
	}
	return u, nil
}

func lineError(pos rules.Pos, format string, args ...any) error {
	return &rules.Error{Pos: pos, Err: fmt.Errorf(format, args...)}
}

func (u *userFirewall) chain(table, name string) *Chain {
	for _, c := range u.chains[table] {
		if c.Name == kn.UserChain(name) {
			return c
		}
	}
	c := &Chain{Name: kn.UserChain(name)}
	u.chains[table] = append(u.chains[table], c)
	return c
}

// buildChains replays the files' iptables operations of one family, in
// order, on the user chains, so -I, -D, -F and -X mean what they meant to
// iptables.
func (u *userFirewall) buildChains(created []rules.Chain, ipt []rules.IPTablesRule) error {
	for _, c := range created {
		if u.custom[c.Table] == nil {
			u.custom[c.Table] = map[string]bool{}
		}
		if u.custom[c.Table][c.Name] {
			return lineError(c.Pos, "chain %s is created twice", c.Name)
		}
		u.custom[c.Table][c.Name] = true
		u.chain(c.Table, c.Name)
	}
	var errs []error
	for _, r := range ipt {
		origin := r.Pos.String()
		c := u.chain(r.Table, r.Chain)
		args := u.rewriteTargets(r.Table, r.Args)
		switch r.Op {
		case "-A":
			c.addFrom(origin, args)
		case "-I":
			at := max(r.Num, 1) - 1
			if at > len(c.Rules) {
				errs = append(errs, lineError(r.Pos, "cannot insert at %d: %s has %d rules from the rule files", r.Num, r.Chain, len(c.Rules)))
				continue
			}
			for len(c.Origins) < len(c.Rules) {
				c.Origins = append(c.Origins, "")
			}
			c.Rules = slices.Insert(c.Rules, at, args)
			c.Origins = slices.Insert(c.Origins, at, origin)
		case "-D":
			i := -1
			if r.Num > 0 {
				i = r.Num - 1
			} else {
				for k, have := range c.Rules {
					if slices.Equal(have, args) {
						i = k
						break
					}
				}
			}
			if i < 0 || i >= len(c.Rules) {
				errs = append(errs, lineError(r.Pos, "nothing to delete: no such rule in %s from the rule files", r.Chain))
				continue
			}
			c.Rules = slices.Delete(c.Rules, i, i+1)
			c.Origins = slices.Delete(c.Origins, i, i+1)
		case "-F":
			c.Rules, c.Origins = nil, nil
		case "-X":
			if len(c.Rules) > 0 {
				errs = append(errs, lineError(r.Pos, "cannot delete chain %s: it still has rules", r.Chain))
				continue
			}
			u.chains[r.Table] = slices.DeleteFunc(u.chains[r.Table], func(x *Chain) bool { return x == c })
			delete(u.custom[r.Table], r.Chain)
		default:
			errs = append(errs, lineError(r.Pos, "iptables operation %s is not supported in rule files", r.Op))
		}
	}
	return errors.Join(errs...)
}

// rewriteTargets points -j and -g at the renamed user chains.
func (u *userFirewall) rewriteTargets(table string, args []string) []string {
	out := slices.Clone(args)
	for i := 0; i+1 < len(out); i++ {
		if (out[i] == "-j" || out[i] == "--jump" || out[i] == "-g" || out[i] == "--goto") && u.custom[table][out[i+1]] {
			out[i+1] = kn.UserChain(out[i+1])
		}
	}
	return out
}

// userChains returns the user chains of a table in order of first use.
func (u *userFirewall) userChains(table string) []Chain {
	var out []Chain
	for _, c := range u.chains[table] {
		out = append(out, *c)
	}
	return out
}

// has reports whether the files put rules into a built-in chain.
func (u *userFirewall) has(table, builtin string) bool {
	for _, c := range u.chains[table] {
		if c.Name == kn.UserChain(builtin) && len(c.Rules) > 0 {
			return true
		}
	}
	return false
}

func (u *userRules) commands() (pre, post []Command) {
	for _, c := range u.res.PreRun {
		pre = append(pre, Command{Origin: c.Pos.String(), Argv: c.Argv})
	}
	for _, c := range u.res.PostRun {
		post = append(post, Command{Origin: c.Pos.String(), Argv: c.Argv})
	}
	return pre, post
}

func (u *userRules) notes() []string {
	var out []string
	for _, n := range u.res.Skipped {
		out = append(out, n.String())
	}
	return out
}

// forceRoutes are mangle rules that send matching new connections through
// one ISP while it is up.
func (u *userRules) forceRoutes(p Plan) ([][]string, []string, error) {
	var origins []string
	var out [][]string
	for _, fr := range u.res.ForceRoutes {
		var target *ISP
		for i := range p.ISPs {
			if p.ISPs[i].Name == fr.Service || p.ISPs[i].Kernel == fr.Service || p.ISPs[i].Device == fr.Service {
				target = &p.ISPs[i]
			}
		}
		if target == nil {
			return nil, nil, lineError(fr.Pos, "force-route: %s is not a present ISP", fr.Service)
		}
		rule := append(slices.Clone(fr.Selectors), "-m", "conntrack", "--ctstate", "NEW", "-j", kn.MarkChain(target.Name))
		out = append(out, rule)
		origins = append(origins, fr.Pos.String())
	}
	return out, origins, nil
}

// addRouting adds the files' `ip route` and `ip rule` lines to the plan.
func (u *userRules) addRouting(p *Plan) error {
	var errs []error
	for _, c := range u.res.Routes {
		rt, err := parseRouteFamily(c.Family, c.Args)
		if err != nil {
			errs = append(errs, &rules.Error{Pos: c.Pos, Err: err})
			continue
		}
		rt.Origin = c.Pos.String()
		i := slices.IndexFunc(p.Routes, func(x Route) bool { return x.Table == rt.Table && x.Dst == rt.Dst && x.Metric == rt.Metric })
		switch c.Op {
		case "del":
			if i < 0 || p.Routes[i].Origin == "" {
				errs = append(errs, lineError(c.Pos, "ip route del: no such route from the rule files"))
				continue
			}
			p.Routes = slices.Delete(p.Routes, i, i+1)
		case "add", "append":
			if i >= 0 {
				errs = append(errs, lineError(c.Pos, "ip route %s: the route to %s in table %d is already planned (by %s)", c.Op, rt.Dst, rt.Table, originOr(p.Routes[i].Origin)))
				continue
			}
			p.Routes = append(p.Routes, rt)
		case "replace":
			if i >= 0 {
				p.Routes[i] = rt
			} else {
				p.Routes = append(p.Routes, rt)
			}
		}
	}
	next := map[bool]int{false: kn.PrioUserMin, true: kn.PrioUserMin} // by IPv6
	for _, c := range u.res.IPRules {
		ru, err := parseRuleFamily(c.Family, c.Args)
		if err != nil {
			errs = append(errs, &rules.Error{Pos: c.Pos, Err: err})
			continue
		}
		ru.Origin = c.Pos.String()
		if c.Op == "del" {
			i := slices.IndexFunc(p.Rules, func(x Rule) bool { return x.Origin != "" && sameRule(x, ru) })
			if i < 0 {
				errs = append(errs, lineError(c.Pos, "ip rule del: no such rule from the rule files"))
				continue
			}
			p.Rules = slices.Delete(p.Rules, i, i+1)
			continue
		}
		if ru.Priority == 0 {
			// Each family has its own rule list, and its own numbering.
			for slices.ContainsFunc(p.Rules, func(x Rule) bool { return x.IPv6 == ru.IPv6 && x.Priority == next[ru.IPv6] }) {
				next[ru.IPv6]++
			}
			ru.Priority = next[ru.IPv6]
		}
		if ru.Priority < kn.PrioUserMin || ru.Priority > kn.PrioUserMax {
			errs = append(errs, lineError(c.Pos, "ip rule priority %d: rule files may use %d-%d (or none)", ru.Priority, kn.PrioUserMin, kn.PrioUserMax))
			continue
		}
		if ru.Priority > kn.PrioUserMax {
			errs = append(errs, lineError(c.Pos, "too many ip rule lines"))
			continue
		}
		p.Rules = append(p.Rules, ru)
	}
	slices.SortStableFunc(p.Rules, func(a, b Rule) int { return a.Priority - b.Priority })
	return errors.Join(errs...)
}

func originOr(o string) string {
	if o == "" {
		return "ispbalance"
	}
	return o
}

func sameRule(a, b Rule) bool {
	if b.Priority != 0 && a.Priority != b.Priority {
		return false
	}
	return a.IPv6 == b.IPv6 && a.Table == b.Table && a.Mark == b.Mark && a.Mask == b.Mask && a.Src == b.Src && a.Dst == b.Dst && a.Iif == b.Iif && a.Oif == b.Oif
}

func parseTable(v string) (int, error) {
	switch v {
	case "main":
		return mainTable, nil
	case "default":
		return 253, nil
	}
	t, err := strconv.Atoi(v)
	if err != nil || t < 1 || t > 0xfffffffe || t == 255 {
		return 0, fmt.Errorf("table %q is not a table number or main", v)
	}
	return t, nil
}

// parsePrefixFamily reads an address or prefix of IPv6 or of IPv4, as
// `ip` lines write them ("default" and "all" are everything).
func parsePrefixFamily(ipv6 bool, v string) (netip.Prefix, error) {
	if v == "default" || v == "all" {
		if ipv6 {
			return defaultRoute6, nil
		}
		return defaultRoute, nil
	}
	if p, err := netip.ParsePrefix(v); err == nil && p.Addr().Is6() == ipv6 && !p.Addr().Is4In6() && p.Addr().Zone() == "" {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(v); err == nil && a.Is6() == ipv6 && !a.Is4In6() && a.Zone() == "" {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("%q is not an %s address or prefix", v, familyName(ipv6))
}

func familyName(ipv6 bool) string {
	if ipv6 {
		return "IPv6"
	}
	return "IPv4"
}

// parseAddrFamily reads a gateway or source address of one family.
func parseAddrFamily(ipv6 bool, v string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(v)
	return a, err == nil && a.Is6() == ipv6 && !a.Is4In6() && a.Zone() == ""
}

// lineFamily decides whether an `ip` line is about IPv6: as -6 or -4
// say, else, as iproute2 does, by the first address the line names, else
// IPv4. Addresses follow the words of addr; the words of words take some
// other value; any other word is the destination when bare is set.
func lineFamily(family rules.Family, args []string, addr, words map[string]bool, bare bool) bool {
	switch family {
	case rules.IPv4:
		return false
	case rules.IPv6:
		return true
	}
	for i := 0; i < len(args); i++ {
		v := args[i]
		switch {
		case addr[v] && i+1 < len(args):
			v = args[i+1]
			i++
		case words[v]:
			i++
			continue
		case !bare || strings.HasPrefix(v, "-"):
			continue
		}
		if a, err := netip.ParseAddr(v); err == nil {
			return a.Is6() && !a.Is4In6()
		}
		if p, err := netip.ParsePrefix(v); err == nil {
			return p.Addr().Is6() && !p.Addr().Is4In6()
		}
	}
	return false
}

// parseRoute reads the arguments of `ip route add|replace|del` without
// -4 or -6.
func parseRoute(args []string) (Route, error) { return parseRouteFamily(rules.AnyFamily, args) }

// routeAddrWords are the words of `ip route` followed by an address,
// routeValueWords those followed by another value.
var (
	routeAddrWords  = map[string]bool{"via": true, "src": true}
	routeValueWords = map[string]bool{"dev": true, "table": true, "metric": true, "preference": true, "priority": true, "proto": true, "scope": true}
)

// parseRouteFamily reads the arguments of `ip route add|replace|del`. Only
// what ispbalance can install and own is accepted; anything else is an
// error rather than a silently different route.
func parseRouteFamily(family rules.Family, args []string) (Route, error) {
	ipv6 := lineFamily(family, args, routeAddrWords, routeValueWords, true)
	rt := Route{Table: mainTable}
	need := func(i int) (string, error) {
		if i+1 >= len(args) {
			return "", fmt.Errorf("ip route: %s needs a value", args[i])
		}
		return args[i+1], nil
	}
	haveDst := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch a {
		case "via", "dev", "src", "table", "metric", "preference", "priority", "proto", "scope":
			v, err := need(i)
			if err != nil {
				return rt, err
			}
			i++
			switch a {
			case "via":
				var ok bool
				if rt.Gateway, ok = parseAddrFamily(ipv6, v); !ok {
					return rt, fmt.Errorf("ip route: via %q is not an %s address", v, familyName(ipv6))
				}
			case "dev":
				rt.Device = v
			case "src":
				var ok bool
				if rt.Src, ok = parseAddrFamily(ipv6, v); !ok {
					return rt, fmt.Errorf("ip route: src %q is not an %s address", v, familyName(ipv6))
				}
			case "table":
				if rt.Table, err = parseTable(v); err != nil {
					return rt, fmt.Errorf("ip route: %w", err)
				}
			case "metric", "preference", "priority":
				// The kernel keeps 32 bits: a larger metric would be
				// installed cut short, and never match the plan again.
				m, err := strconv.ParseUint(v, 10, 32)
				if err != nil {
					return rt, fmt.Errorf("ip route: metric %q is not a number from 0 to %d", v, uint32(math.MaxUint32))
				}
				rt.Metric = int(m)
			case "proto":
				return rt, fmt.Errorf("ip route: proto is ispbalance's own (%d), leave it out", kn.RouteProtocol)
			case "scope":
				if v != "link" && v != "global" {
					return rt, fmt.Errorf("ip route: scope %q is not supported (link or global)", v)
				}
			}
		case "onlink":
			rt.OnLink = true
		default:
			if haveDst || strings.HasPrefix(a, "-") {
				return rt, fmt.Errorf("ip route: %q is not understood here", a)
			}
			p, err := parsePrefixFamily(ipv6, a)
			if err != nil {
				return rt, fmt.Errorf("ip route: destination %w", err)
			}
			rt.Dst, haveDst = p, true
		}
	}
	if !haveDst {
		return rt, errors.New("ip route: no destination")
	}
	if rt.Device == "" && !rt.Gateway.IsValid() {
		return rt, errors.New("ip route: needs via or dev")
	}
	if rt.Gateway.Is6() && rt.Gateway.IsLinkLocalUnicast() && rt.Device == "" {
		// The kernel cannot tell which link such a gateway is on.
		return rt, fmt.Errorf("ip route: via %s is link-local and needs dev", rt.Gateway)
	}
	return rt, nil
}

// parseRule reads the arguments of `ip rule add|del` without -4 or -6.
func parseRule(args []string) (Rule, error) { return parseRuleFamily(rules.AnyFamily, args) }

// ruleAddrWords are the words of `ip rule` followed by an address.
var ruleAddrWords = map[string]bool{"from": true, "to": true}

// parseRuleFamily reads the arguments of `ip rule add|del`.
func parseRuleFamily(family rules.Family, args []string) (Rule, error) {
	ipv6 := lineFamily(family, args, ruleAddrWords, nil, false)
	ru := Rule{SuppressPrefixlen: -1, IPv6: ipv6}
	haveTable := false
	for i := 0; i < len(args); i++ {
		if i+1 >= len(args) {
			return ru, fmt.Errorf("ip rule: %s needs a value", args[i])
		}
		a, v := args[i], args[i+1]
		i++
		var err error
		switch a {
		case "from":
			ru.Src, err = parsePrefixFamily(ipv6, v)
		case "to":
			ru.Dst, err = parsePrefixFamily(ipv6, v)
		case "iif", "dev":
			ru.Iif = v
		case "oif":
			ru.Oif = v
		case "lookup", "table":
			ru.Table, err = parseTable(v)
			haveTable = true
		case "priority", "pref", "prio", "preference":
			ru.Priority, err = strconv.Atoi(v)
		case "fwmark":
			mark, mask, hasMask := strings.Cut(v, "/")
			var m, k uint64
			if m, err = strconv.ParseUint(mark, 0, 32); err == nil {
				k = 0xffffffff
				if hasMask {
					k, err = strconv.ParseUint(mask, 0, 32)
				}
			}
			ru.Mark, ru.Mask = uint32(m), uint32(k)
		default:
			return ru, fmt.Errorf("ip rule: %q is not understood here", a)
		}
		if err != nil {
			return ru, fmt.Errorf("ip rule: %s %q: %w", a, v, err)
		}
	}
	if !haveTable {
		return ru, errors.New("ip rule: needs lookup TABLE")
	}
	return ru, nil
}

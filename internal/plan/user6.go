package plan

import (
	"slices"

	kn "github.com/ispbalance/ispbalance/internal/kernelnames"
)

// userTableOrder is the order IPv4's tables come in; an IPv6 table that
// only the rule files need is added in the same order.
var userTableOrder = []string{"filter", "mangle", "nat", "raw"}

// userBuiltins are the built-in chains of each table a rule file may add
// rules to.
var userBuiltins = map[string][]string{
	"filter": {"INPUT", "FORWARD", "OUTPUT"},
	"mangle": {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
	"nat":    {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
	"raw":    {"PREROUTING", "OUTPUT"},
}

// addFirewall6 puts the ip6tables lines' chains into the IPv6 tables the
// way IPv4's are put into its own: the rules for a built-in chain live in
// ISPB-U-<chain>. Where ispbalance has a chain of its own hooked to that
// built-in chain, the user chain runs from inside it, at the place IPv4
// gives it (right after established traffic is accepted, or after a
// connection's ISP mark is restored, else first); otherwise the built-in
// chain jumps to it directly. Tables no ISP needs (nat and mangle when no
// ISP has IPv6, raw) are added for the rule files alone.
func (u *userRules) addFirewall6(tables []Table) []Table {
	for _, name := range userTableOrder {
		chains := u.v6.userChains(name)
		if len(chains) == 0 {
			continue
		}
		i := slices.IndexFunc(tables, func(t Table) bool { return t.Name == name })
		if i < 0 {
			tables = append(tables, Table{Name: name})
			i = len(tables) - 1
		}
		t := &tables[i]
		for _, b := range userBuiltins[name] {
			if !u.v6.has(name, b) {
				continue
			}
			jump := r("-j", kn.UserChain(b))
			ours := -1
			if slices.Contains(t.Jumps, Jump{b, kn.ChainPrefix + b}) {
				ours = slices.IndexFunc(t.Chains, func(c Chain) bool { return c.Name == kn.ChainPrefix+b })
			}
			if ours < 0 {
				t.Jumps = append(t.Jumps, Jump{b, kn.UserChain(b)})
				continue
			}
			c := &t.Chains[ours]
			at := userJumpPlace(c.Rules)
			for len(c.Origins) > 0 && len(c.Origins) < len(c.Rules) {
				c.Origins = append(c.Origins, "")
			}
			if len(c.Origins) > 0 {
				c.Origins = slices.Insert(c.Origins, at, "")
			}
			c.Rules = slices.Insert(slices.Clone(c.Rules), at, jump)
		}
		t.Chains = append(t.Chains, chains...)
	}
	return tables
}

// userJumpPlace is where, in one of ispbalance's chains, the jump to the
// rule files' rules goes: after the rule that accepts established
// traffic (filter) or returns connections that already have an ISP
// (mangle PREROUTING), as in IPv4; first when the chain has neither.
func userJumpPlace(rules [][]string) int {
	established := r("-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")
	assigned := r("-m", "mark", "!", "--mark", "0x0/"+kn.FormatMark(kn.MarkMask), "-j", "RETURN")
	for i, rule := range rules {
		if slices.Equal(rule, established) || slices.Equal(rule, assigned) {
			return i + 1
		}
	}
	return 0
}

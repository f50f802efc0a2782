package plan

import (
	"slices"
	"strconv"

	"github.com/ispbalance/ispbalance/internal/config"
	kn "github.com/ispbalance/ispbalance/internal/kernelnames"
)

// Sticky balancing (sticky=source) keeps every LAN address on one ISP:
// some sites (banks, webmail, games) break when one client's connections
// arrive from two addresses. Each ISP has a set of the LAN addresses it
// carries, per family, whose entries expire after the timeout unless a
// new connection of the address refreshes them. A new connection from an
// address in a routing ISP's set goes to that ISP; any other address
// gets an ISP by weight, as connections do without stickiness, and is
// then recorded in that ISP's set and taken out of the others'. Sets of
// ISPs that do not route are not consulted, so an address whose ISP died
// moves to a live one, and the removal from the other sets keeps it
// there after the dead ISP returns, until it has been quiet for the
// timeout. Connections keep their ISP by connmark as before; the sets
// only decide where new ones go.

// Sticky is what sticky=source adds to a plan.
type Sticky struct {
	// Timeout is how many seconds an address keeps its ISP after its last
	// new connection.
	Timeout int
	// Sets must exist before the firewall that refers to them goes in.
	Sets []StickySet
}

// StickySet is one ISP's set of LAN addresses in one family.
type StickySet struct {
	Name    string
	Service string
	IPv6    bool
}

// addStickiness turns each family's balancing into sticky balancing
// under sticky=source. Failover mode sends everything through one ISP
// already, so it has nothing to keep.
func addStickiness(cfg *config.Config, p *Plan) {
	if cfg.Sticky != config.StickySource || p.Mode != config.Balanced {
		return
	}
	p.Sticky = &Sticky{Timeout: cfg.StickyTimeout}
	p.Sticky.Sets = stickFamily(p.Firewall, p.ISPs, func(isp ISP) bool { return isp.Routing }, false, cfg.StickyTimeout)
	if len(p.Firewall6) > 0 {
		sets6 := stickFamily(p.Firewall6, ipv6ISPs(*p), func(isp ISP) bool { return isp.Routing6 }, true, cfg.StickyTimeout)
		p.Sticky.Sets = append(p.Sticky.Sets, sets6...)
	}
}

// stickFamily rewrites the balance chain of one family's mangle table
// and adds the keep chains; it returns the family's sets, one for each
// ISP of the family (none when the family balances nothing).
func stickFamily(tables []Table, isps []ISP, routes func(ISP) bool, ipv6 bool, timeout int) []StickySet {
	mangle := slices.IndexFunc(tables, func(t Table) bool { return t.Name == "mangle" })
	if mangle < 0 {
		return nil
	}
	t := &tables[mangle]
	balance := slices.IndexFunc(t.Chains, func(c Chain) bool { return c.Name == kn.ChainBalance })
	if balance < 0 {
		return nil
	}
	var sets []StickySet
	var routing []ISP
	for _, isp := range isps {
		sets = append(sets, StickySet{Name: kn.StickySet(isp.Name, ipv6), Service: isp.Name, IPv6: ipv6})
		if routes(isp) {
			routing = append(routing, isp)
		}
	}
	unmarked := r("-m", "mark", "--mark", "0x0/"+kn.FormatMark(kn.MarkMask))
	var rules [][]string
	// An address a routing ISP holds stays with it. The mark test stops
	// at the first: an address found in two sets (two first connections
	// at the same instant) is then kept by one, and removed from the other.
	for _, isp := range routing {
		rules = append(rules, append(slices.Clone(unmarked), "-m", "set", "--match-set", kn.StickySet(isp.Name, ipv6), "src", "-j", kn.KeepChain(isp.Name)))
	}
	rules = append(rules, balanceCascadeTo(config.Balanced, slices.Clone(routing), kn.KeepChain)...)
	t.Chains[balance] = Chain{Name: kn.ChainBalance, Rules: rules}
	for _, isp := range routing {
		keep := Chain{Name: kn.KeepChain(isp.Name)}
		// --exist refreshes the timeout of an address already there.
		keep.add(r("-j", "SET", "--add-set", kn.StickySet(isp.Name, ipv6), "src", "--exist", "--timeout", strconv.Itoa(timeout)))
		for _, other := range isps {
			if other.Name != isp.Name {
				keep.add(r("-j", "SET", "--del-set", kn.StickySet(other.Name, ipv6), "src"))
			}
		}
		keep.add(r("-j", kn.MarkChain(isp.Name)))
		t.Chains = append(t.Chains, keep)
	}
	return sets
}

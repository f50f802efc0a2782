package apply

import (
	"context"
	"fmt"
	"golang.org/x/sys/unix"
	"maps"
	"slices"

	"github.com/vishvananda/netlink"

	"github.com/ispbalance/ispbalance/internal/plan"
	"github.com/ispbalance/ispbalance/internal/render"
)

// Drift lists what of the applied plan p is missing from the kernel now:
// rules, routes, firewall jumps and chains that someone else deleted
// (`ip rule flush`, `iptables -F`, a firewall manager's reload). It only
// reads, so the monitor can call it every second or so; withFirewall adds
// the firewall, which costs an iptables-save run per family.
//
// Only absence counts: other software adding rules of its own is none of
// our business, and our chains' contents are compared only where the plan
// wrote them in iptables-save's canonical form (not the rule files'
// chains, which are written as the admin spelled them).
func (a *Applier) Drift(ctx context.Context, p plan.Plan, withFirewall bool) ([]string, error) {
	want, err := a.desiredRouting(p)
	if err != nil {
		return nil, err
	}
	now, err := a.readRouting()
	if err != nil {
		return nil, err
	}
	var missing []string
	haveRules := map[string]bool{}
	for _, r := range now.rules {
		haveRules[ruleKey(r)] = true
	}
	for i, r := range want.rules {
		if !haveRules[ruleKey(r)] {
			missing = append(missing, "rule "+want.ruleText[i])
		}
	}
	haveRoutes := map[string]netlink.Route{}
	for _, r := range now.routes {
		haveRoutes[routeKey(r)] = r
	}
	for i, r := range want.routes {
		have, ok := haveRoutes[routeKey(r)]
		switch {
		case !ok:
			missing = append(missing, "route "+want.routeText[i])
		case !sameRoute(have, r):
			// A gateway moved at a renewal nobody told us about, say.
			missing = append(missing, "route "+want.routeText[i]+" (installed: "+describeRoute(have)+")")
		}
	}
	if !withFirewall {
		return missing, nil
	}
	// Always read, never the record: this is the check that the record
	// is right.
	rs := a.theRuleset()
	var before uint32
	if rs != nil {
		if before, err = rs.Generation(); err != nil {
			rs = nil
		}
	}
	fw, err := a.netfilter.save(ctx)
	if err != nil {
		return nil, err
	}
	states := map[string]firewallState{"ipv4": fw}
	missing = append(missing, firewallDrift("", p.Firewall, fw)...)
	if a.ipv6 && len(p.Firewall6) > 0 {
		fw6, err := a.netfilter6.save(ctx)
		if err != nil {
			return nil, fmt.Errorf("reading the IPv6 firewall: %w", err)
		}
		states["ipv6"] = fw6
		missing = append(missing, firewallDrift("IPv6 ", p.Firewall6, fw6)...)
	}
	if rs != nil {
		if after, err := rs.Generation(); err == nil && after == before {
			a.checkRecord(rs, before, states)
		}
	}
	return missing, nil
}

// checkRecord compares the record with the firewall read at the
// record's generation, and forgets a record that is wrong, so that
// rebuilds read the firewall again.
func (a *Applier) checkRecord(rs Ruleset, gen uint32, read map[string]firewallState) {
	families := slices.Collect(maps.Keys(read))
	rec, ok := a.loadRecord(rs, gen, families...)
	if !ok {
		return
	}
	for fam, st := range read {
		if rec[fam].ours().text() != st.ours().text() {
			a.log.Warn("the firewall record differs from the firewall; rebuilds read the firewall again", "family", fam)
			if err := a.forgetRecord(); err != nil {
				a.log.Warn("cannot forget the firewall record", "err", err)
			}
			return
		}
	}
}

// sameRoute compares where two routes send packets: gateway, device,
// source and each multipath leg with its weight.
func sameRoute(a, b netlink.Route) bool {
	if routeType(a) != routeType(b) {
		return false
	}
	if routeType(a) != unix.RTN_UNICAST {
		// The kernel lists an IPv6 unreachable route on lo; where it
		// sends nothing the device does not matter.
		return true
	}
	if !a.Gw.Equal(b.Gw) || a.LinkIndex != b.LinkIndex || !a.Src.Equal(b.Src) || len(a.MultiPath) != len(b.MultiPath) {
		return false
	}
	legs := func(r netlink.Route) []string {
		var out []string
		for _, nh := range r.MultiPath {
			out = append(out, fmt.Sprintf("%s|%d|%d", nh.Gw, nh.LinkIndex, nh.Hops))
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(legs(a), legs(b))
}

// routeType reads a route's type as the kernel does: none is unicast.
func routeType(r netlink.Route) int {
	if r.Type == 0 {
		return unix.RTN_UNICAST
	}
	return r.Type
}

// firewallDrift compares one family's planned tables with a save of it.
func firewallDrift(family string, tables []plan.Table, fw firewallState) []string {
	var missing []string
	for _, t := range tables {
		saved := fw[t.Name]
		for _, j := range t.Jumps {
			if !fw.haveJump(t.Name, j) {
				missing = append(missing, fmt.Sprintf("%sjump %s -> %s in %s", family, j.From, j.To, t.Name))
			}
		}
		for _, c := range t.Chains {
			if saved == nil || !slices.Contains(saved.chains, c.Name) {
				missing = append(missing, fmt.Sprintf("%schain %s in %s", family, c.Name, t.Name))
				continue
			}
			if adminSpelled(c) {
				// Written as the admin spelled it; iptables-save spells it
				// its own way.
				continue
			}
			have := saved.rules[c.Name]
			same := len(have) == len(c.Rules)
			for i := 0; same && i < len(have); i++ {
				same = have[i] == render.Quote(c.Rules[i])
			}
			if !same {
				missing = append(missing, fmt.Sprintf("%srules of %s in %s", family, c.Name, t.Name))
			}
		}
	}
	return missing
}

package plan_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/ispbalance/ispbalance/internal/plan"
	"github.com/ispbalance/ispbalance/internal/plan/plantest"
)

// stickyDualStack is sticky=source with IPv6 from both ISPs: the IPv6
// mangle table keeps addresses in sets of its own.
var stickyDualStack = plantest.Scenario{
	Name:  "sticky-dual-stack",
	Conf:  "sticky=source\nsticky_timeout=90\nCABLE wan1 isp default 3\nDSL wan2 isp\nLAN lan1 lan\n",
	Links: map[string]plan.Link{"wan1": dualISP(1), "wan2": dualISP(2), "lan1": plantest.LAN(1)},
	Up:    map[string]bool{"CABLE": true, "DSL": true},
}

func TestGoldenSticky(t *testing.T) {
	for _, sc := range append(slices.Clone(plantest.StickyScenarios), stickyDualStack) {
		t.Run(sc.Name, func(t *testing.T) { checkGolden(t, sc) })
	}
}

// chain returns the rules of a chain of a family's mangle table as
// lines, nil when there is no such chain.
func chain(tables []plan.Table, name string) []string {
	for _, t := range tables {
		for _, c := range t.Chains {
			if t.Name == "mangle" && c.Name == name {
				var out []string
				for _, r := range c.Rules {
					out = append(out, strings.Join(r, " "))
				}
				return out
			}
		}
	}
	return nil
}

// TestStickyFollowsRouting: the sets of every planned ISP exist in both
// families, but only routing ISPs' sets are consulted and only routing
// ISPs get new addresses; every keep chain takes its addresses out of
// all the other ISPs' sets of its family, down ones included.
func TestStickyFollowsRouting(t *testing.T) {
	sc := stickyDualStack
	sc.Up = map[string]bool{"DSL": true}
	p, err := sc.Build()
	if err != nil {
		t.Fatal(err)
	}
	if p.Sticky == nil || p.Sticky.Timeout != 90 {
		t.Fatalf("Sticky = %+v, want a timeout of 90", p.Sticky)
	}
	var sets []string
	for _, s := range p.Sticky.Sets {
		sets = append(sets, s.Name)
	}
	want := []string{"ISPB-STICKY4-CABLE", "ISPB-STICKY4-DSL", "ISPB-STICKY6-CABLE", "ISPB-STICKY6-DSL"}
	if !slices.Equal(sets, want) {
		t.Errorf("sets %v, want %v", sets, want)
	}
	for fam, tables := range map[string][]plan.Table{"4": p.Firewall, "6": p.Firewall6} {
		balance := strings.Join(chain(tables, "ISPB-BALANCE"), "\n")
		if strings.Contains(balance, "CABLE") || !strings.Contains(balance, "--match-set ISPB-STICKY"+fam+"-DSL src -j ISPB-KEEP-DSL") {
			t.Errorf("IPv%s balance chain consults or chooses the down ISP, or not the live one:\n%s", fam, balance)
		}
		if c := chain(tables, "ISPB-KEEP-CABLE"); c != nil {
			t.Errorf("IPv%s has a keep chain for the down ISP: %v", fam, c)
		}
		keep := chain(tables, "ISPB-KEEP-DSL")
		wantKeep := []string{
			"-j SET --add-set ISPB-STICKY" + fam + "-DSL src --exist --timeout 90",
			"-j SET --del-set ISPB-STICKY" + fam + "-CABLE src",
			"-j ISPB-MARK-DSL",
		}
		if !slices.Equal(keep, wantKeep) {
			t.Errorf("IPv%s keep chain of DSL %q, want %q", fam, keep, wantKeep)
		}
	}
}

// TestStickyOffByDefault: without sticky=source nothing of it is planned.
func TestStickyOffByDefault(t *testing.T) {
	sc := stickyDualStack
	sc.Conf = strings.Replace(sc.Conf, "sticky=source", "sticky=connection", 1)
	p, err := sc.Build()
	if err != nil {
		t.Fatal(err)
	}
	if p.Sticky != nil {
		t.Errorf("sticky=connection planned %+v", p.Sticky)
	}
	for _, tables := range [][]plan.Table{p.Firewall, p.Firewall6} {
		for _, r := range chain(tables, "ISPB-BALANCE") {
			if strings.Contains(r, "set") || strings.Contains(r, "KEEP") {
				t.Errorf("sticky=connection balances with %q", r)
			}
		}
	}
}

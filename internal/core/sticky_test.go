package core

import (
	"bytes"
	"context"
	"testing"

	"github.com/ispbalance/ispbalance/internal/config"
	"github.com/ispbalance/ispbalance/internal/kernelfake"
	"github.com/ispbalance/ispbalance/internal/plan/plantest"
	"github.com/ispbalance/ispbalance/internal/render"
)

// TestStickyStatus: -s says what keeps its ISP and, under sticky=source,
// how many addresses each ISP's sets hold in each family.
func TestStickyStatus(t *testing.T) {
	sets := kernelfake.NewIPSets()
	err := sets.Restore(context.Background(), "create ISPB-STICKY4-CABLE hash:ip family inet timeout 0\n"+
		"create ISPB-STICKY4-DSL hash:ip family inet timeout 0\ncreate ISPB-STICKY6-DSL hash:ip family inet6 timeout 0\n"+
		"add ISPB-STICKY4-CABLE 192.168.1.20 timeout 30\nadd ISPB-STICKY4-CABLE 192.168.1.21 timeout 30\n"+
		"add ISPB-STICKY4-DSL 192.168.1.22 timeout 30\nadd ISPB-STICKY6-DSL fd00::22 timeout 30\n"+
		"create OTHER hash:ip family inet timeout 0\nadd OTHER 192.168.1.23\n")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ scenario, want string }{
		{"two-isps-balanced", "Sticky: per connection (each new connection gets an ISP by weight)\n"},
		{"sticky-two-isps", "Sticky: per LAN address, kept 600 s after its last new connection; addresses held: CABLE 2, DSL 1 (IPv6 1)\n"},
		{"sticky-failover", "Sticky: per LAN address, kept 600 s after its last new connection; no effect with mode=failover, which sends everything through one ISP\n"},
	}
	for _, c := range cases {
		var f Facts
		for _, sc := range append(plantest.Scenarios, plantest.StickyScenarios...) {
			if sc.Name == c.scenario {
				p, err := sc.Build()
				if err != nil {
					t.Fatal(err)
				}
				cfg, _ := config.Parse("balance.conf", bytes.NewReader([]byte(sc.Conf)))
				f = Facts{Config: cfg, Plan: p}
			}
		}
		var b bytes.Buffer
		if err := render.Status(&b, render.StatusReport{Sticky: stickyStatus(f, sets)}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b.Bytes(), []byte("\n"+c.want)) {
			t.Errorf("%s: status\n%s\nlacks %q", c.scenario, b.String(), c.want)
		}
	}
}

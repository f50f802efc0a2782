package core

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ispbalance/ispbalance/internal/config"
	"github.com/ispbalance/ispbalance/internal/plan"
)

func TestUnknownServiceListsISPs(t *testing.T) {
	cfg, err := config.Parse("/etc/network/balance.conf", strings.NewReader("FIBER wan2 isp\nCABLE wan1 isp\nLAN lan1 lan\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = checkUpSet(cfg, UpSet{Only: []string{"CABLE", "DSL"}})
	want := `/etc/network/balance.conf: no service named "DSL"; the ISPs are CABLE, FIBER`
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	err = checkUpSet(cfg, UpSet{Event: &Event{Service: "LAN"}})
	if err == nil || !strings.Contains(err.Error(), "balance.conf:3: service LAN is a lan, not an isp") {
		t.Errorf("a LAN as an ISP: got %v", err)
	}
}

func TestPlanWarnings(t *testing.T) {
	p := plan.Plan{
		ISPs:    []plan.ISP{{Name: "CABLE", Warnings: []string{"gateway 10.9.9.1 is outside wan1's subnet 100.64.1.0/24; installed onlink"}}},
		Skipped: []plan.Skipped{{Service: "DSL", Device: "wan2", Reason: "gateway 100.64.2.2 (from route) is this router's own address on wan2"}, {Service: "FIBER", Device: "wan3", Reason: "no such device"}},
	}
	got := map[string][]string{}
	for _, s := range []struct {
		name    string
		present bool
	}{{"CABLE", true}, {"DSL", true}, {"FIBER", false}} {
		got[s.name] = planWarnings(p, s.name, s.present)
	}
	want := map[string][]string{
		"CABLE": {"gateway 10.9.9.1 is outside wan1's subnet 100.64.1.0/24; installed onlink"},
		"DSL":   {"left out: gateway 100.64.2.2 (from route) is this router's own address on wan2"},
		"FIBER": nil,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

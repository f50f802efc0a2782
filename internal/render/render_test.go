package render

import (
	"strings"
	"testing"

	"github.com/ispbalance/ispbalance/internal/plan"
)

func TestQuote(t *testing.T) {
	got := Quote([]string{"-j", "LOG", "--log-prefix", "ispb x: ", "--x", `a"b`})
	want := `-j LOG --log-prefix "ispb x: " --x "a\"b"`
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestRestoreWritesOnlyChanges(t *testing.T) {
	tables := []plan.Table{{
		Name: "mangle",
		Chains: []plan.Chain{
			{Name: "ISPB-A", Rules: [][]string{{"-j", "RETURN"}}},
			{Name: "ISPB-B", Rules: [][]string{{"-j", "ACCEPT"}}},
		},
		Jumps: []plan.Jump{{From: "PREROUTING", To: "ISPB-A"}},
	}, {
		Name:   "nat",
		Chains: []plan.Chain{{Name: "ISPB-N", Rules: [][]string{{"-j", "MASQUERADE"}}}},
		Jumps:  []plan.Jump{{From: "POSTROUTING", To: "ISPB-N"}},
	}}
	full := Restore(tables, RestoreOptions{})
	if !strings.Contains(full, ":ISPB-A - [0:0]") || !strings.Contains(full, "-A PREROUTING -j ISPB-A") || !strings.Contains(full, "*nat") {
		t.Errorf("without knowledge of the kernel everything must be written:\n%s", full)
	}
	got := Restore(tables, RestoreOptions{
		HaveJump: func(string, plan.Jump) bool { return true },
		Existing: map[string]map[string][]string{
			"mangle": {"ISPB-A": {"-j RETURN"}, "ISPB-B": {"-j DROP"}},
			"nat":    {"ISPB-N": {"-j MASQUERADE"}},
		},
		Stale: map[string][]string{"mangle": {"ISPB-OLD"}},
	})
	want := "*mangle\n:ISPB-B - [0:0]\n:ISPB-OLD - [0:0]\n-A ISPB-B -j ACCEPT\n-X ISPB-OLD\nCOMMIT\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if got := Restore(tables, RestoreOptions{HaveJump: func(string, plan.Jump) bool { return true },
		Existing: map[string]map[string][]string{"mangle": {"ISPB-A": {"-j RETURN"}, "ISPB-B": {"-j ACCEPT"}}, "nat": {"ISPB-N": {"-j MASQUERADE"}}}}); got != "" {
		t.Errorf("nothing changed, but restore text is %q", got)
	}
}

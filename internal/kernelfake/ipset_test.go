package kernelfake_test

import (
	"context"
	"strings"
	"testing"

	"github.com/ispbalance/ispbalance/internal/kernelfake"
)

// setsAndFirewalls is a kernel with IP sets and both families' iptables
// attached to them.
func setsAndFirewalls() (*kernelfake.IPSets, *kernelfake.Netfilter, *kernelfake.Netfilter) {
	s, nf4, nf6 := kernelfake.NewIPSets(), kernelfake.NewNetfilter(), kernelfake.NewNetfilter()
	nf4.UseSets(s, false)
	nf6.UseSets(s, true)
	return s, nf4, nf6
}

const twoSets = "create S4 hash:ip family inet timeout 0\ncreate S6 hash:ip family inet6 timeout 0\n"

func rulesUsing(set string) string {
	return "*mangle\n:ISPB-KEEP - [0:0]\n-A ISPB-KEEP -m set --match-set " + set + " src -j SET --add-set " + set + " src --exist --timeout 60\nCOMMIT\n"
}

// TestIPSetsRestore: creates and members as ipset restore -exist takes
// them, an identical create and a destroy of a missing set passing; a
// failing line stops the restore and keeps what came before.
func TestIPSetsRestore(t *testing.T) {
	ctx := context.Background()
	s := kernelfake.NewIPSets()
	if err := s.Restore(ctx, twoSets+twoSets+"add S4 192.168.1.5 timeout 60\nadd S4 192.168.1.6\nadd S6 fd00::5\ndel S4 192.168.1.6\ndel S4 192.168.1.9\ndestroy NOPE\n"); err != nil {
		t.Fatal(err)
	}
	want := "create S4 hash:ip family inet hashsize 1024 maxelem 65536 timeout 0\nadd S4 192.168.1.5 timeout 60\n" +
		"create S6 hash:ip family inet6 hashsize 1024 maxelem 65536 timeout 0\nadd S6 fd00::5 timeout 0\n"
	if got := s.Save(); got != want {
		t.Errorf("sets:\n%s\nwant:\n%s", got, want)
	}
	list, _ := s.List(ctx)
	if !strings.Contains(string(list), "Name: S4\nType: hash:ip\n") || !strings.Contains(string(list), "Header: family inet6 ") ||
		!strings.Contains(string(list), "Number of entries: 1\n") {
		t.Errorf("ipset list -t:\n%s", list)
	}
	for _, bad := range []struct{ input, want string }{
		{"create T hash:ip family inet timeout 0\ncreate S4 hash:ip family inet6 timeout 0\ncreate U hash:ip family inet timeout 0\n", "line 2: Set cannot be created"},
		{"create T2 hash:net family inet timeout 0\n", "line 1: the fake makes only"},
		{"create T3 hash:ip family inet timeout 600\n", "timeout 0 only"},
		{"add S6 192.168.1.5\n", "cannot parse 192.168.1.5"},
		{"add NOPE 192.168.1.5\n", "does not exist"},
		{"swap S4 S6\n", "unknown argument swap"},
	} {
		err := s.Restore(ctx, bad.input)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: got %v, want an error with %q", bad.input, err, bad.want)
		}
	}
	list, _ = s.List(ctx)
	if !strings.Contains(string(list), "Name: T\n") || strings.Contains(string(list), "Name: U\n") {
		t.Errorf("a failed restore did not keep the lines before the failure, or ran those after it:\n%s", list)
	}
}

// TestIPSetsAndRules: a rule may name only an existing set of its own
// family, and a set a rule names cannot be destroyed until the rule goes.
func TestIPSetsAndRules(t *testing.T) {
	ctx := context.Background()
	s, nf4, nf6 := setsAndFirewalls()
	if err := nf4.Restore(ctx, rulesUsing("S4"), true); err == nil || !strings.Contains(err.Error(), "Set S4 doesn't exist.") {
		t.Errorf("a rule naming a missing set: %v", err)
	}
	if err := s.Restore(ctx, twoSets); err != nil {
		t.Fatal(err)
	}
	if err := nf4.Restore(ctx, rulesUsing("S6"), true); err == nil || !strings.Contains(err.Error(), "family of set S6 is IPv6") {
		t.Errorf("an IPv4 rule naming an IPv6 set: %v", err)
	}
	if err := nf6.Restore(ctx, rulesUsing("S4"), true); err == nil || !strings.Contains(err.Error(), "family of set S4 is IPv4") {
		t.Errorf("an IPv6 rule naming an IPv4 set: %v", err)
	}
	if err := nf4.Restore(ctx, rulesUsing("S4"), true); err != nil {
		t.Fatal(err)
	}
	if err := nf6.Restore(ctx, rulesUsing("S6"), true); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.List(ctx); !strings.Contains(string(list), "References: 2\n") {
		t.Errorf("references not counted:\n%s", list)
	}
	for _, set := range []string{"S4", "S6"} {
		if err := s.Restore(ctx, "destroy "+set+"\n"); err == nil || !strings.Contains(err.Error(), "in use by a kernel component") {
			t.Errorf("destroying %s while a rule names it: %v", set, err)
		}
	}
	// A rule without a kernel of sets can name none.
	if err := kernelfake.NewNetfilter().Restore(ctx, rulesUsing("S4"), true); err == nil {
		t.Error("a Netfilter without sets took a rule naming one")
	}
	if err := nf4.Restore(ctx, "*mangle\n-F ISPB-KEEP\n-X ISPB-KEEP\nCOMMIT\n", true); err != nil {
		t.Fatal(err)
	}
	if err := s.Restore(ctx, "destroy S4\n"); err != nil {
		t.Errorf("destroying a set no rule names: %v", err)
	}
}

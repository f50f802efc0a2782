package kernelfake_test

import (
	"context"
	"testing"

	"github.com/ispbalance/ispbalance/internal/kernelfake"
)

// TestRulesetCountsCommits: each table a restore changes is one commit
// of the shared generation, with the restore's writer; a table left as
// it was is none; only commits after Watch are reported.
func TestRulesetCountsCommits(t *testing.T) {
	ctx := context.Background()
	v4, v6 := kernelfake.NewNetfilter(), kernelfake.NewNetfilter()
	rs := kernelfake.NewRuleset("test")
	rs.Attach(v4, v6)
	if err := v4.Restore(ctx, "*filter\n:A - [0:0]\nCOMMIT\n", true); err != nil {
		t.Fatal(err)
	}
	if err := rs.Watch(); err != nil {
		t.Fatal(err)
	}
	w4, err := v4.RestoreByWriter(ctx, "*filter\n:A - [0:0]\nCOMMIT\n*nat\n:B - [0:0]\nCOMMIT\n*mangle\nCOMMIT\n", true)
	if err != nil {
		t.Fatal(err)
	}
	w6, err := v6.RestoreByWriter(ctx, "*filter\n:A - [0:0]\n-A A -j ACCEPT\nCOMMIT\n", true)
	if err != nil {
		t.Fatal(err)
	}
	if w4 == w6 || w4 == 0 {
		t.Errorf("writers %d and %d: want two distinct ones", w4, w6)
	}
	commits, err := rs.Commits()
	if err != nil {
		t.Fatal(err)
	}
	// filter unchanged; nat new (one); mangle new (one); IPv6 filter new.
	want := []struct {
		gen    uint32
		writer int
	}{{3, w4}, {4, w4}, {5, w6}}
	if len(commits) != len(want) {
		t.Fatalf("commits %v, want %v", commits, want)
	}
	for i, c := range commits {
		if c.Gen != want[i].gen || c.Writer != want[i].writer {
			t.Errorf("commit %d is %+v, want %+v", i, c, want[i])
		}
	}
	if gen, _ := rs.Generation(); gen != 5 {
		t.Errorf("generation %d, want 5", gen)
	}
	rs.LoseNotices()
	if _, err := rs.Commits(); err == nil {
		t.Error("lost notices went unreported")
	}
}

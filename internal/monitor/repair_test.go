package monitor

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRepairLimiter(t *testing.T) {
	var l repairLimiter
	t0 := time.Unix(1000, 0)
	found := driftResult{gen: 1, missing: []string{"rule a", "rule b", "route c", "jump d", "chain e"}}
	if _, ok := l.judge(driftResult{gen: 1}, 1, false, t0); ok {
		t.Fatal("nothing missing, but a repair was asked for")
	}
	if _, ok := l.judge(driftResult{gen: 1, err: errors.New("x"), missing: []string{"a"}}, 1, false, t0); ok {
		t.Fatal("a failed check asked for a repair")
	}
	if _, ok := l.judge(found, 2, false, t0); ok {
		t.Fatal("a check of an older rebuild's result asked for a repair")
	}
	if _, ok := l.judge(found, 1, true, t0); ok {
		t.Fatal("a check during a rebuild asked for a repair")
	}
	reason, ok := l.judge(found, 1, false, t0)
	if !ok || !strings.Contains(reason, "rule a; rule b; route c; 2 more") {
		t.Fatalf("first repair: %q %v", reason, ok)
	}
	// A burst is repaired at once, one check a second apart.
	at := t0
	for i := 1; i < repairBurst; i++ {
		at = at.Add(time.Second)
		if _, ok := l.judge(found, 1, false, at); !ok {
			t.Fatalf("repair %d of a burst of %d was held back", i+1, repairBurst)
		}
	}
	// Then a fight with another program gets one repair per refill.
	repaired := 0
	for i := 0; i < 60; i++ {
		at = at.Add(time.Second)
		if _, ok := l.judge(found, 1, false, at); ok {
			repaired++
		}
	}
	if want := int(60 * time.Second / repairRefill); repaired < want-1 || repaired > want+1 {
		t.Fatalf("a minute of drift after the burst: %d repairs, want about %d", repaired, want)
	}
	// After a quiet spell the whole burst is there again.
	at = at.Add(repairBurst * repairRefill)
	for i := 0; i < repairBurst; i++ {
		if _, ok := l.judge(found, 1, false, at); !ok {
			t.Fatalf("after a quiet spell, repair %d was held back", i+1)
		}
	}
}

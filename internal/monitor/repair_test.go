package monitor

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ispbalance/ispbalance/internal/lsm"
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

func TestHoldLeft(t *testing.T) {
	now := time.Unix(5000, 0)
	tests := []struct {
		st   lsm.LinkState
		want time.Duration
	}{
		{lsm.LinkState{State: lsm.Up, Hold: 10 * time.Second}, 0},
		{lsm.LinkState{State: lsm.Down}, 0},
		{lsm.LinkState{State: lsm.Down, Hold: 20 * time.Second}, 20 * time.Second},
		{lsm.LinkState{State: lsm.Down, Hold: 20 * time.Second, GoodSince: now.Add(-5 * time.Second)}, 15 * time.Second},
		{lsm.LinkState{State: lsm.LongDown, Hold: 20 * time.Second, GoodSince: now.Add(-25 * time.Second)}, 0},
	}
	for _, tt := range tests {
		if got := holdLeft(tt.st, now); got != tt.want {
			t.Errorf("%+v: hold left %v, want %v", tt.st, got, tt.want)
		}
	}
}

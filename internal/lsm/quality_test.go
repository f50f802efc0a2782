package lsm

import (
	"strings"
	"testing"
	"time"
)

func spread(mean, stddev time.Duration) Spread {
	return Spread{N: 20, Mean: mean, Stddev: stddev, P95: mean + 2*stddev}
}

// TestQualityHysteresis walks a link through slow spells: a spell shorter
// than DegradeAfter changes nothing, a longer one degrades the link, and
// it recovers only after RecoverAfter at or below 80 % of the threshold
// (a figure between 80 % and 100 % keeps it degraded).
func TestQualityHysteresis(t *testing.T) {
	q := Quality{MaxRTT: 300 * time.Millisecond}
	t0 := time.Unix(1000, 0)
	var st QualityState
	step := func(at time.Duration, mean time.Duration) bool {
		t.Helper()
		next, changed := q.Judge(st, spread(mean, time.Millisecond), t0.Add(at))
		st = next
		return changed
	}
	if step(0, 800*time.Millisecond) || step(4*time.Second, 800*time.Millisecond) {
		t.Fatal("degraded before DegradeAfter")
	}
	if step(4500*time.Millisecond, 20*time.Millisecond) || st.Degraded {
		t.Fatal("a short spell degraded the link")
	}
	step(5*time.Second, 800*time.Millisecond)
	if step(9*time.Second, 800*time.Millisecond) {
		t.Fatal("the second spell counted the first one's time")
	}
	if !step(10*time.Second, 800*time.Millisecond) || !st.Degraded {
		t.Fatalf("not degraded after DegradeAfter above the threshold: %+v", st)
	}
	if !strings.Contains(st.Why, "average RTT 800.0 ms above max_rtt_ms=300") {
		t.Errorf("reason %q", st.Why)
	}
	// 280 ms is below the threshold but above 80 % of it: still degraded.
	for at := 11 * time.Second; at < 40*time.Second; at += time.Second {
		if step(at, 280*time.Millisecond) {
			t.Fatalf("recovered at %v with the RTT above 80 %% of the threshold", at)
		}
	}
	step(40*time.Second, 240*time.Millisecond)
	if step(49*time.Second, 240*time.Millisecond) {
		t.Fatal("recovered before RecoverAfter")
	}
	if !step(50*time.Second, 240*time.Millisecond) || st.Degraded {
		t.Fatalf("not recovered after RecoverAfter at 80 %%: %+v", st)
	}
}

// TestQualityJitterAndSamples: jitter has its own threshold; a window
// with too few replies is not judged; no thresholds judge nothing.
func TestQualityJitterAndSamples(t *testing.T) {
	t0 := time.Unix(1000, 0)
	q := Quality{MaxJitter: 50 * time.Millisecond}
	st, _ := q.Judge(QualityState{}, spread(10*time.Millisecond, 80*time.Millisecond), t0)
	st, changed := q.Judge(st, spread(10*time.Millisecond, 80*time.Millisecond), t0.Add(DegradeAfter))
	if !changed || !st.Degraded || !strings.Contains(st.Why, "jitter 80.0 ms above max_jitter_ms=50") {
		t.Fatalf("jitter: %+v %v", st, changed)
	}
	few := Spread{N: 2, Mean: time.Second, Stddev: time.Second}
	st, _ = q.Judge(QualityState{}, few, t0)
	if st, changed = q.Judge(st, few, t0.Add(time.Minute)); changed || st.Degraded {
		t.Fatalf("two replies degraded the link: %+v", st)
	}
	var off Quality
	if st, changed = off.Judge(QualityState{Degraded: true}, spread(time.Second, time.Second), t0); !changed || st.Degraded {
		t.Fatalf("thresholds turned off leave the link degraded: %+v", st)
	}
	if st, changed = off.Judge(QualityState{}, spread(time.Second, time.Second), t0.Add(time.Hour)); changed || st.Degraded {
		t.Fatalf("no thresholds degraded the link: %+v", st)
	}
}

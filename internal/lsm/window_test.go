package lsm

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// probes sends one probe per second into w following pattern, starting at
// t0: 'r' replied after 50 ms, 'l' replied late (after 1.5 s), '.' never
// replied. It returns the time of the last send.
func probes(w *Window, pattern string) time.Time {
	at := t0
	for i, c := range pattern {
		at = t0.Add(time.Duration(i) * time.Second)
		seq := w.Send(at)
		switch c {
		case 'r':
			w.Reply(seq, at.Add(ms(50)))
		case 'l':
			w.Reply(seq, at.Add(ms(1500)))
		}
	}
	return at
}

func TestWindowStats(t *testing.T) {
	tests := []struct {
		name    string
		size    int
		pattern string
		after   time.Duration // decision time after the last send
		want    Stats
	}{
		{
			name: "empty",
			size: 10,
			want: Stats{},
		},
		{
			// The newest probe never counts in the runs.
			name:    "all replied",
			size:    10,
			pattern: "rrrr",
			after:   ms(100),
			want:    Stats{Replied: 4, ConsRcvd: 3, AvgRTT: ms(50), Used: 4},
		},
		{
			// In-flight probes are missing but not timed out.
			name:    "silence in flight",
			size:    10,
			pattern: "rr...",
			after:   ms(100),
			want:    Stats{Replied: 2, Waiting: 3, Timeout: 2, ConsWait: 2, ConsMiss: 2, AvgRTT: ms(50), Used: 5},
		},
		{
			name:    "timeouts are strict",
			size:    10,
			pattern: "r.",
			after:   ms(1000),
			want:    Stats{Replied: 1, Waiting: 1, Timeout: 0, ConsRcvd: 1, AvgRTT: ms(50), Used: 2},
		},
		{
			name:    "timed out after the timeout",
			size:    10,
			pattern: "r.",
			after:   ms(1001),
			want:    Stats{Replied: 1, Waiting: 1, Timeout: 1, ConsRcvd: 1, AvgRTT: ms(50), Used: 2},
		},
		{
			// A late reply is loss, and breaks both runs.
			name:    "late reply",
			size:    10,
			pattern: "..lrr",
			after:   ms(2000),
			want:    Stats{Replied: 3, Waiting: 2, Timeout: 3, ReplyLate: 1, ConsRcvd: 1, AvgRTT: ms(1600) / 3, Used: 5},
		},
		{
			// The window forgets: only the last 4 of 8 probes count.
			name:    "window slides",
			size:    4,
			pattern: "....rrrr",
			after:   ms(100),
			want:    Stats{Replied: 4, ConsRcvd: 4, AvgRTT: ms(50), Used: 4},
		},
		{
			// lsm's walk visits as many slots as the window has, starting
			// at the second newest, so when all match it ends on the
			// newest: a full window of misses counts all of them.
			name:    "full window wraps onto the newest",
			size:    4,
			pattern: "rrrr....",
			after:   ms(500),
			want:    Stats{Waiting: 4, Timeout: 3, ConsWait: 4, ConsMiss: 4, Used: 4},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := NewWindow(tt.size, time.Second)
			last := probes(w, tt.pattern)
			got := w.Stats(last.Add(tt.after))
			// The settled count has its own test below.
			got.ConsRcvdSettled = 0
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("stats mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWindowTimeoutIsPermanent(t *testing.T) {
	w := NewWindow(10, time.Second)
	seq := w.Send(t0)
	w.Stats(t0.Add(ms(1500)))
	if !w.Reply(seq, t0.Add(ms(1600))) {
		t.Fatal("late reply refused")
	}
	got := w.Stats(t0.Add(ms(1700)))
	if got.Timeout != 1 || got.ReplyLate != 1 || got.Replied != 1 {
		t.Errorf("after a late reply: %+v, want timeout, late and replied all 1", got)
	}
}

func TestWindowReply(t *testing.T) {
	w := NewWindow(3, time.Second)
	first := w.Send(t0)
	for i := 1; i <= 3; i++ {
		w.Send(t0.Add(time.Duration(i) * time.Second))
	}
	if w.Reply(first, t0.Add(4*time.Second)) {
		t.Error("reply to a probe that left the window was accepted")
	}
	if w.Reply(99, t0) {
		t.Error("reply to a probe never sent was accepted")
	}
	if !w.Reply(3, t0.Add(3*time.Second+ms(10))) {
		t.Error("reply to the newest probe refused")
	}
	if w.Reply(3, t0.Add(3*time.Second+ms(20))) {
		t.Error("duplicate reply accepted")
	}
}

func TestWindowSequenceWraps(t *testing.T) {
	w := NewWindow(FollowedPkts, time.Second)
	var seq int
	at := t0
	for range SeqLimit + 5 {
		at = at.Add(ms(20))
		seq = w.Send(at)
	}
	if seq != 4 {
		t.Fatalf("sequence after %d sends = %d, want 4", SeqLimit+5, seq)
	}
	// Probes from both sides of the wrap can still be answered.
	if !w.Reply(SeqLimit-2, at) || !w.Reply(2, at) {
		t.Error("replies across the sequence wrap refused")
	}
}

// TestConsRcvdSettled: the replies in a row are counted past the probes
// still in flight, but not past one that timed out or a late reply.
func TestConsRcvdSettled(t *testing.T) {
	tests := []struct {
		pattern string
		after   time.Duration
		want    int
	}{
		{"rrrr", 0, 3},                   // the newest never counts, as in ConsRcvd
		{"rrrr...", 0, 4},                // three in flight passed over
		{"rrrr...", 15 * time.Second, 0}, // they timed out: a miss ends the run
		{"r.rr..", 0, 2},
	}
	for _, tt := range tests {
		// probes sends one a second: a 10 s timeout keeps the unanswered
		// ones in flight.
		w := NewWindow(10, 10*time.Second)
		last := probes(w, tt.pattern)
		if got := w.Stats(last.Add(tt.after)).ConsRcvdSettled; got != tt.want {
			t.Errorf("%q after %v: ConsRcvdSettled %d, want %d", tt.pattern, tt.after, got, tt.want)
		}
	}
}

func TestWindowRTTSpread(t *testing.T) {
	w := NewWindow(4, time.Second)
	if sp := w.RTTSpread(); sp != (Spread{}) {
		t.Fatalf("empty window: %+v", sp)
	}
	// 10, 30 and a lost probe, then a fifth probe pushing the first (a
	// 1 s reply) out of the window: 10, 30, 50 remain.
	for i, rtt := range []time.Duration{time.Second, ms(10), ms(30), -1, ms(50)} {
		sent := t0.Add(time.Duration(i) * time.Second)
		seq := w.Send(sent)
		if rtt >= 0 {
			w.Reply(seq, sent.Add(rtt))
		}
	}
	sp := w.RTTSpread()
	if sp.N != 3 || sp.Mean != ms(30) || sp.Stddev < 16329*time.Microsecond || sp.Stddev > 16330*time.Microsecond || sp.P95 != ms(50) {
		t.Errorf("got %+v, want 3 replies, 30ms ± 16.33ms, p95 50ms", sp)
	}
}

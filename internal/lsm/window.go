package lsm

import (
	"math"
	"slices"
	"time"
)

const (
	// FollowedPkts is lsm's window: the statistics cover the last 100
	// probes. Decision thresholds from lsm configurations are counts out
	// of this many.
	FollowedPkts = 100
	// SeqLimit is where probe sequence numbers wrap (0..65499), as in lsm.
	// It is a multiple of FollowedPkts, so a sequence number keeps its
	// ring slot across the wrap.
	SeqLimit = 65500
)

// slot is one probe in the ring.
type slot struct {
	seq  int
	sent time.Time
	rtt  time.Duration
	// used: the slot holds a probe. waiting: no reply yet. timeout: the
	// probe was unanswered for longer than the timeout (it stays set when
	// a late reply arrives, so late replies count as loss, as in lsm).
	used, waiting, replied, timeout bool
}

// Window is the ring of a link's most recent probes (lsm spec §2.6).
// It is not safe for concurrent use.
type Window struct {
	slots   []slot
	timeout time.Duration
	next    int // sequence number of the next probe
	newest  int // ring index of the newest probe; -1 before the first
	used    int
}

// Stats are the counters lsm computes at each decision (spec §2.6) and
// passes to event scripts. Replied, Waiting, Timeout and ReplyLate count
// over the whole window; the Cons counters walk back from the second
// newest probe, so the probe just sent never counts.
type Stats struct {
	Replied   int
	Waiting   int // unanswered, timed out or not
	Timeout   int // timed out, including late replies: the "packet loss"
	ReplyLate int // replied after timing out
	ConsRcvd  int // consecutive replies in time
	ConsWait  int // consecutive unanswered
	// ConsMiss counts consecutive unanswered or timed-out probes. Probes
	// still in flight count, as in lsm: with the newest excluded, a link
	// whose RTT exceeds interval×max_successive_pkts_lost looks down.
	ConsMiss int
	// ConsRcvdSettled is ConsRcvd counted from the newest probe that has
	// an answer or timed out, passing over those still in flight: on a
	// link whose RTT is several intervals (a satellite), ConsRcvd stays 0
	// however well it answers.
	ConsRcvdSettled int
	AvgRTT          time.Duration // mean over replied probes, late ones included
	Used            int           // slots ever used, at most the window size
}

// NewWindow returns an empty window of size probes in which a probe
// unanswered for longer than timeout is lost; for a connection that is
// NewWindow(s.Window, s.Timeout).
func NewWindow(size int, timeout time.Duration) *Window {
	if size < 1 {
		size = 1
	}
	return &Window{slots: make([]slot, size), timeout: timeout, newest: -1}
}

// Size returns the number of probes the window covers.
func (w *Window) Size() int { return len(w.slots) }

// Send records a probe sent at the given time and returns the sequence
// number to put in it. A probe whose send failed is recorded all the
// same: it will time out, so a missing interface looks like total loss.
func (w *Window) Send(at time.Time) int {
	seq := w.next
	w.next = (w.next + 1) % SeqLimit
	w.newest = (w.newest + 1) % len(w.slots)
	if !w.slots[w.newest].used {
		w.used++
	}
	w.slots[w.newest] = slot{seq: seq, sent: at, used: true, waiting: true}
	return seq
}

// Reply records the reply to probe seq received at the given time. It
// returns false when the probe has left the window or was already
// answered (duplicates are harmless, as in lsm).
//
// A reply slower than the timeout is marked late at once. lsm only
// checked time-outs at its 1-second ticks, so a slow reply that beat the
// next tick counted as on time; here the verdict does not depend on when
// the daemon happens to decide.
func (w *Window) Reply(seq int, at time.Time) bool {
	if w.newest < 0 || seq < 0 || seq >= SeqLimit {
		return false
	}
	age := (w.next - 1 - seq + SeqLimit) % SeqLimit
	if age >= len(w.slots) {
		return false
	}
	s := &w.slots[(w.newest-age+len(w.slots))%len(w.slots)]
	if !s.used || s.seq != seq || s.replied {
		return false
	}
	s.replied, s.waiting = true, false
	s.rtt = max(at.Sub(s.sent), 0)
	if s.rtt > w.timeout {
		s.timeout = true
	}
	return true
}

// Stats marks the probes that have been waiting for longer than the
// timeout at now as lost, for good, and returns the counters.
func (w *Window) Stats(now time.Time) Stats {
	st := Stats{Used: w.used}
	if w.newest < 0 {
		return st
	}
	var rttSum time.Duration
	for i := range w.slots {
		s := &w.slots[i]
		if !s.used {
			continue
		}
		if s.waiting && now.Sub(s.sent) > w.timeout {
			s.timeout = true
		}
		if s.replied {
			st.Replied++
			rttSum += s.rtt
			if s.timeout {
				st.ReplyLate++
			}
		}
		if s.timeout {
			st.Timeout++
		}
		if s.waiting {
			st.Waiting++
		}
	}
	if st.Replied > 0 {
		st.AvgRTT = rttSum / time.Duration(st.Replied)
	}
	st.ConsWait = w.run(func(s *slot) bool { return s.waiting })
	st.ConsMiss = w.run(func(s *slot) bool { return s.waiting || s.timeout })
	st.ConsRcvd = w.run(func(s *slot) bool { return s.replied && !s.timeout })
	st.ConsRcvdSettled = w.runSettled(func(s *slot) bool { return s.replied && !s.timeout })
	return st
}

// runSettled is run after passing over the probes still in flight (sent,
// unanswered, not yet timed out) at the newest end.
func (w *Window) runSettled(ok func(*slot) bool) int {
	n, settled := 0, false
	for k := 1; k <= len(w.slots); k++ {
		s := &w.slots[(w.newest-k%len(w.slots)+len(w.slots))%len(w.slots)]
		if !s.used {
			break
		}
		if !settled && s.waiting && !s.timeout {
			continue
		}
		settled = true
		if !ok(s) {
			break
		}
		n++
	}
	return n
}

// run counts consecutive probes matching ok, walking back from the second
// newest. Like lsm it visits as many slots as the window holds, so the
// last one visited is the newest probe; that only matters when every
// other probe matched.
func (w *Window) run(ok func(*slot) bool) int {
	n := 0
	for k := 1; k <= len(w.slots); k++ {
		s := &w.slots[(w.newest-k%len(w.slots)+len(w.slots))%len(w.slots)]
		if !s.used || !ok(s) {
			break
		}
		n++
	}
	return n
}

// Spread describes the round-trip times of the replied probes in a
// window, late ones included as in Stats.
type Spread struct {
	N      int
	Mean   time.Duration
	Stddev time.Duration // population standard deviation: the jitter
	P95    time.Duration // nearest-rank 95th percentile
}

// RTTSpread returns the spread of the window's round-trip times. lsm's
// own rules do not use it; quality thresholds and the metrics do.
func (w *Window) RTTSpread() Spread {
	var rtts []time.Duration
	var sum float64
	for i := range w.slots {
		if s := &w.slots[i]; s.used && s.replied {
			rtts = append(rtts, s.rtt)
			sum += float64(s.rtt)
		}
	}
	if len(rtts) == 0 {
		return Spread{}
	}
	n := float64(len(rtts))
	mu := sum / n
	var sq float64
	for _, r := range rtts {
		d := float64(r) - mu
		sq += d * d
	}
	slices.Sort(rtts)
	rank := int(math.Ceil(0.95*n)) - 1
	return Spread{N: len(rtts), Mean: time.Duration(mu), Stddev: time.Duration(math.Sqrt(sq / n)), P95: rtts[rank]}
}

package lsm

import (
	"math/rand/v2"
	"sort"
	"testing"
	"time"
)

// sim drives a Window and a Decider the way the daemon will: probes on a
// fixed schedule, replies delivered when they arrive, a decision after
// every send. Loss and RTT come from a seeded PRNG, so every run is
// reproducible.
type sim struct {
	t       *testing.T
	s       Settings
	d       Decider
	w       *Window
	st      LinkState
	rng     *rand.Rand
	now     time.Time
	replies []pendingReply
	events  []Event
	// maxConsMiss and maxTimeout are the worst statistics seen while up.
	maxConsMiss, maxTimeout int
	// rttBase and rttSpread set the replies' round trip: rttBase plus up
	// to rttSpread (15–90 ms, a path to a public resolver, by default).
	rttBase, rttSpread time.Duration
}

type pendingReply struct {
	seq int
	at  time.Time
}

// simEpoch is an arbitrary wall-clock origin for the simulations.
var simEpoch = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func newSim(t *testing.T, s Settings, seed uint64) *sim {
	return &sim{
		t:   t,
		s:   s,
		d:   NewDecider(s),
		w:   NewWindow(s.Window, s.Timeout),
		st:  InitialState(s),
		rng: rand.New(rand.NewPCG(seed, 0x15bba1a0ce)),
		now: simEpoch,
		// A typical path to a public resolver.
		rttBase: 15 * time.Millisecond, rttSpread: 75 * time.Millisecond,
	}
}

// run probes for dur; each probe is lost with probability loss. It
// returns the events of that period.
func (m *sim) run(dur time.Duration, loss float64) []Event {
	var evs []Event
	for end := m.now.Add(dur); m.now.Before(end); m.now = m.now.Add(m.s.Interval) {
		sort.Slice(m.replies, func(i, j int) bool { return m.replies[i].at.Before(m.replies[j].at) })
		for len(m.replies) > 0 && !m.replies[0].at.After(m.now) {
			m.w.Reply(m.replies[0].seq, m.replies[0].at)
			m.replies = m.replies[1:]
		}
		seq := m.w.Send(m.now)
		if m.rng.Float64() >= loss {
			rtt := m.rttBase + time.Duration(m.rng.Int64N(int64(m.rttSpread)))
			m.replies = append(m.replies, pendingReply{seq, m.now.Add(rtt)})
		}
		next, ev, changed := m.d.Decide(m.st, m.w, m.now)
		if m.st.State == Up {
			st := ev.Stats
			if !changed {
				st = m.w.Stats(m.now)
			}
			m.maxConsMiss = max(m.maxConsMiss, st.ConsMiss)
			m.maxTimeout = max(m.maxTimeout, st.Timeout)
		}
		m.st = next
		if changed {
			evs = append(evs, ev)
			m.events = append(m.events, ev)
		}
	}
	return evs
}

// shift moves the probe schedule by a fraction of an interval, so that a
// failure does not always start at the same point between two probes.
func (m *sim) shift() {
	m.now = m.now.Add(time.Duration(m.rng.Int64N(int64(m.s.Interval))))
}

// warmUp brings the link up on a clean path.
func (m *sim) warmUp() {
	m.t.Helper()
	m.run(15*time.Second, 0)
	if m.st.State != Up {
		m.t.Fatalf("link not up after 15 s of clean probes: %v", m.st.State)
	}
	m.maxConsMiss, m.maxTimeout = 0, 0
}

// firstEvent returns how long after start the first event with state
// happened, or false.
func firstEvent(evs []Event, state State, start time.Time) (time.Duration, bool) {
	for _, ev := range evs {
		if ev.State == state {
			return ev.Time.Sub(start), true
		}
	}
	return 0, false
}

const simSeeds = 200

func TestSimRandomLossTenPercentStaysUp(t *testing.T) {
	worstMiss, worstTimeout := 0, 0
	for seed := range uint64(simSeeds) {
		m := newSim(t, Defaults(), seed)
		m.warmUp()
		if evs := m.run(60*time.Second, 0.10); len(evs) > 0 {
			t.Errorf("seed %d: 10%% loss for 60 s gave %v (prev %v) after %v", seed, evs[0].State, evs[0].Prev, evs[0].Time.Sub(simEpoch))
		}
		worstMiss = max(worstMiss, m.maxConsMiss)
		worstTimeout = max(worstTimeout, m.maxTimeout)
	}
	s := Defaults()
	t.Logf("10%% loss, %d seeds × 60 s: worst cons miss %d (down at %d), worst timeouts in window %d (down at %d)",
		simSeeds, worstMiss, s.MaxSuccessivePktsLost, worstTimeout, s.MaxPacketLoss)
}

func TestSimRandomLossSeventyPercentGoesDown(t *testing.T) {
	// Loss this heavy is a matter of statistics, not of a deadline: the
	// bound is generous, the logged worst case is the figure to watch.
	const bound = 20 * time.Second
	var worst time.Duration
	for seed := range uint64(simSeeds) {
		m := newSim(t, Defaults(), seed)
		m.warmUp()
		m.shift()
		start := m.now
		d, ok := firstEvent(m.run(60*time.Second, 0.70), Down, start)
		if !ok || d > bound {
			t.Errorf("seed %d: 70%% loss: down after %v (found %v), want within %v", seed, d, ok, bound)
		}
		worst = max(worst, d)
	}
	t.Logf("70%% loss: worst time to down over %d seeds: %v", simSeeds, worst)
}

func TestSimSilentFailureDownWithin2s(t *testing.T) {
	const bound = 2 * time.Second
	var worst time.Duration
	for seed := range uint64(simSeeds) {
		m := newSim(t, Defaults(), seed)
		m.warmUp()
		// The path dies at a random moment between two probes, possibly
		// with replies still on their way back: those are lost too.
		m.shift()
		start := m.now.Add(-time.Duration(m.rng.Int64N(int64(m.s.Interval))))
		var kept []pendingReply
		for _, r := range m.replies {
			if r.at.Before(start) {
				kept = append(kept, r)
			}
		}
		m.replies = kept
		d, ok := firstEvent(m.run(10*time.Second, 1), Down, start)
		if !ok || d > bound {
			t.Errorf("seed %d: total loss: down after %v (found %v), want within %v", seed, d, ok, bound)
		}
		worst = max(worst, d)
	}
	t.Logf("silent failure: worst time to down over %d seeds: %v", simSeeds, worst)
}

func TestSimRecoveryAfterOutageWithin5s(t *testing.T) {
	const bound = 5 * time.Second
	var worst time.Duration
	for seed := range uint64(simSeeds) {
		m := newSim(t, Defaults(), seed)
		m.warmUp()
		m.shift()
		if _, ok := firstEvent(m.run(25*time.Second, 1), Down, m.now); !ok {
			t.Fatalf("seed %d: no down during the outage", seed)
		}
		start := m.now
		d, ok := firstEvent(m.run(30*time.Second, 0), Up, start)
		if !ok || d > bound {
			t.Errorf("seed %d: repaired link up after %v (found %v), want within %v", seed, d, ok, bound)
		}
		worst = max(worst, d)
	}
	t.Logf("recovery after a 25 s outage: worst time to up over %d seeds: %v", simSeeds, worst)
}

// TestSimSatelliteStaysUp: a geostationary satellite link, 600 ms of
// round trip with up to 100 ms of jitter, plus 2 % loss, stays up for
// 10 minutes.
func TestSimSatelliteStaysUp(t *testing.T) {
	worst := 0
	for seed := range uint64(simSeeds / 4) {
		m := newSim(t, Defaults(), seed)
		m.rttBase, m.rttSpread = 600*time.Millisecond, 100*time.Millisecond
		m.run(15*time.Second, 0)
		if m.st.State != Up {
			t.Fatalf("seed %d: a 600 ms link is not up after 15 s: %v", seed, m.st.State)
		}
		m.maxConsMiss = 0
		if evs := m.run(10*time.Minute, 0.02); len(evs) > 0 {
			t.Errorf("seed %d: a 600 ms link went %v after %v", seed, evs[0].State, evs[0].Time.Sub(simEpoch))
		}
		worst = max(worst, m.maxConsMiss)
	}
	t.Logf("600 ms RTT, 2%% loss, %d seeds × 10 min: worst probes missing in a row %d (down at %d)", simSeeds/4, worst, Defaults().MaxSuccessivePktsLost)
}

// TestSimNIBRecoveryIsSlow checks the compatible rules against lsm's known
// behaviour (spec §7.9): with Net-ISP-Balance's defaults a link is trusted
// again only once the outage's probes have left the 100-probe window, about
// 100 − min_packet_loss good probes, 90 s at one per second.
func TestSimNIBRecoveryIsSlow(t *testing.T) {
	m := newSim(t, NIBDefaults(), 1)
	m.warmUp()
	m.run(25*time.Second, 1)
	if m.st.State != Down {
		t.Fatalf("state after a 25 s outage = %v, want down", m.st.State)
	}
	start := m.now
	d, ok := firstEvent(m.run(120*time.Second, 0), Up, start)
	if !ok || d < 60*time.Second || d > 95*time.Second {
		t.Errorf("NIB defaults: up %v after repair (found %v), want 60–95 s", d, ok)
	}
}

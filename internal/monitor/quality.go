package monitor

import (
	"fmt"
	"time"

	"github.com/ispbalance/ispbalance/internal/lsm"
	"github.com/ispbalance/ispbalance/internal/state"
)

// quality is how good a link is over its probe window.
type quality struct {
	loss float64 // lost or late share of the window's probes
	lsm.Spread
}

func (l *link) quality(now time.Time) quality {
	st := l.window.Stats(now)
	q := quality{Spread: l.window.RTTSpread()}
	if st.Used > 0 {
		q.loss = float64(st.Timeout) / float64(st.Used)
	}
	return q
}

// judgeQuality applies the link's quality thresholds to a link lsm's
// rules judge up. Entering or leaving degraded is a state change of its
// own: logged, kept in the history, counted, given to the scripts of
// degraded.d/ (entering) or up.d/ (leaving, with PREVSTATE degraded),
// and a rebuild takes the link out of balancing or back in. The state
// file keeps saying up, as lsm's scripts and the original expect of a
// link that answers.
func (m *Monitor) judgeQuality(name string, l *link, now time.Time, changed *[]string) {
	next, flipped := l.settings.Quality.Judge(l.grade, l.window.RTTSpread(), now)
	l.grade = next
	if !flipped {
		return
	}
	l.since = now
	ev := lsm.Event{Name: l.settings.Name, State: lsm.Degraded, Prev: lsm.Up, Device: l.target.Device,
		Email: l.settings.WarnEmail, Stats: l.window.Stats(now), Time: now}
	if !next.Degraded {
		ev.State, ev.Prev = lsm.Up, lsm.Degraded
	}
	if l.target.Src.IsValid() {
		ev.SrcIP = l.target.Src.String()
	}
	if len(l.dsts) > 0 {
		ev.CheckIP = l.dsts[0].String()
	}
	q := l.quality(now)
	record := eventRecord(l, ev, now)
	m.log.Warn("isp "+ev.State.String(), "isp", name, "family", l.target.family(), "previous", ev.Prev.String(),
		"reason", record.Reason, "avg_rtt", q.Mean, "jitter", q.Stddev, "max_rtt", l.settings.Quality.MaxRTT,
		"max_jitter", l.settings.Quality.MaxJitter)
	l.metrics.changed(ev.State.String())
	if m.opts.StateDir != "" {
		if err := recordEvent(m.opts.StateDir, record); err != nil {
			m.log.Error("recording the event history", "isp", name, "err", err)
		}
	}
	m.writeDegraded()
	m.runEventScripts(ev, l.target.family())
	*changed = append(*changed, name+" "+ev.State.String())
}

// qualityReason says in words why a link entered or left degraded.
func qualityReason(l *link, ev lsm.Event) string {
	if ev.State == lsm.Degraded {
		return fmt.Sprintf("%s for %s", l.grade.Why, l.settings.Quality.EnterAfter())
	}
	if !l.settings.Quality.On() {
		return "quality thresholds removed from the configuration"
	}
	return fmt.Sprintf("within %.0f %% of its quality thresholds for %s", 100*lsm.RecoverShare, l.settings.Quality.LeaveAfter())
}

// degradedNames are the links beyond their quality thresholds now.
func (m *Monitor) degradedNames() []string {
	var out []string
	for _, name := range m.serviceNames() {
		if m.links[name].grade.Degraded {
			out = append(out, name)
		}
	}
	return out
}

// writeDegraded tells the rebuilds which links are degraded.
func (m *Monitor) writeDegraded() {
	if m.opts.DegradedPath == "" {
		return
	}
	if err := state.WriteDegraded(m.opts.DegradedPath, m.degradedNames()); err != nil {
		m.log.Error("recording degraded isps", "err", err)
	}
}

// clearDegraded removes the list when the monitor stops: nobody judges
// the links' quality any more.
func (m *Monitor) clearDegraded() {
	if m.opts.DegradedPath == "" {
		return
	}
	if err := state.WriteDegraded(m.opts.DegradedPath, nil); err != nil {
		m.log.Error("clearing degraded isps", "err", err)
	}
}

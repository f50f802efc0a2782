package monitor

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ispbalance/ispbalance/internal/lsm"
	"github.com/ispbalance/ispbalance/internal/render"
)

// maxEvents is how many state changes the history keeps: months of an
// ordinary router's changes, at most a few hundred kilobytes.
const maxEvents = 500

// EventsPath is the event history's file in the state directory, kept
// across monitor restarts: one JSON object per line, oldest first.
func EventsPath(stateDir string) string {
	return filepath.Join(stateDir, "ispbalance", "events.jsonl")
}

// ReadEvents returns the recorded state changes, oldest first; none when
// nothing was recorded yet. A line that does not parse (a file cut short
// by a crash) is skipped.
func ReadEvents(stateDir string) ([]render.MonitorEvent, error) {
	data, err := os.ReadFile(EventsPath(stateDir))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the event history: %w", err)
	}
	var out []render.MonitorEvent
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e render.MonitorEvent
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			out = append(out, e)
		}
	}
	return out, nil
}

// recordEvent appends e to the history, keeping the newest maxEvents, and
// replaces the file whole so a reader never sees half of it.
func recordEvent(stateDir string, e render.MonitorEvent) error {
	events, err := ReadEvents(stateDir)
	if err != nil {
		return err
	}
	events = append(events, e)
	if len(events) > maxEvents {
		events = events[len(events)-maxEvents:]
	}
	var b bytes.Buffer
	for _, ev := range events {
		line, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("recording an event: %w", err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	path := EventsPath(stateDir)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("recording an event: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("recording an event: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("recording an event: %w", err)
	}
	return nil
}

// eventRecord is a state change as the history keeps it.
func eventRecord(l *link, ev lsm.Event, now time.Time) render.MonitorEvent {
	q := l.quality(now)
	e := render.MonitorEvent{Time: now, ISP: l.target.base(), Family: l.target.family(), From: ev.Prev.String(), To: ev.State.String(),
		Reason: eventReason(l, ev), LossPercent: 100 * q.loss, AvgRTTms: ms(q.Mean), P95RTTms: ms(q.P95), JitterMs: ms(q.Stddev)}
	if l.target.Gateway.IsValid() {
		e.Gateway = l.target.Gateway.String()
	}
	return e
}

// eventReason says in words what lsm's rules saw.
func eventReason(l *link, ev lsm.Event) string {
	st, window := ev.Stats, l.window.Size()
	if ev.State == lsm.Degraded || ev.State == lsm.Up && ev.Prev == lsm.Degraded {
		return qualityReason(l, ev)
	}
	switch ev.State {
	case lsm.Up:
		r := fmt.Sprintf("%d replies in a row, %d of %d probes lost", max(st.ConsRcvd, st.ConsRcvdSettled), st.Timeout, window)
		if l.state.Hold > 0 {
			r += fmt.Sprintf("; held %s by flap damping first", l.state.Hold.Round(time.Second))
		}
		return r
	case lsm.Down:
		r := fmt.Sprintf("%d of %d probes lost, %d in a row", st.Timeout, window, st.ConsMiss)
		if l.target.AdminDown {
			r = "device set down by the admin (no failure for flap damping)"
		} else if !l.target.Present {
			r = "device or address gone"
		} else if !l.target.Carrier {
			r = "no carrier"
		}
		if l.state.Hold > 0 {
			r += fmt.Sprintf("; held down %s by flap damping", l.state.Hold.Round(time.Second))
		}
		return r
	case lsm.LongDown:
		return fmt.Sprintf("down since %s", ev.Time.Local().Format("15:04:05"))
	}
	return ""
}

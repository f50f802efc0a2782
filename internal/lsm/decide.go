package lsm

import "time"

// LinkState is what the state machine remembers about one link between
// decisions. Keep it across a configuration reload: lsm lost the down
// time on SIGHUP and then reported long_down at once with a time of 0.
type LinkState struct {
	State State
	// DownAt is when the link went down; it dates long_down.
	DownAt time.Time
	// GoodSince is when the up rule last started to hold; zero while it
	// does not.
	GoodSince time.Time
	// Hold is how long the up rule must hold before the link goes up,
	// set by damping when the link went down.
	Hold  time.Duration
	Flaps Flaps
}

// InitialState is the state of a link before any decision: the status
// option (unknown unless configured otherwise).
func InitialState(s Settings) LinkState { return LinkState{State: s.Status} }

// Script is one script to run for an event.
type Script struct {
	Path  string
	Queue string // run in this FIFO instead of at once; empty: at once
	Email string // $5
}

// Event is one transition of a link or group, with what lsm passes to its
// scripts.
type Event struct {
	Group   bool
	Name    string
	State   State // $1
	Prev    State // $15
	CheckIP string
	Device  string
	Email   string // warn_email, or long_down_email for long_down
	Stats   Stats
	// SrcIP is the probes' source address ($14). The Decider does not know
	// it; the daemon fills it in from its prober before running scripts.
	SrcIP string
	// Time is $16: the decision time, except for long_down, where it is
	// when the link went down.
	Time time.Time
	// Scripts to run, in order. lsm starts them all without waiting.
	Scripts []Script
}

// Decider applies lsm's state machine (spec §3) to one link.
type Decider struct {
	s Settings
}

// NewDecider returns the decider of a link with settings s.
func NewDecider(s Settings) Decider { return Decider{s: s} }

// Decide updates the window's statistics at now and returns the link's
// next state and, when the state changed, the event. Call it after each
// probe is sent, as lsm decides after a round of sends; calling it more
// often only makes time-outs count sooner.
//
// Rules, in lsm's order: from up or unknown, down when the timed-out
// probes reach max_packet_loss or the consecutive missing ones reach
// max_successive_pkts_lost; from down, long_down once down for longer than
// long_down_time; from down, long_down or unknown, up when the timed-out
// probes are at most min_packet_loss and the consecutive replies reach
// min_successive_pkts_rcvd (or the startup_acceleration rule holds) — and
// have kept doing so for the damping hold.
//
// Differences from lsm: at most one transition per call (a second one that
// lsm would have made in the same tick happens at the next call, one
// interval later); notifyscript on unknown→up runs only with
// unknown_up_notify (spec §3.5 defect fixed); a link that starts down
// dates its long_down from the first decision, not from 1970.
func (d Decider) Decide(cur LinkState, w *Window, now time.Time) (LinkState, Event, bool) {
	return d.decide(cur, w.Stats(now), now)
}

func (d Decider) decide(cur LinkState, st Stats, now time.Time) (LinkState, Event, bool) {
	s := d.s
	next := cur
	if next.State.isDown() && next.DownAt.IsZero() {
		next.DownAt = now
	}

	switch cur.State {
	case Up, Unknown:
		if st.Timeout >= s.MaxPacketLoss || st.ConsMiss >= s.MaxSuccessivePktsLost {
			next.State, next.DownAt, next.GoodSince = Down, now, time.Time{}
			next.Flaps = s.Damping.Fail(cur.Flaps, now)
			next.Hold = s.Damping.Hold(next.Flaps)
			ev := d.event(Down, cur.State, st, now)
			ev.Scripts = d.scripts(s.EventScript, s.NotifyScript, s.WarnEmail)
			return next, ev, true
		}
	case Down:
		if s.LongDownTime > 0 && now.Sub(next.DownAt) > s.LongDownTime {
			next.State = LongDown
			ev := d.event(LongDown, Down, st, next.DownAt)
			ev.Email = s.LongDownEmail
			ev.Scripts = d.scripts(s.LongDownEventScript, s.LongDownNotifyScript, s.LongDownEmail)
			return next, ev, true
		}
	}

	if cur.State == Up {
		return next, Event{}, false
	}
	if !d.upRule(st) {
		next.GoodSince = time.Time{}
		return next, Event{}, false
	}
	if next.GoodSince.IsZero() {
		next.GoodSince = now
	}
	if now.Sub(next.GoodSince) < next.Hold {
		return next, Event{}, false
	}
	next, ev := d.up(cur, next, st, now)
	return next, ev, true
}

// Trust brings a link that is not up up at once, hold or no hold, with
// the event and scripts of an ordinary up transition: for new evidence
// that the link works which the window of past probes does not show,
// such as a reply from a gateway the link has just been given (a DHCP
// renewal moving it), when the window still remembers the losses of the
// dead old one. lsm has no such rule.
func (d Decider) Trust(cur LinkState, w *Window, now time.Time) (LinkState, Event, bool) {
	if cur.State == Up {
		return cur, Event{}, false
	}
	next, ev := d.up(cur, cur, w.Stats(now), now)
	return next, ev, true
}

// up is the transition of cur (already updated into next) to up.
func (d Decider) up(cur, next LinkState, st Stats, now time.Time) (LinkState, Event) {
	s := d.s
	next.State, next.GoodSince, next.Hold = Up, time.Time{}, 0
	next.Flaps.UpAt = now
	ev := d.event(Up, cur.State, st, now)
	if cur.State == LongDown {
		ev.Scripts = d.scripts(s.LongDownEventScript, s.LongDownNotifyScript, s.LongDownEmail)
	}
	notify := s.NotifyScript
	if cur.State == Unknown && !s.UnknownUpNotify {
		notify = ""
	}
	ev.Scripts = append(ev.Scripts, d.scripts(s.EventScript, notify, s.WarnEmail)...)
	return next, ev
}

func (d Decider) upRule(st Stats) bool {
	s := d.s
	rcvd := st.ConsRcvd
	if s.PassInFlight {
		rcvd = st.ConsRcvdSettled
	}
	return s.StartupAcceleration > 0 && rcvd >= s.StartupAcceleration && rcvd+1 >= st.Used ||
		st.Timeout <= s.MinPacketLoss && rcvd >= s.MinSuccessivePktsRcvd
}

func (d Decider) event(state, prev State, st Stats, at time.Time) Event {
	return Event{
		Name:    d.s.Name,
		State:   state,
		Prev:    prev,
		CheckIP: d.s.CheckIP,
		Device:  d.s.Device,
		Email:   d.s.WarnEmail,
		Stats:   st,
		Time:    at,
	}
}

// scripts lists an event script (queued if the link has a queue) and a
// notify script (never queued), leaving out unset ones.
func (d Decider) scripts(event, notify, email string) []Script {
	var out []Script
	if event != "" {
		out = append(out, Script{Path: event, Queue: d.s.Queue, Email: email})
	}
	if notify != "" {
		out = append(out, Script{Path: notify, Email: email})
	}
	return out
}

// DecideGroup computes group g's state from its members' states, given in
// the order of g.Members, and returns the event when it changed (spec
// §3.6). Any unknown member makes the group unknown, which runs no
// script. With OR logic the group is up when any member is up, with AND
// when all are; a group without members is down (OR) or up (AND).
func DecideGroup(g Group, prev State, members []State, now time.Time) (State, Event, bool) {
	state := groupState(g.Logic, members)
	if state == prev {
		return state, Event{}, false
	}
	ev := Event{Group: true, Name: g.Name, State: state, Prev: prev, Device: g.Device, Email: g.WarnEmail, Time: now}
	if state == Unknown {
		return state, ev, true
	}
	if g.EventScript != "" {
		ev.Scripts = append(ev.Scripts, Script{Path: g.EventScript, Queue: g.Queue, Email: g.WarnEmail})
	}
	if g.NotifyScript != "" && (state == Down || prev != Unknown || g.UnknownUpNotify) {
		ev.Scripts = append(ev.Scripts, Script{Path: g.NotifyScript, Email: g.WarnEmail})
	}
	return state, ev, true
}

func groupState(logic Logic, members []State) State {
	up := logic == And
	for _, m := range members {
		switch {
		case m == Unknown:
			return Unknown
		case logic == And:
			up = up && m == Up
		default:
			up = up || m == Up
		}
	}
	if up {
		return Up
	}
	return Down
}

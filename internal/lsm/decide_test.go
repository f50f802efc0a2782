package lsm

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// testSettings are lsm's defaults with every script set, so that tests
// see which scripts a transition runs.
func testSettings() Settings {
	s := FoolsmDefaults()
	s.Name = "CABLE"
	s.CheckIP = "192.0.2.1"
	s.Device = "eth0"
	s.EventScript = "/ev"
	s.NotifyScript = "/notify"
	s.LongDownEventScript = "/ld-ev"
	s.LongDownNotifyScript = "/ld-notify"
	s.WarnEmail = "root"
	s.LongDownEmail = "noc"
	s.Queue = "q"
	s.LongDownTime = 120 * time.Second
	return s
}

func TestDecide(t *testing.T) {
	now := t0.Add(time.Hour)
	wentDown := now.Add(-60 * time.Second)
	down := func(s State) LinkState { return LinkState{State: s, DownAt: wentDown} }
	ok := Stats{Replied: 50, ConsRcvd: 49, Used: 50}
	var (
		evQ    = Script{Path: "/ev", Queue: "q", Email: "root"}
		notify = Script{Path: "/notify", Email: "root"}
		ldEvQ  = Script{Path: "/ld-ev", Queue: "q", Email: "noc"}
		ldNote = Script{Path: "/ld-notify", Email: "noc"}
	)
	tests := []struct {
		name    string
		edit    func(*Settings)
		cur     LinkState
		st      Stats
		want    State
		scripts []Script // nil: no event
		evTime  time.Time
	}{
		{name: "up stays up", cur: LinkState{State: Up}, st: ok, want: Up},
		{name: "up, loss at max_packet_loss", cur: LinkState{State: Up}, st: Stats{Timeout: 15, Used: 100}, want: Down, scripts: []Script{evQ, notify}, evTime: now},
		{name: "up, loss just under", cur: LinkState{State: Up}, st: Stats{Timeout: 14, ConsMiss: 6, Used: 100}, want: Up},
		{name: "up, run at max_successive_pkts_lost", cur: LinkState{State: Up}, st: Stats{ConsMiss: 7, Used: 100}, want: Down, scripts: []Script{evQ, notify}, evTime: now},
		{name: "unknown goes down with both scripts", cur: LinkState{State: Unknown}, st: Stats{ConsMiss: 7}, want: Down, scripts: []Script{evQ, notify}, evTime: now},
		{name: "down is not re-entered", cur: down(Down), st: Stats{ConsMiss: 50, Timeout: 50}, want: Down},
		{name: "down goes up", cur: down(Down), st: Stats{Timeout: 5, ConsRcvd: 10}, want: Up, scripts: []Script{evQ, notify}, evTime: now},
		{name: "down, too much loss to go up", cur: down(Down), st: Stats{Timeout: 6, ConsRcvd: 40}, want: Down},
		{name: "down, too few replies in a row", cur: down(Down), st: Stats{Timeout: 0, ConsRcvd: 9}, want: Down},
		{
			// lsm always ran the notify script here (spec §3.5).
			name: "unknown goes up without notify", cur: LinkState{State: Unknown}, st: ok, want: Up,
			scripts: []Script{evQ}, evTime: now,
		},
		{
			name: "unknown goes up with unknown_up_notify", edit: func(s *Settings) { s.UnknownUpNotify = true },
			cur: LinkState{State: Unknown}, st: ok, want: Up, scripts: []Script{evQ, notify}, evTime: now,
		},
		{
			name: "startup acceleration", edit: func(s *Settings) { s.StartupAcceleration = 3 },
			cur: LinkState{State: Unknown}, st: Stats{Replied: 3, ConsRcvd: 3, Used: 4}, want: Up, scripts: []Script{evQ}, evTime: now,
		},
		{
			name: "startup acceleration needs every probe but the newest", edit: func(s *Settings) { s.StartupAcceleration = 3 },
			cur: LinkState{State: Unknown}, st: Stats{Replied: 3, ConsRcvd: 3, Used: 5}, want: Unknown,
		},
		{
			// $16 is when the link went down, and the long-down scripts get
			// long_down_email.
			name: "long down", cur: LinkState{State: Down, DownAt: now.Add(-121 * time.Second)}, st: Stats{ConsMiss: 100},
			want: LongDown, scripts: []Script{ldEvQ, ldNote}, evTime: now.Add(-121 * time.Second),
		},
		{name: "long down is strict", cur: LinkState{State: Down, DownAt: now.Add(-120 * time.Second)}, st: Stats{ConsMiss: 100}, want: Down},
		{name: "long down disabled", edit: func(s *Settings) { s.LongDownTime = 0 }, cur: LinkState{State: Down, DownAt: t0}, st: Stats{ConsMiss: 100}, want: Down},
		{name: "long down is not re-entered", cur: LinkState{State: LongDown, DownAt: t0}, st: Stats{ConsMiss: 100}, want: LongDown},
		{
			name: "long down goes up: long-down scripts first", cur: down(LongDown), st: ok, want: Up,
			scripts: []Script{ldEvQ, ldNote, evQ, notify}, evTime: now,
		},
		{
			name: "unset scripts are left out", edit: func(s *Settings) { s.EventScript, s.Queue = "", "" },
			cur: LinkState{State: Up}, st: Stats{ConsMiss: 7}, want: Down, scripts: []Script{notify}, evTime: now,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testSettings()
			if tt.edit != nil {
				tt.edit(&s)
			}
			next, ev, changed := NewDecider(s).decide(tt.cur, tt.st, now)
			if next.State != tt.want {
				t.Errorf("state = %v, want %v", next.State, tt.want)
			}
			if changed != (tt.scripts != nil) {
				t.Fatalf("changed = %v, want %v", changed, tt.scripts != nil)
			}
			if !changed {
				return
			}
			if ev.State != tt.want || ev.Prev != tt.cur.State || !ev.Time.Equal(tt.evTime) || ev.Stats != tt.st {
				t.Errorf("event %v→%v at %v with %+v, want %v→%v at %v with %+v", ev.Prev, ev.State, ev.Time, ev.Stats, tt.cur.State, tt.want, tt.evTime, tt.st)
			}
			if diff := cmp.Diff(tt.scripts, ev.Scripts); diff != "" {
				t.Errorf("scripts (-want +got):\n%s", diff)
			}
		})
	}
}

// A link that starts down (status=0) or whose state was carried over
// dates long_down from the first decision; lsm used time 0 and went
// long_down at once.
func TestDecideStartDownDatesLongDown(t *testing.T) {
	s := testSettings()
	s.Status = Down
	d := NewDecider(s)
	cur := InitialState(s)
	miss := Stats{ConsMiss: 10}
	cur, _, changed := d.decide(cur, miss, t0)
	if changed || !cur.DownAt.Equal(t0) {
		t.Fatalf("first decision: changed %v, down at %v; want no event, down at %v", changed, cur.DownAt, t0)
	}
	cur, _, changed = d.decide(cur, miss, t0.Add(120*time.Second))
	if changed {
		t.Fatal("long_down after exactly long_down_time")
	}
	_, ev, changed := d.decide(cur, miss, t0.Add(121*time.Second))
	if !changed || ev.State != LongDown || !ev.Time.Equal(t0) {
		t.Errorf("got %v at %v (changed %v), want long_down dated %v", ev.State, ev.Time, changed, t0)
	}
}

// The window is measured at the time Decide is given, not when probes
// were recorded.
func TestDecideUsesWindowAtNow(t *testing.T) {
	s := FoolsmDefaults()
	w := NewWindow(s.Window, s.Timeout)
	for i := range 8 {
		w.Send(t0.Add(time.Duration(i) * time.Second))
	}
	d := NewDecider(s)
	// 7 probes before the newest are unanswered: lsm counts in-flight
	// probes as missing, so this is down at once.
	next, ev, changed := d.Decide(LinkState{State: Up}, w, t0.Add(7*time.Second))
	if !changed || next.State != Down || ev.Stats.ConsMiss != 7 || ev.Stats.Timeout != 6 {
		t.Errorf("got %v with %+v, want down with 7 missing, 6 timed out", next.State, ev.Stats)
	}
}

func TestDecideDampingHoldsFlappingLink(t *testing.T) {
	s := testSettings()
	s.Damping = DefaultDamping()
	d := NewDecider(s)
	bad, good := Stats{ConsMiss: 7}, Stats{ConsRcvd: 10}
	cur := LinkState{State: Unknown}
	now := t0
	var holds []time.Duration
	for range 9 {
		var changed bool
		cur, _, changed = d.decide(cur, bad, now)
		if !changed || cur.State != Down {
			t.Fatalf("at %v: no down", now)
		}
		holds = append(holds, cur.Hold)
		// The up rule holds from the next second on; the link must wait
		// out the hold.
		start := now.Add(time.Second)
		for now = start; ; now = now.Add(time.Second) {
			// long_down may come and go on the way.
			if cur, _, _ = d.decide(cur, good, now); cur.State == Up {
				break
			}
		}
		if waited := now.Sub(start); waited != holds[len(holds)-1] {
			t.Errorf("failure %d: up after %v, hold %v", len(holds), waited, holds[len(holds)-1])
		}
		// Up for 5 minutes, less than Calm: the streak goes on.
		now = now.Add(5 * time.Minute)
	}
	// The first down comes before the link was ever up: no flap, so the
	// streak starts with the second.
	want := []time.Duration{0, 0, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 320 * time.Second, 600 * time.Second}
	if diff := cmp.Diff(want, holds); diff != "" {
		t.Errorf("holds of successive failures (-want +got):\n%s", diff)
	}

	// After Calm of uptime the next failure is a first one again.
	now = now.Add(10 * time.Minute)
	if cur, _, _ = d.decide(cur, bad, now); cur.State != Down || cur.Hold != 0 {
		t.Errorf("failure after a calm period: state %v, hold %v; want down, no hold", cur.State, cur.Hold)
	}
}

func TestDecideDampingRestartsHoldWhenRuleBreaks(t *testing.T) {
	s := testSettings()
	s.Damping = DefaultDamping()
	d := NewDecider(s)
	cur := LinkState{State: Down, DownAt: t0, Hold: 10 * time.Second}
	good, bad := Stats{ConsRcvd: 10}, Stats{ConsRcvd: 2}
	cur, _, _ = d.decide(cur, good, t0.Add(1*time.Second))
	cur, _, _ = d.decide(cur, bad, t0.Add(8*time.Second))
	cur, _, changed := d.decide(cur, good, t0.Add(12*time.Second))
	if changed {
		t.Fatal("up 11 s after the rule first held, though it broke in between")
	}
	if _, _, changed = d.decide(cur, good, t0.Add(22*time.Second)); !changed {
		t.Error("not up 10 s after the rule held again")
	}
}

func TestDampingHold(t *testing.T) {
	d := DefaultDamping()
	for _, tt := range []struct {
		streak int
		want   time.Duration
	}{
		{0, 0}, {1, 0}, {2, 10 * time.Second}, {3, 20 * time.Second}, {7, 320 * time.Second}, {8, 600 * time.Second}, {50, 600 * time.Second},
	} {
		if got := d.Hold(Flaps{Streak: tt.streak}); got != tt.want {
			t.Errorf("Hold(streak %d) = %v, want %v", tt.streak, got, tt.want)
		}
	}
	if got := (Damping{}).Hold(Flaps{Streak: 5}); got != 0 {
		t.Errorf("zero Damping holds for %v", got)
	}
	if got := (Damping{}).Fail(Flaps{UpAt: t0}, t0.Add(time.Second)); got.Streak != 0 {
		t.Errorf("zero Damping counted a failure: %+v", got)
	}
}

func TestDecideGroup(t *testing.T) {
	base := Group{Name: "GRP", EventScript: "/gev", NotifyScript: "/gnotify", WarnEmail: "root", Queue: "gq", Device: "bond0"}
	ev := Script{Path: "/gev", Queue: "gq", Email: "root"}
	note := Script{Path: "/gnotify", Email: "root"}
	tests := []struct {
		name    string
		logic   Logic
		unn     bool
		prev    State
		members []State
		want    State
		scripts []Script // nil: no scripts
		changed bool
	}{
		{"or, one up", Or, false, Down, []State{Down, Up}, Up, []Script{ev, note}, true},
		{"or, all down", Or, false, Up, []State{Down, LongDown}, Down, []Script{ev, note}, true},
		{"and, one down", And, false, Up, []State{Up, LongDown}, Down, []Script{ev, note}, true},
		{"and, all up", And, false, Down, []State{Up, Up}, Up, []Script{ev, note}, true},
		{"unknown member", Or, false, Up, []State{Up, Unknown}, Unknown, nil, true},
		{"no change", Or, false, Up, []State{Up}, Up, nil, false},
		{"or, no members", Or, false, Unknown, nil, Down, []Script{ev, note}, true},
		{"and, no members", And, false, Unknown, nil, Up, []Script{ev}, true},
		{"unknown to up, no notify", Or, false, Unknown, []State{Up}, Up, []Script{ev}, true},
		{"unknown to up, unknown_up_notify", Or, true, Unknown, []State{Up}, Up, []Script{ev, note}, true},
		{"unknown to down notifies", Or, false, Unknown, []State{Down}, Down, []Script{ev, note}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := base
			g.Logic, g.UnknownUpNotify = tt.logic, tt.unn
			got, e, changed := DecideGroup(g, tt.prev, tt.members, t0)
			if got != tt.want || changed != tt.changed {
				t.Fatalf("got %v (changed %v), want %v (changed %v)", got, changed, tt.want, tt.changed)
			}
			if diff := cmp.Diff(tt.scripts, e.Scripts); diff != "" {
				t.Errorf("scripts (-want +got):\n%s", diff)
			}
			if changed && (!e.Group || e.Prev != tt.prev || e.Name != "GRP" || !e.Time.Equal(t0)) {
				t.Errorf("event %+v", e)
			}
		})
	}
}

// TestTrust: new evidence brings a down, long_down or unknown link up at
// once, past a damping hold and a window full of losses, with the scripts
// of an ordinary up transition; an up link is left alone.
func TestTrust(t *testing.T) {
	s := testSettings()
	d := NewDecider(s)
	now := t0.Add(time.Hour)
	w := NewWindow(s.Window, s.Timeout)
	for i := range 20 {
		w.Send(now.Add(time.Duration(i-40) * time.Second)) // all lost
	}
	held := LinkState{State: Down, DownAt: now.Add(-time.Minute), Hold: 40 * time.Second, Flaps: Flaps{Streak: 3}}
	if _, _, ok := d.Decide(held, w, now); ok {
		t.Fatal("the window of losses alone brings the link up: the test proves nothing")
	}
	next, ev, ok := d.Trust(held, w, now)
	if !ok || next.State != Up || next.Hold != 0 || !next.Flaps.UpAt.Equal(now) || next.Flaps.Streak != 3 {
		t.Fatalf("Trust of a held down link: %+v, %v", next, ok)
	}
	want := []Script{{Path: "/ev", Queue: "q", Email: "root"}, {Path: "/notify", Email: "root"}}
	if diff := cmp.Diff(want, ev.Scripts); diff != "" || ev.State != Up || ev.Prev != Down {
		t.Errorf("Trust's event %v from %v, scripts (-want +got):\n%s", ev.State, ev.Prev, diff)
	}
	long, ev, ok := d.Trust(LinkState{State: LongDown, DownAt: now.Add(-time.Hour)}, w, now)
	if !ok || long.State != Up || len(ev.Scripts) != 4 {
		t.Errorf("Trust of a long_down link: %+v, scripts %v", long, ev.Scripts)
	}
	if _, _, ok := d.Trust(LinkState{State: Up}, w, now); ok {
		t.Error("Trust of an up link made a transition")
	}
}

// TestExcuse: a down transition excused as the admin's doing leaves the
// damping memory as it was before, with no hold.
func TestExcuse(t *testing.T) {
	d := Damping{Calm: time.Minute, BaseHold: 10 * time.Second, MaxHold: time.Minute}
	t0 := time.Unix(1000, 0)
	prev := LinkState{State: Up, Flaps: Flaps{Streak: 1, UpAt: t0}}
	next := LinkState{State: Down, DownAt: t0.Add(time.Second), Flaps: d.Fail(prev.Flaps, t0.Add(time.Second))}
	next.Hold = d.Hold(next.Flaps)
	if next.Hold == 0 {
		t.Fatal("the test's failure is not held to begin with")
	}
	got := Excuse(prev, next)
	if got.Hold != 0 || got.Flaps != prev.Flaps || got.State != Down || !got.DownAt.Equal(next.DownAt) {
		t.Errorf("excused: %+v", got)
	}
}

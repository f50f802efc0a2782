package lsm

import "time"

// Damping is the flap-damping policy. A failure that comes after less
// than Calm of being up continues a streak; the first failure of a streak
// is not held, each later one makes the link wait twice as long as the
// one before (starting at BaseHold, at most MaxHold) with the up rule
// holding before it is declared up again.
//
// Counting uptime rather than decaying a penalty over wall time (as BGP
// route-flap damping does) keeps the holds themselves from eroding the
// memory: a link that fails every time it comes back reaches MaxHold.
//
// The zero Damping never holds a link, which is lsm's behaviour.
type Damping struct {
	Calm     time.Duration
	BaseHold time.Duration
	MaxHold  time.Duration
}

// DefaultDamping is ispbalance's policy: a failure after 10 min or more
// of uptime (or the first one after the link first came up) is not held; failures sooner than that
// give holds of 10 s, 20 s, 40 s, 80 s, 160 s, 320 s, then 10 min.
// A single outage is therefore never delayed, and a link that fails
// every few minutes ends up used for a few minutes out of every ten.
func DefaultDamping() Damping {
	return Damping{Calm: 10 * time.Minute, BaseHold: 10 * time.Second, MaxHold: 10 * time.Minute}
}

// Flaps is a link's damping memory.
type Flaps struct {
	Streak int       // failures with less than Calm of uptime between them
	UpAt   time.Time // when the link last went up; zero if never
}

// Fail returns f after a failure at now.
func (d Damping) Fail(f Flaps, now time.Time) Flaps {
	if d.BaseHold <= 0 {
		return f
	}
	switch {
	case f.UpAt.IsZero():
		// A link that never came up (probes lost while an uplink and its
		// neighbours settle at start) has not flapped: its first real
		// failure must not be held.
		f.Streak = 0
	case now.Sub(f.UpAt) >= d.Calm:
		f.Streak = 1
	case d.Hold(f) < d.MaxHold:
		// Beyond MaxHold a longer streak changes nothing.
		f.Streak++
	}
	return f
}

// Excuse returns next, a link's state after a transition to down from
// prev, without what damping made of that failure: the memory prev had
// and no hold. An outage the admin made on purpose (the device set
// administratively down) is no sign of a flapping link.
func Excuse(prev, next LinkState) LinkState {
	next.Flaps, next.Hold = prev.Flaps, 0
	return next
}

// Hold returns how long the up rule must hold before a link whose latest
// failure left memory f goes up.
func (d Damping) Hold(f Flaps) time.Duration {
	if d.BaseHold <= 0 || f.Streak < 2 {
		return 0
	}
	h := d.BaseHold
	for i := 2; i < f.Streak && h < d.MaxHold; i++ {
		h *= 2
	}
	return min(h, d.MaxHold)
}

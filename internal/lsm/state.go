package lsm

import "fmt"

// State is the monitor's opinion of a link or group. The numeric values
// are lsm's, which is what the status= option takes.
type State int

const (
	Down State = iota
	Up
	Unknown
	// LongDown is Down after long_down_time; it behaves like Down except
	// that it is not entered twice.
	LongDown
	// Degraded is not lsm's: it names a link that lsm's rules judge up
	// but whose quality thresholds (Quality) it exceeds, in the events,
	// scripts and status that report it. The state machine never enters
	// it, and status= does not take it.
	Degraded
)

var stateNames = [...]string{"down", "up", "unknown", "long_down", "degraded"}

// String returns lsm's name of the state, as passed to event scripts.
func (s State) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return fmt.Sprintf("state(%d)", int(s))
	}
	return stateNames[s]
}

// isDown reports whether s counts as down for the up rule and for groups.
func (s State) isDown() bool { return s == Down || s == LongDown }

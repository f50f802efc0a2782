package lsm

import (
	"net/netip"
	"strconv"
)

// ScriptArgs returns the 16 positional arguments lsm passes to event and
// notify scripts (spec §4), with ev.Email as $5. Empty values stay empty
// strings, as in foolsm 1.0. For groups $3 and $14 are empty and the
// counters are 0.
func ScriptArgs(ev Event) []string {
	st, checkIP, src := ev.Stats, ev.CheckIP, ev.SrcIP
	if ev.Group {
		st, checkIP, src = Stats{}, "", ""
	} else if src == "" {
		src = "0.0.0.0"
		if a, err := netip.ParseAddr(ev.CheckIP); err == nil && a.Is6() {
			src = "::"
		}
	}
	ts := "0"
	if !ev.Time.IsZero() {
		ts = strconv.FormatInt(ev.Time.Unix(), 10)
	}
	itoa := strconv.Itoa
	return []string{
		ev.State.String(),
		ev.Name,
		checkIP,
		ev.Device,
		ev.Email,
		itoa(st.Replied),
		itoa(st.Waiting),
		itoa(st.Timeout),
		itoa(st.ReplyLate),
		itoa(st.ConsRcvd),
		itoa(st.ConsWait),
		itoa(st.ConsMiss),
		strconv.FormatInt(st.AvgRTT.Microseconds(), 10),
		src,
		ev.Prev.String(),
		ts,
	}
}

// Command is one script run: the program and its 16 arguments.
type Command struct {
	Path  string
	Queue string
	Args  []string
}

// Commands returns the script runs of ev, in order, each with its own $5
// (the long-down scripts get long_down_email even on recovery).
func (ev Event) Commands() []Command {
	out := make([]Command, 0, len(ev.Scripts))
	for _, s := range ev.Scripts {
		e := ev
		e.Email = s.Email
		out = append(out, Command{Path: s.Path, Queue: s.Queue, Args: ScriptArgs(e)})
	}
	return out
}

package monitor

import (
	"time"

	"github.com/ispbalance/ispbalance/internal/lsm"
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

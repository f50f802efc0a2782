package lsm

import (
	"cmp"
	"fmt"
	"time"
)

// Quality holds a link's quality thresholds (pfSense's latency and
// standard-deviation alarms): a link that answers its probes, but too
// slowly or too unevenly, is degraded. lsm had no such thing; the zero
// Quality judges nothing, so lsm's behaviour is unchanged.
type Quality struct {
	// MaxRTT is the highest acceptable mean round-trip time over the
	// probe window; 0 means no limit.
	MaxRTT time.Duration
	// MaxJitter is the highest acceptable standard deviation of the
	// window's round-trip times; 0 means no limit.
	MaxJitter time.Duration
	// Enter and Leave replace DegradeAfter and RecoverAfter when set;
	// balance.conf does not set them.
	Enter, Leave time.Duration
}

// The hysteresis of quality verdicts. A link is degraded once a figure
// has stayed above its threshold for DegradeAfter, and healthy again
// once every figure has stayed at or below RecoverShare of its threshold
// for RecoverAfter. The window's figures are already averages over its
// probes (5 s of them with ispbalance's defaults), so one slow reply
// moves them little; the waits keep a link near its threshold from
// entering and leaving balancing every few seconds.
const (
	DegradeAfter = 5 * time.Second
	RecoverAfter = 10 * time.Second
	RecoverShare = 0.8
	// minQualitySamples is how many answered probes the window must hold
	// before its figures are judged at all: a link that just came up, or
	// whose probes are nearly all lost (lsm's rules judge that), says
	// little about its latency.
	minQualitySamples = 5
)

// EnterAfter and LeaveAfter are the waits of q's hysteresis.
func (q Quality) EnterAfter() time.Duration { return cmp.Or(q.Enter, DegradeAfter) }
func (q Quality) LeaveAfter() time.Duration { return cmp.Or(q.Leave, RecoverAfter) }

// On reports whether any threshold is set.
func (q Quality) On() bool { return q.MaxRTT > 0 || q.MaxJitter > 0 }

// QualityState is what the quality judgement remembers about a link.
type QualityState struct {
	Degraded bool
	// Since is when the condition that would change Degraded began to
	// hold (figures above a threshold while healthy, all at or below
	// RecoverShare while degraded); zero while it does not.
	Since time.Time
	// Why says which figure crossed which threshold, while Degraded.
	Why string
}

// Judge returns the link's next quality state given the window's spread
// at now, and whether Degraded changed. Call it only for a link that
// lsm's rules judge up: a link that is down is down, whatever its
// latency was.
func (q Quality) Judge(cur QualityState, sp Spread, now time.Time) (QualityState, bool) {
	if !q.On() {
		return QualityState{}, cur.Degraded
	}
	next := cur
	if !cur.Degraded {
		why := q.beyond(sp)
		if why == "" {
			next.Since = time.Time{}
			return next, false
		}
		if next.Since.IsZero() {
			next.Since = now
		}
		if now.Sub(next.Since) < q.EnterAfter() {
			return next, false
		}
		return QualityState{Degraded: true, Why: why}, true
	}
	if !q.within(sp) {
		next.Since = time.Time{}
		if why := q.beyond(sp); why != "" {
			next.Why = why
		}
		return next, false
	}
	if next.Since.IsZero() {
		next.Since = now
	}
	if now.Sub(next.Since) < q.LeaveAfter() {
		return next, false
	}
	return QualityState{}, true
}

// beyond says which threshold the spread exceeds, or "" for none.
func (q Quality) beyond(sp Spread) string {
	if sp.N < minQualitySamples {
		return ""
	}
	switch {
	case q.MaxRTT > 0 && sp.Mean > q.MaxRTT:
		return fmt.Sprintf("average RTT %s above max_rtt_ms=%d", fmtMillis(sp.Mean), q.MaxRTT.Milliseconds())
	case q.MaxJitter > 0 && sp.Stddev > q.MaxJitter:
		return fmt.Sprintf("jitter %s above max_jitter_ms=%d", fmtMillis(sp.Stddev), q.MaxJitter.Milliseconds())
	}
	return ""
}

// within reports whether every figure is at or below RecoverShare of its
// threshold.
func (q Quality) within(sp Spread) bool {
	if sp.N < minQualitySamples {
		return false
	}
	return (q.MaxRTT <= 0 || float64(sp.Mean) <= RecoverShare*float64(q.MaxRTT)) &&
		(q.MaxJitter <= 0 || float64(sp.Stddev) <= RecoverShare*float64(q.MaxJitter))
}

func fmtMillis(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
}

package monitor

import (
	"fmt"
	"strings"
	"time"
)

// How often the kernel is compared with the newest rebuild's result, and
// every how many rounds the firewall is compared too. With a repair's own
// rebuild, a deletion is undone within driftEvery*firewallEvery plus a
// rebuild: under 5 s.
const (
	driftEvery    = time.Second
	firewallEvery = 3
)

// Repairs are rate-limited by a token bucket: up to repairBurst at once
// (an admin's few commands, one firewall reload), then one every
// repairRefill, so another program fighting ours (a firewall manager
// reloading in a loop) costs a rebuild every few seconds, not a busy loop.
const (
	repairBurst  = 8
	repairRefill = 10 * time.Second
)

// resyncEvery is how often the monitor rebuilds with no reason at all, as
// kube-proxy resyncs: what neither an event nor a drift check sees (a
// rule file edited without a reload, a sysctl reset) is set right then.
const resyncEvery = 5 * time.Minute

type driftResult struct {
	gen     int
	missing []string
	err     error
}

// repairLimiter decides whether a drift check's finding gets a rebuild.
type repairLimiter struct {
	tokens float64
	at     time.Time // when tokens was last brought up to date
}

// judge returns the rebuild reason for a check's result, or false when it
// found nothing, raced with a rebuild, or the bucket is empty.
func (l *repairLimiter) judge(res driftResult, gen int, rebuilding bool, now time.Time) (string, bool) {
	if res.err != nil || len(res.missing) == 0 || res.gen != gen || rebuilding {
		return "", false
	}
	if l.at.IsZero() {
		l.tokens = repairBurst
	} else {
		l.tokens = min(repairBurst, l.tokens+float64(now.Sub(l.at))/float64(repairRefill))
	}
	l.at = now
	if l.tokens < 1 {
		return "", false
	}
	l.tokens--
	what := res.missing
	if len(what) > 3 {
		what = append(what[:3:3], fmt.Sprintf("%d more", len(res.missing)-3))
	}
	return "repair: missing " + strings.Join(what, "; "), true
}

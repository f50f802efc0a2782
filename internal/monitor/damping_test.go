package monitor

import (
	"strings"
	"testing"
	"time"

	"github.com/ispbalance/ispbalance/internal/lsm"
)

// TestLoopAdminDownIsNoFlap: with flap damping on, an ISP that failed
// once and is then set down by its admin comes back without a hold, and
// the history says why it went down; a real failure soon after is held,
// so damping does run in this test.
func TestLoopAdminDownIsNoFlap(t *testing.T) {
	r := startLoop(t, func(r *loopRig) {
		r.options = func(o *Options) {
			o.Default.Damping = lsm.Damping{Calm: time.Minute, BaseHold: 400 * time.Millisecond, MaxHold: time.Second}
		}
	})
	count := func(prefix string) int {
		n := 0
		for _, e := range r.journal.all() {
			if strings.HasPrefix(e, prefix) {
				n++
			}
		}
		return n
	}
	r.journal.waitFor(t, "both ISPs up", func(e []string) bool { return index(e, "rebuild verdict on [ISP1 up ISP2 up]") >= 0 })
	// A first failure starts a streak, unheld.
	r.net.setAlive(src1, false)
	r.journal.waitFor(t, "ISP1 down", func(e []string) bool { return count("rebuild verdict on [ISP1 down]") == 1 })
	r.net.setAlive(src1, true)
	r.journal.waitFor(t, "ISP1 up", func(e []string) bool { return count("rebuild verdict on [ISP1 up]") == 1 })

	// The admin sets the device down, and up again.
	r.adminDown1.Store(true)
	r.ctl.Rebuild <- "link wan1 changed"
	r.journal.waitFor(t, "ISP1 down by the admin", func(e []string) bool { return count("rebuild verdict on [ISP1 down]") == 2 })
	down := time.Now()
	snap := waitSnapshot(t, r, func(s Snapshot) bool { return s.Written.After(down) && len(s.ISPs) == 2 && s.ISPs[0].State == "down" })
	if h := snap.ISPs[0].HoldSeconds; h != 0 {
		t.Errorf("an ISP its admin set down is held %v s", h)
	}
	events, _ := ReadEvents(r.stateDir)
	if last := events[len(events)-1]; last.To != "down" || !strings.Contains(last.Reason, "set down by the admin") {
		t.Errorf("the history says %+v", last)
	}
	r.adminDown1.Store(false)
	r.ctl.Rebuild <- "link wan1 changed"
	r.journal.waitFor(t, "ISP1 up after the admin's outage", func(e []string) bool { return count("rebuild verdict on [ISP1 up]") == 2 })

	// A real failure now continues the streak of the first: held.
	r.net.setAlive(src1, false)
	r.journal.waitFor(t, "ISP1 down again", func(e []string) bool { return count("rebuild verdict on [ISP1 down]") == 3 })
	down = time.Now()
	snap = waitSnapshot(t, r, func(s Snapshot) bool { return s.Written.After(down) && len(s.ISPs) == 2 && s.ISPs[0].State == "down" })
	if h := snap.ISPs[0].HoldSeconds; h <= 0 {
		t.Errorf("the second real failure in a minute is not held (hold %v s): damping is off in this test", h)
	}
}

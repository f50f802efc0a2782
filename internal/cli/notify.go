package cli

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/ispbalance/ispbalance/internal/monitor"
)

// sdNotify tells systemd about the service's state when it started us
// with Type=notify; elsewhere NOTIFY_SOCKET is unset and this does
// nothing.
func sdNotify(state string) { daemon.SdNotify(false, state) }

// snapshotEvery is how often the monitor's loop writes its status
// snapshot; a snapshot older than staleAfter means the loop is stuck.
const (
	snapshotEvery = 2 * time.Second
	staleAfter    = 3 * snapshotEvery
)

// notifyLoop keeps systemd informed until ctx ends: STATUS= with the ISPs
// the monitor judges up (what `systemctl status ispbalance` shows), and,
// when the unit sets WatchdogSec=, WATCHDOG=1 as long as the monitor's
// loop itself is alive, which its fresh snapshot proves. A monitor idle
// for want of ISP services has no loop and is alive by definition.
func notifyLoop(ctx context.Context, snapshotPath string, idle *atomic.Bool, notify func(string)) {
	watchdog, _ := daemon.SdWatchdogEnabled(false)
	every := snapshotEvery
	if watchdog > 0 && watchdog/2 < every {
		every = watchdog / 2
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	last := ""
	for {
		// The first word is READY=1, from the caller; status follows.
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var msg []string
		status, alive := "starting", false
		if idle.Load() {
			status, alive = "idle: no ISP services in the configuration", true
		} else if snap, err := monitor.ReadSnapshot(snapshotPath); err == nil && snap.PID == os.Getpid() {
			status, alive = statusLine(snap), time.Since(snap.Written) < staleAfter
		}
		if status != last {
			msg = append(msg, "STATUS="+status)
			last = status
		}
		if watchdog > 0 && alive {
			msg = append(msg, daemon.SdNotifyWatchdog)
		}
		if len(msg) > 0 {
			notify(strings.Join(msg, "\n"))
		}
	}
}

// statusLine says which ISPs the monitor judges up.
func statusLine(snap monitor.Snapshot) string {
	var up []string
	for _, isp := range snap.ISPs {
		if isp.State == "up" {
			up = append(up, isp.Service)
		}
	}
	if len(up) == 0 {
		return fmt.Sprintf("no ISP up of %d", len(snap.ISPs))
	}
	return fmt.Sprintf("%d of %d ISPs up: %s", len(up), len(snap.ISPs), strings.Join(up, " "))
}

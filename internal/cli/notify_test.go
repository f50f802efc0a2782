package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ispbalance/ispbalance/internal/monitor"
	"github.com/ispbalance/ispbalance/internal/render"
)

// TestNotifyLoop: systemd hears which ISPs are up, and watchdog pings
// only while the monitor's loop keeps its snapshot fresh (or idles).
func TestNotifyLoop(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "100000") // pings every 50 ms
	t.Setenv("WATCHDOG_PID", "")
	path := filepath.Join(t.TempDir(), "monitor.json")
	write := func(written time.Time) {
		snap := monitor.Snapshot{PID: os.Getpid(), Written: written, ISPs: []render.MonitorISP{
			{Service: "ISP1", State: "up"}, {Service: "ISP2", State: "down"}}}
		data, _ := json.Marshal(snap)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var sent []string
	take := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := sent
		sent = nil
		return out
	}
	waitSent := func(what string, cond func([]string) bool) {
		t.Helper()
		var all []string
		for start := time.Now(); time.Since(start) < 5*time.Second; time.Sleep(20 * time.Millisecond) {
			all = append(all, take()...)
			if cond(all) {
				return
			}
		}
		t.Fatalf("%s: sent %q", what, all)
	}
	has := func(want string) func([]string) bool {
		return func(s []string) bool { return strings.Contains(strings.Join(s, "|"), want) }
	}
	var idle atomic.Bool
	idle.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		notifyLoop(ctx, path, &idle, func(s string) { mu.Lock(); sent = append(sent, s); mu.Unlock() })
		close(done)
	}()
	defer func() { cancel(); <-done }()

	waitSent("idle status and ping", has("STATUS=idle: no ISP services in the configuration\nWATCHDOG=1"))
	idle.Store(false)
	write(time.Now())
	waitSent("the ISPs up", has("STATUS=1 of 2 ISPs up: ISP1\nWATCHDOG=1"))
	// A stuck loop: its snapshot grows old and the pings stop.
	write(time.Now().Add(-time.Minute))
	time.Sleep(100 * time.Millisecond)
	take()
	time.Sleep(200 * time.Millisecond)
	if s := take(); has("WATCHDOG=1")(s) {
		t.Fatalf("watchdog pings for a stale snapshot: %q", s)
	}
	write(time.Now())
	waitSent("pings again once the snapshot is fresh", has("WATCHDOG=1"))
}

package monitor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ispbalance/ispbalance/internal/lsm"
	"github.com/ispbalance/ispbalance/internal/state"
	"github.com/ispbalance/ispbalance/internal/trust"
)

// qualitySettings are quickSettings with an RTT threshold of 15 ms and
// short hysteresis waits. Probes of a 25 ms link are in flight three at
// a time, which lsm's rules count as missing: the thresholds of loss are
// raised so that such a link, slow but answering, stays up even when a
// loaded machine delays the replies further.
func qualitySettings() lsm.Settings {
	s := quickSettings()
	s.Timeout, s.MaxSuccessivePktsLost, s.MaxPacketLoss, s.Window, s.PassInFlight = 150*time.Millisecond, 12, 12, 20, true
	s.Quality = lsm.Quality{MaxRTT: 15 * time.Millisecond, Enter: 100 * time.Millisecond, Leave: 200 * time.Millisecond}
	return s
}

// TestLoopDegradedLeavesAndReturns: an ISP whose probes answer in 25 ms
// against max_rtt_ms=15 is degraded: the rebuild takes it out of
// balancing, degraded.d's scripts run with lsm's 16 arguments, the state
// file keeps saying up, the status and history say why, the metrics say
// degraded. When its RTT falls it comes back, up.d's scripts get
// PREVSTATE degraded. Degraded and then down, it is the best left when
// the other ISP dies: it routes again.
func TestLoopDegradedLeavesAndReturns(t *testing.T) {
	var scriptOut string
	r := startLoop(t, func(r *loopRig) {
		r.options = func(o *Options) {
			o.Default = qualitySettings()
			o.Files = trust.Allow
			o.MetricsTextfile = filepath.Join(r.stateDir, "metrics.prom")
			scriptOut = filepath.Join(r.stateDir, "scripts.out")
			for _, st := range []string{"degraded", "up"} {
				d := filepath.Join(o.ScriptDir, st+".d")
				os.MkdirAll(d, 0o755)
				os.WriteFile(filepath.Join(d, "10-record"), []byte("#!/bin/sh\necho $# \"$@\" >> "+scriptOut+"\n"), 0o755)
			}
		}
	})
	r.journal.waitFor(t, "both ISPs up", func(e []string) bool { return index(e, "rebuild verdict on [ISP1 up ISP2 up]") >= 0 })
	r.net.setDelay(src1, 25*time.Millisecond)
	r.journal.waitFor(t, "ISP1 degraded and out of balancing", func(e []string) bool {
		return index(e, "rebuild verdict on [ISP1 degraded]: routing ISP1=false ISP2=true") >= 0
	})
	if v := mustState(r.stateDir, "ISP1"); v != state.Up {
		t.Errorf("a degraded ISP's state file says %q, want up", v)
	}
	snap := waitSnapshot(t, r, func(s Snapshot) bool { return len(s.ISPs) == 2 && s.ISPs[0].State == "degraded" })
	if is := snap.ISPs[0]; !strings.Contains(is.Degraded, "above max_rtt_ms=15") || is.MaxRTTms != 15 {
		t.Errorf("status of the degraded ISP: %+v", is)
	}
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		data, _ := os.ReadFile(filepath.Join(r.stateDir, "metrics.prom"))
		text := string(data)
		if strings.Contains(text, `ispbalance_isp_state{isp="ISP1",family="ipv4",state="degraded"} 1`) &&
			strings.Contains(text, `ispbalance_isp_state{isp="ISP1",family="ipv4",state="up"} 0`) &&
			strings.Contains(text, `ispbalance_isp_state_changes_total{isp="ISP1",family="ipv4",to="degraded"} 1`) {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("metrics do not show ISP1 degraded:\n%s", text)
		}
	}

	r.net.setDelay(src1, 0)
	r.journal.waitFor(t, "ISP1 back in balancing", func(e []string) bool {
		return index(e, "rebuild verdict on [ISP1 up]: routing ISP1=true ISP2=true") >= 0
	})
	events, err := ReadEvents(r.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	var changes []string
	for _, e := range events {
		if e.ISP == "ISP1" {
			changes = append(changes, e.From+">"+e.To)
		}
	}
	if got := strings.Join(changes, " "); !strings.HasSuffix(got, "up>degraded degraded>up") {
		t.Errorf("history of ISP1: %s; want it to end with up>degraded degraded>up", got)
	}
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		data, _ := os.ReadFile(scriptOut)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		var deg, back bool
		for _, l := range lines {
			f := strings.Fields(l)
			// $# and 16 arguments, of which the 13th is AVG_RTT and the 15th PREVSTATE.
			deg = deg || len(f) >= 16 && f[0] == "16" && f[1] == "degraded" && f[2] == "ISP1" && f[len(f)-2] == "up"
			back = back || len(f) >= 16 && f[0] == "16" && f[1] == "up" && f[2] == "ISP1" && f[len(f)-2] == "degraded"
		}
		if deg && back {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("scripts ran with:\n%s\nwant degraded.d with PREVSTATE up and up.d with PREVSTATE degraded", data)
		}
	}

	// Degraded, then the healthy ISP dies: the degraded one is the best
	// left and carries everything.
	r.net.setDelay(src1, 25*time.Millisecond)
	r.journal.waitFor(t, "ISP1 degraded again", func(e []string) bool {
		return strings.Count(strings.Join(e, "\n"), "rebuild verdict on [ISP1 degraded]") >= 2
	})
	r.net.setAlive(src2, false)
	r.journal.waitFor(t, "the degraded ISP routing alone", func(e []string) bool {
		return index(e, "rebuild verdict on [ISP2 down]: routing ISP1=true ISP2=false") >= 0
	})
}

// TestLoopQualityOffChangesNothing: without thresholds a slow ISP stays
// in balancing, as with lsm.
func TestLoopQualityOffChangesNothing(t *testing.T) {
	r := startLoop(t, func(r *loopRig) {
		r.options = func(o *Options) {
			o.Default = qualitySettings()
			o.Default.Quality = lsm.Quality{}
		}
	})
	r.journal.waitFor(t, "both ISPs up", func(e []string) bool { return index(e, "rebuild verdict on [ISP1 up ISP2 up]") >= 0 })
	r.net.setDelay(src1, 25*time.Millisecond)
	time.Sleep(500 * time.Millisecond)
	if e := r.journal.all(); len(e) != 2 {
		t.Errorf("a slow ISP without thresholds changed something:\n%s", strings.Join(e, "\n"))
	}
	if _, err := os.Stat(filepath.Join(r.stateDir, "degraded")); !os.IsNotExist(err) {
		t.Errorf("a degraded list exists without thresholds: %v", err)
	}
}

func waitSnapshot(t *testing.T, r *loopRig, ok func(Snapshot) bool) Snapshot {
	t.Helper()
	var s Snapshot
	for start := time.Now(); time.Since(start) < 5*time.Second; time.Sleep(20 * time.Millisecond) {
		var err error
		if s, err = ReadSnapshot(filepath.Join(r.stateDir, "monitor.json")); err == nil && ok(s) {
			return s
		}
	}
	t.Fatalf("the status never showed what was wanted; last: %+v", s)
	return s
}

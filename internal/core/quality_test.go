package core

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ispbalance/ispbalance/internal/config"
	"github.com/ispbalance/ispbalance/internal/lsm"
	"github.com/ispbalance/ispbalance/internal/state"
)

// TestMonitorQualityOptions: balance.conf's max_rtt_ms and max_jitter_ms
// reach each ISP's monitor settings, per ISP over the global value, and
// leave lsm's decision defaults alone.
func TestMonitorQualityOptions(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "balance.conf")
	os.WriteFile(conf, []byte("A wan1 isp\nB wan2 isp\nC wan3 isp\nLAN lan1 lan\nmax_rtt_ms=300\nmax_rtt_ms=B 500\nmax_jitter_ms=C 40\nmax_rtt_ms=C 0\n"), 0o644)
	mo, err := MonitorOptions(Options{ConfigPath: conf, RunDir: dir, StateDir: dir}, "")
	if err != nil {
		t.Fatal(err)
	}
	ms := time.Millisecond
	for svc, want := range map[string]lsm.Quality{"A": {MaxRTT: 300 * ms}, "B": {MaxRTT: 500 * ms}, "C": {MaxJitter: 40 * ms}} {
		s := mo.Settings[svc]
		if s.Quality != want {
			t.Errorf("%s: quality %+v, want %+v", svc, s.Quality, want)
		}
		if s.Interval != lsm.Defaults().Interval || s.Window != lsm.Defaults().Window {
			t.Errorf("%s: quality thresholds changed lsm's defaults: %+v", svc, s)
		}
	}
	if mo.Default.Quality.On() {
		t.Errorf("the defaults have thresholds: %+v", mo.Default.Quality)
	}
	if mo.DegradedPath != state.DegradedFile(dir) {
		t.Errorf("degraded list at %q", mo.DegradedPath)
	}
}

// TestResolveDegraded: the monitor's list reaches the plan by family.
func TestResolveDegraded(t *testing.T) {
	dir := t.TempDir()
	cfg, _ := config.Parse("b", strings.NewReader("A wan1 isp\nB wan2 isp\nLAN lan1 lan\n"))
	state.WriteDegraded(state.DegradedFile(dir), []string{"A", state.IPv6Name("B")})
	v4, v6, err := resolveDegraded(cfg, dir)
	if err != nil || !v4["A"] || v4["B"] || v6["A"] || !v6["B"] {
		t.Fatalf("IPv4 %v, IPv6 %v, %v", v4, v6, err)
	}
}

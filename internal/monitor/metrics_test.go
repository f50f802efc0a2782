package monitor

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLoopMetrics: the loop feeds the metrics, serves them while it runs
// and writes them to the textfile, and stops serving when it stops.
func TestLoopMetrics(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	textfile := filepath.Join(t.TempDir(), "ispbalance.prom")
	r := startLoop(t, func(r *loopRig) {
		r.options = func(o *Options) { o.MetricsListen, o.MetricsTextfile = addr, textfile }
	})
	r.journal.waitFor(t, "both ISPs up", func(e []string) bool { return index(e, "rebuild verdict on [ISP1 up ISP2 up]") >= 0 })
	// waitFile waits until the textfile's samples satisfy ok.
	waitFile := func(what string, ok func(map[string]float64) bool) map[string]float64 {
		t.Helper()
		var text string
		for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(20 * time.Millisecond) {
			data, _ := os.ReadFile(textfile)
			text = string(data)
			if m := samples(text); ok(m) {
				return m
			}
		}
		t.Fatalf("%s: not in the textfile:\n%s", what, text)
		return nil
	}
	isp := func(name string, k int, extra ...string) string {
		return fmt.Sprintf(`%s{isp="ISP%d",family="ipv4"%s}`, name, k, strings.Join(extra, ""))
	}
	waitFile("ISP1 up", func(m map[string]float64) bool {
		return m[isp("ispbalance_isp_up", 1)] == 1 && m[isp("ispbalance_isp_routing", 1)] == 1 &&
			m[isp("ispbalance_isp_state_changes_total", 1, `,to="up"`)] >= 1 &&
			m[`ispbalance_rebuilds_total{reason="start",result="ok"}`] == 1 && m[`ispbalance_rebuilds_total{reason="verdict",result="ok"}`] >= 1
	})
	r.net.setAlive(src1, false)
	before := waitFile("ISP1 down", func(m map[string]float64) bool {
		return m[isp("ispbalance_isp_up", 1)] == 0 && m[isp("ispbalance_isp_state", 1, `,state="down"`)] == 1 &&
			m[isp("ispbalance_isp_state_changes_total", 1, `,to="down"`)] >= 1 && m[isp("ispbalance_isp_routing", 1)] == 0 &&
			m[isp("ispbalance_isp_up", 2)] == 1
	})
	if before[isp("ispbalance_probe_rtt_seconds_count", 2)] == 0 || before[isp("ispbalance_isp_loss_ratio", 1)] == 0 {
		t.Errorf("RTTs or loss missing: %v", before)
	}
	// Traffic goes on being counted through the live ISP.
	assigned2 := isp("ispbalance_isp_connections_assigned_total", 2)
	after := waitFile("ISP2's traffic counted", func(m map[string]float64) bool { return m[assigned2] > before[assigned2] })
	for _, series := range []string{assigned2, `ispbalance_isp_receive_bytes_total{isp="ISP2"}`,
		isp("ispbalance_isp_tracked_connections", 2), `ispbalance_isp_transmit_packets_total{isp="ISP2"}`} {
		if after[series] <= 0 {
			t.Errorf("%s is %v, want above 0", series, after[series])
		}
	}
	if _, err := os.Stat(textfile + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left: %v", err)
	}

	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `ispbalance_probes_sent_total{isp="ISP2",family="ipv4"}`) {
		t.Errorf("scrape:\n%s", body)
	}

	r.cancel()
	r.done <- <-r.done // for the cleanup's check
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("metrics still served after the monitor stopped")
	}
}

// TestLoopMetricsAddressTaken: an address that cannot be had is logged,
// and the monitor monitors all the same.
func TestLoopMetricsAddressTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var log syncBuffer
	r := startLoop(t, func(r *loopRig) {
		r.options = func(o *Options) {
			o.MetricsListen = ln.Addr().String()
			o.Log = slog.New(slog.NewTextHandler(&log, nil))
		}
	})
	r.journal.waitFor(t, "both ISPs up", func(e []string) bool { return index(e, "rebuild verdict on [ISP1 up ISP2 up]") >= 0 })
	if !strings.Contains(log.String(), `level=ERROR msg="metrics not served" component=monitor listen=`+ln.Addr().String()) {
		t.Errorf("no error logged for the taken address:\n%s", log.String())
	}
}

// samples reads a text exposition's samples, keyed name{labels}.
func samples(text string) map[string]float64 {
	m := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		i := strings.LastIndexByte(line, ' ')
		if strings.HasPrefix(line, "#") || i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

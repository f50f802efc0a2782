package labtest

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"

	"github.com/ispbalance/ispbalance/internal/lab"
	"github.com/ispbalance/ispbalance/internal/render"
)

// metricsPort is the monitor's metrics port in the lab: every lab has a
// network namespace of its own, so parallel tests do not collide.
const metricsPort = "19851"

// TestMetrics: the monitor serves Prometheus metrics that follow an ISP's
// silent failure (state, routing, connections moving to the live ISP, RTT
// histograms filling), pass promtool, and are written as a textfile
// replaced whole each time.
func TestMetrics(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		lab.SkipOrFail(t, "promtool not installed (Debian package prometheus)")
	}
	r := newRouter(t, lab.Options{Prefix: "mmet"}, "")
	textfile := filepath.Join(r.dir, "ispbalance.prom")
	r.writeConf(monitorConf(1, 1) + "metrics_listen=127.0.0.1:" + metricsPort + "\nmetrics_textfile=" + textfile + "\n")
	r.startServer()
	r.startMonitor()
	r.waitMonitor("ISP1", "up", 10*time.Second)
	r.waitMonitor("ISP2", "up", 10*time.Second)

	link := func(name string, k int) string { return fmt.Sprintf(`%s{isp="ISP%d",family="ipv4"}`, name, k) }
	assigned := func(k int) string { return link("ispbalance_isp_connections_assigned_total", k) }
	tracked := func(k int) string { return link("ispbalance_isp_tracked_connections", k) }
	// Connections through both ISPs show in the counts.
	used := r.shares(1, 20)
	if used[1] == 0 || used[2] == 0 {
		t.Fatalf("20 connections did not use both ISPs: %v", used)
	}
	before := r.waitMetrics("the connections counted", func(m map[string]float64) bool {
		return m[assigned(1)] >= float64(used[1]) && m[assigned(2)] >= float64(used[2]) && m[tracked(1)] > 0 && m[tracked(2)] > 0 &&
			m[link("ispbalance_isp_up", 1)] == 1 && m[link("ispbalance_isp_routing", 1)] == 1
	})

	if _, err := r.lab.SilentDrop(1); err != nil {
		t.Fatal(err)
	}
	down := r.waitMetrics("ISP1 down and out of balancing", func(m map[string]float64) bool {
		return m[link("ispbalance_isp_up", 1)] == 0 && m[link("ispbalance_isp_routing", 1)] == 0 &&
			m[`ispbalance_isp_state_changes_total{isp="ISP1",family="ipv4",to="down"}`] >= 1 &&
			m[`ispbalance_isp_state{isp="ISP1",family="ipv4",state="down"}`] == 1
	})
	// New connections go through ISP2 only, and ISP1's are flushed.
	if used := r.shares(1, 10); used[2] != 10 {
		t.Fatalf("after the failover, 10 connections used %v", used)
	}
	after := r.waitMetrics("the new connections counted on ISP2", func(m map[string]float64) bool {
		return m[assigned(2)] >= down[assigned(2)]+10 && m[tracked(1)] == 0
	})
	for _, tc := range []struct {
		series string
		ok     bool
	}{
		{assigned(1) + " unchanged", after[assigned(1)] == down[assigned(1)]},
		{link("ispbalance_probes_sent_total", 1), after[link("ispbalance_probes_sent_total", 1)] > before[link("ispbalance_probes_sent_total", 1)]},
		{link("ispbalance_probes_answered_total", 1) + " below sent", after[link("ispbalance_probes_answered_total", 1)] < after[link("ispbalance_probes_sent_total", 1)]},
		{link("ispbalance_probe_rtt_seconds_count", 2), after[link("ispbalance_probe_rtt_seconds_count", 2)] > before[link("ispbalance_probe_rtt_seconds_count", 2)]},
		{`ispbalance_probe_rtt_seconds_bucket{isp="ISP2",family="ipv4",le="+Inf"}`, after[`ispbalance_probe_rtt_seconds_bucket{isp="ISP2",family="ipv4",le="+Inf"}`] == after[link("ispbalance_probe_rtt_seconds_count", 2)]},
		{link("ispbalance_isp_loss_ratio", 1), after[link("ispbalance_isp_loss_ratio", 1)] > 0.5},
		{link("ispbalance_isp_rtt_average_seconds", 2), after[link("ispbalance_isp_rtt_average_seconds", 2)] > 0},
		{link("ispbalance_isp_up", 2), after[link("ispbalance_isp_up", 2)] == 1},
		{`ispbalance_isp_transmit_bytes_total{isp="ISP2"}`, after[`ispbalance_isp_transmit_bytes_total{isp="ISP2"}`] > before[`ispbalance_isp_transmit_bytes_total{isp="ISP2"}`]},
		{`ispbalance_rebuilds_total{reason="verdict",result="ok"}`, after[`ispbalance_rebuilds_total{reason="verdict",result="ok"}`] >= 2},
		{"ispbalance_rebuild_duration_seconds_count", after["ispbalance_rebuild_duration_seconds_count"] >= 3},
	} {
		if !tc.ok {
			t.Errorf("%s: before the fault %v, once down %v, after %v", tc.series, before[tc.series], down[tc.series], after[tc.series])
		}
	}

	// -s and --json show the same figures per ISP, with shares.
	var js struct{ Monitor render.MonitorStatus }
	for start := time.Now(); ; time.Sleep(200 * time.Millisecond) {
		if err := json.Unmarshal([]byte(r.mustRun("-s", "--json")), &js); err != nil {
			t.Fatal(err)
		}
		if len(js.Monitor.ISPs) == 2 && js.Monitor.ISPs[1].Traffic != nil && js.Monitor.ISPs[1].Traffic.Connections >= uint64(after[assigned(2)]) {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("--json lacks ISP2's connections (%v in the metrics): %+v", after[assigned(2)], js.Monitor)
		}
	}
	isp1, isp2 := js.Monitor.ISPs[0], js.Monitor.ISPs[1]
	share2 := 100 * after[assigned(2)] / (after[assigned(1)] + after[assigned(2)])
	if math.Abs(isp2.Traffic.ConnectionsPercent-share2) > 1 || isp2.Traffic.Bytes == 0 || isp2.Traffic.BytesPercent <= 0 ||
		isp1.Traffic.ConnectionsPercent+isp2.Traffic.ConnectionsPercent < 99.9 || isp2.P95RTTms < isp2.AvgRTTms || isp2.AvgRTTms <= 0 ||
		isp1.InStateSeconds <= 0 || isp1.LossPercent < 50 {
		t.Errorf("--json: ISP1 %+v %+v, ISP2 %+v %+v", isp1, isp1.Traffic, isp2, isp2.Traffic)
	}
	if st := r.mustRun("-s"); !strings.Contains(st, "RTT avg/p95/jitter") || !strings.Contains(st, " open") {
		t.Errorf("-s lacks the figures:\n%s", st)
	}

	// The event history names the change, its reason and the gateway,
	// and is kept in the state directory for the next monitor.
	if ev := r.mustRun("events"); !regexp.MustCompile(`ISP1 +up -> down +\d+ % .* probes lost`).MatchString(ev) {
		t.Errorf("events:\n%s", ev)
	}
	var events []render.MonitorEvent
	if err := json.Unmarshal([]byte(r.mustRun("events", "--json")), &events); err != nil || len(events) < 3 ||
		events[len(events)-1].Gateway != r.lab.ISPGateway(1).String() {
		t.Errorf("events --json: %+v, %v", events, err)
	}

	// Prometheus' parser reads the scrape, and promtool's linter passes it.
	scrape := r.scrapeMetrics()
	if _, err := (&expfmt.TextParser{}).TextToMetricFamilies(strings.NewReader(scrape)); err != nil {
		t.Errorf("Prometheus' parser: %v", err)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(scrape)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}

	// The textfile holds the same metrics and is replaced, not rewritten
	// in place: a collector never reads half of it.
	var first uint64
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		data, err := os.ReadFile(textfile)
		var st syscall.Stat_t
		if err == nil && syscall.Stat(textfile, &st) == nil {
			if first == 0 {
				first = st.Ino
				if got, want := metricNames(string(data)), metricNames(scrape); strings.Join(got, " ") != strings.Join(want, " ") {
					t.Errorf("textfile metrics %v, scrape's %v", got, want)
				}
			} else if st.Ino != first {
				break
			}
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("the textfile was not replaced within 10 s (err %v)", err)
		}
	}
	if _, err := os.Stat(textfile + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("the temporary file is left: %v", err)
	}
}

// scrapeMetrics fetches the metrics from inside the router namespace.
func (r *router) scrapeMetrics() string {
	r.t.Helper()
	return r.sh("router", "curl", "-sf", "--max-time", "5", "http://127.0.0.1:"+metricsPort+"/metrics")
}

// waitMetrics scrapes until ok holds of the samples, keyed as the
// exposition format prints them: name{labels}.
func (r *router) waitMetrics(what string, ok func(map[string]float64) bool) map[string]float64 {
	r.t.Helper()
	var text string
	for start := time.Now(); time.Since(start) < 15*time.Second; time.Sleep(100 * time.Millisecond) {
		text = r.scrapeMetrics()
		if m := parseSamples(text); ok(m) {
			return m
		}
	}
	r.t.Fatalf("%s: not seen in the metrics within 15 s:\n%s", what, text)
	return nil
}

func parseSamples(text string) map[string]float64 {
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

// metricNames lists the metric families a text exposition declares.
func metricNames(text string) []string {
	var names []string
	for _, line := range strings.Split(text, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			names = append(names, f[2])
		}
	}
	sort.Strings(names)
	return names
}

package metrics

import (
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/ispbalance/ispbalance/internal/lab"
)

// sample builds a set with one of each kind, labels that need escaping
// and values that need special spelling.
func sample() *Set {
	s := &Set{}
	up := s.Gauge("test_link_up", "1 when the link is up.\nSecond line with a \\ backslash.", "isp", "family")
	up.With("ISP1", "ipv4").Set(1)
	up.With("ISP1", "ipv6").Set(0)
	up.With(`we"ird\name`+"\n", "ipv4").Set(math.Inf(-1))
	sent := s.Counter("test_probes_sent_total", "Probes sent.", "isp")
	sent.With("ISP1").Add(3)
	sent.With("ISP2").Inc()
	rtt := s.Histogram("test_rtt_seconds", "Round-trip times.", []float64{0.01, 0.1, 1}, "isp")
	for _, v := range []float64{0.005, 0.01, 0.05, 2} {
		rtt.With("ISP1").Observe(v)
	}
	rtt.With("ISP2")
	s.Counter("test_rebuilds_total", "Rebuilds.").With().Inc()
	s.Gauge("test_nan", "Not a number.").With().Set(math.NaN())
	return s
}

const sampleText = `# HELP test_link_up 1 when the link is up.\nSecond line with a \\ backslash.
# TYPE test_link_up gauge
test_link_up{isp="ISP1",family="ipv4"} 1
test_link_up{isp="ISP1",family="ipv6"} 0
test_link_up{isp="we\"ird\\name\n",family="ipv4"} -Inf
# HELP test_nan Not a number.
# TYPE test_nan gauge
test_nan NaN
# HELP test_probes_sent_total Probes sent.
# TYPE test_probes_sent_total counter
test_probes_sent_total{isp="ISP1"} 3
test_probes_sent_total{isp="ISP2"} 1
# HELP test_rebuilds_total Rebuilds.
# TYPE test_rebuilds_total counter
test_rebuilds_total 1
# HELP test_rtt_seconds Round-trip times.
# TYPE test_rtt_seconds histogram
test_rtt_seconds_bucket{isp="ISP1",le="0.01"} 2
test_rtt_seconds_bucket{isp="ISP1",le="0.1"} 3
test_rtt_seconds_bucket{isp="ISP1",le="1"} 3
test_rtt_seconds_bucket{isp="ISP1",le="+Inf"} 4
test_rtt_seconds_sum{isp="ISP1"} 2.065
test_rtt_seconds_count{isp="ISP1"} 4
test_rtt_seconds_bucket{isp="ISP2",le="0.01"} 0
test_rtt_seconds_bucket{isp="ISP2",le="0.1"} 0
test_rtt_seconds_bucket{isp="ISP2",le="1"} 0
test_rtt_seconds_bucket{isp="ISP2",le="+Inf"} 0
test_rtt_seconds_sum{isp="ISP2"} 0
test_rtt_seconds_count{isp="ISP2"} 0
`

func TestWrite(t *testing.T) {
	var b strings.Builder
	if err := sample().Write(&b); err != nil {
		t.Fatal(err)
	}
	if b.String() != sampleText {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), sampleText)
	}
}

// TestParsedByPrometheus: Prometheus' own parser reads back what was
// written, escapes undone, histograms cumulative.
func TestParsedByPrometheus(t *testing.T) {
	var b strings.Builder
	sample().Write(&b)
	families, err := (&expfmt.TextParser{}).TextToMetricFamilies(strings.NewReader(b.String()))
	if err != nil {
		t.Fatalf("Prometheus' parser: %v\n%s", err, b.String())
	}
	if len(families) != 5 {
		t.Errorf("%d families, want 5", len(families))
	}
	up := families["test_link_up"]
	if up.GetType() != dto.MetricType_GAUGE || up.GetHelp() != "1 when the link is up.\nSecond line with a \\ backslash." {
		t.Errorf("test_link_up: %v %q", up.GetType(), up.GetHelp())
	}
	weird := false
	for _, m := range up.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "isp" && l.GetValue() == `we"ird\name`+"\n" {
				weird = math.IsInf(m.GetGauge().GetValue(), -1)
			}
		}
	}
	if !weird {
		t.Errorf("the escaped label or -Inf did not come back: %v", up)
	}
	if c := families["test_probes_sent_total"]; c.GetType() != dto.MetricType_COUNTER || c.GetMetric()[0].GetCounter().GetValue() != 3 {
		t.Errorf("counter: %v", c)
	}
	h := families["test_rtt_seconds"]
	if h.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("histogram type %v", h.GetType())
	}
	hist := h.GetMetric()[0].GetHistogram()
	if hist.GetSampleCount() != 4 || hist.GetSampleSum() != 2.065 || len(hist.GetBucket()) != 4 {
		t.Errorf("histogram: %v", hist)
	}
	for i, want := range []uint64{2, 3, 3, 4} {
		if got := hist.GetBucket()[i].GetCumulativeCount(); got != want {
			t.Errorf("bucket %d: %d, want %d", i, got, want)
		}
	}
	if !math.IsNaN(families["test_nan"].GetMetric()[0].GetGauge().GetValue()) {
		t.Error("NaN did not come back")
	}
}

// TestPromtool: promtool check metrics, the linter of names, units and
// help, passes what the set writes, and fails a badly named counter.
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		lab.SkipOrFail(t, "promtool not installed (Debian package prometheus)")
	}
	check := func(s *Set) (string, error) {
		var b strings.Builder
		s.Write(&b)
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(b.String())
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := check(sample()); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	bad := &Set{}
	bad.Counter("test_probes_sent", "A counter without _total.").With().Inc()
	if out, err := check(bad); err == nil {
		t.Errorf("promtool passed a counter without _total: %s", out)
	}
}

func TestDelete(t *testing.T) {
	s := &Set{}
	g := s.Gauge("test_up", "Up.", "isp", "family")
	kept := g.With("ISP1", "ipv4")
	g.With("ISP1", "ipv6").Set(1)
	g.With("ISP2", "ipv4").Set(1)
	g.Delete(map[string]string{"isp": "ISP1"})
	g.Delete(map[string]string{"isp": "ISP2", "device": "eth0"}) // no such label: nothing
	kept.Set(5)                                                  // harmless, and not shown
	var b strings.Builder
	s.Write(&b)
	if want := "# HELP test_up Up.\n# TYPE test_up gauge\ntest_up{isp=\"ISP2\",family=\"ipv4\"} 1\n"; b.String() != want {
		t.Errorf("after deleting ISP1:\n%s", b.String())
	}
}

func TestMisuse(t *testing.T) {
	for name, f := range map[string]func(){
		"bad name":         func() { (&Set{}).Gauge("test-up", "x") },
		"bad label":        func() { (&Set{}).Gauge("test_up", "x", "is p") },
		"le on histogram":  func() { (&Set{}).Histogram("test_h", "x", nil, "le") },
		"twice":            func() { s := &Set{}; s.Gauge("test_up", "x"); s.Counter("test_up", "x") },
		"unsorted buckets": func() { (&Set{}).Histogram("test_h", "x", []float64{1, 0.5}) },
		"label count":      func() { (&Set{}).Gauge("test_up", "x", "isp").With() },
		"counter down":     func() { (&Set{}).Counter("test_total", "x").With().Add(-1) },
		"set a counter":    func() { (&Set{}).Counter("test_total", "x").With().Set(1) },
		"observe a gauge":  func() { (&Set{}).Gauge("test_up", "x").With().Observe(1) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

func TestServe(t *testing.T) {
	s := sample()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	url := "http://" + ln.Addr().String()
	for _, tc := range []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/metrics", 200, sampleText},
		{"GET", "/metrics?name[]=x", 200, sampleText},
		{"HEAD", "/metrics", 200, ""},
		{"POST", "/metrics", 405, "only GET and HEAD\n"},
		{"GET", "/", 404, "the metrics are at /metrics\n"},
	} {
		req, _ := http.NewRequest(tc.method, url+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("%s %s: %v", tc.method, tc.path, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || string(body) != tc.body {
			t.Errorf("%s %s: %d\n%s", tc.method, tc.path, resp.StatusCode, body)
		}
		if tc.code == 200 && resp.Header.Get("Content-Type") != ContentType {
			t.Errorf("%s %s: Content-Type %q", tc.method, tc.path, resp.Header.Get("Content-Type"))
		}
	}
	// A request that never ends is cut off, and the next one is served.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("GET /metrics HTTP/1.1\r\nX-Long: " + strings.Repeat("x", 2*maxRequest)))
	reply, _ := io.ReadAll(c)
	c.Close()
	if strings.Contains(string(reply), "200 OK") {
		t.Errorf("an endless request was answered: %.100s", reply)
	}
	if resp, err := http.Get(url + "/metrics"); err != nil || resp.StatusCode != 200 {
		t.Errorf("after an endless request: %v", err)
	} else {
		resp.Body.Close()
	}
	ln.Close()
	if err := <-done; err != nil {
		t.Errorf("Serve after the listener closed: %v", err)
	}
}

func TestWriteFile(t *testing.T) {
	s := sample()
	path := filepath.Join(t.TempDir(), "ispbalance.prom")
	if err := os.WriteFile(path+".tmp", []byte("stale"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(path); err != nil || string(data) != sampleText {
		t.Errorf("file: %v\n%s", err, data)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left: %v", err)
	}
	err := s.WriteFile(filepath.Join(t.TempDir(), "missing", "x.prom"))
	if err == nil || !strings.Contains(err.Error(), "writing metrics to ") {
		t.Errorf("writing into a missing directory: %v", err)
	}
}

// TestConcurrent: updates while writing (run with -race to see it).
func TestConcurrent(t *testing.T) {
	s := &Set{}
	c := s.Counter("test_total", "x", "isp")
	h := s.Histogram("test_seconds", "x", []float64{1}, "isp")
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := range 1000 {
				c.With("A").Inc()
				h.With("A").Observe(float64(i % 3))
			}
		})
	}
	for range 50 {
		s.Write(&strings.Builder{})
	}
	wg.Wait()
	var b strings.Builder
	s.Write(&b)
	if !strings.Contains(b.String(), `test_total{isp="A"} 4000`) || !strings.Contains(b.String(), `test_seconds_count{isp="A"} 4000`) {
		t.Errorf("lost updates:\n%s", b.String())
	}
}

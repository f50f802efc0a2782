package monitor

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestDashboardQueriesExportedMetrics: every query of the Grafana
// dashboard shipped in distro/ names metrics the monitor exports, and
// every per-ISP metric is shown somewhere.
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	data, err := os.ReadFile("../../distro/grafana/ispbalance-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
		Templating struct{ List []struct{ Query any } }
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	exported := MetricNames()
	metric := regexp.MustCompile(`\bispbalance_[a-z0-9_]+`)
	used := map[string]bool{}
	check := func(where, expr string) {
		names := metric.FindAllString(expr, -1)
		if len(names) == 0 {
			t.Errorf("%s: %q names no ispbalance metric", where, expr)
		}
		for _, n := range names {
			base := n
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(n, suffix); ok && slices.Contains(exported, b) {
					base = b
				}
			}
			if !slices.Contains(exported, base) {
				t.Errorf("%s: %s is not a metric the monitor exports", where, n)
			}
			used[base] = true
		}
	}
	queries := 0
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			queries++
			check("panel "+p.Title, target.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if q, ok := v.Query.(string); ok && strings.Contains(q, "label_values(") {
			check("variable", q)
		}
	}
	if queries < 10 {
		t.Errorf("only %d queries in the dashboard", queries)
	}
	for _, n := range exported {
		if !used[n] && n != "ispbalance_isp_state" && n != "ispbalance_isp_last_change_timestamp_seconds" {
			t.Errorf("%s is shown by no panel", n)
		}
	}
}

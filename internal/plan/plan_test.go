package plan_test

// Address plan for these tests: see package plantest.

import (
	"bytes"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ispbalance/ispbalance/internal/config"
	"github.com/ispbalance/ispbalance/internal/plan"
	"github.com/ispbalance/ispbalance/internal/plan/plantest"
	"github.com/ispbalance/ispbalance/internal/render"
	"github.com/ispbalance/ispbalance/internal/rules"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// The scenarios and their helpers live in plantest, which the applier's
// tests share.
var (
	link  = plantest.Link
	isp   = plantest.ISP
	lan   = plantest.LAN
	allUp = plantest.AllUp
)

func TestGolden(t *testing.T) {
	for _, sc := range plantest.Scenarios {
		t.Run(sc.Name, func(t *testing.T) { checkGolden(t, sc) })
	}
}

// checkGolden compares the -d script of a scenario's plan with
// testdata/NAME.golden (rewritten with -update).
func checkGolden(t *testing.T, sc plantest.Scenario) {
	t.Helper()
	p, err := sc.Build()
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := render.Script(&got, p); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", sc.Name+".golden")
	if *update {
		if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run with -update to create): %v", err)
	}
	if d := cmp.Diff(string(want), got.String()); d != "" {
		t.Errorf("plan differs from %s (-want +got):\n%s", path, d)
	}
}

// TestBalanceCascadeShares checks that the chain of random matches gives
// every ISP its weight's share, for many weight combinations.
func TestBalanceCascadeShares(t *testing.T) {
	weightSets := [][]int{{1, 1}, {3, 1}, {3, 2, 1}, {1, 1, 1, 1}, {5, 1, 1, 7, 2}, {1, 100}}
	for _, ws := range weightSets {
		var conf strings.Builder
		links := map[string]plan.Link{"lan1": lan(1)}
		up := map[string]bool{}
		for i, w := range ws {
			name := "I" + strconv.Itoa(i+1)
			conf.WriteString(name + " wan" + strconv.Itoa(i+1) + " isp default " + strconv.Itoa(w) + "\n")
			links["wan"+strconv.Itoa(i+1)] = isp(i + 1)
			up[name] = true
		}
		conf.WriteString("LAN lan1 lan\n")
		cfg, err := config.Parse("b", strings.NewReader(conf.String()))
		if err != nil {
			t.Fatal(err)
		}
		p, err := plan.Build(plan.Input{Config: cfg, Links: links, Up: up})
		if err != nil {
			t.Fatal(err)
		}
		var balance plan.Chain
		for _, c := range p.Firewall[1].Chains {
			if c.Name == "ISPB-BALANCE" {
				balance = c
			}
		}
		share := map[string]float64{}
		remaining := 1.0
		for i, rule := range balance.Rules {
			prob := 1.0
			for k, a := range rule {
				if a == "--probability" {
					prob, _ = strconv.ParseFloat(rule[k+1], 64)
				}
			}
			if i == len(balance.Rules)-1 && prob != 1.0 {
				t.Errorf("weights %v: last rule is not unconditional: %v", ws, rule)
			}
			share[strings.TrimPrefix(rule[len(rule)-1], "ISPB-MARK-")] += remaining * prob
			remaining *= 1 - prob
		}
		total := 0
		for _, w := range ws {
			total += w
		}
		for i, w := range ws {
			want := float64(w) / float64(total)
			got := share["I"+strconv.Itoa(i+1)]
			if math.Abs(got-want) > 1e-6 {
				t.Errorf("weights %v: ISP %d gets %.6f, want %.6f", ws, i+1, got, want)
			}
		}
	}
}

func TestNoISPIsAnError(t *testing.T) {
	cfg, err := config.Parse("/etc/network/balance.conf", strings.NewReader("LAN lan1 lan\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = plan.Build(plan.Input{Config: cfg, Links: map[string]plan.Link{"lan1": lan(1)}})
	if err == nil || !strings.Contains(err.Error(), "/etc/network/balance.conf: no isp services") {
		t.Fatalf("got %v, want an error naming the file", err)
	}
}

func TestNothingRoutesToADownISP(t *testing.T) {
	cfg, _ := config.Parse("b", strings.NewReader("A wan1 isp\nB wan2 isp\nC wan3 isp\nLAN lan1 lan\n"))
	links := map[string]plan.Link{"wan1": isp(1), "wan2": isp(2), "wan3": isp(3), "lan1": lan(1)}
	noCarrier := links["wan3"]
	noCarrier.Carrier = false
	links["wan3"] = noCarrier
	p, err := plan.Build(plan.Input{Config: cfg, Links: links, Up: allUp("A", "C")})
	if err != nil {
		t.Fatal(err)
	}
	var script bytes.Buffer
	render.Script(&script, p)
	for _, line := range strings.Split(script.String(), "\n") {
		if strings.HasPrefix(line, "ip route replace default") && strings.Contains(line, "table 4200") &&
			(strings.Contains(line, "wan2") || strings.Contains(line, "wan3")) {
			t.Errorf("balance route uses a down ISP: %s", line)
		}
		if strings.HasPrefix(line, "-A ISPB-BALANCE") && (strings.Contains(line, "MARK-B") || strings.Contains(line, "MARK-C")) {
			t.Errorf("new connections assigned to a down ISP: %s", line)
		}
	}
}

// TestRuleFileErrors: bad rule-file lines fail the plan with file:line.
func TestRuleFileErrors(t *testing.T) {
	cfg, _ := config.Parse("b", strings.NewReader("CABLE wan1 isp\nLAN lan1 lan\n"))
	links := map[string]plan.Link{"wan1": isp(1), "lan1": lan(1)}
	cases := []struct{ text, want string }{
		{"ip rule add from 10.0.0.0/8 lookup 4201 priority 100\n", "r:1: ip rule priority 100: rule files may use 9400-9899"},
		{"ip route add 10.0.0.0/8 proto 5 dev lan1\n", "r:1: ip route: proto is ispbalance's own"},
		{"ip route add 10.0.0.0/8 frobnicate dev lan1\n", `r:1: ip route: "frobnicate" is not understood here`},
		{"ip route del 10.5.0.0/16 dev lan1\n", "r:1: ip route del: no such route from the rule files"},
		{"iptables -D INPUT -j ACCEPT\n", "r:1: nothing to delete"},
		{"force-route NOPE\n", "r:1:"},
	}
	for _, c := range cases {
		f, err := rules.ParseFile("r", rules.Firewall, []byte(c.text))
		if err == nil {
			_, err = plan.Build(plan.Input{Config: cfg, Links: links, Up: allUp("CABLE"), RuleFiles: []rules.File{f}})
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want an error containing %q", c.text, err, c.want)
		}
	}
}

// TestDegradedLeavesWhileAHealthyISPRoutes: an ISP the monitor judged
// degraded carries no new connections while a healthy one routes, and
// routes again when it is the best left (the healthy one down), never
// leaving the LAN without a route; IPv6's degraded verdict acts on IPv6
// alone.
func TestDegradedLeavesWhileAHealthyISPRoutes(t *testing.T) {
	cfg, _ := config.Parse("b", strings.NewReader("A wan1 isp\nB wan2 isp\nLAN lan1 lan\n"))
	links := map[string]plan.Link{"wan1": isp(1), "wan2": isp(2), "lan1": lan(1)}
	routing := func(up map[string]bool, degraded map[string]bool) string {
		t.Helper()
		p, err := plan.Build(plan.Input{Config: cfg, Links: links, Up: up, Degraded: degraded})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, i := range p.ISPs {
			out = append(out, i.Name+"="+strconv.FormatBool(i.Routing))
			if i.Degraded != degraded[i.Name] {
				t.Errorf("%s: Degraded %v, want %v", i.Name, i.Degraded, degraded[i.Name])
			}
		}
		if p.LastResort {
			out = append(out, "last resort")
		}
		return strings.Join(out, " ")
	}
	for _, tc := range []struct {
		name         string
		up, degraded map[string]bool
		want         string
	}{
		{"both healthy", allUp("A", "B"), nil, "A=true B=true"},
		{"A degraded", allUp("A", "B"), allUp("A"), "A=false B=true"},
		{"A degraded, B down", allUp("A"), allUp("A"), "A=true B=false"},
		{"both degraded", allUp("A", "B"), allUp("A", "B"), "A=true B=true"},
		{"A down and degraded, B down", allUp(), allUp("A"), "A=true B=true last resort"},
	} {
		if got := routing(tc.up, tc.degraded); got != tc.want {
			t.Errorf("%s: routing %s, want %s", tc.name, got, tc.want)
		}
	}
}

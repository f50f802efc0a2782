package labtest

import (
	"math"
	"testing"

	"github.com/ispbalance/ispbalance/internal/lab"
)

// TestBalanceByWeight: of 2000 new connections each ISP carries its
// weight's share within 4 percentage points.
func TestBalanceByWeight(t *testing.T) {
	cases := []struct {
		name    string
		weights []int
	}{
		{"1to1", []int{1, 1}},
		{"3to1", []int{3, 1}},
		{"3to2to1", []int{3, 2, 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRouter(t, lab.Options{Prefix: "bal", ISPs: len(tc.weights)}, ispConf(tc.weights...))
			r.startServer()
			r.mustRun()
			const n = 2000
			counts := r.shares(1, n)
			total := 0
			for _, w := range tc.weights {
				total += w
			}
			for i, w := range tc.weights {
				want := float64(w) / float64(total)
				got := float64(counts[i+1]) / n
				t.Logf("ISP%d: %d of %d (%.1f %%, want %.1f %%)", i+1, counts[i+1], n, 100*got, 100*want)
				if math.Abs(got-want) > 0.04 {
					t.Errorf("ISP%d carried %.1f %% of connections, want %.1f %% ± 4", i+1, 100*got, 100*want)
				}
			}
			if counts[0] != 0 {
				t.Errorf("%d connections left by no known ISP", counts[0])
			}
		})
	}
}

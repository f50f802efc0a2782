package lsm

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestKnownOption(t *testing.T) {
	for name, want := range map[string]bool{
		"interval_ms": true, "timeout_ms": true, "max_packet_loss": true, "max_successive_pkts_lost": true,
		"min_packet_loss": true, "min_successive_pkts_rcvd": true, "long_down_time": true, "warn_email": true,
		"debug": true, "eventscript": true, "startup_burst_interval": true, "ttl": true,
		// per service, or not lsm at all
		"checkip": false, "device": false, "sourceip": false, "name": false,
		"mode": false, "forwarding_group": false, "startup_acceptable_delay": false, "logic": false, "": false,
	} {
		if got := KnownOption(name); got != want {
			t.Errorf("KnownOption(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestDefaultsFromOptions(t *testing.T) {
	opt := func(name, value string, line int) Option {
		return Option{Name: name, Value: value, File: "/etc/network/balance.conf", Line: line}
	}
	tests := []struct {
		name string
		opts []Option
		want func() Settings
	}{
		{name: "nothing", want: Defaults},
		{
			// Options outside the decision rules keep ispbalance's rules.
			name: "e-mail and long down only",
			opts: []Option{opt("warn_email", "noc@example.net", 3), opt("long_down_time", "300", 4), opt("debug", "9", 5)},
			want: func() Settings {
				s := Defaults()
				s.WarnEmail, s.LongDownTime = "noc@example.net", 300*time.Second
				return s
			},
		},
		{
			// A tuned balance.conf gets lsm's rules over Net-ISP-Balance's
			// defaults, exactly as before.
			name: "decision option",
			opts: []Option{opt("max_packet_loss", "30", 7)},
			want: func() Settings {
				s := NIBDefaults()
				s.MaxPacketLoss = 30
				return s
			},
		},
		{
			name: "last wins",
			opts: []Option{opt("interval_ms", "2000", 7), opt("interval_ms", "500", 9)},
			want: func() Settings {
				s := NIBDefaults()
				s.Interval = 500 * time.Millisecond
				return s
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DefaultsFromOptions(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want(), got); diff != "" {
				t.Errorf("settings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDefaultsFromOptionsErrors(t *testing.T) {
	opt := func(name, value string, line int) Option {
		return Option{Name: name, Value: value, File: "balance.conf", Line: line}
	}
	tests := []struct {
		name string
		opts []Option
		want []string // each must appear in the error
	}{
		{"unknown", []Option{opt("max_packet_lost", "3", 4)}, []string{`balance.conf:4: unknown option "max_packet_lost"`}},
		{"not a number", []Option{opt("interval_ms", "1s", 5)}, []string{`balance.conf:5: interval_ms: "1s" is not an integer`}},
		{"trailing garbage", []Option{opt("timeout_ms", "500ms", 5)}, []string{`balance.conf:5: timeout_ms: "500ms" is not an integer`}},
		{"out of range", []Option{opt("max_packet_loss", "0", 6)}, []string{"balance.conf:6: max_packet_loss: 0 is out of range 1..100"}},
		{"interval too short", []Option{opt("interval_ms", "5", 6)}, []string{"balance.conf:6: interval_ms: 5 is out of range 20..3600000"}},
		{"bad flag", []Option{opt("check_arp", "yes", 2)}, []string{`balance.conf:2: check_arp: "yes" is not an integer`}},
		{"bad status", []Option{opt("status", "7", 2)}, []string{"balance.conf:2: status: 7 is out of range 0..3"}},
		{"bad debug", []Option{opt("debug", "x", 1)}, []string{`balance.conf:1: debug: "x" is not an integer`}},
		{"per service", []Option{opt("checkip", "192.0.2.1", 8)}, []string{"balance.conf:8: checkip cannot be set here: it comes from the PING-IP column"}},
		{"relative script", []Option{opt("eventscript", "bin/x", 8)}, []string{`balance.conf:8: eventscript: "bin/x" is not an absolute path`}},
		{
			// Net-ISP-Balance's min_packet_loss is 10: lowering only the
			// maximum made lsm refuse to start.
			name: "flip-flop blames the later line",
			opts: []Option{opt("min_packet_loss", "5", 3), opt("max_packet_loss", "5", 9)},
			want: []string{"balance.conf:9: max_packet_loss (5) must be greater than min_packet_loss (5)"},
		},
		{
			name: "all errors at once",
			opts: []Option{opt("foo", "1", 1), opt("ttl", "300", 2)},
			want: []string{`balance.conf:1: unknown option "foo"`, "balance.conf:2: ttl: 300 is out of range 0..255"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DefaultsFromOptions(tt.opts)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestDefaultsFalseDownProbability computes how likely 60 s of 10 %
// independent loss is to bring a link down under Defaults, as documented
// there. The run rule is computed exactly; for the window rule every one
// of the 200 decisions sees at most 30 lossy probes, so 200 times the
// binomial tail bounds it from above.
func TestDefaultsFalseDownProbability(t *testing.T) {
	s := Defaults()
	const p = 0.10
	n := int(60 * time.Second / s.Interval)

	// run[k]: probability that the current run of losses is k and no run
	// has reached MaxSuccessivePktsLost yet.
	run := make([]float64, s.MaxSuccessivePktsLost)
	run[0] = 1
	hit := 0.0
	for range n {
		next := make([]float64, len(run))
		for k, pr := range run {
			next[0] += pr * (1 - p)
			if k+1 == len(run) {
				hit += pr * p
			} else {
				next[k+1] += pr * p
			}
		}
		run = next
	}

	tail := 0.0
	for k := s.MaxPacketLoss; k <= s.Window; k++ {
		tail += binomial(s.Window, k) * math.Pow(p, float64(k)) * math.Pow(1-p, float64(s.Window-k))
	}
	bound := hit + float64(n)*tail
	t.Logf("10%% loss for 60 s (%d probes): P(run ≥ %d) = %.2g, P(≥ %d of %d) ≤ %d × %.2g; total ≤ %.2g",
		n, s.MaxSuccessivePktsLost, hit, s.MaxPacketLoss, s.Window, n, tail, bound)
	if bound > 6.3e-5 {
		t.Errorf("false-down bound %.2g is above the documented 6.3e-5", bound)
	}
	// And the 70 % side: one window of it stays under the threshold with
	// the documented probability of about 0.002.
	under := 0.0
	for k := 0; k < s.MaxPacketLoss; k++ {
		under += binomial(s.Window, k) * math.Pow(0.7, float64(k)) * math.Pow(0.3, float64(s.Window-k))
	}
	if under > 0.02 {
		t.Errorf("P(window at 70%% loss under threshold) = %.2g, documented as 0.017", under)
	}
}

func binomial(n, k int) float64 {
	r := 1.0
	for i := 1; i <= k; i++ {
		r = r * float64(n-k+i) / float64(i)
	}
	return r
}

// The thresholds fit the window, so Defaults is itself valid.
func TestProfilesAreValid(t *testing.T) {
	for name, s := range map[string]Settings{"Defaults": Defaults(), "NIBDefaults": NIBDefaults(), "FoolsmDefaults": FoolsmDefaults()} {
		if err := checkSettings(s); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

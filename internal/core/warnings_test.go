package core

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/ispbalance/ispbalance/internal/detect"
	"github.com/ispbalance/ispbalance/internal/plan"
)

// TestWarningsLoggedOnce: while DHCP has not finished on an uplink, every
// hook event's rebuild meets the same warnings; each is logged by the
// first, its end is logged, and it is logged again when it comes back.
func TestWarningsLoggedOnce(t *testing.T) {
	var log bytes.Buffer
	opts := Options{RunDir: t.TempDir(), Log: slog.New(slog.NewTextHandler(&log, nil))}
	waiting := Facts{
		Links: map[string]detect.Link{"wan2": {Warnings: []string{"lease file /var/lib/dhcp/dhclient.wan2.leases unreadable"}}},
		Plan:  plan.Plan{Skipped: []plan.Skipped{{Service: "DSL", Device: "wan2", Reason: "no gateway found"}}},
	}
	count := func(s string) int { return strings.Count(log.String(), s) }
	for range 3 {
		logPlanNotes(opts, waiting)
	}
	if n, m := count("service skipped until its device is ready"), count("discovery: lease file"); n != 1 || m != 1 {
		t.Fatalf("three rebuilds logged the skip %d times and the lease %d times, want once each:\n%s", n, m, log.String())
	}
	logPlanNotes(opts, Facts{})
	if n := count(`msg="warning cleared" warning="service skipped until its device is ready service=DSL device=wan2 reason=no gateway found"`); n != 1 {
		t.Errorf("the end of the skip logged %d times:\n%s", n, log.String())
	}
	logPlanNotes(opts, waiting)
	if n := count("level=WARN msg=\"service skipped until its device is ready\""); n != 2 {
		t.Errorf("a skip that came back is logged %d times in all, want 2:\n%s", n, log.String())
	}
	// The admin's own run shows it all the same.
	opts.EveryWarning = true
	logPlanNotes(opts, waiting)
	if n := count("level=WARN msg=\"service skipped until its device is ready\""); n != 3 {
		t.Errorf("the admin's run did not log the skip again:\n%s", log.String())
	}
}

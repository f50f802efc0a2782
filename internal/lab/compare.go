package lab

import (
	"strings"
	"testing"
	"time"
)

// Snapshots of kernel state (ip rule, ip route, iptables-save) are
// compared as text to prove that something was left as it was. These
// drop what changes by itself, not by configuration.

// WithoutCarrierFlags drops the flags the kernel sets on routes as
// carrier comes and goes ("dead", "linkdown"): a fresh lab's links may
// still be settling between two snapshots, and they say nothing about
// what was configured.
func WithoutCarrierFlags(routes string) string {
	return strings.NewReplacer(" dead", "", " linkdown", "").Replace(routes)
}

// WithoutEmptyTables drops iptables tables that hold only built-in
// chains with ACCEPT policies and no rules. With the nf_tables backend,
// touching a table creates it; an empty table filters nothing, so "as
// before" does not depend on whether it is listed.
func WithoutEmptyTables(save string) string {
	var out, table []string
	empty := true
	for _, line := range strings.Split(save, "\n") {
		switch {
		case strings.HasPrefix(line, "*"):
			table, empty = []string{line}, true
		case table != nil && line == "COMMIT":
			if !empty {
				out = append(out, table...)
				out = append(out, line)
			}
			table = nil
		case table != nil:
			table = append(table, line)
			if !(strings.HasPrefix(line, ":") && strings.HasSuffix(line, " ACCEPT")) {
				empty = false
			}
		default:
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// StripCounters drops iptables-save's comments and packet counters, which
// change with traffic, not with configuration.
func StripCounters(save string) string {
	var out []string
	for _, line := range strings.Split(save, "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, ":") {
			if i := strings.Index(line, " ["); i > 0 {
				line = line[:i]
			}
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

// WaitFor polls cond every 50 ms until it holds, failing the test when it
// does not within limit; it returns how long that took. Tests wait for
// readiness this way, never for a fixed time.
func WaitFor(tb testing.TB, what string, limit time.Duration, cond func() bool) time.Duration {
	tb.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			tb.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

package cli

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ispbalance/ispbalance/internal/hook"
)

func TestSeenBefore(t *testing.T) {
	dir := t.TempDir()
	gw := netip.MustParseAddr("100.64.1.1")
	now := time.Now()
	up := hook.Event{Device: "wan1", Action: hook.Up, Gateway: gw}
	steps := []struct {
		name string
		ev   hook.Event
		at   time.Duration
		dup  bool
	}{
		{"first up", up, 0, false},
		{"the same up", up, time.Second, true},
		{"the replay without a gateway", hook.Event{Device: "wan1", Action: hook.Up}, 2 * time.Second, true},
		{"another device", hook.Event{Device: "wan2", Action: hook.Up, Gateway: gw}, 2 * time.Second, false},
		{"a change after the up", hook.Event{Device: "wan1", Action: hook.Change, Gateway: gw}, 3 * time.Second, false},
		{"a new router", hook.Event{Device: "wan1", Action: hook.Change, Gateway: netip.MustParseAddr("100.64.1.254")}, 4 * time.Second, false},
		{"down", hook.Event{Device: "wan1", Action: hook.Down}, 5 * time.Second, false},
		{"down again", hook.Event{Device: "wan1", Action: hook.Down}, 6 * time.Second, true},
		{"down once the window passed", hook.Event{Device: "wan1", Action: hook.Down}, 5*time.Second + dedupeWindow, false},
	}
	for _, s := range steps {
		dup, err := seenBefore(dir, s.ev, now.Add(s.at))
		if err != nil {
			t.Fatal(err)
		}
		if dup != s.dup {
			t.Errorf("%s: repeat = %v, want %v", s.name, dup, s.dup)
		}
	}
	forget(dir, "wan1")
	if dup, _ := seenBefore(dir, hook.Event{Device: "wan1", Action: hook.Down}, now.Add(5*time.Second+dedupeWindow)); dup {
		t.Errorf("a forgotten event counts as a repeat")
	}
	// A damaged record costs a repeat, not an error.
	os.WriteFile(eventsPath(dir), []byte("{not json"), 0o644)
	if dup, err := seenBefore(dir, up, now); dup || err != nil {
		t.Errorf("damaged record: %v, %v", dup, err)
	}
}

// A hook's refusals and no-ops all exit 0 and touch nothing; the hook's
// arguments are never taken for options, even when they look like them.
func TestHookQuiet(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "balance.conf")
	os.WriteFile(conf, []byte("# nothing configured\n"), 0o644)
	run := func(env map[string]string, args ...string) (int, string) {
		var stderr bytes.Buffer
		code := Run(context.Background(), Env{
			Args:   append([]string{"-c", conf, "--run-dir", filepath.Join(dir, "run"), "--root", dir, "hook"}, args...),
			Stdout: &bytes.Buffer{}, Stderr: &stderr,
			Getenv: func(k string) string { return env[k] },
		})
		return code, stderr.String()
	}
	if code, out := run(map[string]string{"reason": "RENEW", "interface": "wan1", "new_routers": "100.64.1.1"}, "dhclient"); code != 0 || out != "" {
		t.Errorf("no ISPs configured: exit %d, %q", code, out)
	}
	if code, out := run(nil, "ifup-local", "-c"); code != 0 || out != "" {
		t.Errorf("a device named like an option: exit %d, %q", code, out)
	}
	if code, out := run(map[string]string{"reason": "RENEW", "interface": "wan1", "new_routers": "1.2.3.4;id"}, "dhclient"); code != 0 || !bytes.Contains([]byte(out), []byte("new_routers")) {
		t.Errorf("hostile router: exit %d, %q", code, out)
	}
	if code, _ := run(nil); code != 0 {
		t.Errorf("no source: exit %d", code)
	}
	if _, err := os.Stat(filepath.Join(dir, "run")); !os.IsNotExist(err) {
		t.Errorf("quiet hooks created the run directory (%v)", err)
	}
	os.WriteFile(conf, []byte("ISP1 wan1 isp\nLAN lan1 lan\n"), 0o644)
	if code, out := run(map[string]string{"IFACE": "eth7", "MODE": "start", "PHASE": "post-up", "ADDRFAM": "inet"}, "ifupdown"); code != 0 || out != "" {
		t.Errorf("unconfigured device: exit %d, %q", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "run")); !os.IsNotExist(err) {
		t.Errorf("an event about an unconfigured device created the run directory (%v)", err)
	}
}

// TestHooksOff: with hooks=off a DHCP renewal on a configured uplink
// leaves no trace (no lease record, no rebuild); with hooks on, the same
// event is recorded. The stop marker keeps the hook from rebuilding this
// machine's network either way.
func TestHooksOff(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "balance.conf")
	state := filepath.Join(dir, "state")
	os.MkdirAll(filepath.Join(state, "ispbalance"), 0o755)
	os.WriteFile(filepath.Join(state, "ispbalance", "stopped"), nil, 0o644)
	renewal := map[string]string{"reason": "RENEW", "interface": "wan1", "new_routers": "100.64.1.1", "new_ip_address": "100.64.1.2"}
	record := filepath.Join(dir, "run/ispbalance/leases/wan1")
	run := func() string {
		var stderr bytes.Buffer
		code := Run(context.Background(), Env{
			Args:   []string{"-c", conf, "--run-dir", filepath.Join(dir, "run"), "--state-dir", state, "--root", dir, "hook", "dhclient"},
			Stdout: &bytes.Buffer{}, Stderr: &stderr,
			Getenv: func(k string) string { return renewal[k] },
		})
		if code != 0 {
			t.Fatalf("hook exit %d: %s", code, stderr.String())
		}
		return stderr.String()
	}
	os.WriteFile(conf, []byte("ISP1 wan1 isp\nLAN lan1 lan\nhooks=off\n"), 0o644)
	if out := run(); out != "" {
		t.Errorf("hooks=off: the hook said %q", out)
	}
	if _, err := os.Stat(record); !os.IsNotExist(err) {
		t.Fatalf("hooks=off: the renewal was recorded (%v)", err)
	}
	os.WriteFile(conf, []byte("ISP1 wan1 isp\nLAN lan1 lan\nhooks=on\n"), 0o644)
	run()
	if _, err := os.Stat(record); err != nil {
		t.Fatalf("hooks=on: the renewal was not recorded: %v", err)
	}
}

package monitor

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ispbalance/ispbalance/internal/lsm"
	"github.com/ispbalance/ispbalance/internal/trust"
)

// TestResolveTargets: literal addresses are used as they are, host names
// are looked up and looked up again after resolveEvery, the gateway is
// probed when no target is configured or none resolves, each with a
// warning for the status.
func TestResolveTargets(t *testing.T) {
	answers := map[string][]netip.Addr{"probe.example": {netip.MustParseAddr("192.0.2.7")}}
	lookups := 0
	m := New(Options{Default: lsm.Defaults(), Resolve: func(_ context.Context, _, host string) ([]netip.Addr, error) {
		lookups++
		if a, ok := answers[host]; ok {
			return a, nil
		}
		return nil, errors.New("no such host")
	}}, nil)
	gw := netip.MustParseAddr("100.64.1.1")
	now := time.Now()
	l := &link{target: Target{Gateway: gw, Ping: []string{"198.51.100.9", "probe.example"}}}
	m.resolve(context.Background(), l, now)
	if want := []netip.Addr{netip.MustParseAddr("198.51.100.9"), netip.MustParseAddr("192.0.2.7")}; !slices.Equal(l.dsts, want) || l.warning != "" {
		t.Errorf("targets %v (warning %q), want %v", l.dsts, l.warning, want)
	}
	answers["probe.example"] = []netip.Addr{netip.MustParseAddr("192.0.2.8")}
	m.resolve(context.Background(), l, now.Add(time.Minute))
	if lookups != 1 {
		t.Errorf("looked up again after a minute (%d lookups)", lookups)
	}
	m.resolve(context.Background(), l, now.Add(resolveEvery+time.Second))
	if !slices.Contains(l.dsts, netip.MustParseAddr("192.0.2.8")) {
		t.Errorf("a changed address was not followed: %v", l.dsts)
	}

	none := &link{target: Target{Gateway: gw}}
	m.resolve(context.Background(), none, now)
	if !slices.Equal(none.dsts, []netip.Addr{gw}) || none.warning == "" {
		t.Errorf("no ping column: targets %v warning %q, want the gateway with a warning", none.dsts, none.warning)
	}
	dead := &link{target: Target{Gateway: gw, Ping: []string{"nowhere.example"}}}
	m.resolve(context.Background(), dead, now)
	if !slices.Equal(dead.dsts, []netip.Addr{gw}) || dead.warning == "" {
		t.Errorf("unresolvable target: %v warning %q, want the gateway with a warning", dead.dsts, dead.warning)
	}
}

// TestDirectoryScripts: the executables of <state>.d are listed in
// order; when one could be changed by others, none is, unless
// balance.conf allows it.
func TestDirectoryScripts(t *testing.T) {
	dir := t.TempDir()
	downD := filepath.Join(dir, "down.d")
	os.Mkdir(downD, 0o755)
	for name, mode := range map[string]os.FileMode{"20-second": 0o755, "10-first": 0o755, "30-not-executable": 0o644, "40-backup~": 0o755} {
		os.WriteFile(filepath.Join(downD, name), []byte("#!/bin/sh\n"), mode)
	}
	m := New(Options{}, nil)
	want := []string{filepath.Join(downD, "10-first"), filepath.Join(downD, "20-second")}
	if got := m.directoryScripts(dir, "down"); !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if got := m.directoryScripts(dir, "up"); got != nil {
		t.Errorf("a missing directory lists %v", got)
	}
	os.Chmod(filepath.Join(downD, "20-second"), 0o777)
	if got := m.directoryScripts(dir, "down"); got != nil {
		t.Errorf("with a world-writable script: %v, want none", got)
	}
	m = New(Options{Files: trust.Allow}, nil)
	if got := m.directoryScripts(dir, "down"); !slices.Equal(got, want) {
		t.Errorf("with insecure_files=allow: %v, want %v", got, want)
	}
}

// TestRunsScriptsWithLimit: a script is killed at its time limit, and
// others of the same event run meanwhile with lsm's 16 arguments.
func TestRunsScriptsWithLimit(t *testing.T) {
	dir := t.TempDir()
	downD := filepath.Join(dir, "down.d")
	os.Mkdir(downD, 0o755)
	out := filepath.Join(dir, "out")
	os.WriteFile(filepath.Join(downD, "00-hang"), []byte("#!/bin/sh\nsleep 30\n"), 0o755)
	os.WriteFile(filepath.Join(downD, "10-count"), []byte("#!/bin/sh\necho $# $1 $2 > "+out+"\n"), 0o755)
	m := New(Options{ScriptDir: dir, ScriptTimeout: 300 * time.Millisecond}, nil)
	m.scriptCtx, m.stopScript = context.WithCancel(context.Background())
	defer m.stopScript()
	start := time.Now()
	m.runEventScripts(lsm.Event{Name: "CABLE", State: lsm.Down, Prev: lsm.Up, Time: start}, "ipv4")
	m.scripts.Wait()
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("waiting for scripts took %v; the hanging one was not stopped at its limit", took)
	}
	data, err := os.ReadFile(out)
	if err != nil || string(data) != "16 down CABLE\n" {
		t.Errorf("script output %q, %v; want 16 arguments, down, CABLE", data, err)
	}
}

// TestResolveTargetsIPv6: an ISP's IPv6 half probes the IPv6 targets of
// the PING-IP column (host names looked up as AAAA), never the IPv4 ones,
// and its link-local gateway with the device as zone when it has none.
func TestResolveTargetsIPv6(t *testing.T) {
	var networks []string
	m := New(Options{Default: lsm.Defaults(), Resolve: func(_ context.Context, network, host string) ([]netip.Addr, error) {
		networks = append(networks, network)
		if network == "ip6" {
			return []netip.Addr{netip.MustParseAddr("2001:db8:ff::7")}, nil
		}
		return []netip.Addr{netip.MustParseAddr("192.0.2.7")}, nil
	}}, nil)
	gw := netip.MustParseAddr("fe80::1")
	now := time.Now()
	l := &link{target: Target{Service: "CABLE.ipv6", Base: "CABLE", IPv6: true, Device: "wan1", Gateway: gw,
		Ping: []string{"198.51.100.9", "2001:db8:ff::10", "probe.example"}}}
	m.resolve(context.Background(), l, now)
	if want := []netip.Addr{netip.MustParseAddr("2001:db8:ff::10"), netip.MustParseAddr("2001:db8:ff::7")}; !slices.Equal(l.dsts, want) {
		t.Errorf("IPv6 targets %v, want %v", l.dsts, want)
	}
	if !slices.Equal(networks, []string{"ip6"}) {
		t.Errorf("host names looked up as %v, want ip6 only", networks)
	}
	only4 := &link{target: Target{Service: "CABLE.ipv6", IPv6: true, Device: "wan1", Gateway: gw, Ping: []string{"198.51.100.9"}}}
	m.resolve(context.Background(), only4, now)
	if want := []netip.Addr{gw.WithZone("wan1")}; !slices.Equal(only4.dsts, want) || only4.warning == "" {
		t.Errorf("no IPv6 target: %v (warning %q), want the gateway %v with a warning", only4.dsts, only4.warning, want)
	}
	v4 := &link{target: Target{Service: "CABLE", Device: "wan1", Gateway: netip.MustParseAddr("100.64.1.1"),
		Ping: []string{"2001:db8:ff::10", "198.51.100.9"}}}
	m.resolve(context.Background(), v4, now)
	if want := []netip.Addr{netip.MustParseAddr("198.51.100.9")}; !slices.Equal(v4.dsts, want) {
		t.Errorf("IPv4 targets %v, want %v", v4.dsts, want)
	}
}

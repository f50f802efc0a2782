package detect

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestHookLease(t *testing.T) {
	root := t.TempDir()
	addr := netip.MustParsePrefix("100.64.1.2/24")
	now := time.Now()
	gw := netip.MustParseAddr("100.64.1.254")
	if g, _, w := hookGateway(root, "wan1", addr, now); g.IsValid() || w != "" {
		t.Fatalf("no record: got %v, %q", g, w)
	}
	if err := WriteHookLease(root, "wan1", HookLease{Gateway: gw, Addr: addr.Addr(), Expires: now.Add(time.Minute), Source: "dhclient RENEW"}); err != nil {
		t.Fatal(err)
	}
	if g, from, w := hookGateway(root, "wan1", addr, now); g != gw || from != "dhclient RENEW" || w != "" {
		t.Errorf("fresh record: got %v from %q (%q)", g, from, w)
	}
	if g, _, _ := hookGateway(root, "wan1", netip.MustParsePrefix("100.64.1.3/24"), now); g.IsValid() {
		t.Errorf("record for another address used: %v", g)
	}
	if g, _, _ := hookGateway(root, "wan1", addr, now.Add(2*time.Minute)); g.IsValid() {
		t.Errorf("expired record used: %v", g)
	}
	if err := RemoveHookLease(root, "wan1"); err != nil {
		t.Fatal(err)
	}
	if g, _, _ := hookGateway(root, "wan1", addr, now); g.IsValid() {
		t.Errorf("removed record used: %v", g)
	}
	if err := RemoveHookLease(root, "wan1"); err != nil {
		t.Errorf("removing twice: %v", err)
	}
	for _, bad := range []string{"", "..", "../x", "a/b", "averyveryverylongname"} {
		if err := WriteHookLease(root, bad, HookLease{Gateway: gw}); err == nil {
			t.Errorf("WriteHookLease(%q) accepted the name", bad)
		}
	}
	// A file that is not a record is reported, not used.
	path := filepath.Join(root, HookLeaseDir, "wan2")
	if err := os.WriteFile(path, []byte("gateway 1.2.3.4;id\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if g, _, w := hookGateway(root, "wan2", addr, now); g.IsValid() || !strings.Contains(w, "not a record") {
		t.Errorf("junk record: got %v, %q", g, w)
	}
}

// TestHookLeaseUnusableGateway: a record is a file under /run like any
// other; a gateway in it that could never be a next hop is not used.
func TestHookLeaseUnusableGateway(t *testing.T) {
	root := t.TempDir()
	addr := netip.MustParsePrefix("100.64.1.2/24")
	for _, gw := range []string{"127.0.0.1", "224.0.0.1", "255.255.255.255", "0.0.0.0", "::ffff:100.64.1.1", "2001:db8::1"} {
		if err := WriteHookLease(root, "wan1", HookLease{Gateway: netip.MustParseAddr(gw), Source: "dhclient BOUND"}); err != nil {
			t.Fatal(err)
		}
		if g, _, w := hookGateway(root, "wan1", addr, time.Now()); g.IsValid() || w != "" {
			t.Errorf("record with gateway %s: got %v, %q; want none", gw, g, w)
		}
	}
}

func TestGatewayOrderWithHookAndNetworkManager(t *testing.T) {
	addr := netip.MustParsePrefix("100.64.1.2/24")
	a := netip.MustParseAddr
	f := gatewayFacts{Addr: addr, Route: a("100.64.1.1"), Hook: a("100.64.1.254"), HookFrom: "dhclient RENEW",
		NM: a("100.64.1.9"), Lease: a("100.64.1.8"), LeasePath: "/x"}
	if g, from := chooseGateway(f); g != a("100.64.1.254") || from != "hook:dhclient RENEW" {
		t.Errorf("hook record should beat a stale route: got %v from %s", g, from)
	}
	f.Hook = netip.Addr{}
	if g, from := chooseGateway(f); g != a("100.64.1.1") || from != FromRoute {
		t.Errorf("route should beat NetworkManager: got %v from %s", g, from)
	}
	f.Route = netip.Addr{}
	if g, from := chooseGateway(f); g != a("100.64.1.9") || from != FromNetworkManager {
		t.Errorf("NetworkManager should beat lease files: got %v from %s", g, from)
	}
	f.Config = a("100.64.1.77")
	if g, from := chooseGateway(f); g != f.Config || from != FromConfig {
		t.Errorf("configuration should beat everything: got %v from %s", g, from)
	}
}

func TestNetworkManagerWithoutBus(t *testing.T) {
	if _, err := os.Stat(systemBusSocket); err == nil {
		t.Skip("this machine has a system bus")
	}
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "")
	start := time.Now()
	if _, err := NetworkManagerIP4(t.Context(), "wan1"); err != ErrNoNetworkManager {
		t.Errorf("without a bus: %v, want ErrNoNetworkManager", err)
	}
	s := newNMSource(true)
	defer s.close()
	for range 10 {
		if g := s.gateway("wan1"); g.IsValid() {
			t.Errorf("gateway without a bus: %v", g)
		}
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Errorf("asking without a bus took %v", d)
	}
}

package plan_test

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ispbalance/ispbalance/internal/config"
	"github.com/ispbalance/ispbalance/internal/plan"
	"github.com/ispbalance/ispbalance/internal/render"
)

func mustParse(t *testing.T, conf string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("/etc/network/balance.conf", strings.NewReader(conf))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestConfiguredGatewayIsOwnAddress: a GATEWAY column naming one of the
// router's addresses is an error at that line, whichever device has it.
func TestConfiguredGatewayIsOwnAddress(t *testing.T) {
	for gw, dev := range map[string]string{"100.64.1.2": "wan1", "192.168.1.1": "lan1"} {
		cfg := mustParse(t, "# uplinks\nCABLE wan1 isp default 1 "+gw+"\nDSL wan2 isp\nLAN lan1 lan\n")
		wan1 := isp(1)
		wan1.Gateway, wan1.GatewayFrom = cfg.Services[0].Gateway, "config"
		_, err := plan.Build(plan.Input{Config: cfg, Links: map[string]plan.Link{"wan1": wan1, "wan2": isp(2), "lan1": lan(1)}, Up: allUp("CABLE", "DSL")})
		want := "/etc/network/balance.conf:2: service CABLE: gateway " + gw + " is this router's own address on " + dev
		var le *config.LineError
		if err == nil || err.Error() != want || !errors.As(err, &le) {
			t.Errorf("gateway %s: got %v, want %s", gw, err, want)
		}
	}
}

// TestDiscoveredGatewayIsOwnAddress: a discovered gateway that is the
// router's own address leaves that ISP out, saying why, and the others in.
func TestDiscoveredGatewayIsOwnAddress(t *testing.T) {
	cfg := mustParse(t, "CABLE wan1 isp\nDSL wan2 isp\nLAN lan1 lan\n")
	wan2 := isp(2)
	wan2.Gateway, wan2.GatewayFrom = netip.MustParseAddr("100.64.2.2"), "lease:/var/lib/dhcp/dhclient.wan2.leases"
	p, err := plan.Build(plan.Input{Config: cfg, Links: map[string]plan.Link{"wan1": isp(1), "wan2": wan2, "lan1": lan(1)}, Up: allUp("CABLE", "DSL")})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.ISPs) != 1 || p.ISPs[0].Name != "CABLE" {
		t.Errorf("planned ISPs %+v, want CABLE only", p.ISPs)
	}
	want := []plan.Skipped{{Service: "DSL", Device: "wan2", Reason: "gateway 100.64.2.2 (from lease:/var/lib/dhcp/dhclient.wan2.leases) is this router's own address on wan2"}}
	if d := cmp.Diff(want, p.Skipped); d != "" {
		t.Errorf("skipped (-want +got):\n%s", d)
	}
	for _, r := range p.Routes {
		if r.Device == "wan2" || r.Gateway == netip.MustParseAddr("100.64.2.2") {
			t.Errorf("a route through DSL: %+v", r)
		}
	}
}

// TestGatewayOutsideSubnet: an off-subnet gateway is planned onlink with
// a warning, shown by -d; point-to-point uplinks get none.
func TestGatewayOutsideSubnet(t *testing.T) {
	cfg := mustParse(t, "CABLE wan1 isp default 1 10.9.9.1\nDSL ppp0 isp\nFIBER wan3 isp\nLAN lan1 lan\n")
	wan1 := isp(1)
	wan1.Gateway, wan1.GatewayFrom = netip.MustParseAddr("10.9.9.1"), "config"
	// An address with a peer in another subnet, on a link that is not ppp.
	wan3 := link("wan3", "100.64.3.2/24", "100.64.30.1", "peer")
	wan3.PointToPoint = true
	links := map[string]plan.Link{"wan1": wan1, "ppp0": link("ppp0", "100.64.9.2/32", "100.64.9.1", "peer"), "wan3": wan3, "lan1": lan(1)}
	p, err := plan.Build(plan.Input{Config: cfg, Links: links, Up: allUp("CABLE", "DSL", "FIBER")})
	if err != nil {
		t.Fatal(err)
	}
	warnings := map[string][]string{}
	for _, i := range p.ISPs {
		warnings[i.Name] = i.Warnings
	}
	want := map[string][]string{"CABLE": {"gateway 10.9.9.1 is outside wan1's subnet 100.64.1.0/24; installed onlink"}, "DSL": nil, "FIBER": nil}
	if d := cmp.Diff(want, warnings); d != "" {
		t.Errorf("warnings (-want +got):\n%s", d)
	}
	var got bytes.Buffer
	if err := render.Script(&got, p); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "gateway-outside-subnet.golden")
	if *update {
		if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	golden, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run with -update to create): %v", err)
	}
	if d := cmp.Diff(string(golden), got.String()); d != "" {
		t.Errorf("plan differs from %s (-want +got):\n%s", path, d)
	}
}

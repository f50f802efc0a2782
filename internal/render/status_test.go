package render

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
)

func TestStatusShowsWarnings(t *testing.T) {
	report := StatusReport{Firewall: "installed", Rows: []StatusRow{
		{Service: "CABLE", Device: "wan1", Role: "isp", State: "up", Routing: true,
			Addr: netip.MustParsePrefix("100.64.1.2/24"), Gateway: netip.MustParseAddr("10.9.9.1"), GatewayFrom: "config",
			Warnings: []string{"gateway 10.9.9.1 is outside wan1's subnet 100.64.1.0/24; installed onlink"}},
		{Service: "LAN", Device: "lan1", Role: "lan", State: "up", Addr: netip.MustParsePrefix("192.168.1.1/24")},
	}}
	var b bytes.Buffer
	if err := Status(&b, report); err != nil {
		t.Fatal(err)
	}
	want := "warning: CABLE: gateway 10.9.9.1 is outside wan1's subnet 100.64.1.0/24; installed onlink\nFirewall: installed\n"
	if !strings.Contains(b.String(), want) {
		t.Errorf("status does not show the warning before the firewall line:\n%s", b.String())
	}
	j, err := json.Marshal(report)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(j), `"warnings":["gateway 10.9.9.1 is outside`) || strings.Count(string(j), `"warnings"`) != 1 {
		t.Errorf("JSON: %s", j)
	}
}

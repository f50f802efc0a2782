package render

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"
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

func TestStatusShowsMonitorFigures(t *testing.T) {
	since := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	report := StatusReport{Firewall: "in place", Monitor: &MonitorStatus{PID: 42, ISPs: []MonitorISP{
		{Service: "CABLE", State: "up", Since: since, InStateSeconds: 3725, LossPercent: 4, AvgRTTms: 12.34, P95RTTms: 20, JitterMs: 3.5,
			Traffic: &MonitorTraffic{Bytes: 1_234_567_890, BytesPercent: 75, Connections: 300, ConnectionsPercent: 60, Tracked: 12}},
		{Service: "CABLE.ipv6", IPv6: true, State: "up", Since: since, InStateSeconds: 59,
			Traffic: &MonitorTraffic{Connections: 100, ConnectionsPercent: 20, Tracked: 3}},
		{Service: "DSL", State: "down", Since: since, InStateSeconds: 200000, LossPercent: 100, HoldSeconds: 30,
			Traffic: &MonitorTraffic{Bytes: 999, BytesPercent: 25, Connections: 100, ConnectionsPercent: 20}},
		{Service: "LTE", State: "unknown"},
	}}}
	var b strings.Builder
	if err := Status(&b, report); err != nil {
		t.Fatal(err)
	}
	// Trailing blanks (no targets here) do not matter.
	var lines []string
	for _, l := range strings.Split(b.String(), "\n") {
		lines = append(lines, strings.TrimRight(l, " "))
	}
	got := strings.Join(lines, "\n") + "\n"
	for _, want := range []string{
		"  ISP         Monitor state                                    Since                For    Loss   RTT avg/p95/jitter  Traffic        Connections          Targets\n",
		"  CABLE       up                                               2026-03-01 12:00:00  1h02m  4 %    12.3/20.0/3.5 ms    1.2 GB (75 %)  300 (60 %), 12 open\n",
		"  CABLE.ipv6  up                                               2026-03-01 12:00:00  59s    0 %    -                   -              100 (20 %), 3 open\n",
		"  DSL         down (held: flapping, 30 s more of good probes)  2026-03-01 12:00:00  2d07h  100 %  -                   999 B (25 %)   100 (20 %), 0 open\n",
		"  LTE         unknown                                          -                    0s     0 %    -                   -              -\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("status lacks %q:\n%s", want, got)
		}
	}
}

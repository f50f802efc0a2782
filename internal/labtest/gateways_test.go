package labtest

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/ispbalance/ispbalance/internal/lab"
	"github.com/ispbalance/ispbalance/internal/render"
)

// TestOwnAddressAsGateway: the router's own address in the gateway column
// fails the run at that line and changes nothing.
func TestOwnAddressAsGateway(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "gwown"}, ispConf(1, 1))
	r.mustRun()
	before := r.kernelState()
	r.writeConf("ISP1 wan1 isp default 1\nISP2 wan2 isp default 1 " + r.lab.RouterISPAddr(2).String() + "\nLAN lan1 lan\n")
	out, err := r.run()
	want := r.conf + ":2: service ISP2: gateway " + r.lab.RouterISPAddr(2).String() + " is this router's own address on wan2"
	if err == nil || !strings.Contains(out, want) {
		t.Errorf("got %v:\n%s\nwant %s", err, out, want)
	}
	if after := r.kernelState(); after != before {
		t.Errorf("the refused configuration changed the kernel state:\n--- before\n%s\n--- after\n%s", before, after)
	}
}

// TestGatewayOutsideSubnetWarns: a gateway outside the uplink's subnet is
// installed onlink, and both the run and -s say so.
func TestGatewayOutsideSubnetWarns(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "gwoff"}, "ISP1 wan1 isp default 1 10.9.9.1\nISP2 wan2 isp\nLAN lan1 lan\n")
	warning := "gateway 10.9.9.1 is outside wan1's subnet 100.64.1.0/24; installed onlink"
	if out := r.mustRun(); !strings.Contains(out, warning) {
		t.Errorf("the run does not warn %q:\n%s", warning, out)
	}
	if out := r.sh("router", "ip", "route", "show", "table", "4201"); !strings.Contains(out, "default via 10.9.9.1 dev wan1") || !strings.Contains(out, "onlink") {
		t.Errorf("table 4201:\n%s", out)
	}
	if out := r.mustRun("-s"); !strings.Contains(out, "warning: ISP1: "+warning) {
		t.Errorf("-s does not show the warning:\n%s", out)
	}
	var report render.StatusReport
	if out := r.mustRun("-s", "--json"); json.Unmarshal([]byte(out), &report) != nil || len(report.Rows) == 0 ||
		!slices.Equal(report.Rows[0].Warnings, []string{warning}) {
		t.Errorf("-s --json does not show the warning:\n%s", out)
	}
}

package boottest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ispbalance/ispbalance/internal/lab"
)

// networkdFiles configure the router with systemd-networkd: wan1 by DHCP,
// wan2 and the LAN static. ifupdown's networking.service and
// NetworkManager stay off (useNetworkd).
var networkdFiles = map[string]string{
	"/etc/hostname":    "router\n",
	"/etc/resolv.conf": "nameserver 127.0.0.1\n",
	"/etc/hosts":       "127.0.0.1 localhost\n127.0.1.1 router\n",
	"/etc/systemd/network/10-wan1.network": `[Match]
Name=wan1
[Link]
MACAddress=02:00:00:00:01:02
[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no
[DHCPv4]
UseDNS=no
UseHostname=no
`,
	"/etc/systemd/network/10-wan2.network": `[Match]
Name=wan2
[Network]
Address=100.64.2.2/24
LinkLocalAddressing=no
IPv6AcceptRA=no
`,
	"/etc/systemd/network/10-lan1.network": `[Match]
Name=lan1
[Network]
Address=192.168.1.1/24
LinkLocalAddressing=no
IPv6AcceptRA=no
`,
}

// useNetworkd enables systemd-networkd and masks ifupdown's and
// NetworkManager's services, as `systemctl enable`/`mask` would.
func (r *router) useNetworkd() {
	r.t.Helper()
	r.maskNetworkManager()
	link := func(target, name string) {
		p := r.sys.Path(name)
		os.Remove(p)
		r.mustHost("mkdir", "-p", filepath.Dir(p))
		r.mustHost("ln", "-s", target, p)
	}
	link("/dev/null", "/etc/systemd/system/networking.service")
	link("/lib/systemd/system/systemd-networkd.service", "/etc/systemd/system/multi-user.target.wants/systemd-networkd.service")
	link("/lib/systemd/system/systemd-networkd.socket", "/etc/systemd/system/sockets.target.wants/systemd-networkd.socket")
}

// TestNetworkd is issue step 8: with systemd-networkd bringing the
// uplinks up, the service balances after boot, follows a renewal that
// moves the gateway, and networkd's reloads, reconfigurations and
// renewals never delete ispbalance's rules and routes (the shipped
// networkd.conf drop-in).
func TestNetworkd(t *testing.T) {
	r := newRouter(t, "bootnwd", 2, networkdFiles)
	r.useNetworkd()
	dhcp := r.startDHCP("100.64.1.1")
	r.bootedBalanced("networkd")
	r.followGatewayMove(&dhcp, "100.64.1.1", "100.64.1.254")

	// networkd keeps its hands off: ispbalance's rules and routes stay
	// through a reload, a reconfiguration of the DHCP uplink and renewals.
	ours := func() string {
		rules, _ := r.lab.Exec("router", "ip", "-4", "rule")
		var keep []string
		for _, l := range strings.Split(string(rules), "\n") {
			if strings.HasPrefix(l, "9") {
				keep = append(keep, l)
			}
		}
		routes, _ := r.lab.Exec("router", "ip", "-4", "route", "show", "table", "4200")
		return strings.Join(keep, "\n") + "\n" + string(routes)
	}
	want := ours()
	if !strings.Contains(want, "lookup 4200") || !strings.Contains(want, "default") {
		t.Fatalf("ispbalance's rules and routes are not there to begin with:\n%s", want)
	}
	// A reload and renewals leave the uplink's address alone: nothing of
	// ispbalance's may go, not even for a moment.
	deleted := r.watchDeletions()
	r.sh("networkctl", "reload")
	acks := dhcp.acks()
	lab.WaitFor(t, "two more renewals", 30*time.Second, func() bool { return dhcp.acks() >= acks+2 })
	r.sh("systemctl", "restart", "systemd-networkd")
	lab.WaitFor(t, "wan1 configured after networkd's restart", 20*time.Second, func() bool {
		out, _ := r.try("networkctl", "status", "wan1")
		return strings.Contains(out, "State: routable (configured)")
	})
	lab.WaitFor(t, "balanced after networkd's reload, renewals and restart", 10*time.Second, func() bool { return r.balanced("ISP1", "ISP2") })
	if got := deleted(); got != "" {
		t.Errorf("networkd deleted ispbalance's rules or routes (reload, renewals, restart):\n%s", got)
	}
	// Reconfiguring wan1 takes its address away for a moment, and
	// ispbalance itself takes ISP 1 out meanwhile; ISP 2's rules stay.
	deleted = r.watchDeletions()
	r.sh("networkctl", "reconfigure", "wan1")
	lab.WaitFor(t, "wan1 configured again", 20*time.Second, func() bool {
		out, _ := r.try("networkctl", "status", "wan1")
		return strings.Contains(out, "State: routable (configured)")
	})
	lab.WaitFor(t, "balanced after reconfiguring wan1", 10*time.Second, func() bool { return r.balanced("ISP1", "ISP2") })
	var others []string
	for _, l := range strings.Split(deleted(), "\n") {
		if l != "" && !strings.Contains(l, "4201") {
			others = append(others, l)
		}
	}
	if len(others) > 0 {
		t.Errorf("reconfiguring wan1 deleted ispbalance's rules or routes beyond ISP 1's:\n%s", strings.Join(others, "\n"))
	}
	if got := ours(); got != want {
		t.Errorf("ispbalance's rules and routes changed:\nbefore:\n%s\nafter:\n%s", want, got)
	}
}

// watchDeletions records the deletions of rules and of routes in
// ispbalance's tables, as `ip monitor` reports them, until the returned
// func is called.
func (r *router) watchDeletions() func() string {
	r.t.Helper()
	path := filepath.Join(r.dir, "ip-monitor.log")
	logf, err := os.Create(path)
	if err != nil {
		r.t.Fatal(err)
	}
	cmd := background(r.t, logf, "ip", "netns", "exec", r.lab.NS("router"), "ip", "monitor", "rule", "route")
	return func() string {
		stopBackground(cmd)
		logf.Close()
		data, _ := os.ReadFile(path)
		var out []string
		for _, l := range strings.Split(string(data), "\n") {
			if !strings.HasPrefix(l, "Deleted") {
				continue
			}
			if strings.Contains(l, "table 42") || strings.Contains(l, "lookup 42") || strings.Contains(l, "lookup main suppress_prefixlength") {
				out = append(out, l)
			}
		}
		return strings.Join(out, "\n")
	}
}

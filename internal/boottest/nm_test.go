package boottest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ispbalance/ispbalance/internal/lab"
)

// nmFiles configure the router with NetworkManager keyfiles: wan1 by
// DHCP, wan2 and the LAN static. ifupdown's networking.service stays off
// (useNetworkManager).
var nmFiles = map[string]string{
	"/etc/hostname":                       "router\n",
	"/etc/resolv.conf":                    "nameserver 127.0.0.1\n",
	"/etc/hosts":                          "127.0.0.1 localhost\n127.0.1.1 router\n",
	"/etc/NetworkManager/conf.d/lab.conf": "[main]\ndns=none\nno-auto-default=*\n",
	// NetworkManager leaves veth devices to container managers; the lab's
	// uplinks are veths, a real router's are network cards.
	"/etc/udev/rules.d/85-nm-unmanaged.rules": "",
	// Run after every other dispatcher script: says they are done.
	"/etc/NetworkManager/dispatcher.d/99-test-marker!x": "#!/bin/sh\nlogger -t dispatch-marker \"$1 $2\"\n",
	"/etc/NetworkManager/system-connections/isp1.nmconnection": `[connection]
id=isp1
type=ethernet
interface-name=wan1
[ethernet]
cloned-mac-address=02:00:00:00:01:02
[ipv4]
method=auto
[ipv6]
method=disabled
`,
	"/etc/NetworkManager/system-connections/isp2.nmconnection": `[connection]
id=isp2
type=ethernet
interface-name=wan2
[ipv4]
method=manual
address1=100.64.2.2/24
[ipv6]
method=disabled
`,
	"/etc/NetworkManager/system-connections/lan.nmconnection": `[connection]
id=lan
type=ethernet
interface-name=lan1
[ipv4]
method=manual
address1=192.168.1.1/24
[ipv6]
method=disabled
`,
}

// useNetworkManager masks ifupdown's networking.service; NetworkManager
// is enabled in the image. Keyfiles must be root's and private.
func (r *router) useNetworkManager() {
	r.t.Helper()
	p := r.sys.Path("/etc/systemd/system/networking.service")
	os.Remove(p)
	r.mustHost("mkdir", "-p", filepath.Dir(p))
	r.mustHost("ln", "-s", "/dev/null", p)
	for name := range nmFiles {
		if strings.HasSuffix(name, ".nmconnection") {
			r.mustHost("chmod", "600", r.sys.Path(name))
		}
	}
}

// TestNetworkManager is issue step 7: NetworkManager brings the uplinks
// up at boot; the service balances, follows a renewal that moves the
// gateway (NetworkManager dispatches no event for it: the monitor's
// netlink watch catches it), survives a kill -9 of the monitor, and
// NetworkManager's reapply, reconnect and `nmcli networking off/on` end
// balanced again, as does a reboot in which wan1 comes up late. One
// system serves every step; bootedBalanced's reboot is step 4's ordinary
// one.
func TestNetworkManager(t *testing.T) {
	r := newRouter(t, "bootnm", 2, nmFiles)
	r.useNetworkManager()
	dhcp := r.startDHCP("100.64.1.1")
	r.bootedBalanced("NetworkManager")
	r.followGatewayMove(&dhcp, "100.64.1.1", "100.64.1.254")
	r.killMonitor()

	// The dispatcher runs a marker script after every other one: when it
	// reports an event, the hooks are done with it.
	cursor := func() string {
		out := r.sh("journalctl", "-n", "1", "--show-cursor", "--no-pager", "-o", "cat")
		for _, l := range strings.Split(out, "\n") {
			if c, ok := strings.CutPrefix(l, "-- cursor: "); ok {
				return c
			}
		}
		t.Fatalf("no journal cursor in %q", out)
		return ""
	}
	lines := func(after, tag, prefix string) []string {
		out, _ := r.try("journalctl", "--no-pager", "-o", "cat", "-t", tag, "--after-cursor", after)
		var keep []string
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, prefix) {
				keep = append(keep, l)
			}
		}
		return keep
	}
	dispatched := func(after, event string) {
		t.Helper()
		lab.WaitFor(t, "the dispatcher done with "+event, 20*time.Second, func() bool { return len(lines(after, "dispatch-marker", event)) > 0 })
	}
	reconnect := func(conn, dev string) string {
		c := cursor()
		r.sh("nmcli", "connection", "up", conn)
		dispatched(c, dev+" up")
		return c
	}

	// A reapply keeps wan1's address, even one that re-runs DHCP (a
	// changed DHCP setting): nothing of ispbalance's may go, not even for
	// a moment.
	deleted := r.watchDeletions()
	r.sh("nmcli", "device", "reapply", "wan1")
	c := cursor()
	r.sh("nmcli", "device", "modify", "wan1", "ipv4.dhcp-timeout", "50")
	dispatched(c, "wan1 dhcp4-change")
	lab.WaitFor(t, "balanced after the reapplies", 10*time.Second, func() bool { return r.balanced("ISP1", "ISP2") })
	if got := deleted(); got != "" {
		t.Errorf("NetworkManager's reapply of wan1 deleted ispbalance's rules or routes:\n%s", got)
	}
	// A reconnect takes wan1's address away for a moment: ispbalance
	// takes ISP 1 out itself meanwhile; nothing else of its may go.
	deleted = r.watchDeletions()
	start := time.Now()
	reconnect("isp1", "wan1")
	lab.WaitFor(t, "balanced after reconnecting wan1", 30*time.Second, func() bool { return r.balanced("ISP1", "ISP2") })
	t.Logf("NetworkManager: nmcli connection up isp1 to balanced %v", time.Since(start).Round(time.Millisecond))
	for _, l := range strings.Split(deleted(), "\n") {
		if l != "" && !strings.Contains(l, "4201") {
			t.Errorf("reconnecting wan1 deleted more than ISP 1's: %s", l)
		}
	}

	for _, step := range [][]string{
		{"nmcli", "connection", "up", "isp2"},
		{"nmcli", "networking", "off"},
	} {
		r.sh(step...)
		if step[1] == "networking" {
			lab.WaitFor(t, "no ISP routing with networking off", 15*time.Second, func() bool { return r.balanced() })
			r.sh("nmcli", "networking", "on")
		}
		d := lab.WaitFor(t, "balanced after "+strings.Join(step, " "), 30*time.Second, func() bool { return r.balanced("ISP1", "ISP2") })
		t.Logf("NetworkManager: %s to balanced %v", strings.Join(step, " "), d.Round(time.Millisecond))
	}

	// Step 11: hooks=off turns off every hook, the ifupdown hook that
	// NetworkManager's 01-ifupdown runs included; hooks=on, the same
	// reconnect is reported (the control).
	reconnect("isp2", "wan2") // earlier events dispatched
	for _, setting := range []string{"hooks=off", "hooks=on"} {
		if err := r.sys.WriteFile("/etc/network/balance.conf", []byte(balanceConf+setting+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		r.sh("systemctl", "reload", "ispbalance")
		got := lines(reconnect("isp2", "wan2"), "ispbalance", "hook:")
		switch {
		case setting == "hooks=off" && len(got) > 0:
			t.Errorf("with hooks=off a hook still acted:\n%s", strings.Join(got, "\n"))
		case setting == "hooks=on" && len(got) == 0:
			t.Errorf("with hooks=on no hook reported the reconnect: the check proves nothing")
		case setting == "hooks=on":
			t.Logf("step 11: hooks=on, a reconnect of wan2 is reported by %d hook runs; hooks=off, by none", len(got))
		}
	}

	// Step 4: NetworkManager activates wan1 only once its carrier comes,
	// after the service started. The reboot's fresh router namespace is
	// wired to ISP 1's router at its first address: the DHCP server must
	// announce that one again.
	dhcp = r.moveGateway(dhcp, "100.64.1.254", "100.64.1.1")
	r.rebootWithLateUplink()
}

// bootedBalanced boots the system, installs the package with the lab's
// balance.conf, boots it again, and checks that it ends balanced by
// weight; stack names the network stack in the log.
func (r *router) bootedBalanced(stack string) {
	r.t.Helper()
	r.boot()
	r.install(artefacts.deb)
	if err := r.sys.WriteFile("/etc/network/balance.conf", []byte(balanceConf), 0o644); err != nil {
		r.t.Fatal(err)
	}
	start := r.reboot()
	lab.WaitFor(r.t, "both ISPs up and routing after the reboot", 30*time.Second, func() bool { return r.balanced("ISP1", "ISP2") })
	r.t.Logf("%s: boot to balanced %v", stack, time.Since(start).Round(time.Millisecond))
	if c := r.shares(40); c[0] > 0 || c[1] < 8 || c[2] < 8 {
		r.t.Fatalf("40 LAN connections by weight 1:1 went %v (0: failed)", c)
	}
}

package boottest

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ispbalance/ispbalance/internal/lab"
)

// ifupdownFiles configure the booted router as an administrator of a
// Debian router with ifupdown would: wan1 by DHCP (its MAC fixed, as a
// real card's is, so the ISP's server knows it after a reboot), wan2 and
// the LAN static. NetworkManager, in the same root for its own tests,
// stays off (maskNetworkManager).
var ifupdownFiles = map[string]string{
	"/etc/hostname": "router\n",
	// The lab has no DNS: lookups fail at once instead of timing out.
	"/etc/resolv.conf": "nameserver 127.0.0.1\n",
	"/etc/hosts":       "127.0.0.1 localhost\n127.0.1.1 router\n",
	"/etc/network/interfaces": `auto lo
iface lo inet loopback

auto wan1
iface wan1 inet dhcp
	hwaddress ether 02:00:00:00:01:02

auto wan2
iface wan2 inet static
	address 100.64.2.2/24

auto lan1
iface lan1 inet static
	address 192.168.1.1/24
`,
}

// balanceConf is what the administrator writes after installing.
const balanceConf = `# two ISPs, one LAN
ISP1 wan1 isp default 1 default
ISP2 wan2 isp default 1 default
LAN  lan1 lan
`

// TestIfupdown is "install and forget" with ifupdown (issue steps 1-6).
func TestIfupdown(t *testing.T) {
	r := newRouter(t, "bootifu", 2, ifupdownFiles)
	r.maskNetworkManager()
	dhcp := r.startDHCP("100.64.1.1")
	took := r.boot()
	t.Logf("first boot, without ispbalance: systemd running after %v; slowest units:\n%s", took.Round(time.Millisecond), r.sh("sh", "-c", "systemd-analyze blame | head -5"))
	lab.WaitFor(t, "wan1's lease", 20*time.Second, func() bool {
		out, _ := r.try("ip", "-4", "route", "show", "default", "dev", "wan1")
		return strings.Contains(out, "via 100.64.1.1")
	})
	r.addForeign()
	before := r.kernelState()

	// A fresh install starts the service (idle: balance.conf names no ISP).
	r.install(artefacts.deb)
	if out, _ := r.try("systemctl", "is-active", "ispbalance"); strings.TrimSpace(out) != "active" {
		t.Fatalf("after a fresh install the service is %q", strings.TrimSpace(out))
	}
	if now := r.kernelState(); now != before {
		a, b := diffLines(before, now)
		t.Fatalf("installing with the shipped balance.conf changed the router:\nonly before: %q\nonly after: %q", a, b)
	}
	if err := r.sys.WriteFile("/etc/network/balance.conf", []byte(balanceConf), 0o644); err != nil {
		t.Fatal(err)
	}

	// Step 1: after a reboot the service balances, by itself.
	start := r.reboot()
	d := lab.WaitFor(t, "both ISPs up and routing after the reboot", 30*time.Second, func() bool { return r.balanced("ISP1", "ISP2") })
	t.Logf("step 1: boot to balanced %v", (time.Since(start)).Round(time.Millisecond))
	_ = d
	if out, _ := r.try("systemctl", "is-active", "ispbalance"); strings.TrimSpace(out) != "active" {
		t.Fatalf("after the reboot the service is %q", strings.TrimSpace(out))
	}
	if c := r.shares(40); c[0] > 0 || c[1] < 8 || c[2] < 8 {
		t.Fatalf("40 LAN connections by weight 1:1 went %v (0: failed)", c)
	}

	// Step 2: the ISP moves its router; the renewal that announces it is
	// followed within 2 s, LAN connections through ISP 1 included.
	r.followGatewayMove(&dhcp, "100.64.1.1", "100.64.1.254")
	r.followGatewayMove(&dhcp, "100.64.1.254", "100.64.1.1")

	r.sh("ifdown", "wan1")
	lab.WaitFor(t, "ISP1 out after ifdown wan1", 10*time.Second, func() bool { return r.balanced("ISP2") })
	r.sh("ifup", "wan1")
	d = lab.WaitFor(t, "ISP1 back after ifup wan1", 15*time.Second, func() bool { return r.balanced("ISP1", "ISP2") })
	t.Logf("step 2: ifup wan1 to balanced %v", d.Round(time.Millisecond))

	undo, err := r.lab.CarrierDown(1)
	if err != nil {
		t.Fatal(err)
	}
	d = lab.WaitFor(t, "ISP1 out after carrier loss", 10*time.Second, func() bool { return r.balanced("ISP2") })
	t.Logf("step 2: carrier loss to ISP1 out %v", d.Round(time.Millisecond))
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	d = lab.WaitFor(t, "ISP1 back after carrier", 15*time.Second, func() bool { return r.balanced("ISP1", "ISP2") })
	t.Logf("step 2: carrier back to balanced %v", d.Round(time.Millisecond))

	r.sh("systemctl", "restart", "networking")
	d = lab.WaitFor(t, "balanced after systemctl restart networking", 20*time.Second, func() bool { return r.balanced("ISP1", "ISP2") })
	t.Logf("step 2: systemctl restart networking to balanced %v", d.Round(time.Millisecond))
	if c := r.shares(20); c[0] > 0 || c[1] == 0 || c[2] == 0 {
		t.Fatalf("after restarting networking, 20 LAN connections went %v (0: failed)", c)
	}

	// Step 3: kill -9 of the monitor.
	r.killMonitor()

	// Step 4: a reboot in which wan1 gets its carrier only after the
	// service started: it must notice.
	r.sh("sh", "-c", "printf 'timeout 5;\\nretry 1;\\n' >/etc/dhcp/dhclient.conf")
	r.rebootWithLateUplink()
	// And the ordinary reboot, uplinks up at once.
	start = r.reboot()
	lab.WaitFor(t, "balanced after a reboot", 30*time.Second, func() bool { return r.balanced("ISP1", "ISP2") })
	t.Logf("step 4: reboot to balanced %v", time.Since(start).Round(time.Millisecond))

	// Step 5: upgrade, with the administrator's edits.
	r.upgrade()

	// Step 6: remove, install again, purge.
	r.addForeign()
	r.sh("apt-get", "remove", "-y", "-q", "ispbalance")
	if now := r.kernelState(); now != before {
		a, b := diffLines(before, now)
		t.Fatalf("after apt-get remove the router is not as before the install:\nonly before: %q\nonly after: %q", a, b)
	}
	// The hooks left behind as conffiles do nothing.
	r.sh("ifdown", "wan1")
	r.sh("ifup", "wan1")
	lab.WaitFor(t, "wan1's lease after ifup", 20*time.Second, func() bool {
		out, _ := r.try("ip", "-4", "route", "show", "default", "dev", "wan1")
		return strings.Contains(out, "via 100.64.1.1")
	})
	if now := r.kernelState(); now != before {
		a, b := diffLines(before, now)
		t.Fatalf("after remove, ifdown and ifup changed the router:\nonly before: %q\nonly after: %q", a, b)
	}
	// Installing again starts the service at once, with the kept balance.conf.
	r.install(artefacts.deb2)
	d = lab.WaitFor(t, "balanced after installing again", 20*time.Second, func() bool { return r.balanced("ISP1", "ISP2") })
	t.Logf("step 6: install after remove to balanced %v", d.Round(time.Millisecond))
	r.sh("apt-get", "purge", "-y", "-q", "ispbalance")
	if now := r.kernelState(); now != before {
		a, b := diffLines(before, now)
		t.Fatalf("after apt-get purge the router is not as before the install:\nonly before: %q\nonly after: %q", a, b)
	}
	for _, gone := range []string{"/var/lib/lsm", "/run/ispbalance", "/etc/network/balance.conf"} {
		if _, err := r.try("test", "!", "-e", gone); err != nil {
			t.Errorf("after purge %s is still there", gone)
		}
	}
	_ = dhcp
}

// maskNetworkManager turns NetworkManager off in an ifupdown system, as
// `systemctl mask` does.
func (r *router) maskNetworkManager() {
	r.t.Helper()
	for _, unit := range []string{"NetworkManager.service", "NetworkManager-wait-online.service",
		"NetworkManager-dispatcher.service", "dbus-org.freedesktop.nm-dispatcher.service"} {
		p := r.sys.Path("/etc/systemd/system/" + unit)
		os.Remove(p)
		r.mustHost("mkdir", "-p", filepath.Dir(p))
		r.mustHost("ln", "-s", "/dev/null", p)
	}
}

// followGatewayMove renumbers ISP 1's router and checks that the renewal
// announcing the new one is followed: -s shows ISP 1 up via the new
// gateway and LAN connections leave through ISP 1 again.
func (r *router) followGatewayMove(dhcp **dhcpServer, old, new string) {
	t := r.t
	t.Helper()
	*dhcp = r.moveGateway(*dhcp, old, new)
	// The old router is gone: the monitor judges ISP 1 down meanwhile.
	d := lab.WaitFor(t, "ISP1 out while its old gateway is dead", 15*time.Second, func() bool { return r.balanced("ISP2") })
	t.Logf("step 2: old gateway %s dead to ISP1 out %v", old, d.Round(time.Millisecond))
	lab.WaitFor(t, "the renewal with the new gateway", 30*time.Second, func() bool { return (*dhcp).acks() > 0 })
	renewed := time.Now()
	// The bound is 2 s; the limit leaves room for a loaded
	// machine but stays well below the monitor's ordinary recovery.
	lab.WaitFor(t, "ISP1 up via "+new+" after the renewal", 4*time.Second, func() bool {
		st, err := r.status()
		if err != nil {
			return false
		}
		for _, s := range st.Services {
			if s.Service == "ISP1" && s.Gateway == new && s.Routing && s.State == "up" {
				return true
			}
		}
		return false
	})
	followed := time.Since(renewed)
	via1 := lab.WaitFor(t, "a LAN connection through ISP1 after the renewal", 4*time.Second, func() bool {
		k, err := r.lab.WhichISP(1, serverPort, time.Second)
		return err == nil && k == 1
	})
	t.Logf("step 2: renewal with gateway %s to ISP1 followed %v, to a LAN connection through it %v",
		new, followed.Round(time.Millisecond), time.Since(renewed).Round(time.Millisecond))
	_ = via1
}

// killMonitor is step 3: kill -9 of the monitor. systemd restarts it; an
// established LAN connection lives on and new ones keep working, since
// the routing stays in place meanwhile.
func (r *router) killMonitor() {
	t := r.t
	t.Helper()
	conn, err := r.lab.DialTCP("lan1", netip.AddrPortFrom(r.lab.ServerAddr(), serverPort), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	echo := func(msg string) error {
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 256)
		if _, err := conn.Write([]byte(msg)); err != nil {
			return err
		}
		got := ""
		for !strings.HasSuffix(got, msg) {
			n, err := conn.Read(buf)
			if err != nil {
				return err
			}
			got += string(buf[:n])
		}
		return nil
	}
	if err := echo("before\n"); err != nil {
		t.Fatalf("the established connection before the kill: %v", err)
	}
	pid := strings.TrimSpace(r.sh("systemctl", "show", "-p", "MainPID", "--value", "ispbalance"))
	watch := r.watchLAN()
	killed := time.Now()
	r.sh("kill", "-9", pid)
	newPID := r.monitorReplaced("systemd restarting the monitor", pid)
	gap := time.Since(killed)
	lab.WaitFor(t, "balanced after the restart", 10*time.Second, func() bool { return r.balanced("ISP1", "ISP2") })
	failed, total := watch()
	t.Logf("step 3: kill -9 of the monitor (pid %s): systemd restarted it (pid %s), ready %v after the kill; %d of %d new LAN connections failed meanwhile",
		pid, newPID, gap.Round(time.Millisecond), failed, total)
	if failed > 0 {
		t.Errorf("%d of %d new LAN connections failed while the monitor restarted", failed, total)
	}
	if err := echo("after\n"); err != nil {
		t.Errorf("the established connection did not survive the monitor's restart: %v", err)
	}
}

// watchLAN opens a LAN connection every 50 ms until the returned func is
// called, which returns how many failed and how many were tried.
func (r *router) watchLAN() func() (failed, total int) {
	stop := make(chan struct{})
	done := make(chan [2]int)
	go func() {
		var failed, total int
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				done <- [2]int{failed, total}
				return
			case <-tick.C:
			}
			total++
			if _, err := r.lab.WhichISP(1, serverPort, time.Second); err != nil {
				failed++
			}
		}
	}()
	return func() (int, int) {
		close(stop)
		res := <-done
		return res[0], res[1]
	}
}

// rebootWithLateUplink is step 4's race: a reboot in which wan1 has no
// carrier until after the service started; balanced within 10 s of the
// carrier. The network stack must not hold the boot for long waiting for
// wan1's lease.
func (r *router) rebootWithLateUplink() {
	t := r.t
	t.Helper()
	if err := r.sys.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := r.lab.ResetRouter(); err != nil {
		t.Fatal(err)
	}
	undo, err := r.lab.CarrierDown(1)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r.boot()
	lab.WaitFor(t, "the service active with ISP2 only", 20*time.Second, func() bool { return r.balanced("ISP2") })
	t.Logf("step 4: reboot with wan1 unplugged: balanced on ISP2 %v after the boot began; slowest units:\n%s",
		time.Since(start).Round(time.Millisecond), r.sh("sh", "-c", "systemd-analyze blame | head -3"))
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	d := lab.WaitFor(t, "balanced after wan1's carrier came", 10*time.Second, func() bool { return r.balanced("ISP1", "ISP2") })
	t.Logf("step 4: wan1's carrier to balanced %v", d.Round(time.Millisecond))
}

// upgrade is step 5: a newer build installed over the old keeps the
// administrator's balance.conf and rule file, restarts the monitor, and a
// 2 ms ping stream from the LAN loses nothing.
func (r *router) upgrade() {
	t := r.t
	t.Helper()
	conf := balanceConf + "# edited before the upgrade\n"
	rule := "/etc/network/balance/firewall/01.accept"
	edited := r.sh("cat", rule) + "# the administrator's note\n"
	if err := r.sys.WriteFile("/etc/network/balance.conf", []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.sys.WriteFile(rule, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	pid := strings.TrimSpace(r.sh("systemctl", "show", "-p", "MainPID", "--value", "ispbalance"))
	ping, err := r.lab.StartPing("lan1", r.lab.ServerAddr(), 2*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r.install(artefacts.deb2)
	newPID := r.monitorReplaced("the monitor restarted by the upgrade", pid)
	lab.WaitFor(t, "balanced after the upgrade", 10*time.Second, func() bool { return r.balanced("ISP1", "ISP2") })
	sent, received, err := ping.Stop()
	t.Logf("step 5: upgrade took %v; monitor pid %s -> %s; 2 ms ping stream: %d sent, %d answered",
		time.Since(start).Round(time.Millisecond), pid, newPID, sent, received)
	if err != nil || sent != received || sent < 100 {
		t.Errorf("the ping stream during the upgrade: %d sent, %d answered (%v)", sent, received, err)
	}
	if got := r.sh("cat", "/etc/network/balance.conf"); got != conf {
		t.Errorf("the upgrade changed balance.conf:\n%s", got)
	}
	if got := r.sh("cat", rule); got != edited {
		t.Errorf("the upgrade changed %s:\n%s", rule, got)
	}
	if v := r.sh("dpkg-query", "-W", "-f", "${Version}", "ispbalance"); !strings.HasSuffix(v, "-2") {
		t.Errorf("after the upgrade the installed version is %s", v)
	}
}

// monitorReplaced waits until systemd reports the service active with a
// main process other than oldPID, and returns the new one.
func (r *router) monitorReplaced(what, oldPID string) string {
	r.t.Helper()
	var newPID string
	lab.WaitFor(r.t, what, 30*time.Second, func() bool {
		out, _ := r.try("systemctl", "show", "-p", "MainPID", "-p", "ActiveState", "--value", "ispbalance")
		f := strings.Fields(out)
		if len(f) == 2 && f[0] != oldPID && f[0] != "0" && f[1] == "active" {
			newPID = f[0]
			return true
		}
		return false
	})
	return newPID
}

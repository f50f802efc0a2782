package boottest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ispbalance/ispbalance/internal/lab"
)

// TestRpmScriptlets is issue step 10: the .rpm's scriptlets run by the
// rpm tool inside the booted system, with Red Hat's network-scripts
// directory present (no Red Hat image can be had here, so it is Debian
// with rpm, --nodeps and systemd-networkd). Installing enables and starts the service and
// links ifup-local only where the administrator had none; an upgrade
// restarts the monitor and keeps balance.conf; erasing leaves the router
// as it was and the administrator's own hook in place.
func TestRpmScriptlets(t *testing.T) {
	// systemd-networkd brings the uplinks up, and /etc/network is gone:
	// ispbalance takes a system with /etc/network for a Debian one.
	r := newRouter(t, "bootrpm", 2, networkdFiles)
	r.useNetworkd()
	r.startDHCP("100.64.1.1")
	r.boot()
	r.sh("rm", "-rf", "/etc/network")
	lab.WaitFor(t, "wan1's lease", 20*time.Second, func() bool {
		out, _ := r.try("ip", "-4", "route", "show", "default", "dev", "wan1")
		return strings.Contains(out, "via 100.64.1.1")
	})
	r.sh("mkdir", "-p", "/etc/sysconfig/network-scripts")
	mine := "#!/bin/sh\n# the administrator's own\n"
	if err := r.sys.WriteFile("/usr/sbin/ifdown-local", []byte(mine), 0o755); err != nil {
		t.Fatal(err)
	}
	r.addForeign()
	before := r.kernelState()

	rpmCmd := func(args ...string) {
		t.Helper()
		r.sh(append([]string{"rpm", "--force-debian", "--nodeps"}, args...)...)
	}
	copyIn := func(pkg string) string {
		data, err := os.ReadFile(pkg)
		if err != nil {
			t.Fatal(err)
		}
		in := "/root/" + filepath.Base(pkg)
		if err := r.sys.WriteFile(in, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return in
	}
	rpmCmd("-i", copyIn(artefacts.rpm))
	if out, _ := r.try("systemctl", "is-enabled", "ispbalance"); strings.TrimSpace(out) != "enabled" {
		t.Errorf("after rpm -i the service is %q, want enabled", strings.TrimSpace(out))
	}
	if out, _ := r.try("systemctl", "is-active", "ispbalance"); strings.TrimSpace(out) != "active" {
		t.Errorf("after rpm -i the service is %q, want active", strings.TrimSpace(out))
	}
	if got := strings.TrimSpace(r.sh("readlink", "/usr/sbin/ifup-local")); got != "/usr/libexec/ispbalance/ifup-local" {
		t.Errorf("ifup-local links to %q", got)
	}
	if got := r.sh("cat", "/usr/sbin/ifdown-local"); got != mine {
		t.Errorf("the administrator's ifdown-local became %q", got)
	}
	if err := r.sys.WriteFile("/etc/sysconfig/network-scripts/balance.conf", []byte(balanceConf), 0o644); err != nil {
		t.Fatal(err)
	}
	r.sh("systemctl", "reload", "ispbalance")
	lab.WaitFor(t, "balanced from the Red Hat layout's balance.conf", 20*time.Second, func() bool { return r.balanced("ISP1", "ISP2") })

	pid := strings.TrimSpace(r.sh("systemctl", "show", "-p", "MainPID", "--value", "ispbalance"))
	rpmCmd("-U", copyIn(artefacts.rpm2))
	r.monitorReplaced("the monitor restarted by the upgrade", pid)
	lab.WaitFor(t, "balanced after the upgrade", 10*time.Second, func() bool { return r.balanced("ISP1", "ISP2") })
	if got := r.sh("cat", "/etc/sysconfig/network-scripts/balance.conf"); got != balanceConf {
		t.Errorf("the upgrade changed balance.conf:\n%s", got)
	}

	rpmCmd("-e", "ispbalance")
	if now := r.kernelState(); now != before {
		a, b := diffLines(before, now)
		t.Fatalf("after rpm -e the router is not as before the install:\nonly before: %q\nonly after: %q", a, b)
	}
	if _, err := r.try("test", "!", "-e", "/usr/sbin/ifup-local"); err != nil {
		t.Errorf("rpm -e left the ifup-local link")
	}
	if got := r.sh("cat", "/usr/sbin/ifdown-local"); got != mine {
		t.Errorf("rpm -e changed the administrator's ifdown-local to %q", got)
	}
	if out, _ := r.try("systemctl", "is-enabled", "ispbalance"); strings.TrimSpace(out) == "enabled" {
		t.Errorf("after rpm -e the service is still enabled")
	}
	for _, gone := range []string{"/var/lib/lsm", "/run/ispbalance"} {
		if _, err := r.try("test", "!", "-e", gone); err != nil {
			t.Errorf("after rpm -e %s is still there", gone)
		}
	}
}

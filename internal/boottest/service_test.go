package boottest

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ispbalance/ispbalance/internal/lab"
)

// probedConf probes the internet server through each ISP, so that an
// upstream failure behind a live gateway is seen.
const probedConf = `ISP1 wan1 isp 203.0.113.10 1 default
ISP2 wan2 isp 203.0.113.10 1 default
LAN  lan1 lan
`

// TestServiceSandbox is issue step 9: with warn_email set and a real
// local mail transport (exim4) in the booted system, an ISP that goes
// down produces a mail in the local mailbox, sent by the service as
// installed; event scripts in balance/lsm/down.d/ that call `systemctl
// restart` and `ip` work from the service too. It prints the unit's
// `systemd-analyze security` exposure.
func TestServiceSandbox(t *testing.T) {
	files := map[string]string{
		// A unit of the administrator's that the down script restarts.
		"/etc/systemd/system/isp-watch.service": "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n",
	}
	for k, v := range ifupdownFiles {
		files[k] = v
	}
	r := newRouter(t, "bootsvc", 2, files)
	r.maskNetworkManager()
	r.startDHCP("100.64.1.1")
	r.boot()
	r.install(artefacts.deb)
	r.sh("useradd", "--create-home", "admin")
	if err := r.sys.WriteFile("/etc/network/balance.conf", []byte(probedConf+"warn_email=admin@localhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `#!/bin/sh
# $1 is the state, $2 the ISP (lsm's arguments).
systemctl restart isp-watch.service || exit 1
ip route replace 10.77.0.0/16 dev lan1 table 77 || exit 1
`
	if err := r.sys.WriteFile("/etc/network/balance/lsm/down.d/50-react", []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r.sh("systemctl", "start", "isp-watch.service")
	watchStarted := r.sh("systemctl", "show", "-p", "ExecMainStartTimestampMonotonic", "--value", "isp-watch.service")
	r.sh("systemctl", "reload", "ispbalance")
	lab.WaitFor(t, "balanced after the reload", 20*time.Second, func() bool { return r.balanced("ISP1", "ISP2") })

	undo, err := r.lab.SilentDrop(1)
	if err != nil {
		t.Fatal(err)
	}
	defer undo()
	lab.WaitFor(t, "ISP1 out after its upstream died", 10*time.Second, func() bool { return r.balanced("ISP2") })
	var mail string
	d := lab.WaitFor(t, "the warning mail in admin's mailbox", 20*time.Second, func() bool {
		data, err := r.sys.ReadFile("/var/mail/admin")
		mail = string(data)
		return err == nil && strings.Contains(mail, "Subject: ispbalance: ISP1 is down")
	})
	t.Logf("step 9: the mail arrived %v after ISP1 went out:\n%s", d.Round(time.Millisecond), mail)
	lab.WaitFor(t, "the down.d script's route", 10*time.Second, func() bool {
		out, _ := r.lab.Exec("router", "ip", "route", "show", "table", "77")
		return strings.Contains(string(out), "10.77.0.0/16 dev lan1")
	})
	lab.WaitFor(t, "the down.d script's systemctl restart", 10*time.Second, func() bool {
		now := r.sh("systemctl", "show", "-p", "ExecMainStartTimestampMonotonic", "--value", "isp-watch.service")
		return now != watchStarted
	})
	if log := r.sh("journalctl", "-u", "ispbalance", "--no-pager", "-o", "cat"); strings.Contains(log, "sending warning mail") || strings.Contains(log, "event script failed") {
		t.Errorf("the service logged a failure:\n%s", log)
	}

	// systemctl status says which ISPs are up; the watchdog restarts a
	// monitor whose loop stops (here: SIGSTOP, with a short WatchdogSec).
	lab.WaitFor(t, "the service's status text", 10*time.Second, func() bool {
		out, _ := r.try("systemctl", "show", "-p", "StatusText", "--value", "ispbalance")
		return strings.TrimSpace(out) == "1 of 2 ISPs up: ISP2"
	})
	if err := r.sys.WriteFile("/etc/systemd/system/ispbalance.service.d/watchdog.conf", []byte("[Service]\nWatchdogSec=2s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.sh("systemctl", "daemon-reload")
	r.sh("systemctl", "restart", "ispbalance")
	lab.WaitFor(t, "the service active again", 10*time.Second, func() bool { return r.balanced("ISP2") })
	pid := strings.TrimSpace(r.sh("systemctl", "show", "-p", "MainPID", "--value", "ispbalance"))
	stopped := time.Now()
	r.sh("kill", "-STOP", pid)
	r.monitorReplaced("the watchdog restarting a stuck monitor", pid)
	t.Logf("watchdog: a stopped monitor was replaced %v after SIGSTOP (WatchdogSec=2s)", time.Since(stopped).Round(time.Millisecond))

	out, _ := r.try("systemd-analyze", "security", "--no-pager", "ispbalance.service")
	m := regexp.MustCompile(`Overall exposure level for ispbalance.service: ([0-9.]+) (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security ispbalance:\n%s", out)
	}
	t.Logf("systemd-analyze security ispbalance: %s %s", m[1], m[2])
}

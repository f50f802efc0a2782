package labtest

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/ispbalance/ispbalance/internal/cli"
	"github.com/ispbalance/ispbalance/internal/lab"
)

// hostState is what ispbalance could write in the machine's own network
// namespace, read (never changed) from the test process's main thread.
func hostState(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, argv := range [][]string{{"iptables-save"}, {"ip6tables-save"}, {"ip", "-4", "rule"}, {"ip", "-6", "rule"},
		{"ip", "-4", "route", "show", "table", "all", "proto", "177"}, {"ip", "-6", "route", "show", "table", "all", "proto", "177"}} {
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
		}
		b.WriteString(lab.WithoutEmptyTables(lab.StripCounters(string(out))))
	}
	return b.String()
}

// TestInProcessStaysInItsNamespace: ispbalance run inside this process
// on a thread switched into the lab's router namespace, as the demo and
// the in-process profile run it, writes only there. A command it starts
// from another thread (a goroutine) would run in the machine's own
// namespace instead; rebuilds that change both families' firewalls, the
// rule, route and set paths and stop are all exercised here.
func TestInProcessStaysInItsNamespace(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "inproc"}, ispConf(1, 1)+"sticky=source\n")
	r.dualStackISPs()
	before := hostState(t)
	run := func(args ...string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		full := append([]string{"-c", r.conf, "--state-dir", r.stateDir, "--run-dir", r.runDir(), "--no-monitor"}, args...)
		code := 0
		if err := r.lab.Do("router", func() error {
			code = cli.Run(context.Background(), cli.Env{Args: full, Stdout: &stdout, Stderr: &stderr})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if code != 0 {
			t.Fatalf("ifup-balance %s exited %d: %s", strings.Join(args, " "), code, stderr.String())
		}
	}
	run()
	if !strings.Contains(r.sh("router", "ip6tables-save"), "ISPB-INPUT") {
		t.Fatal("the in-process rebuild installed no IPv6 firewall in the router: the test cannot tell")
	}
	for _, v := range []string{"down", "up", "down", "up"} {
		run(v, "ISP2") // both families' mangle tables change each time
	}
	run("stop")
	if after := hostState(t); after != before {
		t.Errorf("ispbalance run in-process changed the machine's own namespace:\n--- before\n%s\n--- after\n%s", before, after)
	}
}

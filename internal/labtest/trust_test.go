package labtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ispbalance/ispbalance/internal/lab"
)

// TestRulesInsecureFileRefused: a world-writable post-run file would run
// as root on the next rebuild, so the rebuild (and -d) refuses it, naming
// the file and the fix, and leaves the kernel, the recorded states and
// everything else as they were; insecure_files=allow in balance.conf lets
// it run with a warning.
func TestRulesInsecureFileRefused(t *testing.T) {
	conf := ispConf(1, 1)
	r := newRouter(t, lab.Options{Prefix: "trust"}, conf)
	r.writeRules("firewall", "10.good", "iptables -A INPUT -p tcp --dport 2222 -j ACCEPT\n")
	r.mustRun()
	before := r.kernelState()
	states := r.sh("router", "cat", filepath.Join(r.stateDir, "ISP1.state"), filepath.Join(r.stateDir, "ISP2.state"))

	marker := filepath.Join(r.dir, "post-ran")
	bad := r.writeRules("post-run", "10.x", "touch "+marker+"\n")
	if err := os.Chmod(bad, 0o666); err != nil {
		t.Fatal(err)
	}
	// Changes the rebuild would make if it went ahead: a new rule, and
	// ISP2 recorded and routed as down.
	r.writeRules("firewall", "20.new", "iptables -A INPUT -p tcp --dport 2223 -j ACCEPT\n")
	for _, args := range [][]string{{"ISP1"}, {"-d"}} {
		out, err := r.run(args...)
		t.Logf("ifup-balance %s: %s", strings.Join(args, " "), strings.TrimSpace(out))
		if err == nil {
			t.Errorf("ifup-balance %s accepted a world-writable post-run file", strings.Join(args, " "))
		}
		for _, want := range []string{bad + " is writable by group and others (mode 0666)", "chmod go-w " + bad, "insecure_files=allow"} {
			if !strings.Contains(out, want) {
				t.Errorf("ifup-balance %s: the error does not say %q:\n%s", strings.Join(args, " "), want, out)
			}
		}
	}
	if after := r.kernelState(); after != before {
		t.Errorf("a refused rebuild changed the kernel state:\n--- before\n%s\n--- after\n%s", before, after)
	}
	if got := r.sh("router", "cat", filepath.Join(r.stateDir, "ISP1.state"), filepath.Join(r.stateDir, "ISP2.state")); got != states {
		t.Errorf("a refused rebuild recorded states %q, had %q", got, states)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("the refused post-run file ran")
	}

	// The administrator accepts the risk explicitly.
	r.writeConf(conf + "insecure_files=allow\n")
	out := r.mustRun("ISP1")
	t.Logf("with insecure_files=allow: %s", strings.TrimSpace(out))
	if !strings.Contains(out, bad) || !strings.Contains(out, "insecure_files=allow") {
		t.Errorf("running an insecure file gives no warning that names it:\n%s", out)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("with insecure_files=allow, the post-run file did not run: %v", err)
	}
	if !strings.Contains(r.sh("router", "iptables-save"), "--dport 2223") {
		t.Errorf("with insecure_files=allow, the rebuild did not apply the new rule")
	}
}

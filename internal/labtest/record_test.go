package labtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ispbalance/ispbalance/internal/lab"
)

// recordConf has a rule file beside it (see withRuleFile), whose chain
// the record must cover too.
const recordConf = "ISP1 wan1 isp\nISP2 wan2 isp\nLAN lan1 lan\n"

// withRuleFile writes a rule file spelled unlike iptables-save.
func (r *router) withRuleFile() {
	r.t.Helper()
	file := filepath.Join(r.dir, "balance", "firewall", "10-site")
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte("iptables -A INPUT -s 192.168.1.5 -p tcp --dport 2222 -j ACCEPT\n"), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// firewalls is both families' firewall as iptables-save prints them,
// without counters.
func (r *router) firewalls(save, save6 string) string {
	r.t.Helper()
	return lab.StripCounters(r.sh("router", save)) + "--- IPv6\n" + lab.StripCounters(r.sh("router", save6))
}

func (r *router) recordPath() string { return filepath.Join(r.runDir(), "firewall.record") }

// TestRecordedFirewallChangedFromOutside: once rebuilds trust the firewall
// record (nf_tables, nothing changed since the last rebuild), another
// program's change to the firewall, in a chain of ispbalance's, a jump, a
// rule file's chain, IPv6, or the whole ruleset, is still seen by the
// next plain rebuild, which puts the firewall back exactly as it was.
func TestRecordedFirewallChangedFromOutside(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "rec"}, recordConf)
	r.withRuleFile()
	if !strings.Contains(r.sh("router", "iptables", "--version"), "nf_tables") {
		lab.SkipOrFail(t, "iptables is not on nf_tables here; TestLegacyFirewallKeepsNoRecord covers legacy")
	}
	r.mustRun()
	// Moving an ISP twice: recorded from the applier's own writes.
	r.mustRun("down", "ISP2")
	r.mustRun("up", "ISP2")
	r.mustRun()
	want := r.firewalls("iptables-save", "ip6tables-save")
	for _, c := range []struct {
		name string
		cmd  []string
	}{
		{"iptables -F ISPB-INPUT", []string{"iptables", "-F", "ISPB-INPUT"}},
		{"a deleted jump", []string{"iptables", "-D", "FORWARD", "-j", "ISPB-FORWARD"}},
		{"a rule file's chain flushed", []string{"iptables", "-F", "ISPB-U-INPUT"}},
		{"a rule of the balance chain deleted", []string{"iptables", "-t", "mangle", "-D", "ISPB-BALANCE", "1"}},
		{"ip6tables -F ISPB-INPUT", []string{"ip6tables", "-F", "ISPB-INPUT"}},
		{"nft flush ruleset", []string{"nft", "flush", "ruleset"}},
	} {
		// The rebuild before the change left a record: the next one
		// would not read the firewall if the generation had not moved.
		if _, err := os.Stat(r.recordPath()); err != nil {
			t.Fatalf("before %s: no firewall record, so the test shows nothing: %v", c.name, err)
		}
		r.sh("router", c.cmd...)
		if r.firewalls("iptables-save", "ip6tables-save") == want {
			t.Fatalf("%s changed nothing; the test shows nothing", c.name)
		}
		r.mustRun()
		if got := r.firewalls("iptables-save", "ip6tables-save"); got != want {
			t.Errorf("after %s and a rebuild, the firewall differs:\n--- want\n%s\n--- got\n%s", c.name, want, got)
		}
		// The repair's own write is recorded for the next change.
		r.mustRun()
	}
}

// TestLegacyFirewallKeepsNoRecord: with iptables on the legacy backend
// there is no generation to tie a record to; no record is kept, and an
// outside change is repaired by the next rebuild as before.
func TestLegacyFirewallKeepsNoRecord(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "legacy"}, recordConf)
	r.withRuleFile()
	// ifup-balance finds the legacy commands first, under the names it
	// runs, as after `update-alternatives --set iptables
	// /usr/sbin/iptables-legacy`.
	multi, err := exec.LookPath("xtables-legacy-multi")
	if err != nil {
		lab.SkipOrFail(t, "iptables-legacy is not installed: %v", err)
	}
	bin := filepath.Join(r.dir, "legacy-bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"iptables-save", "iptables-restore", "ip6tables-save", "ip6tables-restore"} {
		if err := os.Symlink(multi, filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"env", "PATH=" + bin + ":" + os.Getenv("PATH"), binary, "-c", r.conf, "--state-dir", r.stateDir,
		"--run-dir", r.runDir(), "--no-monitor"}
	rebuild := func() {
		t.Helper()
		if out, err := r.lab.Exec("router", env...); err != nil {
			t.Fatalf("ifup-balance with legacy iptables: %v\n%s", err, out)
		}
	}
	rebuild()
	rebuild()
	want := r.firewalls("iptables-legacy-save", "ip6tables-legacy-save")
	if !strings.Contains(want, "ISPB-INPUT") {
		t.Fatalf("the firewall did not go into legacy iptables:\n%s", want)
	}
	if _, err := os.Stat(r.recordPath()); err == nil {
		t.Error("a firewall record was kept on iptables-legacy, which has no generation")
	}
	r.sh("router", "iptables-legacy", "-F", "ISPB-INPUT")
	if r.firewalls("iptables-legacy-save", "ip6tables-legacy-save") == want {
		t.Fatal("iptables-legacy -F changed nothing; the test shows nothing")
	}
	rebuild()
	if got := r.firewalls("iptables-legacy-save", "ip6tables-legacy-save"); got != want {
		t.Errorf("after iptables-legacy -F and a rebuild, the firewall differs:\n--- want\n%s\n--- got\n%s", want, got)
	}
}

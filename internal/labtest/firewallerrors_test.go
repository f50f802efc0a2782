package labtest

import (
	"strings"
	"testing"

	"github.com/ispbalance/ispbalance/internal/lab"
)

// siteRules is balance/firewall/10-site with line 5 to be filled in.
const siteRules = "# site rules\n" +
	"iptables -A INPUT -p tcp --dport 2222 -j ACCEPT\n" +
	"iptables -N SITE\n" +
	"iptables -A SITE -j RETURN\n" +
	"%s\n" +
	"iptables -A INPUT -p tcp --dport 2223 -j SITE\n"

// checkRefusedLine installs the site rules with a good line 5, then with
// each bad one, and wants every failure to read
// ".../balance/firewall/10-site:5: LINE: REASON" with the reason mentioning
// want, and the kernel exactly as the good run left it.
func checkRefusedLine(t *testing.T, prefix string, bad map[string]string) {
	r := newRouter(t, lab.Options{Prefix: prefix}, ispConf(1, 1))
	r.writeRules("firewall", "10-site", strings.Replace(siteRules, "%s", "iptables -A INPUT -p tcp --dport 2224 -j ACCEPT", 1))
	r.mustRun()
	before := r.kernelState()
	for line, want := range bad {
		r.writeRules("firewall", "10-site", strings.Replace(siteRules, "%s", line, 1))
		out, err := r.run()
		t.Logf("%s -> %s", line, strings.TrimSpace(out))
		if err == nil {
			t.Errorf("%s: accepted", line)
			continue
		}
		msg := lastLine(out)
		head := "balance/firewall/10-site:5: " + line + ": "
		i := strings.Index(msg, head)
		if i < 0 {
			t.Errorf("%s: the error does not read %q:\n%s", line, head+"REASON", msg)
		} else if reason := msg[i+len(head):]; !strings.Contains(reason, want) {
			t.Errorf("%s: reason %q does not mention %q", line, reason, want)
		}
		if after := r.kernelState(); after != before {
			t.Errorf("%s changed the kernel state:\n--- before\n%s\n--- after\n%s", line, before, after)
		}
	}
}

// lastLine is the command's error: its last line of output, the log
// lines before it aside.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[len(lines)-1]
}

// TestRefusedJumpToMissingChain: nf_tables reports a jump to a chain that
// does not exist at the table's COMMIT; the error still names the line.
func TestRefusedJumpToMissingChain(t *testing.T) {
	checkRefusedLine(t, "fwmc", map[string]string{
		"iptables -A INPUT -p tcp --dport 1 -j NO_SUCH_CHAIN": "NO_SUCH_CHAIN",
	})
}

// TestRefusedUnknownMatch: iptables-restore itself refuses an extension it
// does not know.
func TestRefusedUnknownMatch(t *testing.T) {
	checkRefusedLine(t, "fwum", map[string]string{
		"iptables -A INPUT -m nosuchmatch -j ACCEPT": "nosuchmatch",
	})
}

// TestRefusedByKernel: the kernel refuses a target for its arguments
// (blamed on the line itself) and for the hook its chain is reached from
// (blamed on the jump that links the chain, which is ispbalance's own).
func TestRefusedByKernel(t *testing.T) {
	checkRefusedLine(t, "fwka", map[string]string{
		"iptables -A INPUT -p udp -j REJECT --reject-with tcp-reset":        "refused",
		"iptables -t nat -A POSTROUTING -j DNAT --to-destination 192.0.2.1": "refused",
	})
}

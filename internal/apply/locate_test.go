package apply

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// restoreText is a generated restore text with two tables; the rule files'
// rules (those with an origin) are lines 4, 5, 7 and 13.
const restoreText = `*filter
:ISPB-INPUT - [0:0]
:ISPB-U-INPUT - [0:0]
-A ISPB-U-INPUT -p tcp --dport 2222 -j ACCEPT
-A ISPB-U-INPUT -p tcp --dport 1 -j NO_SUCH_CHAIN
-A ISPB-INPUT -j ISPB-U-INPUT
-A ISPB-U-INPUT -p udp -j REJECT --reject-with tcp-reset
-A INPUT -j ISPB-INPUT
COMMIT
*nat
:ISPB-POSTROUTING - [0:0]
:ISPB-U-POSTROUTING - [0:0]
-A ISPB-U-POSTROUTING -j DNAT --to-destination 192.0.2.1
-A ISPB-POSTROUTING -j ISPB-U-POSTROUTING
-A POSTROUTING -j ISPB-POSTROUTING
COMMIT
`

func restoreOrigins() []string {
	o := make([]string, 16)
	o[3], o[4], o[6], o[12] = "f:1", "f:5", "f:9", "f:12"
	return o
}

// fakeKernel fails a one-table candidate the way nf_tables would for the
// lines of restoreText, recording every candidate it was given.
type fakeKernel struct {
	refuse func(candidate string) bool
	tried  []string
}

func (k *fakeKernel) fails(candidate string) (bool, error) {
	k.tried = append(k.tried, candidate)
	if !strings.HasPrefix(candidate, "*") || !strings.HasSuffix(candidate, "COMMIT\n") || strings.Count(candidate, "*") != 1 {
		return false, errors.New("candidate is not one table")
	}
	return k.refuse(candidate), nil
}

func TestLocateRule(t *testing.T) {
	has := func(s string) func(string) bool { return func(c string) bool { return strings.Contains(c, s) } }
	tests := []struct {
		name   string
		bad    int
		refuse func(string) bool
		want   int
	}{
		{"missing chain, blamed on COMMIT", 9, has("NO_SUCH_CHAIN"), 5},
		{"refused argument, blamed on COMMIT", 9, has("tcp-reset"), 7},
		{"refused target, blamed on the jump linking its chain", 14, func(c string) bool {
			return strings.Contains(c, "DNAT") && strings.Contains(c, "-A ISPB-POSTROUTING -j ISPB-U-POSTROUTING")
		}, 13},
		{"ispbalance's own line fails alone", 9, has("-A INPUT -j ISPB-INPUT"), 0},
		{"not reproducible", 9, func(string) bool { return false }, 0},
		{"no table holds the line", 99, has("x"), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := &fakeKernel{refuse: tt.refuse}
			got, err := locateRule(restoreText, restoreOrigins(), tt.bad, k.fails)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("blamed line %d, want %d; candidates:\n%s", got, tt.want, strings.Join(k.tried, "----\n"))
			}
			// Every candidate keeps all of ispbalance's own lines of its table.
			lines, origins := strings.Split(restoreText, "\n"), restoreOrigins()
			for _, c := range k.tried {
				table := ""
				for i, l := range lines {
					if strings.HasPrefix(l, "*") {
						table = l
					}
					if l != "" && strings.HasPrefix(c, table+"\n") && origins[i] == "" && !strings.Contains(c, l+"\n") {
						t.Errorf("a candidate lacks ispbalance's own line %q:\n%s", l, c)
					}
				}
			}
		})
	}
}

func TestLocateRuleStopsOnError(t *testing.T) {
	calls := 0
	got, err := locateRule(restoreText, restoreOrigins(), 9, func(string) (bool, error) {
		calls++
		return false, errors.New("no namespaces here")
	})
	if got != 0 || err == nil || calls != 1 {
		t.Errorf("got line %d, err %v after %d calls; want 0, the error, 1 call", got, err, calls)
	}
}

func TestRestoreReason(t *testing.T) {
	tests := []struct{ stderr, want string }{
		{"iptables-restore v1.8.9 (nf_tables): Chain 'NO_SUCH_CHAIN' does not exist\nError occurred at line: 59\nTry `iptables-restore -h' or 'iptables-restore --help' for more information.\n",
			"Chain 'NO_SUCH_CHAIN' does not exist"},
		{"iptables-restore v1.8.9 (nf_tables): \nline 4: RULE_APPEND failed (Invalid argument): rule in chain POSTROUTING\n",
			"the kernel refused it (Invalid argument)"},
		{"iptables-restore v1.8.9 (nf_tables): Couldn't load match `nosuchmatch':No such file or directory\n\nError occurred at line: 3\nTry `iptables-restore -h' or 'iptables-restore --help' for more information.\n",
			"Couldn't load match `nosuchmatch':No such file or directory"},
		{"iptables-restore: line 5 failed\n", "the kernel refused it"},
		{"", "iptables-restore refused it"},
	}
	for _, tt := range tests {
		if got := restoreReason(tt.stderr); got != tt.want {
			t.Errorf("restoreReason(%q) = %q, want %q", tt.stderr, got, tt.want)
		}
	}
}

func TestAsInKernel(t *testing.T) {
	before, err := parseSave([]byte(sampleSave))
	if err != nil {
		t.Fatal(err)
	}
	got := asInKernel("*filter\n:ISPB-INPUT - [0:0]\n-A ISPB-INPUT -j FAIL2BAN\nCOMMIT\n", before)
	want := "*filter\n:FAIL2BAN - [0:0]\n:ISPB-MARK-OLD - [0:0]\n:ISPB-INPUT - [0:0]\n-A ISPB-INPUT -j FAIL2BAN\n-A INPUT -j ISPB-INPUT\nCOMMIT\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	// A jump the text adds itself, or to a chain it deletes, is not added.
	got = asInKernel("*filter\n:ISPB-INPUT - [0:0]\n-A INPUT -j ISPB-INPUT\n-X ISPB-INPUT\nCOMMIT\n", before)
	if strings.Count(got, "-A INPUT -j ISPB-INPUT") != 1 {
		t.Errorf("jump added twice:\n%s", got)
	}
	if got := asInKernel("*raw\nCOMMIT\n", before); got != "*raw\nCOMMIT\n" {
		t.Errorf("a table the kernel does not have changed: %q", got)
	}
}

func TestRuleFileText(t *testing.T) {
	path := filepath.Join(t.TempDir(), "10-site")
	os.WriteFile(path, []byte("# site rules\n\n  iptables -A INPUT -j NO_SUCH_CHAIN  \r\n"), 0o644)
	if got := ruleFileText(path+":3", "fallback"); got != "iptables -A INPUT -j NO_SUCH_CHAIN" {
		t.Errorf("line 3: %q", got)
	}
	for _, origin := range []string{path + ":9", path + ":2", path, filepath.Join(t.TempDir(), "gone") + ":1"} {
		if got := ruleFileText(origin, "fallback"); got != "fallback" {
			t.Errorf("%s: %q, want the fallback", origin, got)
		}
	}
}

func TestRuleFileErrorText(t *testing.T) {
	re := &RestoreError{Stderr: "x", Err: errors.New("exit status 4")}
	err := error(&RuleFileError{Origin: "balance/firewall/10-site:5", Text: "iptables -A INPUT -j NO_SUCH_CHAIN", Reason: "Chain 'NO_SUCH_CHAIN' does not exist", Err: re})
	if got, want := err.Error(), "balance/firewall/10-site:5: iptables -A INPUT -j NO_SUCH_CHAIN: Chain 'NO_SUCH_CHAIN' does not exist"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	var got *RestoreError
	if !errors.As(err, &got) || got != re {
		t.Error("the restore error is not reachable with errors.As")
	}
}

package rules

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ispbalance/ispbalance/internal/trust"
)

func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		path := filepath.Join(root, name)
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(path, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestReadDir(t *testing.T) {
	root := writeTree(t, map[string]string{
		"routes/20.more":              "ip route add 10.1.0.0/16 dev eth1\n",
		"routes/10.first":             "# comment\n\nip route add 10.2.0.0/16 dev eth1\n",
		"routes/10.first~":            "not | valid",
		"routes/#10.first#":           "not | valid",
		"routes/.10.first.swp":        "not | valid",
		"routes/.hidden":              "not | valid",
		"routes/old.bak":              "not | valid",
		"firewall/01.accept":          "iptables -A INPUT -p tcp --dport 22 -j ACCEPT\n",
		"firewall/01.accept.dpkg-old": "not | valid",
		"firewall/01.accept.rpmnew":   "not | valid",
		"firewall/01.accept.rpmsave":  "not | valid",
		"firewall/02.vim.swp":         "not | valid",
		"firewall/03.forwards.pl":     "$B->forward(80 => '192.168.10.35');\n",
		"firewall/04.dir/":            "",
		"pre-run/10.pre":              "modprobe nf_conntrack\n",
		// post-run/ does not exist.
	})
	if err := os.Symlink(filepath.Join(root, "routes", "20.more"), filepath.Join(root, "routes", "30.link")); err != nil {
		t.Fatal(err)
	}
	files, notes, err := ReadDir(root, trust.Refuse)
	if err != nil {
		t.Fatal(err)
	}
	type fileSummary struct {
		Path  string
		Kind  Kind
		Lines []string
	}
	var got []fileSummary
	for _, f := range files {
		s := fileSummary{Path: strings.TrimPrefix(f.Path, root+"/"), Kind: f.Kind}
		for _, l := range f.Lines {
			s.Lines = append(s.Lines, strings.TrimPrefix(l.Pos.String(), root+"/")+" "+l.Text)
		}
		got = append(got, s)
	}
	want := []fileSummary{
		{"pre-run/10.pre", PreRun, []string{"pre-run/10.pre:1 modprobe nf_conntrack"}},
		{"routes/10.first", Routes, []string{"routes/10.first:3 ip route add 10.2.0.0/16 dev eth1"}},
		{"routes/20.more", Routes, []string{"routes/20.more:1 ip route add 10.1.0.0/16 dev eth1"}},
		{"routes/30.link", Routes, []string{"routes/30.link:1 ip route add 10.1.0.0/16 dev eth1"}},
		{"firewall/01.accept", Firewall, []string{"firewall/01.accept:1 iptables -A INPUT -p tcp --dport 22 -j ACCEPT"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	var gotNotes []string
	for _, n := range notes {
		gotNotes = append(gotNotes, strings.TrimPrefix(n.String(), root+"/"))
	}
	wantNotes := []string{
		"firewall/03.forwards.pl: Perl rule files are no longer run; translate it with migrate and remove it",
		"firewall/04.dir: not a regular file; skipped",
	}
	if diff := cmp.Diff(wantNotes, gotNotes); diff != "" {
		t.Errorf("notes (-want +got):\n%s", diff)
	}
}

func TestReadDirErrors(t *testing.T) {
	root := writeTree(t, map[string]string{
		"routes/10.bad":    "ip route add 10.0.0.0/8 dev eth1\nip route flush cache\n",
		"firewall/10.bad":  "iptables -A INPUT -j ACCEPT\niptables -A INPUT -j ACCEPT | tee\n",
		"post-run/10.good": "logger done\n",
	})
	files, _, err := ReadDir(root, trust.Refuse)
	if err == nil {
		t.Fatal("ReadDir succeeded on bad files")
	}
	if files != nil {
		t.Errorf("ReadDir returned files with an error: %v", files)
	}
	for _, want := range []string{
		filepath.Join(root, "routes/10.bad") + ":2: ip route flush",
		filepath.Join(root, "firewall/10.bad") + ":2: pipe |",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestParseFileErrors(t *testing.T) {
	for _, c := range []struct {
		kind Kind
		line string
		want string
	}{
		{Firewall, "iptables -t filtre -A INPUT -j ACCEPT", `unknown table "filtre"`},
		{Firewall, "iptables --table=security -A INPUT -j ACCEPT", `unknown table "security"`},
		{Firewall, "iptables -t nat -t nat -A INPUT", "more than one -t"},
		{Firewall, "iptables -p tcp -j ACCEPT", "no operation"},
		{Firewall, "iptables -A INPUT -p tcp -A OUTPUT", "more than one operation"},
		{Firewall, "iptables -F", "-F without a chain"},
		{Firewall, "iptables -t nat -X", "-X without a chain"},
		{Firewall, "iptables -F INPUT", "-F INPUT: built-in chains belong to ispbalance"},
		{Firewall, "iptables -t nat --delete-chain POSTROUTING", "-X POSTROUTING: built-in"},
		{Firewall, "iptables -P FORWARD ACCEPT", "policies belong to ispbalance"},
		{Firewall, "iptables -L INPUT -n", "is a query"},
		{Firewall, "iptables -R INPUT 1 -j ACCEPT", "-R is not supported"},
		{Firewall, "iptables -N INPUT", "INPUT is a built-in chain"},
		{Firewall, "iptables -N MINE extra", "unexpected arguments"},
		{Firewall, "iptables -A", "missing chain"},
		{Firewall, "iptables -A POSTROUTING -j ACCEPT", "table filter has no chain POSTROUTING"},
		{Firewall, "iptables -A ISPB-LAN -j ACCEPT", "chain ISPB-LAN belongs to ispbalance"},
		{Firewall, "iptables -A INPUT -j ISPB-DROP", "chain ISPB-DROP belongs to ispbalance"},
		{Firewall, "iptables -A INPUT -g ISPB-DROP", "chain ISPB-DROP belongs to ispbalance"},
		{Firewall, "iptables -I INPUT 0 -j ACCEPT", "rule number 0"},
		{Firewall, "iptables -D INPUT 2 -j ACCEPT", "not both"},
		{Firewall, "iptables -A INPUT -W", "-W needs an argument"},
		{Firewall, "iptables -A abcdefghijklmnopqrstuvwxyz1234 -j ACCEPT", "longer than 21"},
		// 22 characters: ISPB-U- makes 29, one more than iptables allows.
		{Firewall, "iptables -N abcdefghijklmnopqrstuv", `chain name "abcdefghijklmnopqrstuv" is longer than 21 characters (it is kept as ISPB-U-abcdefghijklmnopqrstuv, and iptables allows 28)`},
		{Firewall, "iptables -A INPUT -j abcdefghijklmnopqrstuvwxyz123", "longer than 28"},
		// iptables-restore reads chain names as words of a line.
		{Firewall, "iptables -N 'my chain'", "contains white space"},
		{Firewall, `iptables -A INPUT -j 'a"b'`, "a quote"},
		{Firewall, "iptables --append=-x -j ACCEPT", `chain name "-x" starts with "-"`},
		{Firewall, "iptables -N '!x'", `chain name "!x" starts with "!"`},
		// Written out, the 5 would be read as the rule number.
		{Firewall, "iptables 5 -I INPUT -j ACCEPT", `iptables -I INPUT: unexpected argument "5"`},
		{Firewall, "iptables -A INPUT 5 -j ACCEPT", `unexpected argument "5"`},
		// Every spelling getopt reads is a jump.
		{Firewall, "iptables -A INPUT --jump=ISPB-DROP", "chain ISPB-DROP belongs to ispbalance"},
		{Firewall, "iptables -A INPUT -jISPB-DROP", "chain ISPB-DROP belongs to ispbalance"},
		{Firewall, "iptables -A INPUT --goto=ISPB-DROP", "chain ISPB-DROP belongs to ispbalance"},
		{Firewall, "force-route DSL -p tcp -jACCEPT", "-jACCEPT is not a selector"},
		{Routes, "ip route flush table main", "ip route flush is not allowed"},
		{Routes, "ip r show", "ip route show is not allowed"},
		{Routes, "ip -4 route change default via 1.2.3.4", "ip route change is not allowed"},
		{Routes, "ip rule list", "ip rule list is not allowed"},
		{Routes, "ip rule replace from 1.2.3.4 table 5", "use add or del"},
		{Firewall, "ip ro", "missing subcommand"},
		{Routes, "ip route add", "missing destination"},
		{Firewall, "forward", "usage: forward PORT"},
		{PreRun, "forward-with-snat 80", "usage: forward-with-snat PORT"},
		{Firewall, "forward 99999 192.168.1.2", `port "99999"`},
		{Firewall, "forward http 192.168.1.2", `port "http"`},
		{Firewall, "forward 80 nas.example.com", "not an IPv4 address"},
		{Firewall, "forward 80 fe80::1", "not a unicast address a LAN host can be forwarded to"},
		{Firewall, "forward 80 [2001:db8::1]:", `port ""`},
		{Firewall, "forward 80 [2001:db8::1", "lacks the closing ]"},
		{Firewall, "forward 80 [192.168.1.2]:80", "is not an IPv6 address"},
		{Firewall, "forward 80 2001:db8::1:80:", "is not an IPv6 address"},
		{Firewall, "forward 80 192.168.1.2:0", `port "0"`},
		{Firewall, "forward 80 192.168.1.2 icmp", `protocol "icmp"`},
		{Firewall, "force-route", "usage: force-route"},
		{Firewall, "force-route DSL -p tcp -j ACCEPT", "-j is not a selector"},
		{Firewall, "force-route DSL -t nat -p tcp", "-t is not a selector"},
		{Firewall, "force-route DSL --append INPUT", "--append is not a selector"},
		{Firewall, "add-route 192.168.100.0/24", "usage: add-route"},
		{Firewall, "add-route 192.168.100.0/24 eth3 yes", "usage: add-route"},
		{Firewall, "add-route 192.168.100.1/24 eth3", "has host bits set; the network is 192.168.100.0/24"},
		{Firewall, "add-route 2001:db8::/32 eth3", "is not IPv4"},
		{Firewall, "add-route office eth3", "not a network"},
		{Firewall, "add-route 10.0.0.0/8 averyveryverylongname", "not a network device name"},
		{Firewall, "firewall-rule INPUT", "usage: firewall-rule"},
		{Firewall, "firewall-rule INPUT - -A OUTPUT -j ACCEPT", "-A is not allowed in ARGS"},
		{Firewall, "firewall-rule INPUT - -t nat -j ACCEPT", "-t is not allowed in ARGS"},
		{Firewall, "firewall-rule INPUT bogus -j ACCEPT", `unknown table "bogus"`},
		{Firewall, "firewall-rule FORWARD nat -j ACCEPT", "firewall-rule: iptables: table nat has no chain FORWARD"},
		{Firewall, "firewall-rule -p - -j ACCEPT", "is not a chain"},
		{Firewall, "${LAN.dev} up", "not a placeholder"},
		{Firewall, "iptables -A INPUT -s ${LAN.nett}", `unknown field "nett"`},
		{PostRun, "echo ${:all.dev}", "unknown group :all"},
		{PostRun, "echo a; echo b", "command separator ;"},
	} {
		_, err := ParseFile("f", c.kind, []byte("# first line\n"+c.line+"\n"))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "f:2: ") {
			t.Errorf("%s line %q: error %v, want f:2: ... %q", c.kind, c.line, err, c.want)
		}
	}
}

// TestIPTablesJumpSpellings: a jump written "-jX" or "--jump=X" comes out
// as two words, like "-j X", so the planner renames a jump to the file's
// own chain whichever way it is written.
func TestIPTablesJumpSpellings(t *testing.T) {
	for _, line := range []string{"-A INPUT -jMINE", "-A INPUT --jump=MINE", "-A INPUT -j MINE"} {
		ipt, err := parseIPTables(strings.Fields(line))
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if name := ipt.rule.Args[0]; len(ipt.rule.Args) != 2 || ipt.rule.Args[1] != "MINE" || name != "-j" && name != "--jump" {
			t.Errorf("%s: args %q, want a jump option and MINE", line, ipt.rule.Args)
		}
	}
	ipt, err := parseIPTables([]string{"-A", "INPUT", "--goto=MINE", "-gOTHER"})
	if err != nil || !slices.Equal(ipt.rule.Args, []string{"--goto", "MINE", "-g", "OTHER"}) {
		t.Errorf("gotos: %q, %v", ipt.rule.Args, err)
	}
}

// TestParseFileKinds checks that only routes/ and firewall/ fold iptables
// and ip lines into the plan, so their checks apply there alone.
func TestParseFileKinds(t *testing.T) {
	src := "iptables -F\nip route flush cache\nforward 80 192.168.1.2\n"
	for _, k := range []Kind{PreRun, PostRun} {
		f, err := ParseFile("f", k, []byte(src))
		if err != nil {
			t.Errorf("%s: %v", k, err)
			continue
		}
		got := []lineKind{}
		for _, l := range f.Lines {
			got = append(got, l.kind)
		}
		if diff := cmp.Diff([]lineKind{lkCommand, lkCommand, lkForward}, got); diff != "" {
			t.Errorf("%s kinds (-want +got):\n%s", k, diff)
		}
	}
	if _, err := ParseFile("f", Firewall, []byte(src)); err == nil {
		t.Error("firewall/ accepted iptables -F and ip route flush")
	}
}

func TestParseFileMultipleErrors(t *testing.T) {
	_, err := ParseFile("f", Firewall, []byte("iptables -F\r\nok-command\r\necho $(x)\r\n"))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"f:1: iptables -F", "f:3: command substitution"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

package rules

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/google/go-cmp/cmp"

	"github.com/ispbalance/ispbalance/internal/kernelnames"
)

// addRuleLines seeds f with the words after the program name of every
// line of the migrate goldens that starts with program.
func addRuleLines(f *testing.F, program string) {
	paths, err := filepath.Glob(filepath.Join("testdata", "migrate", "*.golden"))
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		for line := range strings.Lines(string(data)) {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), program+" "); ok {
				f.Add(rest)
			}
		}
	}
}

// lineArgs splits a rule line's words as ParseFile would and gives them
// the sample values; ok is false for a line that does not split.
func lineArgs(line string) ([]string, bool) {
	if strings.Contains(line, "\n") {
		return nil, false // a rule file's lines never hold one
	}
	ws, err := split(line)
	if err != nil {
		return nil, false
	}
	return renderWords(ws, sampleValue), true
}

// FuzzParseIP checks `ip route` and `ip rule` lines. An accepted line
// keeps its arguments exactly (the planner reads them), names an allowed
// subcommand in its canonical spelling, and reads the same again when
// written canonically; through ParseFile and Expand it becomes exactly
// that command, at its line. Anything else is refused with a message that
// names the ip command.
func FuzzParseIP(f *testing.F) {
	addRuleLines(f, "ip")
	for _, s := range []string{
		"route add 10.1.0.0/16 dev eth1", "-4 r replace default via 192.0.2.1 table 4201", "ro del 10.0.0.0/8",
		"rule add fwmark ${DSL.fwmark} table ${DSL.table}", "ru delete from 10.0.0.0/8 lookup main",
		"route flush table main", "rule replace from 1.2.3.4 table 5", "ro", "route add", "-4 -4 route append x",
		"-6 route add ::/0 dev eth0", "link set eth0 up", "r 'a b' \"c\"",
	} {
		f.Add(s)
	}
	ops := map[string][]string{"route": {"add", "replace", "append", "del"}, "rule": {"add", "del"}}
	f.Fuzz(func(t *testing.T, text string) {
		args, ok := lineArgs(text)
		if !ok {
			return
		}
		object, cmd, err := parseIP(args)
		if _, _, _, isIP := ipObject(args); !isIP {
			if err == nil {
				t.Fatalf("%q is not an ip route or rule command, but was accepted", args)
			}
			return
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "ip route") && !strings.HasPrefix(err.Error(), "ip rule") {
				t.Fatalf("error does not name the command: %v", err)
			}
			return
		}
		if !slices.Contains(ops[object], cmd.Op) {
			t.Fatalf("%q: op %q of %q", args, cmd.Op, object)
		}
		lead := slices.IndexFunc(args, func(a string) bool { return a != "-4" && a != "-6" })
		if !slices.Equal(cmd.Args, args[lead+2:]) {
			t.Fatalf("%q: arguments became %q", args, cmd.Args)
		}
		if object == "route" && len(cmd.Args) == 0 {
			t.Fatalf("%q: a route without a destination", args)
		}
		if argv := cmd.Argv(); argv[0] != cmd.Op || !slices.Equal(argv[1:], cmd.Args) {
			t.Fatalf("Argv %q of %+v", argv, cmd)
		}
		canonical := append([]string{object}, cmd.Argv()...)
		switch cmd.Family {
		case IPv4:
			canonical = append([]string{"-4"}, canonical...)
		case IPv6:
			canonical = append([]string{"-6"}, canonical...)
		}
		o2, c2, err := parseIP(canonical)
		if err != nil || o2 != object || !cmp.Equal(c2, cmd) {
			t.Fatalf("canonical %q reads as %s %+v, %v; want %s %+v", cmd.Argv(), o2, c2, err, object, cmd)
		}

		file, err := ParseFile("f", Routes, []byte("# literal\nip "+Quote(args)+"\n"))
		if err != nil {
			t.Fatalf("ParseFile: %v", err)
		}
		r, err := Expand([]File{file}, testFacts())
		if err != nil {
			t.Fatalf("Expand: %v", err)
		}
		got := r.Routes
		if object == "rule" {
			got = r.IPRules
		}
		cmd.Pos = Pos{File: "f", Line: 2}
		if len(got) != 1 || !cmp.Equal(got[0], cmd) || len(r.Routes)+len(r.IPRules) != 1 {
			t.Fatalf("Expand gave routes %+v and rules %+v; want one %s %+v", r.Routes, r.IPRules, object, cmd)
		}
	})
}

// FuzzParseIPTables checks iptables lines. An accepted rule names a table
// and an operation the planner handles, never one of ispbalance's own
// chains, and a chain whose renamed form (ISPB-U-...) fits iptables' 28
// characters and survives iptables-restore's reading of a line; every
// jump, however getopt would have read it, is split out and checked the
// same way; and the rule's Argv reads back as the same rule.
func FuzzParseIPTables(f *testing.F) {
	addRuleLines(f, "iptables")
	for _, s := range []string{
		"-A INPUT -p tcp --dport 22 -j ACCEPT", "-t nat -I POSTROUTING 2 -o eth0 -j MASQUERADE", "-N MINE",
		"-t mangle -D PREROUTING 1", "-F MINE", "-X MINE", "-A MINE -w 5 -jISPB-INPUT", "--append=INPUT --jump=MINE",
		"-A INPUT -g ISPB-DROP", "-tnat -A OUTPUT -j DNAT --to-destination 10.0.0.1", "-N 'a b'",
		"-A abcdefghijklmnopqrstuv -j ACCEPT", "-P INPUT ACCEPT", "-A INPUT -m comment --comment 'a;b' -j ACCEPT",
	} {
		f.Add(s)
	}
	ops := []string{"-A", "-I", "-D", "-N", "-F", "-X"}
	clean := func(name string) bool {
		return name != "" && !strings.HasPrefix(name, kernelnames.ChainPrefix) && !strings.ContainsAny(name[:1], "-!") &&
			!strings.ContainsFunc(name, func(r rune) bool {
				return unicode.IsSpace(r) || unicode.IsControl(r) || r == '"' || r == '\'' || r == '\\'
			})
	}
	f.Fuzz(func(t *testing.T, text string) {
		args, ok := lineArgs(text)
		if !ok {
			return
		}
		ipt, err := parseIPTables(args)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "iptables") {
				t.Fatalf("error does not name the command: %v", err)
			}
			return
		}
		r := ipt.rule
		if _, ok := builtinChains[r.Table]; !ok || !slices.Contains(ops, r.Op) || ipt.newChain != (r.Op == "-N") {
			t.Fatalf("%q: table %q, op %q", args, r.Table, r.Op)
		}
		if r.Num < 0 || r.Num > 0 && r.Op != "-I" && r.Op != "-D" {
			t.Fatalf("%q: rule number %d with %s", args, r.Num, r.Op)
		}
		// iptables' own limit, written out: the kernel keeps 29 bytes.
		if !clean(r.Chain) || len(kernelnames.UserChain(r.Chain)) > 28 {
			t.Fatalf("%q: chain %q", args, r.Chain)
		}
		if isBuiltin(r.Chain) && (!slices.Contains(builtinChains[r.Table], r.Chain) || r.Op == "-N" || r.Op == "-F" || r.Op == "-X") {
			t.Fatalf("%q: %s on built-in chain %s of %s", args, r.Op, r.Chain, r.Table)
		}
		for i, a := range r.Args {
			if !isJump(a) {
				continue
			}
			if a != "-j" && a != "-g" && a != "--jump" && a != "--goto" {
				t.Fatalf("%q: jump %q not split from its target", args, a)
			}
			if i+1 < len(r.Args) && (!clean(r.Args[i+1]) || len(r.Args[i+1]) > 28) {
				t.Fatalf("%q: jump to %q", args, r.Args[i+1])
			}
		}
		again, err := parseIPTables(r.Argv())
		if err != nil || !cmp.Equal(again.rule, r) || again.newChain != ipt.newChain {
			t.Fatalf("Argv %q reads as %+v, %v; want %+v", r.Argv(), again.rule, err, r)
		}
	})
}

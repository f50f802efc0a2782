package apply

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	kn "github.com/ispbalance/ispbalance/internal/kernelnames"
)

// renderSave writes st out as iptables-save would.
func renderSave(st firewallState) string {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(st)) {
		t := st[name]
		fmt.Fprintf(&b, "*%s\n", name)
		for _, c := range slices.Sorted(maps.Keys(t.policies)) {
			fmt.Fprintf(&b, ":%s %s [0:0]\n", c, t.policies[c])
		}
		for _, c := range t.chains {
			fmt.Fprintf(&b, ":%s - [0:0]\n", c)
		}
		for _, c := range slices.Sorted(maps.Keys(t.rules)) {
			for _, r := range t.rules[c] {
				fmt.Fprintf(&b, "-A %s %s\n", c, r)
			}
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

var saveErrorLine = regexp.MustCompile(`^parsing iptables-save line (\d+): `)

// FuzzParseSave reads arbitrary iptables-save output. What parseSave
// reads must be what the text says: written back, it reads the same; the
// jumps it counts are exactly the rules that jump from a built-in chain
// to one of ours. What is rebuilt from it must leave other software's
// chains alone: removing everything of ours deletes only our chains and
// our jumps, and restoring a snapshot over itself deletes nothing. An
// error names the line it is about.
func FuzzParseSave(f *testing.F) {
	f.Add(sampleSave)
	f.Add(restoreText)
	f.Add("*filter\n:FOREIGN - [0:0]\n-A FOREIGN -s 198.51.100.7/32 -j DROP\n-A INPUT -j FOREIGN\n-A INPUT -j ISPB-INPUT -m x\nCOMMIT\n")
	f.Add("*mangle\n:PREROUTING ACCEPT [0:0]\n:ISPB-MARK-A - [0:0]\n-A PREROUTING -j ISPB-MARK-A\n-A ISPB-MARK-A -j MARK --set-xmark 0x1000000/0x3f000000\nCOMMIT\n*raw\nCOMMIT\n")
	f.Add("# x\n-A INPUT -j ACCEPT\n")
	f.Add("*nat\n:X\nCOMMIT\n")
	f.Fuzz(func(t *testing.T, text string) {
		st, err := parseSave([]byte(text))
		if err != nil {
			m := saveErrorLine.FindStringSubmatch(err.Error())
			if m == nil {
				t.Fatalf("error without a line number: %v", err)
			}
			n, _ := strconv.Atoi(m[1])
			lines := strings.Split(text, "\n")
			if n < 1 || n > len(lines) {
				t.Fatalf("error at line %d of %d: %v", n, len(lines), err)
			}
			if l := strings.TrimSuffix(lines[n-1], "\r"); l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "*") {
				t.Fatalf("error blames line %d, %q, which cannot be wrong: %v", n, l, err)
			}
			return
		}
		// bufio.Scanner drops one CR before each LF; iptables-save never
		// writes one, so a state with a CR left in it cannot be written
		// back to the same text.
		if !strings.Contains(text, "\r") {
			again, err := parseSave([]byte(renderSave(st)))
			if err != nil {
				t.Fatalf("written back, the state does not parse: %v\n%s", err, renderSave(st))
			}
			if diff := cmp.Diff(st, again, cmp.AllowUnexported(savedTable{})); diff != "" {
				t.Fatalf("written back and read again (-first +again):\n%s", diff)
			}
		}
		for name, tab := range st {
			want := map[string]int{}
			for from, rules := range tab.rules {
				for _, r := range rules {
					if to, ok := strings.CutPrefix(r, "-j "); ok && isBuiltin(name, from) && isOurs(to) && !strings.Contains(to, " ") {
						want[from+" "+to]++
					}
				}
			}
			if diff := cmp.Diff(want, tab.jumps); diff != "" {
				t.Fatalf("table %q: jumps (-rules say +counted):\n%s", name, diff)
			}
			for _, c := range st.ourChains(name) {
				if !strings.HasPrefix(c, kn.ChainPrefix) {
					t.Fatalf("table %q: %q counted as ours", name, c)
				}
			}
		}
		for _, line := range strings.Split(restoreOurPart(firewallState{}, st), "\n") {
			f := strings.Fields(line)
			var chain string
			switch {
			case strings.HasPrefix(line, ":") && len(f) > 0:
				chain = f[0][1:]
			case strings.HasPrefix(line, "-X ") && len(f) > 1:
				chain = f[1]
			case strings.HasPrefix(line, "-D ") && len(f) == 4 && f[2] == "-j":
				chain = f[3]
			case strings.HasPrefix(line, "-"):
				t.Fatalf("removing our part: unexpected %q", line)
			}
			if chain != "" && !isOurs(chain) {
				t.Fatalf("removing our part touches %q: %q", chain, line)
			}
		}
		for _, line := range strings.Split(restoreOurPart(st, st), "\n") {
			if strings.HasPrefix(line, "-D ") || strings.HasPrefix(line, "-X ") {
				t.Fatalf("restoring the state over itself deletes: %q", line)
			}
		}
	})
}

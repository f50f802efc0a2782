package apply

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"

	kn "github.com/ispbalance/ispbalance/internal/kernelnames"
	"github.com/ispbalance/ispbalance/internal/plan"
	"github.com/ispbalance/ispbalance/internal/render"
)

// builtinChains are the chains iptables creates in each table we use.
var builtinChains = map[string][]string{
	"filter": {"INPUT", "FORWARD", "OUTPUT"},
	"mangle": {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
	"nat":    {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
	"raw":    {"PREROUTING", "OUTPUT"},
}

// ourTables are the tables ispbalance may write to, in restore order
// (raw only for rule files that use it).
var ourTables = []string{"filter", "mangle", "nat", "raw"}

// flushedTables are what --flush clears, as the original did.
var flushedTables = []string{"filter", "mangle", "nat"}

// savedTable is one table as iptables-save printed it.
type savedTable struct {
	policies map[string]string // built-in chain -> policy
	chains   []string          // every non-built-in chain, in order
	rules    map[string][]string
	// jumps counts `-A BUILTIN -j ISPB-...` rules by "BUILTIN ISPB-..."
	jumps map[string]int
}

// firewallState is the parsed iptables-save output.
type firewallState map[string]*savedTable

func isOurs(chain string) bool { return strings.HasPrefix(chain, kn.ChainPrefix) }

func isBuiltin(table, chain string) bool {
	for _, c := range builtinChains[table] {
		if c == chain {
			return true
		}
	}
	return false
}

// parseSave reads iptables-save output. Rule lines are kept as text after
// "-A CHAIN ", which iptables-restore accepts back verbatim.
func parseSave(out []byte) (firewallState, error) {
	st := firewallState{}
	var cur *savedTable
	var curName string
	sc := bufio.NewScanner(bytes.NewReader(out))
	// Lines are short; the buffer grows for a rule with a huge set.
	sc.Buffer(make([]byte, 0, 64<<10), 1<<24)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "*"):
			curName = line[1:]
			cur = &savedTable{policies: map[string]string{}, rules: map[string][]string{}, jumps: map[string]int{}}
			st[curName] = cur
		case cur == nil:
			return nil, fmt.Errorf("parsing iptables-save line %d: %q outside a table", n, line)
		case strings.HasPrefix(line, ":"):
			f := strings.Fields(line[1:])
			if len(f) < 2 {
				return nil, fmt.Errorf("parsing iptables-save line %d: %q", n, line)
			}
			if f[1] != "-" {
				cur.policies[f[0]] = f[1]
			} else {
				cur.chains = append(cur.chains, f[0])
			}
		case strings.HasPrefix(line, "-A "):
			chain, rest, _ := strings.Cut(line[3:], " ")
			cur.rules[chain] = append(cur.rules[chain], rest)
			if isBuiltin(curName, chain) {
				if to, ok := strings.CutPrefix(rest, "-j "); ok && isOurs(to) && !strings.Contains(to, " ") {
					cur.jumps[chain+" "+to]++
				}
			}
		case line == "COMMIT":
			cur = nil
		}
	}
	return st, sc.Err()
}

// ourChains lists the ISPB- chains present in a table.
func (st firewallState) ourChains(table string) []string {
	t := st[table]
	if t == nil {
		return nil
	}
	var out []string
	for _, c := range t.chains {
		if isOurs(c) {
			out = append(out, c)
		}
	}
	return out
}

// restoreOurPart renders restore input that brings our chains and jumps in
// every table back to what snapshot had, from the state now. It is how a
// failed apply is rolled back and, with an empty snapshot, how `stop`
// removes everything.
func restoreOurPart(snapshot, now firewallState) string {
	var b strings.Builder
	for _, table := range ourTables {
		was, is := snapshot[table], now[table]
		if was == nil {
			was = &savedTable{jumps: map[string]int{}}
		}
		if is == nil {
			is = &savedTable{jumps: map[string]int{}}
		}
		keep := snapshot.ourChains(table)
		gone := difference(now.ourChains(table), keep)
		jumpsDiffer := false
		for j := range is.jumps {
			jumpsDiffer = jumpsDiffer || is.jumps[j] != was.jumps[j]
		}
		for j := range was.jumps {
			jumpsDiffer = jumpsDiffer || is.jumps[j] != was.jumps[j]
		}
		if len(keep) == 0 && len(gone) == 0 && !jumpsDiffer {
			continue // nothing of ours here, before or now
		}
		fmt.Fprintf(&b, "*%s\n", table)
		for _, c := range append(append([]string{}, keep...), gone...) {
			fmt.Fprintf(&b, ":%s - [0:0]\n", c)
		}
		for _, c := range keep {
			for _, r := range was.rules[c] {
				fmt.Fprintf(&b, "-A %s %s\n", c, r)
			}
		}
		for _, j := range slices.Sorted(maps.Keys(is.jumps)) {
			for extra := is.jumps[j] - was.jumps[j]; extra > 0; extra-- {
				from, to, _ := strings.Cut(j, " ")
				fmt.Fprintf(&b, "-D %s -j %s\n", from, to)
			}
		}
		for _, j := range slices.Sorted(maps.Keys(was.jumps)) {
			for missing := was.jumps[j] - is.jumps[j]; missing > 0; missing-- {
				from, to, _ := strings.Cut(j, " ")
				fmt.Fprintf(&b, "-A %s -j %s\n", from, to)
			}
		}
		for _, c := range gone {
			fmt.Fprintf(&b, "-X %s\n", c)
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

// flushForeign renders restore input (for a run without --noflush) that
// empties every built-in chain and deletes every other chain of our
// tables, keeping the built-in chains' policies: the original's --flush.
func flushForeign(now firewallState) string {
	var b strings.Builder
	for _, table := range flushedTables {
		fmt.Fprintf(&b, "*%s\n", table)
		for _, c := range builtinChains[table] {
			policy := "ACCEPT"
			if t := now[table]; t != nil && t.policies[c] != "" {
				policy = t.policies[c]
			}
			fmt.Fprintf(&b, ":%s %s [0:0]\n", c, policy)
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

func difference(a, b []string) []string {
	in := map[string]bool{}
	for _, x := range b {
		in[x] = true
	}
	var out []string
	for _, x := range a {
		if !in[x] {
			out = append(out, x)
		}
	}
	return out
}

// ourRules returns the rule lines of our chains, per table and chain.
func (st firewallState) ourRules() map[string]map[string][]string {
	out := map[string]map[string][]string{}
	for table := range st {
		out[table] = map[string][]string{}
		for _, c := range st.ourChains(table) {
			out[table][c] = st[table].rules[c]
		}
	}
	return out
}

// haveJump answers render.RestoreOptions.HaveJump from saved state.
func (st firewallState) haveJump(table string, j plan.Jump) bool {
	t := st[table]
	return t != nil && t.jumps[j.From+" "+j.To] > 0
}

// restoreInput renders the restore text, with each line's origin, that
// makes our part of the firewall the planned tables, from this saved
// state. A table of ours the plan no longer has (raw, once no rule file
// uses it) counts as planned empty, so its chains and jumps go too.
func (st firewallState) restoreInput(tables []plan.Table, existing map[string]map[string][]string) (string, []string) {
	all := slices.Clone(tables)
	for _, name := range ourTables {
		t := st[name]
		planned := slices.ContainsFunc(tables, func(t plan.Table) bool { return t.Name == name })
		if !planned && t != nil && (len(st.ourChains(name)) > 0 || len(t.jumps) > 0) {
			all = append(all, plan.Table{Name: name})
		}
	}
	return render.RestoreWithOrigins(all, render.RestoreOptions{
		HaveJump: st.haveJump, Stale: st.staleChains(all), StaleJumps: st.staleJumps(all), Existing: existing,
	})
}

// staleJumps lists the jumps from built-in chains to our chains that the
// plan does not want, once per copy.
func (st firewallState) staleJumps(tables []plan.Table) map[string][]plan.Jump {
	out := map[string][]plan.Jump{}
	for _, t := range tables {
		saved := st[t.Name]
		if saved == nil {
			continue
		}
		for _, j := range slices.Sorted(maps.Keys(saved.jumps)) {
			from, to, _ := strings.Cut(j, " ")
			if slices.Contains(t.Jumps, plan.Jump{From: from, To: to}) {
				continue
			}
			for range saved.jumps[j] {
				out[t.Name] = append(out[t.Name], plan.Jump{From: from, To: to})
			}
		}
	}
	return out
}

// staleChains lists our chains that exist but that the plan does not want.
func (st firewallState) staleChains(tables []plan.Table) map[string][]string {
	out := map[string][]string{}
	for _, t := range tables {
		var want []string
		for _, c := range t.Chains {
			want = append(want, c.Name)
		}
		if s := difference(st.ourChains(t.Name), want); len(s) > 0 {
			out[t.Name] = s
		}
	}
	return out
}

// Netfilter is one address family's firewall as iptables-save and
// iptables-restore see it: text in, text out. Parsing stays with the
// applier, so a stand-in only has to deal in that text.
type Netfilter interface {
	// Save returns what iptables-save prints.
	Save(ctx context.Context) ([]byte, error)
	// Restore feeds input to iptables-restore; noflush keeps everything
	// the input does not mention.
	Restore(ctx context.Context, input string, noflush bool) error
}

// Binaries is the Netfilter of the running kernel: it runs iptables-save
// and iptables-restore. go-iptables has no restore call (it forks one
// iptables process per rule, with windows between rules), so the atomic
// path talks to the restore binary itself.
type Binaries struct {
	SaveCmd, RestoreCmd string // default iptables-save, iptables-restore
}

func (n Binaries) saveCmd() string {
	if n.SaveCmd == "" {
		return "iptables-save"
	}
	return n.SaveCmd
}

func (n Binaries) restoreCmd() string {
	if n.RestoreCmd == "" {
		return "iptables-restore"
	}
	return n.RestoreCmd
}

// Save runs iptables-save.
func (n Binaries) Save(ctx context.Context) ([]byte, error) {
	bin := n.saveCmd()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("reading the firewall with %s: %w: %s", bin, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// Restore runs iptables-restore; a refusal is a *RestoreError.
func (n Binaries) Restore(ctx context.Context, input string, noflush bool) error {
	_, err := n.RestoreByWriter(ctx, input, noflush)
	return err
}

// RestoreByWriter is Restore that also returns the pid of the
// iptables-restore process, which nf_tables names as the writer of its
// commits.
func (n Binaries) RestoreByWriter(ctx context.Context, input string, noflush bool) (int, error) {
	args := []string{"-w", "10"}
	if noflush {
		args = append(args, "--noflush")
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, n.restoreCmd(), args...)
	cmd.Stdin = strings.NewReader(input)
	cmd.Stderr = &stderr
	err := cmd.Start()
	writer := 0
	if err == nil {
		writer = cmd.Process.Pid
		err = cmd.Wait()
	}
	if err != nil {
		return writer, &RestoreError{Input: input, Stderr: strings.TrimSpace(stderr.String()), Err: err}
	}
	return writer, nil
}

// netfilterFamily is a Netfilter as the applier uses it: saves come back
// parsed.
type netfilterFamily struct{ nf Netfilter }

func (f netfilterFamily) save(ctx context.Context) (firewallState, error) {
	out, err := f.nf.Save(ctx)
	if err != nil {
		return nil, err
	}
	return parseSave(out)
}

func (f netfilterFamily) restore(ctx context.Context, input string, noflush bool) error {
	return f.nf.Restore(ctx, input, noflush)
}

// restoreByWriter restores and says which writer committed: the process
// the kernel names in its commit notices, 0 when the Netfilter cannot
// tell.
func (f netfilterFamily) restoreByWriter(ctx context.Context, input string, noflush bool) (int, error) {
	if w, ok := f.nf.(interface {
		RestoreByWriter(ctx context.Context, input string, noflush bool) (int, error)
	}); ok {
		return w.RestoreByWriter(ctx, input, noflush)
	}
	return 0, f.nf.Restore(ctx, input, noflush)
}

// errNoScratch says a Netfilter cannot try rules aside; the rule at fault
// is then not looked for.
var errNoScratch = errors.New("this firewall cannot try rules in a scratch namespace")

// tryScratch is Binaries.tryScratch where the Netfilter has it.
func (f netfilterFamily) tryScratch(ctx context.Context, input string) (stderr string, failed bool, err error) {
	s, ok := f.nf.(interface {
		tryScratch(ctx context.Context, input string) (string, bool, error)
	})
	if !ok {
		return "", false, errNoScratch
	}
	return s.tryScratch(ctx, input)
}

// restoreErrorLine finds the input line iptables-restore blames: legacy
// says "line 3 failed", nf_tables "Error occurred at line: 3".
var restoreErrorLine = regexp.MustCompile(`line:? (\d+)`)

// RestoreError is a failed iptables-restore run. Its message quotes the
// lines around the one iptables-restore complained about.
type RestoreError struct {
	Input  string
	Stderr string
	Err    error
}

// Line is the input line iptables-restore blamed, 0 if it named none.
func (e *RestoreError) Line() int {
	if m := restoreErrorLine.FindStringSubmatch(e.Stderr); m != nil {
		line, _ := strconv.Atoi(m[1])
		return line
	}
	return 0
}

func (e *RestoreError) Error() string {
	msg := fmt.Sprintf("iptables-restore failed: %v: %s", e.Err, e.Stderr)
	line := e.Line()
	lines := strings.Split(e.Input, "\n")
	if line > 0 && line <= len(lines) {
		lo, hi := max(line-3, 1), min(line+2, len(lines))
		var b strings.Builder
		for i := lo; i <= hi; i++ {
			mark := "  "
			if i == line {
				mark = "> "
			}
			fmt.Fprintf(&b, "\n%s%4d %s", mark, i, lines[i-1])
		}
		msg += b.String()
	}
	return msg
}

func (e *RestoreError) Unwrap() error { return e.Err }

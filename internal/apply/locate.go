package apply

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// RuleFileError is a firewall rule from a rule file that iptables-restore
// refused. It names the file and line, quotes the line as written and says
// why, whatever line of the generated restore text the backend blamed.
type RuleFileError struct {
	Origin string // FILE:LINE
	// Text is the rule file line as written; when the file cannot be read
	// any more, the rule as it was given to iptables-restore.
	Text   string
	Reason string
	Err    *RestoreError
}

func (e *RuleFileError) Error() string {
	return fmt.Sprintf("%s: %s: %s", e.Origin, e.Text, e.Reason)
}

func (e *RuleFileError) Unwrap() error { return e.Err }

// explainRestore turns a failed firewall restore into an error naming the
// rule file line at fault. iptables-restore names the right line only for
// what it checks itself. What the kernel refuses is blamed on the table's
// COMMIT (a jump to a missing chain with nf_tables; everything with the
// legacy backend), or on the jump that links a refused rule's chain to a
// hook, which is ispbalance's own line; then the rule is found by trying
// the table with fewer of the rule files' rules where that is harmless.
func (a *Applier) explainRestore(ctx context.Context, err error, input string, origins []string, before firewallState) error {
	return a.explainRestoreFamily(ctx, a.netfilter, "firewall", err, input, origins, before)
}

// explainRestoreFamily is explainRestore for the family nf restores; what
// names it in messages ("firewall", "IPv6 firewall").
func (a *Applier) explainRestoreFamily(ctx context.Context, nf netfilterFamily, what string, err error, input string, origins []string, before firewallState) error {
	var re *RestoreError
	if !errors.As(err, &re) {
		return fmt.Errorf("installing the %s: %w", what, err)
	}
	line := re.Line()
	if line > 0 && !hasOrigin(origins, line) {
		reason := restoreReason(re.Stderr)
		fails := func(candidate string) (bool, error) {
			stderr, failed, err := nf.tryScratch(ctx, asInKernel(candidate, before))
			return failed && restoreReason(stderr) == reason, err
		}
		found, err := locateRule(input, origins, line, fails)
		if err != nil {
			a.log.Info("could not find which rule the firewall was refused for", "err", err)
		}
		if found > 0 {
			line = found
		}
	}
	if !hasOrigin(origins, line) {
		return fmt.Errorf("installing the %s: %w", what, err)
	}
	// The short message leaves out the restore text; -v still shows it.
	a.log.Info("iptables-restore refused the firewall", "err", re)
	origin := origins[line-1]
	return &RuleFileError{Origin: origin, Text: ruleFileText(origin, inputLine(input, line)), Reason: restoreReason(re.Stderr), Err: re}
}

func hasOrigin(origins []string, line int) bool {
	return line > 0 && line <= len(origins) && origins[line-1] != ""
}

func inputLine(input string, line int) string {
	lines := strings.Split(input, "\n")
	if line < 1 || line > len(lines) {
		return ""
	}
	return lines[line-1]
}

// locateRule finds the rule of the rule files that makes the table holding
// line bad of input fail. fails runs a candidate restore text (one table)
// and reports whether it fails the way input did. The candidates keep all
// of ispbalance's own lines and the first k of the rule files' rules of
// that table, so the answer is the rule whose addition makes the table
// fail: rules only ever add reasons to fail. It returns the line of input,
// 0 when the failure cannot be reproduced or ispbalance's own lines fail
// without any rule file's.
func locateRule(input string, origins []string, bad int, fails func(candidate string) (bool, error)) (int, error) {
	lines := strings.Split(strings.TrimSuffix(input, "\n"), "\n")
	if bad < 1 || bad > len(lines) {
		return 0, nil
	}
	start := bad - 1
	for start >= 0 && !strings.HasPrefix(lines[start], "*") {
		start--
	}
	if start < 0 {
		return 0, nil
	}
	end := bad - 1
	for end < len(lines) && lines[end] != "COMMIT" {
		end++
	}
	if end == len(lines) {
		return 0, nil
	}
	var suspects []int // indexes into lines
	for i := start + 1; i < end; i++ {
		if i < len(origins) && origins[i] != "" && strings.HasPrefix(lines[i], "-A ") {
			suspects = append(suspects, i)
		}
	}
	if len(suspects) == 0 {
		return 0, nil
	}
	candidate := func(k int) string {
		drop := map[int]bool{}
		for _, i := range suspects[k:] {
			drop[i] = true
		}
		var b strings.Builder
		for i := start; i <= end; i++ {
			if !drop[i] {
				b.WriteString(lines[i])
				b.WriteByte('\n')
			}
		}
		return b.String()
	}
	if failed, err := fails(candidate(len(suspects))); err != nil || !failed {
		return 0, err
	}
	if failed, err := fails(candidate(0)); err != nil || failed {
		return 0, err
	}
	// candidate(lo-1) passes and candidate(hi) fails.
	lo, hi := 1, len(suspects)
	for lo < hi {
		mid := (lo + hi) / 2
		failed, err := fails(candidate(mid))
		if err != nil {
			return 0, err
		}
		if failed {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return suspects[lo-1] + 1, nil
}

// asInKernel completes a one-table restore text with what that table has
// in the kernel now and the text leaves alone, so that a scratch namespace
// judges it as this one would: the chains (a jump to another program's
// chain is fine here) and the jumps from built-in chains to ours (whether a
// target suits its chain depends on the hook that reaches the chain).
func asInKernel(candidate string, before firewallState) string {
	head, rest, ok := strings.Cut(candidate, "\n")
	body, hasCommit := strings.CutSuffix(rest, "COMMIT\n")
	t := before[strings.TrimPrefix(head, "*")]
	if !ok || !strings.HasPrefix(head, "*") || !hasCommit || t == nil {
		return candidate
	}
	var b strings.Builder
	b.WriteString(head + "\n")
	for _, c := range t.chains {
		if decl := ":" + c + " - [0:0]"; !strings.Contains("\n"+body, "\n"+decl+"\n") {
			b.WriteString(decl + "\n")
		}
	}
	b.WriteString(body)
	for _, j := range slices.Sorted(maps.Keys(t.jumps)) {
		from, to, _ := strings.Cut(j, " ")
		jump := "-A " + from + " -j " + to
		if strings.Contains("\n"+body, "\n"+jump+"\n") || strings.Contains("\n"+body, "\n-X "+to+"\n") {
			continue
		}
		b.WriteString(jump + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// tryScratch feeds input to iptables-restore inside a network namespace
// created for the run and gone when it exits: the kernel judges the rules
// as it would here, and nothing here changes. failed says whether
// iptables-restore refused the input; err that it could not run at all.
func (n Binaries) tryScratch(ctx context.Context, input string) (stderr string, failed bool, err error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, n.restoreCmd(), "-w", "10", "--noflush")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	cmd.Stdin = strings.NewReader(input)
	cmd.Stderr = &out
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), false, nil
	case errors.As(err, &exit):
		return out.String(), true, nil
	default:
		return "", false, fmt.Errorf("trying firewall rules in a scratch namespace: %w", err)
	}
}

var (
	// restorePrefix is how iptables-restore starts its messages:
	// "iptables-restore v1.8.9 (nf_tables): " or "iptables-restore: ".
	restorePrefix = regexp.MustCompile(`^ip6?tables-restore( v[0-9.]+ \([^)]*\))?:\s*`)
	// linePrefix is nf_tables' "line 3: " before a refused batch object.
	linePrefix = regexp.MustCompile(`^line \d+: `)
	// legacyFailed is all the legacy backend says about a refused table.
	legacyFailed = regexp.MustCompile(`^line \d+ failed$`)
	// nftFailed is nf_tables' report of a refused batch object:
	// "RULE_APPEND failed (Invalid argument): rule in chain X".
	nftFailed = regexp.MustCompile(`^[A-Z_]+ failed \(([^)]*)\)`)
)

// restoreReason extracts why iptables-restore failed from what it wrote,
// without line numbers (they are of the generated text, not the user's
// file) or its advice to read its help.
func restoreReason(stderr string) string {
	var parts []string
	for _, l := range strings.Split(stderr, "\n") {
		l = restorePrefix.ReplaceAllString(strings.TrimSpace(l), "")
		if l == "" || strings.HasPrefix(l, "Error occurred at line") || strings.HasPrefix(l, "Try `iptables-restore") || strings.HasPrefix(l, "Try `ip6tables-restore") {
			continue
		}
		l = linePrefix.ReplaceAllString(l, "")
		if legacyFailed.MatchString(l) {
			l = "the kernel refused it"
		} else if m := nftFailed.FindStringSubmatch(l); m != nil {
			l = "the kernel refused it (" + m[1] + ")"
		}
		parts = append(parts, l)
	}
	if len(parts) == 0 {
		return "iptables-restore refused it"
	}
	return strings.Join(parts, "; ")
}

// ruleFileText returns line N of the file an origin "FILE:N" names, as
// written, or fallback when it cannot be read.
func ruleFileText(origin, fallback string) string {
	i := strings.LastIndexByte(origin, ':')
	if i < 0 {
		return fallback
	}
	n, err := strconv.Atoi(origin[i+1:])
	if err != nil || n < 1 {
		return fallback
	}
	data, err := os.ReadFile(origin[:i])
	if err != nil {
		return fallback
	}
	lines := strings.Split(string(data), "\n")
	if n > len(lines) {
		return fallback
	}
	if text := strings.TrimSpace(strings.TrimSuffix(lines[n-1], "\r")); text != "" {
		return text
	}
	return fallback
}

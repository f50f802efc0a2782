package rules

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/ispbalance/ispbalance/internal/kernelnames"
	"github.com/ispbalance/ispbalance/internal/trust"
)

// File is a parsed rule file. Its lines are checked but not expanded.
type File struct {
	Path  string
	Kind  Kind
	Lines []Line
}

// Line is one rule line that has words.
type Line struct {
	Pos  Pos
	Text string // as written, without surrounding white space
	kind lineKind
	// words[0] is always literal: the program or directive name.
	words []word
}

// lineKind says where a line's result goes.
type lineKind int

const (
	lkCommand lineKind = iota
	lkIPTables
	lkIP6Tables
	lkIP
	lkForward
	lkForwardSNAT
	lkForceRoute
	lkAddRoute
	lkFirewallRule
)

var directives = map[string]lineKind{
	dirForward:      lkForward,
	dirForwardSNAT:  lkForwardSNAT,
	dirForceRoute:   lkForceRoute,
	dirAddRoute:     lkAddRoute,
	dirFirewallRule: lkFirewallRule,
}

// ReadDir reads the four rule directories under balanceDir (the balance/
// directory beside balance.conf) in rebuild order — pre-run, routes,
// firewall, post-run — and each directory's files in byte order of their
// names. A missing directory is empty. Hidden files and backup or editor
// leftovers (names ending in ~, .bak or .swp, starting with #, or with a
// .dpkg-* or .rpm* suffix) are skipped silently, as run-parts would;
// Perl files and anything that is not a regular file are skipped with a
// note. On error, files is nil; the error lists every bad line of every
// file.
//
// balanceDir, the rule directories and every file read must pass
// trust.Check, because what they say runs as root: under trust.Refuse
// the first that fails is the error and no file is returned; under
// trust.Allow each is a note. So must the event scripts (EventScripts),
// so that a rebuild, not only the next event, reports them.
func ReadDir(balanceDir string, policy trust.Policy) (files []File, notes []Note, err error) {
	check := func(path string) error {
		warning, err := policy.Check(path)
		if warning != "" {
			notes = append(notes, Note{Pos{File: path}, warning})
		}
		if err != nil {
			return fmt.Errorf("reading rule files: %w", err)
		}
		return nil
	}
	if err := check(balanceDir); errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	} else if err != nil {
		return nil, notes, err
	}
	for _, state := range EventStates {
		_, more, err := EventScripts(filepath.Join(balanceDir, "lsm"), state, policy)
		for _, n := range more {
			// Each state's listing checks balance/lsm again.
			if !slices.Contains(notes, n) {
				notes = append(notes, n)
			}
		}
		if err != nil {
			return nil, notes, err
		}
	}
	var errs []error
	for _, k := range kinds {
		dir := filepath.Join(balanceDir, k.String())
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, notes, fmt.Errorf("read rule directory: %w", err)
		}
		if err := check(dir); err != nil {
			return nil, notes, err
		}
		for _, e := range entries {
			name := e.Name()
			if Leftover(name) {
				continue
			}
			path := filepath.Join(dir, name)
			if strings.HasSuffix(name, ".pl") {
				notes = append(notes, Note{Pos{File: path}, "Perl rule files are no longer run; translate it with migrate and remove it"})
				continue
			}
			// Stat, not the entry's type, so that a symlink to a file
			// counts as a file.
			fi, err := os.Stat(path)
			if err != nil {
				return nil, notes, fmt.Errorf("read rule file: %w", err)
			}
			if !fi.Mode().IsRegular() {
				notes = append(notes, Note{Pos{File: path}, "not a regular file; skipped"})
				continue
			}
			if err := check(path); err != nil {
				return nil, notes, err
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return nil, notes, fmt.Errorf("read rule file: %w", err)
			}
			f, err := ParseFile(path, k, src)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			files = append(files, f)
		}
	}
	if len(errs) > 0 {
		return nil, notes, errors.Join(errs...)
	}
	return files, notes, nil
}

// Leftover reports whether name is a hidden file or a backup, editor or
// package-manager leftover, which directories of admin files (rule files,
// event scripts) skip as run-parts would.
func Leftover(name string) bool {
	if strings.HasPrefix(name, ".") || strings.HasPrefix(name, "#") ||
		strings.HasSuffix(name, "~") || strings.HasSuffix(name, ".bak") ||
		strings.HasSuffix(name, ".orig") ||
		strings.HasSuffix(name, ".swp") || strings.Contains(name, ".dpkg-") {
		return true
	}
	// .rpmnew, .rpmsave, .rpmorig and whatever rpm names next.
	if i := strings.LastIndex(name, ".rpm"); i >= 0 {
		return strings.IndexFunc(name[i+4:], func(r rune) bool { return r < 'a' || r > 'z' }) < 0
	}
	return false
}

// ParseFile parses one rule file of the given kind. It checks everything
// that does not depend on the interface facts, with sample values in
// place of placeholders, so a mistake is reported even while the service
// it names is down. The error joins an *Error for each bad line.
func ParseFile(path string, kind Kind, src []byte) (File, error) {
	f := File{Path: path, Kind: kind}
	var errs []error
	for i, text := range strings.Split(string(src), "\n") {
		pos := Pos{File: path, Line: i + 1}
		text = strings.TrimSpace(strings.TrimSuffix(text, "\r"))
		l, err := parseLine(pos, kind, text)
		if err != nil {
			errs = append(errs, &Error{Pos: pos, Err: err})
			continue
		}
		if len(l.words) > 0 {
			f.Lines = append(f.Lines, l)
		}
	}
	if len(errs) > 0 {
		return File{}, errors.Join(errs...)
	}
	return f, nil
}

func parseLine(pos Pos, kind Kind, text string) (Line, error) {
	words, err := split(text)
	if err != nil || len(words) == 0 {
		return Line{}, err
	}
	lk, err := classify(kind, words)
	if err != nil {
		return Line{}, err
	}
	if err := checkFamily(lk, words); err != nil {
		return Line{}, err
	}
	if err := checkLine(lk, renderWords(words, sampleValue)); err != nil {
		return Line{}, err
	}
	return Line{Pos: pos, Text: text, kind: lk, words: words}, nil
}

// classify decides what a line is from its literal leading words.
func classify(kind Kind, words []word) (lineKind, error) {
	name, ok := words[0].literal()
	if !ok {
		return 0, errors.New("a line must start with a command or directive, not a placeholder")
	}
	if lk, ok := directives[name]; ok {
		return lk, nil
	}
	if kind != Routes && kind != Firewall {
		return lkCommand, nil
	}
	switch filepath.Base(name) {
	case "iptables", "iptables-legacy", "iptables-nft":
		return lkIPTables, nil
	case "ip6tables", "ip6tables-legacy", "ip6tables-nft":
		return lkIP6Tables, nil
	case "ip":
		if _, _, _, ok := ipObject(ipLead(words)); ok {
			return lkIP, nil
		}
	}
	return lkCommand, nil
}

// ipLead returns the literal words after `ip` that can name the family
// and object.
func ipLead(words []word) []string {
	var lead []string
	for _, w := range words[1:min(len(words), 4)] {
		s, ok := w.literal()
		if !ok {
			break
		}
		lead = append(lead, s)
	}
	return lead
}

// counterpart names the other family's field of the same meaning.
var counterpart = map[string]string{"ip": "ip6", "gw": "gw6", "net": "net6", "ip6": "ip", "gw6": "gw", "net6": "net"}

// checkFamily refuses placeholders of the wrong address family: an IPv6
// value in an iptables line, an IPv4 one in an ip6tables line, or in an
// `ip -4` or `ip -6` line, and both families in one `ip` line. Such a
// line can never work, so it is an error even while the service is down.
func checkFamily(lk lineKind, words []word) error {
	var want Family
	switch lk {
	case lkIPTables:
		want = IPv4
	case lkIP6Tables:
		want = IPv6
	case lkIP:
		_, want, _, _ = ipObject(ipLead(words))
	default:
		return nil
	}
	var v4, v6 *placeholder
	for _, w := range words {
		for _, p := range w {
			switch {
			case p.ph == nil:
			case v4 == nil && slices.Contains(ipv4Fields, p.ph.field):
				v4 = p.ph
			case v6 == nil && slices.Contains(ipv6Fields, p.ph.field):
				v6 = p.ph
			}
		}
	}
	instead := func(p *placeholder) string {
		if c, ok := counterpart[p.field]; ok {
			return fmt.Sprintf("; use ${%s.%s}", p.service, c)
		}
		return ""
	}
	switch {
	case lk == lkIPTables && v6 != nil:
		return fmt.Errorf("%s is an IPv6 value in an iptables line; IPv6 rules are ip6tables lines", v6)
	case lk == lkIP6Tables && v4 != nil:
		return fmt.Errorf("%s is an IPv4 value in an ip6tables line%s", v4, instead(v4))
	case want == IPv4 && v6 != nil:
		return fmt.Errorf("%s is an IPv6 value in an ip -4 line%s", v6, instead(v6))
	case want == IPv6 && v4 != nil:
		return fmt.Errorf("%s is an IPv4 value in an ip -6 line%s", v4, instead(v4))
	case want == AnyFamily && v4 != nil && v6 != nil:
		return fmt.Errorf("the line mixes an IPv4 value (%s) and an IPv6 one (%s)", v4, v6)
	}
	return nil
}

// checkLine validates an expanded line of kind lk.
func checkLine(lk lineKind, argv []string) error {
	args := argv[1:]
	var err error
	switch lk {
	case lkIPTables, lkIP6Tables:
		_, err = parseIPTables(args)
	case lkIP:
		_, _, err = parseIP(args)
	case lkForward, lkForwardSNAT:
		_, err = parseForward(argv[0], args)
	case lkForceRoute:
		_, err = parseForceRoute(args)
	case lkAddRoute:
		_, err = parseAddRoute(args)
	case lkFirewallRule:
		_, err = parseFirewallRule(args)
	}
	return err
}

func renderWords(words []word, value func(placeholder) string) []string {
	argv := make([]string, len(words))
	for i, w := range words {
		argv[i] = w.render(value)
	}
	return argv
}

// sampleValue stands in for a field while no facts are known. Each sample
// has the shape of real values, so a line that checks out with samples
// checks out with the real ones.
func sampleValue(p placeholder) string {
	switch p.field {
	case "dev":
		return "eth0"
	case "ip":
		return "192.0.2.1"
	case "gw":
		return "192.0.2.254"
	case "net":
		return "192.0.2.0/24"
	case "fwmark":
		return kernelnames.FormatMark(kernelnames.ISPMark(1)) + "/" + kernelnames.FormatMark(kernelnames.MarkMask)
	case "table":
		return strconv.Itoa(kernelnames.ISPTable(1))
	case "ip6":
		return "2001:db8::1"
	case "gw6":
		return "fe80::1"
	case "net6":
		return "2001:db8::/64"
	case "prefix6":
		return "2001:db8:100::/56"
	}
	return "1"
}

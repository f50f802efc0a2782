package rules

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Untranslated is a statement of a Perl rule file that Migrate left out.
type Untranslated struct {
	Line, EndLine int
	Text          string // the statement as written
	Reason        string
}

// Migrate translates a Perl rule file of the original (a .pl file in one
// of the rule directories) into a plain rule file. It understands calls
// of $B->forward, forward_with_snat, force_route, add_route, iptables,
// ip_route, ip_rule and firewall_rule with literal arguments and
// $B->dev/ip/gw/net/fwmark/table/weight queries, also inside a
// `foreach $B->lan_services` (or isp_services, or `map {$B->net($_)} ...`)
// statement modifier, which becomes a ${:lan.FIELD} placeholder. Like the
// original's firewall_rule and force_route, arguments of the form -word
// become --word. Every other statement is returned as Untranslated and
// shown commented out in the output; a trailing `1;` and `use strict` are
// dropped.
//
// A loop over an array of rules gives each rule its own repeated line, so
// the rules come out grouped by rule rather than by service; the
// original's rules were ACCEPTs, for which the order does not matter.
//
// path names the file in the output's header, and its directory decides
// the Kind the output lines are checked as (firewall if unknown).
func Migrate(path string, src []byte) (string, []Untranslated) {
	kind := Firewall
	for _, k := range kinds {
		if filepath.Base(filepath.Dir(path)) == k.String() {
			kind = k
		}
	}
	text := string(src)
	var (
		out     strings.Builder
		missing []Untranslated
		last    int
	)
	fmt.Fprintf(&out, "# Translated by migrate from %s. Check it before use.\n", filepath.Base(path))
	for _, it := range perlItems(lexPerl(text)) {
		if last > 0 && it.line > last+1 {
			out.WriteString("\n")
		}
		last = it.endLine
		if it.comment != nil {
			// A #! line is for the Perl interpreter, not the reader.
			if it.line != 1 || !strings.HasPrefix(it.comment.text, "#!") {
				out.WriteString(it.comment.text + "\n")
			}
			continue
		}
		st := it.stmt
		lines, ignore, err := translate(path, kind, st.toks)
		if ignore {
			continue
		}
		if err == nil && len(lines) == 0 {
			err = errors.New("gives no rule")
		}
		if err != nil {
			u := Untranslated{Line: st.line, EndLine: st.endLine, Text: text[st.start:st.end], Reason: err.Error()}
			if st.trailing != nil {
				u.Text = text[st.start:st.trailing.end]
				u.EndLine = st.trailing.endLine
			}
			missing = append(missing, u)
			where := fmt.Sprintf("line %d", u.Line)
			if u.EndLine > u.Line {
				where = fmt.Sprintf("lines %d-%d", u.Line, u.EndLine)
			}
			fmt.Fprintf(&out, "# NOT TRANSLATED (%s): %s\n", where, u.Reason)
			for _, l := range strings.Split(u.Text, "\n") {
				out.WriteString("#   " + strings.TrimRight(l, " \t\r") + "\n")
			}
			continue
		}
		for _, c := range st.comments {
			out.WriteString(c.text + "\n")
		}
		for i, l := range lines {
			if i == 0 && st.trailing != nil {
				l += "  " + st.trailing.text
			}
			out.WriteString(l + "\n")
		}
	}
	return out.String(), missing
}

// perlItem is a standalone comment or a statement.
type perlItem struct {
	comment       *ptok
	stmt          *perlStmt
	line, endLine int
}

type perlStmt struct {
	toks          []ptok
	comments      []ptok // comments inside the statement
	trailing      *ptok  // comment after the statement on its last line
	start, end    int
	line, endLine int
}

// blockKeywords start statements that end with their block rather than
// with a semicolon.
var blockKeywords = []string{"for", "foreach", "if", "unless", "while", "until", "sub"}

// perlItems groups tokens into comments and statements.
func perlItems(toks []ptok) []perlItem {
	var (
		items []perlItem
		cur   *perlStmt
		depth int
	)
	finish := func() {
		if cur == nil {
			return
		}
		items = append(items, perlItem{stmt: cur, line: cur.line, endLine: cur.endLine})
		cur, depth = nil, 0
	}
	for _, t := range toks {
		if t.kind == ptComment {
			if cur != nil {
				cur.comments = append(cur.comments, t)
				continue
			}
			if n := len(items); n > 0 && !t.ownLine && items[n-1].stmt != nil && items[n-1].stmt.trailing == nil && items[n-1].endLine == t.line {
				c := t
				items[n-1].stmt.trailing = &c
				continue
			}
			c := t
			items = append(items, perlItem{comment: &c, line: t.line, endLine: t.endLine})
			continue
		}
		if cur == nil {
			cur = &perlStmt{start: t.start, line: t.line}
		}
		cur.toks = append(cur.toks, t)
		cur.end, cur.endLine = t.end, t.endLine
		if t.kind != ptPunct {
			continue
		}
		switch t.text {
		case "(", "[", "{":
			depth++
		case ")", "]", "}":
			depth--
			first := cur.toks[0]
			if t.text == "}" && depth == 0 && (first.kind == ptWord && slices.Contains(blockKeywords, first.text) || first.text == "{") {
				finish()
			}
		case ";":
			if depth <= 0 {
				finish()
			}
		}
	}
	finish()
	return items
}

// pval is the value of a Perl expression as far as migrate follows it.
type pval struct {
	kind  pvKind
	s     string // pvStr: the text; pvGroup: the group
	elems []pval // pvArray
}

type pvKind int

const (
	pvStr   pvKind = iota
	pvUndef        // undef
	pvGroup        // a service of a group, as $_ in a loop over services
	pvArray        // an array reference
)

// translate turns one statement into rule lines. ignore is set for
// statements that mean nothing for rules.
func translate(path string, kind Kind, toks []ptok) (lines []string, ignore bool, err error) {
	if n := len(toks); n > 0 && toks[n-1].text == ";" {
		toks = toks[:n-1]
	}
	if len(toks) == 0 || len(toks) == 1 && toks[0].kind == ptNum {
		return nil, true, nil
	}
	if toks[0].kind == ptWord && toks[0].text == "use" && len(toks) == 2 && (toks[1].text == "strict" || toks[1].text == "warnings") {
		return nil, true, nil
	}
	if len(toks) < 4 || toks[0].text != "$B" || toks[1].text != "->" || toks[2].kind != ptWord || toks[3].text != "(" {
		return nil, false, errors.New("not a $B->method(...) call")
	}
	method := toks[2].text
	end := closing(toks, 3)
	if end < 0 {
		return nil, false, errors.New("unbalanced parentheses")
	}
	var loop *pval
	if rest := toks[end+1:]; len(rest) > 0 {
		if rest[0].kind != ptWord || rest[0].text != "foreach" && rest[0].text != "for" {
			return nil, false, fmt.Errorf("statement modifier %q is not supported", rest[0].text)
		}
		v, err := loopList(rest[1:])
		if err != nil {
			return nil, false, err
		}
		loop = &v
	}
	args, err := evalList(toks[4:end], loop)
	if err != nil {
		return nil, false, err
	}
	lines, err = translateCall(method, args)
	if err != nil {
		return nil, false, err
	}
	for _, l := range lines {
		if strings.ContainsAny(l, "\n\r") {
			return nil, false, errors.New("an argument contains a line break")
		}
		f, err := ParseFile(path, kind, []byte(l))
		if err != nil {
			if e := (*Error)(nil); errors.As(err, &e) {
				err = e.Err
			}
			return nil, false, fmt.Errorf("%s: %w", l, err)
		}
		if len(f.Lines) != 1 {
			return nil, false, fmt.Errorf("%q is not a rule line", l)
		}
	}
	return lines, false, nil
}

// closing returns the index of the bracket that closes toks[open].
func closing(toks []ptok, open int) int {
	depth := 0
	for i := open; i < len(toks); i++ {
		if toks[i].kind != ptPunct {
			continue
		}
		switch toks[i].text {
		case "(", "[", "{":
			depth++
		case ")", "]", "}":
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

// loopList reads the list of a foreach modifier.
func loopList(toks []ptok) (pval, error) {
	if len(toks) > 1 && toks[0].text == "(" && closing(toks, 0) == len(toks)-1 {
		toks = toks[1 : len(toks)-1]
	}
	if g, ok := serviceList(toks); ok {
		return pval{kind: pvGroup, s: g}, nil
	}
	// map {$B->FIELD($_)} $B->X_services
	if len(toks) > 2 && toks[0].text == "map" && toks[1].text == "{" {
		end := closing(toks, 1)
		if end > 0 {
			body := toks[2:end]
			if g, ok := serviceList(toks[end+1:]); ok {
				v, err := evalTerm(body, &pval{kind: pvGroup, s: g})
				if err == nil && len(v) == 1 && v[0].kind == pvStr {
					return v[0], nil
				}
			}
		}
	}
	return pval{}, fmt.Errorf("loop over %q is not supported (only $B->lan_services, $B->isp_services and map {$B->FIELD($_)} over them)", joinText(toks))
}

// serviceList recognises $B->lan_services and $B->isp_services.
func serviceList(toks []ptok) (string, bool) {
	if len(toks) == 5 && toks[3].text == "(" && toks[4].text == ")" {
		toks = toks[:3]
	}
	if len(toks) != 3 || toks[0].text != "$B" || toks[1].text != "->" {
		return "", false
	}
	switch toks[2].text {
	case "lan_services":
		return groupLAN, true
	case "isp_services":
		return groupISP, true
	}
	return "", false
}

func joinText(toks []ptok) string {
	var parts []string
	for _, t := range toks {
		parts = append(parts, t.text)
	}
	return strings.Join(parts, " ")
}

// evalList evaluates a comma-separated list; a bareword before => is a
// string, as in Perl.
func evalList(toks []ptok, loop *pval) ([]pval, error) {
	var (
		out   []pval
		start int
		depth int
	)
	flush := func(end int, fatComma bool) error {
		elem := toks[start:end]
		start = end + 1
		if len(elem) == 0 {
			return nil
		}
		if fatComma && len(elem) == 1 && elem[0].kind == ptWord {
			out = append(out, pval{kind: pvStr, s: elem[0].text})
			return nil
		}
		vs, err := evalTerm(elem, loop)
		out = append(out, vs...)
		return err
	}
	for i, t := range toks {
		if t.kind != ptPunct {
			continue
		}
		switch t.text {
		case "(", "[", "{":
			depth++
		case ")", "]", "}":
			depth--
		case ",", "=>":
			if depth == 0 {
				if err := flush(i, t.text == "=>"); err != nil {
					return nil, err
				}
			}
		}
	}
	if err := flush(len(toks), false); err != nil {
		return nil, err
	}
	return out, nil
}

// evalTerm evaluates one element of a list.
func evalTerm(toks []ptok, loop *pval) ([]pval, error) {
	if len(toks) == 0 {
		return nil, errors.New("empty expression")
	}
	t := toks[0]
	if len(toks) == 1 {
		switch {
		case t.kind == ptStr && t.dq:
			s, err := interpolate(t.strs[0], loop)
			return []pval{{kind: pvStr, s: s}}, err
		case t.kind == ptStr:
			var vs []pval
			for _, s := range t.strs {
				vs = append(vs, pval{kind: pvStr, s: s})
			}
			return vs, nil
		case t.kind == ptNum:
			return []pval{{kind: pvStr, s: t.text}}, nil
		case t.kind == ptWord && t.text == "undef":
			return []pval{{kind: pvUndef}}, nil
		case t.kind == ptVar && (t.text == "$_" || t.text == "${_}"):
			if loop == nil {
				return nil, errors.New("$_ outside a loop")
			}
			return []pval{*loop}, nil
		}
	}
	switch {
	case t.text == "[" && closing(toks, 0) == len(toks)-1:
		elems, err := evalList(toks[1:len(toks)-1], loop)
		return []pval{{kind: pvArray, elems: elems}}, err
	case t.text == "(" && closing(toks, 0) == len(toks)-1:
		return evalList(toks[1:len(toks)-1], loop)
	case len(toks) >= 5 && t.text == "$B" && toks[1].text == "->" && toks[3].text == "(" && closing(toks, 3) == len(toks)-1:
		field := toks[2].text
		if !slices.Contains(fields, field) {
			return nil, fmt.Errorf("$B->%s has no placeholder (fields: %s)", field, strings.Join(fields, ", "))
		}
		arg, err := evalList(toks[4:len(toks)-1], loop)
		if err != nil {
			return nil, err
		}
		if len(arg) != 1 {
			return nil, fmt.Errorf("$B->%s needs one service", field)
		}
		switch a := arg[0]; {
		case a.kind == pvGroup:
			return []pval{{kind: pvStr, s: placeholder{a.s, field}.String()}}, nil
		case a.kind == pvStr && a.s != "" && !strings.ContainsAny(a.s, "${}'\" \t\\"):
			return []pval{{kind: pvStr, s: placeholder{a.s, field}.String()}}, nil
		}
		return nil, fmt.Errorf("$B->%s: the service is not a name", field)
	}
	return nil, fmt.Errorf("expression %q is not supported", joinText(toks))
}

// interpolate expands a double-quoted Perl string; only $_ is known.
func interpolate(raw string, loop *pval) (string, error) {
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '\\' && i+1 < len(raw):
			i++
			switch e := raw[i]; e {
			case 'n', 't', 'r', 'e', 'a', 'f', 'x', 'N', '0', 'u', 'l', 'U', 'L', 'Q', 'E':
				return "", fmt.Errorf("escape \\%c in a string is not supported", e)
			default:
				b.WriteByte(e)
			}
		case c == '$':
			n := perlVar(raw[i:])
			name := raw[i : i+n]
			if name != "$_" && name != "${_}" {
				if n == 1 {
					b.WriteByte(c)
					continue
				}
				return "", fmt.Errorf("variable %s is not known", name)
			}
			if loop == nil || loop.kind != pvStr {
				return "", errors.New("$_ in a string is not a value here")
			}
			b.WriteString(loop.s)
			i += n - 1
		case c == '@' && perlVar(raw[i:]) > 1:
			return "", fmt.Errorf("array %s in a string is not supported", raw[i:i+perlVar(raw[i:])])
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// shorthand is the original's rule for firewall_rule and force_route
// arguments: -word becomes --word.
var shorthand = regexp.MustCompile(`^-\w{2,}`)

// strs turns values into strings; undef is the empty string, as when
// Perl joins it.
func strs(method string, vs []pval) ([]string, error) {
	var out []string
	for _, v := range vs {
		switch v.kind {
		case pvStr:
			out = append(out, v.s)
		case pvUndef:
			out = append(out, "")
		default:
			return nil, fmt.Errorf("$B->%s: an argument is a list or a service, not a string", method)
		}
	}
	return out, nil
}

// words drops empty strings, which a shell line would not see either.
func words(ss []string) string {
	return strings.Join(slices.DeleteFunc(ss, func(s string) bool { return strings.TrimSpace(s) == "" }), " ")
}

func translateCall(method string, args []pval) ([]string, error) {
	if method == "iptables" && len(args) == 1 && args[0].kind == pvArray {
		rules, err := strs(method, args[0].elems)
		if err != nil {
			return nil, err
		}
		var lines []string
		for _, r := range rules {
			lines = append(lines, words([]string{"iptables", r}))
		}
		return lines, nil
	}
	ss, err := strs(method, args)
	if err != nil {
		return nil, err
	}
	dashes := func(ss []string) []string {
		for i, s := range ss {
			if shorthand.MatchString(s) {
				ss[i] = "-" + s
			}
		}
		return ss
	}
	switch method {
	case "iptables":
		return []string{words(append([]string{"iptables"}, ss...))}, nil
	case "ip_route":
		return []string{words(append([]string{"ip", "route"}, ss...))}, nil
	case "ip_rule":
		return []string{words(append([]string{"ip", "rule"}, ss...))}, nil
	case "forward":
		return []string{words(append([]string{dirForward}, ss...))}, nil
	case "forward_with_snat":
		return []string{words(append([]string{dirForwardSNAT}, ss...))}, nil
	case "force_route":
		return []string{words(append([]string{dirForceRoute}, dashes(ss)...))}, nil
	case "add_route":
		if len(ss) < 2 || len(ss) > 3 {
			return nil, errors.New("$B->add_route needs a network, a device and an optional masquerade flag")
		}
		line := []string{dirAddRoute, ss[0], ss[1]}
		if len(ss) == 3 && ss[2] != "" && ss[2] != "0" {
			line = append(line, "masquerade")
		}
		return []string{words(line)}, nil
	case "firewall_rule":
		if len(ss) < 2 {
			return nil, errors.New("$B->firewall_rule needs a chain and a table")
		}
		table := ss[1]
		if table == "" {
			table = "-"
		}
		return []string{words(append([]string{dirFirewallRule, ss[0], table}, dashes(ss[2:])...))}, nil
	}
	return nil, fmt.Errorf("$B->%s has no rule-file equivalent", method)
}

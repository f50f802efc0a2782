package rules

import "strings"

// This file reads just enough Perl to find the statements of the
// original's rule files: strings, comments, variables and brackets are
// recognised so that statements split at the right `;`. Anything else
// becomes a token that translation will refuse.

type ptKind int

const (
	ptWord    ptKind = iota // bareword or identifier
	ptVar                   // $name, $_, @name, %name, $#name
	ptStr                   // string literal; several strings for qw
	ptNum                   // number
	ptPunct                 // operator or bracket
	ptComment               // # to end of line
	ptOther                 // a construct migrate does not read
)

type ptok struct {
	kind ptKind
	text string   // source text, or the comment
	strs []string // ptStr: the values; for a double-quoted string the raw inside
	dq   bool     // ptStr: double-quoted, strs[0] still to be interpolated
	// start and end are byte offsets in the source; line and endLine its
	// first and last line.
	start, end    int
	line, endLine int
	ownLine       bool // ptComment: nothing but white space before it on its line
}

// valueLike reports whether t ends an operand, after which `-` is minus
// and not the start of a -bareword.
func (t ptok) valueLike() bool {
	switch t.kind {
	case ptWord, ptVar, ptStr, ptNum, ptOther:
		return true
	case ptPunct:
		return t.text == ")" || t.text == "]" || t.text == "}"
	}
	return false
}

var perlPuncts = []string{"->", "=>", "=~", "!~", "==", "!=", "<=", ">=", "&&", "||", "::", "..", "**", "<<", ">>", "++", "--", "+=", "-=", ".="}

func lexPerl(src string) []ptok {
	var (
		toks      []ptok
		line      = 1
		onlySpace = true
	)
	countLines := func(s string) int { return strings.Count(s, "\n") }
	lastSignificant := func() (ptok, bool) {
		for i := len(toks) - 1; i >= 0; i-- {
			if toks[i].kind != ptComment {
				return toks[i], true
			}
		}
		return ptok{}, false
	}
	for i := 0; i < len(src); {
		c := src[i]
		if c == '\n' {
			line++
			onlySpace = true
			i++
			continue
		}
		if c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v' {
			i++
			continue
		}
		t := ptok{start: i, line: line}
		switch {
		case c == '#':
			j := strings.IndexByte(src[i:], '\n')
			if j < 0 {
				j = len(src) - i
			}
			t.kind, t.text, t.ownLine = ptComment, strings.TrimRight(src[i:i+j], " \t\r"), onlySpace
			i += j
		case c == '\'':
			val, n, ok := singleQuotedPerl(src[i+1:], '\'', '\'')
			t.kind, t.strs = ptStr, []string{val}
			if !ok {
				t.kind = ptOther
			}
			i += 1 + n
		case c == '"':
			raw, n, ok := rawQuotedPerl(src[i+1:], '"', '"')
			t.kind, t.strs, t.dq = ptStr, []string{raw}, true
			if !ok {
				t.kind = ptOther
			}
			i += 1 + n
		case c == '`':
			_, n, _ := rawQuotedPerl(src[i+1:], '`', '`')
			t.kind = ptOther
			i += 1 + n
		case c == '$' || c == '@' || c == '%':
			n := perlVar(src[i:])
			if n == 1 {
				t.kind = ptPunct
			} else {
				t.kind = ptVar
			}
			i += n
		case isNameByte(c) && (c < '0' || c > '9'):
			j := i
			for j < len(src) && (isNameByte(src[j]) || src[j] == ':' && j+1 < len(src) && src[j+1] == ':' && j+2 < len(src) && isNameByte(src[j+2])) {
				if src[j] == ':' {
					j += 2
				} else {
					j++
				}
			}
			word := src[i:j]
			t.kind = ptWord
			i = j
			if word == "q" || word == "qq" || word == "qw" {
				if n, tq, ok := quoteLike(word, src[j:]); ok {
					t = tq
					t.start, t.line = j-len(word), line
					i = j + n
				}
			}
		case c >= '0' && c <= '9':
			j := i
			for j < len(src) && (isNameByte(src[j]) || src[j] == '.' && j+1 < len(src) && src[j+1] >= '0' && src[j+1] <= '9') {
				j++
			}
			t.kind = ptNum
			i = j
		case c == '-' && i+1 < len(src) && isNameByte(src[i+1]) && (src[i+1] < '0' || src[i+1] > '9'):
			if prev, ok := lastSignificant(); ok && prev.valueLike() {
				t.kind = ptPunct
				i++
				break
			}
			j := i + 1
			for j < len(src) && isNameByte(src[j]) {
				j++
			}
			// Perl's unary minus on a bareword gives the string "-word".
			t.kind, t.strs = ptStr, []string{src[i:j]}
			i = j
		default:
			t.kind = ptPunct
			n := 1
			for _, p := range perlPuncts {
				if strings.HasPrefix(src[i:], p) {
					n = len(p)
					break
				}
			}
			i += n
		}
		t.end = i
		if t.kind != ptComment {
			t.text = src[t.start:t.end]
		}
		t.endLine = line + countLines(src[t.start:t.end])
		line = t.endLine
		onlySpace = false
		toks = append(toks, t)
	}
	return toks
}

// perlVar returns the length of the variable at the start of s ($, @ or
// %), or 1 if there is none.
func perlVar(s string) int {
	if len(s) < 2 {
		return 1
	}
	j := 1
	if s[0] == '$' && s[1] == '#' {
		j = 2
	}
	if j < len(s) && s[j] == '{' {
		if k := strings.IndexByte(s[j:], '}'); k > 0 {
			return j + k + 1
		}
		return 1
	}
	k := j
	for k < len(s) && (isNameByte(s[k]) || s[k] == ':' && k+2 < len(s) && s[k+1] == ':') {
		if s[k] == ':' {
			k += 2
		} else {
			k++
		}
	}
	if k > j {
		return k
	}
	if s[0] == '$' && j == 1 && strings.IndexByte("&`'+!@/\\,;.0", s[1]) >= 0 {
		return 2
	}
	return 1
}

// singleQuotedPerl decodes a '...'-like string up to the closing
// delimiter: only \\ and an escaped delimiter are escapes. n counts the
// bytes used, including the closing delimiter.
func singleQuotedPerl(s string, open, close byte) (val string, n int, ok bool) {
	var b strings.Builder
	depth := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && (s[i+1] == '\\' || s[i+1] == close || s[i+1] == open):
			b.WriteByte(s[i+1])
			i++
		case c == close && depth == 0:
			return b.String(), i + 1, true
		case c == close:
			depth--
			b.WriteByte(c)
		case c == open && open != close:
			depth++
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), len(s), false
}

// rawQuotedPerl finds the end of a "..."-like string and returns its
// inside undecoded, for interpolation later.
func rawQuotedPerl(s string, open, close byte) (raw string, n int, ok bool) {
	depth := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			i++
		case c == close && depth == 0:
			return s[:i], i + 1, true
		case c == close:
			depth--
		case c == open && open != close:
			depth++
		}
	}
	return s, len(s), false
}

// quoteLike reads the q//, qq// or qw// operator after word; rest starts
// right after the word. n counts the bytes of rest used.
func quoteLike(word, rest string) (n int, t ptok, ok bool) {
	j := 0
	for j < len(rest) && (rest[j] == ' ' || rest[j] == '\t') {
		j++
	}
	if j >= len(rest) {
		return 0, ptok{}, false
	}
	open := rest[j]
	if isNameByte(open) || strings.IndexByte("=,;)\n\r ", open) >= 0 {
		return 0, ptok{}, false
	}
	closer := open
	switch open {
	case '(':
		closer = ')'
	case '[':
		closer = ']'
	case '{':
		closer = '}'
	case '<':
		closer = '>'
	}
	t = ptok{kind: ptStr}
	var used int
	switch word {
	case "q":
		var val string
		val, used, ok = singleQuotedPerl(rest[j+1:], open, closer)
		t.strs = []string{val}
	case "qq":
		var raw string
		raw, used, ok = rawQuotedPerl(rest[j+1:], open, closer)
		t.strs, t.dq = []string{raw}, true
	case "qw":
		var val string
		val, used, ok = singleQuotedPerl(rest[j+1:], open, closer)
		t.strs = strings.Fields(val)
		if t.strs == nil {
			t.strs = []string{}
		}
	}
	if !ok {
		t.kind = ptOther
	}
	return j + 1 + used, t, true
}

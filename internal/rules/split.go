package rules

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// fields are the service fields a placeholder may name.
var fields = []string{"dev", "ip", "gw", "net", "fwmark", "table", "weight", "ip6", "gw6", "net6", "prefix6"}

// ipv4Fields and ipv6Fields hold addresses or networks of one family, so
// a line for the other family cannot use them.
var (
	ipv4Fields = []string{"ip", "gw", "net"}
	ipv6Fields = []string{"ip6", "gw6", "net6", "prefix6"}
)

// Groups a placeholder may iterate over.
const (
	groupLAN = ":lan"
	groupISP = ":isp"
)

// placeholder is a parsed ${SERVICE.field}; service is a name from
// balance.conf or one of the groups.
type placeholder struct {
	service string
	field   string
}

func (p placeholder) String() string { return "${" + p.service + "." + p.field + "}" }

func (p placeholder) group() bool { return strings.HasPrefix(p.service, ":") }

// part is a piece of a word: literal text, or a placeholder when ph is
// set.
type part struct {
	lit string
	ph  *placeholder
}

// word is one argv element before placeholders are expanded.
type word []part

// literal returns the word's text if it has no placeholders.
func (w word) literal() (string, bool) {
	var b strings.Builder
	for _, p := range w {
		if p.ph != nil {
			return "", false
		}
		b.WriteString(p.lit)
	}
	return b.String(), true
}

// render replaces each placeholder by value(placeholder).
func (w word) render(value func(placeholder) string) string {
	var b strings.Builder
	for _, p := range w {
		if p.ph != nil {
			b.WriteString(value(*p.ph))
		} else {
			b.WriteString(p.lit)
		}
	}
	return b.String()
}

// errNUL refuses what exec could not pass in an argument. A comment may
// hold anything.
var errNUL = errors.New("NUL byte in line")

// errNoShell ends every message about shell syntax, so the user learns
// why a line that worked under the original is refused.
const errNoShell = "rule lines are run without a shell"

// splitter holds the state of splitting one line.
type splitter struct {
	words  []word
	cur    word
	lit    strings.Builder
	inWord bool
}

func (s *splitter) flushLit() {
	if s.lit.Len() > 0 {
		s.cur = append(s.cur, part{lit: s.lit.String()})
		s.lit.Reset()
	}
}

func (s *splitter) endWord() {
	if !s.inWord {
		return
	}
	s.flushLit()
	s.words = append(s.words, s.cur)
	s.cur = nil
	s.inWord = false
}

func (s *splitter) addPlaceholder(ph *placeholder) {
	s.flushLit()
	s.cur = append(s.cur, part{ph: ph})
	s.inWord = true
}

// split breaks one rule line into words with POSIX shell quoting. It
// refuses, rather than ignores, everything a shell would act on, so a
// line never means something different from what it meant when the
// original handed it to sh.
func split(line string) ([]word, error) {
	var s splitter
	for i := 0; i < len(line); {
		c := line[i]
		switch {
		case c == 0:
			return nil, errNUL
		case c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\r':
			s.endWord()
			i++
		case c == '\n':
			return nil, errors.New("line break outside quotes")
		case c == '#' && !s.inWord:
			return s.words, nil
		case c == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated single quote")
			}
			if strings.IndexByte(line[i+1:i+1+j], 0) >= 0 {
				return nil, errNUL
			}
			s.lit.WriteString(line[i+1 : i+1+j])
			s.inWord = true
			i += j + 2
		case c == '"':
			n, err := s.doubleQuoted(line[i+1:])
			if err != nil {
				return nil, err
			}
			s.inWord = true
			i += 1 + n
		case c == '\\':
			if i+1 >= len(line) {
				return nil, errors.New("backslash at end of line: a rule cannot continue onto the next line")
			}
			switch line[i+1] {
			case 0:
				return nil, errNUL
			case '\n':
				return nil, errors.New("backslash-newline: a rule cannot continue onto the next line")
			}
			s.lit.WriteByte(line[i+1])
			s.inWord = true
			i += 2
		case c == '$':
			n, ph, err := dollar(line[i:])
			if err != nil {
				return nil, err
			}
			if ph != nil {
				s.addPlaceholder(ph)
			} else {
				s.lit.WriteByte('$')
				s.inWord = true
			}
			i += n
		case c == '`':
			return nil, errors.New("command substitution (backquote) is not allowed: " + errNoShell)
		case strings.IndexByte("|&;<>()", c) >= 0:
			return nil, shellOperator(line[i:])
		default:
			s.lit.WriteByte(c)
			s.inWord = true
			i++
		}
	}
	s.endWord()
	return s.words, nil
}

// doubleQuoted consumes the inside of a double-quoted string and its
// closing quote, returning how many bytes it used. As in sh, a backslash
// only escapes $ ` " and \ here.
func (s *splitter) doubleQuoted(rest string) (int, error) {
	for i := 0; i < len(rest); {
		c := rest[i]
		switch c {
		case 0:
			return 0, errNUL
		case '"':
			return i + 1, nil
		case '\\':
			if i+1 >= len(rest) {
				return 0, errors.New("unterminated double quote")
			}
			switch n := rest[i+1]; n {
			case '$', '`', '"', '\\':
				s.lit.WriteByte(n)
				i += 2
			case '\n':
				return 0, errors.New("backslash-newline: a rule cannot continue onto the next line")
			default:
				s.lit.WriteByte('\\')
				i++
			}
		case '$':
			n, ph, err := dollar(rest[i:])
			if err != nil {
				return 0, err
			}
			if ph != nil {
				s.addPlaceholder(ph)
			} else {
				s.lit.WriteByte('$')
			}
			i += n
		case '`':
			return 0, errors.New("command substitution (backquote) is not allowed: " + errNoShell)
		default:
			s.lit.WriteByte(c)
			i++
		}
	}
	return 0, errors.New("unterminated double quote")
}

// dollar handles a `$` at the start of s. It returns the bytes used and
// the placeholder, or ph == nil for a literal dollar sign (one a shell
// would also leave alone, such as a trailing `$`).
func dollar(s string) (int, *placeholder, error) {
	if len(s) < 2 {
		return 1, nil, nil
	}
	switch c := s[1]; {
	case c == '{':
		end := strings.IndexByte(s, '}')
		if end < 0 {
			return 0, nil, errors.New("unterminated ${")
		}
		ph, err := parsePlaceholder(s[2:end])
		if err != nil {
			return 0, nil, err
		}
		return end + 1, ph, nil
	case c == '(':
		return 0, nil, errors.New("command substitution $( is not allowed: " + errNoShell)
	case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("@*#?$!-", c) >= 0:
		n := 2
		if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
			for n < len(s) && isNameByte(s[n]) {
				n++
			}
		}
		return 0, nil, fmt.Errorf("shell variable %s is not expanded: %s; use ${SERVICE.field}", s[:n], errNoShell)
	}
	return 1, nil, nil
}

func isNameByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// parsePlaceholder checks the text between ${ and }. Unknown services can
// only be told once the facts are known; everything else is checked here
// so that a typo shows up even while the service is down.
func parsePlaceholder(in string) (*placeholder, error) {
	dot := strings.LastIndexByte(in, '.')
	if dot < 0 {
		return nil, fmt.Errorf("${%s} is not a placeholder: write ${SERVICE.field}, ${:lan.field} or ${:isp.field}", in)
	}
	name, field := in[:dot], in[dot+1:]
	if name == "" || strings.ContainsAny(name, " \t\v\f\r\n'\"\\${") {
		return nil, fmt.Errorf("bad service name %q in ${%s}", name, in)
	}
	if strings.HasPrefix(name, ":") && name != groupLAN && name != groupISP {
		return nil, fmt.Errorf("unknown group %s in ${%s}: use :lan or :isp", name, in)
	}
	if !slices.Contains(fields, field) {
		return nil, fmt.Errorf("unknown field %q in ${%s} (fields: %s)", field, in, strings.Join(fields, ", "))
	}
	return &placeholder{service: name, field: field}, nil
}

// shellOperator names the shell construct at the start of s.
func shellOperator(s string) error {
	two := s
	if len(two) > 2 {
		two = two[:2]
	}
	var what string
	switch {
	case two == "&&" || two == "||":
		what = "command list " + two
	case two == "&>" || two == ">>" || two == ">&" || two == "<<" || two == "<&" || two == "<>" || two == ">|":
		what = "redirection " + two
	case s[0] == '|':
		what = "pipe |"
	case s[0] == '&':
		what = "background &"
	case s[0] == ';':
		what = "command separator ;"
	case s[0] == '<' || s[0] == '>':
		what = "redirection " + s[:1]
	default:
		what = "subshell parenthesis " + s[:1]
	}
	return fmt.Errorf("%s outside quotes: %s", what, errNoShell)
}

// Quote joins argv into one line that splits back into the same words,
// for printing commands a person can paste and for writing rule files.
func Quote(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = quoteWord(a)
	}
	return strings.Join(out, " ")
}

func quoteWord(s string) string {
	if s == "" {
		return "''"
	}
	for i := 0; i < len(s); i++ {
		if !isSafe(s[i]) {
			return singleQuote(s)
		}
	}
	return s
}

func isSafe(c byte) bool {
	return isNameByte(c) || strings.IndexByte("-./:=,+@%^!", c) >= 0
}

// singleQuote quotes s so that nothing in it is special; a single quote
// inside ends the quoted run, is escaped with a backslash, and a new run
// begins.
func singleQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

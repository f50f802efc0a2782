package rules

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// show renders words for comparison, with placeholders in ⟨⟩ so they
// cannot be mistaken for literal text.
func show(ws []word) []string {
	out := []string{}
	for _, w := range ws {
		out = append(out, w.render(func(p placeholder) string { return "⟨" + p.service + "." + p.field + "⟩" }))
	}
	return out
}

// unparse writes words back as a line: literal text single-quoted,
// placeholders bare, so that split gives the same words again.
func unparse(ws []word) string {
	var out []string
	for _, w := range ws {
		var b strings.Builder
		if len(w) == 0 {
			b.WriteString("''")
		}
		for _, p := range w {
			if p.ph != nil {
				b.WriteString(p.ph.String())
			} else {
				b.WriteString(singleQuote(p.lit))
			}
		}
		out = append(out, b.String())
	}
	return strings.Join(out, " ")
}

var splitCases = []struct {
	line string
	want []string
}{
	{"iptables -A INPUT -j ACCEPT", []string{"iptables", "-A", "INPUT", "-j", "ACCEPT"}},
	{"  a\t b  ", []string{"a", "b"}},
	{"", []string{}},
	{"# only a comment", []string{}},
	{"a # comment | ; &", []string{"a"}},
	{"a#b c", []string{"a#b", "c"}},
	{`a 'b c' "d e"`, []string{"a", "b c", "d e"}},
	{`a '' ""`, []string{"a", "", ""}},
	{`x'y'"z"`, []string{"xyz"}},
	{`a\ b \| \; \$HOME \'`, []string{"a b", "|", ";", "$HOME", "'"}},
	{`"a \" \$ \\ \x"`, []string{`a " $ \ \x`}},
	{`'|;&$(x)` + "`" + `'`, []string{"|;&$(x)`"}},
	{`--log-prefix "DROP: "`, []string{"--log-prefix", "DROP: "}},
	{`-s ${LAN.net} -d ${:isp.ip}`, []string{"-s", "⟨LAN.net⟩", "-d", "⟨:isp.ip⟩"}},
	{`-s${LAN.net}x "${A.ip}:80"`, []string{"-s⟨LAN.net⟩x", "⟨A.ip⟩:80"}},
	{`'${LAN.net}'`, []string{"${LAN.net}"}},
	{`${ISP.1.dev}`, []string{"⟨ISP.1.dev⟩"}},
	{`cost $ "5$" a$`, []string{"cost", "$", "5$", "a$"}},
	{"--string 'a*b?' [x]", []string{"--string", "a*b?", "[x]"}},
	{"a # a comment may hold \x00", []string{"a"}},
}

func TestSplit(t *testing.T) {
	for _, c := range splitCases {
		ws, err := split(c.line)
		if err != nil {
			t.Errorf("split(%q): %v", c.line, err)
			continue
		}
		if diff := cmp.Diff(c.want, show(ws)); diff != "" {
			t.Errorf("split(%q) (-want +got):\n%s", c.line, diff)
		}
	}
}

func TestSplitRefusesShell(t *testing.T) {
	for _, c := range []struct{ line, want string }{
		{"ip route show | grep x", "pipe |"},
		{"true || false", "command list ||"},
		{"true && false", "command list &&"},
		{"sleep 1 &", "background &"},
		{"a; b", "command separator ;"},
		{"a >/tmp/x", "redirection >"},
		{"a >> /tmp/x", "redirection >>"},
		{"a < /tmp/x", "redirection <"},
		{"a 2>&1", "redirection >&"},
		{"a &>/dev/null", "redirection &>"},
		{"(a)", "subshell parenthesis ("},
		{"echo `date`", "backquote"},
		{`echo "x` + "`date`" + `"`, "backquote"},
		{"echo $(date)", "command substitution $("},
		{`echo "$(date)"`, "command substitution $("},
		{"echo $HOME", "shell variable $HOME"},
		{`echo "$HOME"`, "shell variable $HOME"},
		{"echo $1", "shell variable $1"},
		{"echo 'abc", "unterminated single quote"},
		{`echo "abc`, "unterminated double quote"},
		{`echo "abc\"`, "unterminated double quote"},
		{`echo abc\`, "backslash at end of line"},
		{"echo a\nb", "line break outside quotes"},
		{"echo a\x00", "NUL"},
		{"echo '\x00'", "NUL"},
		{"echo \"\x00\"", "NUL"},
		{"echo \"\\\x00\"", "NUL"},
		{"echo \\\x00", "NUL"},
		{"echo ${LAN}", "is not a placeholder"},
		{"echo ${LAN.net", "unterminated ${"},
		{"echo ${LAN.nett}", `unknown field "nett"`},
		{"echo ${:all.dev}", "unknown group :all"},
		{"echo ${.dev}", "bad service name"},
	} {
		_, err := split(c.line)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("split(%q) = %v, want an error containing %q", c.line, err, c.want)
		}
	}
}

func TestQuote(t *testing.T) {
	for _, c := range []struct {
		argv []string
		want string
	}{
		{[]string{"iptables", "-A", "INPUT", "-s", "10.0.0.0/8", "!", "-d", "1.2.3.4:80"}, "iptables -A INPUT -s 10.0.0.0/8 ! -d 1.2.3.4:80"},
		{[]string{"logger", "rules loaded", ""}, "logger 'rules loaded' ''"},
		{[]string{"it's", "${X.dev}", "#x", "a;b"}, `'it'\''s' '${X.dev}' '#x' 'a;b'`},
	} {
		got := Quote(c.argv)
		if got != c.want {
			t.Errorf("Quote(%q) = %s, want %s", c.argv, got, c.want)
		}
		assertQuoteRoundTrip(t, c.argv)
	}
}

func assertQuoteRoundTrip(t *testing.T, argv []string) {
	t.Helper()
	line := Quote(argv)
	ws, err := split(line)
	if err != nil {
		t.Fatalf("split(Quote(%q)) = %q: %v", argv, line, err)
	}
	got := make([]string, len(ws))
	for i, w := range ws {
		s, ok := w.literal()
		if !ok {
			t.Fatalf("split(Quote(%q)) = %q has a placeholder", argv, line)
		}
		got[i] = s
	}
	if diff := cmp.Diff(argv, got); diff != "" {
		t.Fatalf("split(Quote(argv)) of %q (-argv +got):\n%s", line, diff)
	}
}

// FuzzSplit checks that splitting never panics, that literal text never
// holds a NUL (it could not be passed to exec), and that writing the
// words back gives the same words.
func FuzzSplit(f *testing.F) {
	for _, c := range splitCases {
		f.Add(c.line)
	}
	f.Add(`a "b${X.dev}c" 'd'\''e' $`)
	f.Add("x | y")
	f.Fuzz(func(t *testing.T, line string) {
		ws, err := split(line)
		if err != nil {
			return
		}
		for _, w := range ws {
			for _, p := range w {
				if strings.IndexByte(p.lit, 0) >= 0 {
					t.Fatalf("split(%q) kept a NUL", line)
				}
			}
		}
		again, err := split(unparse(ws))
		if err != nil {
			t.Fatalf("split(%q) then unparse = %q: %v", line, unparse(ws), err)
		}
		if diff := cmp.Diff(show(ws), show(again)); diff != "" {
			t.Fatalf("round trip of %q via %q (-first +second):\n%s", line, unparse(ws), diff)
		}
	})
}

// FuzzQuote checks that any NUL-free argv survives Quote and split.
func FuzzQuote(f *testing.F) {
	f.Add("iptables\x00-A\x00INPUT")
	f.Add("a b\x00\x00it's\x00${X.dev}\x00#\x00\n")
	f.Add("\"\\`$(x)|;&<>()'")
	f.Fuzz(func(t *testing.T, s string) {
		assertQuoteRoundTrip(t, strings.Split(s, "\x00"))
	})
}

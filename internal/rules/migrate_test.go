package rules

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixtures holds the sample Perl rule files: rule files seen in the wild
// for the original, kept here so the test needs nothing outside the
// repository.
const fixtures = "testdata/migrate/fixtures"

func TestMigrateGolden(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(fixtures, "*.pl"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 3 {
		t.Fatalf("found %d Perl fixtures in %s, want 3", len(paths), fixtures)
	}
	paths = append(paths, filepath.Join("testdata", "migrate", "90.extra.pl"))
	for _, path := range paths {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			out, missing := Migrate(name, src)
			// The output must be a rule file ispbalance accepts as it is.
			if _, err := ParseFile(name, Firewall, []byte(out)); err != nil {
				t.Errorf("migrated output does not parse: %v", err)
			}
			if n := strings.Count(out, "# NOT TRANSLATED"); n != len(missing) {
				t.Errorf("output marks %d statements, %d returned", n, len(missing))
			}
			var b strings.Builder
			b.WriteString(out)
			b.WriteString("-- untranslated --\n")
			for _, u := range missing {
				fmt.Fprintf(&b, "%d-%d: %s\n\t%s\n", u.Line, u.EndLine, u.Reason, strings.ReplaceAll(u.Text, "\n", "\n\t"))
			}
			golden(t, "migrate/"+strings.TrimSuffix(name, ".pl")+".golden", b.String())
		})
	}
}

// TestMigrateKind checks that the output is checked as a file of the
// directory the Perl file was in: iptables -F is a command in pre-run/.
func TestMigrateKind(t *testing.T) {
	src := []byte("$B->iptables('-F MINE');\n$B->iptables('-F');\n")
	for _, c := range []struct {
		path    string
		missing int
	}{
		{"/etc/network/balance/pre-run/10.x.pl", 0},
		{"/etc/network/balance/firewall/10.x.pl", 1},
		{"10.x.pl", 1},
	} {
		if _, missing := Migrate(c.path, src); len(missing) != c.missing {
			t.Errorf("%s: %d untranslated, want %d: %+v", c.path, len(missing), c.missing, missing)
		}
	}
}

// FuzzMigrate checks that any input, Perl or not, gives a rule file that
// parses, and that every statement left out is marked and returned with
// sane line numbers.
func FuzzMigrate(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join(fixtures, "*.pl"))
	paths = append(paths, filepath.Join("testdata", "migrate", "90.extra.pl"))
	for _, p := range paths {
		if src, err := os.ReadFile(p); err == nil {
			f.Add(src)
		}
	}
	f.Add([]byte("$B->iptables(q{-A INPUT}, qq<-j $_>) for $B->lan_services; $x = <<END;\n'\nEND\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		out, missing := Migrate("f.pl", src)
		if _, err := ParseFile("f", Firewall, []byte(out)); err != nil {
			t.Fatalf("output does not parse: %v\n%s", err, out)
		}
		if n := strings.Count(out, "\n# NOT TRANSLATED ("); n != len(missing) {
			t.Fatalf("output marks %d statements, %d returned", n, len(missing))
		}
		lines := strings.Count(string(src), "\n") + 1
		for _, u := range missing {
			if u.Line < 1 || u.EndLine < u.Line || u.EndLine > lines {
				t.Fatalf("untranslated lines %d-%d outside 1-%d", u.Line, u.EndLine, lines)
			}
		}
	})
}

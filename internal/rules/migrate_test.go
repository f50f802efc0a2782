package rules

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ispbalance/ispbalance/internal/kernelnames"
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

// fixtureFacts is the router the Perl fixtures were written for: CABLE
// on eth0, DSL on eth1, the office LAN on eth2 and a guest LAN on eth4.
func fixtureFacts() Facts {
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	return Facts{MarkMask: kernelnames.MarkMask, Services: []Service{
		{Name: "CABLE", Role: RoleISP, Dev: "eth0", IP: a("198.51.100.10"), GW: a("198.51.100.1"), Net: p("198.51.100.0/24"),
			Fwmark: kernelnames.ISPMark(1), Table: kernelnames.ISPTable(1), Weight: 2, Present: true, Up: true},
		{Name: "DSL", Role: RoleISP, Dev: "eth1", IP: a("203.0.113.7"), GW: a("203.0.113.1"), Net: p("203.0.113.0/24"),
			Fwmark: kernelnames.ISPMark(2), Table: kernelnames.ISPTable(2), Weight: 1, Present: true, Up: true},
		{Name: "GUEST", Role: RoleLAN, Dev: "eth4", IP: a("192.168.20.1"), Net: p("192.168.20.0/24"), Present: true, Up: true},
		{Name: "LAN", Role: RoleLAN, Dev: "eth2", IP: a("192.168.10.1"), Net: p("192.168.10.0/24"), Present: true, Up: true},
	}}
}

// TestMigratedRulesMean checks what the migrated fixtures do, not only how
// they read: each is expanded against a two-ISP, two-LAN router and the
// resulting rules, routes and forced routes are compared with a golden
// file written from original.md §3's description of each $B call
// (forward: DNAT on every ISP device plus a FORWARD opening; force_route:
// new matching connections through one ISP; add_route: main and every ISP
// table, with firewall openings).
func TestMigratedRulesMean(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(fixtures, "*.pl"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, path := range paths {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			out, _ := Migrate(name, src)
			f, err := ParseFile("firewall/"+strings.TrimSuffix(name, ".pl"), Firewall, []byte(out))
			if err != nil {
				t.Fatal(err)
			}
			res, err := Expand([]File{f}, fixtureFacts())
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "migrate/"+strings.TrimSuffix(name, ".pl")+".applied.golden", dump(res))
		})
	}
}

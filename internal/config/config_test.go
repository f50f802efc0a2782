package config

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ispbalance/ispbalance/internal/trust"
)

const sample = `# service table
#service  device  role  ping-ip            weight gateway
CABLE     eth0    isp   192.0.2.1,198.51.100.7  3     100.64.1.1
DSL       ppp0    isp   default            default default
LAN       eth2    lan
DMZ       eth3:0  lan
mode=failover
forwarding_group=LAN :isp
forwarding_group=DMZ CABLE
internet_ssh = no
interval_ms=500   # probes
warn_email=root@localhost
`

func TestParseSample(t *testing.T) {
	c, err := Parse("balance.conf", strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Path: "balance.conf",
		Mode: Failover,
		Services: []Service{
			{Name: "CABLE", Device: "eth0", Role: RoleISP, PingTargets: []string{"192.0.2.1", "198.51.100.7"}, Weight: 3, Gateway: netip.MustParseAddr("100.64.1.1"), Line: 3},
			{Name: "DSL", Device: "ppp0", Role: RoleISP, PingTargets: []string{DefaultPingHost}, Weight: 1, Line: 4},
			{Name: "LAN", Device: "eth2", Role: RoleLAN, Weight: 1, Line: 5},
			{Name: "DMZ", Device: "eth3:0", Role: RoleLAN, Weight: 1, Line: 6},
		},
		Groups: []Group{
			{Members: []string{"LAN", "CABLE", "DSL"}, Line: 8},
			{Members: []string{"DMZ", "CABLE"}, Line: 9},
		},
		InternetSSH:    false,
		FlushConntrack: true,
		LastResort:     LastResortCarrier,
		IPv6:           true,
		IPv6Gateways:   map[string]IPv6Gateway{},
		MonitorOptions: []Option{
			{Name: "interval_ms", Value: "500", File: "balance.conf", Line: 11},
			{Name: "warn_email", Value: "root@localhost", File: "balance.conf", Line: 12},
		},
	}
	if d := cmp.Diff(want, c, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("parse mismatch (-want +got):\n%s", d)
	}
	if !c.MayForward("LAN", "DSL") || c.MayForward("DMZ", "DSL") || c.MayForward("LAN", "DMZ") {
		t.Errorf("forwarding groups evaluated wrongly")
	}
	if got := c.ISPs(); len(got) != 2 || got[0].Name != "CABLE" || got[1].Name != "DSL" {
		t.Errorf("ISPs() = %v, want CABLE, DSL in name order", got)
	}
}

func TestDefaultGroupAllowsEverything(t *testing.T) {
	c, err := Parse("b", strings.NewReader("A eth0 isp\nB eth1 isp\nL eth2 lan\nM eth3 lan\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Mode != Balanced || !c.InternetSSH {
		t.Errorf("defaults: mode %q internet_ssh %v", c.Mode, c.InternetSSH)
	}
	if !c.MayForward("L", "M") || !c.MayForward("L", "B") {
		t.Errorf("default group should allow all forwarding")
	}
}

// parseErrorCases are files Parse must refuse, with the line and message
// of the error; FuzzParse starts from them too.
var parseErrorCases = []struct {
	name, src string
	line      int
	want      string
}{
	{"unknown role", "A eth0 wan\n", 1, `role "wan" is unknown`},
	{"ipv6 word", "A eth0 isp\nipv6=maybe\n", 2, `ipv6: "maybe" is not yes or no`},
	{"ipv6_gateway v4", "A eth0 isp\nipv6_gateway=A 100.64.1.1\n", 2, `"100.64.1.1" is not an IPv6 address`},
	{"ipv6_gateway zone", "A eth0 isp\nipv6_gateway=A fe80::1%eth0\n", 2, `is not an IPv6 address (no zone`},
	{"ipv6_gateway multicast", "A eth0 isp\nipv6_gateway=A ff02::1\n", 2, `ff02::1 cannot be a gateway`},
	{"ipv6_gateway service", "A eth0 isp\nL eth1 lan\n\nipv6_gateway=L fe80::1\n", 4, `names "L", which is no isp service`},
	{"ipv6_gateway twice", "A eth0 isp\nipv6_gateway=A fe80::1\nipv6_gateway=A fe80::2\n", 3, `set again (first at line 2)`},
	{"duplicate service", "A eth0 isp\n\nA eth1 isp\n", 3, "service A is defined again (first at line 1)"},
	{"duplicate device", "A eth0 isp\nB eth0 isp\n", 2, "device eth0 is used by service A too"},
	{"named up", "up eth0 isp\n", 1, `may not be named "up"`},
	{"named down", "# c\ndown eth0 isp\n", 2, `may not be named "down"`},
	{"weight zero", "A eth0 isp default 0\n", 1, `weight "0" is not a whole number`},
	{"weight word", "A eth0 isp default heavy\n", 1, `weight "heavy"`},
	{"bad gateway", "A eth0 isp default 1 300.1.1.1\n", 1, `gateway "300.1.1.1" is not an IPv4 address`},
	{"v6 gateway", "A eth0 isp default 1 2001:db8::1\n", 1, `gateway "2001:db8::1" is not an IPv4 address`},
	{"bad ping", "A eth0 isp 1.2.3.4;rm\n", 1, `ping target "1.2.3.4;rm"`},
	{"unknown group member", "A eth0 isp\nforwarding_group=A B\n", 2, `unknown service "B"`},
	{"bad mode", "A eth0 isp\nmode=roundrobin\n", 2, `mode must be "balanced" or "failover", not "roundrobin"`},
	{"mode twice", "mode=failover\nmode=balanced\n", 2, "mode is set again"},
	{"short line", "A eth0\n", 1, "needs at least SERVICE DEVICE ROLE"},
	{"too many columns", "A eth0 isp x 1 192.0.2.1 extra\n", 1, "too many columns"},
	{"bad device", "A eth0;x isp\n", 1, `device "eth0;x"`},
	{"dot-dot device", "A eth0 isp\nB .. lan\n", 2, `device ".." is not an interface name`},
	{"dot device with a label", "A .:1 lan\n", 1, `device ".:1" is not an interface name`},
	{"dot parent", "A eth0.10@. lan\n", 1, `device "eth0.10@." is not an interface name`},
	// The kernel keeps labels in 15 bytes, as it does names.
	{"label too long", "A eth0123456789:label lan\n", 1, `device "eth0123456789:label" is not an interface name`},
	{"bad name", "A/B eth0 isp\n", 1, `service name "A/B"`},
	{"lan weight", "L eth0 lan default 3\n", 1, "isp services only"},
	{"bad ssh switch", "internet_ssh=maybe\n", 1, "is not yes or no"},
	{"bad setting name", "Foo-Bar=1\n", 1, "is not a setting name"},
	{"bad flush", "flush_conntrack=sometimes\n", 1, "flush_conntrack must be on-down or never"},
	{"bad insecure_files", "insecure_files=yes\n", 1, "insecure_files must be refuse or allow"},
	{"insecure_files twice", "insecure_files=allow\ninsecure_files=refuse\n", 2, "insecure_files is set again"},
}

func TestParseErrors(t *testing.T) {
	for _, tc := range parseErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("/etc/network/balance.conf", strings.NewReader(tc.src))
			var le *LineError
			if !errors.As(err, &le) {
				t.Fatalf("got %v, want a line error", err)
			}
			if le.File != "/etc/network/balance.conf" || le.Line != tc.line || !strings.Contains(le.Msg, tc.want) {
				t.Errorf("got %q, want line %d containing %q", err, tc.line, tc.want)
			}
		})
	}
}

func TestInsecureFilesSetting(t *testing.T) {
	for src, want := range map[string]trust.Policy{"": trust.Refuse, "insecure_files=refuse\n": trust.Refuse, "insecure_files = allow\n": trust.Allow} {
		c, err := Parse("b", strings.NewReader("A eth0 isp\n"+src))
		if err != nil || c.Files != want {
			t.Errorf("%q: policy %v, %v; want %v", src, c.Files, err, want)
		}
	}
}

// TestLoadRefusesOthersFiles: balance.conf that anyone but root could
// change is refused, even when it says insecure_files=allow.
func TestLoadRefusesOthersFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "balance.conf")
	if err := os.WriteFile(path, []byte("insecure_files=allow\nA eth0 isp\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err != nil {
		t.Fatalf("a 0644 file of the running user's: %v", err)
	}
	os.Chmod(path, 0o666)
	var te *trust.Error
	if _, err := Load(path); !errors.As(err, &te) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "chmod go-w") {
		t.Errorf("a 0666 file: %v, want a refusal naming the file and the fix", err)
	}
	if os.Geteuid() == 0 {
		os.Chmod(path, 0o644)
		os.Chown(path, 65534, 65534)
		if _, err := Load(path); !errors.As(err, &te) || !strings.Contains(err.Error(), "uid 65534") {
			t.Errorf("a file of uid 65534: %v, want a refusal", err)
		}
	}
	if _, err := Load(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing file: %v, want fs.ErrNotExist", err)
	}
}

func TestHooksSetting(t *testing.T) {
	for _, c := range []struct {
		text string
		off  bool
		err  string
	}{
		{"ISP1 eth0 isp\n", false, ""},
		{"ISP1 eth0 isp\nhooks=off\n", true, ""},
		{"ISP1 eth0 isp\nhooks=on\n", false, ""},
		{"ISP1 eth0 isp\nhooks=maybe\n", false, "balance.conf:2: hooks"},
		{"ISP1 eth0 isp\nhooks=off\nhooks=on\n", false, "balance.conf:3: hooks is set again (first at line 2)"},
	} {
		cfg, err := Parse("balance.conf", strings.NewReader(c.text))
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want %q", c.text, err, c.err)
			}
		case err != nil:
			t.Errorf("%q: %v", c.text, err)
		case cfg.HooksOff != c.off:
			t.Errorf("%q: HooksOff %v, want %v", c.text, cfg.HooksOff, c.off)
		}
	}
}

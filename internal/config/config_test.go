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
		IPv6Prefixes:   map[string]IPv6Prefix{},
		MaxRTT:         map[string]Threshold{},
		MaxJitter:      map[string]Threshold{},
		IPv6NAT:        IPv6NATAuto,
		Sticky:         StickyConnection,
		StickyTimeout:  DefaultStickyTimeout,
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

// TestQualityThresholds: a global value applies to every ISP without one
// of its own; 0 exempts an ISP from the global value.
func TestQualityThresholds(t *testing.T) {
	c, err := Parse("b", strings.NewReader("A eth0 isp\nB eth1 isp\nSAT eth2 isp\nmax_rtt_ms=300\nmax_rtt_ms=B 500\nmax_rtt_ms=SAT 0\nmax_jitter_ms=A 40\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		svc         string
		rtt, jitter int
	}{{"A", 300, 40}, {"B", 500, 0}, {"SAT", 0, 0}} {
		if rtt, jitter := c.QualityFor(tc.svc); rtt != tc.rtt || jitter != tc.jitter {
			t.Errorf("%s: max_rtt_ms %d max_jitter_ms %d, want %d and %d", tc.svc, rtt, jitter, tc.rtt, tc.jitter)
		}
	}
	if len(c.MonitorOptions) != 0 {
		t.Errorf("quality thresholds reached the lsm options: %v", c.MonitorOptions)
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
	{"ipv6_prefix v4", "A eth0 isp\nipv6_prefix=A 100.64.0.0/16\n", 2, `"100.64.0.0/16" is not an IPv6 prefix`},
	{"ipv6_prefix host bits", "A eth0 isp\nipv6_prefix=A 2001:db8:100::1/56\n", 2, `has host bits set (the prefix is 2001:db8:100::/56)`},
	{"ipv6_prefix link-local", "A eth0 isp\nipv6_prefix=A fe80::/64\n", 2, `fe80::/64 cannot be a delegated prefix`},
	{"ipv6_prefix too long", "A eth0 isp\nipv6_prefix=A 2001:db8::/96\n", 2, `cannot be a delegated prefix`},
	{"ipv6_prefix service", "A eth0 isp\nL eth1 lan\nipv6_prefix=L 2001:db8::/56\n", 3, `names "L", which is no isp service`},
	{"ipv6_prefix twice", "A eth0 isp\nipv6_prefix=A 2001:db8::/56\nipv6_prefix=A 2001:db8:1::/56\n", 3, `set again (first at line 2)`},
	{"ipv6_prefix fields", "A eth0 isp\nipv6_prefix=2001:db8::/56\n", 2, `ipv6_prefix wants SERVICE PREFIX`},
	{"max_rtt_ms word", "A eth0 isp\nmax_rtt_ms=fast\n", 2, `max_rtt_ms: "fast" is not a whole number of milliseconds`},
	{"max_rtt_ms negative", "A eth0 isp\nmax_rtt_ms=A -1\n", 2, `max_rtt_ms: "-1" is not a whole number`},
	{"max_rtt_ms twice", "A eth0 isp\nmax_rtt_ms=300\nmax_rtt_ms=400\n", 3, `max_rtt_ms is set again (first at line 2)`},
	{"max_jitter_ms isp twice", "A eth0 isp\nmax_jitter_ms=A 30\nmax_jitter_ms=A 40\n", 3, `max_jitter_ms for A is set again (first at line 2)`},
	{"max_jitter_ms fields", "A eth0 isp\nmax_jitter_ms=A 30 ms\n", 2, `max_jitter_ms wants MILLISECONDS or SERVICE MILLISECONDS`},
	{"max_rtt_ms lan", "A eth0 isp\nL eth1 lan\nmax_rtt_ms=L 300\n", 3, `max_rtt_ms names "L", which is no isp service`},
	{"ipv6_nat", "A eth0 isp\nipv6_nat=npt\n", 2, `ipv6_nat must be auto, failover or off, not "npt"`},
	{"ipv6_nat twice", "A eth0 isp\nipv6_nat=off\nipv6_nat=auto\n", 3, `ipv6_nat is set again`},
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
	{"bad sticky", "A eth0 isp\nsticky=host\n", 2, `sticky must be "connection" or "source", not "host"`},
	{"sticky twice", "sticky=source\n\nsticky=connection\n", 3, "sticky is set again (first at line 1)"},
	{"sticky_timeout zero", "sticky_timeout=0\n", 1, `sticky_timeout "0" is not a whole number of seconds from 1 to 2147483`},
	{"sticky_timeout word", "sticky_timeout=10m\n", 1, `sticky_timeout "10m" is not a whole number`},
	{"sticky_timeout past ipset's", "sticky_timeout=2147484\n", 1, `sticky_timeout "2147484"`},
	{"bad flush", "flush_conntrack=sometimes\n", 1, "flush_conntrack must be on-down or never"},
	{"bad insecure_files", "insecure_files=yes\n", 1, "insecure_files must be refuse or allow"},
	{"insecure_files twice", "insecure_files=allow\ninsecure_files=refuse\n", 2, "insecure_files is set again"},
	{"metrics_listen no port", "A eth0 isp\nmetrics_listen=127.0.0.1\n", 2, `metrics_listen: "127.0.0.1" is not ADDRESS:PORT`},
	{"metrics_listen host name", "metrics_listen=localhost:9851\n", 1, `"localhost" is not an IP address`},
	{"metrics_listen no host", "metrics_listen=:9851\n", 1, `"" is not an IP address`},
	{"metrics_listen port zero", "metrics_listen=127.0.0.1:0\n", 1, `port "0" is not a number from 1 to 65535`},
	{"metrics_listen port too big", "metrics_listen=127.0.0.1:65536\n", 1, `port "65536"`},
	{"metrics_listen port name", "metrics_listen=127.0.0.1:http\n", 1, `port "http"`},
	{"metrics_listen bare v6", "metrics_listen=::1:9851\n", 1, "is not ADDRESS:PORT"},
	{"metrics_listen empty", "\nmetrics_listen=\n", 2, "metrics_listen"},
	{"metrics_listen twice", "metrics_listen=127.0.0.1:9851\nmetrics_listen=127.0.0.1:9852\n", 2, "metrics_listen is set again (first at line 1)"},
	{"metrics_textfile relative", "metrics_textfile=ispbalance.prom\n", 1, `metrics_textfile wants the absolute path of a file, not "ispbalance.prom"`},
	{"metrics_textfile directory", "metrics_textfile=/var/lib/prometheus/\n", 1, "metrics_textfile wants the absolute path"},
	{"metrics_textfile empty", "metrics_textfile=\n", 1, "metrics_textfile wants the absolute path"},
	{"metrics_textfile twice", "metrics_textfile=/a.prom\n\nmetrics_textfile=/b.prom\n", 3, "metrics_textfile is set again (first at line 1)"},
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

func TestMetricsSettings(t *testing.T) {
	c, err := Parse("b", strings.NewReader("A eth0 isp\n"))
	if err != nil || c.MetricsListen != "" || c.MetricsTextfile != "" {
		t.Fatalf("default: listen %q, textfile %q, %v; want both off", c.MetricsListen, c.MetricsTextfile, err)
	}
	for _, tc := range []struct{ src, listen, textfile string }{
		{"metrics_listen=127.0.0.1:9851\n", "127.0.0.1:9851", ""},
		{"metrics_listen = [::1]:9851  # local only\n", "[::1]:9851", ""},
		// Another address than loopback is the admin's choice.
		{"metrics_listen=192.0.2.1:65535\n", "192.0.2.1:65535", ""},
		{"metrics_textfile=/var/lib/prometheus/node-exporter/ispbalance.prom\n", "", "/var/lib/prometheus/node-exporter/ispbalance.prom"},
		{"metrics_textfile=/var/lib//node-exporter/./ispbalance.prom\nmetrics_listen=0.0.0.0:1\n", "0.0.0.0:1", "/var/lib/node-exporter/ispbalance.prom"},
	} {
		c, err := Parse("b", strings.NewReader("A eth0 isp\n"+tc.src))
		if err != nil {
			t.Errorf("%q: %v", tc.src, err)
			continue
		}
		if c.MetricsListen != tc.listen || c.MetricsTextfile != tc.textfile {
			t.Errorf("%q: listen %q, textfile %q; want %q, %q", tc.src, c.MetricsListen, c.MetricsTextfile, tc.listen, tc.textfile)
		}
		// The monitor's lsm options reject names they do not know.
		if len(c.MonitorOptions) != 0 {
			t.Errorf("%q: passed on to the link monitor: %v", tc.src, c.MonitorOptions)
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

func TestSticky(t *testing.T) {
	c, err := Parse("b", strings.NewReader("A eth0 isp\nsticky=source   # banks\nsticky_timeout=90\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Sticky != StickySource || c.StickyTimeout != 90 || len(c.MonitorOptions) != 0 {
		t.Errorf("sticky %q timeout %d monitor options %v, want source, 90 and none", c.Sticky, c.StickyTimeout, c.MonitorOptions)
	}
	c, err = Parse("b", strings.NewReader("A eth0 isp\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Sticky != StickyConnection || c.StickyTimeout != DefaultStickyTimeout {
		t.Errorf("defaults: sticky %q timeout %d, want connection and %d", c.Sticky, c.StickyTimeout, DefaultStickyTimeout)
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

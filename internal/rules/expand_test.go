package rules

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/ispbalance/ispbalance/internal/kernelnames"
)

// testFacts is a router with two ISPs and two LANs.
func testFacts() Facts {
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	return Facts{
		MarkMask: kernelnames.MarkMask,
		Services: []Service{
			// Deliberately out of order: Expand sorts.
			{Name: "LAN", Role: RoleLAN, Dev: "eth1", IP: a("192.168.10.1"), Net: p("192.168.10.1/24"), Present: true, Up: true},
			{Name: "DSL", Role: RoleISP, Dev: "ppp0", IP: a("203.0.113.7"), GW: a("203.0.113.1"), Net: p("203.0.113.1/32"),
				Fwmark: kernelnames.ISPMark(2), Table: kernelnames.ISPTable(2), Weight: 1, Present: true, Up: true},
			{Name: "CABLE", Role: RoleISP, Dev: "eth0", IP: a("198.51.100.10"), GW: a("198.51.100.1"), Net: p("198.51.100.0/24"),
				Fwmark: kernelnames.ISPMark(1), Table: kernelnames.ISPTable(1), Weight: 2, Present: true, Up: true},
			{Name: "LAB", Role: RoleLAN, Dev: "eth2", IP: a("192.168.20.1"), Net: p("192.168.20.0/24"), Present: true, Up: true},
		},
	}
}

func setService(f Facts, name string, change func(*Service)) Facts {
	for i := range f.Services {
		if f.Services[i].Name == name {
			change(&f.Services[i])
		}
	}
	return f
}

type ruleFile struct {
	kind Kind
	name string
	src  string
}

func parseAll(t *testing.T, rfs []ruleFile) []File {
	t.Helper()
	var files []File
	for _, rf := range rfs {
		f, err := ParseFile(rf.kind.String()+"/"+rf.name, rf.kind, []byte(rf.src))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return files
}

// dump renders a Result as text for the golden files.
func dump(r Result) string {
	var b strings.Builder
	section := func(name string, n int) {
		if n > 0 {
			fmt.Fprintf(&b, "== %s\n", name)
		}
	}
	from := func(directive string) string {
		if directive == "" {
			return ""
		}
		return " [" + directive + "]"
	}
	// IPv4 lines are shown bare, IPv6 ones marked.
	ip6tables := func(ipv6 bool) string {
		if ipv6 {
			return "ip6tables "
		}
		return ""
	}
	family := func(f Family) string {
		if f == IPv6 {
			return "-6 "
		}
		return ""
	}
	section("chains", len(r.Chains))
	for _, c := range r.Chains {
		fmt.Fprintf(&b, "%s: %s-t %s -N %s\n", c.Pos, ip6tables(c.IPv6), c.Table, c.Name)
	}
	section("iptables", len(r.IPTables))
	for _, x := range r.IPTables {
		fmt.Fprintf(&b, "%s%s: %s%s\n", x.Pos, from(x.Directive), ip6tables(x.IPv6), Quote(x.Argv()))
	}
	section("ip route", len(r.Routes))
	for _, x := range r.Routes {
		fmt.Fprintf(&b, "%s%s: %s%s\n", x.Pos, from(x.Directive), family(x.Family), Quote(x.Argv()))
	}
	section("ip rule", len(r.IPRules))
	for _, x := range r.IPRules {
		fmt.Fprintf(&b, "%s: %s%s\n", x.Pos, family(x.Family), Quote(x.Argv()))
	}
	section("force-route", len(r.ForceRoutes))
	for _, x := range r.ForceRoutes {
		fmt.Fprintf(&b, "%s: %s\n", x.Pos, Quote(append([]string{x.Service}, x.Selectors...)))
	}
	section("pre-run", len(r.PreRun))
	for _, x := range r.PreRun {
		fmt.Fprintf(&b, "%s: %s\n", x.Pos, Quote(x.Argv))
	}
	section("post-run", len(r.PostRun))
	for _, x := range r.PostRun {
		fmt.Fprintf(&b, "%s: %s\n", x.Pos, Quote(x.Argv))
	}
	section("skipped", len(r.Skipped))
	for _, x := range r.Skipped {
		fmt.Fprintf(&b, "%s\n", x)
	}
	return b.String()
}

func TestExpandGolden(t *testing.T) {
	for _, c := range []struct {
		name  string
		facts Facts
		files []ruleFile
	}{
		{
			name:  "placeholders",
			facts: testFacts(),
			files: []ruleFile{
				{Routes, "10.routes", `
ip route add 10.99.0.0/16 via 192.168.10.254 dev ${LAN.dev}
ip -4 ro replace 10.98.0.0/16 via ${CABLE.gw} dev ${CABLE.dev} table ${CABLE.table}
ip rule add fwmark ${DSL.fwmark} table ${DSL.table}
ip rule delete from ${:isp.ip} table ${:isp.table}
ip -6 route add 2001:db8::/32 dev ${LAN.dev}
ip link set ${LAN.dev} mtu 1500
`},
				{Firewall, "20.lans", `
# One rule per LAN.
iptables -A FORWARD -p udp --source-port domain -d ${:lan.net} -j ACCEPT
# Same group: the device and network of one LAN go together.
iptables -A INPUT -i ${:lan.dev} -s ${:lan.net} -p tcp --dport 22 -j ACCEPT
# Two groups: every LAN with every ISP.
iptables -A FORWARD -i ${:lan.dev} -o ${:isp.dev} -m comment --comment "${:lan.dev} to ${:isp.dev}" -j ACCEPT
iptables -t mangle -I PREROUTING 1 -s ${LAN.net} -p tcp --dport 25 -j MARK --set-mark ${CABLE.fwmark}
iptables -w 5 -N MYCHAIN
iptables --wait -A MYCHAIN -j LOG --log-prefix 'mine: '
iptables -A INPUT -j MYCHAIN
iptables -A INPUT -j MYCHAIN
iptables -t nat -F MYNAT
iptables-legacy -t raw -A PREROUTING -i ${DSL.dev} -j CT --notrack
/sbin/iptables -D INPUT 3
iptables -A INPUT -m comment --comment '${LAN.dev}' -j ACCEPT
logger -t ispbalance "weights ${CABLE.weight}/${DSL.weight}"
`},
				{PreRun, "10.pre", `
modprobe nf_conntrack
iptables -L -n
`},
				{PostRun, "10.post", `
/usr/local/bin/notify ${CABLE.ip} ${:isp.dev}
`},
			},
		},
		{
			name: "down-and-absent",
			facts: setService(setService(testFacts(), "DSL", func(s *Service) { s.Up = false }),
				"LAB", func(s *Service) { s.Present, s.Up = false, false }),
			files: []ruleFile{
				{Firewall, "10.rules", `
iptables -A INPUT -i ${DSL.dev} -p tcp --dport 22 -j ACCEPT
iptables -A INPUT -i ${LAB.dev} -j ACCEPT
iptables -A FORWARD -i ${:lan.dev} -o ${:isp.dev} -j ACCEPT
iptables -A INPUT -i ${CABLE.dev} -p tcp --dport 80 -j ACCEPT
force-route DSL -p tcp --dport 25
force-route CABLE -p tcp --dport 587
forward 443 192.168.10.20
forward-with-snat 8443 192.168.10.21:443
add-route 192.168.100.0/24 eth3
`},
			},
		},
		{
			name:  "directives",
			facts: testFacts(),
			files: []ruleFile{
				{PreRun, "05.pre", "forward 8080 192.168.10.40:80\n"},
				{Firewall, "10.directives", `
forward 443 192.168.10.20
forward 2222 192.168.10.20:22 tcp udp tcp
forward 2223 192.168.10.20:22
forward-with-snat 8443 192.168.10.21:443 tcp
force-route DSL -p tcp --syn --dport 25
force-route eth0 -p udp --dport 500
force-route CABLE
add-route 192.168.100.0/24 eth3 masquerade
add-route 10.0.0.5 ${LAN.dev}
firewall-rule INPUT - -p tcp --dport 6000 -j REJECT
firewall-rule POSTROUTING nat -o eth3 -j MASQUERADE
`},
			},
		},
		{
			name: "no-ISPs-or-LANs",
			facts: Facts{Services: []Service{
				{Name: "CABLE", Role: RoleISP, Dev: "eth0", Present: false},
			}},
			files: []ruleFile{
				{Firewall, "10.rules", `
forward 443 192.168.10.20
iptables -A INPUT -s ${:lan.net} -j ACCEPT
add-route 192.168.100.0/24 eth3
`},
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := Expand(parseAll(t, c.files), c.facts)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "expand/"+c.name+".golden", dump(r))
		})
	}
}

func TestExpandErrors(t *testing.T) {
	facts := testFacts()
	for _, c := range []struct{ line, want string }{
		{"iptables -A INPUT -i ${WIFI.dev} -j ACCEPT", `firewall/f:2: unknown service "WIFI" in ${WIFI.dev}`},
		{"ip route add default via ${LAN.gw}", "firewall/f:2: ${LAN.gw}: LAN is a lan service and has no gw"},
		{"ip rule add fwmark ${:lan.fwmark} table 5", "firewall/f:2: ${:lan.fwmark}: lan services have no fwmark"},
		{"echo ${LAN.weight}", "has no weight"},
		{"force-route WIFI -p tcp", `firewall/f:2: force-route: "WIFI" is neither a service nor the device of one`},
		{"force-route eth1 -p tcp", "firewall/f:2: force-route: LAN is a lan service"},
	} {
		files := parseAll(t, []ruleFile{{Firewall, "f", "# first\n" + c.line + "\n"}})
		r, err := Expand(files, facts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.line, err, c.want)
		}
		if dump(r) != "" {
			t.Errorf("%q: Expand returned a result with its error:\n%s", c.line, dump(r))
		}
	}
}

// TestExpandChecksRealValues checks that a line which passed with sample
// values is checked again with the real ones.
func TestExpandChecksRealValues(t *testing.T) {
	facts := setService(testFacts(), "LAN", func(s *Service) { s.Dev = "enp3s0f1" })
	// With the sample device eth0 the name has 18 characters; with
	// enp3s0f1, 22, one more than the 21 that ISPB-U- leaves.
	files := parseAll(t, []ruleFile{{Firewall, "f", "iptables -N ${LAN.dev}-in-long-chain\n"}})
	_, err := Expand(files, facts)
	want := `firewall/f:1: iptables: chain name "enp3s0f1-in-long-chain" is longer than 21 characters (it is kept as ISPB-U-enp3s0f1-in-long-chain, and iptables allows 28)`
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
}

// TestExpandErrorsKeepGoing checks that every bad line is reported, and
// that an unknown service is an error even on a line another service's
// absence would skip.
func TestExpandErrorsKeepGoing(t *testing.T) {
	facts := setService(testFacts(), "DSL", func(s *Service) { s.Present = false })
	files := parseAll(t, []ruleFile{{Firewall, "f", "echo ${DSL.ip} ${NOPE.ip}\necho ok\necho ${LAN.table}\n"}})
	_, err := Expand(files, facts)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`firewall/f:1: unknown service "NOPE"`, "firewall/f:3: ${LAN.table}"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestFieldValue(t *testing.T) {
	s := testFacts().Services[1] // DSL
	for _, c := range []struct {
		field string
		mask  uint32
		want  string
		ok    bool
	}{
		{"dev", 0, "ppp0", true},
		{"ip", 0, "203.0.113.7", true},
		{"gw", 0, "203.0.113.1", true},
		{"net", 0, "203.0.113.1/32", true},
		{"fwmark", 0, "0x2000000", true},
		{"fwmark", kernelnames.MarkMask, "0x2000000/0x3f000000", true},
		{"table", 0, "4202", true},
		{"weight", 0, "1", true},
	} {
		got, ok := fieldValue(s, c.field, c.mask)
		if got != c.want || ok != c.ok {
			t.Errorf("fieldValue(DSL, %s, %#x) = %q, %v; want %q, %v", c.field, c.mask, got, ok, c.want, c.ok)
		}
	}
	lan := testFacts().Services[0]
	if _, ok := fieldValue(lan, "gw", 0); ok {
		t.Error("a LAN without a gateway has a gw")
	}
	// The host bits of a LAN's address are not part of its network.
	if got, _ := fieldValue(lan, "net", 0); got != "192.168.10.0/24" {
		t.Errorf("LAN net = %s", got)
	}
}

// FuzzParseExpand checks that no rule file makes ParseFile or Expand
// panic, and that everything Expand returns points at a real line.
func FuzzParseExpand(f *testing.F) {
	f.Add("iptables -A FORWARD -i ${:lan.dev} -o ${:isp.dev} -j ACCEPT\nforward 80 192.168.10.2:8080 udp\n")
	f.Add("force-route eth0 -p tcp\nadd-route 10.0.0.0/8 eth3 masquerade\nfirewall-rule INPUT - -j ACCEPT\n")
	f.Add("ip route add 10.0.0.0/8 via ${DSL.gw} table ${DSL.table}\nlogger ${LAB.net}\n")
	facts := setService(testFacts(), "DSL", func(s *Service) { s.Up = false })
	f.Fuzz(func(t *testing.T, src string) {
		file, err := ParseFile("f", Firewall, []byte(src))
		if err != nil {
			return
		}
		r, err := Expand([]File{file}, facts)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Pos.File != "f" {
				t.Fatalf("error without a position: %v", err)
			}
			return
		}
		lines := strings.Count(src, "\n") + 1
		check := func(p Pos) {
			if p.File != "f" || p.Line < 1 || p.Line > lines {
				t.Fatalf("result at %s, outside f:1-%d", p, lines)
			}
		}
		for _, x := range r.IPTables {
			check(x.Pos)
		}
		for _, x := range append(r.Routes, r.IPRules...) {
			check(x.Pos)
		}
		for _, x := range r.PostRun {
			check(x.Pos)
		}
		for _, x := range r.Skipped {
			check(x.Pos)
		}
	})
}

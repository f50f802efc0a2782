package rules

import (
	"net/netip"
	"strings"
	"testing"
)

// dualFacts is testFacts with IPv6: CABLE has an address, a gateway and
// a delegated prefix, DSL has no IPv6 at all, LAN is numbered from
// CABLE's prefix and LAB from a ULA.
func dualFacts() Facts {
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	f := testFacts()
	f = setService(f, "CABLE", func(s *Service) {
		s.IP6, s.Net6, s.GW6, s.Prefix6, s.Up6 = a("2001:db8:1::2"), p("2001:db8:1::2/64"), a("fe80::1"), p("2001:db8:100::/56"), true
	})
	f = setService(f, "LAN", func(s *Service) { s.IP6, s.Net6, s.Up6 = a("2001:db8:100:1::1"), p("2001:db8:100:1::1/64"), true })
	f = setService(f, "LAB", func(s *Service) { s.IP6, s.Net6, s.Up6 = a("fd00:20::1"), p("fd00:20::1/64"), true })
	return setService(f, "DSL", func(s *Service) { s.Up6 = true })
}

func TestExpandIPv6Golden(t *testing.T) {
	for _, c := range []struct {
		name  string
		facts Facts
		files []ruleFile
	}{
		{
			name:  "ipv6",
			facts: dualFacts(),
			files: []ruleFile{
				{Routes, "10.routes", `
ip -6 route add 2001:db8:99::/48 via ${CABLE.gw6} dev ${CABLE.dev} table ${CABLE.table}
ip route replace ${CABLE.prefix6} dev ${LAN.dev}
ip -6 rule add from ${:lan.net6} lookup ${CABLE.table}
ip -6 rule add from ${:isp.ip6} lookup ${:isp.table}
ip -6 ro del 2001:db8:98::/48 dev ${LAB.dev}
`},
				{Firewall, "20.v6", `
ip6tables -A INPUT -i ${:lan.dev} -s ${:lan.net6} -p tcp --dport 2222 -j ACCEPT
ip6tables -N AUDIT6
ip6tables -A AUDIT6 -j LOG --log-prefix "audit6: "
ip6tables -A FORWARD -d ${LAB.net6} -j AUDIT6
ip6tables -t nat -A POSTROUTING -s ${LAB.net6} -o ${DSL.dev} -j MASQUERADE
/usr/sbin/ip6tables-nft -A INPUT -p tcp --dport 2222 -j ACCEPT
iptables -A INPUT -p tcp --dport 2222 -j ACCEPT
ip6tables -A INPUT -d ${DSL.ip6} -j ACCEPT
ip6tables -A INPUT -s ${CABLE.prefix6} -j ACCEPT
forward 443 2001:db8:100:1::20
forward 8443 [2001:db8:100:1::21]:443 tcp udp
forward-with-snat 8080 [fd00:20::30]:80
`},
			},
		},
		{
			// ipv6=off: no service has IPv6, and the notes say why.
			name:  "ipv6-off",
			facts: Facts{Services: testFacts().Services, MarkMask: testFacts().MarkMask, IPv6Off: true},
			files: []ruleFile{
				{Firewall, "10.v6", `
ip6tables -A INPUT -s ${:lan.net6} -j ACCEPT
ip6tables -A INPUT -p tcp --dport 2222 -j ACCEPT
forward 80 [fd00:20::30]
`},
			},
		},
		{
			// CABLE's IPv6 judged down while its IPv4 works.
			name:  "ipv6-down",
			facts: setService(dualFacts(), "CABLE", func(s *Service) { s.Up6 = false }),
			files: []ruleFile{
				{Firewall, "10.v6", `
ip6tables -A INPUT -d ${CABLE.ip6} -p tcp --dport 2222 -j ACCEPT
iptables -A INPUT -d ${CABLE.ip} -p tcp --dport 2222 -j ACCEPT
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

// TestIPv6LineErrors: a value of the wrong family can never work, so it
// is refused with the line even while its service is down; so are
// fields a role lacks and IPv6 hosts forward cannot use.
func TestIPv6LineErrors(t *testing.T) {
	for _, c := range []struct{ line, want string }{
		{"iptables -A INPUT -s ${LAN.net6} -j ACCEPT", "${LAN.net6} is an IPv6 value in an iptables line; IPv6 rules are ip6tables lines"},
		{"ip6tables -A INPUT -s ${:lan.net} -j ACCEPT", "${:lan.net} is an IPv4 value in an ip6tables line; use ${:lan.net6}"},
		{"ip -6 route add 2001:db8::/32 via ${CABLE.gw} dev eth0", "${CABLE.gw} is an IPv4 value in an ip -6 line; use ${CABLE.gw6}"},
		{"ip -4 rule add from ${LAN.net6} lookup 5", "${LAN.net6} is an IPv6 value in an ip -4 line; use ${LAN.net}"},
		{"ip route add ${CABLE.prefix6} via ${CABLE.gw} dev eth0", "the line mixes an IPv4 value (${CABLE.gw}) and an IPv6 one (${CABLE.prefix6})"},
		{"ip6tables -P INPUT DROP", "chain policies belong to ispbalance"},
		{"ip6tables -A ISPB-INPUT -j ACCEPT", "belongs to ispbalance"},
		{"forward 80 ::1", "not a unicast address"},
		{"forward 80 ff02::1", "not a unicast address"},
		{"forward 80 fe80::1%eth0", "needs no zone"},
		{"forward 80 ::ffff:192.0.2.1", "is not an IPv6 address"},
		{"forward 80 [2001:db8::1]80", "write [ADDRESS]:PORT"},
	} {
		_, err := ParseFile("firewall/f", Firewall, []byte("# first\n"+c.line+"\n"))
		if err == nil || !strings.Contains(err.Error(), "firewall/f:2: ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want firewall/f:2: ...%s", c.line, err, c.want)
		}
	}
	for _, c := range []struct{ line, want string }{
		{"ip6tables -A INPUT -s ${LAN.prefix6} -j ACCEPT", "${LAN.prefix6}: LAN is a lan service and has no prefix6"},
		{"ip6tables -A INPUT -s ${:lan.gw6} -j ACCEPT", "${:lan.gw6}: lan services have no gw6"},
		{"ip6tables -A INPUT -s ${WIFI.ip6} -j ACCEPT", `unknown service "WIFI"`},
	} {
		files := parseAll(t, []ruleFile{{Firewall, "f", "# first\n" + c.line + "\n"}})
		if _, err := Expand(files, dualFacts()); err == nil || !strings.Contains(err.Error(), "firewall/f:2: ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want firewall/f:2: ...%s", c.line, err, c.want)
		}
	}
}

func TestFieldValueIPv6(t *testing.T) {
	var cable, dsl Service
	for _, s := range dualFacts().Services {
		switch s.Name {
		case "CABLE":
			cable = s
		case "DSL":
			dsl = s
		}
	}
	for field, want := range map[string]string{"ip6": "2001:db8:1::2", "gw6": "fe80::1", "net6": "2001:db8:1::/64", "prefix6": "2001:db8:100::/56"} {
		if got, ok := fieldValue(cable, field, 0); got != want || !ok {
			t.Errorf("CABLE %s = %q, %v; want %s", field, got, ok, want)
		}
		if _, ok := fieldValue(dsl, field, 0); ok {
			t.Errorf("DSL without IPv6 has a %s", field)
		}
	}
}

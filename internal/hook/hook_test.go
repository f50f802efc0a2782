package hook

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// parseCases are real hook calls and what Parse makes of them; FuzzParse
// starts from them too.
var parseCases = []struct {
	name string
	src  Source
	args []string
	env  map[string]string
	want Event
}{
	{"ifupdown post-up", Ifupdown, nil,
		map[string]string{"IFACE": "eth0", "LOGICAL": "eth0", "ADDRFAM": "inet", "METHOD": "dhcp", "MODE": "start", "PHASE": "post-up", "VERBOSITY": "0"},
		Event{Source: Ifupdown, Device: "eth0", Action: Up, What: "post-up"}},
	{"ifupdown post-down", Ifupdown, nil,
		map[string]string{"IFACE": "eth0.10", "ADDRFAM": "inet", "METHOD": "static", "MODE": "stop", "PHASE": "post-down"},
		Event{Source: Ifupdown, Device: "eth0.10", Action: Down, What: "post-down"}},
	{"ifupdown2 up phase", Ifupdown, nil,
		map[string]string{"IFACE": "wan1", "ADDRFAM": "inet", "MODE": "start", "PHASE": "up"},
		Event{Source: Ifupdown, Device: "wan1", Action: Up, What: "up"}},
	{"NetworkManager's replay", Ifupdown, nil,
		map[string]string{"IFACE": "wan1", "LOGICAL": "wan1", "METHOD": "NetworkManager", "ADDRFAM": "inet", "MODE": "start", "PHASE": "post-up"},
		Event{Source: Ifupdown, Device: "wan1", Action: Up, What: "post-up"}},
	{"ifupdown pre-up ignored", Ifupdown, nil,
		map[string]string{"IFACE": "eth0", "ADDRFAM": "inet", "MODE": "start", "PHASE": "pre-up"},
		Event{Source: Ifupdown, What: "pre-up"}},
	{"ifupdown --all ignored", Ifupdown, nil,
		map[string]string{"IFACE": "--all", "LOGICAL": "auto", "ADDRFAM": "meta", "METHOD": "none", "MODE": "start", "PHASE": "post-up"},
		Event{Source: Ifupdown}},
	{"ifupdown inet6 ignored", Ifupdown, nil,
		map[string]string{"IFACE": "eth0", "ADDRFAM": "inet6", "MODE": "start", "PHASE": "post-up"},
		Event{Source: Ifupdown, What: "post-up"}},
	{"dhclient BOUND", Dhclient, nil,
		map[string]string{"reason": "BOUND", "interface": "wan1", "new_ip_address": "100.64.1.2", "new_routers": "100.64.1.1 100.64.1.3", "new_dhcp_lease_time": "60", "new_subnet_mask": "255.255.255.0"},
		Event{Source: Dhclient, Device: "wan1", Action: Up, Gateway: netip.MustParseAddr("100.64.1.1"), Addr: netip.MustParseAddr("100.64.1.2"), Lease: time.Minute, What: "BOUND"}},
	{"dhclient RENEW with a new router", Dhclient, nil,
		map[string]string{"reason": "RENEW", "interface": "wan1", "new_ip_address": "100.64.1.2", "new_routers": "100.64.1.254", "old_routers": "100.64.1.1", "old_ip_address": "100.64.1.2"},
		Event{Source: Dhclient, Device: "wan1", Action: Change, Gateway: netip.MustParseAddr("100.64.1.254"), Addr: netip.MustParseAddr("100.64.1.2"), What: "RENEW"}},
	{"dhclient EXPIRE", Dhclient, nil,
		map[string]string{"reason": "EXPIRE", "interface": "wan1", "old_ip_address": "100.64.1.2", "old_routers": "100.64.1.1"},
		Event{Source: Dhclient, Device: "wan1", Action: Down, What: "EXPIRE"}},
	{"dhclient TIMEOUT applied", Dhclient, nil,
		map[string]string{"reason": "TIMEOUT", "exit_status": "0", "interface": "wan1", "new_ip_address": "100.64.1.2", "new_routers": "100.64.1.1"},
		Event{Source: Dhclient, Device: "wan1", Action: Up, Gateway: netip.MustParseAddr("100.64.1.1"), Addr: netip.MustParseAddr("100.64.1.2"), What: "TIMEOUT"}},
	{"dhclient TIMEOUT failed", Dhclient, nil,
		map[string]string{"reason": "TIMEOUT", "exit_status": "2", "interface": "wan1"},
		Event{Source: Dhclient, What: "TIMEOUT"}},
	{"dhclient PREINIT ignored", Dhclient, nil,
		map[string]string{"reason": "PREINIT", "interface": "wan1"},
		Event{Source: Dhclient, What: "PREINIT"}},
	{"dhclient BOUND6 without a prefix", Dhclient, nil,
		map[string]string{"reason": "BOUND6", "interface": "wan1", "new_ip6_address": "2001:db8::2"},
		Event{Source: Dhclient, Device: "wan1", Action: Change, IPv6: true, What: "BOUND6"}},
	{"dhclient RENEW6 with a delegated prefix", Dhclient, nil,
		map[string]string{"reason": "RENEW6", "interface": "wan1", "new_ip6_prefix": "2001:db8:100::/56", "new_max_life": "7200"},
		Event{Source: Dhclient, Device: "wan1", Action: Change, IPv6: true, What: "RENEW6",
			Delegated: netip.MustParsePrefix("2001:db8:100::/56"), DelegatedLife: 2 * time.Hour}},
	{"dhclient EXPIRE6 ends the delegation", Dhclient, nil,
		map[string]string{"reason": "EXPIRE6", "interface": "wan1", "old_ip6_prefix": "2001:db8:100::/56"},
		Event{Source: Dhclient, Device: "wan1", Action: Change, IPv6: true, What: "EXPIRE6"}},
	{"dhcpcd BOUND6 with a delegated prefix", Dhcpcd, nil,
		map[string]string{"reason": "BOUND6", "interface": "wan2", "new_dhcp6_ia_pd1_prefix1": "2001:db8:200::",
			"new_dhcp6_ia_pd1_prefix1_length": "60", "new_dhcp6_ia_pd1_prefix1_vltime": "600"},
		Event{Source: Dhcpcd, Device: "wan2", Action: Change, IPv6: true, What: "BOUND6",
			Delegated: netip.MustParsePrefix("2001:db8:200::/60"), DelegatedLife: 10 * time.Minute}},
	{"NetworkManager dhcp6-change", NetworkManager, []string{"wan1", "dhcp6-change"},
		map[string]string{"NM_DISPATCHER_ACTION": "dhcp6-change", "DEVICE_IFACE": "wan1", "DEVICE_IP_IFACE": "wan1"},
		Event{Source: NetworkManager, Device: "wan1", Action: Change, IPv6: true, What: "dhcp6-change"}},
	{"dhcpcd NOCARRIER", Dhcpcd, nil,
		map[string]string{"reason": "NOCARRIER", "interface": "wan2", "ifcarrier": "down"},
		Event{Source: Dhcpcd, Device: "wan2", Action: Down, What: "NOCARRIER"}},
	{"NetworkManager up", NetworkManager, []string{"wan1", "up"},
		map[string]string{"NM_DISPATCHER_ACTION": "up", "DEVICE_IFACE": "wan1", "DEVICE_IP_IFACE": "wan1", "CONNECTION_ID": "isp1; rm -rf /",
			"IP4_GATEWAY": "100.64.1.1", "IP4_ADDRESS_0": "100.64.1.2/24 100.64.1.1", "IP4_NUM_ADDRESSES": "1", "DHCP4_DHCP_LEASE_TIME": "60"},
		Event{Source: NetworkManager, Device: "wan1", Action: Up, Gateway: netip.MustParseAddr("100.64.1.1"), Addr: netip.MustParseAddr("100.64.1.2"), Lease: time.Minute, What: "up", Connection: "isp1; rm -rf /"}},
	{"NetworkManager dhcp4-change during activation", NetworkManager, []string{"wan1", "dhcp4-change"},
		map[string]string{"NM_DISPATCHER_ACTION": "dhcp4-change", "DEVICE_IFACE": "wan1", "DEVICE_IP_IFACE": "wan1", "CONNECTION_ID": "isp1"},
		Event{Source: NetworkManager, Device: "wan1", Action: Change, What: "dhcp4-change", Connection: "isp1"}},
	{"NetworkManager dhcp4-change with DHCP4 variables", NetworkManager, []string{"wan1", "dhcp4-change"},
		map[string]string{"IP4_GATEWAY": "0.0.0.0", "DHCP4_ROUTERS": "100.64.1.9", "DHCP4_IP_ADDRESS": "100.64.1.2"},
		Event{Source: NetworkManager, Device: "wan1", Action: Change, Gateway: netip.MustParseAddr("100.64.1.9"), Addr: netip.MustParseAddr("100.64.1.2"), What: "dhcp4-change"}},
	// IP4_GATEWAY that cannot be a next hop is no gateway (the router
	// list still gives one), and 0.0.0.0 in IP4_ADDRESS_0 no address.
	{"NetworkManager unusable gateway and address", NetworkManager, []string{"wan1", "up"},
		map[string]string{"IP4_GATEWAY": "127.0.0.1", "DHCP4_ROUTERS": "100.64.1.1", "IP4_ADDRESS_0": "0.0.0.0/0", "DHCP4_IP_ADDRESS": "100.64.1.2"},
		Event{Source: NetworkManager, Device: "wan1", Action: Up, Gateway: netip.MustParseAddr("100.64.1.1"), Addr: netip.MustParseAddr("100.64.1.2"), What: "up"}},
	{"NetworkManager multicast gateway only", NetworkManager, []string{"wan1", "up"},
		map[string]string{"IP4_GATEWAY": "224.0.0.1"},
		Event{Source: NetworkManager, Device: "wan1", Action: Up, What: "up"}},
	{"NetworkManager PPPoE", NetworkManager, []string{"ppp0", "down"},
		map[string]string{"DEVICE_IFACE": "eth0", "DEVICE_IP_IFACE": "ppp0"},
		Event{Source: NetworkManager, Device: "ppp0", Action: Down, What: "down"}},
	{"NetworkManager connectivity-change", NetworkManager, []string{"", "connectivity-change"},
		map[string]string{"CONNECTIVITY_STATE": "FULL"},
		Event{Source: NetworkManager, Action: Change, What: "connectivity-change"}},
	{"NetworkManager hostname ignored", NetworkManager, []string{"none", "hostname"}, nil,
		Event{Source: NetworkManager, What: "hostname"}},
	{"NetworkManager future action ignored", NetworkManager, []string{"wan1", "some-new-action"}, nil,
		Event{Source: NetworkManager, What: "some-new-action"}},
	{"networkd routable", Networkd, nil,
		map[string]string{"IFACE": "wan1", "STATE": "routable", "ADDR": "100.64.1.2", "IP_ADDRS": "100.64.1.2"},
		Event{Source: Networkd, Device: "wan1", Action: Up, Addr: netip.MustParseAddr("100.64.1.2"), What: "routable"}},
	{"networkd IPv6 first address", Networkd, nil,
		map[string]string{"IFACE": "wan1", "STATE": "degraded", "ADDR": "fe80::1"},
		Event{Source: Networkd, Device: "wan1", Action: Change, What: "degraded"}},
	{"networkd off", Networkd, nil,
		map[string]string{"IFACE": "wan1", "STATE": "off"},
		Event{Source: Networkd, Device: "wan1", Action: Down, What: "off"}},
	{"networkd configuring ignored", Networkd, nil,
		map[string]string{"IFACE": "wan1", "STATE": "configuring"},
		Event{Source: Networkd, What: "configuring"}},
	{"ifup-local", IfupLocal, []string{"eth1"}, nil,
		Event{Source: IfupLocal, Device: "eth1", Action: Up, What: "ifup-local"}},
	{"ifup-local alias", IfupLocal, []string{"eth1:0"}, nil,
		Event{Source: IfupLocal, Device: "eth1", Action: Up, What: "ifup-local"}},
	{"ifdown-local", IfdownLocal, []string{"eth1"}, nil,
		Event{Source: IfdownLocal, Device: "eth1", Action: Down, What: "ifdown-local"}},
}

func TestParse(t *testing.T) {
	for _, tt := range parseCases {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.src, tt.args, env(tt.env))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got != tt.want {
				t.Errorf("Parse:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// huge is far longer than any value a hook is given.
var huge = strings.Repeat("A", 1<<20)

// refusedCases are hook calls with a value Parse must refuse, and the
// variable the refusal must name.
var refusedCases = []struct {
	name    string
	src     Source
	args    []string
	env     map[string]string
	wantVar string
}{
	{"shell in a router", Dhclient, nil,
		map[string]string{"reason": "RENEW", "interface": "wan1", "new_routers": "1.2.3.4;touch /tmp/x"}, "new_routers"},
	{"shell in a router list", Dhclient, nil,
		map[string]string{"reason": "BOUND", "interface": "wan1", "new_routers": "100.64.1.1 $(reboot)"}, "new_routers"},
	{"shell in the old routers", Dhclient, nil,
		map[string]string{"reason": "EXPIRE", "interface": "wan1", "old_routers": "`reboot`"}, "old_routers"},
	{"path as interface", Dhclient, nil,
		map[string]string{"reason": "BOUND", "interface": "../../etc"}, "interface"},
	{"huge router", Dhclient, nil,
		map[string]string{"reason": "RENEW", "interface": "wan1", "new_routers": huge}, "new_routers"},
	{"huge reason", Dhclient, nil,
		map[string]string{"reason": huge, "interface": "wan1"}, "reason"},
	{"IPv6 as address", Dhclient, nil,
		map[string]string{"reason": "BOUND", "interface": "wan1", "new_ip_address": "::1"}, "new_ip_address"},
	{"lease time not a number", Dhclient, nil,
		map[string]string{"reason": "BOUND", "interface": "wan1", "new_dhcp_lease_time": "60;id"}, "new_dhcp_lease_time"},
	{"missing interface", Dhcpcd, nil, map[string]string{"reason": "BOUND"}, "interface"},
	{"interface too long", Ifupdown, nil,
		map[string]string{"IFACE": "averyveryverylongname", "MODE": "start", "PHASE": "post-up", "ADDRFAM": "inet"}, "IFACE"},
	{"interface with a space", Ifupdown, nil,
		map[string]string{"IFACE": "eth0 eth1", "MODE": "start", "PHASE": "post-up", "ADDRFAM": "inet"}, "IFACE"},
	{"interface dot-dot", Ifupdown, nil,
		map[string]string{"IFACE": "..", "MODE": "stop", "PHASE": "post-down", "ADDRFAM": "inet"}, "IFACE"},
	{"interface with a newline", Networkd, nil,
		map[string]string{"IFACE": "eth0\nx", "STATE": "routable"}, "IFACE"},
	{"huge IFACE", Ifupdown, nil, map[string]string{"IFACE": huge, "MODE": "start", "PHASE": "post-up"}, "IFACE"},
	{"dhclient hostile prefix", Dhclient, nil,
		map[string]string{"reason": "BOUND6", "interface": "wan1", "new_ip6_prefix": "2001:db8::/56; reboot"}, "new_ip6_prefix"},
	{"dhclient link-local prefix", Dhclient, nil,
		map[string]string{"reason": "REBIND6", "interface": "wan1", "new_ip6_prefix": "fe80::/64"}, "new_ip6_prefix"},
	{"dhcpcd hostile prefix length", Dhcpcd, nil,
		map[string]string{"reason": "BOUND6", "interface": "wan1", "new_dhcp6_ia_pd1_prefix1": "2001:db8::", "new_dhcp6_ia_pd1_prefix1_length": "56 x"}, "new_dhcp6_ia_pd1_prefix1_length"},
	{"dhclient hostile max life", Dhclient, nil,
		map[string]string{"reason": "BOUND6", "interface": "wan1", "new_ip6_prefix": "2001:db8::/56", "new_max_life": "-1"}, "new_max_life"},
	{"dhclient IPv6 hostile interface", Dhclient, nil,
		map[string]string{"reason": "BOUND6", "interface": "wan1/../x"}, "interface"},
	{"NM hostile gateway", NetworkManager, []string{"wan1", "up"},
		map[string]string{"IP4_GATEWAY": "1.2.3.4;touch /tmp/x"}, "IP4_GATEWAY"},
	{"NM hostile interface", NetworkManager, []string{"../../etc", "dhcp4-change"}, nil, "argument 1 (interface)"},
	{"NM huge interface", NetworkManager, []string{huge, "up"}, nil, "argument 1"},
	{"NM hostile DEVICE_IFACE", NetworkManager, []string{"wan1", "down"},
		map[string]string{"DEVICE_IFACE": "a/b"}, "DEVICE_IFACE"},
	{"NM huge connection name", NetworkManager, []string{"wan1", "up"},
		map[string]string{"CONNECTION_ID": huge}, "CONNECTION_ID"},
	{"NM address without prefix", NetworkManager, []string{"wan1", "up"},
		map[string]string{"IP4_ADDRESS_0": "100.64.1.2 100.64.1.1"}, "IP4_ADDRESS_0"},
	{"NM hostile DHCP4_ROUTERS", NetworkManager, []string{"wan1", "dhcp4-change"},
		map[string]string{"DHCP4_ROUTERS": "100.64.1.1|nc"}, "DHCP4_ROUTERS"},
	{"networkd hostile ADDR", Networkd, nil,
		map[string]string{"IFACE": "wan1", "STATE": "routable", "ADDR": "1.2.3.4;id"}, "ADDR"},
	{"ifup-local path", IfupLocal, []string{"../../etc"}, nil, "argument 1 (device)"},
	{"ifup-local hostile label", IfdownLocal, []string{"eth0:a b"}, nil, "argument 1 (alias label)"},
}

func TestRefused(t *testing.T) {
	for _, tt := range refusedCases {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := Parse(tt.src, tt.args, env(tt.env))
			var ve *ValueError
			if !errors.As(err, &ve) {
				t.Fatalf("Parse = %+v, %v; want a refusal naming %s", ev, err, tt.wantVar)
			}
			if !strings.HasPrefix(ve.Var, tt.wantVar) {
				t.Errorf("refusal names %q, want %q (%v)", ve.Var, tt.wantVar, err)
			}
			if len(err.Error()) > 300 {
				t.Errorf("refusal message is %d bytes long; an absurd value must not be repeated in full", len(err.Error()))
			}
		})
	}
}

func TestArguments(t *testing.T) {
	for _, tt := range []struct {
		src  Source
		args []string
	}{
		{Ifupdown, []string{"eth0"}},
		{Dhclient, []string{"x"}},
		{NetworkManager, []string{"wan1"}},
		{NetworkManager, []string{"wan1", "up", "extra"}},
		{IfupLocal, nil},
		{IfdownLocal, []string{"a", "b"}},
		{"pppd", nil},
	} {
		if ev, err := Parse(tt.src, tt.args, env(nil)); err == nil {
			t.Errorf("Parse(%s, %q) = %+v, want an error", tt.src, tt.args, ev)
		}
	}
}

func TestCheckDevice(t *testing.T) {
	for _, ok := range []string{"eth0", "wan1", "eth0.10", "enp0s31f6", "br-lan", "wlan_0", "-x", "123456789012345"} {
		if err := CheckDevice("IFACE", ok); err != nil {
			t.Errorf("CheckDevice(%q): %v", ok, err)
		}
	}
	// "à" is C3 A0 in UTF-8, and the kernel's isspace counts 0xa0.
	for _, bad := range []string{"", ".", "..", "a/b", "eth0:1", "1234567890123456", "a\tb", "a\x00b", "\xff", "wan\u00e0", "\u00a0"} {
		if err := CheckDevice("IFACE", bad); err == nil {
			t.Errorf("CheckDevice(%q) accepted it", bad)
		}
	}
}

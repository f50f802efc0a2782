package hook

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// parseIfupdown reads the environment ifupdown (and ifupdown2, ifupdown-ng,
// and NetworkManager's 01-ifupdown replay) gives to if-up.d and
// if-post-down.d scripts.
func parseIfupdown(v vars, args []string) (Event, error) {
	ev := Event{Source: Ifupdown}
	if err := noArgs(Ifupdown, args); err != nil {
		return ev, err
	}
	iface, err := v.get("IFACE")
	if err != nil {
		return ev, err
	}
	// `ifup -a` calls every hook once more with IFACE=--all before and
	// after the interfaces themselves.
	if iface == "--all" {
		return ev, nil
	}
	mode, err := word(v, "MODE")
	if err != nil {
		return ev, err
	}
	phase, err := word(v, "PHASE")
	if err != nil {
		return ev, err
	}
	fam, err := word(v, "ADDRFAM")
	if err != nil {
		return ev, err
	}
	ev.What = phase
	switch {
	case fam == "inet6" || fam == "meta":
		return ev, nil // ispbalance balances IPv4
	case mode == "start" && (phase == "post-up" || phase == "up"):
		ev.Action = Up
	case mode == "stop" && (phase == "post-down" || phase == "down"):
		ev.Action = Down
	default:
		return ev, nil
	}
	if err := CheckDevice("IFACE", iface); err != nil {
		return Event{}, err
	}
	ev.Device = iface
	return ev, nil
}

// dhclientReasons maps dhclient-script's and dhcpcd-run-hooks' reasons. The
// IPv6 reasons and the ones before a lease exists are left out.
var dhcpReasons = map[string]Action{
	// dhclient and dhcpcd
	"BOUND": Up, "REBOOT": Up, "RENEW": Change, "REBIND": Change,
	"EXPIRE": Down, "FAIL": Down, "RELEASE": Down, "STOP": Down,
	// dhcpcd only
	"INFORM": Up, "STATIC": Up, "CARRIER": Up, "NOCARRIER": Down, "NAK": Down,
	"STOPPED": Down, "DEPARTED": Down,
}

// dhcp6Reasons are the IPv6 reasons of dhclient-script and
// dhcpcd-run-hooks: true for those that bring a lease, false for those
// that end one. Either way the IPv4 facts stay as they are.
var dhcp6Reasons = map[string]bool{
	"BOUND6": true, "REBOOT6": true, "RENEW6": true, "REBIND6": true, "DEPREF6": true, "INFORM6": true,
	"EXPIRE6": false, "RELEASE6": false, "STOP6": false,
}

// parseDHCP reads the variables dhclient-script exports to its exit hooks
// (and dhcpcd to its hooks: the same names).
func parseDHCP(src Source, v vars, args []string) (Event, error) {
	ev := Event{Source: src}
	if err := noArgs(src, args); err != nil {
		return ev, err
	}
	reason, err := word(v, "reason")
	if err != nil {
		return ev, err
	}
	ev.What = reason
	if lease, ok := dhcp6Reasons[reason]; ok {
		return parseDHCP6(ev, v, lease)
	}
	act, ok := dhcpReasons[reason]
	if reason == "TIMEOUT" && src == Dhclient {
		// dhclient found no server but an old lease still answers: it
		// applied that lease, unless exit_status says it failed.
		status, err := word(v, "exit_status")
		if err != nil {
			return ev, err
		}
		act, ok = Up, status == "" || status == "0"
	}
	if !ok {
		return ev, nil
	}
	if ev.Device, err = device(v, "interface"); err != nil {
		return Event{}, err
	}
	ev.Action = act
	if act == Down {
		// The old lease only says what went away; still, a hostile one
		// is refused like any other value.
		if _, err := addrVar(v, "old_ip_address"); err != nil {
			return Event{}, err
		}
		if _, err := routers(v, "old_routers"); err != nil {
			return Event{}, err
		}
		return ev, nil
	}
	if ev.Addr, err = addrVar(v, "new_ip_address"); err != nil {
		return Event{}, err
	}
	if ev.Gateway, err = routers(v, "new_routers"); err != nil {
		return Event{}, err
	}
	if _, err := routers(v, "old_routers"); err != nil {
		return Event{}, err
	}
	if ev.Lease, err = seconds(v, "new_dhcp_lease_time"); err != nil {
		return Event{}, err
	}
	return ev, nil
}

// parseDHCP6 reads a DHCPv6 event: ispbalance cares about the prefix it
// delegates. dhclient -P names it new_ip6_prefix (with new_max_life);
// dhcpcd new_dhcp6_ia_pd1_prefix1 and _length (with _vltime).
func parseDHCP6(ev Event, v vars, lease bool) (Event, error) {
	var err error
	if ev.Device, err = device(v, "interface"); err != nil {
		return Event{}, err
	}
	ev.Action, ev.IPv6 = Change, true
	if !lease {
		return ev, nil
	}
	if ev.Delegated, err = prefix6(v, "new_ip6_prefix", ""); err != nil {
		return Event{}, err
	}
	if ev.Delegated.IsValid() {
		ev.DelegatedLife, err = seconds(v, "new_max_life")
		return ev, err
	}
	if ev.Delegated, err = prefix6(v, "new_dhcp6_ia_pd1_prefix1", "new_dhcp6_ia_pd1_prefix1_length"); err != nil {
		return Event{}, err
	}
	if ev.Delegated.IsValid() {
		ev.DelegatedLife, err = seconds(v, "new_dhcp6_ia_pd1_prefix1_vltime")
	}
	return ev, err
}

// prefix6 reads a delegated prefix, written as one PREFIX/LEN variable
// or, when lenName is set, as an address and a length apart. Unset is
// none; anything that is not a global IPv6 prefix is refused.
func prefix6(v vars, name, lenName string) (netip.Prefix, error) {
	s, err := v.get(name)
	if err != nil || s == "" {
		return netip.Prefix{}, err
	}
	shown := s
	if lenName != "" {
		l, err := v.get(lenName)
		if err != nil {
			return netip.Prefix{}, err
		}
		if _, err := strconv.ParseUint(l, 10, 8); err != nil {
			return netip.Prefix{}, refuse(lenName, l, "is not a prefix length")
		}
		s, shown = s+"/"+l, s+" with length "+l
	}
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is6() || p.Addr().Is4In6() || p.Addr().Zone() != "" || p != p.Masked() ||
		!p.Addr().IsGlobalUnicast() || p.Bits() < 16 || p.Bits() > 64 {
		return netip.Prefix{}, refuse(name, shown, "is not a delegated IPv6 prefix")
	}
	return p, nil
}

// nmActions maps NetworkManager dispatcher actions. pre-up and pre-down
// only reach scripts in their own subdirectories; hostname, dns-change
// and the device-handler actions change nothing here, and future actions
// are ignored too. dhcp6-change may bring a new delegated prefix.
var nmActions = map[string]Action{
	"up": Up, "vpn-up": Up, "dhcp4-change": Change, "reapply": Change,
	"connectivity-change": Change, "down": Down, "vpn-down": Down,
	"dhcp6-change": Change,
}

// parseNM reads a dispatcher call: argv is interface and action, the
// environment is the one NetworkManager builds from scratch.
func parseNM(v vars, args []string) (Event, error) {
	ev := Event{Source: NetworkManager}
	if len(args) != 2 {
		return ev, fmt.Errorf("the NetworkManager dispatcher passes an interface and an action, got %d arguments", len(args))
	}
	for i, a := range args {
		if len(a) > MaxValue {
			return ev, &ValueError{Var: fmt.Sprintf("argument %d", i+1), Reason: fmt.Sprintf("a value of %d bytes is longer than any real one (%d)", len(a), MaxValue)}
		}
	}
	iface, action := args[0], args[1]
	ev.What = action
	act, ok := nmActions[action]
	if !ok {
		return ev, nil
	}
	var err error
	if ev.Connection, err = v.get("CONNECTION_ID"); err != nil {
		return Event{}, err
	}
	ev.Action = act
	if action == "connectivity-change" {
		return ev, nil // global: NetworkManager passes no interface
	}
	if err := CheckDevice("argument 1 (interface)", iface); err != nil {
		return Event{}, err
	}
	ev.Device = iface
	// The interface variables are not used (argv names the IP interface:
	// ppp0 for PPPoE over eth0), but a hostile one is refused all the same.
	for _, name := range []string{"DEVICE_IFACE", "DEVICE_IP_IFACE", "VPN_IP_IFACE"} {
		s, err := v.get(name)
		if err != nil {
			return Event{}, err
		}
		if s != "" {
			if err := CheckDevice(name, s); err != nil {
				return Event{}, err
			}
		}
	}
	if act == Down {
		return ev, nil
	}
	if action == "dhcp6-change" {
		// NetworkManager keeps its DHCPv6 facts to itself; discovery
		// reads what reached the kernel.
		ev.IPv6 = true
		return ev, nil
	}
	// The IP4_ and DHCP4_ variables exist only once the device is
	// activated; a dhcp4-change during activation has none of them, and
	// the caller asks NetworkManager over D-Bus instead.
	if ev.Gateway, err = addrVar(v, "IP4_GATEWAY"); err != nil {
		return Event{}, err
	}
	if !usableGateway(ev.Gateway) {
		// As in a router list, what cannot be a next hop is no gateway,
		// so that DHCP4_ROUTERS or D-Bus can still supply one.
		ev.Gateway = netip.Addr{}
	}
	if g, err := routers(v, "DHCP4_ROUTERS"); err != nil {
		return Event{}, err
	} else if !ev.Gateway.IsValid() {
		ev.Gateway = g
	}
	a0, err := v.get("IP4_ADDRESS_0")
	if err != nil {
		return Event{}, err
	}
	if a0 != "" {
		// "a.b.c.d/prefix gateway"; the gateway part is deprecated.
		first, rest, _ := strings.Cut(a0, " ")
		p, err := netip.ParsePrefix(first)
		if err != nil || !p.Addr().Is4() {
			return Event{}, refuse("IP4_ADDRESS_0", a0, "is not an IPv4 address with a prefix")
		}
		if _, err := addr4("IP4_ADDRESS_0", strings.TrimSpace(rest)); err != nil {
			return Event{}, err
		}
		if !p.Addr().IsUnspecified() {
			ev.Addr = p.Addr() // 0.0.0.0 means none, as everywhere else
		}
	}
	if a, err := addrVar(v, "DHCP4_IP_ADDRESS"); err != nil {
		return Event{}, err
	} else if !ev.Addr.IsValid() {
		ev.Addr = a
	}
	if ev.Lease, err = seconds(v, "DHCP4_DHCP_LEASE_TIME"); err != nil {
		return Event{}, err
	}
	return ev, nil
}

// networkdStates maps the states networkd-dispatcher runs scripts for.
var networkdStates = map[string]Action{
	"routable": Up, "configured": Up, "degraded": Change,
	"carrier": Change, "no-carrier": Down, "off": Down, "dormant": Down,
}

// parseNetworkd reads networkd-dispatcher's environment: IFACE and the
// STATE being entered; scripts get no arguments.
func parseNetworkd(v vars, args []string) (Event, error) {
	ev := Event{Source: Networkd}
	if err := noArgs(Networkd, args); err != nil {
		return ev, err
	}
	st, err := word(v, "STATE")
	if err != nil {
		return ev, err
	}
	ev.What = st
	act, ok := networkdStates[st]
	if !ok {
		return ev, nil
	}
	if ev.Device, err = device(v, "IFACE"); err != nil {
		return Event{}, err
	}
	if ev.Addr, err = addrVar(v, "ADDR"); err != nil {
		// ADDR is the first address, which may well be IPv6.
		if s := v.getenv("ADDR"); len(s) <= MaxValue {
			if a, perr := netip.ParseAddr(s); perr == nil && a.Is6() {
				ev.Addr, err = netip.Addr{}, nil
			}
		}
		if err != nil {
			return Event{}, err
		}
	}
	ev.Action = act
	return ev, nil
}

// parseLocal reads Red Hat's /sbin/ifup-local and /sbin/ifdown-local
// call: one argument, the device (an alias as "eth0:1", called from
// ifup-aliases, counts for its device).
func parseLocal(src Source, args []string) (Event, error) {
	ev := Event{Source: src, What: string(src)}
	if len(args) != 1 {
		return ev, fmt.Errorf("%s takes one argument, the device, got %d", src, len(args))
	}
	dev, label, _ := strings.Cut(args[0], ":")
	if err := CheckDevice("argument 1 (device)", dev); err != nil {
		return Event{}, err
	}
	if label != "" {
		if err := CheckDevice("argument 1 (alias label)", label); err != nil {
			return Event{}, err
		}
	}
	ev.Device = dev
	ev.Action = Up
	if src == IfdownLocal {
		ev.Action = Down
	}
	return ev, nil
}

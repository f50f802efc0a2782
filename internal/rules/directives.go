package rules

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// The directives: the original's $B methods as rule-file lines.
const (
	dirForward      = "forward"
	dirForwardSNAT  = "forward-with-snat"
	dirForceRoute   = "force-route"
	dirAddRoute     = "add-route"
	dirFirewallRule = "firewall-rule"
)

// ForceRoute sends NEW connections matching Selectors (iptables match
// arguments for mangle PREROUTING) through the ISP Service. The planner
// emits the marking; ForceRoute is only returned while the ISP is up.
type ForceRoute struct {
	Pos       Pos
	Service   string
	Selectors []string
}

// forwardSpec is a parsed forward or forward-with-snat line; host is
// IPv4 or IPv6.
type forwardSpec struct {
	port   int
	host   netip.Addr
	dport  int  // the port on host; equal to port unless given
	toPort bool // whether HOST:PORT named the port
	protos []string
}

func parseForward(name string, args []string) (forwardSpec, error) {
	if len(args) < 2 {
		return forwardSpec{}, fmt.Errorf("usage: %s PORT HOST[:PORT] [tcp|udp]...", name)
	}
	port, err := parsePort(args[0])
	if err != nil {
		return forwardSpec{}, fmt.Errorf("%s: %w", name, err)
	}
	f := forwardSpec{port: port, dport: port}
	hostText, portText, hasPort := strings.Cut(args[1], ":")
	if strings.HasPrefix(args[1], "[") || strings.Count(args[1], ":") > 1 {
		if f.host, portText, hasPort, err = parseHost6(args[1]); err != nil {
			return forwardSpec{}, fmt.Errorf("%s: %w", name, err)
		}
	} else if f.host, err = netip.ParseAddr(hostText); err != nil || !f.host.Is4() {
		return forwardSpec{}, fmt.Errorf("%s: host %q is not an IPv4 address", name, hostText)
	}
	if hasPort {
		if f.dport, err = parsePort(portText); err != nil {
			return forwardSpec{}, fmt.Errorf("%s: %w", name, err)
		}
		f.toPort = true
	}
	for _, p := range args[2:] {
		if p != "tcp" && p != "udp" {
			return forwardSpec{}, fmt.Errorf("%s: protocol %q is not tcp or udp", name, p)
		}
		if !slices.Contains(f.protos, p) {
			f.protos = append(f.protos, p)
		}
	}
	if len(f.protos) == 0 {
		f.protos = []string{"tcp"}
	}
	return f, nil
}

// parseHost6 reads an IPv6 LAN host as forward takes it: ADDR, or
// [ADDR]:PORT as in URLs. The host must be one a LAN can hold and the
// Internet can be forwarded to: unicast, neither link-local (it has no
// meaning beyond its link) nor loopback.
func parseHost6(text string) (host netip.Addr, port string, hasPort bool, err error) {
	addr := text
	if inner, ok := strings.CutPrefix(text, "["); ok {
		var rest string
		addr, rest, ok = strings.Cut(inner, "]")
		switch {
		case !ok:
			return host, "", false, fmt.Errorf("host %q lacks the closing ]", text)
		case rest != "":
			port, hasPort = strings.CutPrefix(rest, ":")
			if !hasPort {
				return host, "", false, fmt.Errorf("host %q: write [ADDRESS]:PORT", text)
			}
		}
	}
	host, perr := netip.ParseAddr(addr)
	switch {
	case perr != nil || !host.Is6() || host.Is4In6():
		return host, "", false, fmt.Errorf("host %q is not an IPv6 address (an IPv6 host with a port is written [ADDRESS]:PORT)", addr)
	case host.Zone() != "":
		return host, "", false, fmt.Errorf("host %s: a LAN host needs no zone", addr)
	case !host.IsGlobalUnicast() || host.IsLinkLocalUnicast():
		return host, "", false, fmt.Errorf("host %s is not a unicast address a LAN host can be forwarded to (link-local, multicast, loopback and :: are not)", addr)
	}
	return host, port, hasPort, nil
}

func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	return n, nil
}

// forceRouteSpec is a parsed force-route line; the target is resolved
// against the facts later.
type forceRouteSpec struct {
	target    string
	selectors []string
}

func parseForceRoute(args []string) (forceRouteSpec, error) {
	if len(args) < 1 {
		return forceRouteSpec{}, errors.New("usage: force-route SERVICE|DEVICE [SELECTORS...]")
	}
	sel := args[1:]
	for _, a := range sel {
		if isOpFlag(a) || isJump(a) {
			return forceRouteSpec{}, fmt.Errorf("force-route: %s is not a selector; ispbalance supplies the table, chain and target", a)
		}
	}
	// Checking the selectors as a whole mangle rule catches what
	// iptables-restore would otherwise reject in the middle of a rebuild.
	if _, err := parseIPTables(append([]string{"-t", "mangle", "-A", "PREROUTING"}, sel...)); err != nil {
		return forceRouteSpec{}, fmt.Errorf("force-route: %w", err)
	}
	return forceRouteSpec{target: args[0], selectors: sel}, nil
}

// addRouteSpec is a parsed add-route line.
type addRouteSpec struct {
	net        netip.Prefix
	dev        string
	masquerade bool
}

func parseAddRoute(args []string) (addRouteSpec, error) {
	if len(args) < 2 || len(args) > 3 || len(args) == 3 && args[2] != "masquerade" {
		return addRouteSpec{}, errors.New("usage: add-route CIDR DEVICE [masquerade]")
	}
	var a addRouteSpec
	if p, err := netip.ParsePrefix(args[0]); err == nil {
		if p != p.Masked() {
			return addRouteSpec{}, fmt.Errorf("add-route: %s has host bits set; the network is %s", p, p.Masked())
		}
		a.net = p
	} else if ip, err := netip.ParseAddr(args[0]); err == nil {
		a.net = netip.PrefixFrom(ip, ip.BitLen())
	} else {
		return addRouteSpec{}, fmt.Errorf("add-route: %q is not a network in CIDR form", args[0])
	}
	if !a.net.Addr().Is4() {
		return addRouteSpec{}, fmt.Errorf("add-route: %s is not IPv4", a.net)
	}
	if err := checkDevice(args[1]); err != nil {
		return addRouteSpec{}, fmt.Errorf("add-route: %w", err)
	}
	a.dev = args[1]
	a.masquerade = len(args) == 3
	return a, nil
}

// checkDevice applies the kernel's rules for interface names (at most 15
// bytes, no slash or white space), so a typo fails here and not halfway
// through applying.
func checkDevice(dev string) error {
	if dev == "" || len(dev) > 15 || dev == "." || dev == ".." || strings.ContainsAny(dev, "/ \t\n\v\f\r") {
		return fmt.Errorf("%q is not a network device name", dev)
	}
	return nil
}

// parseFirewallRule turns `firewall-rule CHAIN TABLE|- ARGS...` into the
// iptables rule it stands for.
func parseFirewallRule(args []string) (IPTablesRule, error) {
	if len(args) < 2 {
		return IPTablesRule{}, errors.New("usage: firewall-rule CHAIN TABLE|- ARGS...")
	}
	chain, table := args[0], args[1]
	if table == "-" {
		table = "filter"
	}
	if strings.HasPrefix(chain, "-") {
		return IPTablesRule{}, fmt.Errorf("firewall-rule: %q is not a chain", chain)
	}
	for _, a := range args[2:] {
		if isOpFlag(a) {
			return IPTablesRule{}, fmt.Errorf("firewall-rule: %s is not allowed in ARGS; the chain and table come first and the rule is appended", a)
		}
	}
	ipt, err := parseIPTables(append([]string{"-t", table, "-A", chain}, args[2:]...))
	if err != nil {
		return IPTablesRule{}, fmt.Errorf("firewall-rule: %w", err)
	}
	return ipt.rule, nil
}

package detect

import (
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// IPv6 is what discovery found of one ISP device's IPv6. The zero value
// means the ISP offers none (or it is not configured yet): the router
// then balances IPv4 only through it.
type IPv6 struct {
	// Addr is the device's global address with its prefix length;
	// invalid on an uplink numbered link-local only.
	Addr netip.Prefix
	// Gateway is the IPv6 router, usually link-local (learned from router
	// advertisements), on the device.
	Gateway netip.Addr
	// GatewayFrom is FromConfig, FromRA (main's default route via the
	// device, installed by the kernel from a router advertisement) or
	// FromRoute (the same route installed by anything else).
	GatewayFrom string
	// Delegated is the prefix the ISP delegated to the router (DHCPv6-PD),
	// as a DHCP client recorded it; DelegatedFrom names that record.
	Delegated     netip.Prefix
	DelegatedFrom string
}

// FromRA says an IPv6 gateway came from a router advertisement.
const FromRA = "ra"

// routeProtocolRA is the kernel's RTPROT_RA: a route from a router
// advertisement.
const routeProtocolRA = 9

// describe6 finds the IPv6 facts of the link with the given index. The
// gateway is looked for even without a global address: many ISPs number
// the uplink with link-local addresses only and delegate a prefix.
func describe6(addrs []netlink.Addr, routes []netlink.Route, index int, pinned netip.Addr) IPv6 {
	var v6 IPv6
	v6.Addr = pickAddr6(addrs, index)
	if pinned.IsValid() {
		v6.Gateway, v6.GatewayFrom = pinned, FromConfig
		return v6
	}
	v6.Gateway, v6.GatewayFrom = routeGateway6(routes, index)
	return v6
}

// pickAddr6 chooses the global address an ISP's traffic should leave
// from: a stable one rather than a privacy address that expires, one that
// finished duplicate address detection, and a preferred one rather than
// one being retired after a renumbering.
func pickAddr6(addrs []netlink.Addr, index int) netip.Prefix {
	var best netip.Prefix
	bestScore := -1
	for _, a := range addrs {
		if a.LinkIndex != index || a.IPNet == nil || a.Scope != unix.RT_SCOPE_UNIVERSE {
			continue
		}
		if a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || !ip.Is6() || ip.Is4In6() || !ip.IsGlobalUnicast() {
			continue
		}
		ones, _ := a.Mask.Size()
		score := 0
		if a.Flags&unix.IFA_F_DEPRECATED == 0 {
			score += 4
		}
		if a.Flags&unix.IFA_F_TEMPORARY == 0 {
			score += 2
		}
		if !ip.IsPrivate() { // a ULA on an uplink reaches nothing beyond it
			score++
		}
		if score > bestScore {
			best, bestScore = netip.PrefixFrom(ip, ones), score
		}
	}
	return best
}

// routeGateway6 reads the gateway of main's IPv6 default route through
// the device: where the kernel puts what router advertisements teach
// (`default via fe80::1 dev wan1 proto ra`), and where NetworkManager and
// networkd put what they learn. The lowest metric wins.
func routeGateway6(routes []netlink.Route, index int) (netip.Addr, string) {
	var gw netip.Addr
	from, metric := "", 0
	for _, r := range routes {
		if r.LinkIndex != index || r.Gw == nil || !isDefault6(r.Dst) {
			continue
		}
		a, ok := netip.AddrFromSlice(r.Gw)
		if !ok || !a.Is6() || a.Is4In6() || a.IsUnspecified() {
			continue
		}
		if gw.IsValid() && r.Priority >= metric {
			continue
		}
		gw, metric = a, r.Priority
		from = FromRoute
		if r.Protocol == routeProtocolRA {
			from = FromRA
		}
	}
	return gw, from
}

func isDefault6(dst *net.IPNet) bool {
	if dst == nil {
		return true
	}
	ones, _ := dst.Mask.Size()
	return ones == 0
}

package detect

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
)

// Link is what discovery found out about one configured device.
type Link struct {
	// Device is the name as configured: "eth0", "eth3:0" (an address
	// label), "eth0.10@bond0" (the "@bond0" only for show), "ppp0".
	Device string
	// Kernel is the link name looked up: "eth3" for "eth3:0", "eth0.10"
	// for "eth0.10@bond0".
	Kernel string
	Index  int // kernel link index; 0 when the link does not exist
	// Present means the link exists and has an IPv4 address (for an
	// alias, an address carrying the alias's label).
	Present bool
	// Up means admin up, operational state up or unknown, and carrier.
	Up bool
	// AdminDown means the link exists but is administratively down (`ip
	// link set DEV down`, ifdown, nmcli device disconnect): the kernel has
	// dropped every route through it and refuses new ones, unlike a link
	// that only lost carrier.
	AdminDown bool
	// PointToPoint is set for IFF_POINTOPOINT links (ppp, tun) and for
	// addresses configured with a peer.
	PointToPoint bool
	Addr         netip.Prefix // the address with its prefix length
	// Net is the connected network: Addr masked, or for an address with a
	// peer, the peer's prefix (what the kernel routes to the link).
	Net     netip.Prefix
	Peer    netip.Addr // point-to-point peer, if any
	Gateway netip.Addr
	// GatewayFrom says where Gateway came from: FromConfig, FromRoute,
	// FromPeer, FromLeasePrefix+path, FromGuess, or "" when there is none.
	GatewayFrom string
	// Problem says why the device is not Present (ProblemNoDevice,
	// ProblemNoAddress...).
	Problem string
	// V6 is the device's IPv6, when it has a global address.
	V6 IPv6
	// Warnings are things the operator may want to know that did not stop
	// discovery, such as an unreadable lease file or a lease offering a
	// router that is not a unicast IPv4 address.
	Warnings []string
}

// Request asks about one configured device.
type Request struct {
	Device  string
	Gateway netip.Addr // the configuration's GATEWAY column; zero = discover
	// Gateway6 pins the IPv6 gateway (balance.conf's ipv6_gateway);
	// zero = discover.
	Gateway6 netip.Addr
	// NoIPv6 skips IPv6 discovery (ipv6=off).
	NoIPv6 bool
	// Delegated pins the prefix the ISP delegates (balance.conf's
	// ipv6_prefix); zero = read the DHCP clients' records.
	Delegated netip.Prefix
	// LAN says the device is a LAN's: nothing is delegated over it.
	LAN bool
}

// Options adjusts where Discover looks.
type Options struct {
	Root   string          // prefix for lease file directories; "" in production
	Handle *netlink.Handle // netlink handle; nil = the current namespace
}

// dumpAttempts bounds retries of a netlink dump that the kernel reported
// as interrupted by a concurrent change (NLM_F_DUMP_INTR); such a dump may
// be missing entries, and one retry nearly always succeeds.
const dumpAttempts = 4

// Discover reports on every requested device, keyed by Request.Device. A
// missing or unaddressed device is reported in its Link, not as an error;
// the error is only for netlink failing.
func Discover(reqs []Request, opts Options) (map[string]Link, error) {
	h := opts.Handle
	if h == nil {
		h = &netlink.Handle{} // what the package-level netlink functions use
	}
	var (
		links  []netlink.Link
		addrs  []netlink.Addr
		routes []netlink.Route
	)
	if err := retryDump(func() (err error) { links, err = h.LinkList(); return err }); err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	if err := retryDump(func() (err error) { addrs, err = h.AddrList(nil, netlink.FAMILY_V4); return err }); err != nil {
		return nil, fmt.Errorf("listing IPv4 addresses: %w", err)
	}
	// Without a table filter netlink returns the main table only.
	if err := retryDump(func() (err error) { routes, err = h.RouteList(nil, netlink.FAMILY_V4); return err }); err != nil {
		return nil, fmt.Errorf("listing main-table routes: %w", err)
	}
	var addrs6 []netlink.Addr
	var routes6 []netlink.Route
	if wantIPv6(reqs) {
		// A kernel without IPv6 answers these with an error; that is an
		// ISP without IPv6, not a failed discovery.
		if err := retryDump(func() (err error) { addrs6, err = h.AddrList(nil, netlink.FAMILY_V6); return err }); err != nil {
			addrs6 = nil
		}
		if err := retryDump(func() (err error) { routes6, err = h.RouteList(nil, netlink.FAMILY_V6); return err }); err != nil {
			routes6 = nil
		}
	}

	v := newView(links, addrs, routes)
	leases := newLeaseSource(opts.Root)
	nm := newNMSource(opts.Handle == nil)
	defer nm.close()
	now := time.Now()
	out := make(map[string]Link, len(reqs))
	for _, req := range reqs {
		l, facts := v.describe(req)
		if l.Present {
			var warning string
			facts.Hook, facts.HookFrom, warning = hookGateway(opts.Root, l.Kernel, l.Addr, now)
			if warning != "" {
				l.Warnings = append(l.Warnings, warning)
			}
		}
		l.Gateway, l.GatewayFrom = chooseGateway(facts)
		if l.Present && needsLease(l.GatewayFrom) {
			facts.NM = nm.gateway(l.Kernel)
			l.Gateway, l.GatewayFrom = chooseGateway(facts)
		}
		if l.Present && needsLease(l.GatewayFrom) {
			files, warnings := leases.candidates(l.Kernel, l.Index)
			var more []string
			facts.Lease, facts.LeasePath, more = pickLease(files, l.Kernel, l.Addr.Addr())
			l.Warnings = append(append(l.Warnings, warnings...), more...)
			l.Gateway, l.GatewayFrom = chooseGateway(facts)
		}
		// An alias shares its device's IPv6 with the device itself: one
		// ISP per device carries it.
		if _, label := splitDevice(req.Device); l.Present && !req.NoIPv6 && label == "" {
			l.V6 = describe6(addrs6, routes6, l.Index, req.Gateway6)
			if (l.V6.Addr.IsValid() || l.V6.Gateway.IsValid()) && !req.LAN {
				if req.Delegated.IsValid() {
					l.V6.Delegated, l.V6.DelegatedFrom = req.Delegated, FromConfig
				} else {
					var warnings []string
					l.V6.Delegated, l.V6.DelegatedFrom, warnings = findDelegated(opts.Root, l.Kernel, now)
					l.Warnings = append(l.Warnings, warnings...)
				}
			}
		}
		out[req.Device] = l
	}
	return out, nil
}

func wantIPv6(reqs []Request) bool {
	for _, r := range reqs {
		if !r.NoIPv6 {
			return true
		}
	}
	return false
}

func retryDump(dump func() error) error {
	var err error
	for range dumpAttempts {
		if err = dump(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return err
		}
	}
	return err
}

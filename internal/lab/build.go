package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"

	"github.com/vishvananda/netlink"
)

// build creates the namespaces and wires them up. Links, addresses and
// routes go through netlink handles opened in each namespace; only the
// firewall rules need a process.
func (l *Lab) build(opts Options) error {
	names := l.Names()
	if err := l.createNamespaces(names); err != nil {
		return err
	}
	nl := make(map[string]*netlink.Handle, len(names))
	defer func() {
		for _, h := range nl {
			h.Close()
		}
	}()
	for _, short := range names {
		h, err := netlink.NewHandleAt(l.handles[short])
		if err != nil {
			return fmt.Errorf("opening netlink in namespace %s: %w", l.NS(short), err)
		}
		nl[short] = h
		lo, err := h.LinkByName("lo")
		if err == nil {
			err = h.LinkSetUp(lo)
		}
		if err != nil {
			return fmt.Errorf("bringing up lo in %s: %w", l.NS(short), err)
		}
	}
	b := builder{l: l, nl: nl}

	for k := 1; k <= l.isps; k++ {
		isp := "isp" + strconv.Itoa(k)
		l.wireISP(&b, k)
		up, down := ispUplink(k)
		b.veth(end{isp, "up0", netip.PrefixFrom(up, 30), false},
			end{"inet", isp, netip.PrefixFrom(down, 30), false})
		b.route(isp, netip.MustParsePrefix("203.0.113.0/24"), down)
		b.route("inet", l.ISPSubnet(k), up)
	}
	b.addr("inet", "lo", netip.PrefixFrom(serverAddr, 32))
	l.wireLANs(&b)
	if b.err != nil {
		return b.err
	}
	if buildHook != nil {
		if err := buildHook(l.prefix); err != nil {
			return err
		}
	}

	forwarders := make([]string, 0, l.isps+1)
	if l.routerForwards() {
		forwarders = append(forwarders, "router")
	}
	for k := 1; k <= l.isps; k++ {
		forwarders = append(forwarders, "isp"+strconv.Itoa(k))
	}
	for _, short := range forwarders {
		err := l.Do(short, func() error {
			return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644)
		})
		if err != nil {
			return fmt.Errorf("enabling forwarding in %s: %w", l.NS(short), err)
		}
	}

	// The spoofing filters are the slow part (a process each), so the
	// ISPs get theirs in parallel.
	errs := make([]error, l.isps)
	var wg sync.WaitGroup
	for k := 1; k <= l.isps; k++ {
		wg.Go(func() {
			_, errs[k-1] = l.iptables("isp"+strconv.Itoa(k), "-A", "FORWARD",
				"-i", "down0", "!", "-s", l.ISPSubnet(k).String(), "-j", "DROP")
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

type end struct {
	ns   string
	name string
	addr netip.Prefix
	// bare leaves the end without an address and down, for the router's
	// own system to configure.
	bare bool
}

// wireISP links the router to ISP k, and wireLANs to every LAN: the
// links that ResetRouter makes again in a fresh router namespace.
func (l *Lab) wireISP(b *builder, k int) {
	b.veth(end{"router", "wan" + strconv.Itoa(k), netip.PrefixFrom(l.RouterISPAddr(k), 24), l.bareRouter},
		end{"isp" + strconv.Itoa(k), "down0", netip.PrefixFrom(l.ISPGateway(k), 24), false})
}

func (l *Lab) wireLANs(b *builder) {
	for j := 1; j <= l.lans; j++ {
		lan := "lan" + strconv.Itoa(j)
		b.veth(end{"router", lan, netip.PrefixFrom(l.RouterLANAddr(j), 24), l.bareRouter},
			end{lan, "eth0", netip.PrefixFrom(l.LANHost(j), 24), false})
		b.route(lan, netip.MustParsePrefix("0.0.0.0/0"), l.RouterLANAddr(j))
	}
}

// builder remembers the first error so that the wiring reads as a list of
// steps.
type builder struct {
	l   *Lab
	nl  map[string]*netlink.Handle
	err error
}

// veth creates a pair with one end in each namespace, so neither end ever
// appears in the host's namespace and equal names in parallel labs
// cannot clash; then addresses both ends and brings them up.
func (b *builder) veth(a, z end) {
	if b.err != nil {
		return
	}
	peerNS := b.l.handles[z.ns]
	err := b.nl[a.ns].LinkAdd(&netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: a.name},
		PeerName:      z.name,
		PeerNamespace: netlink.NsFd(int(peerNS)),
	})
	if err != nil {
		b.err = fmt.Errorf("creating veth %s in %s to %s in %s: %w", a.name, b.l.NS(a.ns), z.name, b.l.NS(z.ns), err)
		return
	}
	for _, e := range []end{a, z} {
		if e.bare {
			continue
		}
		b.addr(e.ns, e.name, e.addr)
		b.up(e.ns, e.name)
	}
}

func (b *builder) addr(ns, dev string, p netip.Prefix) {
	if b.err != nil {
		return
	}
	h := b.nl[ns]
	link, err := h.LinkByName(dev)
	if err == nil {
		err = h.AddrAdd(link, &netlink.Addr{IPNet: ipNet(p)})
	}
	if err != nil {
		b.err = fmt.Errorf("adding %s to %s in %s: %w", p, dev, b.l.NS(ns), err)
	}
}

func (b *builder) up(ns, dev string) {
	if b.err != nil {
		return
	}
	h := b.nl[ns]
	link, err := h.LinkByName(dev)
	if err == nil {
		err = h.LinkSetUp(link)
	}
	if err != nil {
		b.err = fmt.Errorf("bringing up %s in %s: %w", dev, b.l.NS(ns), err)
	}
}

func (b *builder) route(ns string, dst netip.Prefix, gw netip.Addr) {
	if b.err != nil {
		return
	}
	err := b.nl[ns].RouteAdd(&netlink.Route{Dst: ipNet(dst), Gw: gw.AsSlice()})
	if err != nil {
		b.err = fmt.Errorf("adding route %s via %s in %s: %w", dst, gw, b.l.NS(ns), err)
	}
}

// ipNet keeps the host part, as netlink.Addr wants for an interface
// address.
func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

package monitor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	kn "github.com/ispbalance/ispbalance/internal/kernelnames"
)

// watched is the set of configured devices the netlink watcher reports
// on; the loop replaces it after each rebuild.
type watched struct {
	mu      sync.Mutex
	devices map[string]bool
}

var watchedDevices = &watched{devices: map[string]bool{}}

func (w *watched) set(devs map[string]bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.devices = devs
}

func (w *watched) has(dev string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.devices[dev]
}

type linkFacts struct {
	index   int
	up      bool // admin up and carrier
	present bool
}

// watchNetlink reports, as a rebuild reason, every change that can alter
// the plan: a configured device appearing, vanishing, losing or gaining
// carrier, an address change on it (DHCP, PPP redial) or a route change
// through it in main (a new gateway). The library closes a subscription
// channel on any receive error (ENOBUFS after a burst); then everything
// is subscribed again and a full rebuild requested, since events were lost.
func (m *Monitor) watchNetlink(ctx context.Context, out, check, checkFirewall chan<- string) {
	go watchGroup(ctx, "policy rules", unix.NETLINK_ROUTE, []uint{unix.RTNLGRP_IPV4_RULE, unix.RTNLGRP_IPV6_RULE},
		func(t uint16) bool { return t == unix.RTM_DELRULE }, check, m.log.Debug)
	// With the nf_tables backend every ruleset change is announced; the
	// legacy backend announces nothing, and the periodic check covers it.
	go watchGroup(ctx, "nf_tables", unix.NETLINK_NETFILTER, []uint{unix.NFNLGRP_NFTABLES},
		func(uint16) bool { return true }, checkFirewall, m.log.Debug)
	seen := map[string]linkFacts{}
	for ctx.Err() == nil {
		done := make(chan struct{})
		links := make(chan netlink.LinkUpdate, 64)
		addrs := make(chan netlink.AddrUpdate, 64)
		routes := make(chan netlink.RouteUpdate, 256)
		errCB := func(err error) { m.log.Debug("netlink subscription", "err", err) }
		err1 := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{ErrorCallback: errCB})
		err2 := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{ErrorCallback: errCB})
		err3 := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{ErrorCallback: errCB})
		if err1 != nil || err2 != nil || err3 != nil {
			close(done)
			m.log.Error("cannot watch netlink; retrying", "link", err1, "addr", err2, "route", err3)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		m.watchLoop(ctx, seen, links, addrs, routes, out, check)
		close(done)
		if ctx.Err() == nil {
			send(out, "netlink resync")
		}
	}
}

func send(out chan<- string, reason string) {
	select {
	case out <- reason:
	default:
		// The loop has plenty queued; any queued reason causes a rebuild
		// that reads the newest facts.
	}
}

func (m *Monitor) watchLoop(ctx context.Context, seen map[string]linkFacts, links chan netlink.LinkUpdate,
	addrs chan netlink.AddrUpdate, routes chan netlink.RouteUpdate, out, check chan<- string) {
	nameOf := func(index int) string {
		for name, f := range seen {
			if f.index == index && f.present {
				return name
			}
		}
		if l, err := netlink.LinkByIndex(index); err == nil {
			return l.Attrs().Name
		}
		return ""
	}
	for {
		select {
		case <-ctx.Done():
			return
		case u, ok := <-links:
			if !ok {
				return
			}
			a := u.Attrs()
			// The same test as discovery's: the operational state often
			// turns up a moment after carrier, and a rebuild made in
			// between would still see the link as down.
			f := linkFacts{index: a.Index, present: u.Header.Type != unix.RTM_DELLINK,
				up: a.RawFlags&unix.IFF_UP != 0 && a.RawFlags&unix.IFF_LOWER_UP != 0 &&
					(a.OperState == netlink.OperUp || a.OperState == netlink.OperUnknown)}
			old, known := seen[a.Name]
			seen[a.Name] = f
			if watchedDevices.has(a.Name) && (!known || old != f) {
				what := "changed"
				switch {
				case !f.present:
					what = "removed"
				case !f.up && old.up:
					what = "lost carrier"
				case f.up && !old.up:
					what = "carrier up"
				}
				send(out, fmt.Sprintf("link %s %s", a.Name, what))
			}
		case u, ok := <-addrs:
			if !ok {
				return
			}
			if u.LinkAddress.IP.To4() == nil && (u.Scope != unix.RT_SCOPE_UNIVERSE || u.LinkAddress.IP.IsLinkLocalUnicast()) {
				// An IPv6 link-local address changes nothing we plan.
				continue
			}
			if name := nameOf(u.LinkIndex); watchedDevices.has(name) {
				send(out, fmt.Sprintf("address %s on %s %s", u.LinkAddress.String(), name, map[bool]string{true: "added", false: "removed"}[u.NewAddr]))
			}
		case u, ok := <-routes:
			if !ok {
				return
			}
			r := u.Route
			if u.Type == unix.RTM_DELROUTE && kn.IsOurTable(r.Table) {
				// Ours, or someone else's flush of our table: the drift
				// check tells which.
				send(check, fmt.Sprintf("route deleted from table %d", r.Table))
				continue
			}
			if r.Table != unix.RT_TABLE_MAIN || r.Protocol == kn.RouteProtocol || r.Gw == nil {
				continue
			}
			if r.Gw.To4() == nil && r.Dst != nil {
				// Of IPv6 routes only the default tells a gateway: a new
				// router advertisement, a DHCPv6 client's route.
				if ones, _ := r.Dst.Mask.Size(); ones != 0 {
					continue
				}
			}
			if name := nameOf(r.LinkIndex); watchedDevices.has(name) {
				// A new gateway's route and the old one's removal come as
				// two events; the reason says which, so the log does not
				// present the old gateway as the news.
				what := "added"
				if u.Type == unix.RTM_DELROUTE {
					what = "removed"
				}
				send(out, fmt.Sprintf("route via %s on %s %s", r.Gw, name, what))
			}
		}
	}
}

// watchGroup asks for a drift check whenever a netlink multicast group
// announces a message that wanted accepts. The netlink library has no
// subscription for policy rules or nf_tables of its own. `ip rule flush`
// takes every ISP's routing with it and a firewall reload opens the
// router, so waiting for the next periodic round would cost up to a few
// seconds; a check that finds nothing missing costs little.
func watchGroup(ctx context.Context, what string, protocol int, groups []uint, wanted func(msgType uint16) bool, check chan<- string, debug func(string, ...any)) {
	for ctx.Err() == nil {
		sock, err := nl.Subscribe(protocol, groups...)
		if err != nil {
			debug("cannot watch "+what+"; the periodic check covers them", "err", err)
			return
		}
		// A receive timeout lets the loop notice the end of ctx.
		tv := unix.NsecToTimeval(int64(time.Second))
		if err := sock.SetReceiveTimeout(&tv); err != nil {
			sock.Close()
			debug("cannot watch "+what+"; the periodic check covers them", "err", err)
			return
		}
		for ctx.Err() == nil {
			msgs, _, err := sock.Receive()
			if err != nil {
				if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EWOULDBLOCK) || errors.Is(err, unix.EINTR) {
					continue
				}
				debug("watch of "+what+" ended; subscribing again", "err", err)
				break
			}
			for _, msg := range msgs {
				if wanted(msg.Header.Type) {
					send(check, what+" changed")
					break
				}
			}
		}
		sock.Close()
	}
}

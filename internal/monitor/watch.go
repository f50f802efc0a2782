package monitor

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
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
func (m *Monitor) watchNetlink(ctx context.Context, out chan<- string) {
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
		m.watchLoop(ctx, seen, links, addrs, routes, out)
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
	addrs chan netlink.AddrUpdate, routes chan netlink.RouteUpdate, out chan<- string) {
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
			if u.LinkAddress.IP.To4() == nil {
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
			if r.Table != unix.RT_TABLE_MAIN || r.Protocol == kn.RouteProtocol || r.Gw == nil || r.Gw.To4() == nil {
				continue
			}
			if name := nameOf(r.LinkIndex); watchedDevices.has(name) {
				send(out, fmt.Sprintf("route via %s on %s changed", r.Gw, name))
			}
		}
	}
}

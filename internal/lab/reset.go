package lab

import (
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/vishvananda/netlink"
)

// routerForwards says whether the router namespace forwards from the
// start, as a lab router does unless its own system is to switch it on.
func (l *Lab) routerForwards() bool { return !l.noForwarding && !l.bareRouter }

// ResetRouter replaces the router namespace with a fresh one, wired to
// the ISPs and LANs again: links, addresses, routes, rules, firewall,
// connection tracking and sysctls are then as a newly booted kernel has
// them (with BareRouter) or as New made them. It is the kernel half of a
// reboot of the router; nothing may still run in the router namespace.
func (l *Lab) ResetRouter() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return fmt.Errorf("resetting the router of lab %s: the lab is closed", l.prefix)
	}
	old, ok := l.handles["router"]
	delete(l.handles, "router")
	full := l.NS("router")
	l.created = slices.DeleteFunc(l.created, func(n string) bool { return n == full })
	l.mu.Unlock()
	if !ok {
		return fmt.Errorf("resetting the router of lab %s: it has no router namespace", l.prefix)
	}
	// The kernel frees a namespace some time after its last reference
	// goes; the peers of its links would linger in the ISP and LAN
	// namespaces until then, so the links are deleted first.
	var errs []error
	if h, err := netlink.NewHandleAt(old); err != nil {
		errs = append(errs, fmt.Errorf("opening netlink in the old router namespace: %w", err))
	} else {
		links, err := h.LinkList()
		if err != nil {
			errs = append(errs, fmt.Errorf("listing the old router's links: %w", err))
		}
		for _, link := range links {
			if _, ok := link.(*netlink.Veth); !ok {
				continue
			}
			if err := h.LinkDel(link); err != nil {
				errs = append(errs, fmt.Errorf("deleting the old router's %s: %w", link.Attrs().Name, err))
			}
		}
		h.Close()
	}
	old.Close()
	if err := removeNamespace(full); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("resetting the router of lab %s: %w", l.prefix, err)
	}
	if err := l.createNamespaces([]string{"router"}); err != nil {
		return fmt.Errorf("resetting the router of lab %s: %w", l.prefix, err)
	}
	return l.rewire()
}

// rewire links the fresh router namespace to the others again.
func (l *Lab) rewire() error {
	nl := map[string]*netlink.Handle{}
	defer func() {
		for _, h := range nl {
			h.Close()
		}
	}()
	for _, short := range l.Names() {
		if short == "inet" {
			continue
		}
		h, err := l.dupHandle(short)
		if err != nil {
			return err
		}
		nh, err := netlink.NewHandleAt(h)
		h.Close()
		if err != nil {
			return fmt.Errorf("opening netlink in namespace %s: %w", l.NS(short), err)
		}
		nl[short] = nh
	}
	if lo, err := nl["router"].LinkByName("lo"); err != nil {
		return fmt.Errorf("finding lo in the fresh router namespace: %w", err)
	} else if err := nl["router"].LinkSetUp(lo); err != nil {
		return fmt.Errorf("bringing up lo in the fresh router namespace: %w", err)
	}
	b := builder{l: l, nl: nl}
	for k := 1; k <= l.isps; k++ {
		l.wireISP(&b, k)
	}
	l.wireLANs(&b)
	if b.err != nil {
		return fmt.Errorf("wiring the fresh router namespace: %w", b.err)
	}
	if l.routerForwards() {
		err := l.Do("router", func() error {
			return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644)
		})
		if err != nil {
			return fmt.Errorf("enabling forwarding in the fresh router namespace: %w", err)
		}
	}
	return nil
}

package main

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/ispbalance/ispbalance/internal/lab"
)

// The dual-stack lab adds IPv6 to the bench's lab as the namespace lab
// tests do: ISP k's segment is 2001:db8:k::/64 (router ::2, ISP ::1), the
// router learns each ISP's gateway as a link-local address (as router
// advertisements teach it), the internet server is 2001:db8:ff::10, and
// the LAN is numbered from a ULA.
var (
	v6Server  = netip.MustParseAddr("2001:db8:ff::10")
	v6LANHost = netip.MustParseAddr("fd00:100::10")
	v6LANRtr  = netip.MustParseAddr("fd00:100::1")
)

// ispPrefix6 is ISP k's customer segment.
func ispPrefix6(k int) netip.Prefix {
	return netip.MustParsePrefix(fmt.Sprintf("2001:db8:%x::/64", k))
}

func addDualStack(l *lab.Lab) error {
	sh := func(ns string, args ...string) error {
		if out, err := l.Exec(ns, args...); err != nil {
			return fmt.Errorf("%s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	steps := [][]string{{"inet", "ip", "-6", "addr", "add", v6Server.String() + "/128", "dev", "lo"}}
	for k := 1; k <= l.ISPs(); k++ {
		isp, wan, seg := fmt.Sprintf("isp%d", k), fmt.Sprintf("wan%d", k), ispPrefix6(k).Addr()
		up := fmt.Sprintf("2001:db8:f0:%x::", k)
		steps = append(steps,
			[]string{isp, "ip", "-6", "addr", "add", seg.String() + "1/64", "dev", "down0", "nodad"},
			[]string{"router", "ip", "-6", "addr", "add", seg.String() + "2/64", "dev", wan, "nodad"},
			[]string{isp, "ip", "-6", "addr", "add", up + "1/64", "dev", "up0", "nodad"},
			[]string{"inet", "ip", "-6", "addr", "add", up + "2/64", "dev", isp, "nodad"},
			[]string{isp, "ip", "-6", "route", "add", "2001:db8:ff::/64", "via", up + "2"},
			[]string{"inet", "ip", "-6", "route", "add", ispPrefix6(k).String(), "via", up + "1"},
			[]string{isp, "sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1"},
		)
	}
	steps = append(steps,
		[]string{"router", "ip", "-6", "addr", "add", v6LANRtr.String() + "/64", "dev", "lan1", "nodad"},
		[]string{"lan1", "ip", "-6", "addr", "add", v6LANHost.String() + "/64", "dev", "eth0", "nodad"},
		[]string{"lan1", "ip", "-6", "route", "add", "default", "via", v6LANRtr.String()},
	)
	for _, s := range steps {
		if err := sh(s[0], s[1:]...); err != nil {
			return err
		}
	}
	// Link-local addresses must finish duplicate address detection before
	// the gateways can be named by them.
	deadline := time.Now().Add(15 * time.Second)
	for _, ns := range l.Names() {
		for {
			out, _ := l.Exec(ns, "ip", "-6", "addr", "show", "tentative")
			if strings.TrimSpace(string(out)) == "" {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("duplicate address detection in %s did not finish", ns)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for k := 1; k <= l.ISPs(); k++ {
		out, err := l.Exec(fmt.Sprintf("isp%d", k), "ip", "-6", "-o", "addr", "show", "dev", "down0", "scope", "link")
		if err != nil {
			return err
		}
		var gw string
		for _, f := range strings.Fields(string(out)) {
			if p, err := netip.ParsePrefix(f); err == nil && p.Addr().IsLinkLocalUnicast() {
				gw = p.Addr().String()
			}
		}
		if gw == "" {
			return fmt.Errorf("ISP %d has no link-local address", k)
		}
		// What the kernel installs from a router advertisement.
		if err := sh("router", "ip", "-6", "route", "add", "default", "via", gw, "dev", fmt.Sprintf("wan%d", k),
			"proto", "ra", "metric", fmt.Sprint(1024+k)); err != nil {
			return err
		}
	}
	return nil
}

// whichISP6 connects from the LAN host to the IPv6 server and returns
// which ISP's prefix the server saw the connection come from.
func whichISP6(l *lab.Lab, port uint16, timeout time.Duration) (int, error) {
	seen, err := l.Greet("lan1", netip.AddrPortFrom(v6Server, port), timeout)
	if err != nil {
		return 0, err
	}
	a, err := netip.ParseAddr(seen)
	if err != nil {
		return 0, err
	}
	for k := 1; k <= l.ISPs(); k++ {
		if ispPrefix6(k).Contains(a) {
			return k, nil
		}
	}
	return 0, fmt.Errorf("the server saw %s, which is no ISP's", a)
}

// silentDrop6 drops IPv6 only in ISP k's forwarding, as an ISP whose IPv6
// dies while its IPv4 works.
func silentDrop6(l *lab.Lab, k int) (undo func() error, err error) {
	isp := fmt.Sprintf("isp%d", k)
	if out, err := l.Exec(isp, "ip6tables", "-I", "FORWARD", "-j", "DROP"); err != nil {
		return nil, fmt.Errorf("dropping ISP %d's IPv6: %w\n%s", k, err, out)
	}
	return func() error {
		_, err := l.Exec(isp, "ip6tables", "-D", "FORWARD", "-j", "DROP")
		return err
	}, nil
}

// ipv6Failover measures how long after ISP k's IPv6 silently dies new
// IPv6 connections from the LAN avoid it, and how long after the repair
// ISP k carries IPv6 again.
func ipv6Failover(l *lab.Lab, k int, port uint16) (failover, recovery time.Duration, err error) {
	undo, err := silentDrop6(l, k)
	if err != nil {
		return 0, 0, err
	}
	outage := time.Now()
	failover = -1
	streak := 0
	for time.Since(outage) < 30*time.Second {
		isp, err := whichISP6(l, port, 300*time.Millisecond)
		if err == nil && isp != k {
			if streak == 0 {
				failover = time.Since(outage)
			}
			if streak++; streak == 10 {
				break
			}
		} else {
			streak, failover = 0, -1
		}
	}
	time.Sleep(25*time.Second - time.Since(outage))
	if err := undo(); err != nil {
		return failover, -1, err
	}
	repaired := time.Now()
	recovery = -1
	for time.Since(repaired) < 60*time.Second {
		if isp, err := whichISP6(l, port, 300*time.Millisecond); err == nil && isp == k {
			recovery = time.Since(repaired)
			break
		}
	}
	return failover, recovery, nil
}

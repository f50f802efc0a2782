package lab

import (
	"fmt"
	"strconv"
	"sync"

	"github.com/vishvananda/netlink"
)

// The faults are made inside an ISP's namespace, so the router sees
// exactly what a customer of a failing ISP sees. Each returns an undo
// func that restores the ISP; calling undo again returns the first
// result without doing anything.

// SilentDrop makes ISP k drop everything it forwards while its link to
// the router keeps carrier and the gateway still answers pings: the
// upstream failure only probes through the ISP can detect.
func (l *Lab) SilentDrop(k int) (undo func() error, err error) {
	return l.forwardDrop(k, "silent drop")
}

// RandomLoss makes ISP k drop each forwarded packet, in both directions,
// with probability p (0 < p <= 1). netem is not available, so this uses
// the iptables statistic match.
func (l *Lab) RandomLoss(k int, p float64) (undo func() error, err error) {
	if !(p > 0 && p <= 1) {
		return nil, fmt.Errorf("random loss of %v: want a probability in (0, 1]", p)
	}
	return l.forwardDrop(k, "random loss", "-m", "statistic", "--mode", "random",
		"--probability", strconv.FormatFloat(p, 'f', -1, 64))
}

// forwardDrop inserts a DROP rule at the head of ISP k's FORWARD chain.
// A comment unique to this call lets undo delete exactly this rule even
// when faults overlap.
func (l *Lab) forwardDrop(k int, what string, match ...string) (func() error, error) {
	isp, err := l.checkISP(k)
	if err != nil {
		return nil, err
	}
	tag := "lab-fault-" + strconv.FormatUint(l.faultSeq.Add(1), 10)
	rule := append([]string{"FORWARD"}, match...)
	rule = append(rule, "-m", "comment", "--comment", tag, "-j", "DROP")
	if _, err := l.iptables(isp, append([]string{"-I"}, rule...)...); err != nil {
		return nil, fmt.Errorf("starting %s at ISP %d: %w", what, k, err)
	}
	return undoOnce(func() error {
		if _, err := l.iptables(isp, append([]string{"-D"}, rule...)...); err != nil {
			return fmt.Errorf("ending %s at ISP %d: %w", what, k, err)
		}
		return nil
	}), nil
}

// CarrierDown sets ISP k's side of the router link down, so the router's
// wan<k> loses carrier.
func (l *Lab) CarrierDown(k int) (undo func() error, err error) {
	if err := l.setLink(k, false); err != nil {
		return nil, err
	}
	return undoOnce(func() error { return l.setLink(k, true) }), nil
}

func (l *Lab) setLink(k int, up bool) error {
	isp, err := l.checkISP(k)
	if err != nil {
		return err
	}
	state := "down"
	if up {
		state = "up"
	}
	h, err := l.dupHandle(isp)
	if err != nil {
		return err
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return fmt.Errorf("setting ISP %d's down0 %s: opening netlink: %w", k, state, err)
	}
	defer nl.Close()
	link, err := nl.LinkByName("down0")
	if err == nil {
		if up {
			err = nl.LinkSetUp(link)
		} else {
			err = nl.LinkSetDown(link)
		}
	}
	if err != nil {
		return fmt.Errorf("setting ISP %d's down0 %s: %w", k, state, err)
	}
	return nil
}

func undoOnce(undo func() error) func() error {
	var once sync.Once
	var err error
	return func() error {
		once.Do(func() { err = undo() })
		return err
	}
}

// DropEcho makes the internet server ignore ICMP echo requests while TCP
// to it still flows: the probe target that many admins share among all
// their ISPs (8.8.8.8 style) going quiet while every uplink works.
func (l *Lab) DropEcho() (undo func() error, err error) {
	tag := "lab-fault-" + strconv.FormatUint(l.faultSeq.Add(1), 10)
	rule := []string{"INPUT", "-p", "icmp", "--icmp-type", "echo-request", "-m", "comment", "--comment", tag, "-j", "DROP"}
	if _, err := l.iptables("inet", append([]string{"-I"}, rule...)...); err != nil {
		return nil, fmt.Errorf("dropping echo requests at the internet server: %w", err)
	}
	return undoOnce(func() error {
		if _, err := l.iptables("inet", append([]string{"-D"}, rule...)...); err != nil {
			return fmt.Errorf("answering echo requests at the internet server again: %w", err)
		}
		return nil
	}), nil
}

// AdminDown sets the router's own wan<k> administratively down, as
// `ifdown` and `nmcli device disconnect` do: unlike a carrier loss, the
// kernel then drops every route through the device.
func (l *Lab) AdminDown(k int) (undo func() error, err error) {
	if _, err := l.checkISP(k); err != nil {
		return nil, err
	}
	wan := "wan" + strconv.Itoa(k)
	if _, err := l.run("router", "ip", "link", "set", wan, "down"); err != nil {
		return nil, fmt.Errorf("setting the router's %s down: %w", wan, err)
	}
	return undoOnce(func() error {
		if _, err := l.run("router", "ip", "link", "set", wan, "up"); err != nil {
			return fmt.Errorf("setting the router's %s up: %w", wan, err)
		}
		return nil
	}), nil
}

package probe

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// Reply is one echo reply that matched this Conn's identifier.
type Reply struct {
	From netip.Addr
	Seq  int
	At   time.Time
}

// Conn is a raw ICMP (or ICMPv6) socket for probing through one ISP.
type Conn struct {
	pc    *net.IPConn
	id    uint16
	src   netip.Addr
	token [8]byte
	v6    bool
}

// Open opens a probe socket with the given fwmark, bound to src, of
// src's family. It needs CAP_NET_RAW (raw socket) and CAP_NET_ADMIN
// (SO_MARK).
func Open(src netip.Addr, mark uint32) (*Conn, error) {
	network := "ip4:icmp"
	if src.Is6() && !src.Is4In6() {
		// The kernel fills in the ICMPv6 checksum of a raw ICMPv6 socket.
		network = "ip6:ipv6-icmp"
	} else if !src.Is4() {
		return nil, fmt.Errorf("opening probe socket: source %v is neither IPv4 nor IPv6", src)
	}
	var setErr error
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		err := c.Control(func(fd uintptr) {
			setErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
		})
		if err != nil {
			return err
		}
		return setErr
	}}
	pc, err := lc.ListenPacket(context.Background(), network, src.String())
	if err != nil {
		return nil, fmt.Errorf("opening probe socket on %v with mark %#x: %w", src, mark, err)
	}
	c := &Conn{pc: pc.(*net.IPConn), src: src, v6: network != "ip4:icmp"}
	var idb [2]byte
	rand.Read(idb[:])
	rand.Read(c.token[:])
	c.id = binary.BigEndian.Uint16(idb[:])
	return c, nil
}

// Source is the address the socket is bound to.
func (c *Conn) Source() netip.Addr { return c.src }

// Send sends one echo request with sequence number seq to dst. An IPv6
// link-local dst carries its device as zone.
func (c *Conn) Send(dst netip.Addr, seq int) error {
	var typ icmp.Type = ipv4.ICMPTypeEcho
	if c.v6 {
		typ = ipv6.ICMPTypeEchoRequest
	}
	msg := icmp.Message{Type: typ, Body: &icmp.Echo{ID: int(c.id), Seq: seq & 0xffff, Data: c.token[:]}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return fmt.Errorf("building echo request: %w", err)
	}
	if _, err := c.pc.WriteTo(b, &net.IPAddr{IP: dst.AsSlice(), Zone: dst.Zone()}); err != nil {
		return fmt.Errorf("sending echo request to %v: %w", dst, err)
	}
	return nil
}

// Receive reads until one echo reply of ours arrives, the deadline
// passes, or the socket is closed. A raw socket sees every ICMP packet to
// its address, so replies are matched by identifier and payload token.
func (c *Conn) Receive(deadline time.Time) (Reply, error) {
	buf := make([]byte, 1500)
	if err := c.pc.SetReadDeadline(deadline); err != nil {
		return Reply{}, err
	}
	for {
		n, from, err := c.pc.ReadFrom(buf)
		if err != nil {
			return Reply{}, err
		}
		at := time.Now()
		proto, reply := 1, icmp.Type(ipv4.ICMPTypeEchoReply)
		if c.v6 {
			proto, reply = 58, ipv6.ICMPTypeEchoReply
		}
		msg, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || msg.Type != reply {
			continue
		}
		echo, ok := msg.Body.(*icmp.Echo)
		if !ok || echo.ID != int(c.id) || len(echo.Data) < len(c.token) || [8]byte(echo.Data[:8]) != c.token {
			continue
		}
		ip, _ := from.(*net.IPAddr)
		if ip == nil {
			continue
		}
		addr, _ := netip.AddrFromSlice(ip.IP)
		if ip.Zone != "" {
			addr = addr.WithZone(ip.Zone)
		}
		return Reply{From: addr.Unmap(), Seq: echo.Seq, At: at}, nil
	}
}

// Close closes the socket; a Receive in progress returns an error.
func (c *Conn) Close() error { return c.pc.Close() }

// IsClosed reports whether err comes from reading a closed Conn.
func IsClosed(err error) bool { return errors.Is(err, net.ErrClosed) }

package lab

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// pingLinger is how long Stop waits for replies to the probes sent just
// before it; generous because a saturated tbf uplink can hold a packet
// for 400 ms.
const pingLinger = time.Second

// PingStream sends ICMP echo requests from a namespace at a fixed
// interval and counts the replies. It uses a raw socket rather than the
// ping binary so that the counts are exact: every probe is matched to its
// reply by identifier, sequence number and a random token.
type PingStream struct {
	conn     *net.IPConn
	dst      netip.Addr
	id       uint16
	token    [8]byte
	interval time.Duration

	stop       chan struct{}
	senderDone chan struct{}
	recvDone   chan struct{}
	replied    chan struct{}
	untrack    func()

	mu          sync.Mutex
	sent        int
	received    int
	outstanding map[uint16]time.Time // sequence number -> when sent
	recvErr     error

	stopOnce sync.Once
}

// StartPing starts pinging dst from namespace ns every interval.
func (l *Lab) StartPing(ns string, dst netip.Addr, interval time.Duration) (*PingStream, error) {
	if interval <= 0 {
		return nil, fmt.Errorf("pinging %s every %v: want a positive interval", dst, interval)
	}
	var conn *net.IPConn
	err := l.Do(ns, func() error {
		network, local := "ip4:icmp", "0.0.0.0"
		if dst.Is6() {
			// The kernel fills in ICMPv6 checksums on raw sockets.
			network, local = "ip6:ipv6-icmp", "::"
		}
		c, err := net.ListenPacket(network, local)
		if err != nil {
			return err
		}
		conn = c.(*net.IPConn)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("opening an ICMP socket in %s: %w", l.NS(ns), err)
	}
	var ident [10]byte
	if _, err := rand.Read(ident[:]); err != nil {
		conn.Close()
		return nil, fmt.Errorf("choosing a ping identifier: %w", err)
	}
	s := &PingStream{
		conn:        conn,
		dst:         dst,
		id:          binary.BigEndian.Uint16(ident[:2]),
		interval:    interval,
		stop:        make(chan struct{}),
		senderDone:  make(chan struct{}),
		recvDone:    make(chan struct{}),
		replied:     make(chan struct{}, 1),
		outstanding: make(map[uint16]time.Time),
	}
	copy(s.token[:], ident[2:])
	s.untrack, err = l.track(func() { s.finish(0) })
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("pinging %s from %s: %w", dst, l.NS(ns), err)
	}
	go s.receive()
	go s.send()
	return s, nil
}

// Stop stops sending, waits up to a second for replies to the probes of
// the last second, and returns how many probes were sent and how many
// were answered. sent includes probes the kernel refused to send, for
// instance for lack of a route: to the caller they are lost like any
// other. Calling Stop again returns the same counts. Closing the lab
// stops the stream without waiting.
func (s *PingStream) Stop() (sent, received int, err error) {
	s.finish(pingLinger)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent, s.received, s.recvErr
}

func (s *PingStream) finish(linger time.Duration) {
	s.stopOnce.Do(func() {
		close(s.stop)
		<-s.senderDone
		stopped := time.Now()
		deadline := stopped.Add(linger)
		for s.awaiting(stopped.Add(-linger)) {
			wait := time.Until(deadline)
			if wait <= 0 {
				break
			}
			select {
			case <-s.replied:
			case <-time.After(wait):
			}
		}
		s.conn.Close()
		<-s.recvDone
		s.untrack()
	})
}

// awaiting reports whether a probe sent after since is still unanswered.
func (s *PingStream) awaiting(since time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, at := range s.outstanding {
		if at.After(since) {
			return true
		}
	}
	return false
}

func (s *PingStream) send() {
	defer close(s.senderDone)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	to := &net.IPAddr{IP: s.dst.AsSlice()}
	for seq := uint16(0); ; seq++ {
		msg := s.echoRequest(seq)
		// Recorded before sending, so a fast reply finds it. A sequence
		// number reused after 65536 probes replaces a probe that was
		// never answered.
		s.mu.Lock()
		s.sent++
		s.outstanding[seq] = time.Now()
		s.mu.Unlock()
		if _, err := s.conn.WriteTo(msg, to); err != nil {
			s.mu.Lock()
			delete(s.outstanding, seq)
			s.mu.Unlock()
		}
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

func (s *PingStream) echoRequest(seq uint16) []byte {
	msg := make([]byte, 8+len(s.token))
	msg[0] = 8 // echo request
	if s.dst.Is6() {
		msg[0] = 128
	}
	binary.BigEndian.PutUint16(msg[4:], s.id)
	binary.BigEndian.PutUint16(msg[6:], seq)
	copy(msg[8:], s.token[:])
	if s.dst.Is4() {
		binary.BigEndian.PutUint16(msg[2:], icmpChecksum(msg))
	}
	return msg
}

func (s *PingStream) receive() {
	defer close(s.recvDone)
	buf := make([]byte, 1500)
	echoReply := byte(0)
	if s.dst.Is6() {
		echoReply = 129
	}
	for {
		// The socket sees every ICMP packet of the namespace, including
		// replies to other streams; Go strips the IPv4 header (IPv6 raw
		// sockets get none).
		n, from, err := s.conn.ReadFrom(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.mu.Lock()
				s.recvErr = fmt.Errorf("receiving ping replies: %w", err)
				s.mu.Unlock()
			}
			return
		}
		msg := buf[:n]
		ip, ok := from.(*net.IPAddr)
		if !ok || n < 8+len(s.token) || msg[0] != echoReply || msg[1] != 0 ||
			binary.BigEndian.Uint16(msg[4:]) != s.id || !bytes.Equal(msg[8:8+len(s.token)], s.token[:]) {
			continue
		}
		if src, ok := netip.AddrFromSlice(ip.IP); !ok || src.Unmap() != s.dst {
			continue
		}
		seq := binary.BigEndian.Uint16(msg[6:])
		s.mu.Lock()
		if _, ok := s.outstanding[seq]; ok {
			delete(s.outstanding, seq)
			s.received++
		}
		s.mu.Unlock()
		select {
		case s.replied <- struct{}{}:
		default:
		}
	}
}

func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

package lab

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// StartServer listens on the server address and port in the internet
// namespace. For every connection it first writes the source address it
// saw, e.g. "100.64.1.2\n", then echoes what it receives until the peer
// closes, so long-lived connections can be checked for flow. stop closes
// the listener and all connections and waits for them; Close calls it too.
func (l *Lab) StartServer(port int) (stop func(), err error) {
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("starting a server on port %d: want 1..65535", port)
	}
	return l.StartListener("inet", netip.AddrPortFrom(serverAddr, uint16(port)))
}

// StartListener runs the same server as StartServer on any address of
// any lab namespace, IPv6 and the unspecified address (all of the
// namespace's addresses, both families) included: a listener the
// firewall tests first reach from an allowed client, then try from a
// forbidden one.
func (l *Lab) StartListener(ns string, addr netip.AddrPort) (stop func(), err error) {
	network := "tcp"
	if addr.Addr().Is4() {
		network = "tcp4"
	}
	var ln net.Listener
	err = l.Do(ns, func() error {
		var err error
		ln, err = net.Listen(network, addr.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("starting a server on %s in %s: %w", addr, l.NS(ns), err)
	}
	s := &server{ln: ln, conns: make(map[net.Conn]struct{})}
	untrack, err := l.track(s.stop)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("starting a server on %s: %w", addr, err)
	}
	s.wg.Go(s.serve)
	return func() {
		s.stop()
		untrack()
	}, nil
}

// Greet connects from ns to dst and reads the server's first line (the
// source address it saw): the whole exchange a firewall test calls
// "reachable". It fails when the connection is refused, times out or
// yields nothing.
func (l *Lab) Greet(ns string, dst netip.AddrPort, timeout time.Duration) (seen string, err error) {
	c, err := l.DialTCP(ns, dst, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("reading the greeting of %s: %w", dst, err)
	}
	return strings.TrimSpace(line), nil
}

type server struct {
	ln       net.Listener
	wg       sync.WaitGroup
	stopOnce sync.Once

	mu       sync.Mutex
	stopping bool
	conns    map[net.Conn]struct{}
}

func (s *server) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.stopping {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Go(func() { s.handle(c) })
		s.mu.Unlock()
	}
}

func (s *server) handle(c net.Conn) {
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	remote, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return
	}
	if _, err := fmt.Fprintf(c, "%s\n", remote.Addr().Unmap()); err != nil {
		return
	}
	io.Copy(c, c)
}

func (s *server) stop() {
	s.stopOnce.Do(func() {
		s.ln.Close()
		s.mu.Lock()
		s.stopping = true
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
}

// DialTCP connects from namespace ns to dst. The socket is created inside
// ns and stays there; the connection belongs to the caller. A zero
// timeout means the system's.
func (l *Lab) DialTCP(ns string, dst netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := l.Do(ns, func() error {
		var err error
		d := net.Dialer{Timeout: timeout}
		c, err = d.Dial("tcp", dst.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("connecting from %s to %s: %w", l.NS(ns), dst, err)
	}
	return c, nil
}

// WhichISP connects from the host of LAN lan to the server on port, and
// returns which ISP (1..N) the server saw the connection come from. The
// whole exchange must finish within timeout.
func (l *Lab) WhichISP(lan, port int, timeout time.Duration) (int, error) {
	if lan < 1 || lan > l.lans {
		return 0, fmt.Errorf("no LAN %d in a lab with %d LANs", lan, l.lans)
	}
	if port < 1 || port > 65535 {
		return 0, fmt.Errorf("asking the server on port %d: want 1..65535", port)
	}
	deadline := time.Now().Add(timeout)
	c, err := l.DialTCP("lan"+strconv.Itoa(lan), netip.AddrPortFrom(serverAddr, uint16(port)), timeout)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if err := c.SetDeadline(deadline); err != nil {
		return 0, fmt.Errorf("setting a deadline on the connection to the server: %w", err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("reading what the server saw: %w", err)
	}
	seen, err := netip.ParseAddr(strings.TrimSpace(line))
	if err != nil {
		return 0, fmt.Errorf("reading what the server saw: %w", err)
	}
	k := l.ISPForAddr(seen)
	if k == 0 {
		return 0, errors.New("the server saw " + seen.String() + ", which is no ISP link address of the router")
	}
	return k, nil
}

// FirstStreak opens connections from LAN host lan to the server's port,
// one after another, until n in a row succeed through an ISP that ok
// accepts. It returns when the first of those began, counted from start:
// how long after an event (a fault, a rebuild) new connections behave as
// wanted. Requiring a run of n keeps a lucky random choice from counting.
func (l *Lab) FirstStreak(lan, port, n int, ok func(isp int) bool, start time.Time, limit, timeout time.Duration) (time.Duration, error) {
	streak, streakStart := 0, time.Time{}
	for time.Since(start) < limit {
		begin := time.Now()
		k, err := l.WhichISP(lan, port, timeout)
		if err == nil && ok(k) {
			if streak == 0 {
				streakStart = begin
			}
			if streak++; streak == n {
				return streakStart.Sub(start), nil
			}
			continue
		}
		streak = 0
		if err == nil {
			// A wrong ISP answers at once; do not spin.
			time.Sleep(10 * time.Millisecond)
		}
	}
	return 0, fmt.Errorf("no %d connections in a row behaved as wanted within %v", n, limit)
}

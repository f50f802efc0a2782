package lab

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// ScanTCP tries a TCP connection from namespace ns to every port of dst
// at once, as a port scanner does, and returns the ports that accepted
// within wait. A port that refuses or stays silent is not listed. A
// link-local dst names its device in its zone, as seen from ns.
func (l *Lab) ScanTCP(ns string, dst netip.Addr, ports []int, wait time.Duration) ([]int, error) {
	var open []int
	err := l.Do(ns, func() error {
		var zone uint32
		if dst.Zone() != "" {
			ifc, err := net.InterfaceByName(dst.Zone())
			if err != nil {
				return fmt.Errorf("scanning %s: %w", dst, err)
			}
			zone = uint32(ifc.Index)
		}
		family := unix.AF_INET6
		if dst.Is4() {
			family = unix.AF_INET
		}
		// Sockets are created here, on the thread inside ns; they stay
		// in ns while the connections complete.
		fds := make(map[int]int, len(ports))
		defer func() {
			for fd := range fds {
				unix.Close(fd)
			}
		}()
		for _, port := range ports {
			fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("scanning %s: %w", dst, err)
			}
			fds[fd] = port
			var sa unix.Sockaddr
			if dst.Is4() {
				sa = &unix.SockaddrInet4{Port: port, Addr: dst.As4()}
			} else {
				sa = &unix.SockaddrInet6{Port: port, Addr: dst.As16(), ZoneId: zone}
			}
			if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS {
				return fmt.Errorf("scanning %s port %d: %w", dst, port, err)
			}
		}
		pending := pendingSet(fds)
		deadline := time.Now().Add(wait)
		for len(pending) > 0 && time.Now().Before(deadline) {
			pfds := make([]unix.PollFd, 0, len(pending))
			for fd := range pending {
				pfds = append(pfds, unix.PollFd{Fd: int32(fd), Events: unix.POLLOUT})
			}
			left := int(time.Until(deadline) / time.Millisecond)
			if _, err := unix.Poll(pfds, max(left, 1)); err != nil && err != unix.EINTR {
				return fmt.Errorf("scanning %s: %w", dst, err)
			}
			for _, p := range pfds {
				if p.Revents == 0 {
					continue
				}
				fd := int(p.Fd)
				delete(pending, fd)
				if soErr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err == nil && soErr == 0 {
					open = append(open, fds[fd])
				}
			}
		}
		return nil
	})
	slices.Sort(open)
	return open, err
}

func pendingSet(fds map[int]int) map[int]bool {
	m := make(map[int]bool, len(fds))
	for fd := range fds {
		m[fd] = true
	}
	return m
}

package apply

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Ruleset is the nf_tables ruleset of one network namespace as far as
// its generation goes: a number the kernel raises by one at every commit
// that changes anything, in any table or family. While it stays what it
// was right after a known state of the firewall, the firewall is still
// in that state, and reading it again (an iptables-save process per
// family) can be skipped. iptables-legacy has no such number; there is no
// Ruleset then.
type Ruleset interface {
	// Instance names the ruleset: the same generation of two different
	// namespaces, or of one before and after a reboot, says nothing.
	Instance() string
	// Generation returns the generation now.
	Generation() (uint32, error)
	// Watch starts noting every commit from now on, for Commits.
	Watch() error
	// Commits returns the commits noted since Watch, oldest first. An
	// error means some may have been missed.
	Commits() ([]Commit, error)
	Close() error
}

// Commit is one ruleset change: the generation it made and the process
// that made it.
type Commit struct {
	Gen    uint32
	Writer int
}

// nftBackend reports whether the iptables-save named runs on nf_tables
// (Debian's and Red Hat's default, `iptables-nft-save`, a link to
// xtables-nft-multi) rather than the legacy x_tables, which nf_tables'
// generation does not cover.
func nftBackend(saveCmd string) bool {
	path, err := exec.LookPath(saveCmd)
	if err != nil {
		return false
	}
	resolved, err := filepath.EvalSymlinks(path)
	if err != nil {
		return false
	}
	return strings.Contains(filepath.Base(resolved), "nft")
}

// nftRuleset asks the kernel over NETLINK_NETFILTER. One socket answers
// generation requests and, once watching, also receives the NEWGEN
// notice the kernel multicasts at every commit, which names the process
// that committed.
type nftRuleset struct {
	fd       int
	portid   uint32
	seq      uint32
	instance string
	watching bool
	commits  []Commit
	lost     bool
	buf      []byte
}

// nfgenmsgLen is struct nfgenmsg's size (family, version, resource id);
// nlaTypeMask strips an attribute type's nested and byte-order flags.
const (
	nfgenmsgLen = 4
	nlaTypeMask = 0x3fff
)

// nftReplyTimeout bounds the wait for the kernel's answer; it answers at
// once, so this only keeps a broken socket from hanging a rebuild.
const nftReplyTimeout = time.Second

// openNftRuleset opens the current network namespace's ruleset.
func openNftRuleset() (*nftRuleset, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("opening netfilter netlink: %w", err)
	}
	r := &nftRuleset{fd: fd}
	if err := r.init(); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return r, nil
}

func (r *nftRuleset) init() error {
	if err := unix.Bind(r.fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("binding netfilter netlink: %w", err)
	}
	sa, err := unix.Getsockname(r.fd)
	if err != nil {
		return fmt.Errorf("reading netfilter netlink address: %w", err)
	}
	nl, ok := sa.(*unix.SockaddrNetlink)
	if !ok {
		return errors.New("reading netfilter netlink address: not a netlink address")
	}
	r.portid = nl.Pid
	tv := unix.NsecToTimeval(nftReplyTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(r.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("setting netfilter netlink timeout: %w", err)
	}
	// The namespace's cookie is never reused while the machine runs (an
	// inode number is), and the boot id tells one run from the next.
	cookie, err := unix.GetsockoptUint64(r.fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		return fmt.Errorf("reading the network namespace's cookie: %w", err)
	}
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return fmt.Errorf("reading the boot id: %w", err)
	}
	r.instance = fmt.Sprintf("nf_tables %s netns %d", strings.TrimSpace(string(boot)), cookie)
	return nil
}

func (r *nftRuleset) Instance() string { return r.instance }

func (r *nftRuleset) Close() error { return unix.Close(r.fd) }

func (r *nftRuleset) Watch() error {
	if err := unix.SetsockoptInt(r.fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, unix.NFNLGRP_NFTABLES); err != nil {
		return fmt.Errorf("watching nf_tables commits: %w", err)
	}
	r.watching, r.commits, r.lost = true, nil, false
	return nil
}

func (r *nftRuleset) Commits() ([]Commit, error) {
	if !r.watching {
		return nil, errors.New("not watching nf_tables commits")
	}
	// Everything the kernel sent so far is queued; take it without
	// waiting.
	if err := r.drain(); err != nil && !errors.Is(err, unix.EAGAIN) {
		r.lost = true
	}
	if r.lost {
		return r.commits, errors.New("some nf_tables commit notices were lost")
	}
	return r.commits, nil
}

func (r *nftRuleset) Generation() (uint32, error) {
	r.seq++
	req := make([]byte, unix.NLMSG_HDRLEN+nfgenmsgLen)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETGEN)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(req[8:], r.seq)
	req[16] = unix.AF_UNSPEC
	req[17] = unix.NFNETLINK_V0
	if err := unix.Sendto(r.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("asking for the nf_tables generation: %w", err)
	}
	var gen uint32
	got := false
	for !got {
		err := r.receiveOne(0, func(h nlHeader, gid uint32, writer int, isGen bool) error {
			if h.pid != r.portid || h.seq != r.seq {
				return nil
			}
			if h.typ == unix.NLMSG_ERROR {
				return h.err
			}
			if isGen {
				gen, got = gid, true
			}
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("reading the nf_tables generation: %w", err)
		}
	}
	return gen, nil
}

// drain reads every queued message, noting commits, until none is left
// (EAGAIN).
func (r *nftRuleset) drain() error {
	for {
		if err := r.receiveOne(unix.MSG_DONTWAIT, func(nlHeader, uint32, int, bool) error { return nil }); err != nil {
			return err
		}
	}
}

type nlHeader struct {
	typ      uint16
	seq, pid uint32
	err      error // for NLMSG_ERROR: the errno, nil for an ack
}

// receiveOne reads one datagram and hands each message in it to fn with
// its header and, for a NEWGEN message, the generation and the writer's
// pid. Multicast NEWGEN messages (from no request of ours) are noted as
// commits while watching.
func (r *nftRuleset) receiveOne(flags int, fn func(h nlHeader, gen uint32, writer int, isGen bool) error) error {
	if r.buf == nil {
		r.buf = make([]byte, 64<<10)
	}
	n, _, err := unix.Recvfrom(r.fd, r.buf, flags)
	if err != nil {
		if errors.Is(err, unix.ENOBUFS) {
			// The kernel dropped notices it could not queue.
			r.lost = true
			return nil
		}
		return err
	}
	msgs, err := syscall.ParseNetlinkMessage(r.buf[:n])
	if err != nil {
		return err
	}
	for _, m := range msgs {
		h := nlHeader{typ: m.Header.Type, seq: m.Header.Seq, pid: m.Header.Pid}
		if h.typ == unix.NLMSG_ERROR && len(m.Data) >= 4 {
			if errno := int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
				h.err = unix.Errno(-errno)
			}
		}
		var gen uint32
		writer, isGen := 0, h.typ == unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWGEN
		if isGen {
			var haveGen bool
			gen, writer, haveGen = parseNewGen(m.Data)
			isGen = haveGen
		}
		mine := h.pid == r.portid && h.seq == r.seq
		if isGen && !mine && r.watching {
			r.commits = append(r.commits, Commit{Gen: gen, Writer: writer})
		}
		if err := fn(h, gen, writer, isGen); err != nil {
			return err
		}
	}
	return nil
}

// parseNewGen reads a NEWGEN message's body: the nfgenmsg header, then
// NFTA_GEN_ID and NFTA_GEN_PROC_PID, both big-endian.
func parseNewGen(data []byte) (gen uint32, pid int, ok bool) {
	if len(data) < nfgenmsgLen {
		return 0, 0, false
	}
	attrs := data[nfgenmsgLen:]
	for len(attrs) >= unix.SizeofNlAttr {
		l := int(binary.NativeEndian.Uint16(attrs[0:]))
		typ := binary.NativeEndian.Uint16(attrs[2:]) & nlaTypeMask
		if l < unix.SizeofNlAttr || l > len(attrs) {
			return 0, 0, false
		}
		val := attrs[unix.SizeofNlAttr:l]
		switch {
		case typ == unix.NFTA_GEN_ID && len(val) == 4:
			gen, ok = binary.BigEndian.Uint32(val), true
		case typ == unix.NFTA_GEN_PROC_PID && len(val) == 4:
			pid = int(binary.BigEndian.Uint32(val))
		}
		next := (l + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1)
		if next > len(attrs) {
			break
		}
		attrs = attrs[next:]
	}
	return gen, pid, ok
}

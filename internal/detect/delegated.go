package detect

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// A delegated prefix (DHCPv6-PD) is not installed anywhere the kernel
// would show it: DHCP clients only record it in their lease files, and
// the admin (or a hook) numbers LANs from it. So discovery reads those
// records, as it reads IPv4 leases when no route names a gateway.

// delegation is one prefix a DHCPv6 server delegated, with when it
// expires.
type delegation struct {
	prefix  netip.Prefix
	expires time.Time
}

// findDelegated looks for the prefix delegated over dev in the lease
// files of dhclient (-6 -P, also as NetworkManager's backend) and dhcpcd.
// Among unexpired delegations the one expiring last wins: that is the
// newest lease. Unreadable files are warnings, not failures.
func findDelegated(root, dev string, now time.Time) (netip.Prefix, string, []string) {
	// A hook's word is fresher than any lease file.
	hooked, hookFrom, known, warning := hookDelegation(root, dev, now)
	if known {
		return hooked, hookFrom, nil
	}
	var (
		best     delegation
		bestPath string
		warnings []string
	)
	if warning != "" {
		warnings = append(warnings, warning)
	}
	consider := func(path string, ds []delegation) {
		for _, d := range ds {
			if d.expires.After(now) && d.expires.After(best.expires) {
				best, bestPath = d, path
			}
		}
	}
	read := func(path string) ([]byte, bool) {
		data, err := readBounded(path)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				warnings = append(warnings, err.Error())
			}
			return nil, false
		}
		return data, true
	}
	for _, dir := range []string{dirDhclientDebian, dirDhclientRedHat, dirNetworkManager} {
		entries, err := os.ReadDir(filepath.Join(root, dir))
		if err != nil {
			continue // no such client on this system
		}
		for _, e := range entries {
			if !e.Type().IsRegular() || !dhclient6FileFor(e.Name(), dev) {
				continue
			}
			path := filepath.Join(root, dir, e.Name())
			if data, ok := read(path); ok {
				consider(path, dhclientDelegations(data, dev))
			}
		}
	}
	path := filepath.Join(root, dirDhcpcd, dev+".lease6")
	if data, ok := read(path); ok {
		if st, err := os.Stat(path); err == nil {
			ds, err := dhcpcdDelegations(data, st.ModTime())
			if err != nil {
				warnings = append(warnings, fmt.Sprintf("%s: %v", path, err))
			}
			consider(path, ds)
		}
	}
	if !best.prefix.IsValid() {
		return netip.Prefix{}, "", warnings
	}
	return best.prefix, FromLeasePrefix + bestPath, warnings
}

// readBounded reads a lease file, refusing one too large to be a lease.
func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if st.Size() > maxLeaseFile {
		return nil, fmt.Errorf("reading %s: %d bytes is too large for a lease file", path, st.Size())
	}
	data := make([]byte, st.Size())
	if _, err := f.ReadAt(data, 0); err != nil && st.Size() > 0 {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return data, nil
}

// dhclient6FileFor decides whether a file holds dhclient's IPv6 leases
// for dev: dhclient6.leases (shared by every device), dhclient6.DEV.leases
// or dhclient6-DEV.leases as distributions name them, and NetworkManager's
// dhclient6-UUID-DEV.lease.
func dhclient6FileFor(name, dev string) bool {
	stem, ok := strings.CutSuffix(name, ".leases")
	if !ok {
		if stem, ok = strings.CutSuffix(name, ".lease"); !ok {
			return false
		}
	}
	rest, ok := strings.CutPrefix(stem, "dhclient6")
	if !ok {
		return false
	}
	return rest == "" || (dev != "" && (strings.HasSuffix(rest, "."+dev) || strings.HasSuffix(rest, "-"+dev)))
}

// dhclientDelegations reads the iaprefix blocks of dhclient's newest
// lease6 block for dev (or for no named device):
//
//	lease6 { interface "wan1";
//	  ia-pd 1a:2b:3c:4d { starts 1764550000; renew 1800; rebind 2880;
//	    iaprefix 2001:db8:100::/56 { starts 1764550000; preferred-life 3600; max-life 7200; } } }
//
// It uses the same tokenizer as IPv4 leases, so text inside quoted
// strings cannot forge structure.
func dhclientDelegations(data []byte, dev string) []delegation {
	var (
		out     []delegation
		stack   []string // the keyword opening each enclosing block
		stmt    []dhToken
		iface   string
		pending []delegation // of the lease6 block being read
		cur     *delegation
		starts  int64
		maxLife int64
	)
	for _, t := range tokenizeDhclient(data) {
		switch {
		case t.punct('{'):
			kw := ""
			if len(stmt) > 0 {
				kw = stmt[0].text
			}
			if kw == "lease6" && len(stack) == 0 {
				iface, pending = "", nil
			}
			if kw == "iaprefix" && len(stmt) == 2 && len(stack) == 2 && stack[0] == "lease6" && stack[1] == "ia-pd" {
				if p, err := netip.ParsePrefix(stmt[1].text); err == nil && p.Addr().Is6() && p == p.Masked() && p.Addr().IsGlobalUnicast() {
					cur, starts, maxLife = &delegation{prefix: p}, -1, -1
				}
			}
			stack = append(stack, kw)
			stmt = stmt[:0]
		case t.punct('}'):
			if len(stack) == 0 {
				stmt = stmt[:0]
				continue
			}
			closing := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			switch {
			case closing == "iaprefix" && cur != nil:
				if starts >= 0 && maxLife >= 0 {
					cur.expires = time.Unix(starts, 0).Add(time.Duration(maxLife) * time.Second)
					pending = append(pending, *cur)
				}
				cur = nil
			case closing == "lease6" && len(stack) == 0:
				if iface == "" || iface == dev {
					// dhclient appends each new lease: the last block is
					// the current one, and an older block's prefix that the
					// server has since withdrawn (max-life 0) is gone.
					out = pending
				}
				pending = nil
			}
			stmt = stmt[:0]
		case t.punct(';'):
			switch {
			case len(stack) == 1 && stack[0] == "lease6" && len(stmt) == 2 && stmt[0].word("interface"):
				iface = stmt[1].text
			case cur != nil && len(stmt) == 2 && stmt[0].word("starts"):
				starts = parseSeconds(stmt[1].text)
			case cur != nil && len(stmt) == 2 && stmt[0].word("max-life"):
				maxLife = parseSeconds(stmt[1].text)
			}
			stmt = stmt[:0]
		default:
			stmt = append(stmt, t)
		}
	}
	return out
}

// parseSeconds reads a lease's count of seconds, -1 when it is none.
// "infinity" lifetimes are written by dhclient as 4294967295.
func parseSeconds(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > 1<<40 {
		return -1
	}
	return n
}

// DHCPv6 option codes (RFC 8415).
const (
	dhcp6OptIAPD     = 25
	dhcp6OptIAPrefix = 26
	dhcp6HeaderLen   = 4  // message type and transaction id
	iaPDHeaderLen    = 12 // IAID, T1, T2
	iaPrefixFixedLen = 25 // preferred and valid lifetimes, length, prefix
)

// dhcpcdDelegations reads dhcpcd's DEV.lease6: the server's DHCPv6 reply
// as received. Lifetimes count from when dhcpcd wrote the file.
func dhcpcdDelegations(data []byte, written time.Time) ([]delegation, error) {
	if len(data) < dhcp6HeaderLen {
		return nil, errors.New("too short for a DHCPv6 message")
	}
	var out []delegation
	err := walkDHCP6Options(data[dhcp6HeaderLen:], func(code uint16, body []byte) error {
		if code != dhcp6OptIAPD {
			return nil
		}
		if len(body) < iaPDHeaderLen {
			return errors.New("IA_PD option too short")
		}
		return walkDHCP6Options(body[iaPDHeaderLen:], func(code uint16, body []byte) error {
			if code != dhcp6OptIAPrefix {
				return nil
			}
			if len(body) < iaPrefixFixedLen {
				return errors.New("IAPREFIX option too short")
			}
			valid := binary.BigEndian.Uint32(body[4:8])
			bits := int(body[8])
			addr := netip.AddrFrom16([16]byte(body[9:25]))
			p, err := addr.Prefix(bits)
			if err != nil || bits == 0 || bits > 128 || p.Addr() != addr || !addr.IsGlobalUnicast() || valid == 0 {
				return nil // not a prefix anyone could use; skip it
			}
			out = append(out, delegation{prefix: p, expires: written.Add(time.Duration(valid) * time.Second)})
			return nil
		})
	})
	return out, err
}

// walkDHCP6Options calls fn for each option of an option area.
func walkDHCP6Options(area []byte, fn func(code uint16, body []byte) error) error {
	for len(area) > 0 {
		if len(area) < 4 {
			return errors.New("truncated DHCPv6 option header")
		}
		code, n := binary.BigEndian.Uint16(area), int(binary.BigEndian.Uint16(area[2:]))
		if len(area) < 4+n {
			return fmt.Errorf("DHCPv6 option %d runs past the end", code)
		}
		if err := fn(code, area[4:4+n]); err != nil {
			return err
		}
		area = area[4+n:]
	}
	return nil
}

// HookDelegation is a DHCPv6 hook's record of the prefix delegated over a
// device, kept next to the IPv4 hook leases as DEV.ipv6. A zero Prefix
// records that the delegation ended.
type HookDelegation struct {
	Prefix netip.Prefix `json:"prefix,omitzero"`
	// Expires ends the record's use; zero means no known lifetime.
	Expires time.Time `json:"expires,omitzero"`
	// Source says who told us, for -s and logs ("dhclient RENEW6").
	Source string `json:"source"`
}

// WriteHookDelegation records d for device dev, atomically.
func WriteHookDelegation(root, dev string, d HookDelegation) error {
	path, err := hookLeasePath(root, dev)
	if err != nil {
		return err
	}
	return writeRecord(path+".ipv6", d)
}

// hookDelegation reads dev's record: known says a hook has spoken and
// not expired, and then prefix (possibly none) is the truth.
func hookDelegation(root, dev string, now time.Time) (prefix netip.Prefix, source string, known bool, warning string) {
	path, err := hookLeasePath(root, dev)
	if err != nil {
		return netip.Prefix{}, "", false, ""
	}
	data, err := readBounded(path + ".ipv6")
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return netip.Prefix{}, "", false, ""
	case err != nil:
		return netip.Prefix{}, "", false, err.Error()
	}
	var d HookDelegation
	if len(data) > maxHookLease || json.Unmarshal(data, &d) != nil ||
		(d.Prefix.IsValid() && (!d.Prefix.Addr().Is6() || d.Prefix != d.Prefix.Masked() || !d.Prefix.Addr().IsGlobalUnicast())) {
		return netip.Prefix{}, "", false, fmt.Sprintf("reading hook lease %s.ipv6: not a record ispbalance wrote", path)
	}
	if !d.Expires.IsZero() && now.After(d.Expires) {
		return netip.Prefix{}, "", false, ""
	}
	return d.Prefix, FromHookPrefix + d.Source, true, ""
}

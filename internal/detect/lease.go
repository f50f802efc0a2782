package detect

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// leaseKind names a lease file format.
type leaseKind int

const (
	// kindDhclient is ISC dhclient's lease database, also written by
	// NetworkManager's dhclient backend. Blocks naming another interface
	// are skipped.
	kindDhclient leaseKind = iota
	// kindDhclientShared is a dhclient database not named after a device,
	// so only blocks that name the interface count.
	kindDhclientShared
	// kindKeyValue is the KEY=VALUE format of systemd-networkd and of
	// NetworkManager's internal client, or the JSON that newer networkd
	// writes in the same place.
	kindKeyValue
	// kindBootp is dhcpcd's lease: the DHCP reply as received.
	kindBootp
)

// leaseFile is one candidate lease file, already read.
type leaseFile struct {
	Path    string
	ModTime time.Time
	Kind    leaseKind
	Data    []byte
}

// leaseFacts is what one lease file says, still as untrusted text.
type leaseFacts struct {
	addr    string   // the address the lease was for; "" when not stated
	routers []string // in the server's order
}

// pickLease returns the first usable router of the newest lease for dev
// whose address, where the lease states one, is the device's current
// address. Everything in a lease was chosen by whoever answered DHCP on
// that wire, so routers are accepted only as plain unicast IPv4 addresses;
// rejected values are reported as warnings, never used.
func pickLease(files []leaseFile, dev string, own netip.Addr) (gw netip.Addr, path string, warnings []string) {
	var newest time.Time
	for _, f := range files {
		facts, ok, err := leaseFactsOf(f, dev)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("lease %s: %s", f.Path, clipError(err)))
		}
		if !ok {
			continue
		}
		if facts.addr != "" {
			a, err := netip.ParseAddr(facts.addr)
			if err != nil || a != own {
				continue // a stale lease, or one for another address
			}
		}
		var router netip.Addr
		for _, r := range facts.routers {
			a, ok := usableRouter(r)
			if !ok {
				warnings = append(warnings, fmt.Sprintf("lease %s: ignoring router %s: not a unicast IPv4 address", f.Path, quoteShort(r)))
				continue
			}
			if a == own {
				warnings = append(warnings, fmt.Sprintf("lease %s: ignoring router %s: it is the device's own address", f.Path, a))
				continue
			}
			router = a
			break
		}
		if !router.IsValid() {
			continue
		}
		if !gw.IsValid() || !f.ModTime.Before(newest) {
			gw, path, newest = router, f.Path, f.ModTime
		}
	}
	return gw, path, warnings
}

func leaseFactsOf(f leaseFile, dev string) (leaseFacts, bool, error) {
	switch f.Kind {
	case kindDhclient, kindDhclientShared:
		return dhclientFacts(parseDhclient(f.Data), dev, f.Kind == kindDhclientShared)
	case kindKeyValue:
		if t := bytes.TrimSpace(f.Data); len(t) > 0 && t[0] == '{' {
			return networkdJSONFacts(t)
		}
		return keyValueFacts(parseKeyValue(f.Data))
	case kindBootp:
		return bootpFacts(f.Data)
	}
	return leaseFacts{}, false, fmt.Errorf("unknown lease format %d", f.Kind)
}

// usableRouter accepts what could be a next hop: a unicast IPv4 address.
// netip.ParseAddr already refuses octal-looking and zoned forms.
func usableRouter(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || !isUsableRouter(a) {
		return netip.Addr{}, false
	}
	return a, true
}

func isUsableRouter(a netip.Addr) bool {
	return a.Is4() && !a.IsUnspecified() && !a.IsLoopback() && !a.IsMulticast() &&
		a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// quoteShort quotes untrusted text for a message, cut short so a hostile
// lease cannot flood the log that eventually shows it.
func quoteShort(s string) string {
	const limit = 40
	if len(s) > limit {
		return fmt.Sprintf("%q...", s[:limit])
	}
	return fmt.Sprintf("%q", s)
}

// clipError cuts the message of an error about a lease's contents: the
// JSON decoder quotes a number it cannot store whole, however long.
func clipError(err error) string {
	const limit = 200
	s := err.Error()
	if len(s) > limit {
		s = strings.ToValidUTF8(s[:limit], "") + "..."
	}
	return s
}

// dhclientLease is one `lease { ... }` block.
type dhclientLease struct {
	iface   string
	fixed   string
	routers []string
}

// dhclientFacts takes the last block for dev: dhclient appends every new
// lease, so the last one is the newest.
func dhclientFacts(leases []dhclientLease, dev string, shared bool) (leaseFacts, bool, error) {
	for i := len(leases) - 1; i >= 0; i-- {
		l := leases[i]
		if l.iface != dev && (l.iface != "" || shared) {
			continue
		}
		return leaseFacts{addr: l.fixed, routers: l.routers}, true, nil
	}
	return leaseFacts{}, false, nil
}

// parseDhclient reads the lease blocks of a dhclient lease database. It
// knows the file's token grammar (quoted strings with backslash escapes, #
// comments, braces) so that text inside a server-supplied string, such as
// a domain name containing "}" or "option routers", cannot end a block or
// forge a statement. A block cut short by a concurrent write is dropped.
func parseDhclient(data []byte) []dhclientLease {
	var (
		out   []dhclientLease
		cur   *dhclientLease
		stmt  []dhToken
		depth int
	)
	for _, t := range tokenizeDhclient(data) {
		switch {
		case t.punct('{'):
			depth++
			if depth == 1 && len(stmt) == 1 && stmt[0].word("lease") {
				cur = &dhclientLease{}
			}
			stmt = stmt[:0]
		case t.punct('}'):
			if depth == 1 && cur != nil {
				out = append(out, *cur)
				cur = nil
			}
			depth = max(depth-1, 0)
			stmt = stmt[:0]
		case t.punct(';'):
			if depth == 1 && cur != nil {
				cur.apply(stmt)
			}
			stmt = stmt[:0]
		default:
			stmt = append(stmt, t)
		}
	}
	return out
}

func (l *dhclientLease) apply(stmt []dhToken) {
	switch {
	case len(stmt) == 2 && stmt[0].word("interface"):
		l.iface = stmt[1].text
	case len(stmt) == 2 && stmt[0].word("fixed-address"):
		l.fixed = stmt[1].text
	case len(stmt) >= 3 && stmt[0].word("option") && stmt[1].word("routers"):
		l.routers = l.routers[:0]
		for _, t := range stmt[2:] {
			if !t.punct(',') {
				l.routers = append(l.routers, t.text)
			}
		}
	}
}

type dhToken struct {
	text   string
	quoted bool // quoted text is data, never syntax
}

func (t dhToken) punct(c byte) bool  { return !t.quoted && len(t.text) == 1 && t.text[0] == c }
func (t dhToken) word(w string) bool { return !t.quoted && t.text == w }

// tokenizeDhclient splits a lease database into tokens. An unterminated
// string swallows the rest of the file, which only loses the block being
// written at that moment.
func tokenizeDhclient(data []byte) []dhToken {
	const punct, space, atomEnd = "{};,", " \t\r\n", "{};,\" \t\r\n#"
	var toks []dhToken
	for i := 0; i < len(data); {
		c := data[i]
		switch {
		case strings.IndexByte(space, c) >= 0:
			i++
		case c == '#':
			if nl := bytes.IndexByte(data[i:], '\n'); nl >= 0 {
				i += nl + 1
			} else {
				i = len(data)
			}
		case strings.IndexByte(punct, c) >= 0:
			toks = append(toks, dhToken{text: string(c)})
			i++
		case c == '"':
			var s []byte
			j := i + 1
			for ; j < len(data) && data[j] != '"'; j++ {
				if data[j] == '\\' && j+1 < len(data) {
					j++
				}
				s = append(s, data[j])
			}
			if j >= len(data) {
				return toks
			}
			toks = append(toks, dhToken{text: string(s), quoted: true})
			i = j + 1
		default:
			j := i
			for j < len(data) && strings.IndexByte(atomEnd, data[j]) < 0 {
				j++
			}
			toks = append(toks, dhToken{text: string(data[i:j])})
			i = j
		}
	}
	return toks
}

// parseKeyValue reads systemd's environment-style state files: one
// KEY=VALUE per line, # comments. Later keys win, as when systemd loads it.
func parseKeyValue(data []byte) map[string]string {
	kv := make(map[string]string)
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		kv[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return kv
}

// keyValueFacts reads ROUTER (a space-separated list) and ADDRESS.
// NetworkManager's internal client saves only ADDRESS, so such a lease
// never yields a gateway; networkd saves both.
func keyValueFacts(kv map[string]string) (leaseFacts, bool, error) {
	routers := strings.Fields(kv["ROUTER"])
	if len(routers) == 0 {
		return leaseFacts{}, false, nil
	}
	return leaseFacts{addr: kv["ADDRESS"], routers: routers}, true, nil
}

// networkdJSONFacts reads the JSON lease that systemd-networkd writes in
// newer versions, where addresses are arrays of four byte values.
func networkdJSONFacts(data []byte) (leaseFacts, bool, error) {
	var doc struct {
		Address json.RawMessage
		Router  []json.RawMessage
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return leaseFacts{}, false, fmt.Errorf("reading JSON lease: %w", err)
	}
	var facts leaseFacts
	if len(doc.Address) > 0 {
		a, err := jsonIPv4(doc.Address)
		if err != nil {
			return leaseFacts{}, false, fmt.Errorf("reading lease address: %w", err)
		}
		facts.addr = a
	}
	for _, raw := range doc.Router {
		a, err := jsonIPv4(raw)
		if err != nil {
			a = string(raw) // let the router check reject and report it
		}
		facts.routers = append(facts.routers, a)
	}
	return facts, len(facts.routers) > 0, nil
}

func jsonIPv4(raw json.RawMessage) (string, error) {
	var b []int
	if err := json.Unmarshal(raw, &b); err != nil {
		return "", err
	}
	if len(b) != 4 {
		return "", fmt.Errorf("%d bytes in an IPv4 address", len(b))
	}
	var a [4]byte
	for i, v := range b {
		if v < 0 || v > 255 {
			return "", fmt.Errorf("byte value %d out of range", v)
		}
		a[i] = byte(v)
	}
	return netip.AddrFrom4(a).String(), nil
}

// Layout of a BOOTP/DHCP message (RFC 2131 §2, RFC 2132 §2 and §3.5).
const (
	bootpYiaddr  = 16
	bootpOptions = 240
	optPad       = 0
	optRouter    = 3
	optEnd       = 255
)

var dhcpMagic = []byte{99, 130, 83, 99}

// bootpFacts reads dhcpcd's lease file, which is the server's reply as it
// arrived: the offered address in yiaddr and routers in option 3. Option
// overload into the sname/file fields is not followed; servers put option 3
// in the main options area in practice.
func bootpFacts(data []byte) (leaseFacts, bool, error) {
	if len(data) < bootpOptions || !bytes.Equal(data[bootpOptions-4:bootpOptions], dhcpMagic) {
		return leaseFacts{}, false, fmt.Errorf("not a DHCP message")
	}
	var facts leaseFacts
	if y := netip.AddrFrom4([4]byte(data[bootpYiaddr : bootpYiaddr+4])); !y.IsUnspecified() {
		facts.addr = y.String()
	}
	opts := data[bootpOptions:]
	for len(opts) > 0 {
		code := opts[0]
		if code == optEnd {
			break
		}
		if code == optPad {
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 || len(opts) < 2+int(opts[1]) {
			return leaseFacts{}, false, fmt.Errorf("DHCP option %d runs past the end", code)
		}
		body := opts[2 : 2+int(opts[1])]
		opts = opts[2+len(body):]
		if code != optRouter {
			continue
		}
		if len(body)%4 != 0 {
			return leaseFacts{}, false, fmt.Errorf("router option of %d bytes", len(body))
		}
		for ; len(body) >= 4; body = body[4:] {
			facts.routers = append(facts.routers, netip.AddrFrom4([4]byte(body[:4])).String())
		}
	}
	return facts, len(facts.routers) > 0, nil
}

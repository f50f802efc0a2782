package lab

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netns"
)

// Limits on the size of a lab. Sixteen ISPs keep every ISP's uplink inside
// 198.51.100.0/26; two LANs are enough to test per-LAN behaviour.
const (
	MaxISPs = 16
	MaxLANs = 2
)

// maxBaseLen keeps full names such as "<base>-<6 hex>-router" short
// enough to read in `ip netns list`.
const maxBaseLen = 12

var validBase = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// Options describe the lab to build. The zero value is a valid lab of two
// ISPs and one LAN.
type Options struct {
	// Prefix is the base of every namespace name; New adds a random
	// suffix so that labs of test packages running in parallel can
	// coexist. Up to 12 characters from [a-z0-9-]; default "lab".
	Prefix string
	// ISPs is the number of ISPs, 1..MaxISPs; default 2.
	ISPs int
	// LANs is the number of LANs, 1..MaxLANs; default 1.
	LANs int
	// NoForwarding leaves net.ipv4.ip_forward at 0 in the router, for
	// testing software that has to switch it on itself. ISPs always
	// forward.
	NoForwarding bool
	// BareRouter leaves the router's ends of its links without addresses
	// and down, and forwarding off, as a freshly booted kernel has them:
	// for a router whose own system (ifupdown, NetworkManager, networkd)
	// configures them. The ISP, LAN and internet sides are built as usual.
	BareRouter bool
}

func (o Options) normalise() (Options, error) {
	if o.Prefix == "" {
		o.Prefix = "lab"
	}
	if len(o.Prefix) > maxBaseLen || !validBase.MatchString(o.Prefix) {
		return o, fmt.Errorf("lab prefix %q: want 1..%d characters from [a-z0-9-]", o.Prefix, maxBaseLen)
	}
	if o.ISPs == 0 {
		o.ISPs = 2
	}
	if o.ISPs < 1 || o.ISPs > MaxISPs {
		return o, fmt.Errorf("lab with %d ISPs: want 1..%d", o.ISPs, MaxISPs)
	}
	if o.LANs == 0 {
		o.LANs = 1
	}
	if o.LANs < 1 || o.LANs > MaxLANs {
		return o, fmt.Errorf("lab with %d LANs: want 1..%d", o.LANs, MaxLANs)
	}
	return o, nil
}

// Lab is a built topology. Its methods are safe for concurrent use.
type Lab struct {
	prefix string
	isps   int
	lans   int
	// bareRouter and noForwarding are the Options of the same names,
	// kept for ResetRouter.
	bareRouter   bool
	noForwarding bool

	mu     sync.Mutex
	closed bool
	// created lists the full names whose /run/netns entry this lab made,
	// so that Close removes exactly those, even after a failed New, and
	// never a namespace of another lab.
	created []string
	// handles keeps one descriptor per namespace, by short name.
	handles  map[string]netns.NsHandle
	stoppers map[int]func()
	nextID   int

	faultSeq atomic.Uint64
}

// buildHook, when set by a test, is called with the namespace prefix once
// the namespaces and links exist; an error makes New fail there, which is
// how the cleanup after a partial build is tested.
var buildHook func(prefix string) error

// New builds a lab. On error everything built so far has been removed.
func New(opts Options) (*Lab, error) {
	opts, err := opts.normalise()
	if err != nil {
		return nil, err
	}
	var suffix [3]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return nil, fmt.Errorf("choosing a lab name: %w", err)
	}
	l := &Lab{
		prefix:       opts.Prefix + "-" + hex.EncodeToString(suffix[:]),
		isps:         opts.ISPs,
		lans:         opts.LANs,
		bareRouter:   opts.BareRouter,
		noForwarding: opts.NoForwarding,
		handles:      make(map[string]netns.NsHandle),
		stoppers:     make(map[int]func()),
	}
	if err := l.build(opts); err != nil {
		if cerr := l.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("removing the partly built lab: %w", cerr))
		}
		return nil, fmt.Errorf("building lab %s: %w", l.prefix, err)
	}
	return l, nil
}

// Close stops the servers and ping streams started through the lab and
// deletes its namespaces, which destroys every link, address, route and
// firewall rule in them. Connections returned by DialTCP belong to the
// caller; until they are closed the kernel keeps their namespace alive
// without a name. Calling Close again does nothing.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	stoppers, handles, created := l.stoppers, l.handles, l.created
	l.stoppers, l.handles = nil, nil
	l.mu.Unlock()

	for _, stop := range stoppers {
		stop()
	}
	var errs []error
	for short, h := range handles {
		if err := h.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing the handle of namespace %s: %w", short, err))
		}
	}
	for i := len(created) - 1; i >= 0; i-- {
		if err := removeNamespace(created[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Prefix is the common start of the lab's namespace names.
func (l *Lab) Prefix() string { return l.prefix }

// ISPs is the number of ISPs in the lab.
func (l *Lab) ISPs() int { return l.isps }

// LANs is the number of LANs in the lab.
func (l *Lab) LANs() int { return l.lans }

// Names returns the short names of the lab's namespaces: "router",
// "inet", "isp1".."ispN", "lan1".."lanM".
func (l *Lab) Names() []string {
	names := []string{"router", "inet"}
	for k := 1; k <= l.isps; k++ {
		names = append(names, "isp"+strconv.Itoa(k))
	}
	for j := 1; j <= l.lans; j++ {
		names = append(names, "lan"+strconv.Itoa(j))
	}
	return names
}

// NS returns the full namespace name for a short name such as "router",
// "isp1", "lan1" or "inet", as used by `ip netns exec`; "" if the lab has
// no such namespace.
func (l *Lab) NS(name string) string {
	short, ok := l.short(name)
	if !ok {
		return ""
	}
	return l.prefix + "-" + short
}

// short accepts a short name or a full one of this lab.
func (l *Lab) short(name string) (string, bool) {
	name = strings.TrimPrefix(name, l.prefix+"-")
	for _, n := range l.Names() {
		if n == name {
			return n, true
		}
	}
	return "", false
}

// ISPGateway is ISP k's address on the router's link, 100.64.k.1.
func (l *Lab) ISPGateway(k int) netip.Addr { return netip.AddrFrom4([4]byte{100, 64, byte(k), 1}) }

// RouterISPAddr is the router's address on ISP k's link, 100.64.k.2.
func (l *Lab) RouterISPAddr(k int) netip.Addr { return netip.AddrFrom4([4]byte{100, 64, byte(k), 2}) }

// ISPSubnet is the router's link to ISP k, 100.64.k.0/24.
func (l *Lab) ISPSubnet(k int) netip.Prefix { return netip.PrefixFrom(l.ISPGateway(k), 24).Masked() }

// RouterLANAddr is the router's address on LAN j, 192.168.j.1.
func (l *Lab) RouterLANAddr(j int) netip.Addr { return netip.AddrFrom4([4]byte{192, 168, byte(j), 1}) }

// LANHost is the address of the host on LAN j, 192.168.j.10.
func (l *Lab) LANHost(j int) netip.Addr { return netip.AddrFrom4([4]byte{192, 168, byte(j), 10}) }

// ServerAddr is the internet server's address, 203.0.113.10.
func (l *Lab) ServerAddr() netip.Addr { return serverAddr }

var serverAddr = netip.AddrFrom4([4]byte{203, 0, 113, 10})

// ISPForAddr returns k when a is the router's address on ISP k's link,
// 0 otherwise.
func (l *Lab) ISPForAddr(a netip.Addr) int {
	a = a.Unmap()
	if !a.Is4() {
		return 0
	}
	b := a.As4()
	k := int(b[2])
	if b[0] != 100 || b[1] != 64 || b[3] != 2 || k < 1 || k > l.isps {
		return 0
	}
	return k
}

// ispUplink returns ISP k's address towards the internet and the
// internet's address towards ISP k: the two ends of 198.51.100.(4k-4)/30.
func ispUplink(k int) (isp, inet netip.Addr) {
	base := byte(4 * (k - 1))
	return netip.AddrFrom4([4]byte{198, 51, 100, base + 1}), netip.AddrFrom4([4]byte{198, 51, 100, base + 2})
}

func (l *Lab) checkISP(k int) (string, error) {
	if k < 1 || k > l.isps {
		return "", fmt.Errorf("no ISP %d in a lab with %d ISPs", k, l.isps)
	}
	return "isp" + strconv.Itoa(k), nil
}

// track registers stop to be called by Close; the returned func forgets it
// again once the caller stopped on its own.
func (l *Lab) track(stop func()) (untrack func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errors.New("lab is closed")
	}
	l.nextID++
	id := l.nextID
	l.stoppers[id] = stop
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		delete(l.stoppers, id)
	}, nil
}

// labPrograms are what the labs and their checks run.
var labPrograms = []string{"ip", "iptables", "iptables-save", "iptables-restore", "ping", "socat", "conntrack", "nsenter", "sysctl"}

// Available reports what is missing for building labs here, or nil.
// Callers use it to skip or fail with a clear reason.
func Available() error {
	var errs []error
	if os.Geteuid() != 0 {
		errs = append(errs, errors.New("not running as root"))
	}
	for _, prog := range labPrograms {
		if _, err := exec.LookPath(prog); err != nil {
			errs = append(errs, fmt.Errorf("looking for %s: %w", prog, err))
		}
	}
	return errors.Join(errs...)
}

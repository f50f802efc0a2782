package hook

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Source names the tool that ran the hook, as given to `ifup-balance hook`.
type Source string

const (
	Ifupdown       Source = "ifupdown"
	Dhclient       Source = "dhclient"
	Dhcpcd         Source = "dhcpcd"
	NetworkManager Source = "networkmanager"
	Networkd       Source = "networkd-dispatcher"
	IfupLocal      Source = "ifup-local"
	IfdownLocal    Source = "ifdown-local"
)

// Sources lists every source Parse understands, for help texts.
var Sources = []Source{Ifupdown, Dhclient, Dhcpcd, NetworkManager, Networkd, IfupLocal, IfdownLocal}

// Action is what happened, reduced to what a rebuild cares about.
type Action string

const (
	// None: the event changes nothing ispbalance uses (a pre-up phase, an
	// IPv6 lease, a hostname change); the hook does nothing.
	None Action = ""
	// Up: the device was configured or got a (new) lease.
	Up Action = "up"
	// Change: a lease was renewed or a configuration reapplied; the facts
	// may or may not differ.
	Change Action = "change"
	// Down: the device or its lease went away.
	Down Action = "down"
)

// Event is one hook call, validated.
type Event struct {
	Source Source
	// Device is the kernel interface the event is about; empty for a
	// global event (NetworkManager's connectivity-change).
	Device string
	Action Action
	// Gateway and Addr are the router and the device address the event
	// names, when it names them (the zero Addr otherwise).
	Gateway netip.Addr
	Addr    netip.Addr
	// Lease is the lease's lifetime, 0 when unknown.
	Lease time.Duration
	// What is the tool's own word for the event ("RENEW", "dhcp4-change",
	// "post-up"), for logs.
	What string
	// Connection is NetworkManager's connection name, for logs only.
	Connection string
	// IPv6 marks an event about the device's IPv6 (a DHCPv6 lease):
	// Action is then Change, and Gateway, Addr and Lease are unset.
	IPv6 bool
	// Delegated is the prefix a DHCPv6 lease delegates, when the event
	// names one; DelegatedLife is its valid lifetime (0 when unknown).
	// An IPv6 event without one means the delegation is gone.
	Delegated     netip.Prefix
	DelegatedLife time.Duration
}

// MaxValue bounds every value read. The longest real ones are router or
// address lists of a few dozen bytes; anything near this is an attack or
// a bug, and is refused rather than carried into logs.
const MaxValue = 1024

// ValueError is a refused value; Var names the variable (or argument).
type ValueError struct {
	Var    string
	Reason string
}

func (e *ValueError) Error() string { return e.Var + ": " + e.Reason }

// refuse describes a bad value without repeating an absurd one in full.
func refuse(name, value, why string) error {
	shown := value
	if len(shown) > 64 {
		shown = shown[:64] + "..."
	}
	return &ValueError{Var: name, Reason: fmt.Sprintf("%q %s", shown, why)}
}

// vars reads and length-checks variables.
type vars struct {
	getenv func(string) string
}

func (v vars) get(name string) (string, error) {
	s := v.getenv(name)
	if len(s) > MaxValue {
		return "", &ValueError{Var: name, Reason: fmt.Sprintf("a value of %d bytes is longer than any real one (%d)", len(s), MaxValue)}
	}
	return s, nil
}

// Parse reads one hook call: src says which tool ran it, args are the
// arguments the tool passed (after the source word), getenv its
// environment. An event that ispbalance does not care about comes back
// with Action None and no error; an error means a value was refused.
func Parse(src Source, args []string, getenv func(string) string) (Event, error) {
	v := vars{getenv: getenv}
	switch src {
	case Ifupdown:
		return parseIfupdown(v, args)
	case Dhclient, Dhcpcd:
		return parseDHCP(src, v, args)
	case NetworkManager:
		return parseNM(v, args)
	case Networkd:
		return parseNetworkd(v, args)
	case IfupLocal, IfdownLocal:
		return parseLocal(src, args)
	}
	return Event{}, fmt.Errorf("unknown hook source %q (known: %s)", clip(string(src)), strings.Join(sourceNames(), ", "))
}

func sourceNames() []string {
	out := make([]string, len(Sources))
	for i, s := range Sources {
		out[i] = string(s)
	}
	return out
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

func noArgs(src Source, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%s hooks take no arguments, got %d", src, len(args))
	}
	return nil
}

// CheckDevice applies the kernel's rules for interface names
// (dev_valid_name): 1 to 15 bytes, not "." or "..", no '/', ':' or
// whitespace; control characters are refused too, as no tool names a
// device with them.
//
// The kernel's isspace is Latin-1's: it also counts the byte 0xa0, which
// UTF-8 uses inside characters such as "à", so a name with such a
// character can never exist however valid its runes are.
func CheckDevice(name, value string) error {
	switch {
	case value == "":
		return &ValueError{Var: name, Reason: "not set"}
	case len(value) > 15:
		return refuse(name, value, "is longer than the kernel's 15-byte interface names")
	case value == "." || value == "..":
		return refuse(name, value, "is not an interface name")
	case !utf8.ValidString(value):
		return refuse(name, value, "is not valid UTF-8")
	case strings.IndexByte(value, 0xa0) >= 0:
		return refuse(name, value, "contains a character the kernel refuses in interface names")
	}
	for _, r := range value {
		if r == '/' || r == ':' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return refuse(name, value, "contains a character the kernel refuses in interface names")
		}
	}
	return nil
}

func device(v vars, name string) (string, error) {
	s, err := v.get(name)
	if err != nil {
		return "", err
	}
	return s, CheckDevice(name, s)
}

// addr4 parses an IPv4 address; empty is the zero Addr. "0.0.0.0" is what
// NetworkManager says for "no gateway", so it also means none.
func addr4(name, s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}, refuse(name, s, "is not an IPv4 address")
	}
	if a.IsUnspecified() {
		return netip.Addr{}, nil
	}
	return a, nil
}

func addrVar(v vars, name string) (netip.Addr, error) {
	s, err := v.get(name)
	if err != nil {
		return netip.Addr{}, err
	}
	return addr4(name, s)
}

// routers parses a space-separated router list (dhclient's new_routers,
// NetworkManager's DHCP4_ROUTERS) and returns the first usable one. Every
// entry must be an address: a list with junk in it is refused whole.
func routers(v vars, name string) (netip.Addr, error) {
	s, err := v.get(name)
	if err != nil {
		return netip.Addr{}, err
	}
	var first netip.Addr
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' }) {
		a, err := addr4(name, f)
		if err != nil {
			return netip.Addr{}, refuse(name, s, "is not a list of IPv4 addresses")
		}
		if !first.IsValid() && usableGateway(a) {
			first = a
		}
	}
	return first, nil
}

func usableGateway(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsLoopback() && !a.IsMulticast() && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// seconds parses a lease time in seconds.
func seconds(v vars, name string) (time.Duration, error) {
	s, err := v.get(name)
	if err != nil || s == "" {
		return 0, err
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, refuse(name, s, "is not a number of seconds")
	}
	return time.Duration(n) * time.Second, nil
}

// word reads a variable that selects a branch (reason, action, phase);
// unknown words are not errors, only the length is checked.
func word(v vars, name string) (string, error) { return v.get(name) }

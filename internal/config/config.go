package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/ispbalance/ispbalance/internal/kernelnames"
	"github.com/ispbalance/ispbalance/internal/trust"
)

// Role says what a service is: an uplink to balance over, or a network
// behind the router.
type Role string

const (
	RoleISP Role = "isp"
	RoleLAN Role = "lan"
)

// Mode is how ISPs share the traffic.
type Mode string

const (
	// Balanced spreads new connections over every up ISP by weight.
	Balanced Mode = "balanced"
	// Failover sends everything through the heaviest up ISP.
	Failover Mode = "failover"
)

// DefaultPingHost is what the original used when the ping column says
// `default`. The monitor resolves it; the core only carries it along.
const DefaultPingHost = "www.google.ca"

// Service is one row of the service table.
type Service struct {
	Name   string
	Device string
	Role   Role
	// PingTargets are the monitor's probe targets as written (addresses or
	// host names); `default` is DefaultPingHost. Empty (no column) means
	// the ISP's gateway.
	PingTargets []string
	Weight      int
	// Gateway from the config column; the zero Addr means "discover it".
	Gateway netip.Addr
	Line    int
}

// Option is a `name=value` line the core does not interpret itself; the
// link monitor validates and uses it.
type Option struct {
	Name, Value string
	File        string
	Line        int
}

// Group is one forwarding_group line, expanded to service names.
type Group struct {
	Members []string
	Line    int
}

// Config is a parsed balance.conf.
type Config struct {
	Path     string
	Services []Service // in file order
	Mode     Mode
	// Groups are the forwarding groups; when the file has none this holds
	// the original's default, one group of every service.
	Groups []Group
	// InternetSSH opens ssh to the router from the Internet (rate-limited),
	// as the original's documentation promises.
	InternetSSH bool
	// FlushConntrack deletes the tracked connections of an ISP that goes
	// down, so LAN clients reconnect via a live ISP (flush_conntrack=never
	// turns it off).
	FlushConntrack bool
	// LastResort says what happens when the monitor judges every ISP
	// down: route through every ISP that still has carrier (the default),
	// or route through none.
	LastResort LastResort
	// Files says whether rule files, rule directories and event scripts
	// that others could change are refused (the default) or used with a
	// warning (insecure_files=allow).
	Files trust.Policy
	// IPv6 turns IPv6 balancing on (the default); off keeps only the
	// IPv6 firewall, which is installed either way.
	IPv6 bool
	// IPv6Gateways pins ISPs' IPv6 gateways, by service name.
	IPv6Gateways map[string]IPv6Gateway
	// IPv6Prefixes pins the prefixes ISPs delegate to the router (a
	// business line's static prefix), by service name.
	IPv6Prefixes map[string]IPv6Prefix
	// IPv6NAT says how LAN IPv6 leaves by ISPs whose prefix it does not
	// carry.
	IPv6NAT IPv6NAT
	// Sticky says what keeps its ISP: each connection (the default), or
	// each LAN source address (sticky=source).
	Sticky Sticky
	// StickyTimeout is how many seconds a LAN address keeps its ISP after
	// its last new connection, under sticky=source.
	StickyTimeout int
	// MetricsListen is the host:port on which the monitor serves
	// Prometheus metrics; empty means no listener.
	MetricsListen string
	// MetricsTextfile is where the monitor writes the same metrics for
	// node_exporter's textfile collector; empty means nowhere.
	MetricsTextfile string
	// HooksOff makes every network-stack hook (ifupdown, dhclient,
	// dhcpcd, NetworkManager's dispatcher, networkd-dispatcher, Red Hat's
	// ifup-local) do nothing: hooks=off. The monitor still follows links
	// and leases over netlink.
	HooksOff bool
	// MaxRTT and MaxJitter are the monitor's quality thresholds
	// (max_rtt_ms, max_jitter_ms), by ISP service; the key "" holds the
	// value for every ISP without one of its own.
	MaxRTT    map[string]Threshold
	MaxJitter map[string]Threshold
	// MonitorOptions are passed to the link monitor.
	MonitorOptions []Option
}

// Threshold is one max_rtt_ms or max_jitter_ms line: milliseconds, 0 for
// no limit.
type Threshold struct {
	Millis int
	Line   int
}

// MaxThresholdMillis bounds max_rtt_ms and max_jitter_ms: the monitor's
// probe timeout is at most an hour too.
const MaxThresholdMillis = 3_600_000

// QualityFor returns service's quality thresholds in milliseconds (0:
// none): its own lines, else the global ones.
func (c *Config) QualityFor(service string) (maxRTT, maxJitter int) {
	pick := func(m map[string]Threshold) int {
		if t, ok := m[service]; ok {
			return t.Millis
		}
		return m[""].Millis
	}
	return pick(c.MaxRTT), pick(c.MaxJitter)
}

// IPv6Gateway is one ipv6_gateway line.
type IPv6Gateway struct {
	Addr netip.Addr
	Line int
}

// IPv6Prefix is one ipv6_prefix line.
type IPv6Prefix struct {
	Prefix netip.Prefix
	Line   int
}

// IPv6NAT is the balance.conf `ipv6_nat` setting.
type IPv6NAT string

const (
	// IPv6NATAuto balances each new LAN connection by weight and
	// translates it when it leaves by an ISP whose prefix it does not
	// carry: a 1:1 prefix mapping into the ISP's delegated prefix where
	// one is long enough, else NAT66 to the uplink address.
	IPv6NATAuto IPv6NAT = "auto"
	// IPv6NATFailover routes LAN hosts by source prefix to the ISP that
	// delegated it, and translates only what must leave by another ISP
	// (its own ISP is down, or it has no ISP's prefix).
	IPv6NATFailover IPv6NAT = "failover"
	// IPv6NATOff routes by source prefix and never translates.
	IPv6NATOff IPv6NAT = "off"
)

// Sticky is the balance.conf `sticky` setting.
type Sticky string

const (
	// StickyConnection gives each new connection an ISP by weight.
	StickyConnection Sticky = "connection"
	// StickySource gives each LAN source address an ISP by weight, which
	// all its new connections use while that ISP is up and the address
	// keeps opening connections.
	StickySource Sticky = "source"
)

// DefaultStickyTimeout is sticky_timeout's default, in seconds.
const DefaultStickyTimeout = 600

// MaxStickyTimeout is the longest timeout the kernel's ipset keeps, in
// seconds (IPSET_MAX_TIMEOUT).
const MaxStickyTimeout = 2147483

// LastResort is the balance.conf `last_resort` setting.
type LastResort string

const (
	// LastResortCarrier routes through every ISP with carrier and an
	// address when every verdict is down.
	LastResortCarrier LastResort = "carrier"
	// LastResortUnreachable leaves the router without a default route of
	// ours when every verdict is down (the strict behaviour).
	LastResortUnreachable LastResort = "unreachable"
)

// ISPs returns the ISP services sorted by name: the order that numbers
// them 1..N for tables and marks, as the original does.
func (c *Config) ISPs() []Service { return c.byRole(RoleISP) }

// LANs returns the LAN services sorted by name.
func (c *Config) LANs() []Service { return c.byRole(RoleLAN) }

func (c *Config) byRole(r Role) []Service {
	var out []Service
	for _, s := range c.Services {
		if s.Role == r {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Service returns the service with the given name.
func (c *Config) Service(name string) (Service, bool) {
	for _, s := range c.Services {
		if s.Name == name {
			return s, true
		}
	}
	return Service{}, false
}

// LineError is a problem at one line of a configuration file.
type LineError struct {
	File string
	Line int
	Msg  string
}

func (e *LineError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// Load reads and parses the file at path. It refuses a file that anyone
// but root could change, whatever the file says: insecure_files does not
// apply to balance.conf itself.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading configuration: %w", err)
	}
	if err := trust.Check(path); err != nil {
		return nil, fmt.Errorf("reading configuration: %w", err)
	}
	return Parse(path, bytes.NewReader(data))
}

// maxServiceName is the room a service name has in its mark chain.
var maxServiceName = kernelnames.MaxChainName - len(kernelnames.MarkChain(""))

// serviceName keeps names usable inside chain names and state file names.
var serviceName = regexp.MustCompile(fmt.Sprintf(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,%d}$`, maxServiceName-1))

// deviceName is what the kernel accepts as an interface name (15 bytes),
// plus the alias label (`eth3:0`) and VLAN-on-bond (`eth0.10@bond0`)
// spellings the original accepted.
var deviceName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}(:[A-Za-z0-9_.-]{1,14})?(@[A-Za-z0-9_.-]{1,15})?$`)

// validDevice adds to deviceName the kernel's rules that the pattern
// cannot say: "." and ".." are no interface names, and an address label
// ("eth3:0") is kept in 15 bytes, like a name. A device that breaks them
// could never be found, and would only ever be reported missing.
func validDevice(dev string) bool {
	if !deviceName.MatchString(dev) {
		return false
	}
	name, parent, _ := strings.Cut(dev, "@")
	kernel, _, labelled := strings.Cut(name, ":")
	dots := func(s string) bool { return s == "." || s == ".." }
	return !dots(kernel) && !dots(parent) && (!labelled || len(name) <= 15)
}

// hostName accepts DNS names for ping targets. Compiled on first use:
// its counted repeats make it the costliest pattern to compile, and most
// configurations ping addresses, so every run would pay at start for it.
var hostName = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*\.?$`)
})

var settingName = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// Parse reads balance.conf from r; name is used in error messages.
func Parse(name string, r io.Reader) (*Config, error) {
	c := &Config{Path: name, Mode: Balanced, InternetSSH: true, FlushConntrack: true, LastResort: LastResortCarrier,
		IPv6: true, IPv6Gateways: map[string]IPv6Gateway{}, IPv6Prefixes: map[string]IPv6Prefix{}, IPv6NAT: IPv6NATAuto,
		MaxRTT: map[string]Threshold{}, MaxJitter: map[string]Threshold{},
		Sticky: StickyConnection, StickyTimeout: DefaultStickyTimeout}
	var rawGroups []rawGroup
	seenSetting := map[string]int{}
	sc := newLineScanner(r)
	lineNo := 0
	fail := func(format string, args ...any) error {
		return &LineError{File: name, Line: lineNo, Msg: fmt.Sprintf(format, args...)}
	}
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if key, value, ok := strings.Cut(line, "="); ok && !strings.ContainsAny(strings.TrimSpace(key), " \t") {
			key = strings.TrimSpace(key)
			value = strings.TrimSpace(value)
			if i := strings.Index(value, " #"); i >= 0 {
				value = strings.TrimSpace(value[:i])
			}
			switch key {
			case "mode":
				if prev, dup := seenSetting[key]; dup {
					return nil, fail("mode is set again (first at line %d)", prev)
				}
				seenSetting[key] = lineNo
				switch Mode(value) {
				case Balanced, Failover:
					c.Mode = Mode(value)
				default:
					return nil, fail("mode must be %q or %q, not %q", Balanced, Failover, value)
				}
			case "forwarding_group":
				names := strings.Fields(value)
				if len(names) == 0 {
					return nil, fail("forwarding_group names no services")
				}
				rawGroups = append(rawGroups, rawGroup{names: names, line: lineNo})
			case "internet_ssh":
				if prev, dup := seenSetting[key]; dup {
					return nil, fail("internet_ssh is set again (first at line %d)", prev)
				}
				seenSetting[key] = lineNo
				b, err := parseBool(value)
				if err != nil {
					return nil, fail("internet_ssh: %v", err)
				}
				c.InternetSSH = b
			case trust.Setting:
				if prev, dup := seenSetting[key]; dup {
					return nil, fail("%s is set again (first at line %d)", key, prev)
				}
				seenSetting[key] = lineNo
				switch value {
				case "refuse":
					c.Files = trust.Refuse
				case "allow":
					c.Files = trust.Allow
				default:
					return nil, fail("%s must be refuse or allow, not %q", key, value)
				}
			case "flush_conntrack":
				if prev, dup := seenSetting[key]; dup {
					return nil, fail("flush_conntrack is set again (first at line %d)", prev)
				}
				seenSetting[key] = lineNo
				switch value {
				case "on-down", "yes":
					c.FlushConntrack = true
				case "never", "no":
					c.FlushConntrack = false
				default:
					return nil, fail("flush_conntrack must be on-down or never, not %q", value)
				}
			case "ipv6":
				if prev, dup := seenSetting[key]; dup {
					return nil, fail("ipv6 is set again (first at line %d)", prev)
				}
				seenSetting[key] = lineNo
				b, err := parseBool(value)
				if err != nil {
					return nil, fail("ipv6: %v", err)
				}
				c.IPv6 = b
			case "ipv6_gateway":
				f := strings.Fields(value)
				if len(f) != 2 {
					return nil, fail("ipv6_gateway wants SERVICE ADDRESS, not %q", value)
				}
				gw, err := netip.ParseAddr(f[1])
				if err != nil || !gw.Is6() || gw.Is4In6() || gw.Zone() != "" {
					return nil, fail("ipv6_gateway: %q is not an IPv6 address (no zone: the ISP's device is the zone)", f[1])
				}
				if gw.IsLoopback() || gw.IsMulticast() || gw.IsUnspecified() {
					return nil, fail("ipv6_gateway: %s cannot be a gateway", gw)
				}
				if prev, dup := c.IPv6Gateways[f[0]]; dup {
					return nil, fail("ipv6_gateway for %s is set again (first at line %d)", f[0], prev.Line)
				}
				c.IPv6Gateways[f[0]] = IPv6Gateway{Addr: gw, Line: lineNo}
			case "ipv6_prefix":
				f := strings.Fields(value)
				if len(f) != 2 {
					return nil, fail("ipv6_prefix wants SERVICE PREFIX, not %q", value)
				}
				pfx, err := netip.ParsePrefix(f[1])
				if err != nil || !pfx.Addr().Is6() || pfx.Addr().Is4In6() || pfx.Addr().Zone() != "" {
					return nil, fail("ipv6_prefix: %q is not an IPv6 prefix like 2001:db8:100::/56", f[1])
				}
				if pfx != pfx.Masked() {
					return nil, fail("ipv6_prefix: %s has host bits set (the prefix is %s)", pfx, pfx.Masked())
				}
				if !pfx.Addr().IsGlobalUnicast() || pfx.Bits() < 16 || pfx.Bits() > 64 {
					return nil, fail("ipv6_prefix: %s cannot be a delegated prefix (want a global unicast prefix of length 16..64)", pfx)
				}
				if prev, dup := c.IPv6Prefixes[f[0]]; dup {
					return nil, fail("ipv6_prefix for %s is set again (first at line %d)", f[0], prev.Line)
				}
				c.IPv6Prefixes[f[0]] = IPv6Prefix{Prefix: pfx, Line: lineNo}
			case "ipv6_nat":
				if prev, dup := seenSetting[key]; dup {
					return nil, fail("ipv6_nat is set again (first at line %d)", prev)
				}
				seenSetting[key] = lineNo
				switch IPv6NAT(value) {
				case IPv6NATAuto, IPv6NATFailover, IPv6NATOff:
					c.IPv6NAT = IPv6NAT(value)
				default:
					return nil, fail("ipv6_nat must be auto, failover or off, not %q", value)
				}
			case "sticky":
				if prev, dup := seenSetting[key]; dup {
					return nil, fail("sticky is set again (first at line %d)", prev)
				}
				seenSetting[key] = lineNo
				switch Sticky(value) {
				case StickyConnection, StickySource:
					c.Sticky = Sticky(value)
				default:
					return nil, fail("sticky must be %q or %q, not %q", StickyConnection, StickySource, value)
				}
			case "sticky_timeout":
				if prev, dup := seenSetting[key]; dup {
					return nil, fail("sticky_timeout is set again (first at line %d)", prev)
				}
				seenSetting[key] = lineNo
				n, err := strconv.Atoi(value)
				if err != nil || n < 1 || n > MaxStickyTimeout {
					return nil, fail("sticky_timeout %q is not a whole number of seconds from 1 to %d", value, MaxStickyTimeout)
				}
				c.StickyTimeout = n
			case "hooks":
				if prev, dup := seenSetting[key]; dup {
					return nil, fail("hooks is set again (first at line %d)", prev)
				}
				seenSetting[key] = lineNo
				b, err := parseBool(value)
				if err != nil {
					return nil, fail("hooks: %v", err)
				}
				c.HooksOff = !b
			case "last_resort":
				if prev, dup := seenSetting[key]; dup {
					return nil, fail("last_resort is set again (first at line %d)", prev)
				}
				seenSetting[key] = lineNo
				switch LastResort(value) {
				case LastResortCarrier, LastResortUnreachable:
					c.LastResort = LastResort(value)
				default:
					return nil, fail("last_resort must be %q or %q, not %q", LastResortCarrier, LastResortUnreachable, value)
				}
			case "max_rtt_ms", "max_jitter_ms":
				dst := c.MaxRTT
				if key == "max_jitter_ms" {
					dst = c.MaxJitter
				}
				// "300" for every ISP, "CABLE 500" for one, as ipv6_gateway
				// names its ISP.
				f := strings.Fields(value)
				svc, num := "", value
				switch len(f) {
				case 1:
					num = f[0]
				case 2:
					svc, num = f[0], f[1]
				default:
					return nil, fail("%s wants MILLISECONDS or SERVICE MILLISECONDS, not %q", key, value)
				}
				n, err := strconv.Atoi(num)
				if err != nil || n < 0 || n > MaxThresholdMillis {
					return nil, fail("%s: %q is not a whole number of milliseconds from 0 (no limit) to %d", key, num, MaxThresholdMillis)
				}
				if prev, dup := dst[svc]; dup {
					if svc == "" {
						return nil, fail("%s is set again (first at line %d)", key, prev.Line)
					}
					return nil, fail("%s for %s is set again (first at line %d)", key, svc, prev.Line)
				}
				dst[svc] = Threshold{Millis: n, Line: lineNo}
			case "metrics_listen":
				if prev, dup := seenSetting[key]; dup {
					return nil, fail("metrics_listen is set again (first at line %d)", prev)
				}
				seenSetting[key] = lineNo
				if err := checkListen(value); err != nil {
					return nil, fail("metrics_listen: %v", err)
				}
				c.MetricsListen = value
			case "metrics_textfile":
				if prev, dup := seenSetting[key]; dup {
					return nil, fail("metrics_textfile is set again (first at line %d)", prev)
				}
				seenSetting[key] = lineNo
				if !filepath.IsAbs(value) || strings.HasSuffix(value, "/") {
					return nil, fail("metrics_textfile wants the absolute path of a file, not %q", value)
				}
				c.MetricsTextfile = filepath.Clean(value)
			default:
				if !settingName.MatchString(key) {
					return nil, fail("%q is not a setting name", key)
				}
				c.MonitorOptions = append(c.MonitorOptions, Option{Name: key, Value: value, File: name, Line: lineNo})
			}
			continue
		}
		s, err := parseService(strings.Fields(line))
		if err != nil {
			return nil, fail("%v", err)
		}
		s.Line = lineNo
		for _, prev := range c.Services {
			if prev.Name == s.Name {
				return nil, fail("service %s is defined again (first at line %d)", s.Name, prev.Line)
			}
			if prev.Device == s.Device {
				return nil, fail("device %s is used by service %s too (line %d)", s.Device, prev.Name, prev.Line)
			}
		}
		c.Services = append(c.Services, s)
	}
	if sc.tooLong > 0 {
		lineNo++
		return nil, fail("line too long (%d bytes, at most %d)", sc.tooLong, maxLineBytes)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if n := len(c.ISPs()); n > kernelnames.MaxISPs {
		return nil, fmt.Errorf("%s: %d ISP services, at most %d are supported", name, n, kernelnames.MaxISPs)
	}
	for svc, gw := range c.IPv6Gateways {
		if s, ok := c.Service(svc); !ok || s.Role != RoleISP {
			return nil, &LineError{File: name, Line: gw.Line, Msg: fmt.Sprintf("ipv6_gateway names %q, which is no isp service", svc)}
		}
	}
	for svc, pfx := range c.IPv6Prefixes {
		if s, ok := c.Service(svc); !ok || s.Role != RoleISP {
			return nil, &LineError{File: name, Line: pfx.Line, Msg: fmt.Sprintf("ipv6_prefix names %q, which is no isp service", svc)}
		}
	}
	for _, th := range []struct {
		key string
		m   map[string]Threshold
	}{{"max_rtt_ms", c.MaxRTT}, {"max_jitter_ms", c.MaxJitter}} {
		for svc, v := range th.m {
			if s, ok := c.Service(svc); svc != "" && (!ok || s.Role != RoleISP) {
				return nil, &LineError{File: name, Line: v.Line, Msg: fmt.Sprintf("%s names %q, which is no isp service", th.key, svc)}
			}
		}
	}
	groups, err := expandGroups(name, rawGroups, c.Services)
	if err != nil {
		return nil, err
	}
	c.Groups = groups
	return c, nil
}

type rawGroup struct {
	names []string
	line  int
}

func parseService(f []string) (Service, error) {
	if len(f) < 3 {
		return Service{}, errors.New("a service line needs at least SERVICE DEVICE ROLE")
	}
	if len(f) > 6 {
		return Service{}, fmt.Errorf("too many columns (%d); expected SERVICE DEVICE ROLE [PING-IP [WEIGHT [GATEWAY]]]", len(f))
	}
	s := Service{Name: f[0], Device: f[1], Role: Role(f[2]), Weight: 1}
	switch {
	case s.Name == "up" || s.Name == "down" || s.Name == "long_down":
		return s, fmt.Errorf("a service may not be named %q: the word is an event name", s.Name)
	case !serviceName.MatchString(s.Name):
		return s, fmt.Errorf("service name %q: use 1-%d letters, digits, '_', '.' or '-'", s.Name, maxServiceName)
	case !validDevice(s.Device):
		return s, fmt.Errorf("device %q is not an interface name", s.Device)
	}
	if s.Role != RoleISP && s.Role != RoleLAN {
		return s, fmt.Errorf("role %q is unknown; use %q or %q", f[2], RoleISP, RoleLAN)
	}
	if len(f) > 3 && f[3] != "default" {
		for _, t := range strings.Split(f[3], ",") {
			if _, err := netip.ParseAddr(t); err != nil && !hostName().MatchString(t) {
				return s, fmt.Errorf("ping target %q is neither an address nor a host name", t)
			}
			s.PingTargets = append(s.PingTargets, t)
		}
	} else if len(f) > 3 && s.Role == RoleISP {
		// `default` is the original's default host. A missing column
		// means the gateway: the monitor then warns that failures
		// beyond it go unseen.
		s.PingTargets = []string{DefaultPingHost}
	}
	if len(f) > 4 && f[4] != "default" {
		w, err := strconv.Atoi(f[4])
		if err != nil || w < 1 || w > 1000 {
			return s, fmt.Errorf("weight %q is not a whole number from 1 to 1000", f[4])
		}
		s.Weight = w
	}
	if len(f) > 5 && f[5] != "default" {
		gw, err := netip.ParseAddr(f[5])
		if err != nil || !gw.Is4() {
			return s, fmt.Errorf("gateway %q is not an IPv4 address", f[5])
		}
		if why := unusableGateway(gw); why != "" {
			return s, fmt.Errorf("gateway %s is %s, never a next hop", gw, why)
		}
		s.Gateway = gw
	}
	if s.Role == RoleLAN && (len(f) > 4 && f[4] != "default" || len(f) > 5 && f[5] != "default") {
		return s, errors.New("weight and gateway apply to isp services only")
	}
	return s, nil
}

func expandGroups(file string, raw []rawGroup, services []Service) ([]Group, error) {
	if len(raw) == 0 {
		// The original's default: one group ":lan :isp", everything may forward.
		raw = []rawGroup{{names: []string{":lan", ":isp"}}}
	}
	var groups []Group
	for _, rg := range raw {
		g := Group{Line: rg.line}
		add := func(n string) {
			if !slices.Contains(g.Members, n) {
				g.Members = append(g.Members, n)
			}
		}
		for _, n := range rg.names {
			switch n {
			case ":isp", ":lan":
				for _, s := range services {
					if string(s.Role) == n[1:] {
						add(s.Name)
					}
				}
			default:
				found := false
				for _, s := range services {
					if s.Name == n {
						found = true
						add(n)
					}
				}
				if !found {
					return nil, &LineError{File: file, Line: rg.line, Msg: fmt.Sprintf("forwarding_group names unknown service %q", n)}
				}
			}
		}
		groups = append(groups, g)
	}
	return groups, nil
}

// MayForward reports whether some forwarding group holds both services.
func (c *Config) MayForward(from, to string) bool {
	for _, g := range c.Groups {
		if slices.Contains(g.Members, from) && slices.Contains(g.Members, to) {
			return true
		}
	}
	return false
}

// checkListen accepts a literal IP address and port. A host name is
// refused: what it resolves to could change behind the admin's back, and
// an empty host would listen on every address without anyone saying so.
func checkListen(v string) error {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Errorf("%q is not ADDRESS:PORT, such as 127.0.0.1:9851", v)
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Errorf("%q is not an IP address (such as 127.0.0.1 or [::1])", host)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	return nil
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "yes", "on", "true", "1":
		return true, nil
	case "no", "off", "false", "0":
		return false, nil
	}
	return false, fmt.Errorf("%q is not yes or no", v)
}

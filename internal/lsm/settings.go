package lsm

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Settings are the options of one monitored connection: everything a
// foolsm `connection { }` block can say, plus the window size and flap
// damping, which lsm did not have.
type Settings struct {
	Name     string
	CheckIP  string // probe target: an IP literal or a host name
	Device   string
	SourceIP string // empty: discovered from Device

	EventScript          string
	NotifyScript         string
	LongDownEventScript  string
	LongDownNotifyScript string
	WarnEmail            string // $5 for the event and notify scripts
	LongDownEmail        string // $5 for the long-down scripts
	// Queue, when set, names a FIFO in which the event scripts of every
	// connection and group with the same queue run one at a time.
	Queue string
	// UnknownUpNotify runs the notify script on unknown→up too. lsm
	// ignored it for connections (spec §3.5); here it works.
	UnknownUpNotify bool

	CheckARP bool
	TTL      int   // 0: system default
	Status   State // assumed state before any decision

	Interval time.Duration
	Timeout  time.Duration

	// The decision thresholds, in probes (spec §3).
	MaxPacketLoss         int // down when timed-out probes in the window ≥ this
	MaxSuccessivePktsLost int // down when consecutive missing probes ≥ this
	MinPacketLoss         int // up only when timed-out probes in the window ≤ this
	MinSuccessivePktsRcvd int // up only when consecutive replies ≥ this

	LongDownTime time.Duration // 0: never long_down

	StartupAcceleration  int
	StartupBurstPkts     int
	StartupBurstInterval time.Duration

	// Window is how many recent probes the statistics cover.
	// FollowedPkts (100) is lsm's; ispbalance's own defaults use fewer so
	// that a repaired link is trusted again in seconds, not minutes.
	Window int
	// Damping holds a link that keeps failing down for longer each time.
	// The zero value turns it off, as in lsm.
	Damping Damping
	// PassInFlight counts the replies in a row for the up rule from the
	// newest probe that has an answer, passing over those still in
	// flight, so a link whose RTT is several intervals can come up. lsm
	// counts from the second newest probe, in flight or not; false keeps
	// that.
	PassInFlight bool
	// Quality holds the latency and jitter thresholds beyond which a link
	// that is up is degraded; the zero value has none, as lsm.
	Quality Quality
}

// FoolsmDefaults returns foolsm's built-in defaults (lsm/config.c
// init_config), which `connection { }` blocks of a foolsm configuration
// inherit until a `defaults { }` block changes them.
//
// One difference: foolsm's default notifyscript is a mail script under its
// install prefix. ispbalance ships no such script, so there is no default
// notify script; set notifyscript to keep the mails.
func FoolsmDefaults() Settings {
	return Settings{
		Name:                  "defaults",
		CheckIP:               "127.0.0.1",
		WarnEmail:             "root",
		Status:                Unknown,
		Interval:              1000 * time.Millisecond,
		Timeout:               1000 * time.Millisecond,
		MaxPacketLoss:         15,
		MaxSuccessivePktsLost: 7,
		MinPacketLoss:         5,
		MinSuccessivePktsRcvd: 10,
		StartupBurstInterval:  20000 * time.Millisecond,
		Window:                FollowedPkts,
	}
}

// NIBDefaults returns the defaults Net-ISP-Balance wrote into lsm.conf
// (lsm-spec §6.2), under which its users tuned their balance.conf
// options. The script paths depend on the install and are left empty.
func NIBDefaults() Settings {
	s := FoolsmDefaults()
	s.MaxPacketLoss = 20
	s.MinPacketLoss = 10
	s.MinSuccessivePktsRcvd = 5
	s.Timeout = 500 * time.Millisecond
	s.LongDownTime = 120 * time.Second
	return s
}

// Defaults returns ispbalance's own monitor defaults, used when
// balance.conf sets none of the decision options. The targets, each
// checked by a simulation in the tests:
//
//   - a silently dead upstream is down within 2 s: probes go out every
//     200 ms and 8 consecutive misses mean down; probes in flight count
//     as missing and the newest never counts, so the verdict comes at
//     most (8+1)×200 ms = 1.8 s after the failure.
//   - a repaired link is up again within 5 s, however long the outage:
//     the loss count covers only the last 25 probes (5 s) instead of
//     lsm's 100, and up needs at most 4 of them lost plus 10 replies in a
//     row, so 21 good probes (4.2 s) are enough.
//   - 10 % random loss must not bring a link down: that needs 8 losses in
//     a row or 13 of 25. Over 60 s (300 decisions) the chance is below
//     6.3·10⁻⁵: about 3·10⁻⁶ for the run, at most 300 × 1.5·10⁻⁷ for
//     the window (TestDefaultsFalseDownProbability computes both).
//   - 70 % loss must bring it down: 13 of 25 lost is crossed within
//     seconds, and a window of 25 probes at 70 % loss stays under 13 only
//     with probability 0.017 (the next probes give new chances);
//     simulated, the worst of 200 runs is logged by the tests.
//   - a geostationary satellite link (600 ms RTT) comes up and stays up:
//     about three probes are in flight at a time, far from 8, every reply
//     beats the 1 s timeout, and the replies in a row that the up rule
//     wants are counted from the newest answered probe (PassInFlight).
//
// The price of the faster verdicts is probe traffic: five echo requests a
// second per ISP and target (a few hundred bytes a second), and a link
// whose RTT stays above 8×200 ms = 1.6 s, or above the 1 s timeout, is
// called down. Setting any decision option in balance.conf switches to
// lsm's rules and the original's defaults (interval_ms=1000 and so on);
// interval_ms, max_successive_pkts_lost and the window are the knobs.
//
// A lower threshold or a shorter window would catch 70 % loss sooner but
// brings the 10 % false-down chance into the 10⁻³ range; a longer window
// would break the 5 s recovery.
//
// Carrier loss is not this package's business: the daemon watches it
// over netlink and needs no probe at all to see it.
//
// Damping (see DefaultDamping) holds a flapping link down; a single
// outage is never held.
func Defaults() Settings {
	s := NIBDefaults()
	s.Interval = 200 * time.Millisecond
	s.Timeout = 1000 * time.Millisecond
	s.MaxPacketLoss = 13
	s.MaxSuccessivePktsLost = 8
	s.MinPacketLoss = 4
	s.MinSuccessivePktsRcvd = 10
	s.Window = 25
	s.Damping = DefaultDamping()
	s.PassInFlight = true
	return s
}

// Option is one `name=value` line of balance.conf, with where it was.
type Option struct {
	Name, Value string
	File        string
	Line        int
}

// decisionOptions are the balance.conf options that tune lsm's decision
// rules. Setting any of them switches to NIBDefaults, so that a
// balance.conf tuned for Net-ISP-Balance behaves exactly as it did.
var decisionOptions = map[string]bool{
	"interval_ms":              true,
	"timeout_ms":               true,
	"max_packet_loss":          true,
	"max_successive_pkts_lost": true,
	"min_packet_loss":          true,
	"min_successive_pkts_rcvd": true,
	"startup_acceleration":     true,
}

// perServiceOptions come from the service table of balance.conf. The
// original let them be set as defaults too, where the per-service values
// silently replaced them; here that is an error.
var perServiceOptions = map[string]string{
	"name":     "the service name",
	"checkip":  "the PING-IP column",
	"device":   "the DEVICE column",
	"sourceip": "the interface's address",
}

// KnownOption reports whether name is a monitor option that balance.conf
// may set, so that a balance.conf parser can tell a monitor option from a
// typing error.
func KnownOption(name string) bool {
	if name == "debug" {
		return true
	}
	_, ok := connOptions[name]
	return ok && perServiceOptions[name] == ""
}

// DefaultsFromOptions turns the monitor options of balance.conf into the
// defaults of every monitored ISP. With no decision option
// (interval_ms, timeout_ms, max_packet_loss, max_successive_pkts_lost,
// min_packet_loss, min_successive_pkts_rcvd, startup_acceleration) the
// result is Defaults();
// with any of them, NIBDefaults() plus the options, decided by lsm's rules
// exactly. A later option overrides an earlier one.
//
// Stricter than Net-ISP-Balance, which copied every line into lsm.conf and
// left it to lsm: unknown names, values that are not numbers, values out
// of range and max_packet_loss <= min_packet_loss are errors naming the
// file and line (lsm read "abc" as 0, and refused to start only on the
// last). debug is accepted and ignored: the daemon's log level is its own.
func DefaultsFromOptions(opts []Option) (Settings, error) {
	s := Defaults()
	for _, o := range opts {
		if decisionOptions[o.Name] {
			s = NIBDefaults()
			break
		}
	}
	var errs []error
	at := map[string]Option{}
	for _, o := range opts {
		var err error
		switch {
		case o.Name == "debug":
			if _, err = parseInt(o.Value, 0, maxDebug); err != nil {
				err = fmt.Errorf("debug: %w", err)
			}
		case perServiceOptions[o.Name] != "":
			err = fmt.Errorf("%s cannot be set here: it comes from %s", o.Name, perServiceOptions[o.Name])
		default:
			err = setConnOption(&s, o.Name, o.Value)
		}
		if err != nil {
			errs = append(errs, &Error{File: o.File, Line: o.Line, Err: err})
			continue
		}
		at[o.Name] = o
	}
	if err := checkSettings(s); err != nil {
		// Blame the latest line among those that took part.
		var o Option
		for _, name := range []string{"max_packet_loss", "min_packet_loss", "startup_acceleration"} {
			if a, ok := at[name]; ok && (o.File == "" || a.Line > o.Line) {
				o = a
			}
		}
		errs = append(errs, &Error{File: o.File, Line: o.Line, Err: err})
	}
	if len(errs) > 0 {
		return Settings{}, errors.Join(errs...)
	}
	return s, nil
}

// Error is a configuration error at a line of a file.
type Error struct {
	File string
	Line int // 0 when no line is to blame
	Err  error
}

func (e *Error) Error() string {
	switch {
	case e.File == "":
		return e.Err.Error()
	case e.Line == 0:
		return fmt.Sprintf("%s: %v", e.File, e.Err)
	}
	return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Ranges. lsm checked none of these; its values out of range either meant
// nothing or broke something (status=7 indexed past its name table).
const (
	maxDebug      = 1000
	minIntervalMS = 20 // lsm's MIN_PERHOST_INTERVAL: no two sends are closer
	maxMS         = 3_600_000
	maxLongDown   = 366 * 24 * 3600
	// A burst of FollowedPkts or more would never end: the probes used
	// so far never exceed the window.
	maxBurstPkts = FollowedPkts - 1
)

// connOptions are the options of `defaults { }` and `connection { }`.
var connOptions = map[string]func(s *Settings, v string) error{
	"name":                     func(s *Settings, v string) error { return setName(&s.Name, v) },
	"checkip":                  setCheckIP,
	"device":                   func(s *Settings, v string) error { return setDevice(&s.Device, v) },
	"sourceip":                 setSourceIP,
	"eventscript":              func(s *Settings, v string) error { return setScript(&s.EventScript, v) },
	"notifyscript":             func(s *Settings, v string) error { return setScript(&s.NotifyScript, v) },
	"long_down_eventscript":    func(s *Settings, v string) error { return setScript(&s.LongDownEventScript, v) },
	"long_down_notifyscript":   func(s *Settings, v string) error { return setScript(&s.LongDownNotifyScript, v) },
	"warn_email":               func(s *Settings, v string) error { s.WarnEmail = v; return nil },
	"long_down_email":          func(s *Settings, v string) error { s.LongDownEmail = v; return nil },
	"queue":                    func(s *Settings, v string) error { s.Queue = v; return nil },
	"unknown_up_notify":        func(s *Settings, v string) error { return setBool(&s.UnknownUpNotify, v) },
	"check_arp":                func(s *Settings, v string) error { return setBool(&s.CheckARP, v) },
	"ttl":                      func(s *Settings, v string) error { return setInt(&s.TTL, v, 0, 255) },
	"status":                   func(s *Settings, v string) error { return setState(&s.Status, v) },
	"interval_ms":              func(s *Settings, v string) error { return setMillis(&s.Interval, v, minIntervalMS) },
	"timeout_ms":               func(s *Settings, v string) error { return setMillis(&s.Timeout, v, 1) },
	"max_packet_loss":          func(s *Settings, v string) error { return setInt(&s.MaxPacketLoss, v, 1, FollowedPkts) },
	"max_successive_pkts_lost": func(s *Settings, v string) error { return setInt(&s.MaxSuccessivePktsLost, v, 1, FollowedPkts) },
	"min_packet_loss":          func(s *Settings, v string) error { return setInt(&s.MinPacketLoss, v, 0, FollowedPkts-1) },
	"min_successive_pkts_rcvd": func(s *Settings, v string) error { return setInt(&s.MinSuccessivePktsRcvd, v, 1, FollowedPkts) },
	"long_down_time": func(s *Settings, v string) error {
		n, err := parseInt(v, 0, maxLongDown)
		s.LongDownTime = time.Duration(n) * time.Second
		return err
	},
	"startup_acceleration":   func(s *Settings, v string) error { return setInt(&s.StartupAcceleration, v, 0, FollowedPkts) },
	"startup_burst_pkts":     func(s *Settings, v string) error { return setInt(&s.StartupBurstPkts, v, 0, maxBurstPkts) },
	"startup_burst_interval": func(s *Settings, v string) error { return setMillis(&s.StartupBurstInterval, v, minIntervalMS) },
}

// setConnOption sets option name of s, or says why it cannot.
func setConnOption(s *Settings, name, value string) error {
	set, ok := connOptions[name]
	if !ok {
		return fmt.Errorf("unknown option %q", name)
	}
	if err := set(s, value); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// checkSettings checks the rules that tie options together.
func checkSettings(s Settings) error {
	var errs []error
	if s.MaxPacketLoss <= s.MinPacketLoss {
		// Also lsm's rule: the link would flip between up and down.
		errs = append(errs, fmt.Errorf("max_packet_loss (%d) must be greater than min_packet_loss (%d)", s.MaxPacketLoss, s.MinPacketLoss))
	}
	if s.MaxPacketLoss > s.Window || s.MinSuccessivePktsRcvd > s.Window || s.StartupAcceleration > s.Window {
		errs = append(errs, fmt.Errorf("thresholds exceed the window of %d probes", s.Window))
	}
	return errors.Join(errs...)
}

// parseInt parses a decimal integer in [lo, hi]. lsm used atoi, which
// read "10ms" as 10 and "ten" as 0.
func parseInt(v string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%q is not an integer", v)
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("%d is out of range %d..%d", n, lo, hi)
	}
	return n, nil
}

func setInt(dst *int, v string, lo, hi int) error {
	n, err := parseInt(v, lo, hi)
	if err != nil {
		return err
	}
	*dst = n
	return nil
}

func setMillis(dst *time.Duration, v string, lo int) error {
	n, err := parseInt(v, lo, maxMS)
	if err != nil {
		return err
	}
	*dst = time.Duration(n) * time.Millisecond
	return nil
}

// setBool takes lsm's integer flags; anything but 0 and 1 is refused
// rather than guessed at ("yes" was 0 to lsm).
func setBool(dst *bool, v string) error {
	n, err := parseInt(v, 0, 1)
	if err != nil {
		return err
	}
	*dst = n == 1
	return nil
}

func setState(dst *State, v string) error {
	n, err := parseInt(v, int(Down), int(LongDown))
	if err != nil {
		return fmt.Errorf("%w (0 down, 1 up, 2 unknown, 3 long_down)", err)
	}
	*dst = State(n)
	return nil
}

// setName refuses empty names and names with blanks or slashes: names are
// script arguments, munin field names and (in Net-ISP-Balance) state file
// names. lsm only advised against spaces. A line's tabs become spaces,
// but a vertical tab, form feed or CR inside it stays, so every kind of
// white space is refused, not only the space.
func setName(dst *string, v string) error {
	if v == "" {
		return errors.New("empty name")
	}
	if strings.ContainsRune(v, '/') || strings.ContainsFunc(v, unicode.IsSpace) {
		return fmt.Errorf("name %q contains white space or a slash", v)
	}
	*dst = v
	return nil
}

func setCheckIP(s *Settings, v string) error {
	if v == "" {
		// lsm objects too, but only once a connection is complete;
		// checkConnection does the same here.
		s.CheckIP = ""
		return nil
	}
	if _, err := netip.ParseAddr(v); err != nil && !isHostname(v) {
		return fmt.Errorf("%q is neither an IP address nor a host name", v)
	}
	s.CheckIP = v
	return nil
}

// setSourceIP accepts only IP literals: lsm also resolved host names here,
// at load time only.
func setSourceIP(s *Settings, v string) error {
	if v != "" {
		if _, err := netip.ParseAddr(v); err != nil {
			return fmt.Errorf("%q is not an IP address", v)
		}
	}
	s.SourceIP = v
	return nil
}

// setDevice accepts what the kernel can name an interface (alias labels
// such as eth3:0 included); empty means none. The kernel's rules
// (dev_valid_name) refuse "." and "..", '/', and every byte its isspace
// counts, which includes \v, \f, \r and Latin-1's 0xa0.
func setDevice(dst *string, v string) error {
	bad := len(v) > 15 || v == "." || v == ".."
	for i := 0; i < len(v) && !bad; i++ {
		c := v[i]
		bad = c == 0 || c == '/' || c == ' ' || c >= '\t' && c <= '\r' || c == 0xa0
	}
	if bad {
		return fmt.Errorf("%q is not an interface name", v)
	}
	*dst = v
	return nil
}

// setScript requires absolute paths. lsm ran relative ones from its
// working directory, which a service manager sets to /, so they failed at
// event time instead of at load time.
func setScript(dst *string, v string) error {
	if v != "" && !path.IsAbs(v) {
		return fmt.Errorf("%q is not an absolute path", v)
	}
	*dst = v
	return nil
}

// isHostname reports whether v is a syntactically valid DNS name
// (RFC 1123 labels; underscores tolerated, as resolvers do).
func isHostname(v string) bool {
	v = strings.TrimSuffix(v, ".")
	if v == "" || len(v) > 253 {
		return false
	}
	for _, label := range strings.Split(v, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"log/syslog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ispbalance/ispbalance/internal/config"
	"github.com/ispbalance/ispbalance/internal/core"
	"github.com/ispbalance/ispbalance/internal/detect"
	"github.com/ispbalance/ispbalance/internal/hook"
)

// dedupeWindow is how long an identical event counts as a repeat: the
// same lease or link change reported twice (NetworkManager replays the
// ifupdown hooks on Debian; a dhclient BOUND is followed by if-up.d) comes
// within a second or two.
const dedupeWindow = 10 * time.Second

// hookPath is ifupdown's PATH for hooks, used when a hook gets none.
const hookPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// nmAskTimeout bounds the D-Bus questions of a NetworkManager hook.
const nmAskTimeout = 2 * time.Second

// runHook is `ifup-balance hook SOURCE [ARGS...]`, the entry of every
// network-stack hook. It always returns 0: a failing hook would make
// ifupdown mark the interface failed, or stop the hooks after ours. What
// went wrong is logged to stderr and syslog instead.
func runHook(ctx context.Context, env Env, opts core.Options, root string, verbose bool, args []string) int {
	log := hookLogger(env.Stderr, verbose)
	opts.Log = log
	// A service that D-Bus activates without systemd (the dispatcher) gets
	// an empty PATH and passes it on; the rebuild runs iptables-restore.
	if os.Getenv("PATH") == "" {
		os.Setenv("PATH", hookPath)
	}
	if len(args) == 0 {
		log.Error("hook: which tool runs the hook? ifup-balance hook SOURCE [ARGS...]", "sources", hook.Sources)
		return 0
	}
	ev, err := hook.Parse(hook.Source(args[0]), args[1:], env.Getenv)
	if err != nil {
		log.Error("hook event refused", "source", clipped(args[0]), "err", err)
		return 0
	}
	if ev.Action == hook.None {
		log.Debug("hook event ignored", "source", ev.Source, "event", ev.What)
		return 0
	}
	cfg, err := config.Load(opts.ConfigPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return 0 // not configured (or the package's config is gone): nothing to do
	case err != nil:
		log.Error("hook: cannot read the configuration", "err", err)
		return 0
	case len(cfg.ISPs()) == 0:
		return 0
	case cfg.HooksOff:
		log.Debug("hook: hooks=off in the configuration; nothing to do", "source", ev.Source, "event", ev.What)
		return 0
	case ev.Device != "" && !configuredDevice(cfg, ev.Device):
		return 0
	}
	log = log.With("source", ev.Source, "event", ev.What, "device", ev.Device)
	if ev.Source == hook.NetworkManager && ev.Action != hook.Down && ev.Device != "" && !ev.Gateway.IsValid() && !ev.IPv6 {
		askNetworkManager(ctx, &ev, log)
	}
	record := recordLease
	if ev.IPv6 {
		record = recordDelegation
	}
	if err := record(root, ev); err != nil {
		log.Warn("hook: lease not recorded", "err", err)
	}
	if core.Stopped(opts) {
		log.Info("hook: ispbalance is stopped (ifup-balance stop); nothing to do")
		return 0
	}
	dup, err := seenBefore(opts.RunDir, ev, time.Now())
	if err != nil {
		log.Warn("hook: cannot check for a repeated event", "err", err)
	}
	if dup {
		log.Info("hook: same event again, already handled")
		return 0
	}
	if pid := runningMonitor(monitorPidFile(opts.RunDir)); pid > 0 {
		if err := syscall.Kill(pid, syscall.SIGUSR2); err == nil {
			log.Info("hook: handed to the monitor", "pid", pid, "gateway", ev.Gateway)
			return 0
		}
	}
	rebuilt, err := core.RebuildAfter(ctx, opts, time.Now())
	if err != nil {
		log.Error("hook: rebuild failed", "err", err)
		forget(opts.RunDir, eventKey(ev))
		return 0
	}
	if !rebuilt {
		log.Info("hook: covered by a rebuild that started after the event")
		return 0
	}
	log.Info("hook: rebuilt", "gateway", ev.Gateway)
	return 0
}

func clipped(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// configuredDevice reports whether dev (a kernel name) is the device of
// any service, ISP or LAN: a LAN's network is in every ISP's table too.
func configuredDevice(cfg *config.Config, dev string) bool {
	for _, s := range cfg.Services {
		if detect.KernelName(s.Device) == dev {
			return true
		}
	}
	return false
}

// askNetworkManager fills in what a dispatcher event lacks: dhcp4-change
// arrives during activation without IP4_GATEWAY, and NetworkManager's
// device already knows the lease.
func askNetworkManager(ctx context.Context, ev *hook.Event, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, nmAskTimeout)
	defer cancel()
	ip, err := detect.NetworkManagerIP4(ctx, ev.Device)
	if err != nil {
		log.Info("hook: NetworkManager could not tell the gateway", "err", err)
		return
	}
	ev.Gateway = ip.Gateway
	if !ev.Addr.IsValid() {
		ev.Addr = ip.Addr.Addr()
	}
	if ev.Lease == 0 {
		ev.Lease = ip.Lease
	}
	log.Info("hook: gateway from NetworkManager", "gateway", ip.Gateway, "address", ip.Addr)
}

// recordLease keeps the gateway a DHCP client's hook names for discovery,
// which prefers it to a route the client may have left stale (Debian's
// dhclient-script keeps main's old default route when a renewal changes
// only the router); a lease that went away takes its record with it. Only
// DHCP clients' hooks record: they run on every renewal, so their record
// is never older than the lease. NetworkManager does not dispatch every
// renewal, but keeps main's routes and its D-Bus view current, which
// discovery reads instead.
func recordLease(root string, ev hook.Event) error {
	if ev.Device == "" || (ev.Source != hook.Dhclient && ev.Source != hook.Dhcpcd && ev.Action != hook.Down) {
		return nil
	}
	if ev.Action == hook.Down {
		return detect.RemoveHookLease(root, ev.Device)
	}
	if !ev.Gateway.IsValid() {
		return nil
	}
	l := detect.HookLease{Gateway: ev.Gateway, Addr: ev.Addr, Source: string(ev.Source) + " " + ev.What}
	if ev.Lease > 0 {
		l.Expires = time.Now().Add(ev.Lease)
	}
	return detect.WriteHookLease(root, ev.Device, l)
}

// recordDelegation keeps the prefix a DHCPv6 client's hook names for
// discovery, as recordLease keeps the IPv4 router: dhclient writes its
// lease file late or not at all. An event without a prefix records that
// there is none, so a lease file still listing the old one is not
// believed.
func recordDelegation(root string, ev hook.Event) error {
	if ev.Device == "" || (ev.Source != hook.Dhclient && ev.Source != hook.Dhcpcd) {
		return nil
	}
	d := detect.HookDelegation{Prefix: ev.Delegated, Source: string(ev.Source) + " " + ev.What}
	if ev.DelegatedLife > 0 {
		d.Expires = time.Now().Add(ev.DelegatedLife)
	}
	return detect.WriteHookDelegation(root, ev.Device, d)
}

// seenEvent is the last event recorded for one device.
type seenEvent struct {
	Action  hook.Action `json:"action"`
	Gateway netip.Addr  `json:"gateway,omitzero"`
	Addr    netip.Addr  `json:"address,omitzero"`
	// Delegated is a DHCPv6 event's prefix: a new one is a new event.
	Delegated netip.Prefix `json:"delegated,omitzero"`
	At        time.Time    `json:"at"`
}

func eventsPath(runDir string) string { return filepath.Join(runDir, "hook-events.json") }

// seenBefore records ev and reports whether the same event was recorded
// for its device within dedupeWindow. An event without a gateway repeats
// one with a gateway (NetworkManager's ifupdown replay knows none), but
// not the other way round, and a changed gateway or address is new. A
// change after an up is new too: NetworkManager's dhcp4-change comes
// before its up, while the routes are still being set.
func seenBefore(runDir string, ev hook.Event, now time.Time) (bool, error) {
	var dup bool
	key := eventKey(ev)
	err := withEvents(runDir, func(seen map[string]seenEvent) {
		prev, ok := seen[key]
		fresh := ok && now.Sub(prev.At) < dedupeWindow && now.After(prev.At.Add(-time.Second))
		same := fresh && prev.Action == ev.Action
		dup = same &&
			(!ev.Gateway.IsValid() || ev.Gateway == prev.Gateway) &&
			(!ev.Addr.IsValid() || ev.Addr == prev.Addr) &&
			ev.Delegated == prev.Delegated
		next := seenEvent{Action: ev.Action, Gateway: ev.Gateway, Addr: ev.Addr, Delegated: ev.Delegated, At: now}
		if same {
			if !next.Gateway.IsValid() {
				next.Gateway = prev.Gateway
			}
			if !next.Addr.IsValid() {
				next.Addr = prev.Addr
			}
		}
		if dup {
			next.At = prev.At // a stream of repeats does not extend the window
		}
		seen[key] = next
		for dev, s := range seen {
			if now.Sub(s.At) > 6*dedupeWindow {
				delete(seen, dev)
			}
		}
	})
	return dup, err
}

// eventKey keeps a device's IPv4 and IPv6 events apart: a DHCPv6 renewal
// says nothing about the IPv4 lease.
func eventKey(ev hook.Event) string {
	if ev.IPv6 {
		return ev.Device + "/ipv6" // never a kernel name: it has a slash
	}
	return ev.Device
}

// forget drops a device's record, so that the event is handled again
// after a failed rebuild.
func forget(runDir, key string) {
	withEvents(runDir, func(seen map[string]seenEvent) { delete(seen, key) })
}

// withEvents runs fn on the event records under an exclusive lock on
// their file; concurrent hooks (ifupdown runs interfaces in parallel)
// take turns.
func withEvents(runDir string, fn func(map[string]seenEvent)) error {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", runDir, err)
	}
	f, err := os.OpenFile(eventsPath(runDir), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("opening hook event record: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("locking hook event record: %w", err)
	}
	seen := map[string]seenEvent{}
	data, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return fmt.Errorf("reading hook event record: %w", err)
	}
	if len(data) > 0 && json.Unmarshal(data, &seen) != nil {
		seen = map[string]seenEvent{} // a damaged record only costs a repeat
	}
	fn(seen)
	out, err := json.Marshal(seen)
	if err != nil {
		return fmt.Errorf("writing hook event record: %w", err)
	}
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("writing hook event record: %w", err)
	}
	if _, err := f.WriteAt(out, 0); err != nil {
		return fmt.Errorf("writing hook event record: %w", err)
	}
	return nil
}

// hookLogger logs to stderr (warnings and errors; everything with -v),
// where the calling tool's own log picks it up, and to syslog as
// "ispbalance" at info level, since hooks are not services and their
// stderr often goes nowhere.
func hookLogger(stderr io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	handlers := []slog.Handler{slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})}
	if w, err := syslog.New(syslog.LOG_DAEMON|syslog.LOG_INFO, "ispbalance"); err == nil {
		handlers = append(handlers, &syslogHandler{w: w})
	}
	return slog.New(slog.NewMultiHandler(handlers...)).With("component", "hook")
}

// syslogHandler writes records as "message key=value ..." lines at the
// matching syslog priority.
type syslogHandler struct {
	w     *syslog.Writer
	attrs []slog.Attr
}

func (h *syslogHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *syslogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &syslogHandler{w: h.w, attrs: append(append([]slog.Attr{}, h.attrs...), as...)}
}

// WithGroup is not used by the hook; groups are flattened.
func (h *syslogHandler) WithGroup(string) slog.Handler { return h }

func (h *syslogHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	add := func(a slog.Attr) bool {
		if a.Key != "component" {
			fmt.Fprintf(&b, " %s=%s", a.Key, strconv.Quote(a.Value.String()))
		}
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	msg := b.String()
	switch {
	case r.Level >= slog.LevelError:
		return h.w.Err(msg)
	case r.Level >= slog.LevelWarn:
		return h.w.Warning(msg)
	default:
		return h.w.Info(msg)
	}
}

// NMDispatcher is nm-dispatcher-balance, the NetworkManager dispatcher
// hook: NetworkManager runs it with the interface and the action, and it
// is `ifup-balance hook networkmanager` with those arguments.
func NMDispatcher(ctx context.Context, env Env) int {
	if len(env.Args) == 1 {
		switch env.Args[0] {
		case "-V", "--version":
			fmt.Fprintf(env.Stdout, "nm-dispatcher-balance %s\n", Version)
			return 0
		case "-h", "--help":
			fmt.Fprint(env.Stdout, "Usage: nm-dispatcher-balance INTERFACE ACTION\n"+
				"NetworkManager's dispatcher runs it; see nm-dispatcher-balance(8).\n")
			return 0
		}
	}
	env.Args = append([]string{"hook", string(hook.NetworkManager)}, env.Args...)
	return Run(ctx, env)
}

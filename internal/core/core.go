package core

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ispbalance/ispbalance/internal/apply"
	"github.com/ispbalance/ispbalance/internal/config"
	"github.com/ispbalance/ispbalance/internal/detect"
	"github.com/ispbalance/ispbalance/internal/lsm"
	"github.com/ispbalance/ispbalance/internal/plan"
	"github.com/ispbalance/ispbalance/internal/render"
	"github.com/ispbalance/ispbalance/internal/rules"
	"github.com/ispbalance/ispbalance/internal/state"
)

// Options say where things are and how loud to be.
type Options struct {
	ConfigPath string
	// StateDir holds <SERVICE>.state files (default /var/lib/lsm).
	StateDir string
	// RunDir holds the rebuild lock, the monitor's pid file and its status
	// snapshot (default /run/ispbalance).
	RunDir string
	// LockPath serialises rebuilds (default RunDir/rebuild.lock).
	LockPath string
	// LeaseRoot prefixes DHCP lease directories ("" in production).
	LeaseRoot string
	// Echo receives every change as a command line (-v); nil is quiet.
	Echo io.Writer
	Log  *slog.Logger
	// EveryWarning logs every warning of a rebuild, also those an
	// earlier rebuild logged already: the admin's own run wants them all.
	EveryWarning bool
}

// DefaultRunDir holds runtime files: locks, pid file, monitor status.
const DefaultRunDir = "/run/ispbalance"

// lockTimeout is the original's wait for a concurrent run.
const lockTimeout = 30 * time.Second

func (o *Options) fill() {
	if o.StateDir == "" {
		o.StateDir = state.DefaultDir
	}
	if o.RunDir == "" {
		o.RunDir = DefaultRunDir
	}
	if o.LockPath == "" {
		o.LockPath = filepath.Join(o.RunDir, "rebuild.lock")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// UpSet says which ISPs to treat as up.
type UpSet struct {
	// Only, when non-nil, names the ISPs that are up; all others are down
	// (`ifup-balance CABLE`). The choice is recorded in the state files.
	Only []string
	// Event, when set, records one ISP's new verdict before rebuilding
	// (`ifup-balance up CABLE`).
	Event *Event
}

// Event is one verdict about one ISP.
type Event struct {
	Service string
	Verdict state.Verdict
}

// Facts is what one run read: the configuration, what discovery found and
// the resulting plan.
type Facts struct {
	Config *config.Config
	Links  map[string]detect.Link
	Plan   plan.Plan
	// RuleNotes are warnings from reading the rule directories (a .pl
	// file that is not run, an unreadable entry).
	RuleNotes []rules.Note
}

// Gather reads the configuration and discovers the interfaces, and plans
// with the ISPs the state files record as up. It changes nothing, so the
// dry run and status use it as they are.
func Gather(opts Options, up UpSet) (Facts, error) {
	opts.fill()
	var f Facts
	cfg, err := config.Load(opts.ConfigPath)
	if err != nil {
		return f, err
	}
	f.Config = cfg
	// Monitor options are checked on every run, so a typing error in
	// balance.conf is reported by the command that reads it, not only by
	// the monitor later.
	if _, err := lsm.DefaultsFromOptions(lsmOptions(cfg)); err != nil {
		return f, err
	}
	if err := checkUpSet(cfg, up); err != nil {
		return f, err
	}
	var reqs []detect.Request
	for _, s := range cfg.Services {
		reqs = append(reqs, detect.Request{Device: s.Device, Gateway: s.Gateway,
			Gateway6: cfg.IPv6Gateways[s.Name].Addr, Delegated: cfg.IPv6Prefixes[s.Name].Prefix, LAN: s.Role == config.RoleLAN, NoIPv6: !cfg.IPv6})
	}
	f.Links, err = detect.Discover(reqs, detect.Options{Root: opts.LeaseRoot})
	if err != nil {
		return f, fmt.Errorf("discovering interfaces: %w", err)
	}
	upSet, err := resolveUp(cfg, opts.StateDir, up)
	if err != nil {
		return f, err
	}
	files, notes, err := rules.ReadDir(filepath.Join(filepath.Dir(opts.ConfigPath), "balance"), cfg.Files)
	if err != nil {
		return f, err
	}
	f.RuleNotes = notes
	down6, err := resolveDown6(cfg, opts.StateDir)
	if err != nil {
		return f, err
	}
	in := plan.Input{Config: cfg, Links: map[string]plan.Link{}, Up: upSet, Down6: down6, RuleFiles: files}
	if in.Degraded, in.Degraded6, err = resolveDegraded(cfg, opts.RunDir); err != nil {
		return f, err
	}
	for dev, l := range f.Links {
		in.Links[dev] = plan.Link{
			Kernel: l.Kernel, Present: l.Present, Carrier: l.Up, AdminDown: l.AdminDown, Addr: l.Addr,
			Gateway: l.Gateway, GatewayFrom: l.GatewayFrom, Problem: l.Problem, PointToPoint: l.PointToPoint,
			V6Addr: l.V6.Addr, V6Gateway: l.V6.Gateway, V6GatewayFrom: l.V6.GatewayFrom,
			V6Delegated: l.V6.Delegated,
		}
	}
	f.Plan, err = plan.Build(in)
	return f, err
}

func checkUpSet(cfg *config.Config, up UpSet) error {
	names := up.Only
	if up.Event != nil {
		names = append(names, up.Event.Service)
	}
	for _, n := range names {
		s, ok := cfg.Service(n)
		if !ok {
			return fmt.Errorf("%s: no service named %q; the ISPs are %s", cfg.Path, n, ispNames(cfg))
		}
		if s.Role != config.RoleISP {
			return fmt.Errorf("%s:%d: service %s is a %s, not an isp", cfg.Path, s.Line, n, s.Role)
		}
	}
	return nil
}

// resolveUp decides which ISPs are up: the explicit list, else the state
// files (an event's verdict counting as already written), else all.
func resolveUp(cfg *config.Config, dir string, up UpSet) (map[string]bool, error) {
	out := map[string]bool{}
	if up.Only != nil {
		for _, n := range up.Only {
			out[n] = true
		}
		return out, nil
	}
	for _, s := range cfg.ISPs() {
		v, err := state.Read(dir, s.Name)
		if err != nil {
			return nil, err
		}
		if up.Event != nil && up.Event.Service == s.Name {
			v = up.Event.Verdict
		}
		out[s.Name] = v == state.Up || v == state.Unknown
	}
	return out, nil
}

// resolveDown6 lists the ISPs whose IPv6 half the monitor judged down.
// Without a verdict (no monitor, or IPv6 new) IPv6 follows IPv4.
func resolveDown6(cfg *config.Config, dir string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, s := range cfg.ISPs() {
		v, err := state.Read(dir, state.IPv6Name(s.Name))
		if err != nil {
			return nil, err
		}
		out[s.Name] = v == state.Down || v == state.LongDown
	}
	return out, nil
}

// resolveDegraded lists the ISPs whose IPv4 and whose IPv6 the running
// monitor judges degraded (beyond max_rtt_ms or max_jitter_ms).
func resolveDegraded(cfg *config.Config, runDir string) (v4, v6 map[string]bool, err error) {
	names, err := state.ReadDegraded(state.DegradedFile(runDir))
	if err != nil {
		return nil, nil, err
	}
	v4, v6 = map[string]bool{}, map[string]bool{}
	for _, s := range cfg.ISPs() {
		v4[s.Name], v6[s.Name] = names[s.Name], names[state.IPv6Name(s.Name)]
	}
	return v4, v6, nil
}

// DryRun prints the plan as a script and changes nothing: no lock, no
// state files, no sockets but the netlink dump discovery needs.
func DryRun(w io.Writer, opts Options, up UpSet) error {
	f, err := Gather(opts, up)
	if err != nil {
		return err
	}
	return render.Script(w, f.Plan)
}

// Rebuild is the one rebuild path: serialised by a lock, it reads the
// newest facts once it holds the lock, so a burst of triggers ends in the
// state of the newest facts.
func Rebuild(ctx context.Context, opts Options, up UpSet, flushOthers bool) (Facts, error) {
	opts.fill()
	lock, err := state.AcquireContext(ctx, opts.LockPath, lockTimeout)
	if err != nil {
		return Facts{}, err
	}
	defer lock.Unlock()
	return rebuildLocked(ctx, opts, up, flushOthers)
}

// RebuildAfter is the rebuild for an event that arrived at arrived (a
// hook's): when a rebuild of any trigger started after that, it read
// facts newer than the event and there is nothing left to do. A burst of
// hook calls thus costs a rebuild or two, not one each. It reports
// whether it rebuilt.
func RebuildAfter(ctx context.Context, opts Options, arrived time.Time) (bool, error) {
	opts.fill()
	lock, err := state.AcquireContext(ctx, opts.LockPath, lockTimeout)
	if err != nil {
		return false, err
	}
	defer lock.Unlock()
	if last, ok := lastRebuildStart(opts); ok && !last.Before(arrived) {
		return false, nil
	}
	_, err = rebuildLocked(ctx, opts, UpSet{}, false)
	return err == nil, err
}

// lastRebuildPath records when the newest rebuild, of any trigger, began
// reading facts; written under the rebuild lock.
func lastRebuildPath(opts Options) string { return filepath.Join(opts.RunDir, "rebuild.started") }

func lastRebuildStart(opts Options) (time.Time, bool) {
	data, err := os.ReadFile(lastRebuildPath(opts))
	if err != nil {
		return time.Time{}, false
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}

func rebuildLocked(ctx context.Context, opts Options, up UpSet, flushOthers bool) (Facts, error) {
	start := time.Now()
	// Recorded before the facts are read: an event that arrives after
	// this moment may not be covered by this rebuild. A failed rebuild
	// still read the facts; its retry is the trigger's business.
	if err := os.WriteFile(lastRebuildPath(opts), []byte(strconv.FormatInt(start.UnixNano(), 10)+"\n"), 0o644); err != nil {
		opts.Log.Warn("cannot record the rebuild's start; hooks may rebuild again", "err", err)
	}
	a, err := apply.New(applierOptions(opts, opts.Log))
	if err != nil {
		return Facts{}, err
	}
	defer a.Close()
	var (
		f        Facts
		stats    apply.Stats
		gathered time.Duration
		lastErr  error
	)
	for attempt := 1; ; attempt++ {
		failed := f.Plan
		f, err = Gather(opts, up)
		if err != nil {
			return f, err
		}
		if attempt > 1 && reflect.DeepEqual(failed, f.Plan) {
			// The same facts failed twice: this is no race with another
			// program but a real error.
			return f, lastErr
		}
		gathered = time.Since(start)
		logPlanNotes(opts, f)
		if attempt == 1 {
			runCommands(ctx, opts, "pre-run", f.Plan.PreRun)
			if flushOthers {
				if err := a.FlushOthers(ctx); err != nil {
					return f, fmt.Errorf("flushing other firewall rules: %w", err)
				}
			}
		}
		stats, err = a.Apply(ctx, f.Plan)
		if err == nil {
			break
		}
		if !errors.Is(err, apply.ErrFactsChanged) || attempt == maxApplyAttempts {
			return f, err
		}
		// A device or address vanished between discovery and apply
		// (ifdown, NetworkManager): that is a fact to read again, not an
		// error. The failed attempt was rolled back.
		opts.Log.Info("interfaces changed during the rebuild; discovering again", "attempt", attempt, "err", err)
		lastErr = err
	}
	if err := recordVerdicts(opts.StateDir, f.Config, up); err != nil {
		return f, err
	}
	runCommands(ctx, opts, "post-run", f.Plan.PostRun)
	var routing []string
	for _, isp := range f.Plan.ISPs {
		if isp.Routing {
			routing = append(routing, isp.Name)
		}
	}
	opts.Log.Info("rebuilt", "routing", routing, "routes", stats.Routes, "rules", stats.Rules,
		"took", time.Since(start).Round(time.Microsecond), "gather", gathered.Round(time.Microsecond),
		"read", stats.Read.Round(time.Microsecond), "routing_apply", stats.Routing.Round(time.Microsecond),
		"firewall", stats.Firewall.Round(time.Microsecond))
	return f, nil
}

// applierOptions are the applier's settings for opts, logging to log.
// The firewall record lives in the run directory, which a reboot empties.
func applierOptions(opts Options, log *slog.Logger) apply.Options {
	return apply.Options{StateDir: filepath.Join(opts.StateDir, "ispbalance"), Echo: opts.Echo, Log: log,
		RecordPath: filepath.Join(opts.RunDir, "firewall.record")}
}

// maxApplyAttempts bounds how often one rebuild discovers again after the
// kernel changed under it; interfaces that keep changing get the next
// trigger's rebuild.
const maxApplyAttempts = 3

// logPlanNotes says what the plan left out or could not use, and loudly
// when it routes as a last resort. A warning whose condition lasts (an
// uplink whose DHCP client has not finished, a lease file not written
// yet) is logged by the first rebuild that meets it, not by every hook
// event's rebuild after it; once a rebuild no longer meets it, that is
// logged, and it is logged again should it come back.
func logPlanNotes(opts Options, f Facts) {
	var warnings []planWarning
	warn := func(msg string, attrs ...any) { warnings = append(warnings, planWarning{msg, attrs}) }
	for _, dev := range slices.Sorted(maps.Keys(f.Links)) {
		for _, w := range f.Links[dev].Warnings {
			warn("discovery: "+w, "device", dev)
		}
	}
	for _, s := range f.Plan.Skipped {
		warn("service skipped until its device is ready", "service", s.Service, "device", s.Device, "reason", s.Reason)
	}
	for _, isp := range f.Plan.ISPs {
		for _, w := range isp.Warnings {
			warn(w, "service", isp.Name, "device", isp.Device)
		}
	}
	for _, n := range f.RuleNotes {
		warn("rule files: " + n.String())
	}
	logOnce(opts, warnings)
	for _, n := range f.Plan.Notes {
		opts.Log.Info("rule files: " + n)
	}
	if f.Plan.LastResort {
		var names []string
		for _, isp := range f.Plan.ISPs {
			if isp.Routing {
				names = append(names, isp.Name)
			}
		}
		opts.Log.Error("LAST RESORT: every ISP is judged down; routing through every ISP with carrier so the LAN stays online (set last_resort=unreachable to route through none)", "isps", names)
	}
	if f.Plan.LastResort6 {
		opts.Log.Error("LAST RESORT (IPv6): every ISP's IPv6 is judged down; IPv6 goes through every ISP that routes IPv4 so the LAN keeps its IPv6")
	}
}

// planWarning is one warning of a rebuild, as it is logged.
type planWarning struct {
	msg   string
	attrs []any
}

// key identifies a warning among those of earlier rebuilds.
func (w planWarning) key() string {
	k := w.msg
	for i := 0; i+1 < len(w.attrs); i += 2 {
		k += fmt.Sprintf(" %v=%v", w.attrs[i], w.attrs[i+1])
	}
	return strings.ReplaceAll(k, "\n", " ")
}

// warnedPath records the warnings the latest rebuild met, one a line, in
// the run directory: rebuilds of the monitor, of hooks and of the command
// line share it (under the rebuild lock), and a reboot forgets it.
func warnedPath(opts Options) string { return filepath.Join(opts.RunDir, "warnings") }

// logOnce logs the warnings that the previous rebuild did not meet, says
// which of its warnings no longer hold, and records the current ones.
func logOnce(opts Options, warnings []planWarning) {
	before := map[string]bool{}
	if data, err := os.ReadFile(warnedPath(opts)); err == nil {
		for _, k := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			if k != "" {
				before[k] = true
			}
		}
	}
	now := map[string]bool{}
	var keys []string
	for _, w := range warnings {
		k := w.key()
		if now[k] {
			continue
		}
		now[k] = true
		keys = append(keys, k)
		if !before[k] || opts.EveryWarning {
			opts.Log.Warn(w.msg, w.attrs...)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(before)) {
		if !now[k] {
			opts.Log.Info("warning cleared", "warning", k)
		}
	}
	if maps.Equal(before, now) {
		return
	}
	path := warnedPath(opts)
	if len(keys) == 0 {
		os.Remove(path)
		return
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.Join(keys, "\n")+"\n"), 0o644); err == nil {
		if os.Rename(tmp, path) != nil {
			os.Remove(tmp)
		}
	}
	// Failing to record only means the warnings are logged again.
}

// recordVerdicts writes the state files after a successful apply, so a
// failed rebuild leaves the recorded states as they were.
func recordVerdicts(dir string, cfg *config.Config, up UpSet) error {
	if up.Event != nil {
		if err := state.Write(dir, up.Event.Service, up.Event.Verdict); err != nil {
			return err
		}
	}
	if up.Only == nil {
		// ISPs without a state file were treated as up; say so, so that
		// status and the next run agree with what was applied.
		for _, s := range cfg.ISPs() {
			if v, err := state.Read(dir, s.Name); err == nil && v == state.Unknown {
				if err := state.Write(dir, s.Name, state.Up); err != nil {
					return err
				}
			}
		}
		return nil
	}
	on := map[string]bool{}
	for _, n := range up.Only {
		on[n] = true
	}
	for _, s := range cfg.ISPs() {
		v := state.Down
		if on[s.Name] {
			v = state.Up
		}
		if err := state.Write(dir, s.Name, v); err != nil {
			return err
		}
	}
	return nil
}

// Stop removes everything ispbalance installed.
func Stop(ctx context.Context, opts Options, flushOthers bool) error {
	opts.fill()
	lock, err := state.AcquireContext(ctx, opts.LockPath, lockTimeout)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	// Recorded first, so a hook that waits for the lock meanwhile finds
	// the router stopped.
	if err := markStopped(opts); err != nil {
		return err
	}
	a, err := apply.New(applierOptions(opts, opts.Log))
	if err != nil {
		return err
	}
	defer a.Close()
	return a.Stop(ctx, flushOthers)
}

// Status reports each service: recorded verdict, whether it carries new
// connections now (read from the kernel's balance table), and what
// discovery found.
func Status(opts Options) (render.StatusReport, error) {
	opts.fill()
	var report render.StatusReport
	f, err := Gather(opts, UpSet{})
	if err != nil {
		return report, err
	}
	report.LastResort, report.LastResort6 = f.Plan.LastResort, f.Plan.LastResort6
	report.Stopped = Stopped(opts)
	live, err := apply.BalancedDevices()
	if err != nil {
		return report, err
	}
	if report.Firewall, err = apply.FirewallStatus(f.Plan.Firewall, f.Plan.Firewall6); err != nil {
		// Reading the firewall needs root; the rest of the status does not.
		report.Firewall = fmt.Sprintf("unknown (%v)", err)
	}
	installed, err := apply.Installed()
	report.NotInstalled = err == nil && !installed
	report.Sticky = stickyStatus(f, nil)
	if !report.Stopped && !report.NotInstalled {
		report.Drift = installedDrift(opts, f.Plan)
	}
	for _, s := range f.Config.Services {
		l := f.Links[s.Device]
		row := render.StatusRow{Service: s.Name, Device: s.Device, Role: string(s.Role),
			Addr: l.Addr, Gateway: l.Gateway, GatewayFrom: l.GatewayFrom, Problem: l.Problem}
		row.Warnings = append(row.Warnings, l.Warnings...)
		if s.Role == config.RoleISP {
			row.Addr6, row.Gateway6, row.Gateway6From = l.V6.Addr, l.V6.Gateway, l.V6.GatewayFrom
			row.Delegated6, row.Delegated6From = l.V6.Delegated, l.V6.DelegatedFrom
		}
		if s.Role == config.RoleISP {
			v, err := state.Read(opts.StateDir, s.Name)
			if err != nil {
				return report, err
			}
			row.State = string(v)
			if v == state.Unknown {
				row.State = "unknown"
			}
			row.Routing = live[l.Kernel] && l.Present && l.Up
			row.Warnings = append(row.Warnings, planWarnings(f.Plan, s.Name, l.Present)...)
		} else {
			row.State = "up"
			if !l.Present {
				row.State = "absent"
			}
		}
		report.Rows = append(report.Rows, row)
	}
	return report, nil
}

// installedDrift says where the kernel differs from what a rebuild would
// install now: what the monitor has yet to repair, or, without a monitor,
// facts that changed since the last rebuild (a gateway moved at a renewal
// no hook reported). Reading the firewall needs root; without it only the
// routing is compared.
func installedDrift(opts Options, p plan.Plan) []string {
	ao := applierOptions(opts, slog.New(slog.DiscardHandler))
	ao.Echo = nil
	a, err := apply.New(ao)
	if err != nil {
		return nil
	}
	defer a.Close()
	drift, err := a.Drift(context.Background(), p, os.Geteuid() == 0)
	if err != nil {
		return []string{"cannot compare with the kernel: " + err.Error()}
	}
	return drift
}

// ispNames lists the configured ISPs for a message about a name that is
// not one of them.
func ispNames(cfg *config.Config) string {
	var names []string
	for _, s := range cfg.ISPs() {
		names = append(names, s.Name)
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// planWarnings is what the plan says about an ISP for the status table:
// its warnings, or why a present device was left out (a missing device
// already shows as its problem).
func planWarnings(p plan.Plan, service string, present bool) []string {
	for _, isp := range p.ISPs {
		if isp.Name == service {
			return isp.Warnings
		}
	}
	for _, s := range p.Skipped {
		if s.Service == service && present {
			return []string{"left out: " + s.Reason}
		}
	}
	return nil
}

// stoppedPath is the marker `stop` leaves: while it exists, hooks and
// external lsm events change nothing, so a NetworkManager reapply or an
// ifupdown run after `ifup-balance stop` does not quietly reinstall
// balancing with no monitor watching it.
func stoppedPath(opts Options) string {
	opts.fill()
	return filepath.Join(opts.StateDir, "ispbalance", "stopped")
}

// Stopped reports whether `ifup-balance stop` was the last word.
func Stopped(opts Options) bool {
	_, err := os.Stat(stoppedPath(opts))
	return err == nil
}

// Resume forgets a `stop`: what the admin's plain run and the service's
// start do before balancing again.
func Resume(opts Options) error {
	if err := os.Remove(stoppedPath(opts)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("forgetting the stop: %w", err)
	}
	return nil
}

func markStopped(opts Options) error {
	path := stoppedPath(opts)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("recording the stop: %w", err)
	}
	if err := os.WriteFile(path, []byte("stopped by ifup-balance stop\n"), 0o644); err != nil {
		return fmt.Errorf("recording the stop: %w", err)
	}
	return nil
}

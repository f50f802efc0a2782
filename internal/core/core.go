package core

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
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
		reqs = append(reqs, detect.Request{Device: s.Device, Gateway: s.Gateway})
	}
	f.Links, err = detect.Discover(reqs, detect.Options{Root: opts.LeaseRoot})
	if err != nil {
		return f, fmt.Errorf("discovering interfaces: %w", err)
	}
	upSet, err := resolveUp(cfg, opts.StateDir, up)
	if err != nil {
		return f, err
	}
	files, notes, err := rules.ReadDir(filepath.Join(filepath.Dir(opts.ConfigPath), "balance"))
	if err != nil {
		return f, err
	}
	f.RuleNotes = notes
	in := plan.Input{Config: cfg, Links: map[string]plan.Link{}, Up: upSet, RuleFiles: files}
	for dev, l := range f.Links {
		in.Links[dev] = plan.Link{
			Kernel: l.Kernel, Present: l.Present, Carrier: l.Up, Addr: l.Addr,
			Gateway: l.Gateway, GatewayFrom: l.GatewayFrom, Problem: l.Problem,
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
			return fmt.Errorf("%s: no service named %q", cfg.Path, n)
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
	lock, err := state.Acquire(opts.LockPath, lockTimeout)
	if err != nil {
		return Facts{}, err
	}
	defer lock.Unlock()
	start := time.Now()
	f, err := Gather(opts, up)
	if err != nil {
		return f, err
	}
	gathered := time.Since(start)
	for _, s := range f.Plan.Skipped {
		opts.Log.Warn("service skipped until its device is ready", "service", s.Service, "device", s.Device, "reason", s.Reason)
	}
	for _, n := range f.RuleNotes {
		opts.Log.Warn("rule files: " + n.String())
	}
	for _, n := range f.Plan.Notes {
		opts.Log.Info("rule files: " + n)
	}
	runCommands(ctx, opts, "pre-run", f.Plan.PreRun)
	a, err := apply.New(apply.Options{StateDir: filepath.Join(opts.StateDir, "ispbalance"), Echo: opts.Echo, Log: opts.Log})
	if err != nil {
		return f, err
	}
	defer a.Close()
	if flushOthers {
		if err := a.FlushOthers(ctx); err != nil {
			return f, fmt.Errorf("flushing other firewall rules: %w", err)
		}
	}
	stats, err := a.Apply(ctx, f.Plan)
	if err != nil {
		return f, err
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
	lock, err := state.Acquire(opts.LockPath, lockTimeout)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	a, err := apply.New(apply.Options{StateDir: filepath.Join(opts.StateDir, "ispbalance"), Echo: opts.Echo, Log: opts.Log})
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
	live, err := apply.BalancedDevices()
	if err != nil {
		return report, err
	}
	if report.Firewall, err = apply.FirewallStatus(f.Plan.Firewall); err != nil {
		// Reading the firewall needs root; the rest of the status does not.
		report.Firewall = fmt.Sprintf("unknown (%v)", err)
	}
	for _, s := range f.Config.Services {
		l := f.Links[s.Device]
		row := render.StatusRow{Service: s.Name, Device: s.Device, Role: string(s.Role),
			Addr: l.Addr, Gateway: l.Gateway, GatewayFrom: l.GatewayFrom, Problem: l.Problem}
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

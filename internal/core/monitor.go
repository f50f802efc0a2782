package core

import (
	"context"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/ispbalance/ispbalance/internal/apply"
	"github.com/ispbalance/ispbalance/internal/config"
	"github.com/ispbalance/ispbalance/internal/lsm"
	"github.com/ispbalance/ispbalance/internal/monitor"
	"github.com/ispbalance/ispbalance/internal/state"
)

func lsmOptions(cfg *config.Config) []lsm.Option {
	var out []lsm.Option
	for _, o := range cfg.MonitorOptions {
		out = append(out, lsm.Option{Name: o.Name, Value: o.Value, File: o.File, Line: o.Line})
	}
	return out
}

// MonitorFacts tells the monitor what a rebuild found: which ISPs to
// probe, through which address and mark, and which devices to watch.
func MonitorFacts(f Facts) monitor.Facts {
	var mf monitor.Facts
	planned := map[string]int{}
	for i, isp := range f.Plan.ISPs {
		planned[isp.Name] = i
	}
	for _, s := range f.Config.ISPs() {
		t := monitor.Target{Service: s.Name, Ping: append([]string(nil), s.PingTargets...)}
		if i, ok := planned[s.Name]; ok {
			isp := f.Plan.ISPs[i]
			t.Device, t.Src, t.Mark, t.Gateway = isp.Kernel, isp.Addr.Addr(), isp.Mark, isp.Gateway
			t.Present, t.Carrier, t.Routing = true, isp.Carrier, isp.Routing
		} else {
			t.AdminDown = f.Links[s.Device].AdminDown
		}
		mf.Targets = append(mf.Targets, t)
		if i, ok := planned[s.Name]; ok && f.Plan.ISPs[i].HasIPv6() {
			isp := f.Plan.ISPs[i]
			mf.Targets = append(mf.Targets, monitor.Target{
				Service: state.IPv6Name(s.Name), Base: s.Name, IPv6: true,
				Ping: append([]string(nil), s.PingTargets...), Device: isp.Kernel,
				Src: isp.Src6, Mark: isp.Mark, Gateway: isp.Gateway6,
				Present: true, Carrier: isp.Carrier, Routing: isp.Routing6,
			})
		}
	}
	seen := map[string]bool{}
	for _, l := range f.Links {
		if l.Kernel != "" && !seen[l.Kernel] {
			seen[l.Kernel] = true
			mf.Devices = append(mf.Devices, l.Kernel)
		}
	}
	return mf
}

// MonitorRebuilder is the monitor's way into the one rebuild path.
func MonitorRebuilder(opts Options) monitor.Rebuilder {
	return func(ctx context.Context, reason string) (monitor.Facts, error) {
		opts.Log.Info("rebuilding", "reason", reason)
		f, err := Rebuild(ctx, opts, UpSet{}, false)
		if err != nil {
			return monitor.Facts{}, err
		}
		mf := MonitorFacts(f)
		applied := f.Plan
		mf.Drift = func(ctx context.Context, firewall bool) ([]string, error) {
			// A quiet applier: the monitor logs what the check finds.
			ao := applierOptions(opts, slog.New(slog.DiscardHandler))
			ao.Echo = nil
			a, err := apply.New(ao)
			if err != nil {
				return nil, err
			}
			defer a.Close()
			return a.Drift(ctx, applied, firewall)
		}
		return mf, nil
	}
}

// MonitorOptions builds the monitor's settings from balance.conf and, when
// lsmConfig is set, a foolsm configuration file whose connections are
// matched to services by name.
func MonitorOptions(opts Options, lsmConfig string) (monitor.Options, error) {
	opts.fill()
	cfg, err := config.Load(opts.ConfigPath)
	if err != nil {
		return monitor.Options{}, err
	}
	def, err := lsm.DefaultsFromOptions(lsmOptions(cfg))
	if err != nil {
		return monitor.Options{}, err
	}
	mo := monitor.Options{
		Default:         def,
		Settings:        map[string]lsm.Settings{},
		ScriptDir:       filepath.Join(filepath.Dir(opts.ConfigPath), "balance", "lsm"),
		Files:           cfg.Files,
		StateDir:        opts.StateDir,
		StatusPath:      filepath.Join(opts.RunDir, "monitor.json"),
		DegradedPath:    state.DegradedFile(opts.RunDir),
		FlushConntrack:  cfg.FlushConntrack,
		MetricsListen:   cfg.MetricsListen,
		MetricsTextfile: cfg.MetricsTextfile,
		Log:             opts.Log,
	}
	if lsmConfig != "" {
		lc, err := lsm.ParseFile(lsmConfig)
		if err != nil {
			return monitor.Options{}, err
		}
		for _, c := range lc.Connections {
			mo.Settings[c.Name] = c
		}
		mo.Groups = lc.Groups
	}
	// Quality thresholds are balance.conf's, per ISP or for all, over
	// whichever lsm settings the ISP has.
	for _, s := range cfg.ISPs() {
		set, ok := mo.Settings[s.Name]
		if !ok {
			set = def
		}
		rtt, jitter := cfg.QualityFor(s.Name)
		set.Quality = lsm.Quality{MaxRTT: time.Duration(rtt) * time.Millisecond, MaxJitter: time.Duration(jitter) * time.Millisecond}
		if ok || set.Quality.On() {
			mo.Settings[s.Name] = set
		}
	}
	return mo, nil
}

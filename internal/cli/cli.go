package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ispbalance/ispbalance/internal/core"
	"github.com/ispbalance/ispbalance/internal/detect"
	"github.com/ispbalance/ispbalance/internal/kernelnames"
	"github.com/ispbalance/ispbalance/internal/monitor"
	"github.com/ispbalance/ispbalance/internal/state"
)

// Version is set at build time with -ldflags "-X ...cli.Version=...".
var Version = "0.1.0-dev"

// eventScriptLimit bounds each event script run for an lsm event.
const eventScriptLimit = 30 * time.Second

// ConfigEnv names the environment variable that points every entry point
// at a configuration file, like -c.
const ConfigEnv = "ISPBALANCE_CONFIG"

const usage = `Usage:
  ifup-balance [options] [SERVICE ...]   rebuild with the named ISPs up (no names: the
                                         ISPs recorded as up; all of them on the first run)
  ifup-balance [options] up|down|long_down SERVICE [LSM-ARGS ...]
                                         record one ISP's state and rebuild
  ifup-balance [options] stop            remove everything ispbalance installed
  ifup-balance [options] events          the monitor's recorded state changes (--json: as JSON)
  ifup-balance migrate FILE.pl            print a rule file equivalent to a Perl rule file
  ifup-balance [options] monitor [--lsm-config FILE]
                                         run the link monitor in the foreground
  ifup-balance [options] hook SOURCE [ARGS...]
                                         a network-stack hook's event (ifupdown, dhclient,
                                         dhcpcd, networkmanager, networkd-dispatcher,
                                         ifup-local, ifdown-local); always exits 0

Options:
  -c FILE       configuration file (also $ISPBALANCE_CONFIG); default by layout:
                /etc/network/balance.conf, /etc/sysconfig/network-scripts/balance.conf,
                else /etc/balance.conf
  -d            print the plan as commands and change nothing (works as any user)
  -v            echo every change to stderr
  -s            print the status table (with --json: as JSON)
  -k            stop the running link monitor
  --no-monitor  rebuild only; do not start the link monitor
  -f, --flush   also clear other software's rules in the built-in chains and its chains
  -V            print the version
  -h            this help
  --root DIR    treat DIR as / when looking for the configuration and lease files
  --state-dir DIR  where <SERVICE>.state files live (default /var/lib/lsm)
  --run-dir DIR    locks, monitor pid and status (default /run/ispbalance)
  --lsm-config FILE  with monitor: also read this foolsm configuration
`

type flags struct {
	configPath, root, stateDir, runDir, lsmConfig                                  *string
	dry, verbose, status, flush, flushLong, version, help, kill, noMonitor, asJSON *bool
}

func newFlags() (*flag.FlagSet, flags) {
	fs := flag.NewFlagSet("ifup-balance", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs, flags{
		configPath: fs.String("c", "", ""),
		root:       fs.String("root", "", ""),
		stateDir:   fs.String("state-dir", "", ""),
		runDir:     fs.String("run-dir", "", ""),
		lsmConfig:  fs.String("lsm-config", "", ""),
		kill:       fs.Bool("k", false, ""),
		noMonitor:  fs.Bool("no-monitor", false, ""),
		asJSON:     fs.Bool("json", false, ""),
		dry:        fs.Bool("d", false, ""),
		verbose:    fs.Bool("v", false, ""),
		status:     fs.Bool("s", false, ""),
		flush:      fs.Bool("f", false, ""),
		flushLong:  fs.Bool("flush", false, ""),
		version:    fs.Bool("V", false, ""),
		help:       fs.Bool("h", false, ""),
	}
}

// Env is what the command reads from its surroundings.
type Env struct {
	Args           []string // without the program name
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// Run executes the command and returns the exit status.
func Run(ctx context.Context, env Env) int {
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	fs, f := newFlags()
	configFrom := configFromFlag
	var opts core.Options
	fail := func(err error) int {
		err = explainMissingConfig(err, opts.ConfigPath, configFrom, *f.root)
		fmt.Fprintf(env.Stderr, "ifup-balance: %v\n", err)
		return 1
	}
	positional, err := parseInterspersed(fs, env.Args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(env.Stdout, usage)
			return 0
		}
		fmt.Fprintf(env.Stderr, "ifup-balance: %v\n%s", err, usage)
		return 2
	}
	if *f.help {
		fmt.Fprint(env.Stdout, usage)
		return 0
	}
	if *f.version {
		fmt.Fprintf(env.Stdout, "ifup-balance %s\n", Version)
		return 0
	}
	level := slog.LevelWarn
	if *f.verbose {
		level = slog.LevelInfo
	}
	opts = core.Options{
		ConfigPath: *f.configPath,
		StateDir:   *f.stateDir,
		RunDir:     *f.runDir,
		LeaseRoot:  *f.root,
		Log:        slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: level})).With("component", "ifup-balance"),
	}
	if opts.ConfigPath == "" {
		opts.ConfigPath, configFrom = env.Getenv(ConfigEnv), configFromEnv
	}
	if opts.ConfigPath == "" {
		opts.ConfigPath, configFrom = detect.DetectLayout(*f.root).ConfigPath, configFromLayout
	}
	if opts.StateDir == "" && *f.root != "" {
		opts.StateDir = *f.root + state.DefaultDir
	}
	if opts.RunDir == "" {
		opts.RunDir = core.DefaultRunDir
		if *f.root != "" {
			opts.RunDir = *f.root + core.DefaultRunDir
		}
	}
	if opts.StateDir == "" {
		opts.StateDir = state.DefaultDir
	}
	// What a monitor started from here needs to find the same router.
	monitorArgs := []string{"-c", opts.ConfigPath, "--state-dir", opts.StateDir, "--run-dir", opts.RunDir}
	if *f.root != "" {
		monitorArgs = append(monitorArgs, "--root", *f.root)
	}
	if *f.verbose {
		opts.Echo = env.Stderr
	}

	up, command, err := parsePositional(positional)
	if err != nil {
		fmt.Fprintf(env.Stderr, "ifup-balance: %v\n%s", err, usage)
		return 2
	}
	switch {
	case *f.kill:
		if err := killMonitor(opts.RunDir); err != nil {
			return fail(err)
		}
		return 0
	case *f.status:
		if err := printStatus(env, opts, *f.asJSON); err != nil {
			return fail(err)
		}
		return 0
	case *f.dry && command == "stop":
		fmt.Fprintf(env.Stdout, "# stop would remove ispbalance's rules (priorities %d-%d), routes in tables %d-%d, %s chains and the jumps to them\n",
			kernelnames.PrioMin, kernelnames.PrioMax, kernelnames.BalanceTable, kernelnames.ISPTable(kernelnames.MaxISPs), kernelnames.ChainPrefix)
		return 0
	case *f.dry && command == "monitor":
		fmt.Fprintln(env.Stdout, "# -d never starts or touches the monitor")
		return 0
	case *f.dry:
		if err := core.DryRun(env.Stdout, opts, up); err != nil {
			return fail(err)
		}
		return 0
	case command == "stop":
		// A running monitor would put everything back at its next verdict.
		if runningMonitor(monitorPidFile(opts.RunDir)) > 0 {
			if err := killMonitor(opts.RunDir); err != nil {
				return fail(err)
			}
		}
		if err := core.Stop(ctx, opts, *f.flush || *f.flushLong); err != nil {
			return fail(err)
		}
		return 0
	case command == "monitor":
		return runMonitor(ctx, env, opts, *f.lsmConfig)
	case command == "events":
		if err := printEvents(env, opts, *f.asJSON); err != nil {
			return fail(err)
		}
		return 0
	case command == "hook":
		return runHook(ctx, env, opts, *f.root, *f.verbose, positional[1:])
	case command == "migrate":
		return runMigrate(env, positional[1])
	}
	if up.Event != nil && core.Stopped(opts) {
		// An external lsm's verdict after `stop` must not reinstall what
		// the admin removed.
		fmt.Fprintf(env.Stderr, "ifup-balance: stopped by `ifup-balance stop`; %s %s not applied (run ifup-balance to start again)\n", up.Event.Verdict, up.Event.Service)
		return 0
	}
	if up.Event == nil {
		// The admin's own run starts balancing again after a stop, and
		// shows every warning, not only those no rebuild logged yet.
		if err := core.Resume(opts); err != nil {
			return fail(err)
		}
		opts.EveryWarning = true
	}
	facts, err := core.Rebuild(ctx, opts, up, *f.flush || *f.flushLong)
	if err != nil {
		return fail(err)
	}
	if up.Event != nil {
		// An event from an external lsm runs balance/lsm/<state>.d/ with
		// the arguments lsm gave, as the original did; the bundled monitor
		// runs them itself.
		scriptDir := filepath.Join(filepath.Dir(opts.ConfigPath), "balance", "lsm")
		monitor.RunEventScripts(ctx, scriptDir, string(up.Event.Verdict), facts.Config.Files, positional, eventScriptLimit, opts.Log)
	}
	// A plain run restarts monitoring, as the original did; naming ISPs
	// or passing an lsm event leaves the monitor as it is.
	if up.Only == nil && up.Event == nil && !*f.noMonitor {
		if err := ensureMonitor(monitorArgs, opts.RunDir); err != nil {
			return fail(fmt.Errorf("rebuilt, but the monitor did not start: %w", err))
		}
	}
	return 0
}

// parseInterspersed lets options follow words (`ifup-balance stop -f`),
// except after an lsm event name, whose 16 arguments are lsm's own.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		positional = append(positional, args[0])
		switch args[0] {
		case "up", "down", "long_down", "hook":
			return append(positional, args[1:]...), nil
		}
		args = args[1:]
	}
}

// parsePositional reads `SERVICE...`, `up|down|long_down NAME [lsm args]`
// or `stop`.
func parsePositional(args []string) (core.UpSet, string, error) {
	if len(args) == 0 {
		return core.UpSet{}, "", nil
	}
	switch args[0] {
	case "migrate":
		if len(args) != 2 {
			return core.UpSet{}, "", fmt.Errorf("migrate takes one Perl rule file")
		}
		return core.UpSet{}, "migrate", nil
	case "monitor":
		if len(args) > 1 {
			return core.UpSet{}, "", fmt.Errorf("monitor takes no arguments, got %q", strings.Join(args[1:], " "))
		}
		return core.UpSet{}, "monitor", nil
	case "events":
		if len(args) > 1 {
			return core.UpSet{}, "", fmt.Errorf("events takes no arguments, got %q", strings.Join(args[1:], " "))
		}
		return core.UpSet{}, "events", nil
	case "stop":
		if len(args) > 1 {
			return core.UpSet{}, "", fmt.Errorf("stop takes no arguments, got %q", strings.Join(args[1:], " "))
		}
		return core.UpSet{}, "stop", nil
	case "hook":
		// Hooks report problems in their log, never by failing.
		return core.UpSet{}, "hook", nil
	case "up", "down", "long_down":
		if len(args) < 2 {
			return core.UpSet{}, "", fmt.Errorf("%s needs a service name", args[0])
		}
		// lsm passes 16 positional arguments; only the name matters here,
		// the rest are accepted for compatibility.
		return core.UpSet{Event: &core.Event{Service: args[1], Verdict: state.Verdict(args[0])}}, args[0], nil
	}
	return core.UpSet{Only: args}, "", nil
}

package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/ispbalance/ispbalance/internal/config"
	"github.com/ispbalance/ispbalance/internal/core"
	"github.com/ispbalance/ispbalance/internal/monitor"
)

// monitorPidFile is locked by the running monitor for its whole life, so
// "is a monitor running?" is answered by the kernel, not by a stale file.
func monitorPidFile(runDir string) string { return filepath.Join(runDir, "monitor.pid") }

// pidLock holds the monitor's pid file.
type pidLock struct{ f *os.File }

// lockPidFile takes the single-instance lock, or says who holds it.
func lockPidFile(path string) (*pidLock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if pid := runningMonitor(path); pid > 0 {
			return nil, fmt.Errorf("a monitor already runs (pid %d); stop it with ifup-balance -k", pid)
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	f.Truncate(0)
	fmt.Fprintf(f, "%d\n", os.Getpid())
	return &pidLock{f: f}, nil
}

func (l *pidLock) release() { l.f.Close() }

// runningMonitor returns the pid of the monitor holding the lock, or 0.
func runningMonitor(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err == nil {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return 0 // nobody holds it: the file is stale
	}
	data, _ := os.ReadFile(path)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

// runMonitor is `ifup-balance monitor`: the lsm-compatible monitor in the
// foreground, for systemd or the background start below.
func runMonitor(ctx context.Context, env Env, opts core.Options, lsmConfig string) int {
	// Signals are caught before the pid file names us: a hook that finds
	// the pid and sends SIGUSR2 at once must not kill a starting monitor.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	lock, err := lockPidFile(monitorPidFile(opts.RunDir))
	if err != nil {
		fmt.Fprintf(env.Stderr, "ifup-balance: %v\n", err)
		return 1
	}
	defer lock.release()
	// The monitor's log is its record of verdicts and rebuilds: info level.
	opts.Log = slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var idle atomic.Bool
	go notifyLoop(ctx, filepath.Join(opts.RunDir, "monitor.json"), &idle, sdNotify)
	if !waitForISPs(ctx, opts, sigs, &idle) {
		return 0
	}
	mo, err := core.MonitorOptions(opts, lsmConfig)
	if err != nil {
		fmt.Fprintf(env.Stderr, "ifup-balance: %v\n", err)
		return 1
	}
	// Starting the service is starting balancing, after a stop too.
	if err := core.Resume(opts); err != nil {
		fmt.Fprintf(env.Stderr, "ifup-balance: %v\n", err)
		return 1
	}
	ctl := monitor.Control{Reload: make(chan func() (monitor.Options, error), 1), Dump: make(chan struct{}, 1),
		Rebuild: make(chan string, 1)}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case s := <-sigs:
				switch s {
				case syscall.SIGHUP:
					ctl.Reload <- func() (monitor.Options, error) { return core.MonitorOptions(opts, lsmConfig) }
				case syscall.SIGUSR2:
					// A hook's nudge; one waiting request covers any number.
					select {
					case ctl.Rebuild <- "hook event (SIGUSR2)":
					default:
					}
				default:
					ctl.Dump <- struct{}{}
				}
			}
		}
	}()
	m := monitor.New(mo, core.MonitorRebuilder(opts))
	err = m.Run(ctx, ctl, func() { sdNotify(daemon.SdNotifyReady) })
	sdNotify(daemon.SdNotifyStopping)
	if err != nil {
		fmt.Fprintf(env.Stderr, "ifup-balance: monitor: %v\n", err)
		return 1
	}
	return 0
}

// waitForISPs keeps a monitor whose balance.conf has no ISP services (the
// package's default, all commented) idle: ready for systemd, changing
// nothing, until SIGHUP finds some. Exiting instead would make a
// Type=notify service fail and restart in a loop. It returns false when
// the monitor is stopped while idle. A configuration that does not parse
// is left to the normal start, which reports it.
func waitForISPs(ctx context.Context, opts core.Options, sigs <-chan os.Signal, idleFlag *atomic.Bool) bool {
	idle := false
	defer idleFlag.Store(false)
	for {
		cfg, err := config.Load(opts.ConfigPath)
		switch {
		case err == nil && len(cfg.ISPs()) > 0:
			if idle {
				opts.Log.Info("ISP services configured: monitoring", "config", opts.ConfigPath)
			}
			return true
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			return true
		case !idle:
			opts.Log.Info("no ISP services in the configuration: idle, changing nothing, until reloaded (SIGHUP)", "config", opts.ConfigPath)
			idleFlag.Store(true)
			sdNotify(daemon.SdNotifyReady)
			idle = true
		}
		select {
		case <-ctx.Done():
			return false
		case s := <-sigs:
			if s != syscall.SIGHUP {
				continue // nothing to dump, nothing to rebuild
			}
		}
	}
}

// killMonitor is -k: stop the running monitor and wait for it to go.
func killMonitor(runDir string) error {
	path := monitorPidFile(runDir)
	pid := runningMonitor(path)
	if pid <= 0 {
		return errors.New("no monitor is running")
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stopping monitor pid %d: %w", pid, err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if runningMonitor(path) == 0 {
			return nil
		}
	}
	return fmt.Errorf("monitor pid %d did not stop within 10 s", pid)
}

// systemdUnit is the service that runs the monitor where systemd runs.
const systemdUnit = "ispbalance.service"

// ensureMonitor starts a monitor when none runs, as the original
// restarted lsm on a plain run: through systemd where it manages the
// service, else as a detached child of our own.
func ensureMonitor(args []string, runDir string) error {
	if runningMonitor(monitorPidFile(runDir)) > 0 {
		return nil
	}
	if _, err := os.Stat("/run/systemd/system"); err == nil && runDir == core.DefaultRunDir {
		if err := exec.Command("systemctl", "cat", systemdUnit).Run(); err == nil {
			return exec.Command("systemctl", "start", "--no-block", systemdUnit).Run()
		}
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding own executable: %w", err)
	}
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(runDir, "monitor.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("opening monitor log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(self, append(args, "monitor")...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting monitor: %w", err)
	}
	return cmd.Process.Release()
}

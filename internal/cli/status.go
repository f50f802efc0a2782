package cli

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/ispbalance/ispbalance/internal/core"
	"github.com/ispbalance/ispbalance/internal/monitor"
	"github.com/ispbalance/ispbalance/internal/render"
)

// printStatus is -s: the services, the firewall, and the monitor's view
// when one runs.
func printStatus(env Env, opts core.Options, asJSON bool) error {
	report, err := core.Status(opts)
	if err != nil {
		return err
	}
	if pid := runningMonitor(monitorPidFile(opts.RunDir)); pid > 0 {
		report.Monitor = &render.MonitorStatus{PID: pid}
		if snap, err := monitor.ReadSnapshot(filepath.Join(opts.RunDir, "monitor.json")); err == nil {
			report.Monitor.Started, report.Monitor.ISPs = snap.Started, snap.ISPs
		}
	}
	if asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			return fmt.Errorf("writing status: %w", err)
		}
		return nil
	}
	return render.Status(env.Stdout, report)
}

// printEvents shows the monitor's event history, from the state
// directory: it outlives the monitor.
func printEvents(env Env, opts core.Options, asJSON bool) error {
	events, err := monitor.ReadEvents(opts.StateDir)
	if err != nil {
		return err
	}
	if asJSON {
		if events == nil {
			events = []render.MonitorEvent{}
		}
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(events)
	}
	return render.Events(env.Stdout, events)
}

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
			report.Monitor.Started = snap.Started
			for _, is := range snap.ISPs {
				mi := render.MonitorISP{Service: is.Service, State: is.State, Since: is.Since, Probing: is.Probing,
					LossPercent: is.LossPercent, AvgRTTms: is.AvgRTTms, Warning: is.Warning}
				for _, t := range is.Targets {
					mi.Targets = append(mi.Targets, render.MonitorTarget{Addr: t.Addr, Last: t.Last})
				}
				report.Monitor.ISPs = append(report.Monitor.ISPs, mi)
			}
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

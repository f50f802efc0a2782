package main

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ispbalance/ispbalance/internal/lab"
	"github.com/ispbalance/ispbalance/internal/monitor"
)

// benchMonitor runs the monitor on a 4-ISP lab and prints how fast it
// fails over and recovers and what it costs to run.
func benchMonitor(idle time.Duration, metrics, dual bool) error {
	bin, dir, err := build()
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	const isps = 4
	l, err := lab.New(lab.Options{Prefix: "benchm", ISPs: isps})
	if err != nil {
		return err
	}
	defer l.Close()
	stopServer, err := l.StartServer(8080)
	if err != nil {
		return err
	}
	defer stopServer()
	const port6 = 8081
	if dual {
		if err := addDualStack(l); err != nil {
			return err
		}
		stop6, err := l.StartListener("inet", netip.AddrPortFrom(v6Server, port6))
		if err != nil {
			return err
		}
		defer stop6()
	}
	conf := filepath.Join(dir, "balance.conf")
	var b strings.Builder
	for k := 1; k <= isps; k++ {
		targets := l.ServerAddr().String()
		if dual {
			targets += "," + v6Server.String()
		}
		fmt.Fprintf(&b, "ISP%d wan%d isp %s\n", k, k, targets)
	}
	b.WriteString("LAN lan1 lan\n")
	if metrics {
		b.WriteString("metrics_listen=127.0.0.1:" + metricsPort + "\n")
	}
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		return err
	}
	runDir, stateDir := filepath.Join(dir, "run"), filepath.Join(dir, "state")
	logf, err := os.Create(filepath.Join(dir, "monitor.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	var cmd *exec.Cmd
	err = l.Do("router", func() error {
		cmd = exec.Command(bin, "-c", conf, "--state-dir", stateDir, "--run-dir", runDir, "monitor")
		cmd.Stdout, cmd.Stderr = logf, logf
		return cmd.Start()
	})
	if err != nil {
		return err
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()

	allUp := func() bool {
		snap, err := monitor.ReadSnapshot(filepath.Join(runDir, "monitor.json"))
		want := isps
		if dual {
			want = 2 * isps // each ISP's IPv6 is judged apart
		}
		if err != nil || len(snap.ISPs) != want {
			return false
		}
		for _, is := range snap.ISPs {
			if is.State != "up" {
				return false
			}
		}
		return true
	}
	for start := time.Now(); !allUp(); time.Sleep(100 * time.Millisecond) {
		if time.Since(start) > 20*time.Second {
			return fmt.Errorf("the monitor did not report all ISPs up within 20 s")
		}
	}

	with := "metrics off"
	if metrics {
		with = "metrics on and scraped every 15 s"
	}
	fmt.Printf("monitor, %d ISPs, default settings, probing the internet server through each, %s\n", isps, with)
	scrape := func() (int, error) {
		out, err := l.Exec("router", "curl", "-sf", "--max-time", "5", "http://127.0.0.1:"+metricsPort+"/metrics")
		return len(out), err
	}
	if metrics {
		n, err := scrape()
		if err != nil {
			return fmt.Errorf("scraping the metrics: %w", err)
		}
		fmt.Printf("one scrape: %d bytes\n", n)
	}
	rss0, cpu0 := usage(cmd.Process.Pid)
	t0 := time.Now()
	for time.Since(t0) < idle {
		time.Sleep(min(15*time.Second, idle-time.Since(t0)))
		if metrics {
			if _, err := scrape(); err != nil {
				return fmt.Errorf("scraping the metrics: %w", err)
			}
		}
	}
	rss1, cpu1 := usage(cmd.Process.Pid)
	cpuShare := 100 * (cpu1 - cpu0).Seconds() / time.Since(t0).Seconds()

	// One 25 s silent outage: how fast new connections avoid ISP1, then
	// how fast ISP1 is used again after the repair. A second outage soon
	// after would be held down longer on purpose (flap damping), so the
	// recovery is measured on the first.
	undo, err := l.SilentDrop(1)
	if err != nil {
		return err
	}
	outage := time.Now()
	silent := avoid(l, outage)
	time.Sleep(25*time.Second - time.Since(outage))
	undo()
	repaired := time.Now()
	recovery := time.Duration(-1)
	for time.Since(repaired) < 60*time.Second {
		if k, err := l.WhichISP(1, 8080, 300*time.Millisecond); err == nil && k == 1 {
			recovery = time.Since(repaired)
			break
		}
	}
	time.Sleep(5 * time.Second)
	carrier, err := failover(l, func() (func() error, error) { return l.CarrierDown(1) })
	if err != nil {
		return err
	}

	var fail6, recover6 time.Duration
	if dual {
		// ISP 2: ISP 1 has just been failed twice, and flap damping would
		// hold its IPv6 down longer on purpose.
		time.Sleep(5 * time.Second)
		if fail6, recover6, err = ipv6Failover(l, 2, port6); err != nil {
			return err
		}
	}

	row := "%-44s %12s %10s %12s\n"
	fmt.Printf(row, "", "measured", "target", "original")
	fmt.Printf(row, "failover, upstream silently dead", secs(silent), "2 s", "8.5 s")
	fmt.Printf(row, "failover, carrier lost", secs(carrier), "0.5 s", "7.8 s")
	fmt.Printf(row, "recovery after a 25 s outage", secs(recovery), "5 s", "about 90 s")
	fmt.Printf(row, fmt.Sprintf("resident memory (after %v)", idle.Round(time.Second)), fmt.Sprintf("%.1f MB", float64(max(rss0, rss1))/1024), "15 MB", "")
	fmt.Printf(row, fmt.Sprintf("CPU over %v", idle.Round(time.Second)), fmt.Sprintf("%.2f %%", cpuShare), "1 %", "")
	if dual {
		fmt.Printf(row, "IPv6 failover, its IPv6 silently dead", secs(fail6), "3 s", "")
		fmt.Printf(row, "IPv6 recovery after a 25 s outage", secs(recover6), "10 s", "")
	}
	return nil
}

// metricsPort serves the monitor's metrics inside the lab's router
// namespace.
const metricsPort = "9851"

// failover applies a fault to ISP1, measures how long until new
// connections avoid it, undoes the fault and gives the link time to come
// back.
func failover(l *lab.Lab, fault func() (func() error, error)) (time.Duration, error) {
	undo, err := fault()
	if err != nil {
		return 0, err
	}
	took := avoid(l, time.Now())
	if err := undo(); err != nil {
		return took, err
	}
	time.Sleep(15 * time.Second)
	return took, nil
}

// avoid returns how long after start new connections stopped using ISP1:
// the start of the first run of thirty that all succeed through other
// ISPs (with four ISPs, thirty in a row avoid ISP1 by chance with
// probability 0.0002), or -1 if that never happened.
func avoid(l *lab.Lab, start time.Time) time.Duration {
	took, err := l.FirstStreak(1, 8080, 30, func(isp int) bool { return isp != 1 }, start, 20*time.Second, 250*time.Millisecond)
	if err != nil {
		return -1
	}
	return took
}

func secs(d time.Duration) string {
	if d < 0 {
		return "never"
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// usage reads a process's resident memory (KiB) and CPU time used.
func usage(pid int) (int, time.Duration) {
	var rss int
	if status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
				rss, _ = strconv.Atoi(f[1])
			}
		}
	}
	var cpu time.Duration
	if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		s := string(stat)
		if i := strings.LastIndex(s, ")"); i >= 0 {
			f := strings.Fields(s[i+2:])
			if len(f) > 14 {
				// The monitor's own time and that of the children it has
				// waited for (iptables-save for the drift checks, event
				// scripts, rebuild helpers): all of it is the monitor's cost.
				var ticks int64
				for _, k := range []int{11, 12, 13, 14} {
					v, _ := strconv.ParseInt(f[k], 10, 64)
					ticks += v
				}
				// USER_HZ is 100 on Linux.
				cpu = time.Duration(ticks) * 10 * time.Millisecond
			}
		}
	}
	return rss, cpu
}

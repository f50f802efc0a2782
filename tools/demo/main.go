// Command demo shows ispbalance at work without touching the machine's
// own network: it builds a namespace lab (a LAN host, a router, two ISPs
// and an internet server), starts the link monitor on the router, shows
// which ISP each of some connections used, silently cuts one ISP's
// upstream (its link stays up), shows the monitor's verdict and the
// connections moving to the other ISP, heals the cut and shows the
// recovery, and tears everything down. Run as root: go run ./tools/demo
package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ispbalance/ispbalance/internal/cli"
	"github.com/ispbalance/ispbalance/internal/lab"
	"github.com/ispbalance/ispbalance/internal/monitor"
)

// Both ISPs are probed through to the internet server, so the monitor
// sees an upstream that fails behind a working link.
const conf = `# The demo's balance.conf: two ISPs, CABLE twice as heavy as DSL, one LAN;
# the monitor pings the internet server through each ISP.
CABLE  wan1  isp  203.0.113.10  2
DSL    wan2  isp  203.0.113.10  1
LAN    lan1  lan
`

const port = 8080

// reexec is the first argument under which the demo's own binary runs as
// ifup-balance: the monitor must run as a process of its own inside the
// router's namespace, since its goroutines may run on any thread.
const reexec = "__ifup-balance"

func main() {
	if len(os.Args) > 1 && os.Args[1] == reexec {
		os.Exit(cli.Run(context.Background(), cli.Env{Args: os.Args[2:], Stdout: os.Stdout, Stderr: os.Stderr}))
	}
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	if err := lab.Available(); err != nil {
		return fmt.Errorf("the lab needs root, iproute2 and iptables: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "ispbalance-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	confPath := filepath.Join(dir, "balance.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return err
	}
	l, err := lab.New(lab.Options{Prefix: "demo", ISPs: 2, LANs: 1})
	if err != nil {
		return fmt.Errorf("building the lab: %w", err)
	}
	defer func() {
		l.Close()
		fmt.Println("\nLab torn down; nothing outside its namespaces was touched.")
	}()
	stop, err := l.StartServer(port)
	if err != nil {
		return err
	}
	defer stop()

	fmt.Printf("Lab: LAN host %s -> router -> CABLE (gateway %s) / DSL (gateway %s) -> internet server %s\n\n",
		l.LANHost(1), l.ISPGateway(1), l.ISPGateway(2), l.ServerAddr())
	fmt.Print(conf)

	runDir, stateDir := filepath.Join(dir, "run"), filepath.Join(dir, "state")
	common := []string{"-c", confPath, "--state-dir", stateDir, "--run-dir", runDir}
	ifupBalance := func(args ...string) (string, error) {
		var stdout, stderr bytes.Buffer
		full := append(append(append([]string{}, common...), "--no-monitor"), args...)
		var code int
		err := l.Do("router", func() error {
			code = cli.Run(context.Background(), cli.Env{Args: full, Stdout: &stdout, Stderr: &stderr})
			return nil
		})
		if err == nil && code != 0 {
			err = fmt.Errorf("ifup-balance %s exited %d: %s", strings.Join(args, " "), code, stderr.String())
		}
		return stdout.String(), err
	}
	show := func(args ...string) error {
		fmt.Printf("\n$ ifup-balance %s\n", strings.Join(args, " "))
		out, err := ifupBalance(args...)
		if out != "" {
			fmt.Print(indent(out))
		}
		return err
	}

	// The monitor, as systemd runs it; its log goes to a file.
	logPath := filepath.Join(dir, "monitor.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	mon := exec.Command("ip", append(append([]string{"netns", "exec", l.NS("router"), self, reexec}, common...), "monitor")...)
	mon.Stdout, mon.Stderr = logf, logf
	fmt.Println("\n$ ifup-balance monitor &        # the link monitor, as the ispbalance service runs it")
	if err := mon.Start(); err != nil {
		return fmt.Errorf("starting the monitor: %w", err)
	}
	exited := make(chan struct{})
	go func() { mon.Wait(); close(exited) }()
	defer func() {
		mon.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			mon.Process.Kill()
		}
	}()
	waitMonitor := func(want map[string]string, limit time.Duration) (time.Duration, error) {
		start := time.Now()
		for time.Since(start) < limit {
			if snap, err := monitor.ReadSnapshot(filepath.Join(runDir, "monitor.json")); err == nil {
				ok := len(snap.ISPs) > 0
				for _, is := range snap.ISPs {
					if w, named := want[is.Service]; named && is.State != w {
						ok = false
					}
				}
				if ok {
					return time.Since(start), nil
				}
			}
			select {
			case <-exited:
				log, _ := os.ReadFile(logPath)
				return 0, fmt.Errorf("the monitor stopped:\n%s", log)
			case <-time.After(50 * time.Millisecond):
			}
		}
		log, _ := os.ReadFile(logPath)
		return 0, fmt.Errorf("the monitor did not report %v within %v; its log:\n%s", want, limit, log)
	}
	if _, err := waitMonitor(map[string]string{"CABLE": "up", "DSL": "up"}, 20*time.Second); err != nil {
		return err
	}
	names := map[int]string{1: "CABLE", 2: "DSL"}
	connections := func(n int) error {
		counts := map[string]int{}
		var line []string
		for i := 0; i < n; i++ {
			k, err := l.WhichISP(1, port, 2*time.Second)
			if err != nil {
				return fmt.Errorf("connection %d: %w", i+1, err)
			}
			counts[names[k]]++
			line = append(line, names[k])
		}
		fmt.Printf("  %d new connections from the LAN host left via: %s\n", n, strings.Join(line, " "))
		fmt.Printf("  CABLE %d, DSL %d\n", counts["CABLE"], counts["DSL"])
		return nil
	}
	// moved waits until new connections keep to ISP k, and says after how
	// long.
	moved := func(k int, since time.Time, what string) error {
		took, err := l.FirstStreak(1, port, 5, func(isp int) bool { return isp == k }, since, 30*time.Second, 250*time.Millisecond)
		if err != nil {
			return fmt.Errorf("new connections via %s: %w", names[k], err)
		}
		fmt.Printf("  new connections all via %s %.1f s after %s\n", names[k], took.Seconds(), what)
		return nil
	}

	fmt.Println("\nBoth ISPs answer; the monitor balances 2:1.")
	if err := connections(30); err != nil {
		return err
	}

	fmt.Printf("\n# CABLE's upstream silently drops everything; its link to the router stays up.\n")
	heal, err := l.SilentDrop(1)
	if err != nil {
		return err
	}
	cut := time.Now()
	if err := moved(2, cut, "the cut"); err != nil {
		return err
	}
	if _, err := waitMonitor(map[string]string{"CABLE": "down"}, 20*time.Second); err != nil {
		return err
	}
	if err := show("-s"); err != nil {
		return err
	}
	if err := connections(10); err != nil {
		return err
	}

	fmt.Printf("\n# CABLE's upstream is repaired.\n")
	if err := heal(); err != nil {
		return err
	}
	healed := time.Now()
	if err := moved(1, healed, "the repair"); err != nil {
		return err
	}
	if err := show("events"); err != nil {
		return err
	}
	if err := connections(30); err != nil {
		return err
	}
	if err := show("-k"); err != nil {
		return err
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("the monitor did not stop")
	}
	return show("stop")
}

func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("  " + line + "\n")
	}
	return b.String()
}

// Command demo shows ispbalance at work without touching the machine's
// own network: it builds a namespace lab (a LAN host, a router, two ISPs
// and an internet server), balances the router with ifup-balance, shows
// which ISP each of some connections used, takes one ISP down and up
// again, and tears everything down. Run as root: go run ./tools/demo
package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ispbalance/ispbalance/internal/cli"
	"github.com/ispbalance/ispbalance/internal/lab"
)

const conf = `# The demo's balance.conf: two ISPs, CABLE twice as heavy as DSL, one LAN.
CABLE  wan1  isp  default  2
DSL    wan2  isp  default  1
LAN    lan1  lan
`

const port = 8080

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	if err := lab.Available(); err != nil {
		return fmt.Errorf("the lab needs root, iproute2 and iptables: %w", err)
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

	ifupBalance := func(args ...string) (string, error) {
		var stdout, stderr bytes.Buffer
		full := append([]string{"-c", confPath, "--state-dir", filepath.Join(dir, "state"), "--run-dir", filepath.Join(dir, "run"), "--no-monitor"}, args...)
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

	step := func(title string, args ...string) error {
		fmt.Printf("\n$ ifup-balance %s\n", strings.Join(args, " "))
		start := time.Now()
		if _, err := ifupBalance(args...); err != nil {
			return err
		}
		fmt.Printf("  (%s: rebuilt in %v)\n", title, time.Since(start).Round(time.Millisecond))
		status, err := ifupBalance("-s")
		if err != nil {
			return err
		}
		fmt.Print(indent(status))
		return nil
	}
	connections := func(n int) error {
		names := map[int]string{1: "CABLE", 2: "DSL"}
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

	if err := step("both ISPs up, balanced 2:1"); err != nil {
		return err
	}
	if err := connections(30); err != nil {
		return err
	}
	if err := step("CABLE declared down, as the link monitor would", "down", "CABLE"); err != nil {
		return err
	}
	if err := connections(10); err != nil {
		return err
	}
	if err := step("CABLE back", "up", "CABLE"); err != nil {
		return err
	}
	if err := connections(30); err != nil {
		return err
	}
	fmt.Println("\n$ ifup-balance stop")
	_, err = ifupBalance("stop")
	return err
}

func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("  " + line + "\n")
	}
	return b.String()
}

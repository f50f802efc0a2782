// Command bench measures how long one ifup-balance rebuild takes in the
// namespace lab for 2, 4, 8 and 16 ISPs, and how many packets a ping
// every 2 ms through the router loses meanwhile. It prints figures; it
// asserts nothing. Run as root: go run ./tools/bench
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ispbalance/ispbalance/internal/lab"
)

func main() {
	rounds := flag.Int("rounds", 40, "rebuilds per lab size")
	sizes := flag.String("isps", "2,4,8,16", "lab sizes (ISP counts)")
	mon := flag.Bool("monitor", false, "measure the link monitor instead: failover, recovery, memory and CPU")
	idle := flag.Duration("idle", 60*time.Second, "with -monitor: how long to sample memory and CPU")
	metrics := flag.Bool("metrics", true, "with -monitor: serve Prometheus metrics and scrape them every 15 s, as Prometheus does by default")
	flag.Parse()
	if err := lab.Available(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
	run := func() error { return run(*rounds, *sizes) }
	if *mon {
		run = func() error { return benchMonitor(*idle, *metrics) }
	}
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

// build compiles ifup-balance into a new temporary directory.
func build() (bin, dir string, err error) {
	dir, err = os.MkdirTemp("", "ispbalance-bench-")
	if err != nil {
		return "", "", err
	}
	bin = filepath.Join(dir, "ifup-balance")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/ifup-balance").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", "", fmt.Errorf("building ifup-balance: %v\n%s", err, out)
	}
	return bin, dir, nil
}

func run(rounds int, sizes string) error {
	bin, dir, err := build()
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// A rule file spelled unlike iptables-save, as admins write them.
	rules := filepath.Join(dir, "balance", "firewall", "10-bench")
	if err := os.MkdirAll(filepath.Dir(rules), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(rules, []byte("iptables -A INPUT -s 192.168.1.5 -p tcp --dport 2222 -j ACCEPT\n"), 0o644); err != nil {
		return err
	}
	const row = "%4v  %8v  %9v  %9v  %9v  %10v  %10v  %16v  %14v\n"
	fmt.Printf(row, "ISPs", "rebuilds", "median", "p90", "max", "pings sent", "pings lost", "unchanged median", "unchanged writes")
	for _, f := range strings.Split(sizes, ",") {
		var n int
		if _, err := fmt.Sscanf(f, "%d", &n); err != nil {
			return fmt.Errorf("lab size %q: %w", f, err)
		}
		res, err := measure(bin, dir, n, rounds)
		if err != nil {
			return fmt.Errorf("%d ISPs: %w", n, err)
		}
		fmt.Printf(row, n, rounds, ms(res.median), ms(res.p90), ms(res.max), res.sent, res.sent-res.received, ms(res.unchanged), res.unchangedWrites)
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

type result struct {
	median, p90, max time.Duration
	sent, received   int
	// unchanged is the median of rebuilds whose facts did not change;
	// unchangedWrites counts the changes they echoed under -v (want 0).
	unchanged       time.Duration
	unchangedWrites int
}

// measure times rounds rebuilds, each of which takes the last ISP down or
// brings it back, so every rebuild changes routes and the firewall.
func measure(bin, dir string, isps, rounds int) (result, error) {
	var res result
	l, err := lab.New(lab.Options{Prefix: "bench", ISPs: isps})
	if err != nil {
		return res, err
	}
	defer l.Close()
	conf := filepath.Join(dir, fmt.Sprintf("balance-%d.conf", isps))
	var b strings.Builder
	for k := 1; k <= isps; k++ {
		fmt.Fprintf(&b, "ISP%d wan%d isp\n", k, k)
	}
	b.WriteString("LAN lan1 lan\n")
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		return res, err
	}
	stateDir := filepath.Join(dir, fmt.Sprintf("state-%d", isps))
	var lastOut []byte
	rebuild := func(args ...string) (time.Duration, error) {
		var took time.Duration
		err := l.Do("router", func() error {
			cmd := exec.Command(bin, append([]string{"-c", conf, "--state-dir", stateDir, "--run-dir", stateDir + "-run", "--no-monitor"}, args...)...)
			start := time.Now()
			out, err := cmd.CombinedOutput()
			took = time.Since(start)
			lastOut = out
			if err != nil {
				return fmt.Errorf("ifup-balance %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			return nil
		})
		return took, err
	}
	if _, err := rebuild(); err != nil {
		return res, err
	}
	ping, err := l.StartPing("lan1", l.ServerAddr(), 2*time.Millisecond)
	if err != nil {
		return res, err
	}
	var times []time.Duration
	last := fmt.Sprintf("ISP%d", isps)
	for i := 0; i < rounds; i++ {
		verdict := "down"
		if i%2 == 1 {
			verdict = "up"
		}
		took, err := rebuild(verdict, last)
		if err != nil {
			ping.Stop()
			return res, err
		}
		times = append(times, took)
	}
	res.sent, res.received, err = ping.Stop()
	if err != nil {
		return res, err
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	res.median = times[len(times)/2]
	res.p90 = times[len(times)*9/10]
	res.max = times[len(times)-1]

	// Rebuilds with nothing new: the first after the series may still
	// learn how iptables-save spells the rule file's chain.
	if _, err := rebuild(); err != nil {
		return res, err
	}
	var same []time.Duration
	for i := 0; i < rounds; i++ {
		took, err := rebuild("-v")
		if err != nil {
			return res, err
		}
		same = append(same, took)
		res.unchangedWrites += strings.Count(string(lastOut), "[#] ")
	}
	sort.Slice(same, func(i, j int) bool { return same[i] < same[j] })
	res.unchanged = same[len(same)/2]
	return res, nil
}

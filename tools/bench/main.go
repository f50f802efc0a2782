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
	profile := flag.String("cpuprofile", "", "instead: run rebuilds in-process under the CPU profiler, write the profile to `FILE`")
	dual := flag.Bool("dualstack", false, "give every ISP and the LAN IPv6 too: rebuilds of dual-stack ISPs, IPv6 ping loss, and with -monitor IPv6 failover and recovery")
	metrics := flag.Bool("metrics", true, "with -monitor: serve Prometheus metrics and scrape them every 15 s, as Prometheus does by default")
	flag.Parse()
	if err := lab.Available(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
	run := func() error { return run(*rounds, *sizes, *dual) }
	if *mon {
		run = func() error { return benchMonitor(*idle, *metrics, *dual) }
	}
	if *profile != "" {
		run = func() error {
			var n int
			if _, err := fmt.Sscanf(*sizes, "%d", &n); err != nil {
				return fmt.Errorf("lab size %q: %w", *sizes, err)
			}
			return profileRebuilds(*profile, n, *rounds)
		}
	}
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

// build compiles ifup-balance into a new temporary directory, as the
// packages build it (static, no debug data), since process start is part
// of what is measured.
func build() (bin, dir string, err error) {
	dir, err = os.MkdirTemp("", "ispbalance-bench-")
	if err != nil {
		return "", "", err
	}
	bin = filepath.Join(dir, "ifup-balance")
	if out, err := buildCmd(bin).CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", "", fmt.Errorf("building ifup-balance: %v\n%s", err, out)
	}
	return bin, dir, nil
}

func run(rounds int, sizes string, dual bool) error {
	bin, dir, err := build()
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := writeBenchRuleFile(dir); err != nil {
		return err
	}
	if dual {
		return runDual(bin, dir, rounds, sizes)
	}
	const row = "%4v  %8v  %9v  %9v  %9v  %9v  %10v  %10v  %16v  %16v  %14v\n"
	fmt.Printf(row, "ISPs", "rebuilds", "median", "before", "p90", "max", "pings sent", "pings lost", "unchanged median", "before", "unchanged writes")
	for _, f := range strings.Split(sizes, ",") {
		var n int
		if _, err := fmt.Sscanf(f, "%d", &n); err != nil {
			return fmt.Errorf("lab size %q: %w", f, err)
		}
		res, err := measure(bin, dir, n, rounds, false)
		if err != nil {
			return fmt.Errorf("%d ISPs: %w", n, err)
		}
		was, wasUnchanged := "", ""
		if b, ok := before[n]; ok {
			was, wasUnchanged = b.median, b.unchanged
		}
		fmt.Printf(row, n, rounds, ms(res.median), was, ms(res.p90), ms(res.max), res.sent, res.sent-res.received,
			ms(res.unchanged), wasUnchanged, res.unchangedWrites)
	}
	return nil
}

// before are the medians on the 2-core development machine before the
// firewall record and the process-start work, for comparison: a rebuild
// that moves an ISP, and one with unchanged facts.
var before = map[int]struct{ median, unchanged string }{
	2: {"20.2 ms", "11.1 ms"}, 4: {"23.4 ms", "12.0 ms"}, 8: {"27.6 ms", "13.3 ms"}, 16: {"27.7 ms", "16.6 ms"},
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

type result struct {
	median, p90, max time.Duration
	sent, received   int
	// sent6 and received6 count the IPv6 ping stream of a dual-stack run.
	sent6, received6 int
	// unchanged is the median of rebuilds whose facts did not change;
	// unchangedWrites counts the changes they echoed under -v (want 0).
	unchanged       time.Duration
	unchangedWrites int
}

// measure times rounds rebuilds, each of which takes the last ISP down or
// brings it back, so every rebuild changes routes and the firewall.
func measure(bin, dir string, isps, rounds int, dual bool) (result, error) {
	var res result
	l, err := lab.New(lab.Options{Prefix: "bench", ISPs: isps})
	if err != nil {
		return res, err
	}
	defer l.Close()
	if dual {
		if err := addDualStack(l); err != nil {
			return res, err
		}
	}
	conf, err := writeBenchConfig(dir, isps)
	if err != nil {
		return res, err
	}
	stateDir := filepath.Join(dir, fmt.Sprintf("state-%d", isps))
	var lastOut []byte
	rebuild := func(args ...string) (time.Duration, error) {
		var took time.Duration
		err := l.Do("router", func() error {
			var err error
			took, lastOut, err = timeRun(bin, append([]string{"-c", conf, "--state-dir", stateDir, "--run-dir", stateDir + "-run", "--no-monitor"}, args...)...)
			return err
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
	var ping6 *lab.PingStream
	if dual {
		// One probe first: the lab's neighbours are not resolved yet.
		l.Exec("lan1", "ping", "-6", "-c1", "-W2", v6Server.String())
		if ping6, err = l.StartPing("lan1", v6Server, 2*time.Millisecond); err != nil {
			ping.Stop()
			return res, err
		}
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
			if ping6 != nil {
				ping6.Stop()
			}
			return res, err
		}
		times = append(times, took)
	}
	res.sent, res.received, err = ping.Stop()
	if err != nil {
		return res, err
	}
	if ping6 != nil {
		if res.sent6, res.received6, err = ping6.Stop(); err != nil {
			return res, err
		}
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

// runDual measures rebuilds of dual-stack ISPs, with an IPv4 and an IPv6
// ping stream from the LAN across them.
func runDual(bin, dir string, rounds int, sizes string) error {
	const row = "%4v  %8v  %9v  %9v  %9v  %9v  %14v  %14v  %16v  %14v\n"
	fmt.Println("dual-stack ISPs (IPv4 and IPv6 balanced, NAT66 from a ULA LAN)")
	fmt.Printf(row, "ISPs", "rebuilds", "median", "target", "p90", "max", "IPv4 pings lost", "IPv6 pings lost", "unchanged median", "unchanged writes")
	for _, f := range strings.Split(sizes, ",") {
		var n int
		if _, err := fmt.Sscanf(f, "%d", &n); err != nil {
			return fmt.Errorf("lab size %q: %w", f, err)
		}
		res, err := measure(bin, dir, n, rounds, true)
		if err != nil {
			return fmt.Errorf("%d dual-stack ISPs: %w", n, err)
		}
		target := map[int]string{2: "30 ms", 16: "80 ms"}[n]
		fmt.Printf(row, n, rounds, ms(res.median), target, ms(res.p90), ms(res.max),
			fmt.Sprintf("%d of %d", res.sent-res.received, res.sent), fmt.Sprintf("%d of %d", res.sent6-res.received6, res.sent6),
			ms(res.unchanged), res.unchangedWrites)
	}
	return nil
}

// buildCmd is the package build of ifup-balance (see the Makefile).
func buildCmd(bin string) *exec.Cmd {
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/ifup-balance")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	return cmd
}

// timeRun runs bin once and times it from start to exit.
func timeRun(bin string, args ...string) (time.Duration, []byte, error) {
	cmd := exec.Command(bin, args...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	if err != nil {
		return took, out, fmt.Errorf("ifup-balance %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return took, out, nil
}

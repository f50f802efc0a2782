package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"time"

	"github.com/ispbalance/ispbalance/internal/core"
	"github.com/ispbalance/ispbalance/internal/lab"
	"github.com/ispbalance/ispbalance/internal/state"
)

// profileRebuilds runs rebuilds in this process, inside the lab's router
// namespace, under the CPU profiler: what a rebuild spends in Go, which a
// profile of the short-lived command could not show for the few
// milliseconds it lives. The process's own start is timed apart (the
// -V run). It writes the profile to out and prints each phase's median.
func profileRebuilds(out string, isps, rounds int) error {
	bin, dir, err := build()
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := writeBenchRuleFile(dir); err != nil {
		return err
	}
	l, err := lab.New(lab.Options{Prefix: "benchp", ISPs: isps})
	if err != nil {
		return err
	}
	defer l.Close()
	conf, err := writeBenchConfig(dir, isps)
	if err != nil {
		return err
	}
	opts := core.Options{ConfigPath: conf, StateDir: filepath.Join(dir, "state"), RunDir: filepath.Join(dir, "run")}
	if err := os.MkdirAll(opts.RunDir, 0o755); err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	last := fmt.Sprintf("ISP%d", isps)
	phases := map[string][]time.Duration{}
	err = l.Do("router", func() error {
		ctx := context.Background()
		rebuild := func(name string, up core.UpSet) error {
			start := time.Now()
			_, err := core.Rebuild(ctx, opts, up, false)
			phases[name] = append(phases[name], time.Since(start))
			return err
		}
		// Two rebuilds first: the first installs, the second learns how
		// iptables-save spells the rule file's chain.
		for range 2 {
			if err := rebuild("setup", core.UpSet{}); err != nil {
				return err
			}
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
		for i := range rounds {
			verdict := state.Down
			if i%2 == 1 {
				verdict = state.Up
			}
			if err := rebuild("moving one ISP", core.UpSet{Event: &core.Event{Service: last, Verdict: verdict}}); err != nil {
				return err
			}
		}
		for range rounds {
			if err := rebuild("unchanged", core.UpSet{}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	var start []time.Duration
	err = l.Do("router", func() error {
		for range rounds {
			took, _, err := timeRun(bin, "-V")
			if err != nil {
				return err
			}
			start = append(start, took)
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Printf("in-process rebuilds, %d ISPs, %d each (median):\n", isps, rounds)
	for _, name := range []string{"moving one ISP", "unchanged"} {
		fmt.Printf("  %-16s %s\n", name, ms(median(phases[name])))
	}
	fmt.Printf("  %-16s %s (ifup-balance -V: process start and exit)\n", "process", ms(median(start)))
	fmt.Printf("CPU profile in %s; read it with: go tool pprof -top %s\n", out, out)
	return nil
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// writeBenchConfig writes a balance.conf for a lab of isps ISPs and one
// LAN, and returns its path.
func writeBenchConfig(dir string, isps int) (string, error) {
	conf := filepath.Join(dir, fmt.Sprintf("balance-%d.conf", isps))
	var b strings.Builder
	for k := 1; k <= isps; k++ {
		fmt.Fprintf(&b, "ISP%d wan%d isp\n", k, k)
	}
	b.WriteString("LAN lan1 lan\n")
	return conf, os.WriteFile(conf, []byte(b.String()), 0o644)
}

// writeBenchRuleFile writes a rule file spelled unlike iptables-save, as
// admins write them, beside the configurations in dir.
func writeBenchRuleFile(dir string) error {
	rules := filepath.Join(dir, "balance", "firewall", "10-bench")
	if err := os.MkdirAll(filepath.Dir(rules), 0o755); err != nil {
		return err
	}
	return os.WriteFile(rules, []byte("iptables -A INPUT -s 192.168.1.5 -p tcp --dport 2222 -j ACCEPT\n"), 0o644)
}

package apply

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/ispbalance/ispbalance/internal/plan"
	"github.com/ispbalance/ispbalance/internal/render"
)

// Applier installs plans in the network namespace of the calling process.
type Applier struct {
	nl        *netlink.Handle
	netfilter Netfilter
	// sysctlRoot is /proc/sys; tests may point it elsewhere.
	sysctlRoot string
	// savedSysctls is the file that remembers the values our sysctls had
	// before ispbalance first changed them, so `stop` can put them back.
	savedSysctls string
	echoTo       io.Writer
	log          *slog.Logger
}

// Options configure an Applier.
type Options struct {
	// StateDir holds the remembered sysctl values.
	StateDir string
	// Echo, when set, receives every change as a command line (-v).
	Echo io.Writer
	Log  *slog.Logger
	// Netfilter names the iptables-save/-restore binaries; zero uses PATH.
	Netfilter Netfilter
}

// New returns an Applier for the current network namespace.
func New(opts Options) (*Applier, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("opening netlink: %w", err)
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Applier{
		nl: h, netfilter: opts.Netfilter, sysctlRoot: "/proc/sys",
		savedSysctls: filepath.Join(opts.StateDir, "sysctl.saved"),
		echoTo:       opts.Echo, log: log,
	}, nil
}

// Close releases the netlink socket.
func (a *Applier) Close() { a.nl.Close() }

func (a *Applier) echo(format string, args ...any) {
	if a.echoTo != nil {
		fmt.Fprintf(a.echoTo, "[#] "+format+"\n", args...)
	}
}

// Stats counts what one Apply did, for the log line and benchmarks.
type Stats struct {
	Routes, Rules int
	// Read, Routing and Firewall time the phases: reading the current
	// state, reconciling routes and rules, and the iptables-restore run.
	Read, Routing, Firewall, Took time.Duration
}

// Apply makes the kernel match p. It may be called repeatedly with the
// same plan; nothing changes then but the route replacements, which the
// kernel treats as no-ops. On failure everything ispbalance owns is put
// back as it was and the error says what failed.
func (a *Applier) Apply(ctx context.Context, p plan.Plan) (Stats, error) {
	start := time.Now()
	stats := Stats{Routes: len(p.Routes), Rules: len(p.Rules)}
	want, err := a.desiredRouting(p)
	if err != nil {
		return stats, err
	}
	routingBefore, err := a.readRouting()
	if err != nil {
		return stats, err
	}
	fwBefore, err := a.netfilter.save(ctx)
	if err != nil {
		return stats, err
	}
	if err := a.applySysctls(p.Sysctls); err != nil {
		return stats, err
	}
	stats.Read = time.Since(start)
	if err := a.setRouting(routingBefore, want); err != nil {
		return stats, a.rollback(ctx, err, routingBefore, fwBefore, false)
	}
	stats.Routing = time.Since(start) - stats.Read
	input, origins := render.RestoreWithOrigins(p.Firewall, render.RestoreOptions{
		HaveJump: fwBefore.haveJump, Stale: fwBefore.staleChains(p.Firewall), Existing: fwBefore.ourRules(),
	})
	if input != "" {
		a.echo("iptables-restore --noflush <<EOF\n%sEOF", input)
		if err := a.netfilter.restore(ctx, input, true); err != nil {
			err = fmt.Errorf("installing the firewall: %w", err)
			var re *RestoreError
			if errors.As(err, &re) {
				// Blame the admin's rule file line when the rejected rule
				// came from one.
				if l := re.Line(); l > 0 && l <= len(origins) && origins[l-1] != "" {
					err = fmt.Errorf("%s: %w", origins[l-1], err)
				}
			}
			return stats, a.rollback(ctx, err, routingBefore, fwBefore, true)
		}
	}
	stats.Took = time.Since(start)
	stats.Firewall = stats.Took - stats.Read - stats.Routing
	return stats, nil
}

// rollback puts back what ispbalance owned before a failed apply, and
// returns the original error joined with any rollback failure.
func (a *Applier) rollback(ctx context.Context, cause error, routing routingState, fw firewallState, firewallTouched bool) error {
	a.log.Warn("apply failed, restoring the previous state", "err", cause)
	errs := []error{cause}
	if now, err := a.readRouting(); err != nil {
		errs = append(errs, fmt.Errorf("rollback: %w", err))
	} else if err := a.setRouting(now, restorable(routing)); err != nil {
		errs = append(errs, fmt.Errorf("rollback of routing: %w", err))
	}
	if firewallTouched {
		now, err := a.netfilter.save(ctx)
		if err == nil {
			err = a.netfilter.restore(ctx, restoreOurPart(fw, now), true)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("rollback of firewall: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (a *Applier) desiredRouting(p plan.Plan) (desiredRouting, error) {
	var want desiredRouting
	links, err := a.nl.LinkList()
	if err != nil {
		return want, fmt.Errorf("listing links: %w", err)
	}
	index := map[string]int{}
	for _, l := range links {
		index[l.Attrs().Name] = l.Attrs().Index
	}
	for _, r := range p.Routes {
		nr, err := a.toNetlinkRoute(r, index)
		if err != nil {
			return want, fmt.Errorf("%spreparing route %s: %w", originPrefix(r.Origin), render.RouteArgs(r), err)
		}
		want.routes = append(want.routes, nr)
		want.routeText = append(want.routeText, originPrefix(r.Origin)+render.RouteArgs(r))
	}
	for _, r := range p.Rules {
		want.rules = append(want.rules, toNetlinkRule(r))
		want.ruleText = append(want.ruleText, originPrefix(r.Origin)+render.RuleArgs(r))
	}
	return want, nil
}

// originPrefix names the rule file line an object comes from, so an error
// about it points the admin there.
func originPrefix(origin string) string {
	if origin == "" {
		return ""
	}
	return origin + ": "
}

// Stop removes everything ispbalance installed: its rules, its tables'
// routes, its chains and the jumps to them, and puts back the sysctls it
// changed. With flushForeign it also empties the built-in chains and
// deletes other software's chains, as the original's --flush did.
func (a *Applier) Stop(ctx context.Context, flushOthers bool) error {
	var errs []error
	if now, err := a.readRouting(); err != nil {
		errs = append(errs, err)
	} else if err := a.setRouting(now, desiredRouting{}); err != nil {
		errs = append(errs, fmt.Errorf("removing routing: %w", err))
	}
	now, err := a.netfilter.save(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	input := restoreOurPart(firewallState{}, now)
	a.echo("iptables-restore --noflush <<EOF\n%sEOF", input)
	if err := a.netfilter.restore(ctx, input, true); err != nil {
		errs = append(errs, fmt.Errorf("removing firewall chains: %w", err))
	}
	if flushOthers {
		input := flushForeign(now)
		a.echo("iptables-restore <<EOF\n%sEOF", input)
		if err := a.netfilter.restore(ctx, input, false); err != nil {
			errs = append(errs, fmt.Errorf("flushing other chains: %w", err))
		}
	}
	if err := a.restoreSysctls(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// FlushOthers empties built-in chains and deletes other software's chains
// before a rebuild (-f), so only ispbalance's firewall remains.
func (a *Applier) FlushOthers(ctx context.Context) error {
	now, err := a.netfilter.save(ctx)
	if err != nil {
		return err
	}
	input := flushForeign(now)
	a.echo("iptables-restore <<EOF\n%sEOF", input)
	return a.netfilter.restore(ctx, input, false)
}

func (a *Applier) sysctlPath(s plan.Sysctl) string {
	return filepath.Join(append([]string{a.sysctlRoot}, s.Path...)...)
}

// applySysctls writes each setting, first remembering the value it had
// before ispbalance ever touched it. ip_forward only ever goes to 1, so
// forwarding is never off during a rebuild.
func (a *Applier) applySysctls(sysctls []plan.Sysctl) error {
	saved, err := readSaved(a.savedSysctls)
	if err != nil {
		return err
	}
	changed := false
	for _, s := range sysctls {
		path := a.sysctlPath(s)
		cur, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("reading sysctl %s: %w", s.Key(), err)
		}
		value := strings.TrimSpace(string(cur))
		if value == s.Value {
			continue
		}
		if _, ok := saved[s.Key()]; !ok {
			saved[s.Key()] = savedSysctl{path: strings.Join(s.Path, "/"), value: value}
			changed = true
		}
		if err := os.WriteFile(path, []byte(s.Value), 0o644); err != nil {
			return fmt.Errorf("setting sysctl %s=%s: %w", s.Key(), s.Value, err)
		}
		a.echo("sysctl -w %s=%s", s.Key(), s.Value)
	}
	if changed {
		return writeSaved(a.savedSysctls, saved)
	}
	return nil
}

func (a *Applier) restoreSysctls() error {
	saved, err := readSaved(a.savedSysctls)
	if err != nil {
		return err
	}
	var errs []error
	for key, s := range saved {
		path := filepath.Join(a.sysctlRoot, s.path)
		if err := os.WriteFile(path, []byte(s.value), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("restoring sysctl %s: %w", key, err))
			continue
		}
		a.echo("sysctl -w %s=%s", key, s.value)
	}
	if len(errs) == 0 {
		if err := os.Remove(a.savedSysctls); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing %s: %w", a.savedSysctls, err))
		}
	}
	return errors.Join(errs...)
}

type savedSysctl struct{ path, value string }

// readSaved reads lines "KEY PATH VALUE".
func readSaved(file string) (map[string]savedSysctl, error) {
	out := map[string]savedSysctl{}
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading saved sysctls: %w", err)
	}
	for i, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 || strings.Contains(f[1], "..") {
			return nil, fmt.Errorf("%s:%d: malformed line", file, i+1)
		}
		out[f[0]] = savedSysctl{path: f[1], value: f[2]}
	}
	return out, nil
}

func writeSaved(file string, saved map[string]savedSysctl) error {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(saved)) {
		fmt.Fprintf(&b, "%s %s %s\n", k, saved[k].path, saved[k].value)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return fmt.Errorf("creating state directory: %w", err)
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("saving sysctls: %w", err)
	}
	return os.Rename(tmp, file)
}

package apply

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
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
	nl        Routing
	netfilter netfilterFamily
	// netfilter6 is ip6tables' pair; ipv6 says whether the kernel has
	// IPv6 and ip6tables is there to filter it.
	netfilter6 netfilterFamily
	ipv6       bool
	// ipsets holds sticky=source's address sets.
	ipsets IPSets
	// sysctlRoot is /proc/sys unless Options say otherwise.
	sysctlRoot string
	// savedSysctls is the file that remembers the values our sysctls had
	// before ispbalance first changed them, so `stop` can put them back.
	savedSysctls string
	echoTo       io.Writer
	log          *slog.Logger
}

// Options configure an Applier. The kernel-facing fields exist so the
// applier's logic can be tested against in-memory fakes without root;
// left zero, they talk to the running kernel.
type Options struct {
	// StateDir holds the remembered sysctl values.
	StateDir string
	// Echo, when set, receives every change as a command line (-v).
	Echo io.Writer
	Log  *slog.Logger
	// Routing carries routes, rules and links; nil opens a netlink handle
	// in the current network namespace. The Applier closes it.
	Routing Routing
	// Netfilter is the IPv4 firewall; nil runs iptables-save and
	// iptables-restore from PATH.
	Netfilter Netfilter
	// Netfilter6 is the IPv6 firewall. Nil runs ip6tables-save and
	// ip6tables-restore when the kernel has IPv6 and they are installed,
	// and leaves IPv6 alone otherwise; one given is always used.
	Netfilter6 Netfilter
	// SysctlRoot stands for /proc/sys when set.
	SysctlRoot string
	// IPSets holds sticky=source's address sets; nil runs ipset from
	// PATH, and only when sets are to be made or destroyed.
	IPSets IPSets
}

// New returns an Applier for the current network namespace, or for the
// kernel stand-ins opts name.
func New(opts Options) (*Applier, error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	nf := opts.Netfilter
	if nf == nil {
		nf = Binaries{}
	}
	nf6, ipv6 := opts.Netfilter6, true
	if nf6 == nil {
		bin := Binaries{SaveCmd: "ip6tables-save", RestoreCmd: "ip6tables-restore"}
		nf6, ipv6 = bin, ipv6Enabled()
		if ipv6 {
			if _, err := exec.LookPath(bin.RestoreCmd); err != nil {
				// The IPv4 firewall still goes in; the IPv6 hole is said
				// loudly on every rebuild and in the status.
				log.Error("IPv6 is on but ip6tables-restore is missing: the router's IPv6 is not filtered", "err", err)
				ipv6 = false
			}
		}
	}
	sysctlRoot := opts.SysctlRoot
	if sysctlRoot == "" {
		sysctlRoot = "/proc/sys"
	}
	nl := opts.Routing
	if nl == nil {
		h, err := netlink.NewHandle()
		if err != nil {
			return nil, fmt.Errorf("opening netlink: %w", err)
		}
		nl = h
	}
	sets := opts.IPSets
	if sets == nil {
		sets = IPSetBinary{}
	}
	return &Applier{
		nl: nl, netfilter: netfilterFamily{nf}, netfilter6: netfilterFamily{nf6}, ipv6: ipv6, ipsets: sets, sysctlRoot: sysctlRoot,
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
func (a *Applier) Apply(ctx context.Context, p plan.Plan) (stats Stats, err error) {
	start := time.Now()
	stats = Stats{Routes: len(p.Routes), Rules: len(p.Rules)}
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
	var fw6Before firewallState
	if a.ipv6 && len(p.Firewall6) > 0 {
		if fw6Before, err = a.netfilter6.save(ctx); err != nil {
			return stats, fmt.Errorf("reading the IPv6 firewall: %w", err)
		}
	}
	// The sets go in before the firewall that names them, and any made
	// now go again if the rest fails.
	sets, err := a.prepareSets(ctx, p, fwBefore, fw6Before)
	if err != nil {
		return stats, err
	}
	defer func() { err = sets.finish(ctx, a, err) }()
	if err := a.applySysctls(p.Sysctls); err != nil {
		return stats, err
	}
	stats.Read = time.Since(start)
	if err := a.setRouting(routingBefore, want, false); err != nil {
		return stats, a.rollback(ctx, err, routingBefore, nil, nil)
	}
	stats.Routing = time.Since(start) - stats.Read
	sp, onDisk := readSpellings(a.spellingsPath())
	input, origins := fwBefore.restoreInput(p.Firewall, fwBefore.existingAsPlanned("ipv4", p.Firewall, sp))
	if input != "" {
		a.echo("iptables-restore --noflush <<EOF\n%sEOF", input)
		if err := a.netfilter.restore(ctx, input, true); err != nil {
			err = a.explainRestore(ctx, err, input, origins, fwBefore)
			return stats, a.rollback(ctx, err, routingBefore, fwBefore, nil)
		}
	}
	var input6 string
	if fw6Before != nil {
		// Same policy, same transaction style; a failure undoes the IPv4
		// part and the routing too, so the families never disagree.
		var origins6 []string
		input6, origins6 = fw6Before.restoreInput(p.Firewall6, fw6Before.existingAsPlanned("ipv6", p.Firewall6, sp))
		if input6 != "" {
			a.echo("ip6tables-restore --noflush <<EOF\n%sEOF", input6)
			if err := a.netfilter6.restore(ctx, input6, true); err != nil {
				err = a.explainRestoreFamily(ctx, a.netfilter6, "IPv6 firewall", err, input6, origins6, fw6Before)
				return stats, a.rollback(ctx, err, routingBefore, fwBefore, fw6Before)
			}
		}
	}
	recordWritten("ipv4", p.Firewall, input, sp)
	if fw6Before != nil {
		recordWritten("ipv6", p.Firewall6, input6, sp)
	}
	if err := writeSpellings(a.spellingsPath(), sp, onDisk); err != nil {
		// Only speed is at stake: the chains are rewritten next time.
		a.log.Warn("rule-file chains will be rewritten on every rebuild", "err", err)
	}
	stats.Took = time.Since(start)
	stats.Firewall = stats.Took - stats.Read - stats.Routing
	return stats, nil
}

// rollback puts back what ispbalance owned before a failed apply, and
// returns the original error joined with any rollback failure. fw and fw6
// are the firewalls as they were, nil for a family not touched yet.
func (a *Applier) rollback(ctx context.Context, cause error, routing routingState, fw, fw6 firewallState) error {
	a.log.Warn("apply failed, restoring the previous state", "err", cause)
	errs := []error{cause}
	if now, err := a.readRouting(); err != nil {
		errs = append(errs, fmt.Errorf("rollback: %w", err))
	} else if err := a.setRouting(now, restorable(routing, a.usableLinks()), true); err != nil {
		errs = append(errs, fmt.Errorf("rollback of routing: %w", err))
	}
	for _, fam := range []struct {
		nf   netfilterFamily
		was  firewallState
		name string
	}{{a.netfilter, fw, "firewall"}, {a.netfilter6, fw6, "IPv6 firewall"}} {
		if fam.was == nil {
			continue
		}
		now, err := fam.nf.save(ctx)
		if err == nil {
			if input := restoreOurPart(fam.was, now); input != "" {
				err = fam.nf.restore(ctx, input, true)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("rollback of %s: %w", fam.name, err))
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
			if r.Origin == "" {
				// Our routes name devices discovery just found: one that is
				// gone now vanished since.
				err = factsError{err}
			}
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
	// The chains go, and with them what was known of their spelling.
	if err := os.Remove(a.spellingsPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("forgetting rule-file spellings: %w", err))
	}
	if now, err := a.readRouting(); err != nil {
		errs = append(errs, err)
	} else if err := a.setRouting(now, desiredRouting{}, false); err != nil {
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
	sets := referencedSets(now)
	if a.ipv6 {
		if now6, err := a.netfilter6.save(ctx); err != nil {
			errs = append(errs, fmt.Errorf("reading the IPv6 firewall: %w", err))
		} else if input6 := restoreOurPart(firewallState{}, now6); input6 != "" {
			a.echo("ip6tables-restore --noflush <<EOF\n%sEOF", input6)
			if err := a.netfilter6.restore(ctx, input6, true); err != nil {
				errs = append(errs, fmt.Errorf("removing IPv6 firewall chains: %w", err))
			}
			sets = append(sets, referencedSets(now6)...)
		}
	}
	if err := a.stopSets(ctx, sets); err != nil {
		errs = append(errs, err)
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

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
	// recordPath holds the firewall record (see firewallRecord); "" keeps
	// none, and every rebuild reads the firewall.
	recordPath string
	// ruleset opens the nf_tables ruleset, once; nil when there is none
	// to trust (iptables-legacy, stand-ins without one).
	ruleset  func() (Ruleset, error)
	rs       Ruleset
	rsErr    error
	rsOpened bool
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
	// RecordPath is where the applier keeps what it knows of its part of
	// the firewall, so that rebuilds skip reading it while the nf_tables
	// ruleset has not changed (see firewallRecord). It should be on a
	// file system that a reboot empties. "" reads the firewall every time.
	RecordPath string
	// Ruleset is the nf_tables generation the firewall stand-ins share.
	// Nil asks the kernel when the firewall is the real iptables-save and
	// iptables-restore on the nf_tables backend, and otherwise goes
	// without.
	Ruleset Ruleset
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
	a := &Applier{
		nl: nl, netfilter: netfilterFamily{nf}, netfilter6: netfilterFamily{nf6}, ipv6: ipv6, ipsets: sets, sysctlRoot: sysctlRoot,
		savedSysctls: filepath.Join(opts.StateDir, "sysctl.saved"),
		echoTo:       opts.Echo, log: log, recordPath: opts.RecordPath,
	}
	switch {
	case opts.RecordPath == "":
	case opts.Ruleset != nil:
		a.ruleset = func() (Ruleset, error) { return opts.Ruleset, nil }
	case opts.Netfilter == nil && opts.Netfilter6 == nil:
		a.ruleset = func() (Ruleset, error) {
			// Checked on every run: after a switch to iptables-legacy the
			// generation says nothing about the firewall.
			if !nftBackend(Binaries{}.saveCmd()) || (ipv6 && !nftBackend("ip6tables-save")) {
				return nil, errNoRuleset
			}
			return openNftRuleset()
		}
	}
	return a, nil
}

// errNoRuleset says the firewall has no nf_tables generation to trust.
var errNoRuleset = errors.New("the firewall is not on nf_tables")

// theRuleset opens the ruleset on first use; nil when there is none.
func (a *Applier) theRuleset() Ruleset {
	if a.ruleset == nil {
		return nil
	}
	if !a.rsOpened {
		a.rsOpened = true
		a.rs, a.rsErr = a.ruleset()
		if a.rsErr != nil && !errors.Is(a.rsErr, errNoRuleset) {
			a.log.Warn("cannot read the nf_tables generation; reading the firewall every time", "err", a.rsErr)
		}
	}
	if a.rsErr != nil {
		return nil
	}
	return a.rs
}

// Close releases the netlink sockets.
func (a *Applier) Close() {
	a.nl.Close()
	if a.rs != nil {
		a.rs.Close()
	}
}

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
// same plan; nothing changes then. On failure everything ispbalance owns
// is put back as it was and the error says what failed.
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
	fw, err := a.readFirewall(ctx, a.ipv6 && len(p.Firewall6) > 0)
	if err != nil {
		return stats, err
	}
	fwBefore, fw6Before := fw.states["ipv4"], fw.states["ipv6"]
	// The sets go in before the firewall that names them, and any made
	// now go again if the rest fails. Which exist is read from the rules
	// that name them: the kernel keeps a named set from being destroyed,
	// and ispbalance's own part (the record's too) names all of its own.
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
	var input6 string
	var origins6 []string
	if fw6Before != nil {
		input6, origins6 = fw6Before.restoreInput(p.Firewall6, fw6Before.existingAsPlanned("ipv6", p.Firewall6, sp))
	}
	var writers []int
	if input != "" || input6 != "" {
		if err := a.forgetRecord(); err != nil {
			return stats, a.rollback(ctx, err, routingBefore, nil, nil)
		}
		fw.watch()
	}
	if input != "" {
		a.echo("iptables-restore --noflush <<EOF\n%sEOF", input)
		writer, err := a.netfilter.restoreByWriter(ctx, input, true)
		if err != nil {
			if fw.fromRecord {
				// The record keeps only ispbalance's part; the search for
				// the guilty line wants the whole tables.
				if now, serr := a.netfilter.save(ctx); serr == nil {
					fwBefore = now
				}
			}
			err = a.explainRestore(ctx, err, input, origins, fwBefore)
			return stats, a.rollback(ctx, err, routingBefore, fwBefore, nil)
		}
		writers = append(writers, writer)
	}
	if input6 != "" {
		// Same policy, same transaction style; a failure undoes the IPv4
		// part and the routing too, so the families never disagree.
		a.echo("ip6tables-restore --noflush <<EOF\n%sEOF", input6)
		writer, err := a.netfilter6.restoreByWriter(ctx, input6, true)
		if err != nil {
			if fw.fromRecord {
				if now, serr := a.netfilter6.save(ctx); serr == nil {
					fw6Before = now
				}
			}
			err = a.explainRestoreFamily(ctx, a.netfilter6, "IPv6 firewall", err, input6, origins6, fw6Before)
			return stats, a.rollback(ctx, err, routingBefore, fwBefore, fw6Before)
		}
		writers = append(writers, writer)
	}
	recordWritten("ipv4", p.Firewall, input, sp)
	if fw6Before != nil {
		recordWritten("ipv6", p.Firewall6, input6, sp)
	}
	if err := writeSpellings(a.spellingsPath(), sp, onDisk); err != nil {
		// Only speed is at stake: the chains are rewritten next time.
		a.log.Warn("rule-file chains will be rewritten on every rebuild", "err", err)
	}
	a.remember(fw, p, sp, map[string]string{"ipv4": input, "ipv6": input6}, writers)
	stats.Took = time.Since(start)
	stats.Firewall = stats.Took - stats.Read - stats.Routing
	return stats, nil
}

// firewallView is the firewall as one Apply found it.
type firewallView struct {
	states map[string]firewallState // by family, "ipv4" and "ipv6"
	rs     Ruleset                  // nil: no generation to go by
	// gen is the generation the states are exactly the firewall of,
	// when known is set.
	gen   uint32
	known bool
	// fromRecord says the states are the record's, not read now.
	fromRecord bool
	// watching says commits are being noted from gen on (see watch).
	watching bool
}

// readFirewall returns ispbalance's firewall in each family wanted: the
// record's while the ruleset is at the record's generation, else what
// iptables-save prints.
func (a *Applier) readFirewall(ctx context.Context, with6 bool) (firewallView, error) {
	families := []string{"ipv4"}
	if with6 {
		families = append(families, "ipv6")
	}
	v := firewallView{rs: a.theRuleset()}
	var before uint32
	var err error
	if v.rs != nil {
		if before, err = v.rs.Generation(); err != nil {
			a.log.Warn("cannot read the nf_tables generation", "err", err)
			v.rs = nil
		}
	}
	if v.rs != nil {
		if states, ok := a.loadRecord(v.rs, before, families...); ok {
			v.states, v.gen, v.known, v.fromRecord = states, before, true, true
			return v, nil
		}
	}
	v.states = map[string]firewallState{}
	if v.states["ipv4"], err = a.netfilter.save(ctx); err != nil {
		return v, err
	}
	if with6 {
		if v.states["ipv6"], err = a.netfilter6.save(ctx); err != nil {
			return v, fmt.Errorf("reading the IPv6 firewall: %w", err)
		}
	}
	if v.rs != nil {
		// No commit between the two reads of the generation: the saves
		// are the firewall of that generation.
		after, err := v.rs.Generation()
		v.gen, v.known = before, err == nil && after == before
	}
	return v, nil
}

// watch starts noting commits before the applier writes, and checks that
// nothing was committed since the firewall was read.
func (v *firewallView) watch() {
	if v.rs == nil || !v.known {
		return
	}
	if v.rs.Watch() != nil {
		return
	}
	now, err := v.rs.Generation()
	v.watching = err == nil && now == v.gen
}

// remember records the firewall as this Apply leaves it, when that is
// known exactly: as read, when nothing was written, or as read with the
// restore texts applied, when every commit since was one of the writers'.
func (a *Applier) remember(v firewallView, p plan.Plan, sp spellings, inputs map[string]string, writers []int) {
	if v.rs == nil || !v.known {
		return
	}
	wrote := inputs["ipv4"] != "" || inputs["ipv6"] != ""
	if !wrote {
		if !v.fromRecord {
			if err := a.writeRecord(v.rs, v.gen, v.states); err != nil {
				a.log.Warn("rebuilds will read the firewall until it is recorded", "err", err)
			}
		}
		return
	}
	if !v.watching {
		return
	}
	now, err := v.rs.Generation()
	if err != nil {
		return
	}
	commits, err := v.rs.Commits()
	if err != nil || !onlyWriters(commits, v.gen, now, writers) {
		return
	}
	states := map[string]firewallState{}
	for fam, st := range v.states {
		next, ok := st.after(inputs[fam])
		if !ok {
			return
		}
		if fam == "ipv4" && !predictSpelling(next, p.Firewall, inputs[fam], sp) {
			return
		}
		states[fam] = next
	}
	if err := a.writeRecord(v.rs, now, states); err != nil {
		a.log.Warn("rebuilds will read the firewall until it is recorded", "err", err)
	}
}

// onlyWriters reports whether the commits from generation from (not
// included) to to are all there, once each, and all made by writers.
func onlyWriters(commits []Commit, from, to uint32, writers []int) bool {
	if to < from {
		return false
	}
	seen := map[uint32]bool{}
	for _, c := range commits {
		if c.Gen <= from || c.Gen > to {
			continue
		}
		if seen[c.Gen] || c.Writer == 0 || !slices.Contains(writers, c.Writer) {
			return false
		}
		seen[c.Gen] = true
	}
	return uint32(len(seen)) == to-from
}

// predictSpelling puts iptables-save's spelling into a predicted state for
// the admin-spelled chains the input rewrote, where the spelling record
// knows it; it reports false where it does not, and nothing can be
// recorded.
func predictSpelling(st firewallState, tables []plan.Table, input string, sp spellings) bool {
	for _, t := range tables {
		for _, c := range t.Chains {
			if !adminSpelled(c) || !rewrites(input, t.Name, c.Name) {
				continue
			}
			rec, ok := sp[spellingKey("ipv4", t.Name, c.Name)]
			if !ok || rec.Kernel == nil || !slices.Equal(rec.Planned, plannedText(c)) {
				return false
			}
			st[t.Name].rules[c.Name] = slices.Clone(rec.Kernel)
		}
	}
	return true
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
	if err := a.forgetRecord(); err != nil {
		errs = append(errs, err)
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
	if err := a.forgetRecord(); err != nil {
		return err
	}
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

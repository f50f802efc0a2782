package apply

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	kn "github.com/ispbalance/ispbalance/internal/kernelnames"
	"github.com/ispbalance/ispbalance/internal/plan"
	"github.com/ispbalance/ispbalance/internal/render"
)

// IPSets is the kernel's IP sets as the ipset program speaks them: text
// in, text out, as Netfilter is for iptables.
type IPSets interface {
	// List returns what `ipset list -t` prints: every set's header.
	List(ctx context.Context) ([]byte, error)
	// Restore feeds input to `ipset restore -exist`. Its commands run in
	// order and the first failure stops it, keeping what came before.
	Restore(ctx context.Context, input string) error
}

// IPSetBinary is the IPSets of the running kernel: it runs ipset. Sets
// are few and change only when sticky=source is turned on or an ISP is
// added or removed, so a process per change costs nothing that matters,
// and the ipset program, unlike the netlink library, lists headers
// without dumping every member.
type IPSetBinary struct {
	Cmd string // default ipset
}

func (b IPSetBinary) cmd() string {
	if b.Cmd == "" {
		return "ipset"
	}
	return b.Cmd
}

// List runs `ipset list -t`.
func (b IPSetBinary) List(ctx context.Context) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, b.cmd(), "list", "-t")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("listing IP sets with %s: %w: %s", b.cmd(), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// Restore runs `ipset restore -exist`.
func (b IPSetBinary) Restore(ctx context.Context, input string) error {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, b.cmd(), "restore", "-exist")
	cmd.Stdin = strings.NewReader(input)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s restore: %w: %s", b.cmd(), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// setHeader is one set as `ipset list -t` shows it.
type setHeader struct {
	name    string
	entries int
}

// parseSetList reads `ipset list -t` output.
func parseSetList(out []byte) ([]setHeader, error) {
	var sets []setHeader
	sc := bufio.NewScanner(bytes.NewReader(out))
	for n := 1; sc.Scan(); n++ {
		key, value, ok := strings.Cut(sc.Text(), ": ")
		switch {
		case !ok:
		case key == "Name":
			sets = append(sets, setHeader{name: value})
		case key == "Number of entries" && len(sets) > 0:
			e, err := strconv.Atoi(value)
			if err != nil {
				return nil, fmt.Errorf("parsing ipset list line %d: %q", n, sc.Text())
			}
			sets[len(sets)-1].entries = e
		}
	}
	return sets, sc.Err()
}

// ourSets lists the sets of ours that the kernel has.
func (a *Applier) ourSets(ctx context.Context) ([]setHeader, error) {
	out, err := a.ipsets.List(ctx)
	if err != nil {
		return nil, err
	}
	sets, err := parseSetList(out)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(sets, func(s setHeader) bool { return !strings.HasPrefix(s.name, kn.SetPrefix) }), nil
}

// referencedSets lists the sets of ours that our chains name. A named set
// exists: the kernel refuses rules naming missing sets and keeps named
// sets from being destroyed. So a rebuild learns what sets there are
// from the firewall it reads anyway, and runs ipset only when sets must
// be made or destroyed.
func referencedSets(st firewallState) []string {
	var out []string
	for table := range st {
		for _, c := range st.ourChains(table) {
			for _, rule := range st[table].rules[c] {
				f := strings.Fields(rule)
				for i := 0; i+1 < len(f); i++ {
					if (f[i] == "--match-set" || f[i] == "--add-set" || f[i] == "--del-set") &&
						strings.HasPrefix(f[i+1], kn.SetPrefix) && !slices.Contains(out, f[i+1]) {
						out = append(out, f[i+1])
					}
				}
			}
		}
	}
	return out
}

// setChange is what one apply does to the sticky sets: made before the
// firewall refers to them, destroyed after it no longer does.
type setChange struct {
	// created are the sets this apply made, to destroy if it fails.
	created []string
	// stale are the sets the firewall named before and the plan no
	// longer wants, to destroy once the new firewall is in.
	stale []string
}

// errNoIPSet explains a missing ipset program to the admin who set
// sticky=source.
var errNoIPSet = errors.New("sticky=source needs the ipset program: install the ipset package")

// missingProgram says err is a program that is not there: not found in
// PATH, or a path to nothing.
func missingProgram(err error) bool {
	return errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist)
}

// prepareSets makes the sets the plan wants that the firewall, read as
// fw and fw6, does not name yet. On failure it destroys what it made and
// nothing has changed.
func (a *Applier) prepareSets(ctx context.Context, p plan.Plan, fw, fw6 firewallState) (setChange, error) {
	var ch setChange
	var want []plan.StickySet
	if p.Sticky != nil {
		for _, s := range p.Sticky.Sets {
			if !s.IPv6 || a.ipv6 {
				want = append(want, s)
			}
		}
	}
	named := append(referencedSets(fw), referencedSets(fw6)...)
	for _, name := range named {
		if !slices.ContainsFunc(want, func(s plan.StickySet) bool { return s.Name == name }) {
			ch.stale = append(ch.stale, name)
		}
	}
	missing := slices.DeleteFunc(want, func(s plan.StickySet) bool { return slices.Contains(named, s.Name) })
	if len(missing) == 0 {
		return ch, nil
	}
	// Sets that exist unnamed (left by an apply that died) are taken as
	// they are; only those made now are destroyed if this apply fails.
	existing, err := a.ourSets(ctx)
	if missingProgram(err) {
		return ch, errNoIPSet
	}
	if err != nil {
		return ch, fmt.Errorf("making the sticky=source address sets: %w", err)
	}
	for _, s := range missing {
		if !slices.ContainsFunc(existing, func(h setHeader) bool { return h.name == s.Name }) {
			ch.created = append(ch.created, s.Name)
		}
	}
	input := render.IPSetCreate(missing)
	a.echo("ipset restore -exist <<EOF\n%sEOF", input)
	if err := a.ipsets.Restore(ctx, input); err != nil {
		err = fmt.Errorf("making the sticky=source address sets: %w", err)
		return setChange{}, a.destroySets(ctx, err, ch.created)
	}
	return ch, nil
}

// finish ends an apply's part in the sets: if it failed (err), the sets
// it made go; else the sets no longer wanted go. A stale set that cannot
// go costs nothing but memory, so that is only a warning.
func (ch setChange) finish(ctx context.Context, a *Applier, err error) error {
	if err != nil {
		return a.destroySets(ctx, err, ch.created)
	}
	if len(ch.stale) > 0 {
		input := render.IPSetDestroy(ch.stale)
		a.echo("ipset restore -exist <<EOF\n%sEOF", input)
		if err := a.ipsets.Restore(ctx, input); err != nil {
			a.log.Warn("cannot destroy sticky sets no longer used", "sets", ch.stale, "err", err)
		}
	}
	return nil
}

// destroySets undoes the making of sets after cause, and returns cause
// joined with any failure to.
func (a *Applier) destroySets(ctx context.Context, cause error, names []string) error {
	if len(names) == 0 {
		return cause
	}
	input := render.IPSetDestroy(names)
	a.echo("ipset restore -exist <<EOF\n%sEOF", input)
	if err := a.ipsets.Restore(ctx, input); err != nil {
		return errors.Join(cause, fmt.Errorf("rollback of sticky sets: %w", err))
	}
	return cause
}

// stopSets destroys the sets of ours that the firewall named before
// stop removed it. A system that never balanced with sticky=source thus
// never runs ipset.
func (a *Applier) stopSets(ctx context.Context, named []string) error {
	if len(named) == 0 {
		return nil
	}
	input := render.IPSetDestroy(named)
	a.echo("ipset restore -exist <<EOF\n%sEOF", input)
	if err := a.ipsets.Restore(ctx, input); err != nil {
		return fmt.Errorf("destroying sticky sets: %w", err)
	}
	return nil
}

// StickyHeld returns how many LAN addresses each ISP holds under
// sticky=source, by set name, for the status; sets nil asks the ipset
// program.
func StickyHeld(ctx context.Context, sets IPSets) (map[string]int, error) {
	if sets == nil {
		sets = IPSetBinary{}
	}
	a := &Applier{ipsets: sets}
	headers, err := a.ourSets(ctx)
	if missingProgram(err) {
		return nil, errNoIPSet
	}
	if err != nil {
		return nil, err
	}
	held := map[string]int{}
	for _, h := range headers {
		held[h.name] = h.entries
	}
	return held, nil
}

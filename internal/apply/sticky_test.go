package apply_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ispbalance/ispbalance/internal/apply"
	"github.com/ispbalance/ispbalance/internal/kernelfake"
	"github.com/ispbalance/ispbalance/internal/plan"
	"github.com/ispbalance/ispbalance/internal/plan/plantest"
)

// stickyKernel is the fake kernel with IP sets, which both families'
// firewalls may name.
type stickyKernel struct {
	*kernel
	sets *kernelfake.IPSets
}

func newStickyKernel(t *testing.T) *stickyKernel {
	t.Helper()
	k := &stickyKernel{kernel: newKernel(t), sets: kernelfake.NewIPSets()}
	k.nf.UseSets(k.sets, false)
	k.nf6.UseSets(k.sets, true)
	a, err := apply.New(apply.Options{StateDir: k.stateDir, Routing: k.routing, Netfilter: k.nf, Netfilter6: k.nf6,
		SysctlRoot: k.sysctl, IPSets: k.sets})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	k.applier = a
	// Another program's set, which nothing of ours may touch.
	if err := k.sets.Restore(context.Background(), "create FOREIGN hash:ip family inet timeout 0\nadd FOREIGN 198.51.100.9\n"); err != nil {
		t.Fatal(err)
	}
	return k
}

func (k *stickyKernel) state(t *testing.T) string {
	t.Helper()
	return k.kernel.state(t) + "--- ipset\n" + k.sets.Save()
}

// stickyScenarios are the sticky golden scenarios and one with IPv6 from
// both ISPs, whose IPv6 routes, rules and sysctls stickyPlan leaves out:
// the fake models IPv4 routing only, and the sets of both families are
// the point here.
func stickyScenarios() []plantest.Scenario {
	dual := func(k int) plan.Link {
		l := plantest.ISP(k)
		l.V6Addr = netip.MustParsePrefix("2001:db8:" + strconv.Itoa(k) + "::2/64")
		l.V6Gateway = netip.MustParseAddr("fe80::" + strconv.Itoa(k))
		return l
	}
	return append(slices.Clone(plantest.StickyScenarios), plantest.Scenario{
		Name:  "sticky-dual-stack",
		Conf:  "sticky=source\nCABLE wan1 isp default 3\nDSL wan2 isp\nLAN lan1 lan\n",
		Links: map[string]plan.Link{"wan1": dual(1), "wan2": dual(2), "lan1": plantest.LAN(1)},
		Up:    plantest.AllUp("CABLE", "DSL"),
	})
}

func stickyScenario(t *testing.T, name string) plantest.Scenario {
	t.Helper()
	return scenarioIn(t, name, append(stickyScenarios(), plantest.Scenarios...))
}

// stickyPlan builds a scenario's plan without its IPv6 routing.
func stickyPlan(t *testing.T, sc plantest.Scenario) plan.Plan {
	t.Helper()
	p := build(t, sc)
	p.Routes = slices.DeleteFunc(p.Routes, plan.Route.IPv6)
	p.Rules = slices.DeleteFunc(p.Rules, func(r plan.Rule) bool { return r.IPv6 })
	p.Sysctls = slices.DeleteFunc(p.Sysctls, func(s plan.Sysctl) bool { return s.Path[1] == "ipv6" })
	return p
}

func (k *stickyKernel) apply(t *testing.T, sc plantest.Scenario) {
	t.Helper()
	k.setFacts(sc)
	if _, err := k.applier.Apply(context.Background(), stickyPlan(t, sc)); err != nil {
		t.Fatalf("applying %s: %v", sc.Name, err)
	}
}

func setNames(save string) []string {
	var names []string
	for _, line := range strings.Split(save, "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "create" {
			names = append(names, f[1])
		}
	}
	return names
}

// TestStickySetsMadeOnce: the sets of both families go in with the
// firewall that names them; a rebuild, or one that takes an ISP down and
// back, runs no ipset and keeps every address the sets hold.
func TestStickySetsMadeOnce(t *testing.T) {
	k := newStickyKernel(t)
	k.addForeign(t)
	dual := stickyScenario(t, "sticky-dual-stack")
	k.apply(t, dual)
	want := []string{"FOREIGN", "ISPB-STICKY4-CABLE", "ISPB-STICKY4-DSL", "ISPB-STICKY6-CABLE", "ISPB-STICKY6-DSL"}
	if got := setNames(k.sets.Save()); !slices.Equal(got, want) {
		t.Fatalf("sets %v, want %v", got, want)
	}
	for fam, nf := range map[string]*kernelfake.Netfilter{"4": k.nf, "6": k.nf6} {
		if saved := string(must(nf.Save(context.Background()))); !strings.Contains(saved, "--match-set ISPB-STICKY"+fam+"-DSL src -j ISPB-KEEP-DSL") {
			t.Errorf("IPv%s firewall does not consult the sets:\n%s", fam, saved)
		}
	}
	members := "add ISPB-STICKY4-CABLE 192.168.1.20 timeout 500\nadd ISPB-STICKY6-DSL fd00::20 timeout 40\n"
	if err := k.sets.Restore(context.Background(), members); err != nil {
		t.Fatal(err)
	}
	before := k.sets.Save()
	restores := len(k.sets.Restores())
	down := dual
	down.Up = plantest.AllUp("DSL")
	for _, sc := range []plantest.Scenario{dual, down, dual} {
		k.apply(t, sc)
	}
	if n := len(k.sets.Restores()) - restores; n != 0 {
		t.Errorf("%d ipset restores in rebuilds that needed no set made or destroyed: %q", n, k.sets.Restores()[restores:])
	}
	if d := cmp.Diff(before, k.sets.Save()); d != "" {
		t.Errorf("rebuilds changed the sets (-before +after):\n%s", d)
	}
}

// TestStickyFailedApplyRollsBack: whatever step of an apply that makes
// sets fails, routing, both firewalls and the sets (their members too)
// end exactly as they were; the sets it made are gone again.
func TestStickyFailedApplyRollsBack(t *testing.T) {
	injected := errors.New("injected failure")
	tests := []struct {
		name, from, to string
		setup          func(k *stickyKernel, p *plan.Plan)
	}{
		{"IPv4 restore", "two-isps-balanced", "sticky-dual-stack", func(k *stickyKernel, _ *plan.Plan) { k.nf.Fail = once[string](injected) }},
		{"IPv6 restore", "two-isps-balanced", "sticky-dual-stack", func(k *stickyKernel, _ *plan.Plan) { k.nf6.Fail = once[string](injected) }},
		{"ipset restore", "two-isps-balanced", "sticky-dual-stack", func(k *stickyKernel, _ *plan.Plan) { k.sets.Fail = once[string](injected) }},
		{"a set the kernel refuses", "two-isps-balanced", "sticky-dual-stack", func(_ *stickyKernel, p *plan.Plan) {
			p.Sticky.Sets = append(p.Sticky.Sets, plan.StickySet{Name: "ISPB-STICKY4-" + strings.Repeat("X", 30)})
		}},
		{"a rule the kernel refuses", "sticky-three-isps-short-timeout", "sticky-two-isps", func(_ *stickyKernel, p *plan.Plan) {
			last := &p.Firewall[len(p.Firewall)-1]
			last.Chains[0].Rules = append(last.Chains[0].Rules, []string{"-j", "ISPB-NO-SUCH-CHAIN"})
		}},
		{"deleting a stale rule", "sticky-three-isps-short-timeout", "sticky-two-isps", func(k *stickyKernel, _ *plan.Plan) {
			failOnce := once[string](injected)
			k.routing.Fail = func(op string) error {
				if strings.HasPrefix(op, "rule del") {
					return failOnce(op)
				}
				return nil
			}
		}},
		{"IPv4 restore, sticky off", "sticky-two-isps", "two-isps-balanced", func(k *stickyKernel, _ *plan.Plan) { k.nf.Fail = once[string](injected) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newStickyKernel(t)
			k.addForeign(t)
			k.apply(t, stickyScenario(t, tt.from))
			if strings.HasPrefix(tt.from, "sticky") {
				if err := k.sets.Restore(context.Background(), "add "+setNames(k.sets.Save())[1]+" 192.168.1.30 timeout 100\n"); err != nil {
					t.Fatal(err)
				}
			}
			before := k.state(t)
			to := stickyScenario(t, tt.to)
			k.setFacts(to)
			p := stickyPlan(t, to)
			tt.setup(k, &p)
			applyFailsAndRollsBack(t, k.kernel, p, before, k.state)
		})
	}
}

// TestStickySetsGo: sets no longer wanted go once the firewall no longer
// names them (an ISP removed, sticky=source turned off), and stop takes
// every set of ours; other software's set stays throughout.
func TestStickySetsGo(t *testing.T) {
	k := newStickyKernel(t)
	k.addForeign(t)
	before := k.state(t)
	k.apply(t, stickyScenario(t, "sticky-three-isps-short-timeout"))
	k.apply(t, stickyScenario(t, "sticky-two-isps"))
	if got, want := setNames(k.sets.Save()), []string{"FOREIGN", "ISPB-STICKY4-CABLE", "ISPB-STICKY4-DSL"}; !slices.Equal(got, want) {
		t.Errorf("after the ISPs changed, sets %v, want %v", got, want)
	}
	k.apply(t, stickyScenario(t, "two-isps-balanced"))
	if got := setNames(k.sets.Save()); !slices.Equal(got, []string{"FOREIGN"}) {
		t.Errorf("after sticky=source went, sets %v", got)
	}
	if d := cmp.Diff(freshState(t, stickyScenario(t, "two-isps-balanced"))+"--- ipset\n"+before[strings.Index(before, "--- ipset\n")+len("--- ipset\n"):], k.state(t)); d != "" {
		t.Errorf("after sticky=source went, the state differs from a fresh apply (-fresh +got):\n%s", d)
	}
	k.apply(t, stickyScenario(t, "sticky-dual-stack"))
	if err := k.applier.Stop(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(before, k.state(t)); d != "" {
		t.Errorf("after stop (-before apply +after stop):\n%s", d)
	}
}

// TestStickyWithoutIPSet: a router without the ipset program refuses
// sticky=source by name and is left as it was.
func TestStickyWithoutIPSet(t *testing.T) {
	k := newStickyKernel(t)
	k.addForeign(t)
	k.apply(t, stickyScenario(t, "two-isps-balanced"))
	before := k.state(t)
	a, err := apply.New(apply.Options{StateDir: k.stateDir, Routing: k.routing, Netfilter: k.nf, Netfilter6: k.nf6,
		SysctlRoot: k.sysctl, IPSets: apply.IPSetBinary{Cmd: "/nonexistent/ipset"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Apply(context.Background(), stickyPlan(t, stickyScenario(t, "sticky-two-isps")))
	if err == nil || !strings.Contains(err.Error(), "sticky=source needs the ipset program: install the ipset package") {
		t.Errorf("got %v, want the missing ipset named", err)
	}
	if d := cmp.Diff(before, k.state(t)); d != "" {
		t.Errorf("the refused apply changed the state (-before +after):\n%s", d)
	}
}

// forbiddenSets fails the test on any use: without sticky=source,
// nothing may run ipset.
type forbiddenSets struct{ t *testing.T }

func (f forbiddenSets) List(context.Context) ([]byte, error) {
	f.t.Error("ipset list without sticky=source")
	return nil, errors.New("forbidden")
}

func (f forbiddenSets) Restore(_ context.Context, input string) error {
	f.t.Errorf("ipset restore without sticky=source: %q", input)
	return errors.New("forbidden")
}

// TestNoStickyNoIPSet: the golden scenarios without sticky=source, in a
// random walk, and stop never run ipset.
func TestNoStickyNoIPSet(t *testing.T) {
	k := newKernel(t)
	a, err := apply.New(apply.Options{StateDir: k.stateDir, Routing: k.routing, Netfilter: k.nf, Netfilter6: k.nf6,
		SysctlRoot: k.sysctl, IPSets: forbiddenSets{t}})
	if err != nil {
		t.Fatal(err)
	}
	walk := slices.Clone(plantest.Scenarios)
	rand.New(rand.NewPCG(1, 0)).Shuffle(len(walk), func(i, j int) { walk[i], walk[j] = walk[j], walk[i] })
	for _, sc := range walk {
		k.setFacts(sc)
		if _, err := a.Apply(context.Background(), build(t, sc)); err != nil {
			t.Fatalf("%s: %v", sc.Name, err)
		}
	}
	if err := a.Stop(context.Background(), false); err != nil {
		t.Fatal(err)
	}
}

// TestStickyScenarioWalk: sticky and plain scenarios applied one after
// another in random orders end in exactly the state a fresh apply of the
// last one gives, sets included.
func TestStickyScenarioWalk(t *testing.T) {
	all := append(stickyScenarios(), scenario(t, "two-isps-balanced"), scenario(t, "one-isp-down"), scenario(t, "three-isps-weighted"))
	for seed := uint64(1); seed <= 6; seed++ {
		rng := rand.New(rand.NewPCG(seed, 0))
		walk := append(slices.Clone(all), all...)
		rng.Shuffle(len(walk), func(i, j int) { walk[i], walk[j] = walk[j], walk[i] })
		k := newStickyKernel(t)
		k.addForeign(t)
		var names []string
		for _, sc := range walk {
			names = append(names, sc.Name)
			k.apply(t, sc)
		}
		last := walk[len(walk)-1]
		fresh := newStickyKernel(t)
		fresh.addForeign(t)
		fresh.apply(t, last)
		if d := cmp.Diff(fresh.state(t), k.state(t)); d != "" {
			t.Errorf("seed %d, walk %s:\nstate differs from a fresh apply of %s (-fresh +walked):\n%s", seed, strings.Join(names, " "), last.Name, d)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

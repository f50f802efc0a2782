package apply_test

// These tests run the applier against package kernelfake's strict
// in-memory kernel, without root. The lab tests (internal/labtest) check
// the same paths against real namespaces.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ispbalance/ispbalance/internal/apply"
	"github.com/ispbalance/ispbalance/internal/kernelfake"
	kn "github.com/ispbalance/ispbalance/internal/kernelnames"
	"github.com/ispbalance/ispbalance/internal/plan"
	"github.com/ispbalance/ispbalance/internal/plan/plantest"
	"github.com/ispbalance/ispbalance/internal/render"
)

// kernel is a fake kernel with every device any golden scenario names,
// and an Applier on it.
type kernel struct {
	routing  *kernelfake.Routing
	nf, nf6  *kernelfake.Netfilter
	sysctl   string
	applier  *apply.Applier
	stateDir string
}

// devices maps every kernel device of the scenarios to its addresses.
func devices() map[string][]netip.Prefix {
	out := map[string][]netip.Prefix{}
	for _, sc := range plantest.Scenarios {
		for _, l := range sc.Links {
			if _, ok := out[l.Kernel]; !ok {
				out[l.Kernel] = nil
			}
			if l.Addr.IsValid() && !slices.Contains(out[l.Kernel], l.Addr) {
				out[l.Kernel] = append(out[l.Kernel], l.Addr)
			}
		}
	}
	return out
}

// emptyTables makes every table exist, as on a router where iptables has
// been used, so comparisons need not care which tables a restore created.
const emptyTables = "*raw\nCOMMIT\n*mangle\nCOMMIT\n*nat\nCOMMIT\n*filter\nCOMMIT\n"

func newKernel(t *testing.T) *kernel {
	t.Helper()
	k := &kernel{routing: kernelfake.NewRouting(), nf: kernelfake.NewNetfilter(), nf6: kernelfake.NewNetfilter(),
		sysctl: sysctlRoot(t), stateDir: t.TempDir()}
	devs := devices()
	for _, name := range slices.Sorted(maps.Keys(devs)) {
		k.routing.AddLink(name, devs[name]...)
	}
	for _, nf := range []*kernelfake.Netfilter{k.nf, k.nf6} {
		if err := nf.Restore(context.Background(), emptyTables, true); err != nil {
			t.Fatal(err)
		}
	}
	a, err := apply.New(apply.Options{StateDir: k.stateDir, Routing: k.routing, Netfilter: k.nf, Netfilter6: k.nf6, SysctlRoot: k.sysctl})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	k.applier = a
	return k
}

// sysctlRoots holds a stand-in /proc/sys per test: writing one is slow
// enough to dominate a test that makes a kernel per pair of scenarios,
// and the kernels of one test may share it.
var sysctlRoots sync.Map

func sysctlRoot(t *testing.T) string {
	t.Helper()
	if root, ok := sysctlRoots.Load(t); ok {
		return root.(string)
	}
	root := t.TempDir()
	writeSysctl(t, root, "net/ipv4/ip_forward", "0")
	for dev := range devices() {
		writeSysctl(t, root, "net/ipv4/conf/"+dev+"/rp_filter", "1")
		writeSysctl(t, root, "net/ipv4/conf/"+dev+"/ignore_routes_with_linkdown", "0")
	}
	sysctlRoots.Store(t, root)
	t.Cleanup(func() { sysctlRoots.Delete(t) })
	return root
}

func writeSysctl(t *testing.T, root, path, value string) {
	t.Helper()
	file := filepath.Join(root, path)
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(value), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (k *kernel) readSysctl(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(k.sysctl, path))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// setFacts makes the devices what a scenario's discovery found: down
// where it found them administratively down, without carrier where it
// found none, up otherwise.
func (k *kernel) setFacts(sc plantest.Scenario) {
	for dev := range devices() {
		up, carrier := true, true
		for _, l := range sc.Links {
			if l.Kernel == dev && l.Present {
				up, carrier = up && !l.AdminDown, carrier && l.Carrier
			}
		}
		k.routing.SetUp(dev, up)
		k.routing.SetCarrier(dev, carrier)
	}
}

// state is everything the fake kernel holds but the sysctls, which
// ispbalance only puts back on stop.
func (k *kernel) state(t *testing.T) string {
	t.Helper()
	v4, err := k.nf.Save(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	v6, err := k.nf6.Save(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return k.routing.Dump() + "\n--- iptables\n" + string(v4) + "--- ip6tables\n" + string(v6)
}

// addForeign installs other software's rule, routes and chains.
func (k *kernel) addForeign(t *testing.T) {
	t.Helper()
	lan1 := -1
	links, _ := k.routing.LinkList()
	for _, l := range links {
		if l.Attrs().Name == "lan1" {
			lan1 = l.Attrs().Index
		}
	}
	mark, mask := uint32(0x80000), uint32(0xff0000)
	r := netlink.NewRule()
	r.Priority, r.Table, r.Mark, r.Mask = 5210, 52, mark, &mask
	if err := k.routing.RuleAdd(r); err != nil {
		t.Fatal(err)
	}
	gw := net.ParseIP("192.168.1.254").To4()
	for _, rt := range []netlink.Route{
		{Table: 52, Gw: gw, LinkIndex: lan1, Protocol: unix.RTPROT_STATIC},
		{Dst: &net.IPNet{IP: net.IP{198, 51, 100, 0}, Mask: net.CIDRMask(24, 32)}, Gw: gw, LinkIndex: lan1, Protocol: unix.RTPROT_STATIC},
	} {
		if err := k.routing.RouteReplace(&rt); err != nil {
			t.Fatal(err)
		}
	}
	foreign := "*filter\n:FOREIGN - [0:0]\n-A FOREIGN -s 198.51.100.7/32 -j DROP\n-A INPUT -j FOREIGN\nCOMMIT\n" +
		"*nat\n-A POSTROUTING -o lan1 -j MASQUERADE\nCOMMIT\n"
	if err := k.nf.Restore(context.Background(), foreign, true); err != nil {
		t.Fatal(err)
	}
	if err := k.nf6.Restore(context.Background(), strings.ReplaceAll(foreign, "198.51.100.7/32", "2001:db8::7/128"), true); err != nil {
		t.Fatal(err)
	}
}

func scenario(t *testing.T, name string) plantest.Scenario {
	t.Helper()
	return scenarioIn(t, name, plantest.Scenarios)
}

// scenarioIn finds a scenario by name among scs.
func scenarioIn(t *testing.T, name string, scs []plantest.Scenario) plantest.Scenario {
	t.Helper()
	for _, sc := range scs {
		if sc.Name == name {
			return sc
		}
	}
	t.Fatalf("no scenario %s", name)
	return plantest.Scenario{}
}

func build(t *testing.T, sc plantest.Scenario) plan.Plan {
	t.Helper()
	p, err := sc.Build()
	if err != nil {
		t.Fatalf("%s: %v", sc.Name, err)
	}
	return p
}

// applyScenario sets the scenario's facts and applies its plan.
func (k *kernel) applyScenario(t *testing.T, sc plantest.Scenario) {
	t.Helper()
	k.setFacts(sc)
	if _, err := k.applier.Apply(context.Background(), build(t, sc)); err != nil {
		t.Fatalf("applying %s: %v", sc.Name, err)
	}
}

// freshState is the state a fresh kernel with other software's objects
// reaches by applying one scenario.
func freshState(t *testing.T, sc plantest.Scenario) string {
	t.Helper()
	k := newKernel(t)
	k.setFacts(sc)
	k.addForeign(t)
	k.applyScenario(t, sc)
	return k.state(t)
}

// TestApplyFresh: every rule, route, chain and jump of the plan is in the
// fake kernel afterwards, and the sysctls are set.
func TestApplyFresh(t *testing.T) {
	sc := scenario(t, "rule-files")
	k := newKernel(t)
	p := build(t, sc)
	k.applyScenario(t, sc)

	rules, _ := k.routing.RuleList(netlink.FAMILY_V4)
	for _, want := range p.Rules {
		if !slices.ContainsFunc(rules, func(r netlink.Rule) bool { return sameRule(want, r) }) {
			t.Errorf("rule %s is not in the kernel:\n%s", render.RuleArgs(want), k.routing.Dump())
		}
	}
	if len(rules) != 3+len(p.Rules) {
		t.Errorf("%d rules, want the kernel's 3 and the plan's %d:\n%s", len(rules), len(p.Rules), k.routing.Dump())
	}
	routes, _ := k.routing.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{}, netlink.RT_FILTER_TABLE)
	ours := 0
	for _, r := range routes {
		if r.Protocol == kn.RouteProtocol {
			ours++
		}
	}
	if ours != len(p.Routes) {
		t.Errorf("%d routes tagged ours, want the plan's %d:\n%s", ours, len(p.Routes), k.routing.Dump())
	}
	for _, r := range p.Routes {
		dst := r.Dst.String()
		if r.Dst.Bits() == 0 {
			dst = "0.0.0.0/0"
		}
		if !strings.Contains(k.routing.Dump(), fmt.Sprintf("route %s table %d", dst, r.Table)) {
			t.Errorf("route %s is not in the kernel", render.RouteArgs(r))
		}
	}
	for _, fam := range []struct {
		nf     *kernelfake.Netfilter
		tables []plan.Table
	}{{k.nf, p.Firewall}, {k.nf6, p.Firewall6}} {
		out, _ := fam.nf.Save(context.Background())
		saved := string(out)
		for _, tab := range fam.tables {
			for _, c := range tab.Chains {
				var b strings.Builder
				for _, rule := range c.Rules {
					fmt.Fprintf(&b, "-A %s %s\n", c.Name, render.Quote(rule))
				}
				if !strings.Contains(saved, ":"+c.Name+" - [0:0]\n") || !strings.Contains(saved, b.String()) {
					t.Errorf("chain %s of %s is not as planned:\n%s", c.Name, tab.Name, saved)
				}
			}
			for _, j := range tab.Jumps {
				if !strings.Contains(saved, "-A "+j.From+" -j "+j.To+"\n") {
					t.Errorf("jump %s -> %s of %s is missing", j.From, j.To, tab.Name)
				}
			}
		}
	}
	if got := k.readSysctl(t, "net/ipv4/ip_forward"); got != "1" {
		t.Errorf("ip_forward is %q", got)
	}
	if got := k.readSysctl(t, "net/ipv4/conf/wan2/rp_filter"); got != "2" {
		t.Errorf("wan2 rp_filter is %q", got)
	}
}

// sameRule compares a planned rule with a kernel one by every field the
// applier sets.
func sameRule(p plan.Rule, r netlink.Rule) bool {
	var mask uint32
	if r.Mask != nil {
		mask = *r.Mask
	}
	prefix := func(n *net.IPNet) netip.Prefix {
		if n == nil {
			return netip.Prefix{}
		}
		a, _ := netip.AddrFromSlice(n.IP.To4())
		ones, _ := n.Mask.Size()
		return netip.PrefixFrom(a, ones)
	}
	return r.Priority == p.Priority && r.Table == p.Table && r.Mark == p.Mark && mask == p.Mask &&
		prefix(r.Src) == p.Src && prefix(r.Dst) == p.Dst && r.IifName == p.Iif && r.OifName == p.Oif &&
		r.SuppressPrefixlen == p.SuppressPrefixlen
}

// TestReapplyChangesNothing: applying the plan that is in place writes
// nothing, in every scenario.
func TestReapplyChangesNothing(t *testing.T) {
	for _, sc := range plantest.Scenarios {
		k := newKernel(t)
		k.addForeign(t)
		k.applyScenario(t, sc)
		changes, restores, restores6 := len(k.routing.Log()), len(k.nf.Restores()), len(k.nf6.Restores())
		requests := k.routing.Requests()
		k.applyScenario(t, sc)
		if log := k.routing.Log()[changes:]; len(log) > 0 {
			t.Errorf("%s: re-applying changed routing:\n%s", sc.Name, strings.Join(log, "\n"))
		}
		if n := k.routing.Requests() - requests; n > 0 {
			t.Errorf("%s: re-applying sent the kernel %d routing requests, want none", sc.Name, n)
		}
		if r := k.nf.Restores()[restores:]; len(r) > 0 {
			t.Errorf("%s: re-applying restored the firewall:\n%s", sc.Name, strings.Join(r, "\n"))
		}
		if r := k.nf6.Restores()[restores6:]; len(r) > 0 {
			t.Errorf("%s: re-applying restored the IPv6 firewall:\n%s", sc.Name, strings.Join(r, "\n"))
		}
	}
}

// TestNoGapBetweenPlans: going from any scenario to any other, every rule
// priority and every route (table and destination) that both the kernel
// and the next plan have is there at every moment of the change.
func TestNoGapBetweenPlans(t *testing.T) {
	for _, from := range plantest.Scenarios {
		for _, to := range plantest.Scenarios {
			k := newKernel(t)
			k.applyScenario(t, from)
			k.setFacts(to)
			p := build(t, to)
			keep := map[string]bool{}
			present := presence(k.routing)
			for _, r := range p.Rules {
				if key := fmt.Sprintf("rule %d", r.Priority); present[key] {
					keep[key] = true
				}
			}
			for _, r := range p.Routes {
				if key := fmt.Sprintf("route %d %s", r.Table, r.Dst); present[key] {
					keep[key] = true
				}
			}
			var gaps []string
			k.routing.Observe = func() {
				now := presence(k.routing)
				for key := range keep {
					if !now[key] {
						gaps = append(gaps, key+" missing after "+k.routing.Log()[len(k.routing.Log())-1])
					}
				}
			}
			if _, err := k.applier.Apply(context.Background(), p); err != nil {
				t.Fatalf("%s -> %s: %v", from.Name, to.Name, err)
			}
			if len(gaps) > 0 {
				t.Errorf("%s -> %s:\n%s", from.Name, to.Name, strings.Join(gaps, "\n"))
			}
		}
	}
}

// presence lists the rule priorities and route tables and destinations
// the kernel has.
func presence(k *kernelfake.Routing) map[string]bool {
	out := map[string]bool{}
	rules, _ := k.RuleList(netlink.FAMILY_V4)
	for _, r := range rules {
		out[fmt.Sprintf("rule %d", r.Priority)] = true
	}
	routes, _ := k.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{}, netlink.RT_FILTER_TABLE)
	for _, r := range routes {
		a, _ := netip.AddrFromSlice(r.Dst.IP.To4())
		ones, _ := r.Dst.Mask.Size()
		out[fmt.Sprintf("route %d %s", r.Table, netip.PrefixFrom(a, ones))] = true
	}
	return out
}

// once fails the first call with err, then lets everything through.
func once[T any](err error) func(T) error {
	used := false
	return func(T) error {
		if used {
			return nil
		}
		used = true
		return err
	}
}

// TestFailedApplyRollsBack: whatever step of an apply fails, the routing
// and both firewalls end exactly as they were before it.
func TestFailedApplyRollsBack(t *testing.T) {
	injected := errors.New("injected failure")
	// badRule makes the last table of the plan refused by the kernel (a
	// jump to a chain that does not exist), after the tables before it
	// were committed.
	badRule := func(p *plan.Plan) {
		last := &p.Firewall[len(p.Firewall)-1]
		last.Chains[0].Rules = append(last.Chains[0].Rules, []string{"-j", "ISPB-NO-SUCH-CHAIN"})
	}
	tests := []struct {
		name string
		// carrierless takes wan2's carrier away first: its routes are
		// dumped flagged linkdown, which the kernel refuses to be given.
		carrierless bool
		setup       func(k *kernel, p *plan.Plan)
	}{
		{name: "IPv4 restore", setup: func(k *kernel, _ *plan.Plan) { k.nf.Fail = once[string](injected) }},
		{name: "IPv6 restore", setup: func(k *kernel, _ *plan.Plan) { k.nf6.Fail = once[string](injected) }},
		{name: "refused rule", setup: func(_ *kernel, p *plan.Plan) { badRule(p) }},
		{name: "deleting a stale rule", setup: func(k *kernel, _ *plan.Plan) {
			failOnce := once[string](injected)
			k.routing.Fail = func(op string) error {
				if strings.HasPrefix(op, "rule del") {
					return failOnce(op)
				}
				return nil
			}
		}},
		{name: "IPv4 restore, an ISP without carrier", carrierless: true, setup: func(k *kernel, _ *plan.Plan) { k.nf.Fail = once[string](injected) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newKernel(t)
			k.addForeign(t)
			from, to := scenario(t, "rule-files"), scenario(t, "three-isps-weighted")
			if tt.carrierless {
				for _, sc := range []*plantest.Scenario{&from, &to} {
					sc.Links = clone(sc.Links)
					wan2 := sc.Links["wan2"]
					wan2.Carrier = false
					sc.Links["wan2"] = wan2
				}
			}
			k.applyScenario(t, from)
			before := k.state(t)
			k.setFacts(to)
			p := build(t, to)
			tt.setup(k, &p)
			applyFailsAndRollsBack(t, k, p, before, k.state)
		})
	}
}

func clone(m map[string]plan.Link) map[string]plan.Link {
	out := map[string]plan.Link{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// TestVanishedDeviceIsFactsChanged: a plan made before a device went down
// or away fails with ErrFactsChanged, so the caller discovers again, and
// what was there is put back.
func TestVanishedDeviceIsFactsChanged(t *testing.T) {
	pppFailover := scenario(t, "ppp-isp")
	pppFailover.Conf = "mode=failover\nCABLE wan1 isp default 1\nDSL ppp0 isp default 5\nLAN lan1 lan\n"
	tests := []struct {
		name string
		sc   plantest.Scenario
		// change is what happens between discovery and apply.
		change func(k *kernelfake.Routing)
		// multipath says the balance route had a leg through the device:
		// the kernel keeps such a route with the leg dead, and a rollback
		// can only put it back without that leg.
		multipath bool
	}{
		{"gateway route", scenario(t, "two-isps-failover"), func(k *kernelfake.Routing) { k.SetUp("wan2", false) }, false},
		// The route is onlink: the kernel says ENETDOWN, not ENETUNREACH.
		{"onlink route", pppFailover, func(k *kernelfake.Routing) { k.SetUp("ppp0", false) }, false},
		{"device deleted", scenario(t, "two-isps-balanced"), func(k *kernelfake.Routing) { k.DelLink("wan2") }, false},
		{"leg of a multipath route", scenario(t, "two-isps-balanced"), func(k *kernelfake.Routing) { k.SetUp("wan2", false) }, true},
	}
	balance := "route 0.0.0.0/0 table 4200 "
	for _, tt := range tests {
		k := newKernel(t)
		k.addForeign(t)
		k.applyScenario(t, tt.sc)
		tt.change(k.routing)
		before := k.state(t)
		_, err := k.applier.Apply(context.Background(), build(t, tt.sc))
		if !errors.Is(err, apply.ErrFactsChanged) {
			t.Errorf("%s: got %v, want ErrFactsChanged", tt.name, err)
		}
		after := k.state(t)
		if tt.multipath {
			if !strings.Contains(after, balance+"proto 177 scope 0 via 100.64.1.1 dev wan1\n") {
				t.Errorf("%s: the balance route lost its live leg:\n%s", tt.name, after)
			}
			before, after = without(before, balance), without(after, balance)
		}
		if d := cmp.Diff(before, after); d != "" {
			t.Errorf("%s: the state is not as before (-before +after):\n%s", tt.name, d)
		}
	}
}

// without drops the lines that start with prefix.
func without(text, prefix string) string {
	lines := strings.Split(text, "\n")
	return strings.Join(slices.DeleteFunc(lines, func(l string) bool { return strings.HasPrefix(l, prefix) }), "\n")
}

// TestStopLeavesOnlyForeign: stop takes away everything of ours and puts
// the sysctls back, and other software's rule, routes and chains stay.
func TestStopLeavesOnlyForeign(t *testing.T) {
	k := newKernel(t)
	k.addForeign(t)
	before := k.state(t)
	k.applyScenario(t, scenario(t, "rule-files"))
	if err := k.applier.Stop(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(before, k.state(t)); d != "" {
		t.Errorf("after stop (-before apply +after stop):\n%s", d)
	}
	if got := k.readSysctl(t, "net/ipv4/ip_forward"); got != "0" {
		t.Errorf("ip_forward is %q after stop, want 0 as before", got)
	}
}

// TestApplyReplacesNearMisses: rules in our priority range that differ
// from the plan's in a single field (left by an older version, or typed
// in by hand) are replaced, not taken for the plan's.
func TestApplyReplacesNearMisses(t *testing.T) {
	sc := scenario(t, "two-isps-balanced")
	mask := func(m uint32) *uint32 { return &m }
	misses := []struct {
		name string
		set  func(r *netlink.Rule)
	}{
		{"another mask", func(r *netlink.Rule) {
			r.Priority, r.Table, r.Mark, r.Mask = 9101, 4201, kn.ISPMark(1), mask(0xff000000)
		}},
		{"another table", func(r *netlink.Rule) {
			r.Priority, r.Table, r.Mark, r.Mask = 9102, 4209, kn.ISPMark(2), mask(kn.MarkMask)
		}},
		{"another source", func(r *netlink.Rule) {
			r.Priority, r.Table, r.Src = 9201, 4201, &net.IPNet{IP: net.IP{100, 64, 1, 9}, Mask: net.CIDRMask(32, 32)}
		}},
		{"another device", func(r *netlink.Rule) { r.Priority, r.Table, r.OifName = 9302, 4202, "wan9" }},
		{"no suppress_prefixlength", func(r *netlink.Rule) { r.Priority, r.Table = 9000, unix.RT_TABLE_MAIN }},
		// The kernel takes a new rule without a source for the same as one
		// with: adding the plan's is EEXIST until this one is gone.
		{"a source the plan's lacks", func(r *netlink.Rule) {
			r.Priority, r.Table, r.Src = 9900, 4200, &net.IPNet{IP: net.IP{10, 0, 0, 0}, Mask: net.CIDRMask(8, 32)}
		}},
	}
	want := freshState(t, sc)
	for _, m := range misses {
		k := newKernel(t)
		k.setFacts(sc)
		k.addForeign(t)
		r := netlink.NewRule()
		m.set(r)
		if err := k.routing.RuleAdd(r); err != nil {
			t.Fatal(err)
		}
		k.applyScenario(t, sc)
		if d := cmp.Diff(want, k.state(t)); d != "" {
			t.Errorf("with a rule of %s in place, the state differs from a fresh apply (-fresh +got):\n%s", m.name, d)
		}
	}
}

// TestScenarioWalk: the golden scenarios applied one after another in
// random orders, each with its own device facts, end in exactly the state
// a fresh apply of the last one gives.
func TestScenarioWalk(t *testing.T) {
	fresh := map[string]string{}
	for seed := uint64(1); seed <= 8; seed++ {
		rng := rand.New(rand.NewPCG(seed, 0))
		walk := append(slices.Clone(plantest.Scenarios), plantest.Scenarios...)
		rng.Shuffle(len(walk), func(i, j int) { walk[i], walk[j] = walk[j], walk[i] })
		k := newKernel(t)
		k.addForeign(t)
		var names []string
		for _, sc := range walk {
			names = append(names, sc.Name)
			k.applyScenario(t, sc)
		}
		last := walk[len(walk)-1]
		if fresh[last.Name] == "" {
			fresh[last.Name] = freshState(t, last)
		}
		if d := cmp.Diff(fresh[last.Name], k.state(t)); d != "" {
			t.Errorf("seed %d, walk %s:\nstate differs from a fresh apply of %s (-fresh +walked):\n%s", seed, strings.Join(names, " "), last.Name, d)
		}
	}
}

// TestRuleFilesRemoved: once the rule files are gone, so are their chains
// and the jumps to them from built-in chains, in a table the plan still
// has (nat) and in one it no longer has at all (raw).
func TestRuleFilesRemoved(t *testing.T) {
	plain := scenario(t, "two-isps-balanced")
	withRules := plain
	withRules.Rules = "iptables -t raw -A PREROUTING -s 10.0.0.0/8 -j ACCEPT\nforward 8080 192.168.1.10:80\n"
	k := newKernel(t)
	k.addForeign(t)
	k.applyScenario(t, withRules)
	saved, _ := k.nf.Save(context.Background())
	for _, want := range []string{"*raw\n", "-A PREROUTING -j ISPB-U-PREROUTING\n", "-j DNAT --to-destination 192.168.1.10:80"} {
		if !strings.Contains(string(saved), want) {
			t.Fatalf("the rule files' firewall lacks %q:\n%s", want, saved)
		}
	}
	k.applyScenario(t, plain)
	if d := cmp.Diff(freshState(t, plain), k.state(t)); d != "" {
		t.Errorf("after the rule files went (-fresh +got):\n%s", d)
	}
}

// applyFailsAndRollsBack applies p, which a failure set up by the test
// must refuse, and checks that state then reads as before.
func applyFailsAndRollsBack(t *testing.T, k *kernel, p plan.Plan, before string, state func(*testing.T) string) {
	t.Helper()
	_, err := k.applier.Apply(context.Background(), p)
	if err == nil {
		t.Fatal("apply succeeded")
	}
	k.routing.Fail = nil
	if d := cmp.Diff(before, state(t)); d != "" {
		t.Errorf("after the failure (%v), the state is not as before (-before +after):\n%s", err, d)
	}
}

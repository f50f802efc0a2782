package apply_test

// The firewall record lets a rebuild skip reading the firewall while the
// nf_tables generation says nothing changed. These tests check that it is
// never trusted when something did change: outside writes before or
// during a rebuild, lost commit notices, a record from elsewhere, and a
// firewall without a generation (iptables-legacy).

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ispbalance/ispbalance/internal/apply"
	"github.com/ispbalance/ispbalance/internal/kernelfake"
	"github.com/ispbalance/ispbalance/internal/plan"
)

// recording is a fake kernel whose firewalls share a ruleset generation,
// with a fresh applier per rebuild, as each ifup-balance run has.
type recording struct {
	*kernel
	rs     *kernelfake.Ruleset
	record string
	// via and via6 are what the appliers write through; tests may wrap
	// the fake's firewalls to interfere.
	via, via6 apply.Netfilter
}

func newRecording(t *testing.T) *recording {
	t.Helper()
	k := newKernel(t)
	r := &recording{kernel: k, rs: kernelfake.NewRuleset("fake netns 1"),
		record: filepath.Join(t.TempDir(), "firewall.record"), via: k.nf, via6: k.nf6}
	r.rs.Attach(k.nf, k.nf6)
	return r
}

func (r *recording) applier(t *testing.T) *apply.Applier {
	t.Helper()
	a, err := apply.New(apply.Options{StateDir: r.stateDir, Routing: keepOpen{r.routing}, Netfilter: r.via, Netfilter6: r.via6,
		SysctlRoot: r.sysctl, RecordPath: r.record, Ruleset: r.rs})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// keepOpen lets one fake kernel serve appliers one after the other: each
// closes its Routing when done.
type keepOpen struct{ apply.Routing }

func (keepOpen) Close() {}

// rebuild applies p with a new applier and returns how many times each
// family's firewall was read.
func (r *recording) rebuild(t *testing.T, p plan.Plan) (saves, saves6 int) {
	t.Helper()
	a := r.applier(t)
	defer a.Close()
	s, s6 := r.nf.Saves(), r.nf6.Saves()
	if _, err := a.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	return r.nf.Saves() - s, r.nf6.Saves() - s6
}

// drift runs the monitor's check with a new applier.
func (r *recording) drift(t *testing.T, p plan.Plan) []string {
	t.Helper()
	return r.driftWith(t, p, r.applier(t))
}

// driftUnrecorded runs the check with an applier that knows of no
// record, so the check leaves the record alone.
func (r *recording) driftUnrecorded(t *testing.T, p plan.Plan) []string {
	t.Helper()
	a, err := apply.New(apply.Options{StateDir: r.stateDir, Routing: keepOpen{r.routing}, Netfilter: r.nf, Netfilter6: r.nf6,
		SysctlRoot: r.sysctl})
	if err != nil {
		t.Fatal(err)
	}
	return r.driftWith(t, p, a)
}

func (r *recording) driftWith(t *testing.T, p plan.Plan, a *apply.Applier) []string {
	t.Helper()
	defer a.Close()
	missing, err := a.Drift(context.Background(), p, true)
	if err != nil {
		t.Fatal(err)
	}
	return missing
}

func (r *recording) haveRecord() bool {
	_, err := os.Stat(r.record)
	return err == nil
}

// TestRecordSkipsReads: once a rebuild knows the firewall, the next ones
// read it no more, write nothing, and a rebuild that moves an ISP writes
// without reading, while the kernel ends exactly as without a record.
func TestRecordSkipsReads(t *testing.T) {
	for _, names := range [][2]string{{"two-isps-balanced", "one-isp-down"}, {"rule-files", "two-isps-failover"}} {
		t.Run(names[0], func(t *testing.T) {
			a, b := scenario(t, names[0]), scenario(t, names[1])
			r := newRecording(t)
			r.addForeign(t)
			r.setFacts(a)
			pa, pb := build(t, a), build(t, b)
			if s, s6 := r.rebuild(t, pa); s == 0 || s6 == 0 {
				t.Fatalf("the first rebuild read the firewall %d+%d times; it has nothing to go by", s, s6)
			}
			// The first rebuild of rule files learns their spelling only
			// at the next read; after that nothing is read.
			r.rebuild(t, pa)
			restores := len(r.nf.Restores())
			for range 3 {
				if s, s6 := r.rebuild(t, pa); s+s6 != 0 {
					t.Fatalf("a rebuild with nothing new read the firewall %d+%d times", s, s6)
				}
			}
			if n := len(r.nf.Restores()) - restores; n != 0 {
				t.Errorf("rebuilds with nothing new restored %d times", n)
			}
			// Moving: written without reading, and recorded again.
			r.setFacts(b)
			if s, s6 := r.rebuild(t, pb); s+s6 != 0 {
				t.Errorf("a rebuild after the applier's own write read the firewall %d+%d times", s, s6)
			}
			if !r.haveRecord() {
				t.Fatal("no record after a write only the applier made")
			}
			if missing := r.drift(t, pb); len(missing) > 0 || !r.haveRecord() {
				t.Errorf("after the moving rebuild: drift %q, record kept %v; want none and kept", missing, r.haveRecord())
			}
			if got, want := r.state(t), freshState(t, b); got != want {
				t.Errorf("state after the recorded rebuilds differs from a fresh apply:\n%s", diffLines(want, got))
			}
			r.setFacts(a)
			r.rebuild(t, pa)
			if got, want := r.state(t), freshState(t, a); got != want {
				t.Errorf("state after moving back differs from a fresh apply:\n%s", diffLines(want, got))
			}
		})
	}
}

// TestOutsideChangeIsRead: another program's change (a flushed chain, a
// deleted jump, in either family) makes the next rebuild read the
// firewall and repair it.
func TestOutsideChangeIsRead(t *testing.T) {
	sc := scenario(t, "two-isps-balanced")
	for _, c := range []struct {
		name   string
		family string
		input  string
	}{
		{"iptables -F ISPB-INPUT", "ipv4", "*filter\n-F ISPB-INPUT\nCOMMIT\n"},
		{"deleted jump", "ipv4", "*filter\n-D INPUT -j ISPB-INPUT\nCOMMIT\n"},
		{"ip6tables -F ISPB-INPUT", "ipv6", "*filter\n-F ISPB-INPUT\nCOMMIT\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRecording(t)
			r.addForeign(t)
			r.setFacts(sc)
			p := build(t, sc)
			r.rebuild(t, p)
			r.rebuild(t, p)
			nf := r.nf
			if c.family == "ipv6" {
				nf = r.nf6
			}
			if err := nf.Restore(context.Background(), c.input, true); err != nil {
				t.Fatal(err)
			}
			if missing := r.driftUnrecorded(t, p); len(missing) == 0 {
				t.Fatal("the outside change left no drift; the test changes nothing")
			}
			if s, s6 := r.rebuild(t, p); s == 0 || s6 == 0 {
				t.Errorf("after an outside change the rebuild read the firewall %d+%d times; want both read", s, s6)
			}
			if missing := r.drift(t, p); len(missing) > 0 {
				t.Errorf("not repaired: %q", missing)
			}
			if got, want := r.state(t), freshState(t, sc); got != want {
				t.Errorf("state differs from a fresh apply:\n%s", diffLines(want, got))
			}
		})
	}
}

// meddler is a firewall another program writes to just before each
// restore of the applier's, inside the applier's rebuild.
type meddler struct {
	*kernelfake.Netfilter
	before func()
}

func (m meddler) RestoreByWriter(ctx context.Context, input string, noflush bool) (int, error) {
	m.before()
	return m.Netfilter.RestoreByWriter(ctx, input, noflush)
}

// TestWriteDuringRebuildLeavesNoRecord: a commit of another program
// between the applier's read and its own commits, or lost commit
// notices, leave no record, so the next rebuild reads the firewall and
// puts back what the other program removed.
func TestWriteDuringRebuildLeavesNoRecord(t *testing.T) {
	a, b := scenario(t, "two-isps-balanced"), scenario(t, "one-isp-down")
	for _, c := range []struct {
		name   string
		meddle func(r *recording)
	}{
		{"deleted jump", func(r *recording) {
			// Its own commit: a table of its own, and the jump gone.
			r.nf.Restore(context.Background(), "*filter\n-D FORWARD -j ISPB-FORWARD\nCOMMIT\n", true)
		}},
		{"flushed IPv6 chain", func(r *recording) {
			r.nf6.Restore(context.Background(), "*filter\n-F ISPB-INPUT\nCOMMIT\n", true)
		}},
		{"lost notices", func(r *recording) { r.rs.LoseNotices() }},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRecording(t)
			r.setFacts(a)
			pa, pb := build(t, a), build(t, b)
			r.rebuild(t, pa)
			r.rebuild(t, pa)
			if !r.haveRecord() {
				t.Fatal("no record after two rebuilds")
			}
			once := false
			r.via = meddler{r.nf, func() {
				if !once {
					once = true
					c.meddle(r)
				}
			}}
			r.setFacts(b)
			r.rebuild(t, pb)
			if !once {
				t.Fatal("the moving rebuild did not restore; nothing was meddled with")
			}
			if r.haveRecord() {
				t.Error("a record was kept after a rebuild another program interfered with")
			}
			if s, _ := r.rebuild(t, pb); s == 0 {
				t.Error("the rebuild after the interference did not read the firewall")
			}
			if c.name != "lost notices" {
				if missing := r.drift(t, pb); len(missing) > 0 {
					t.Errorf("not repaired: %q", missing)
				}
			}
		})
	}
}

// TestNoRulesetReadsEveryTime: without a generation (iptables-legacy, or
// no record path) every rebuild reads the firewall, as before records.
func TestNoRulesetReadsEveryTime(t *testing.T) {
	sc := scenario(t, "two-isps-balanced")
	k := newKernel(t)
	k.setFacts(sc)
	p := build(t, sc)
	for i := range 3 {
		a, err := apply.New(apply.Options{StateDir: k.stateDir, Routing: keepOpen{k.routing}, Netfilter: k.nf, Netfilter6: k.nf6,
			SysctlRoot: k.sysctl, RecordPath: filepath.Join(k.stateDir, "firewall.record")})
		if err != nil {
			t.Fatal(err)
		}
		s := k.nf.Saves()
		if _, err := a.Apply(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		a.Close()
		if k.nf.Saves() == s {
			t.Errorf("rebuild %d did not read a firewall that has no generation", i+1)
		}
	}
	if _, err := os.Stat(filepath.Join(k.stateDir, "firewall.record")); err == nil {
		t.Error("a record was written without a generation to tie it to")
	}
}

// TestRecordOfAnotherRulesetIgnored: a record naming another namespace
// (or boot) at the same generation is not trusted.
func TestRecordOfAnotherRulesetIgnored(t *testing.T) {
	sc := scenario(t, "two-isps-balanced")
	r := newRecording(t)
	r.setFacts(sc)
	p := build(t, sc)
	r.rebuild(t, p)
	r.rebuild(t, p)
	data, err := os.ReadFile(r.record)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.record, []byte(strings.Replace(string(data), "fake netns 1", "fake netns 2", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if s, _ := r.rebuild(t, p); s == 0 {
		t.Error("a record of another ruleset was trusted")
	}
}

// TestDriftForgetsWrongRecord: the drift check always reads the firewall
// and removes a record that disagrees with it; the rebuild after it then
// repairs what the record hid.
func TestDriftForgetsWrongRecord(t *testing.T) {
	sc := scenario(t, "two-isps-balanced")
	r := newRecording(t)
	r.setFacts(sc)
	p := build(t, sc)
	r.rebuild(t, p)
	r.rebuild(t, p)
	// Flush a chain, then make the record claim the generation after the
	// flush: a record that is wrong, as no correct run writes one.
	data, err := os.ReadFile(r.record)
	if err != nil {
		t.Fatal(err)
	}
	gen, _ := r.rs.Generation()
	if err := r.nf.Restore(context.Background(), "*filter\n-F ISPB-INPUT\nCOMMIT\n", true); err != nil {
		t.Fatal(err)
	}
	now, _ := r.rs.Generation()
	wrong := strings.Replace(string(data), `"generation":`+strconv.Itoa(int(gen)), `"generation":`+strconv.Itoa(int(now)), 1)
	if wrong == string(data) {
		t.Fatalf("record has no generation %d: %s", gen, data)
	}
	if err := os.WriteFile(r.record, []byte(wrong), 0o644); err != nil {
		t.Fatal(err)
	}
	if s, _ := r.rebuild(t, p); s != 0 {
		t.Fatal("the planted record was not trusted; the test shows nothing")
	}
	if missing := r.drift(t, p); len(missing) == 0 {
		t.Fatal("drift did not see the flushed chain")
	}
	if r.haveRecord() {
		t.Error("the drift check kept a record that disagrees with the firewall")
	}
	r.rebuild(t, p)
	if missing := r.drift(t, p); len(missing) > 0 {
		t.Errorf("not repaired after the record was forgotten: %q", missing)
	}
}

// diffLines lists the lines only one of two texts has.
func diffLines(want, got string) string {
	in := func(text string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(text, "\n") {
			m[l] = true
		}
		return m
	}
	w, g := in(want), in(got)
	var b strings.Builder
	for _, l := range strings.Split(want, "\n") {
		if !g[l] {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if !w[l] {
			b.WriteString("+ " + l + "\n")
		}
	}
	return b.String()
}

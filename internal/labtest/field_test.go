package labtest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ispbalance/ispbalance/internal/lab"
)

// lanWatch starts a connection from LAN 1 to the server every 100 ms
// until stopped, each on its own (one that hangs on a dying uplink does
// not hold up the next), and remembers which succeeded, so a test can
// tell the longest time the LAN had no Internet.
type lanWatch struct {
	stop    chan struct{}
	done    chan struct{}
	running sync.WaitGroup
	mu      sync.Mutex
	// checks are the start times and outcomes, in the order they ended.
	checks  []lanCheck
	started time.Time
	ended   time.Time
}

type lanCheck struct {
	at  time.Time
	isp int
	err error
}

const lanWatchEvery = 100 * time.Millisecond

func (r *router) watchLAN() *lanWatch {
	w := &lanWatch{stop: make(chan struct{}), done: make(chan struct{}), started: time.Now()}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(lanWatchEvery)
		defer tick.Stop()
		for {
			at := time.Now()
			w.running.Go(func() {
				k, err := r.lab.WhichISP(1, serverPort, 2*time.Second)
				w.mu.Lock()
				w.checks = append(w.checks, lanCheck{at, k, err})
				w.mu.Unlock()
			})
			select {
			case <-w.stop:
				// The end is when the test stopped watching; checks still
				// in flight finish, but their wait is not the LAN's.
				w.mu.Lock()
				w.ended = time.Now()
				w.mu.Unlock()
				w.running.Wait()
				return
			case <-tick.C:
			}
		}
	}()
	r.t.Cleanup(w.end)
	return w
}

func (w *lanWatch) end() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// result stops the watch and returns the longest time between the starts
// of two successful checks less the check period (the longest a client
// starting a connection could have found the LAN offline), how many
// checks failed and how many ran. The watch's start and end count as
// moments the LAN was online, so failures at either end count in full.
func (w *lanWatch) result() (outage time.Duration, failed, total int, firstErr error) {
	w.end()
	w.mu.Lock()
	defer w.mu.Unlock()
	checks := append([]lanCheck(nil), w.checks...)
	sort.Slice(checks, func(i, j int) bool { return checks[i].at.Before(checks[j].at) })
	last := w.started
	gap := func(t time.Time) {
		if g := t.Sub(last) - lanWatchEvery; g > outage {
			outage = g
		}
		last = t
	}
	for _, c := range checks {
		if c.err != nil {
			failed++
			if firstErr == nil {
				firstErr = c.err
			}
			continue
		}
		gap(c.at)
	}
	if len(checks) > 0 && checks[len(checks)-1].err != nil {
		gap(w.ended)
	}
	return outage, failed, len(checks), firstErr
}

// probeInterval is the monitor's default probe interval; with a live ISP
// left, the LAN may not be without Internet for longer.
const probeInterval = time.Second

// outageSlack absorbs scheduling delays of a loaded two-core machine
// running several labs at once; the figure itself is logged.
const outageSlack = 400 * time.Millisecond

// TestAdminDownISP: `ip link set wanN down` (what ifdown and `nmcli device
// disconnect` do) removes every route through the device. A rebuild then
// plans without that ISP instead of failing, the others carry the LAN,
// and the ISP returns when its device comes back; in balanced and
// failover mode, with the monitor running and without.
func TestAdminDownISP(t *testing.T) {
	for _, mode := range []string{"balanced", "failover"} {
		for _, withMonitor := range []bool{false, true} {
			name := fmt.Sprintf("%s/monitor=%v", mode, withMonitor)
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				prefix := "adm" + mode[:2]
				if withMonitor {
					prefix += "m"
				}
				conf := "mode=" + mode + "\n" + monitorConf(1, 2)
				r := newRouter(t, lab.Options{Prefix: prefix}, conf)
				r.startServer()
				if withMonitor {
					r.startMonitor()
					r.waitMonitor("ISP1", "up", 10*time.Second)
					r.waitMonitor("ISP2", "up", 10*time.Second)
				} else {
					r.mustRun()
				}
				for k := 1; k <= 2; k++ {
					other := 3 - k
					w := r.watchLAN()
					undo, err := r.lab.AdminDown(k)
					if err != nil {
						t.Fatal(err)
					}
					if !withMonitor {
						// What the ifdown hook does: a rebuild, which must
						// now succeed.
						r.mustRun()
					}
					// Held down while the LAN is checked: fifteen connections in a
					// row through the other ISP.
					r.allVia(other, 15, time.Now(), 5*time.Second)
					if err := undo(); err != nil {
						t.Fatal(err)
					}
					// ifupdown runs its hooks once the link is up; the
					// operational state follows carrier by up to a second.
					r.waitLinkUp("wan" + fmt.Sprint(k))
					if !withMonitor {
						r.mustRun() // the ifup hook
					}
					// Back: the ISP's table routes again, and the balance
					// table uses it (the heavier ISP2 alone in failover mode).
					want := []string{"wan1", "wan2"}
					if mode == "failover" {
						want = []string{"wan2"}
					}
					r.waitRouting(k, want, 20*time.Second)
					outage, failed, total, firstErr := w.result()
					t.Logf("wan%d admin down and up: longest LAN outage %v (%d of %d checks failed)", k, outage.Round(time.Millisecond), failed, total)
					if outage > probeInterval+outageSlack {
						t.Errorf("wan%d down: the LAN was offline for %v with ISP%d alive (first error: %v)", k, outage, other, firstErr)
					}
				}
			})
		}
	}
}

// waitLinkUp waits until dev in the router is operationally up.
func (r *router) waitLinkUp(dev string) {
	r.t.Helper()
	for start := time.Now(); time.Since(start) < 5*time.Second; time.Sleep(20 * time.Millisecond) {
		if strings.Contains(r.sh("router", "ip", "link", "show", "dev", dev), "state UP") {
			return
		}
	}
	r.t.Fatalf("%s did not come up within 5 s", dev)
}

// waitRouting waits until ISP k's table has its default route and the
// balance table's default uses exactly the devices in balance.
func (r *router) waitRouting(k int, balance []string, limit time.Duration) {
	r.t.Helper()
	var table, main string
	for start := time.Now(); time.Since(start) < limit; time.Sleep(50 * time.Millisecond) {
		table = r.sh("router", "ip", "route", "show", "table", fmt.Sprint(4200+k))
		main = r.sh("router", "ip", "route", "show", "table", "4200")
		ok := strings.Contains(table, "default via")
		for _, dev := range []string{"wan1", "wan2"} {
			if strings.Contains(main, "dev "+dev) != slices.Contains(balance, dev) {
				ok = false
			}
		}
		if ok {
			return
		}
	}
	r.t.Fatalf("wan%d is back, but the routing did not follow within %v:\ntable %d:\n%s\nbalance table:\n%s", k, limit, 4200+k, table, main)
}

// TestAddressVanishesDuringRebuild: the address of an ISP is taken away
// while a rebuild runs, 50 times, ifdown-style (address flushed and link
// down) and NetworkManager-style (address deleted only). Every rebuild
// succeeds by planning without that ISP, nothing is left half-applied,
// and the ISP comes back with its address.
func TestAddressVanishesDuringRebuild(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "race"}, ispConf(1, 1))
	r.startServer()
	r.mustRun()
	addr := r.lab.RouterISPAddr(2).String() + "/24"
	for i := 0; i < 50; i++ {
		ifdownStyle := i%2 == 0
		var wg sync.WaitGroup
		var rebuildOut string
		var rebuildErr error
		wg.Go(func() { rebuildOut, rebuildErr = r.run() })
		// Land the removal anywhere in the rebuild's 10-30 ms.
		time.Sleep(time.Duration(rand.IntN(25)) * time.Millisecond)
		if ifdownStyle {
			r.sh("router", "ip", "addr", "flush", "dev", "wan2")
			r.sh("router", "ip", "link", "set", "wan2", "down")
		} else {
			r.sh("router", "ip", "addr", "del", addr, "dev", "wan2")
		}
		wg.Wait()
		if rebuildErr != nil {
			t.Fatalf("round %d (ifdown-style %v): a rebuild racing with the address removal failed: %v\n%s", i, ifdownStyle, rebuildErr, rebuildOut)
		}
		// The next rebuild sees wan2 without its address and plans
		// without it; the LAN goes out through ISP1.
		r.mustRun()
		if out := r.sh("router", "ip", "route", "show", "table", "4202"); strings.TrimSpace(out) != "" {
			t.Fatalf("round %d: wan2 has no address, but its table still routes:\n%s", i, out)
		}
		if ifdownStyle {
			r.sh("router", "ip", "link", "set", "wan2", "up")
		}
		r.sh("router", "ip", "addr", "add", addr, "dev", "wan2")
		r.mustRun()
		if out := r.sh("router", "ip", "route", "show", "table", "4202"); !strings.Contains(out, "default via") {
			t.Fatalf("round %d: wan2 has its address back, but its table has no default:\n%s", i, out)
		}
	}
	if c := r.shares(1, 40); c[1] == 0 || c[2] == 0 {
		t.Errorf("after the races, connections per ISP %v, want both ISPs used", c)
	}
}

// TestLastResortSilentProbeTarget: both ISPs probe the same internet host,
// which stops answering echo requests for 10 s while TCP to it still
// flows. The monitor judges both ISPs down, but the LAN never loses a new
// connection: the router routes through every ISP with carrier as a last
// resort and says so in -s; balancing by verdicts resumes when the probes
// are answered again.
func TestLastResortSilentProbeTarget(t *testing.T) {
	t.Parallel()
	r := newRouter(t, lab.Options{Prefix: "lastr"}, monitorConf(1, 1))
	r.startServer()
	r.startMonitor()
	r.waitMonitor("ISP1", "up", 10*time.Second)
	r.waitMonitor("ISP2", "up", 10*time.Second)
	w := r.watchLAN()
	undo, err := r.lab.DropEcho()
	if err != nil {
		t.Fatal(err)
	}
	fault := time.Now()
	r.waitState("ISP1", "down", 10*time.Second)
	r.waitState("ISP2", "down", 10*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := r.mustRun("-s")
		if strings.Contains(st, "LAST RESORT") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("every ISP judged down, but -s shows no last resort:\n%s", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if c := r.shares(1, 40); c[1] == 0 || c[2] == 0 {
		t.Errorf("last resort: connections per ISP %v, want both ISPs with carrier used", c)
	}
	time.Sleep(10*time.Second - time.Since(fault))
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	r.waitState("ISP1", "up", 20*time.Second)
	r.waitState("ISP2", "up", 20*time.Second)
	outage, failed, total, firstErr := w.result()
	t.Logf("silent probe target: %d of %d LAN checks failed, longest outage %v", failed, total, outage.Round(time.Millisecond))
	if failed > 0 {
		t.Errorf("%d of %d new LAN connections failed while the probe target was silent (first: %v)", failed, total, firstErr)
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		st := r.mustRun("-s")
		if !strings.Contains(st, "LAST RESORT") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("probes answer again, but -s still shows the last resort:\n%s", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestStatusShowsDrift: with no monitor running, a gateway that moved
// without a hook telling ispbalance shows in -s as installed state that
// differs from what was discovered; a rebuild brings them together.
func TestStatusShowsDrift(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "drift"}, ispConf(1, 1))
	r.mustRun()
	if st := r.mustRun("-s"); strings.Contains(st, "Installed differs") {
		t.Fatalf("right after a rebuild, status reports a difference:\n%s", st)
	}
	// The ISP's router moved to .5 (a renewal with no hook): discovery
	// now finds it in main.
	r.sh("isp1", "ip", "addr", "add", "100.64.1.5/24", "dev", "down0")
	r.sh("router", "ip", "route", "add", "default", "via", "100.64.1.5", "dev", "wan1", "metric", "500")
	st := r.mustRun("-s")
	if !strings.Contains(st, "Installed differs") || !strings.Contains(st, "default via 100.64.1.5 dev wan1 table 4201") {
		t.Fatalf("status does not show that ISP1's table still routes via the old gateway:\n%s", st)
	}
	r.mustRun()
	if st := r.mustRun("-s"); strings.Contains(st, "Installed differs") {
		t.Errorf("after a rebuild, status still reports a difference:\n%s", st)
	}
	if out := r.ispTable(1); !strings.Contains(out, "default via 100.64.1.5") {
		t.Errorf("the rebuild did not follow the new gateway:\n%s", out)
	}
}

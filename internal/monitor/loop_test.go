package monitor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ispbalance/ispbalance/internal/lsm"
	"github.com/ispbalance/ispbalance/internal/probe"
	"github.com/ispbalance/ispbalance/internal/state"
)

// The monitor's event loop, driven through its seams: a fake prober whose
// ISPs answer or not at the test's word, a fake conntrack flush and a
// fake rebuild that record what happened in order. No root, no kernel.

// quickSettings decide within a few tens of milliseconds.
func quickSettings() lsm.Settings {
	return lsm.Settings{
		Status: lsm.Unknown, Interval: 10 * time.Millisecond, Timeout: 30 * time.Millisecond,
		MaxPacketLoss: 5, MaxSuccessivePktsLost: 3, MinPacketLoss: 1, MinSuccessivePktsRcvd: 3, Window: 10,
	}
}

// fakeNet answers probes for the sources the test says are alive.
type fakeNet struct {
	mu      sync.Mutex
	alive   map[netip.Addr]bool
	counted map[string]uint64
	// delay is each source's round-trip time; none answers at once.
	delay map[netip.Addr]time.Duration
}

func (n *fakeNet) setDelay(src netip.Addr, d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.delay == nil {
		n.delay = map[netip.Addr]time.Duration{}
	}
	n.delay[src] = d
}

func (n *fakeNet) setAlive(src netip.Addr, alive bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.alive[src] = alive
}

// count is a fake kernel count: each reading, a live ISP has assigned
// three more connections and carried 1500 more bytes each way, a dead
// one nothing; ISP1's counters restart once, as after a rebuild that
// remade its chain.
func (n *fakeNet) count(_ context.Context, targets []Target) (Counts, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.counted == nil {
		n.counted = map[string]uint64{}
	}
	c := Counts{Assigned: map[string]uint64{}, Tracked: map[string]int{}, Devices: map[string]DeviceCounts{}}
	for _, t := range targets {
		if n.alive[t.Src] {
			n.counted[t.Service] += 3
		}
		v := n.counted[t.Service]
		c.Assigned[t.Service] = v
		c.Tracked[t.Service] = int(v / 3)
		c.Devices[t.Device] = DeviceCounts{RxBytes: 500 * v, TxBytes: 500 * v, RxPackets: v, TxPackets: v}
	}
	return c, nil
}

func (n *fakeNet) open(src netip.Addr, _ uint32) (ProbeConn, error) {
	return &fakeConn{net: n, src: src, replies: make(chan probe.Reply, 64), closed: make(chan struct{})}, nil
}

type fakeConn struct {
	net       *fakeNet
	src       netip.Addr
	replies   chan probe.Reply
	closeOnce sync.Once
	closed    chan struct{}
}

func (c *fakeConn) Send(dst netip.Addr, seq int) error {
	c.net.mu.Lock()
	alive, delay := c.net.alive[c.src], c.net.delay[c.src]
	c.net.mu.Unlock()
	if alive {
		// The reply really takes delay to come back: with delay above
		// the probe interval, it arrives after the next probe went out.
		answer := func() {
			select {
			case c.replies <- probe.Reply{From: dst, Seq: seq, At: time.Now()}:
			default:
			}
		}
		if delay > 0 {
			time.AfterFunc(delay, answer)
		} else {
			answer()
		}
	}
	return nil
}

func (c *fakeConn) Receive(time.Time) (probe.Reply, error) {
	select {
	case r := <-c.replies:
		return r, nil
	case <-c.closed:
		return probe.Reply{}, net.ErrClosed
	}
}

func (c *fakeConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}

// journal records the loop's actions in order.
type journal struct {
	mu      sync.Mutex
	entries []string
}

func (j *journal) add(format string, args ...any) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.entries = append(j.entries, fmt.Sprintf(format, args...))
}

func (j *journal) all() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.entries...)
}

// waitFor polls the journal until cond holds.
func (j *journal) waitFor(t *testing.T, what string, cond func([]string) bool) {
	t.Helper()
	for start := time.Now(); time.Since(start) < 5*time.Second; time.Sleep(5 * time.Millisecond) {
		if cond(j.all()) {
			return
		}
	}
	t.Fatalf("%s did not happen within 5 s; journal:\n%s", what, strings.Join(j.all(), "\n"))
}

func index(entries []string, prefix string) int {
	for i, e := range entries {
		if strings.HasPrefix(e, prefix) {
			return i
		}
	}
	return -1
}

var (
	src1  = netip.MustParseAddr("100.64.1.2")
	src2  = netip.MustParseAddr("100.64.2.2")
	mark1 = uint32(1 << 24)
	mark2 = uint32(2 << 24)
)

// loopRig runs a monitor of two ISPs whose rebuild plans like the core
// does: an ISP routes while its recorded verdict is not down and it is
// not degraded (unless the other is down or degraded too), and every ISP
// routes as a last resort when all are down.
type loopRig struct {
	net      *fakeNet
	journal  *journal
	ctl      Control
	stateDir string
	// rebuild, when set, replaces the default fake rebuild's body.
	rebuild func(reason string) (Facts, error)
	// options, when set, changes the monitor's options before it starts.
	options func(*Options)
	// adminDown1 makes ISP1's device administratively down in the facts.
	adminDown1 atomic.Bool
	cancel     context.CancelFunc
	done       chan error
}

func (r *loopRig) facts() Facts {
	up1 := mustState(r.stateDir, "ISP1") != state.Down
	up2 := mustState(r.stateDir, "ISP2") != state.Down
	degraded, _ := state.ReadDegraded(filepath.Join(r.stateDir, "degraded"))
	switch {
	case up1 && up2 && degraded["ISP1"] && !degraded["ISP2"]:
		up1 = false
	case up1 && up2 && degraded["ISP2"] && !degraded["ISP1"]:
		up2 = false
	}
	if !up1 && !up2 {
		up1, up2 = true, true // last resort
	}
	isp1 := Target{Service: "ISP1", Device: "wan1", Src: src1, Mark: mark1, Gateway: netip.MustParseAddr("100.64.1.1"), Present: true, Carrier: true, Routing: up1}
	if r.adminDown1.Load() {
		// As the core reports an ISP whose device is down: not planned.
		isp1 = Target{Service: "ISP1", AdminDown: true}
	}
	return Facts{Targets: []Target{
		isp1,
		{Service: "ISP2", Device: "wan2", Src: src2, Mark: mark2, Gateway: netip.MustParseAddr("100.64.2.1"), Present: true, Carrier: true, Routing: up2},
	}}
}

func mustState(dir, service string) state.Verdict {
	v, _ := state.Read(dir, service)
	return v
}

func startLoop(t *testing.T, setup func(*loopRig)) *loopRig {
	t.Helper()
	dir := t.TempDir()
	r := &loopRig{
		net:      &fakeNet{alive: map[netip.Addr]bool{src1: true, src2: true}},
		journal:  &journal{},
		ctl:      Control{Reload: make(chan func() (Options, error), 1), Dump: make(chan struct{}, 1), Rebuild: make(chan string, 16)},
		stateDir: dir,
		done:     make(chan error, 1),
	}
	if setup != nil {
		setup(r)
	}
	opts := Options{
		Default: quickSettings(), StateDir: dir, StatusPath: filepath.Join(dir, "monitor.json"),
		DegradedPath: filepath.Join(dir, "degraded"),
		ScriptDir:    filepath.Join(dir, "lsm"), FlushConntrack: true,
		Prober: r.net.open, Count: r.net.count, countEvery: 50 * time.Millisecond,
		FlushMark: func(mark uint32, _ bool) (uint, error) {
			r.journal.add("flush %#x", mark)
			return 1, nil
		},
		Watch: func(ctx context.Context, _, _, _ chan<- string) { <-ctx.Done() },
	}
	if r.options != nil {
		r.options(&opts)
	}
	rebuild := func(_ context.Context, reason string) (Facts, error) {
		if r.rebuild != nil {
			return r.rebuild(reason)
		}
		f := r.facts()
		r.journal.add("rebuild %s: routing ISP1=%v ISP2=%v", reason, f.Targets[0].Routing, f.Targets[1].Routing)
		return f, nil
	}
	m := New(opts, rebuild)
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- m.Run(ctx, r.ctl, nil) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("the monitor ended with %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("the monitor did not stop")
		}
	})
	return r
}

// TestLoopFlushesAfterTheRebuildThatDropsTheISP: a dead ISP's connections
// are flushed only once the rebuild that takes it out of balancing is
// done (flushed earlier, a new connection could land on it again), and a
// live ISP's never.
func TestLoopFlushesAfterTheRebuildThatDropsTheISP(t *testing.T) {
	r := startLoop(t, nil)
	r.journal.waitFor(t, "both ISPs up", func(e []string) bool { return index(e, "rebuild verdict on [ISP1 up ISP2 up]") >= 0 })
	r.net.setAlive(src1, false)
	r.journal.waitFor(t, "the flush of ISP1", func(e []string) bool { return index(e, "flush") >= 0 })
	e := r.journal.all()
	drop, flush := index(e, "rebuild verdict on [ISP1 down]"), index(e, fmt.Sprintf("flush %#x", mark1))
	if drop < 0 || flush < 0 || flush < drop {
		t.Fatalf("want ISP1's flush after the rebuild that drops it; journal:\n%s", strings.Join(e, "\n"))
	}
	if !strings.Contains(e[drop], "ISP1=false ISP2=true") {
		t.Fatalf("the rebuild after ISP1's down verdict still routes through it: %s", e[drop])
	}
	if index(e, fmt.Sprintf("flush %#x", mark2)) >= 0 {
		t.Fatalf("the live ISP's connections were flushed:\n%s", strings.Join(e, "\n"))
	}
}

// TestLoopKeepsLastResortConnections: when every ISP is judged down and
// the rebuild routes through them all as a last resort, their
// connections are not flushed.
func TestLoopKeepsLastResortConnections(t *testing.T) {
	r := startLoop(t, nil)
	r.journal.waitFor(t, "both ISPs up", func(e []string) bool { return index(e, "rebuild verdict on [ISP1 up ISP2 up]") >= 0 })
	r.net.setAlive(src1, false)
	r.journal.waitFor(t, "ISP1's flush", func(e []string) bool { return index(e, fmt.Sprintf("flush %#x", mark1)) >= 0 })
	r.net.setAlive(src2, false)
	r.journal.waitFor(t, "the last-resort rebuild", func(e []string) bool {
		return index(e, "rebuild verdict on [ISP2 down]: routing ISP1=true ISP2=true") >= 0
	})
	// The loop flushes right after a rebuild; one more round of probes
	// proves it did not.
	time.Sleep(100 * time.Millisecond)
	if e := r.journal.all(); index(e, fmt.Sprintf("flush %#x", mark2)) >= 0 {
		t.Fatalf("a last-resort ISP's connections were flushed:\n%s", strings.Join(e, "\n"))
	}
}

// TestLoopCoalescesRebuilds: requests arriving while a rebuild runs give
// exactly one more rebuild, with the newest reason.
func TestLoopCoalescesRebuilds(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var reasons []string
	r := startLoop(t, func(r *loopRig) {
		r.net.alive = map[netip.Addr]bool{} // no verdict changes
		r.rebuild = func(reason string) (Facts, error) {
			mu.Lock()
			reasons = append(reasons, reason)
			first := len(reasons) == 2
			mu.Unlock()
			if first {
				<-release
			}
			return Facts{}, nil
		}
	})
	r.ctl.Rebuild <- "hook 0"
	for start := time.Now(); ; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		n := len(reasons)
		mu.Unlock()
		if n == 2 {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("the first requested rebuild did not start")
		}
	}
	for i := 1; i <= 10; i++ {
		r.ctl.Rebuild <- fmt.Sprintf("hook %d", i)
	}
	// Wait until the loop has taken all ten requests off the channel.
	for start := time.Now(); len(r.ctl.Rebuild) > 0; time.Sleep(5 * time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			t.Fatal("the loop does not take requests while a rebuild runs")
		}
	}
	close(release)
	for start := time.Now(); ; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		got := append([]string(nil), reasons...)
		mu.Unlock()
		if len(got) >= 3 {
			time.Sleep(50 * time.Millisecond)
			mu.Lock()
			got = append([]string(nil), reasons...)
			mu.Unlock()
			want := []string{"monitor start", "hook 0", "hook 10"}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("rebuilds %q, want %q", got, want)
			}
			return
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("rebuilds %q: the coalesced one did not run", got)
		}
	}
}

// TestLoopRetriesFailedRebuilds: a failing rebuild, the first one
// included, never stops the monitor; it is retried until it succeeds.
func TestLoopRetriesFailedRebuilds(t *testing.T) {
	var mu sync.Mutex
	var calls []time.Time
	r := startLoop(t, func(r *loopRig) {
		r.rebuild = func(reason string) (Facts, error) {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, time.Now())
			if len(calls) <= 2 {
				return Facts{}, errors.New("replacing route: network is unreachable")
			}
			r.journal.add("rebuilt %s", reason)
			return r.facts(), nil
		}
	})
	r.journal.waitFor(t, "a successful retry", func(e []string) bool { return index(e, "rebuilt retrying a failed rebuild") >= 0 })
	select {
	case err := <-r.done:
		t.Fatalf("the monitor ended after failed rebuilds: %v", err)
	default:
	}
	mu.Lock()
	defer mu.Unlock()
	if gap1, gap2 := calls[1].Sub(calls[0]), calls[2].Sub(calls[1]); gap1 < retryFirst/2 || gap2 < gap1 {
		t.Errorf("retries after %v and %v: want the first after about %v, then backing off", gap1, gap2, retryFirst)
	}
}

// TestLoopReloadRebuilds: a reload adopts the new options and rebuilds;
// a reload that fails keeps the running options and rebuilds anyway.
func TestLoopReloadRebuilds(t *testing.T) {
	r := startLoop(t, nil)
	r.journal.waitFor(t, "the start", func(e []string) bool { return index(e, "rebuild monitor start") >= 0 })
	r.ctl.Reload <- func() (Options, error) {
		o := Options{Default: quickSettings()}
		return o, nil
	}
	r.journal.waitFor(t, "the reload's rebuild", func(e []string) bool { return index(e, "rebuild configuration reloaded") >= 0 })
	// The seams survive a reload: probing goes on through the fake.
	r.net.setAlive(src2, false)
	r.journal.waitFor(t, "a verdict after the reload", func(e []string) bool { return index(e, "rebuild verdict on [ISP2 down]") >= 0 })
}

// TestLoopTrustsANewGateway: an ISP judged down while its gateway was
// dead comes back as soon as the new gateway a renewal gave it answers,
// not through the ordinary up rule, which would first wait for the old
// losses to leave the window; a new gateway that does not answer is not
// trusted.
func TestLoopTrustsANewGateway(t *testing.T) {
	var mu sync.Mutex
	gw1 := netip.MustParseAddr("100.64.1.1")
	r := startLoop(t, func(r *loopRig) {
		r.rebuild = func(reason string) (Facts, error) {
			f := r.facts()
			mu.Lock()
			f.Targets[0].Gateway = gw1
			mu.Unlock()
			r.journal.add("rebuild %s: routing ISP1=%v gateway %s", reason, f.Targets[0].Routing, f.Targets[0].Gateway)
			return f, nil
		}
	})
	r.journal.waitFor(t, "ISP1 up", func(e []string) bool { return index(e, "rebuild verdict on [ISP1 up") >= 0 })
	r.net.setAlive(src1, false)
	r.journal.waitFor(t, "ISP1 down", func(e []string) bool { return index(e, "rebuild verdict on [ISP1 down]") >= 0 })

	// A new gateway that is dead too: no trust.
	mu.Lock()
	gw1 = netip.MustParseAddr("100.64.1.253")
	mu.Unlock()
	r.ctl.Rebuild <- "renewal to a dead gateway"
	r.journal.waitFor(t, "the renewal's rebuild", func(e []string) bool { return index(e, "rebuild renewal to a dead gateway") >= 0 })
	time.Sleep(100 * time.Millisecond) // ten rounds of probes
	if e := r.journal.all(); index(e, "rebuild verdict on [ISP1 up]") >= 0 {
		t.Fatalf("a new gateway that never answered was trusted:\n%s", strings.Join(e, "\n"))
	}

	// The ISP's new router answers: the next renewal brings it back.
	mu.Lock()
	gw1 = netip.MustParseAddr("100.64.1.254")
	mu.Unlock()
	r.net.setAlive(src1, true)
	r.ctl.Rebuild <- "renewal"
	r.journal.waitFor(t, "ISP1 back", func(e []string) bool { return index(e, "rebuild verdict on [ISP1 up]") >= 0 })
	e := r.journal.all()
	up := index(e, "rebuild verdict on [ISP1 up]")
	if !strings.Contains(e[up], "its new gateway answered") || !strings.Contains(e[up], "routing ISP1=true gateway 100.64.1.254") {
		t.Fatalf("ISP1 came back otherwise than by trusting its new gateway:\n%s", strings.Join(e, "\n"))
	}
}

package labtest

import (
	"bufio"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ispbalance/ispbalance/internal/lab"
)

// stickySources are the LAN addresses the sticky tests speak from.
const stickySources = 50

// addSources gives the LAN host n more addresses, first, first+1, ...
func (r *router) addSources(first netip.Addr, n int, bits int) []netip.Addr {
	r.t.Helper()
	var batch strings.Builder
	var out []netip.Addr
	a := first
	for range n {
		extra := ""
		if a.Is6() {
			extra = " nodad"
		}
		fmt.Fprintf(&batch, "addr add %s/%d dev eth0%s\n", a, bits, extra)
		out = append(out, a)
		a = a.Next()
	}
	if out, err := r.lab.ExecInput("lan1", batch.String(), "ip", "-batch", "-"); err != nil {
		r.t.Fatalf("adding LAN addresses: %v\n%s", err, out)
	}
	return out
}

// whichISPFrom connects from src on the LAN host to the server (IPv4 or
// IPv6 by src) and returns which ISP the server saw.
func (r *router) whichISPFrom(src netip.Addr) (int, error) {
	dst := netip.AddrPortFrom(r.lab.ServerAddr(), serverPort)
	if src.Is6() {
		dst = netip.AddrPortFrom(v6Server, serverPort)
	}
	var c net.Conn
	err := r.lab.Do("lan1", func() error {
		d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		var err error
		c, err = d.Dial("tcp", dst.String())
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("connecting from %s: %w", src, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("reading what the server saw of %s: %w", src, err)
	}
	seen, err := netip.ParseAddr(strings.TrimSpace(line))
	if err != nil {
		return 0, err
	}
	k := r.lab.ISPForAddr(seen)
	if src.Is6() {
		k = ispForAddr6(seen, r.lab.ISPs())
	}
	if k == 0 {
		return 0, fmt.Errorf("the server saw %s from %s, which is no ISP address of the router", seen, src)
	}
	return k, nil
}

// reachableFrom waits until the LAN host reaches the server from src: the
// first connections of a fresh lab wait for neighbour discovery.
func (r *router) reachableFrom(src netip.Addr) {
	r.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := r.whichISPFrom(src)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("the server is not reachable from %s: %v", src, err)
		}
	}
}

// usage opens perSource connections from every source, one after
// another per source and sources side by side, and returns the ISPs
// each source's connections used, with their counts.
func (r *router) usage(sources []netip.Addr, perSource int) map[netip.Addr]map[int]int {
	r.t.Helper()
	var mu sync.Mutex
	used := map[netip.Addr]map[int]int{}
	work := make(chan netip.Addr)
	var wg sync.WaitGroup
	var firstErr error
	for range 8 {
		wg.Go(func() {
			for src := range work {
				for range perSource {
					k, err := r.whichISPFrom(src)
					mu.Lock()
					if err != nil && firstErr == nil {
						firstErr = err
					}
					if err == nil {
						if used[src] == nil {
							used[src] = map[int]int{}
						}
						used[src][k]++
					}
					mu.Unlock()
				}
			}
		})
	}
	for _, src := range sources {
		work <- src
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		r.t.Fatal(firstErr)
	}
	return used
}

// onOneISP checks that every source used exactly one ISP and returns how
// many sources each ISP carried.
func onOneISP(t *testing.T, phase string, used map[netip.Addr]map[int]int) map[int]int {
	t.Helper()
	per := map[int]int{}
	for src, isps := range used {
		if len(isps) != 1 {
			t.Errorf("%s: %s used more than one ISP: %v", phase, src, isps)
			continue
		}
		for k := range isps {
			per[k]++
		}
	}
	return per
}

// binomialBounds returns lo, hi such that a binomial(n, p) count falls
// below lo or above hi with probability at most alpha in all.
func binomialBounds(n int, p, alpha float64) (lo, hi int) {
	pmf := func(k int) float64 {
		lg := func(x int) float64 { v, _ := math.Lgamma(float64(x) + 1); return v }
		return math.Exp(lg(n) - lg(k) - lg(n-k) + float64(k)*math.Log(p) + float64(n-k)*math.Log1p(-p))
	}
	tail := 0.0
	for lo = 0; lo < n && tail+pmf(lo) <= alpha/2; lo++ {
		tail += pmf(lo)
	}
	tail = 0
	for hi = n; hi > 0 && tail+pmf(hi) <= alpha/2; hi-- {
		tail += pmf(hi)
	}
	return lo, hi
}

// followsWeights checks that the number of sources on ISP 1 is within
// the binomial bounds for its share: a correct implementation falls
// outside them once in a million runs.
func followsWeights(t *testing.T, phase string, per map[int]int, n int, share float64) {
	t.Helper()
	lo, hi := binomialBounds(n, share, 1e-6)
	t.Logf("%s: sources per ISP %v; ISP1 may carry %d..%d of %d at share %.2f", phase, per, lo, hi, n, share)
	if per[1] < lo || per[1] > hi {
		t.Errorf("%s: ISP1 carries %d of %d sources, outside the binomial bounds %d..%d for its share %.2f", phase, per[1], n, lo, hi, share)
	}
}

// heldPattern reads -s's sticky line.
var heldPattern = regexp.MustCompile(`Sticky: per LAN address, kept \d+ s after its last new connection; addresses held: ISP1 (\d+)(?: \(IPv6 (\d+)\))?, ISP2 (\d+)(?: \(IPv6 (\d+)\))?`)

// held returns the addresses -s says ISP1 and ISP2 hold, by family.
func (r *router) held() (v4, v6 [3]int) {
	r.t.Helper()
	out := r.mustRun("-s")
	m := heldPattern.FindStringSubmatch(out)
	if m == nil {
		r.t.Fatalf("-s does not show the addresses held:\n%s", out)
	}
	n := func(s string) int { v, _ := strconv.Atoi(s); return v }
	return [3]int{0, n(m[1]), n(m[3])}, [3]int{0, n(m[2]), n(m[4])}
}

// unchangedRebuildWritesNothing: the planned keep and balance chains are
// spelled as iptables-save prints them, and the sets exist, so a rebuild
// with nothing new writes neither.
func (r *router) unchangedRebuildWritesNothing() {
	r.t.Helper()
	out := r.mustRun("-v")
	if strings.Contains(out, "restore") {
		r.t.Errorf("a rebuild with nothing new wrote to the kernel:\n%s", out)
	}
}

func needIPSet(t *testing.T) {
	if _, err := exec.LookPath("ipset"); err != nil {
		lab.SkipOrFail(t, "sticky=source needs ipset: %v", err)
	}
}

// TestStickySource: with sticky=source, 50 LAN addresses opening 40
// connections each keep to one ISP each, and the addresses split by the
// weights 3:1 within binomial bounds. The same check fails per
// connection, where addresses use both ISPs. When ISP1 goes, every
// address moves to ISP2; when it returns, they stay on ISP2 while they
// keep talking, longer than the timeout; once they have been quiet for
// the timeout they are shared by weight again.
func TestStickySource(t *testing.T) {
	needIPSet(t)
	t.Parallel()
	const timeout = 6 * time.Second
	r := newRouter(t, lab.Options{Prefix: "sticky"}, ispConf(3, 1))
	r.startServer()
	sources := r.addSources(netip.MustParseAddr("192.168.1.100"), stickySources, 24)

	// Per connection (the default), the check finds addresses on both
	// ISPs: an address keeps to one of them with probability 1e-5.
	r.mustRun()
	r.unchangedRebuildWritesNothing()
	r.reachableFrom(sources[0])
	mixed := 0
	for _, isps := range r.usage(sources, 40) {
		if len(isps) > 1 {
			mixed++
		}
	}
	t.Logf("sticky=connection: %d of %d addresses used both ISPs", mixed, stickySources)
	if mixed < stickySources-5 {
		t.Errorf("sticky=connection: only %d of %d addresses used both ISPs", mixed, stickySources)
	}

	r.writeConf(ispConf(3, 1) + fmt.Sprintf("sticky=source\nsticky_timeout=%d\n", int(timeout.Seconds())))
	if out := r.mustRun("-d"); !strings.Contains(out, "ipset restore -exist <<'EOF'\ncreate ISPB-STICKY4-ISP1 hash:ip family inet timeout 0\n") {
		t.Errorf("-d does not show the sets:\n%s", out)
	}
	r.mustRun()
	r.unchangedRebuildWritesNothing()
	per := onOneISP(t, "balanced", r.usage(sources, 40))
	followsWeights(t, "balanced", per, stickySources, 0.75)
	if v4, _ := r.held(); v4[1] != per[1] || v4[2] != per[2] {
		t.Errorf("-s says ISP1 and ISP2 hold %d and %d addresses; they carried %d and %d", v4[1], v4[2], per[1], per[2])
	}

	// ISP1 down: every address moves to ISP2.
	r.mustRun("ISP2")
	if per := onOneISP(t, "ISP1 down", r.usage(sources, 5)); per[2] != stickySources {
		t.Errorf("with ISP1 down, ISP2 carries %d of %d addresses (all: %v)", per[2], stickySources, per)
	}
	if v4, _ := r.held(); v4[1] != 0 || v4[2] != stickySources {
		t.Errorf("with ISP1 down, -s says ISP1 and ISP2 hold %d and %d addresses, want 0 and %d", v4[1], v4[2], stickySources)
	}

	// ISP1 back: addresses that keep talking stay on ISP2, past the timeout.
	r.mustRun("ISP1", "ISP2")
	back := time.Now()
	rounds := 0
	for time.Since(back) < timeout*5/4 {
		if per := onOneISP(t, "ISP1 back", r.usage(sources, 1)); per[2] != stickySources {
			t.Fatalf("%v after ISP1 came back, ISP2 carries %d of %d talking addresses (all: %v)", time.Since(back).Round(time.Millisecond), per[2], stickySources, per)
		}
		rounds++
	}
	t.Logf("ISP1 back: %d rounds over %v, every address stayed on ISP2", rounds, time.Since(back).Round(time.Millisecond))

	// Quiet for the timeout: the sets empty, and addresses are shared by
	// weight again.
	quiet := time.Now()
	for {
		v4, _ := r.held()
		if v4[1]+v4[2] == 0 {
			break
		}
		if time.Since(quiet) > timeout+10*time.Second {
			t.Fatalf("the sets still hold %v addresses %v after the last connection", v4, time.Since(quiet))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("the sets emptied %v after the last connection (timeout %v)", time.Since(quiet).Round(100*time.Millisecond), timeout)
	after := onOneISP(t, "after the timeout", r.usage(sources, 40))
	followsWeights(t, "after the timeout", after, stickySources, 0.75)
	// The two draws together, 100 independent choices, bound the share
	// more tightly.
	followsWeights(t, "both draws", map[int]int{1: per[1] + after[1], 2: per[2] + after[2]}, 2*stickySources, 0.75)

	// stop takes the sets away.
	r.mustRun("stop")
	if out := r.sh("router", "ipset", "list", "-n"); strings.Contains(out, "ISPB-") {
		t.Errorf("sets left after stop:\n%s", out)
	}
}

// TestStickySourceIPv6: IPv6 LAN addresses keep to one ISP each too, in
// sets of their own, and move when their ISP goes.
func TestStickySourceIPv6(t *testing.T) {
	needIPSet(t)
	t.Parallel()
	const n = 30
	r := newRouter(t, lab.Options{Prefix: "sticky6"}, ispConf(1, 1)+"sticky=source\n")
	r.startServer()
	r.dualStackISPs()
	sources := r.addSources(netip.MustParseAddr("fd00:100::100"), n, 64)
	r.mustRun()
	r.reachableFrom(sources[0])
	per := onOneISP(t, "IPv6", r.usage(sources, 10))
	// Both ISPs get addresses but with probability 2e-9.
	t.Logf("IPv6 sources per ISP: %v", per)
	if per[1] == 0 || per[2] == 0 {
		t.Errorf("IPv6 sources per ISP %v, want both ISPs used", per)
	}
	if _, v6 := r.held(); v6[1] != per[1] || v6[2] != per[2] {
		t.Errorf("-s says ISP1 and ISP2 hold %d and %d IPv6 addresses; they carried %d and %d", v6[1], v6[2], per[1], per[2])
	}
	r.mustRun("ISP2")
	if per := onOneISP(t, "IPv6, ISP1 down", r.usage(sources, 3)); per[2] != n {
		t.Errorf("with ISP1 down, ISP2 carries %d of %d IPv6 addresses (all: %v)", per[2], n, per)
	}
}

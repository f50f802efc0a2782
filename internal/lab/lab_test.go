package lab

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const port = 8080

func needLab(t *testing.T) {
	t.Helper()
	if err := Available(); err != nil {
		SkipOrFail(t, "lab not available: %v", err)
	}
}

func newLab(t *testing.T, opts Options) *Lab {
	t.Helper()
	needLab(t)
	start := time.Now()
	l, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built %s (%d ISPs, %d LANs) in %v", l.Prefix(), l.ISPs(), l.LANs(), time.Since(start))
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("closing the lab: %v", err)
		}
	})
	return l
}

func mustExec(t *testing.T, l *Lab, ns string, args ...string) string {
	t.Helper()
	out, err := l.Exec(ns, args...)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// viaISP gives the router a default route through ISP k with masquerading,
// the minimum the software under test would install.
func viaISP(t *testing.T, l *Lab, k int) {
	t.Helper()
	mustExec(t, l, "router", "ip", "route", "replace", "default", "via", l.ISPGateway(k).String())
	mustExec(t, l, "router", "iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-o", "wan"+strconv.Itoa(k), "-j", "MASQUERADE")
}

func startServer(t *testing.T, l *Lab) {
	t.Helper()
	stop, err := l.StartServer(port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
}

// namespacesWithPrefix lists the named namespaces whose name starts with
// prefix, as `ip netns list` shows them.
func namespacesWithPrefix(t *testing.T, prefix string) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	var found []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix) {
			found = append(found, f[0])
		}
	}
	return found
}

// dropCount reads the packet counter of the ISP's spoofing filter.
func dropCount(t *testing.T, l *Lab, k int) int {
	t.Helper()
	out := mustExec(t, l, "isp"+strconv.Itoa(k), "iptables", "-w", "-L", "FORWARD", "-v", "-x", "-n")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 9 && f[2] == "DROP" && f[5] == "down0" && f[7] == "!"+l.ISPSubnet(k).String() {
			n, err := strconv.Atoi(f[0])
			if err != nil {
				t.Fatalf("reading counter from %q: %v", line, err)
			}
			return n
		}
	}
	t.Fatalf("no spoofing filter in isp%d:\n%s", k, out)
	return 0
}

func TestOptionsRejected(t *testing.T) {
	for _, opts := range []Options{
		{ISPs: MaxISPs + 1},
		{ISPs: -1},
		{LANs: 3},
		{Prefix: "UPPER"},
		{Prefix: "much-too-long-prefix"},
		{Prefix: "-x"},
	} {
		if l, err := New(opts); err == nil {
			l.Close()
			t.Errorf("New(%+v) succeeded, want an error", opts)
		}
	}
}

func TestAddresses(t *testing.T) {
	l := &Lab{prefix: "p-abc", isps: 3, lans: 2}
	for _, tc := range []struct {
		got  any
		want string
	}{
		{l.ISPGateway(3), "100.64.3.1"},
		{l.RouterISPAddr(2), "100.64.2.2"},
		{l.ISPSubnet(16), "100.64.16.0/24"},
		{l.LANHost(2), "192.168.2.10"},
		{l.RouterLANAddr(1), "192.168.1.1"},
		{l.ServerAddr(), "203.0.113.10"},
		{l.NS("isp3"), "p-abc-isp3"},
		{l.NS("p-abc-router"), "p-abc-router"},
		{l.NS("isp4"), ""},
		{l.NS("lan3"), ""},
	} {
		if s := fmt.Sprint(tc.got); s != tc.want {
			t.Errorf("got %s, want %s", s, tc.want)
		}
	}
	for a, want := range map[string]int{"100.64.1.2": 1, "100.64.3.2": 3, "100.64.4.2": 0, "100.64.1.1": 0, "10.64.1.2": 0, "::ffff:100.64.2.2": 2} {
		if got := l.ISPForAddr(netip.MustParseAddr(a)); got != want {
			t.Errorf("ISPForAddr(%s) = %d, want %d", a, got, want)
		}
	}
	isp, inet := ispUplink(16)
	if isp.String() != "198.51.100.61" || inet.String() != "198.51.100.62" {
		t.Errorf("uplink of ISP 16 = %s, %s", isp, inet)
	}
}

func TestTopology(t *testing.T) {
	l := newLab(t, Options{Prefix: "ltopo", ISPs: 2, LANs: 2})
	startServer(t, l)
	for _, short := range l.Names() {
		if got := namespacesWithPrefix(t, l.NS(short)); len(got) != 1 {
			t.Errorf("ip netns list shows %v for %s", got, l.NS(short))
		}
	}
	addrs := mustExec(t, l, "router", "ip", "-4", "-o", "addr", "show")
	for _, want := range []string{"wan1    inet 100.64.1.2/24", "wan2    inet 100.64.2.2/24", "lan1    inet 192.168.1.1/24", "lan2    inet 192.168.2.1/24"} {
		dev, addr, _ := strings.Cut(want, "    ")
		if !regexp.MustCompile(`\b` + dev + `\s+` + regexp.QuoteMeta(addr) + `\b`).MatchString(addrs) {
			t.Errorf("router lacks %s on %s:\n%s", addr, dev, addrs)
		}
	}
	if routes := mustExec(t, l, "router", "ip", "route", "show", "default"); strings.TrimSpace(routes) != "" {
		t.Errorf("router has a default route: %s", routes)
	}
	if rules := mustExec(t, l, "router", "ip", "rule", "show"); strings.Count(rules, "\n") != 3 {
		t.Errorf("router has more than the three standard rules:\n%s", rules)
	}
	if fw := mustExec(t, l, "router", "sysctl", "-n", "net.ipv4.ip_forward"); strings.TrimSpace(fw) != "1" {
		t.Errorf("router ip_forward = %s", fw)
	}
	if fw := mustExec(t, l, "isp2", "sysctl", "-n", "net.ipv4.ip_forward"); strings.TrimSpace(fw) != "1" {
		t.Errorf("isp2 ip_forward = %s", fw)
	}
	if lo := mustExec(t, l, "lan2", "ip", "-o", "link", "show", "lo"); !strings.Contains(lo, "UP") {
		t.Errorf("lo of lan2 is down: %s", lo)
	}
	// Every direct link works with no routing from the software.
	for _, p := range []struct {
		from string
		to   netip.Addr
	}{
		{"router", l.ISPGateway(1)},
		{"router", l.ISPGateway(2)},
		{"lan2", l.RouterLANAddr(2)},
		{"isp2", l.ServerAddr()},
	} {
		if out, err := l.Exec(p.from, "ping", "-c1", "-W2", p.to.String()); err != nil {
			t.Errorf("%s cannot reach %s: %v\n%s", p.from, p.to, err, out)
		}
	}
	// The server, which answers ISP 2 above, answers neither ping nor
	// TCP from a LAN while the router has no default route.
	server := netip.AddrPortFrom(l.ServerAddr(), port)
	if _, err := l.Greet("isp2", server, 2*time.Second); err != nil {
		t.Fatalf("the server's listener does not answer ISP 2: %v", err)
	}
	if _, err := l.Exec("lan1", "ping", "-c1", "-W1", l.ServerAddr().String()); err == nil {
		t.Error("lan1 reaches the server although the router has no default route")
	}
	if seen, err := l.Greet("lan1", server, time.Second); err == nil {
		t.Errorf("lan1 connected to the server (which saw %s) although the router has no default route", seen)
	}
}

func TestNoForwarding(t *testing.T) {
	l := newLab(t, Options{Prefix: "lnofw", ISPs: 1, NoForwarding: true})
	if fw := mustExec(t, l, "router", "sysctl", "-n", "net.ipv4.ip_forward"); strings.TrimSpace(fw) != "0" {
		t.Errorf("router ip_forward = %s, want 0", fw)
	}
	if fw := mustExec(t, l, "isp1", "sysctl", "-n", "net.ipv4.ip_forward"); strings.TrimSpace(fw) != "1" {
		t.Errorf("isp1 ip_forward = %s, want 1", fw)
	}
}

func TestServerSeesTheISP(t *testing.T) {
	l := newLab(t, Options{Prefix: "lsrv", ISPs: 2, LANs: 2})
	startServer(t, l)
	for k := 1; k <= 2; k++ {
		viaISP(t, l, k)
		for j := 1; j <= 2; j++ {
			got, err := l.WhichISP(j, port, 2*time.Second)
			if err != nil {
				t.Fatalf("default via ISP %d, LAN %d: %v", k, j, err)
			}
			if got != k {
				t.Errorf("default via ISP %d, LAN %d: server saw ISP %d", k, j, got)
			}
		}
	}

	c, err := l.DialTCP("lan1", netip.AddrPortFrom(l.ServerAddr(), port), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	r := bufio.NewReader(c)
	if line, err := r.ReadString('\n'); err != nil || line != "100.64.2.2\n" {
		t.Fatalf("first line %q, %v; want 100.64.2.2", line, err)
	}
	for i := range 3 {
		msg := fmt.Sprintf("ping %d\n", i)
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatal(err)
		}
		if got, err := r.ReadString('\n'); err != nil || got != msg {
			t.Fatalf("echo %q, %v; want %q", got, err, msg)
		}
	}
}

func TestSpoofFilter(t *testing.T) {
	l := newLab(t, Options{Prefix: "lspoof", ISPs: 2})
	startServer(t, l)
	// A default route without masquerading: LAN sources reach ISP 1 as
	// they are.
	mustExec(t, l, "router", "ip", "route", "add", "default", "via", l.ISPGateway(1).String())
	// The router's own connection, from its ISP 1 address, takes the same
	// way to the same listener and is answered.
	if seen, err := l.Greet("router", netip.AddrPortFrom(l.ServerAddr(), port), 2*time.Second); err != nil || seen != l.RouterISPAddr(1).String() {
		t.Fatalf("the router's own connection through ISP 1: server saw %q, %v; want %s", seen, err, l.RouterISPAddr(1))
	}
	before := dropCount(t, l, 1)
	if _, err := l.WhichISP(1, port, 300*time.Millisecond); err == nil {
		t.Fatal("an unmasqueraded LAN connection got through ISP 1")
	}
	if after := dropCount(t, l, 1); after <= before {
		t.Errorf("ISP 1's spoofing filter dropped %d packets before and %d after", before, after)
	}
}

func TestInbound(t *testing.T) {
	l := newLab(t, Options{Prefix: "linb", ISPs: 2})
	// Replies to the internet leave by ISP 2.
	mustExec(t, l, "router", "ip", "route", "add", "203.0.113.0/24", "via", l.ISPGateway(2).String())
	if out, err := l.Exec("inet", "ping", "-c1", "-W2", "-I", l.ServerAddr().String(), l.RouterISPAddr(2).String()); err != nil {
		t.Errorf("the server cannot reach the router through ISP 2: %v\n%s", err, out)
	}
	// The router answers at its ISP 1 address when the reply need not
	// cross ISP 2.
	if out, err := l.Exec("isp1", "ping", "-c1", "-W2", l.RouterISPAddr(1).String()); err != nil {
		t.Fatalf("the router does not answer at its ISP 1 address from ISP 1: %v\n%s", err, out)
	}
	// A request that came in by ISP 1 is answered by ISP 2, which drops
	// the reply for its foreign source: asymmetric routing shows.
	before := dropCount(t, l, 2)
	if _, err := l.Exec("inet", "ping", "-c1", "-W1", "-I", l.ServerAddr().String(), l.RouterISPAddr(1).String()); err == nil {
		t.Error("a reply leaving by the wrong ISP got through")
	}
	if after := dropCount(t, l, 2); after <= before {
		t.Errorf("ISP 2's spoofing filter dropped %d packets before and %d after", before, after)
	}
}

func TestFaults(t *testing.T) {
	l := newLab(t, Options{Prefix: "lfault", ISPs: 2})
	startServer(t, l)
	viaISP(t, l, 1)
	works := func(when string) {
		t.Helper()
		if k, err := l.WhichISP(1, port, 2*time.Second); err != nil || k != 1 {
			t.Fatalf("%s: WhichISP = %d, %v; want 1", when, k, err)
		}
	}
	fails := func(when string) {
		t.Helper()
		if k, err := l.WhichISP(1, port, 300*time.Millisecond); err == nil {
			t.Fatalf("%s: the server was reached through ISP %d", when, k)
		}
	}
	works("before any fault")

	undo, err := l.SilentDrop(1)
	if err != nil {
		t.Fatal(err)
	}
	fails("silent drop")
	if out, err := l.Exec("router", "ping", "-c1", "-W2", l.ISPGateway(1).String()); err != nil {
		t.Errorf("the gateway stopped answering during a silent drop: %v\n%s", err, out)
	}
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	if err := undo(); err != nil {
		t.Errorf("second undo: %v", err)
	}
	works("after undoing the silent drop")

	undo, err = l.CarrierDown(1)
	if err != nil {
		t.Fatal(err)
	}
	if link := mustExec(t, l, "router", "ip", "-o", "link", "show", "wan1"); !strings.Contains(link, "NO-CARRIER") {
		t.Errorf("wan1 kept carrier: %s", link)
	}
	fails("carrier down")
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	works("after undoing the carrier loss")

	undo, err = l.RandomLoss(1, 1)
	if err != nil {
		t.Fatal(err)
	}
	fails("total random loss")
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	works("after undoing the random loss")

	// Overlapping faults are undone one by one.
	undo1, err := l.SilentDrop(1)
	if err != nil {
		t.Fatal(err)
	}
	undo2, err := l.SilentDrop(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := undo1(); err != nil {
		t.Fatal(err)
	}
	fails("one of two silent drops left")
	if err := undo2(); err != nil {
		t.Fatal(err)
	}
	works("after undoing both silent drops")

	for _, bad := range []func() error{
		func() error { _, err := l.SilentDrop(3); return err },
		func() error { _, err := l.CarrierDown(0); return err },
		func() error { _, err := l.RandomLoss(1, 0); return err },
		func() error { _, err := l.RandomLoss(1, 1.5); return err },
	} {
		if bad() == nil {
			t.Error("a fault with bad arguments was accepted")
		}
	}
}

func TestPingCounts(t *testing.T) {
	l := newLab(t, Options{Prefix: "lping", ISPs: 1})
	viaISP(t, l, 1)
	ping := func(p float64, d time.Duration) (int, int) {
		t.Helper()
		if p > 0 {
			undo, err := l.RandomLoss(1, p)
			if err != nil {
				t.Fatal(err)
			}
			defer undo()
		}
		s, err := l.StartPing("lan1", l.ServerAddr(), 2*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(d)
		sent, received, err := s.Stop()
		if err != nil {
			t.Fatal(err)
		}
		if s2, r2, err := s.Stop(); s2 != sent || r2 != received || err != nil {
			t.Errorf("second Stop = %d, %d, %v; want %d, %d", s2, r2, err, sent, received)
		}
		t.Logf("loss %v: sent %d, received %d", p, sent, received)
		return sent, received
	}
	if sent, received := ping(0, 400*time.Millisecond); sent < 20 || received != sent {
		t.Errorf("without loss: sent %d, received %d", sent, received)
	}
	if sent, received := ping(1, 400*time.Millisecond); sent < 20 || received != 0 {
		t.Errorf("with total loss: sent %d, received %d", sent, received)
	}
	// Each way loses half, so about a quarter comes back; the bounds are
	// about six standard deviations wide at the nominal 400 probes.
	if sent, received := ping(0.5, 800*time.Millisecond); sent < 100 || received < sent/8 || received > sent/2 {
		t.Errorf("with 50%% loss each way: sent %d, received %d", sent, received)
	}

	// Two streams in one namespace do not count each other's replies.
	a, err := l.StartPing("router", l.ISPGateway(1), 2*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.StartPing("router", l.ISPGateway(1), 5*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	sa, ra, errA := a.Stop()
	sb, rb, errB := b.Stop()
	if errA != nil || errB != nil || sa != ra || sb != rb || sa <= sb {
		t.Errorf("two streams: %d/%d (%v) and %d/%d (%v)", ra, sa, errA, rb, sb, errB)
	}
}

func TestCloseAfterFailedNew(t *testing.T) {
	needLab(t)
	var prefix string
	buildHook = func(p string) error {
		prefix = p
		if got := namespacesWithPrefix(t, p+"-"); len(got) != 6 {
			t.Errorf("before the failure %d namespaces exist, want 6: %v", len(got), got)
		}
		return errors.New("injected failure")
	}
	defer func() { buildHook = nil }()
	if l, err := New(Options{Prefix: "lfail", ISPs: 3}); err == nil {
		l.Close()
		t.Fatal("New succeeded despite the injected failure")
	}
	if prefix == "" {
		t.Fatal("the build never reached the hook")
	}
	if left := namespacesWithPrefix(t, prefix+"-"); len(left) != 0 {
		t.Errorf("after the failed New these namespaces are left: %v", left)
	}
}

func TestTwoLabsAndClose(t *testing.T) {
	needLab(t)
	a, err := New(Options{Prefix: "ltwo"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := New(Options{Prefix: "ltwo"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if a.Prefix() == b.Prefix() {
		t.Fatalf("both labs are called %s", a.Prefix())
	}
	for i, l := range []*Lab{a, b} {
		k := i + 1
		if _, err := l.StartServer(port); err != nil {
			t.Fatal(err)
		}
		viaISP(t, l, k)
		if got, err := l.WhichISP(1, port, 2*time.Second); err != nil || got != k {
			t.Errorf("lab %s: WhichISP = %d, %v; want %d", l.Prefix(), got, err, k)
		}
	}
	// Close also stops what was started through the lab.
	if _, err := a.StartPing("lan1", a.ServerAddr(), 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if left := namespacesWithPrefix(t, a.Prefix()+"-"); len(left) != 0 {
		t.Errorf("after Close these namespaces are left: %v", left)
	}
	if err := a.Do("router", func() error { return nil }); err == nil {
		t.Error("Do works on a closed lab")
	}
	if _, err := a.Exec("router", "true"); err == nil {
		t.Error("Exec works on a closed lab")
	}
	if got, err := b.WhichISP(1, port, 2*time.Second); err != nil || got != 2 {
		t.Errorf("the other lab after Close: WhichISP = %d, %v; want 2", got, err)
	}
}

func TestSixteenISPs(t *testing.T) {
	l := newLab(t, Options{Prefix: "lbig", ISPs: MaxISPs})
	startServer(t, l)
	viaISP(t, l, MaxISPs)
	if got, err := l.WhichISP(1, port, 2*time.Second); err != nil || got != MaxISPs {
		t.Errorf("WhichISP = %d, %v; want %d", got, err, MaxISPs)
	}
}

func BenchmarkNew(b *testing.B) {
	if err := Available(); err != nil {
		SkipOrFail(b, "lab not available: %v", err)
	}
	for _, n := range []int{2, MaxISPs} {
		b.Run(strconv.Itoa(n)+"ISPs", func(b *testing.B) {
			for b.Loop() {
				l, err := New(Options{Prefix: "lbench", ISPs: n})
				if err != nil {
					b.Fatal(err)
				}
				if err := l.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestResetRouter: a bare router has its links down and unaddressed; what
// its system configured (an address, a route, a rule, a firewall rule,
// forwarding) is gone after ResetRouter, and the links are back, bare;
// configured again, the router reaches the ISP.
func TestResetRouter(t *testing.T) {
	l := newLab(t, Options{Prefix: "lreset", ISPs: 2, BareRouter: true})
	addrs := func() string { return mustExec(t, l, "router", "ip", "-br", "-4", "addr") }
	if a := addrs(); strings.Contains(a, "100.64.") || strings.Contains(a, "192.168.") {
		t.Fatalf("a bare router has addresses:\n%s", a)
	}
	if fwd := mustExec(t, l, "router", "sysctl", "-n", "net.ipv4.ip_forward"); strings.TrimSpace(fwd) != "0" {
		t.Fatalf("a bare router forwards: %s", fwd)
	}
	configure := func() {
		mustExec(t, l, "router", "ip", "addr", "add", "100.64.1.2/24", "dev", "wan1")
		mustExec(t, l, "router", "ip", "link", "set", "wan1", "up")
	}
	configure()
	mustExec(t, l, "router", "ip", "rule", "add", "pref", "100", "table", "100")
	mustExec(t, l, "router", "iptables", "-w", "-A", "INPUT", "-j", "ACCEPT")
	mustExec(t, l, "router", "sysctl", "-qw", "net.ipv4.ip_forward=1")
	if out, err := l.Exec("router", "ping", "-c1", "-W2", l.ISPGateway(1).String()); err != nil {
		t.Fatalf("the configured router cannot reach ISP 1: %v\n%s", err, out)
	}
	if err := l.ResetRouter(); err != nil {
		t.Fatal(err)
	}
	if a := addrs(); strings.Contains(a, "100.64.") {
		t.Errorf("after the reset the router has addresses:\n%s", a)
	}
	if rules := mustExec(t, l, "router", "ip", "rule"); strings.Contains(rules, "lookup 100") {
		t.Errorf("after the reset the router has its old rule:\n%s", rules)
	}
	if fw := mustExec(t, l, "router", "iptables-save"); strings.Contains(fw, "-A INPUT") {
		t.Errorf("after the reset the router has its old firewall:\n%s", fw)
	}
	if fwd := mustExec(t, l, "router", "sysctl", "-n", "net.ipv4.ip_forward"); strings.TrimSpace(fwd) != "0" {
		t.Errorf("after the reset the router forwards: %s", fwd)
	}
	for _, dev := range []string{"wan1", "wan2", "lan1"} {
		mustExec(t, l, "router", "ip", "link", "show", dev)
	}
	configure()
	if out, err := l.Exec("router", "ping", "-c1", "-W2", l.ISPGateway(1).String()); err != nil {
		t.Fatalf("after the reset the configured router cannot reach ISP 1: %v\n%s", err, out)
	}
	if out, err := l.Exec("lan1", "ip", "route", "show", "default"); err != nil || !strings.Contains(string(out), "192.168.1.1") {
		t.Errorf("after the reset the LAN host has no default route: %v\n%s", err, out)
	}
}

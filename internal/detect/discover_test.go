package detect

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/ispbalance/ispbalance/internal/lab"
)

// labNamespace creates a network namespace for the test and returns a
// netlink handle into it and its name for `ip -n`. The host namespace is
// never touched.
func labNamespace(t *testing.T) (*netlink.Handle, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		lab.SkipOrFail(t, "needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		lab.SkipOrFail(t, "needs iproute2")
	}
	name := fmt.Sprintf("ispb-detect-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		lab.SkipOrFail(t, "cannot create a network namespace here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("removing namespace %s: %v: %s", name, err, out)
		}
	})
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("opening namespace %s: %v", name, err)
	}
	t.Cleanup(func() { ns.Close() })
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", name, err)
	}
	t.Cleanup(h.Close)
	return h, name
}

func ipBatch(t *testing.T, ns, script string) {
	t.Helper()
	cmd := exec.Command("ip", "-n", ns, "-batch", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip -batch: %v: %s", err, out)
	}
}

func TestDiscoverLab(t *testing.T) {
	h, ns := labNamespace(t)
	ipBatch(t, ns, `
link add wan0 type veth peer name isp0
link set isp0 up
link set wan0 up
addr add 100.64.1.2/24 dev wan0
route add default via 100.64.1.1 dev wan0

link add wanx type veth peer name ispx
link set ispx up
link set wanx up
addr add 203.0.113.2/24 dev wanx
addr add 198.51.100.2/24 dev wanx label wanx:0
route add default via 203.0.113.1 dev wanx metric 100
route add 192.0.2.0/24 via 198.51.100.254 dev wanx

link add v0 type veth peer name v0p
link set v0p up
link set v0 up

link add bare0 type veth peer name bare0p
link set bare0p up
link set bare0 up

link add wand type veth peer name ispd
link set ispd up
link set wand up
addr add 100.64.2.2/24 dev wand
route add default via 100.64.2.99 dev wand metric 300 proto 177
link set ispd down

link add wanp type veth peer name ispp
link set ispp up
link set wanp up
addr add 100.64.9.2 peer 100.64.9.1/32 dev wanp
`)
	// A stacked link shows as "v0.10@v0" in `ip addr`. Some kernels (this
	// lab's among them) lack 802.1Q; a macvlan is named and shown the same way.
	if out, err := exec.Command("ip", "-n", ns, "link", "add", "link", "v0", "name", "v0.10", "type", "vlan", "id", "10").CombinedOutput(); err != nil {
		t.Logf("no VLAN support (%v: %s), stacking a macvlan instead", err, bytes.TrimSpace(out))
		ipBatch(t, ns, "link add link v0 name v0.10 type macvlan mode bridge\n")
	}
	ipBatch(t, ns, "link set v0.10 up\naddr add 192.168.10.2/24 dev v0.10\n")

	root := t.TempDir()
	leasePath := filepath.Join(root, "var/lib/dhcp/dhclient.v0.10.leases")
	if err := os.MkdirAll(filepath.Dir(leasePath), 0o755); err != nil {
		t.Fatal(err)
	}
	lease := `lease {
  interface "v0.10";
  fixed-address 192.168.10.2;
  option subnet-mask 255.255.255.0;
  option routers 192.168.10.254;
  expire 2 2025/06/10 09:15:31;
}
`
	if err := os.WriteFile(leasePath, []byte(lease), 0o644); err != nil {
		t.Fatal(err)
	}

	index := func(name string) int {
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatalf("looking up %s: %v", name, err)
		}
		return l.Attrs().Index
	}
	want := map[string]Link{
		"wan0": {Device: "wan0", Kernel: "wan0", Index: index("wan0"), Present: true, Up: true,
			Addr: prefix("100.64.1.2/24"), Net: prefix("100.64.1.0/24"),
			Gateway: addr("100.64.1.1"), GatewayFrom: FromRoute},
		"wanx": {Device: "wanx", Kernel: "wanx", Index: index("wanx"), Present: true, Up: true,
			Addr: prefix("203.0.113.2/24"), Net: prefix("203.0.113.0/24"),
			Gateway: addr("203.0.113.1"), GatewayFrom: FromRoute},
		"wanx:0": {Device: "wanx:0", Kernel: "wanx", Index: index("wanx"), Present: true, Up: true,
			Addr: prefix("198.51.100.2/24"), Net: prefix("198.51.100.0/24"),
			Gateway: addr("198.51.100.254"), GatewayFrom: FromRoute},
		"v0.10@v0": {Device: "v0.10@v0", Kernel: "v0.10", Index: index("v0.10"), Present: true, Up: true,
			Addr: prefix("192.168.10.2/24"), Net: prefix("192.168.10.0/24"),
			Gateway: addr("192.168.10.254"), GatewayFrom: FromLeasePrefix + leasePath},
		"bare0": {Device: "bare0", Kernel: "bare0", Index: index("bare0"), Up: true, Problem: ProblemNoAddress},
		"missing0": {Device: "missing0", Kernel: "missing0", Problem: ProblemNoDevice,
			Gateway: addr("192.0.2.1"), GatewayFrom: FromConfig},
		// The proto 177 default route is ispbalance's own and must not be
		// learnt back, so the gateway is only guessed.
		"wand": {Device: "wand", Kernel: "wand", Index: index("wand"), Present: true, Up: false,
			Addr: prefix("100.64.2.2/24"), Net: prefix("100.64.2.0/24"),
			Gateway: addr("100.64.2.1"), GatewayFrom: FromGuess},
		"wanp": {Device: "wanp", Kernel: "wanp", Index: index("wanp"), Present: true, Up: true, PointToPoint: true,
			Addr: prefix("100.64.9.2/32"), Net: prefix("100.64.9.1/32"), Peer: addr("100.64.9.1"),
			Gateway: addr("100.64.9.1"), GatewayFrom: FromPeer},
	}
	var reqs []Request
	for dev := range want {
		r := Request{Device: dev}
		if dev == "missing0" {
			r.Gateway = addr("192.0.2.1")
		}
		reqs = append(reqs, r)
	}

	// Operational state follows carrier through the kernel's link watch
	// work queue, so the first look may come a moment too early.
	var (
		got  map[string]Link
		took time.Duration
		diff string
	)
	opts := cmp.Options{
		cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		start := time.Now()
		var err error
		got, err = Discover(reqs, Options{Root: root, Handle: h})
		took = time.Since(start)
		if err != nil {
			t.Fatalf("Discover: %v", err)
		}
		if diff = cmp.Diff(want, got, opts); diff == "" || time.Now().After(deadline) {
			break
		}
	}
	if diff != "" {
		t.Errorf("Discover (-want +got):\n%s", diff)
	}
	t.Logf("Discover of %d devices took %v", len(reqs), took)
}

package labtest

import (
	"bufio"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ispbalance/ispbalance/internal/lab"
)

// TestBalanceByWeight: of 2000 new connections each ISP carries its
// weight's share within 4 percentage points.
func TestBalanceByWeight(t *testing.T) {
	cases := []struct {
		name    string
		weights []int
	}{
		{"1to1", []int{1, 1}},
		{"3to1", []int{3, 1}},
		{"3to2to1", []int{3, 2, 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRouter(t, lab.Options{Prefix: "bal", ISPs: len(tc.weights)}, ispConf(tc.weights...))
			r.startServer()
			r.mustRun()
			const n = 2000
			counts := r.shares(1, n)
			total := 0
			for _, w := range tc.weights {
				total += w
			}
			for i, w := range tc.weights {
				want := float64(w) / float64(total)
				got := float64(counts[i+1]) / n
				t.Logf("ISP%d: %d of %d (%.1f %%, want %.1f %%)", i+1, counts[i+1], n, 100*got, 100*want)
				if math.Abs(got-want) > 0.04 {
					t.Errorf("ISP%d carried %.1f %% of connections, want %.1f %% ± 4", i+1, 100*got, 100*want)
				}
			}
			if counts[0] != 0 {
				t.Errorf("%d connections left by no known ISP", counts[0])
			}
		})
	}
}

// TestAliasISP: two ISPs on one router device, the second as an address
// label (wan1:0) with its own gateway. Connections are balanced over
// both, each leaving with its own ISP's address, and a connection to the
// alias's address is answered.
func TestAliasISP(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "alias", ISPs: 1}, "CABLE wan1 isp\nFIBER wan1:0 isp default 1 100.64.5.1\nLAN lan1 lan\n")
	// ISP1's namespace also plays FIBER: a second subnet on the same
	// link, allowed through its spoof filter and routed back to.
	r.sh("isp1", "ip", "addr", "add", "100.64.5.1/24", "dev", "down0")
	r.sh("isp1", "iptables", "-I", "FORWARD", "-i", "down0", "-s", "100.64.5.0/24", "-j", "ACCEPT")
	r.sh("inet", "ip", "route", "add", "100.64.5.0/24", "via", "198.51.100.1")
	r.sh("router", "ip", "addr", "add", "100.64.5.2/24", "dev", "wan1", "label", "wan1:0")
	r.startServer()
	r.mustRun()
	seen := map[string]int{}
	for i := 0; i < 400; i++ {
		c, err := r.lab.DialTCP("lan1", netip.AddrPortFrom(r.lab.ServerAddr(), serverPort), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		seen[strings.TrimSpace(line)]++
	}
	t.Logf("sources seen by the server: %v", seen)
	if len(seen) != 2 || seen["100.64.1.2"] < 150 || seen["100.64.5.2"] < 150 {
		t.Errorf("want about half of 400 connections from each of 100.64.1.2 and 100.64.5.2, got %v", seen)
	}
	if _, err := r.lab.Exec("inet", "ping", "-c1", "-W1", "100.64.5.2"); err != nil {
		t.Errorf("the alias address does not answer from the internet: %v", err)
	}
}

// TestPointToPointISP: an ISP whose address is a /32 with a peer (as PPP
// links have it) gets the peer as gateway and carries its share.
func TestPointToPointISP(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "ptp"}, ispConf(1, 1))
	r.sh("router", "ip", "addr", "flush", "dev", "wan2")
	r.sh("router", "ip", "addr", "add", "100.64.2.2", "peer", "100.64.2.1/32", "dev", "wan2")
	r.startServer()
	out := r.mustRun("-d")
	if !strings.Contains(out, "ip route replace default via 100.64.2.1 dev wan2 onlink table 4202") {
		t.Errorf("the peer is not the gateway of a point-to-point ISP:\n%s", out)
	}
	r.mustRun()
	counts := r.shares(1, 400)
	if counts[1] < 150 || counts[2] < 150 {
		t.Errorf("connections per ISP %v, want about 200 each", counts)
	}
}

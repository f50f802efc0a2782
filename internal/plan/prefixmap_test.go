package plan

import (
	"net/netip"
	"testing"
)

func TestGraft(t *testing.T) {
	for _, c := range []struct{ d, l, want string }{
		{"2001:db8:100::/56", "fd00:0:0:3::/64", "2001:db8:100:3::/64"},
		{"2001:db8:100::/56", "fd12:3456:789a:ff01::/64", "2001:db8:100:1::/64"},
		{"2001:db8:200::/60", "fd00:0:0:1f::/64", "2001:db8:200:f::/64"},
		{"2001:db8:300::/64", "fd00:1:2:3::/64", "2001:db8:300::/64"},
		{"2001:db8:400::/48", "fd00:1:2:300::/56", "2001:db8:400:300::/56"},
	} {
		got := graft(netip.MustParsePrefix(c.d), netip.MustParsePrefix(c.l))
		if got != netip.MustParsePrefix(c.want) {
			t.Errorf("graft(%s, %s) = %s, want %s", c.d, c.l, got, c.want)
		}
	}
}

// TestPrefixMapsAvoidCollisions: a LAN whose mapped prefix would land on
// a LAN numbered from the delegation, or on another LAN's mapping, or
// that is shorter than the delegation, is left to NAT66.
func TestPrefixMapsAvoidCollisions(t *testing.T) {
	isp := ISP{Addr6: netip.MustParsePrefix("2001:db8:1::2/64"), Delegated6: netip.MustParsePrefix("2001:db8:100::/56")}
	lan := func(s string) LAN { return LAN{Addr6: netip.MustParsePrefix(s)} }
	p := Plan{ISPs: []ISP{isp}, LANs: []LAN{
		lan("2001:db8:100:1::1/64"), // numbered from the delegation: carried as is
		lan("fd00:0:0:1::1/64"),     // would map onto the LAN above
		lan("fd00:0:0:2::1/64"),     // maps to 2001:db8:100:2::/64
		lan("fd99:0:0:2::1/64"),     // would map onto the same as the one above
		lan("fd00:0:1::1/48"),       // shorter than the delegation
	}}
	got := prefixMaps6(p, isp)
	want := []prefixMap6{{netip.MustParsePrefix("fd00:0:0:2::/64"), netip.MustParsePrefix("2001:db8:100:2::/64")}}
	if len(got) != len(want) || got[0] != want[0] {
		t.Errorf("got %v, want %v", got, want)
	}
	if maps := prefixMaps6(p, ISP{Addr6: isp.Addr6}); maps != nil {
		t.Errorf("an ISP without a delegation mapped %v", maps)
	}
}

package kernelnames_test

import (
	"math/bits"
	"strings"
	"testing"

	"github.com/ispbalance/ispbalance/internal/config"
	kn "github.com/ispbalance/ispbalance/internal/kernelnames"
	"github.com/ispbalance/ispbalance/internal/rules"
)

// iptablesMaxChain is iptables' own limit on chain names, written out
// here rather than taken from the package under test: the kernel keeps
// them in XT_EXTENSION_MAXNAMELEN (29) bytes with the NUL.
const iptablesMaxChain = 28

// TestPriorityBands checks that each kind of policy rule has a band of its
// own inside the block a rebuild owns, so that deleting every unwanted
// rule in the block can never delete one kind for another, and that the
// block stays before the kernel's main and default rules.
func TestPriorityBands(t *testing.T) {
	type band struct {
		name   string
		lo, hi int
	}
	bands := []band{
		{"suppress main", kn.PrioSuppressMain, kn.PrioSuppressMain},
		{"fwmark", kn.PrioFwmarkBase + 1, kn.PrioFwmarkBase + kn.MaxISPs},
		{"source", kn.PrioSourceBase + 1, kn.PrioSourceBase + kn.MaxISPs},
		{"oif", kn.PrioOifBase + 1, kn.PrioOifBase + kn.MaxISPs},
		{"user", kn.PrioUserMin, kn.PrioUserMax},
		{"balance", kn.PrioBalance, kn.PrioBalance},
	}
	if kn.PrioMin < 1 || kn.PrioMax >= 32766 || kn.PrioMin > kn.PrioMax {
		t.Errorf("block %d-%d is not between the local rule (0) and main (32766)", kn.PrioMin, kn.PrioMax)
	}
	for i, a := range bands {
		if a.lo > a.hi || a.lo < kn.PrioMin || a.hi > kn.PrioMax {
			t.Errorf("%s band %d-%d is not inside %d-%d", a.name, a.lo, a.hi, kn.PrioMin, kn.PrioMax)
		}
		for _, b := range bands[i+1:] {
			if a.lo <= b.hi && b.lo <= a.hi {
				t.Errorf("%s band %d-%d overlaps %s band %d-%d", a.name, a.lo, a.hi, b.name, b.lo, b.hi)
			}
		}
	}
	// Lookups go in priority order: the user's rules must come after
	// ispbalance's per-ISP ones and before the catch-all balance rule.
	if kn.PrioUserMin <= kn.PrioOifBase+kn.MaxISPs || kn.PrioUserMax >= kn.PrioBalance {
		t.Errorf("user band %d-%d is not between the per-ISP rules and the balance rule (%d)", kn.PrioUserMin, kn.PrioUserMax, kn.PrioBalance)
	}
}

// TestMarks checks that every ISP's mark is its own, non-zero, and inside
// the bits ispbalance claims, and that MaxISPs uses exactly those bits.
func TestMarks(t *testing.T) {
	seen := map[uint32]int{}
	for i := 1; i <= kn.MaxISPs; i++ {
		m := kn.ISPMark(i)
		if m == 0 || m&^kn.MarkMask != 0 {
			t.Errorf("ISPMark(%d) = %s is zero or outside the mask %s", i, kn.FormatMark(m), kn.FormatMark(kn.MarkMask))
		}
		if j, dup := seen[m]; dup {
			t.Errorf("ISPMark(%d) = ISPMark(%d) = %s", i, j, kn.FormatMark(m))
		}
		seen[m] = i
	}
	if m := kn.ISPMark(kn.MaxISPs + 1); m&^kn.MarkMask == 0 {
		t.Errorf("ISPMark(%d) = %s still fits the mask: MaxISPs could be higher", kn.MaxISPs+1, kn.FormatMark(m))
	}
	// The mask must be one run of bits, or mark/mask matches would
	// split an ISP's index.
	if shifted := kn.MarkMask >> bits.TrailingZeros32(kn.MarkMask); shifted&(shifted+1) != 0 {
		t.Errorf("MarkMask %s is not one run of bits", kn.FormatMark(kn.MarkMask))
	}
	if got := kn.FormatMark(kn.MarkMask); got != "0x3f000000" {
		t.Errorf("FormatMark(MarkMask) = %s, want the form ip rule prints, 0x3f000000", got)
	}
}

// TestTables checks that every ISP table is recognised as ours, is not
// the balance table, and that nothing outside the range, in particular
// the kernel's own tables, is.
func TestTables(t *testing.T) {
	if !kn.IsOurTable(kn.BalanceTable) {
		t.Errorf("IsOurTable(BalanceTable %d) is false", kn.BalanceTable)
	}
	seen := map[int]int{}
	for i := 1; i <= kn.MaxISPs; i++ {
		tab := kn.ISPTable(i)
		if !kn.IsOurTable(tab) || tab == kn.BalanceTable {
			t.Errorf("ISPTable(%d) = %d: ours %v, balance table %v", i, tab, kn.IsOurTable(tab), tab == kn.BalanceTable)
		}
		if j, dup := seen[tab]; dup {
			t.Errorf("ISPTable(%d) = ISPTable(%d) = %d", i, j, tab)
		}
		seen[tab] = i
	}
	// unspec, compat, default, main, local, and the neighbours of the range.
	for _, tab := range []int{0, 252, 253, 254, 255, kn.BalanceTable - 1, kn.ISPTable(kn.MaxISPs) + 1} {
		if kn.IsOurTable(tab) {
			t.Errorf("IsOurTable(%d) is true", tab)
		}
	}
	if kn.RouteProtocol <= 4 || kn.RouteProtocol > 255 {
		t.Errorf("RouteProtocol %d is one of the kernel's own (0-4) or not a byte", kn.RouteProtocol)
	}
}

// TestChainNames checks that every chain ispbalance creates carries the
// prefix, fits iptables' limit, and cannot be mistaken for a chain of
// another kind.
func TestChainNames(t *testing.T) {
	if kn.MaxChainName != iptablesMaxChain {
		t.Errorf("MaxChainName = %d, iptables allows %d", kn.MaxChainName, iptablesMaxChain)
	}
	fixed := []string{kn.ChainInput, kn.ChainForward, kn.ChainOutput, kn.ChainPrerouting, kn.ChainPostrouting,
		kn.ChainBalance, kn.ChainRejectPerm, kn.ChainDropGen, kn.ChainDropInval, kn.ChainDropPerm,
		kn.ChainDropSpoof, kn.ChainDropFlood, kn.ChainDebug}
	markPrefix := kn.MarkChain("")
	seen := map[string]bool{}
	for _, c := range fixed {
		if !strings.HasPrefix(c, kn.ChainPrefix) || len(c) > iptablesMaxChain || seen[c] {
			t.Errorf("chain %q: no prefix %s, longer than %d, or used twice", c, kn.ChainPrefix, iptablesMaxChain)
		}
		if strings.HasPrefix(c, kn.UserChainPrefix) || strings.HasPrefix(c, markPrefix) {
			t.Errorf("chain %q could be a user chain or a mark chain", c)
		}
		seen[c] = true
	}
	for _, p := range []string{kn.UserChainPrefix, markPrefix} {
		if !strings.HasPrefix(p, kn.ChainPrefix) {
			t.Errorf("prefix %q does not start with %s", p, kn.ChainPrefix)
		}
	}
	if strings.HasPrefix(kn.UserChainPrefix, markPrefix) || strings.HasPrefix(markPrefix, kn.UserChainPrefix) {
		t.Errorf("user chains (%s) and mark chains (%s) share names", kn.UserChainPrefix, markPrefix)
	}
	for _, b := range []string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"} {
		if c := kn.UserChain(b); len(c) > iptablesMaxChain {
			t.Errorf("UserChain(%s) = %q is longer than %d", b, c, iptablesMaxChain)
		}
	}
}

// longest returns the longest name of n repetitions of "A" that accepts
// takes, for n up to 64.
func longest(accepts func(name string) bool) string {
	best := ""
	for n := 1; n <= 64; n++ {
		if name := strings.Repeat("A", n); accepts(name) {
			best = name
		}
	}
	return best
}

// TestLongestChainNames checks the parsers against iptables' limit: the
// longest service name balance.conf takes, and the longest chain name a
// rule file may create, still fit once ispbalance has prefixed them.
func TestLongestChainNames(t *testing.T) {
	service := longest(func(name string) bool {
		_, err := config.Parse("balance.conf", strings.NewReader(name+" eth0 isp\n"))
		return err == nil
	})
	if c := kn.MarkChain(service); service == "" || len(c) > iptablesMaxChain {
		t.Errorf("longest service name %q (%d) gives the chain %q (%d), iptables allows %d", service, len(service), c, len(c), iptablesMaxChain)
	}
	chain := longest(func(name string) bool {
		_, err := rules.ParseFile("f", rules.Firewall, []byte("iptables -N "+name+"\n"))
		return err == nil
	})
	if c := kn.UserChain(chain); chain == "" || len(c) > iptablesMaxChain {
		t.Errorf("longest rule-file chain name %q (%d) gives the chain %q (%d), iptables allows %d", chain, len(chain), c, len(c), iptablesMaxChain)
	}
	// The limits must not be stricter than the room there is either.
	if room := iptablesMaxChain - len(kn.UserChainPrefix); len(chain) != room {
		t.Errorf("rule files may name chains of %d characters; ISPB-U- leaves room for %d", len(chain), room)
	}
	if room := iptablesMaxChain - len(kn.MarkChain("")); len(service) != room {
		t.Errorf("service names may have %d characters; %s leaves room for %d", len(service), kn.MarkChain(""), room)
	}
}

// ipsetMaxName is ipset's own limit on set names, written out here: the
// kernel keeps them in IPSET_MAXNAMELEN (32) bytes with the NUL.
const ipsetMaxName = 31

// TestStickyNames checks that the longest service name balance.conf
// takes still gives a keep chain and sticky sets within the kernel's
// limits, and that the two families' sets and the keep and mark chains
// never share a name.
func TestStickyNames(t *testing.T) {
	if kn.MaxSetName != ipsetMaxName {
		t.Errorf("MaxSetName = %d, ipset allows %d", kn.MaxSetName, ipsetMaxName)
	}
	service := longest(func(name string) bool {
		_, err := config.Parse("balance.conf", strings.NewReader(name+" eth0 isp\n"))
		return err == nil
	})
	if c := kn.KeepChain(service); len(c) > iptablesMaxChain {
		t.Errorf("KeepChain(%q) = %q is longer than %d", service, c, iptablesMaxChain)
	}
	for _, v6 := range []bool{false, true} {
		if s := kn.StickySet(service, v6); len(s) > ipsetMaxName || !strings.HasPrefix(s, kn.SetPrefix) {
			t.Errorf("StickySet(%q, %v) = %q is longer than %d or lacks %s", service, v6, s, ipsetMaxName, kn.SetPrefix)
		}
	}
	if kn.StickySet("A", false) == kn.StickySet("A", true) {
		t.Error("both families' sticky sets have one name")
	}
	keep, mark := kn.KeepChain(""), kn.MarkChain("")
	if strings.HasPrefix(keep, mark) || strings.HasPrefix(mark, keep) || strings.HasPrefix(keep, kn.UserChainPrefix) {
		t.Errorf("keep chains (%s) share names with mark chains (%s) or user chains (%s)", keep, mark, kn.UserChainPrefix)
	}
}

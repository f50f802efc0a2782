package render

import (
	"fmt"
	"strings"

	"github.com/ispbalance/ispbalance/internal/plan"
)

// IPSetCreate renders `ipset restore -exist` input that creates the
// sticky sets. Each entry carries the timeout the firewall gives it, so
// the sets themselves are made with timeout support and no default
// (timeout 0): they are the same whatever sticky_timeout says, and a
// change of it keeps the addresses they hold.
func IPSetCreate(sets []plan.StickySet) string {
	var b strings.Builder
	for _, s := range sets {
		family := "inet"
		if s.IPv6 {
			family = "inet6"
		}
		fmt.Fprintf(&b, "create %s hash:ip family %s timeout 0\n", s.Name, family)
	}
	return b.String()
}

// IPSetDestroy renders `ipset restore` input that destroys the named
// sets.
func IPSetDestroy(names []string) string {
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "destroy %s\n", n)
	}
	return b.String()
}

// stickyScript is the -d part for sticky=source: the sets, made before
// the firewall that refers to them.
func stickyScript(b *strings.Builder, s *plan.Sticky) {
	fmt.Fprintf(b, "\n# sticky=source: a LAN address keeps its ISP while it opens a new connection at least every %d s\n", s.Timeout)
	b.WriteString("# (sticky_timeout); each ISP's set holds its addresses, made before the firewall refers to them\n")
	b.WriteString("ipset restore -exist <<'EOF'\n")
	b.WriteString(IPSetCreate(s.Sets))
	b.WriteString("EOF\n")
}

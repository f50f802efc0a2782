package render

import (
	"fmt"
	"io"
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

// StickyStatus is sticky=... as -s shows it.
type StickyStatus struct {
	// Mode is "connection" or "source".
	Mode string `json:"mode"`
	// Timeout is sticky_timeout, under sticky=source.
	Timeout int `json:"timeout_seconds,omitempty"`
	// Held says how many LAN addresses each ISP holds now.
	Held []StickyHeld `json:"held,omitempty"`
	// Problem says why Held is missing.
	Problem string `json:"problem,omitempty"`
}

// StickyHeld is how many LAN addresses one ISP holds; IPv6 is nil when
// the ISP balances no IPv6.
type StickyHeld struct {
	Service string `json:"service"`
	IPv4    int    `json:"ipv4"`
	IPv6    *int   `json:"ipv6,omitempty"`
}

func writeSticky(w io.Writer, st *StickyStatus) {
	if st == nil {
		return
	}
	if st.Mode != "source" {
		fmt.Fprintln(w, "Sticky: per connection (each new connection gets an ISP by weight)")
		return
	}
	fmt.Fprintf(w, "Sticky: per LAN address, kept %d s after its last new connection", st.Timeout)
	if st.Problem != "" {
		fmt.Fprintf(w, "; %s\n", st.Problem)
		return
	}
	var held []string
	for _, h := range st.Held {
		s := fmt.Sprintf("%s %d", h.Service, h.IPv4)
		if h.IPv6 != nil {
			s += fmt.Sprintf(" (IPv6 %d)", *h.IPv6)
		}
		held = append(held, s)
	}
	fmt.Fprintf(w, "; addresses held: %s\n", strings.Join(held, ", "))
}

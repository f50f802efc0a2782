package boottest

import (
	"sort"
	"strings"

	"github.com/ispbalance/ispbalance/internal/lab"
)

// kernelState is the router's routing, firewall and sysctls as `apt-get
// remove` must leave them: rules, IPv4 routes of every table, both
// firewalls, and the forwarding and reverse-path settings. Read from the
// lab's side of the router namespace, with the machine's own tools.
func (r *router) kernelState() string {
	r.t.Helper()
	var b strings.Builder
	for _, c := range [][]string{
		{"ip", "-4", "rule"}, {"ip", "-6", "rule"}, {"ip", "-4", "route", "show", "table", "all"},
		{"iptables-save"}, {"ip6tables-save"},
		{"sysctl", "-a", "-r", `^net\.ipv[46]\.(ip_forward|conf\.(all|default|wan[0-9]|lan[0-9])\.(rp_filter|forwarding|ignore_routes_with_linkdown|src_valid_mark))$`},
	} {
		out, err := r.lab.Exec("router", c...)
		if err != nil {
			r.t.Fatal(err)
		}
		text := string(out)
		if strings.HasSuffix(c[0], "-save") {
			text = lab.WithoutEmptyTables(lab.StripCounters(text))
		}
		text = strings.NewReplacer(" dead", "", " linkdown", "").Replace(text)
		b.WriteString(strings.Join(c, " ") + ":\n" + text + "\n")
	}
	return b.String()
}

// addForeign gives the router what other software on it installed: a
// rule, a table, chains; ispbalance must leave them alone.
func (r *router) addForeign() {
	r.t.Helper()
	for _, c := range [][]string{
		{"ip", "rule", "add", "pref", "1234", "from", "10.99.0.0/16", "lookup", "77"},
		{"ip", "route", "add", "10.99.0.0/16", "via", "100.64.2.1", "table", "77"},
		{"iptables", "-w", "-N", "FOREIGN"},
		{"iptables", "-w", "-A", "INPUT", "-s", "10.99.0.0/16", "-j", "FOREIGN"},
		{"iptables", "-w", "-t", "nat", "-N", "FOREIGN-NAT"},
	} {
		if _, err := r.lab.Exec("router", c...); err != nil {
			r.t.Fatal(err)
		}
	}
}

// diffLines lists the lines only in a and only in b.
func diffLines(a, b string) (onlyA, onlyB []string) {
	count := map[string]int{}
	for _, l := range strings.Split(a, "\n") {
		count[l]++
	}
	for _, l := range strings.Split(b, "\n") {
		count[l]--
	}
	for l, n := range count {
		for ; n > 0; n-- {
			onlyA = append(onlyA, l)
		}
		for ; n < 0; n++ {
			onlyB = append(onlyB, l)
		}
	}
	sort.Strings(onlyA)
	sort.Strings(onlyB)
	return onlyA, onlyB
}

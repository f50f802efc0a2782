package render

import (
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	kn "github.com/ispbalance/ispbalance/internal/kernelnames"
	"github.com/ispbalance/ispbalance/internal/plan"
)

// RestoreOptions says what the kernel already has, so that the restore
// text adds only what is missing and removes what is stale.
type RestoreOptions struct {
	// HaveJump reports whether the jump already exists. Nil means none do.
	HaveJump func(table string, j plan.Jump) bool
	// Stale lists, per table, chains of ours that exist but that the plan
	// no longer wants; they are emptied and deleted in the same transaction.
	Stale map[string][]string
	// StaleJumps lists, per table, jumps from built-in chains to our
	// chains that exist but that the plan no longer wants, once for each
	// copy. They are deleted before stale chains, which the kernel will
	// not delete while a jump leads to them.
	StaleJumps map[string][]plan.Jump
	// Existing holds, per table and chain, the rule lines (as after
	// "-A CHAIN ") of our chains now in the kernel. A chain whose lines are
	// already exactly the plan's is left out; a table with nothing to do is
	// left out too. Nil writes everything.
	Existing map[string]map[string][]string
}

// Restore renders the firewall as input for `iptables-restore --noflush`.
// Declaring a chain with `:NAME - [0:0]` empties it in --noflush mode, so
// each table is replaced in one transaction while other software's chains
// and rules in the built-in chains are left alone. With Existing set,
// only changed chains are rewritten: every nf_tables transaction that
// deletes rules costs the kernel milliseconds, and a typical rebuild (one
// ISP up or down) changes a single chain. It returns "" when nothing
// needs doing.
func Restore(tables []plan.Table, opts RestoreOptions) string {
	text, _ := RestoreWithOrigins(tables, opts)
	return text
}

// RestoreWithOrigins is Restore that also says, for each line of the
// text (origins[i] for line i+1), which rule file line it comes from, ""
// for ispbalance's own, so iptables-restore's complaint about a line can
// be reported against the admin's file.
func RestoreWithOrigins(tables []plan.Table, opts RestoreOptions) (string, []string) {
	var b strings.Builder
	var origins []string
	line := func(origin, format string, args ...any) {
		fmt.Fprintf(&b, format+"\n", args...)
		origins = append(origins, origin)
	}
	for _, t := range tables {
		var changed []plan.Chain
		for _, c := range t.Chains {
			if !unchanged(opts.Existing, t.Name, c) {
				changed = append(changed, c)
			}
		}
		var jumps []plan.Jump
		for _, j := range t.Jumps {
			if opts.HaveJump == nil || !opts.HaveJump(t.Name, j) {
				jumps = append(jumps, j)
			}
		}
		stale := append([]string(nil), opts.Stale[t.Name]...)
		sort.Strings(stale)
		if len(changed) == 0 && len(jumps) == 0 && len(stale) == 0 && len(opts.StaleJumps[t.Name]) == 0 {
			continue
		}
		line("", "*%s", t.Name)
		for _, c := range changed {
			line("", ":%s - [0:0]", c.Name)
		}
		for _, name := range stale {
			line("", ":%s - [0:0]", name)
		}
		for _, c := range changed {
			for i, rule := range c.Rules {
				line(c.Origin(i), "-A %s %s", c.Name, Quote(rule))
			}
		}
		for _, j := range jumps {
			line("", "-A %s -j %s", j.From, j.To)
		}
		for _, j := range opts.StaleJumps[t.Name] {
			line("", "-D %s -j %s", j.From, j.To)
		}
		for _, name := range stale {
			line("", "-X %s", name)
		}
		line("", "COMMIT")
	}
	return b.String(), origins
}

func unchanged(existing map[string]map[string][]string, table string, c plan.Chain) bool {
	have, ok := existing[table][c.Name]
	if !ok || len(have) != len(c.Rules) {
		return false
	}
	for i, rule := range c.Rules {
		if have[i] != Quote(rule) {
			return false
		}
	}
	return true
}

// Quote joins arguments the way iptables-save writes them, quoting those
// that contain spaces (log prefixes) so iptables-restore reads them back
// as one argument.
func Quote(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"'\\") {
			out[i] = strconv.Quote(a)
		} else {
			out[i] = a
		}
	}
	return strings.Join(out, " ")
}

// from renders where a line comes from, as a trailing shell comment.
func from(origin string) string {
	if origin == "" {
		return ""
	}
	return "  # " + origin
}

// ShellQuote renders argv so that a shell would split it back into the
// same words; used only for showing commands, never for running them.
func ShellQuote(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=,+%@") == "" {
			out[i] = a
		} else {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(out, " ")
}

// RouteArgs renders a route as arguments after `ip route replace`.
func RouteArgs(rt plan.Route) string {
	var b strings.Builder
	dst := rt.Dst.String()
	if rt.Dst.Bits() == 0 {
		dst = "default"
	}
	if rt.Unreachable {
		fmt.Fprintf(&b, "unreachable %s table %s proto %d", dst, tableName(rt.Table), kn.RouteProtocol)
		return b.String()
	}
	b.WriteString(dst)
	if len(rt.Nexthops) > 0 {
		// iproute2 reads everything after the first nexthop as nexthops,
		// so the table comes first.
		if rt.Metric != 0 {
			fmt.Fprintf(&b, " metric %d", rt.Metric)
		}
		fmt.Fprintf(&b, " table %s proto %d", tableName(rt.Table), kn.RouteProtocol)
		for _, nh := range rt.Nexthops {
			fmt.Fprintf(&b, " nexthop via %s dev %s weight %d", nh.Gateway, nh.Device, nh.Weight)
			if nh.OnLink {
				b.WriteString(" onlink")
			}
		}
		return b.String()
	}
	if rt.Gateway.IsValid() {
		fmt.Fprintf(&b, " via %s", rt.Gateway)
	}
	fmt.Fprintf(&b, " dev %s", rt.Device)
	if !rt.Gateway.IsValid() {
		b.WriteString(" scope link")
	}
	if rt.Src.IsValid() {
		fmt.Fprintf(&b, " src %s", rt.Src)
	}
	if rt.OnLink {
		b.WriteString(" onlink")
	}
	if rt.Metric != 0 {
		fmt.Fprintf(&b, " metric %d", rt.Metric)
	}
	fmt.Fprintf(&b, " table %s proto %d", tableName(rt.Table), kn.RouteProtocol)
	return b.String()
}

// family is the `ip` option that picks IPv6 ("-6 "), or "".
func family(ipv6 bool) string {
	if ipv6 {
		return "-6 "
	}
	return ""
}

// RuleArgs renders a policy rule as arguments after `ip rule add`.
func RuleArgs(ru plan.Rule) string {
	var b strings.Builder
	fmt.Fprintf(&b, "priority %d", ru.Priority)
	if ru.Src.IsValid() {
		fmt.Fprintf(&b, " from %s", ru.Src)
	}
	if ru.Mark != 0 || ru.Mask != 0 {
		fmt.Fprintf(&b, " fwmark %s/%s", kn.FormatMark(ru.Mark), kn.FormatMark(ru.Mask))
	}
	if ru.Dst.IsValid() {
		fmt.Fprintf(&b, " to %s", ru.Dst)
	}
	if ru.Iif != "" {
		fmt.Fprintf(&b, " iif %s", ru.Iif)
	}
	if ru.Oif != "" {
		fmt.Fprintf(&b, " oif %s", ru.Oif)
	}
	fmt.Fprintf(&b, " lookup %s", tableName(ru.Table))
	if ru.SuppressPrefixlen >= 0 {
		fmt.Fprintf(&b, " suppress_prefixlength %d", ru.SuppressPrefixlen)
	}
	return b.String()
}

func tableName(t int) string {
	if t == 254 {
		return "main"
	}
	return strconv.Itoa(t)
}

// Script writes the whole plan as a shell script a person could read or
// run by hand. Running it on a router that already has ispbalance's
// rules may complain about rules that exist; the applier reconciles
// instead.
func Script(w io.Writer, p plan.Plan) error {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# ispbalance plan (mode " + string(p.Mode) + ")\n")
	for _, isp := range p.ISPs {
		state := "down"
		if isp.Routing && !isp.Up {
			state = "judged down, routing as a last resort"
		} else if isp.Routing {
			state = "up"
		} else if isp.Up && !isp.Carrier {
			state = "no carrier"
		}
		fmt.Fprintf(&b, "# isp %s: dev %s addr %s gw %s (%s) weight %d table %d mark %s: %s\n",
			isp.Name, isp.Device, isp.Addr, isp.Gateway, isp.GwFrom, isp.Weight, isp.Table, kn.FormatMark(isp.Mark), state)
		if isp.HasIPv6() {
			fmt.Fprintf(&b, "#   ipv6: addr %s gw %s (%s)\n", isp.Addr6, isp.Gateway6, isp.GwFrom6)
		}
		for _, w := range isp.Warnings {
			fmt.Fprintf(&b, "# warning %s: %s\n", isp.Name, w)
		}
	}
	for _, lan := range p.LANs {
		fmt.Fprintf(&b, "# lan %s: dev %s addr %s\n", lan.Name, lan.Device, lan.Addr)
	}
	for _, s := range p.Skipped {
		fmt.Fprintf(&b, "# skipped %s (dev %s): %s\n", s.Service, s.Device, s.Reason)
	}
	if p.LastResort {
		b.WriteString("# LAST RESORT: every ISP is judged down; routing through every ISP with carrier (last_resort=unreachable turns this off)\n")
	}
	if p.LastResort6 {
		b.WriteString("# LAST RESORT (IPv6): every ISP's IPv6 is judged down; IPv6 goes through every ISP that routes IPv4\n")
	}
	for _, n := range p.Notes {
		fmt.Fprintf(&b, "# rule files: %s\n", n)
	}
	if len(p.PreRun) > 0 {
		b.WriteString("\n# pre-run commands (run before applying, each on its own, without a shell)\n")
		for _, c := range p.PreRun {
			fmt.Fprintf(&b, "%s%s\n", ShellQuote(c.Argv), from(c.Origin))
		}
	}
	b.WriteString("\n# kernel settings\n")
	for _, s := range p.Sysctls {
		fmt.Fprintf(&b, "sysctl -q -w %s=%s\n", s.Key(), s.Value)
	}
	b.WriteString("\n# routes in ispbalance's tables\n")
	for _, rt := range p.Routes {
		fmt.Fprintf(&b, "ip %sroute replace %s%s\n", family(rt.IPv6()), RouteArgs(rt), from(rt.Origin))
	}
	fmt.Fprintf(&b, "\n# policy rules (priorities %d-%d are ispbalance's)\n", kn.PrioMin, kn.PrioMax)
	for _, ru := range p.Rules {
		fmt.Fprintf(&b, "ip %srule add %s%s\n", family(ru.IPv6), RuleArgs(ru), from(ru.Origin))
	}
	if p.Sticky != nil {
		stickyScript(&b, p.Sticky)
	}
	b.WriteString("\n# firewall: one transaction per table; jumps from built-in chains are added once\n")
	b.WriteString("iptables-restore --noflush <<'EOF'\n")
	b.WriteString(Restore(p.Firewall, RestoreOptions{}))
	b.WriteString("EOF\n")
	if len(p.Firewall6) > 0 {
		b.WriteString("\n# IPv6 firewall: the same policy, plus neighbour discovery, MLD, ICMPv6 errors and DHCPv6\n")
		b.WriteString("ip6tables-restore --noflush <<'EOF'\n")
		b.WriteString(Restore(p.Firewall6, RestoreOptions{}))
		b.WriteString("EOF\n")
	}
	if len(p.PostRun) > 0 {
		b.WriteString("\n# post-run commands (run after applying, each on its own, without a shell)\n")
		for _, c := range p.PostRun {
			fmt.Fprintf(&b, "%s%s\n", ShellQuote(c.Argv), from(c.Origin))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// StatusRow is one line of the status table.
type StatusRow struct {
	Service string `json:"service"`
	Device  string `json:"device"`
	Role    string `json:"role"`
	// State is the recorded verdict for an ISP (up, down, long_down,
	// unknown), or up/absent for a LAN.
	State string `json:"state"`
	// Routing says whether the ISP carries new connections now.
	Routing     bool         `json:"routing"`
	Addr        netip.Prefix `json:"address"`
	Gateway     netip.Addr   `json:"gateway"`
	GatewayFrom string       `json:"gateway_from,omitempty"`
	Problem     string       `json:"problem,omitempty"`
	// Addr6 and Gateway6 are an ISP's IPv6, when it has any.
	Addr6        netip.Prefix `json:"address6,omitzero"`
	Gateway6     netip.Addr   `json:"gateway6,omitzero"`
	Gateway6From string       `json:"gateway6_from,omitempty"`
	// Delegated6 is the prefix the ISP delegated to the router.
	Delegated6     netip.Prefix `json:"delegated6,omitzero"`
	Delegated6From string       `json:"delegated6_from,omitempty"`
	// Warnings are the planner's words about an odd but working setup,
	// or why a present service was left out.
	Warnings []string `json:"warnings,omitempty"`
}

// MonitorStatus is the running monitor's view.
type MonitorStatus struct {
	PID     int          `json:"pid"`
	Started time.Time    `json:"started"`
	ISPs    []MonitorISP `json:"isps"`
}

// MonitorISP is one ISP as the monitor sees it; the monitor publishes
// its snapshot in this form.
type MonitorISP struct {
	Service     string          `json:"service"`
	Device      string          `json:"device"`
	State       string          `json:"state"`
	Since       time.Time       `json:"since"`
	Probing     bool            `json:"probing"`
	LossPercent float64         `json:"loss_percent"`
	AvgRTTms    float64         `json:"avg_rtt_ms"`
	Targets     []MonitorTarget `json:"targets"`
	Warning     string          `json:"warning,omitempty"`
	// HoldSeconds is set for a link that flap damping holds down: how
	// much longer its probes must keep answering before it goes up.
	HoldSeconds float64 `json:"hold_seconds,omitempty"`
	// Degraded says, for a link beyond its quality thresholds (State
	// "degraded"), which figure exceeds which threshold. MaxRTTms and
	// MaxJitterMs are the thresholds (max_rtt_ms, max_jitter_ms; 0 or
	// absent: none).
	Degraded    string  `json:"degraded,omitempty"`
	MaxRTTms    float64 `json:"max_rtt_ms,omitempty"`
	MaxJitterMs float64 `json:"max_jitter_ms,omitempty"`
	// IPv6 marks an ISP's IPv6 half.
	IPv6 bool `json:"ipv6,omitempty"`
	// P95RTTms and JitterMs (the standard deviation) are over the
	// window's replies, as AvgRTTms.
	P95RTTms float64 `json:"p95_rtt_ms"`
	JitterMs float64 `json:"jitter_ms"`
	// InStateSeconds is how long the link has been in its state when
	// the snapshot was written.
	InStateSeconds float64 `json:"in_state_seconds"`
	// Traffic is what went through the ISP since the monitor started;
	// nil before the first count.
	Traffic *MonitorTraffic `json:"traffic,omitempty"`
}

// MonitorTraffic is one link's traffic since the monitor started, and
// its share of all ISPs' (percent).
type MonitorTraffic struct {
	// Bytes and BytesPercent count the ISP's device both ways, both
	// families: the IPv6 half, sharing the device, leaves them at 0.
	Bytes        uint64  `json:"bytes"`
	BytesPercent float64 `json:"bytes_percent"`
	// Connections are the new connections assigned to the link.
	Connections        uint64  `json:"connections"`
	ConnectionsPercent float64 `json:"connections_percent"`
	// Tracked are the connections the kernel tracks on it now.
	Tracked int `json:"tracked"`
}

// MonitorEvent is one state change the monitor recorded, with the
// figures it judged by.
type MonitorEvent struct {
	Time        time.Time `json:"time"`
	ISP         string    `json:"isp"`
	Family      string    `json:"family"`
	From        string    `json:"from"`
	To          string    `json:"to"`
	Reason      string    `json:"reason"`
	Gateway     string    `json:"gateway,omitempty"`
	LossPercent float64   `json:"loss_percent"`
	AvgRTTms    float64   `json:"avg_rtt_ms"`
	P95RTTms    float64   `json:"p95_rtt_ms"`
	JitterMs    float64   `json:"jitter_ms"`
}

// Events writes the event history as a table, oldest first.
func Events(w io.Writer, events []MonitorEvent) error {
	if len(events) == 0 {
		_, err := fmt.Fprintln(w, "No state changes recorded yet.")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "Time\tISP\tChange\tLoss\tRTT avg/p95/jitter\tReason")
	for _, e := range events {
		name := e.ISP
		if e.Family == "ipv6" {
			name += " (IPv6)"
		}
		rtt := "-"
		if e.P95RTTms > 0 {
			rtt = fmt.Sprintf("%.1f/%.1f/%.1f ms", e.AvgRTTms, e.P95RTTms, e.JitterMs)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s -> %s\t%.0f %%\t%s\t%s\n", e.Time.Local().Format("2006-01-02 15:04:05"), name, e.From, e.To,
			e.LossPercent, rtt, e.Reason)
	}
	return tw.Flush()
}

// MonitorTarget is one probe target's latest result.
type MonitorTarget struct {
	Addr string `json:"addr"`
	Last string `json:"last"`
}

// StatusReport is everything -s shows.
type StatusReport struct {
	Rows []StatusRow `json:"services"`
	// Firewall says whether ispbalance's firewall is in place.
	Firewall string `json:"firewall"`
	// Drift lists where the kernel differs from what a rebuild would
	// install now.
	Drift []string `json:"drift,omitempty"`
	// NotInstalled says nothing of ispbalance's is in the kernel: it was
	// never started here, or stopped.
	NotInstalled bool `json:"not_installed"`
	// Stopped says `ifup-balance stop` was the last word: hooks and
	// external lsm events change nothing until balancing is started again.
	Stopped bool `json:"stopped"`
	// LastResort says every ISP is judged down and the router routes
	// through every ISP with carrier rather than through none.
	LastResort bool `json:"last_resort"`
	// LastResort6 is LastResort for IPv6.
	LastResort6 bool `json:"last_resort_ipv6"`
	// Sticky says what keeps its ISP (sticky=connection or source).
	Sticky *StickyStatus `json:"sticky,omitempty"`
	// Monitor is nil when no monitor runs.
	Monitor *MonitorStatus `json:"monitor"`
}

// Status writes the status table: the original's Service, Device, State
// and Routing columns, then what discovery found, then the firewall.
func Status(w io.Writer, report StatusReport) error {
	rows := report.Rows
	defer writeMonitor(w, report)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "Service\tDevice\tRole\tState\tRouting\tAddress\tGateway")
	for _, r := range rows {
		routing := "-"
		if r.Role == "isp" {
			routing = "no"
			if r.Routing {
				routing = "yes"
			}
		}
		addr, gw := "-", "-"
		if r.Addr.IsValid() {
			addr = r.Addr.String()
		} else if r.Problem != "" {
			addr = "(" + r.Problem + ")"
		}
		if r.Gateway.IsValid() {
			gw = r.Gateway.String()
			if r.GatewayFrom != "" {
				gw += " (" + r.GatewayFrom + ")"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Service, r.Device, r.Role, r.State, routing, addr, gw)
		if r.Addr6.IsValid() || r.Gateway6.IsValid() {
			addr6 := "(link-local uplink)"
			if r.Addr6.IsValid() {
				addr6 = r.Addr6.String()
			}
			gw6 := "-"
			if r.Gateway6.IsValid() {
				gw6 = r.Gateway6.String()
				if r.Gateway6From != "" {
					gw6 += " (" + r.Gateway6From + ")"
				}
			}
			fmt.Fprintf(tw, "\t\t\t\t\t%s\t%s\n", addr6, gw6)
		}
		if r.Delegated6.IsValid() {
			from := ""
			if r.Delegated6From != "" {
				from = " (" + r.Delegated6From + ")"
			}
			fmt.Fprintf(tw, "\t\t\t\t\tdelegated %s%s\t\n", r.Delegated6, from)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rows {
		for _, warning := range r.Warnings {
			fmt.Fprintf(w, "warning: %s: %s\n", r.Service, warning)
		}
	}
	return nil
}

// formatBytes says a byte count in the largest unit that keeps it at
// least 1 (decimal units, as interface counters are usually read).
func formatBytes(n uint64) string {
	units := []string{"B", "kB", "MB", "GB", "TB", "PB"}
	v, i := float64(n), 0
	for v >= 1000 && i < len(units)-1 {
		v /= 1000
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

// formatSeconds says a duration to the second, in the two largest units.
func formatSeconds(s float64) string {
	d := time.Duration(s) * time.Second
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

func writeMonitor(w io.Writer, report StatusReport) {
	switch {
	case report.Stopped:
		fmt.Fprintln(w, "Balancing: stopped by `ifup-balance stop`; hooks do nothing until `ifup-balance` or the service starts it again")
	case report.NotInstalled:
		fmt.Fprintln(w, "Balancing: not installed (run ifup-balance, or start the service, to balance)")
	}
	if len(report.Drift) > 0 {
		fmt.Fprintln(w, "Installed differs from discovered (a rebuild, or the monitor within seconds, brings them together):")
		for _, d := range report.Drift {
			fmt.Fprintf(w, "  missing or stale: %s\n", d)
		}
	}
	if report.LastResort6 {
		fmt.Fprintln(w, "LAST RESORT (IPv6): every ISP's IPv6 is judged down; IPv6 goes through every ISP that routes IPv4")
	}
	if report.LastResort {
		fmt.Fprintln(w, "LAST RESORT: every ISP is judged down; routing through every ISP with carrier (last_resort=unreachable turns this off)")
	}
	fmt.Fprintf(w, "Firewall: %s\n", report.Firewall)
	writeSticky(w, report.Sticky)
	m := report.Monitor
	if m == nil {
		fmt.Fprintln(w, "Monitor: not running")
		return
	}
	fmt.Fprintf(w, "Monitor: running (pid %d)\n", m.PID)
	if len(m.ISPs) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  ISP\tMonitor state\tSince\tFor\tLoss\tRTT avg/p95/jitter\tTraffic\tConnections\tTargets")
	for _, is := range m.ISPs {
		var targets []string
		for _, t := range is.Targets {
			targets = append(targets, t.Addr+": "+t.Last)
		}
		since := "-"
		if !is.Since.IsZero() {
			since = is.Since.Format("2006-01-02 15:04:05")
		}
		state := is.State
		if is.HoldSeconds > 0 {
			state += fmt.Sprintf(" (held: flapping, %.0f s more of good probes)", is.HoldSeconds)
		}
		traffic, conns := "-", "-"
		if t := is.Traffic; t != nil {
			if !is.IPv6 {
				traffic = fmt.Sprintf("%s (%.0f %%)", formatBytes(t.Bytes), t.BytesPercent)
			}
			conns = fmt.Sprintf("%d (%.0f %%), %d open", t.Connections, t.ConnectionsPercent, t.Tracked)
		}
		rtt := "-"
		if is.P95RTTms > 0 {
			rtt = fmt.Sprintf("%.1f/%.1f/%.1f ms", is.AvgRTTms, is.P95RTTms, is.JitterMs)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%.0f %%\t%s\t%s\t%s\t%s\n", is.Service, state, since,
			formatSeconds(is.InStateSeconds), is.LossPercent, rtt, traffic, conns, strings.Join(targets, ", "))
	}
	tw.Flush()
	for _, is := range m.ISPs {
		if is.Degraded != "" {
			fmt.Fprintf(w, "  degraded: %s: %s\n", is.Service, is.Degraded)
		}
		if is.Warning != "" {
			fmt.Fprintf(w, "  warning: %s: %s\n", is.Service, is.Warning)
		}
	}
}

// Package rules turns the user's rule files — the balance/routes,
// balance/firewall, balance/pre-run and balance/post-run directories
// beside balance.conf — into plain values for the planner: iptables rules,
// `ip route` and `ip rule` commands, forced routes, and the argv lists of
// other commands to run before or after the plan is applied.
//
// It never runs or applies anything. Reading the four directories
// (ReadDir) and listing the link monitor's event scripts (EventScripts)
// are its only I/O, and both refuse files and directories that anyone but
// root could change (package trust), unless balance.conf says
// insecure_files=allow; parsing, expansion against the interface facts
// (Expand) and translation of the original's Perl rule files (Migrate)
// are pure.
//
// # Rule file syntax
//
// One command per line; `#` starts a comment at the beginning of a word,
// blank lines are ignored. A line is split into words like a POSIX shell
// would (single quotes, double quotes, backslash) but is never given to a
// shell, so anything a shell would treat specially outside quotes — `|`,
// `&`, `;`, `<`, `>`, `(`, `)`, backquotes, `$(`, and `$NAME` variables —
// is an error rather than a surprise. Glob characters are left as they
// are. A line cannot continue onto the next one.
//
// Placeholders `${SERVICE.FIELD}` name a service of balance.conf and one of
// the fields dev, ip, gw, net, fwmark, table and weight, or for IPv6 ip6,
// gw6, net6 and prefix6 (an ISP's IPv6 address, gateway, uplink network
// and delegated prefix; a LAN's IPv6 address and network). `${:lan.FIELD}` and
// `${:isp.FIELD}` repeat the line once per LAN or ISP service, in name
// order. Placeholders of the same group on one line refer to the same
// service (they advance together); placeholders of different groups give
// every combination, outer loop first in the order the groups first
// appear, so `-i ${:lan.dev} -o ${:isp.dev}` yields one rule per LAN and
// ISP pair. Placeholders are expanded outside quotes and inside double
// quotes, never inside single quotes.
//
// A line whose named service is absent (no device or address) or down is
// skipped, and so is the repetition of a group line for such a service;
// each skip is reported as a Note, because the rebuild after the service
// comes back will include it. So is a line, or a repetition, that needs
// an IPv6 value a service lacks (no IPv6, no delegated prefix, its IPv6
// judged down): it means nothing until the service has one. An unknown
// service, or a field that the service's role does not have (a LAN has no
// gw, fwmark, table, weight, gw6 or prefix6), is an error, and so is a
// value of the wrong family: an IPv4 field in an ip6tables or `ip -6`
// line, an IPv6 one in an iptables or `ip -4` line, or both in one `ip`
// line.
//
// # What becomes of a line
//
// In routes/ and firewall/, `iptables` and `ip6tables` (also their
// `-legacy` and `-nft` forms), `ip route` and `ip rule` lines join the
// planner's atomic plan; an `ip` line is IPv6 with -6, else when the first
// address it names is (as iproute2 decides), and the planner checks every
// address against that family. Everything else, and every line of pre-run/ and post-run/
// that is not a directive, is a command: pre-run commands run before the
// plan is applied, all others after it, in file order (routes/, firewall/,
// then post-run/). `ip` with global options other than -4 and -6 (`ip -n
// NS`, `ip -f inet6`) is a command too.
//
// The planner owns the firewall's policies and built-in chains, so an
// iptables or ip6tables line may only append, insert or delete rules (-A, -I, -D),
// create a chain of its own (-N), or flush or delete such a chain (-F,
// -X); chains named with ispbalance's prefix are off limits, and -w is
// dropped because a transaction takes no lock option. A file's chains
// are installed as ISPB-U-NAME, so NAME has at most 21 of the 28
// characters iptables allows. `ip route` may add,
// replace, append or del; `ip rule` may add or del.
//
// Directives may appear in any rule file and always join the plan:
//
//	forward PORT HOST[:PORT] [tcp|udp]...
//	forward-with-snat PORT HOST[:PORT] [tcp|udp]...
//	force-route SERVICE|DEVICE [SELECTORS...]
//	add-route CIDR DEVICE [masquerade]
//	firewall-rule CHAIN TABLE|- ARGS...
//
// forward's HOST may be IPv6, written ADDRESS or [ADDRESS]:PORT. A host
// with a global address is reachable as it is, so its port is opened from
// every ISP (and translated only when PORT differs); a host with a unique
// local address is reached at each ISP's IPv6 address through DNAT, as in
// IPv4. The other directives act on IPv4 only.
//
// forward, forward-with-snat and add-route act on every ISP and LAN
// that is present, whether or not the monitor calls it up: inbound
// connections can still arrive on an ISP whose probes fail, and keeping
// these rules steady avoids churn on every up/down event. force-route
// applies only while its ISP is up; while it is down its connections are
// balanced like any other, and a Note says so. A directive's iptables
// rules are appended to the built-in chains it names; where user rules sit
// among ispbalance's own is the planner's decision.
package rules

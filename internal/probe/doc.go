// Package probe sends ICMP echo requests out of one particular ISP and
// matches the replies. A probe must leave through the ISP it tests,
// whatever the main routing table prefers: its socket carries the ISP's
// fwmark (so the ISP's routing table is used) and is bound to the ISP's
// address (so the reply comes back the same way and the source rule and
// reverse-path filter agree). SO_BINDTODEVICE alone is not enough: IPv4
// then ARPs for the target on the link instead of using the gateway.
package probe

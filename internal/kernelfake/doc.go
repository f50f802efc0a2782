// Package kernelfake is an in-memory stand-in for the parts of the kernel
// the applier writes to: IPv4 policy rules, routes and links (Routing, in
// the shape of a netlink handle) and an iptables table set (Netfilter, in
// the shape of iptables-save and iptables-restore), with the nf_tables
// ruleset generation both families share (Ruleset), and IP sets (IPSets,
// in the shape of ipset restore and ipset list). Tests of the applier
// run against it without root.
//
// The fakes are strict: they answer with the errno the kernel gives
// (measured on Linux 6.x through vishvananda/netlink), refuse what the
// kernel refuses, and reject outright any field or command they do not
// model, so that a test cannot pass by leaning on something the real
// kernel would not do. What they leave out is said where it matters.
package kernelfake

// Package lab builds throwaway network-namespace topologies of a router
// with several ISPs, LAN hosts and an "internet" server, so that tests,
// the demo and benchmarks can exercise the real kernel without touching
// the host's own network namespace, and tears them down again.
//
// The layout for a lab with N ISPs and one or two LANs:
//
//	lan<j>: eth0 192.168.j.10/24 ── lan<j> 192.168.j.1/24 :router
//	router: wan<k> 100.64.k.2/24 ── down0 100.64.k.1/24 :isp<k>
//	isp<k>: up0 198.51.100.(4k-3)/30 ── isp<k> 198.51.100.(4k-2)/30 :inet
//	inet:   203.0.113.10/32 on lo, the server every test talks to
//
// The router gets no default route and no policy routing: that is the
// job of the software under test. ISPs forward without NAT and drop
// packets from their customer link whose source is not the customer's
// subnet, so a reply that leaves by the wrong ISP is lost, as it would
// be on the real internet. The internet routes each 100.64.k.0/24 back
// through ISP k, so the server sees which ISP carried a masqueraded
// connection.
//
// The package does not import "testing": it is used by tests of other
// packages, by the demo and by the benchmark command alike.
package lab

package plan

import (
	"strconv"

	"github.com/ispbalance/ispbalance/internal/config"
	kn "github.com/ispbalance/ispbalance/internal/kernelnames"
)

// ICMPv6 types the IPv6 firewall names (RFC 4443, RFC 4861, RFC 3810).
const (
	icmp6DestUnreachable = 1
	icmp6PacketTooBig    = 2
	icmp6TimeExceeded    = 3
	icmp6ParamProblem    = 4
	icmp6EchoRequest     = 128
	icmp6MLDQuery        = 130
	icmp6MLDReport       = 131
	icmp6MLDDone         = 132
	icmp6RouterSolicit   = 133
	icmp6RouterAdvert    = 134
	icmp6NeighSolicit    = 135
	icmp6NeighAdvert     = 136
	icmp6MLDv2Report     = 143
)

// linkLocal6 is where neighbour discovery's companions (MLD, DHCPv6
// servers answering a client) speak from.
const linkLocal6 = "fe80::/10"

func icmp6(t int) []string {
	return r("-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type", strconv.Itoa(t))
}

// ndTypes are neighbour discovery's messages. They never cross a router
// (hop limit 255 proves the sender is on the link), and without them
// IPv6 does not work at all, so they pass before connection tracking,
// which cannot classify them.
var ndTypes = []int{icmp6RouterSolicit, icmp6RouterAdvert, icmp6NeighSolicit, icmp6NeighAdvert}

var mldTypes = []int{icmp6MLDQuery, icmp6MLDReport, icmp6MLDDone, icmp6MLDv2Report}

// errorTypes are the ICMPv6 errors path-MTU discovery and diagnostics
// need (RFC 4890); dropping packet-too-big black-holes large transfers.
var errorTypes = []int{icmp6DestUnreachable, icmp6PacketTooBig, icmp6TimeExceeded, icmp6ParamProblem}

// planFirewall6 is the IPv4 filter policy for IPv6, installed whether or
// not the ISPs hand out IPv6: every IPv6-enabled interface has a
// link-local address, so without it the router's services answer its ISP
// segment over IPv6 while IPv4 is default-deny. It has the same chains
// under the same names (the families keep separate tables) plus what
// IPv6 cannot live without.
func planFirewall6(cfg *config.Config, p Plan) []Table {
	chains := logAndActChains(r("-j", "REJECT", "--reject-with", "icmp6-port-unreachable"))

	input := Chain{Name: kn.ChainInput, Rules: [][]string{
		r("-i", "lo", "-j", "ACCEPT"),
		r("-s", "::1/128", "-j", kn.ChainDropSpoof),
	}}
	for _, t := range ndTypes {
		input.add(append(icmp6(t), "-m", "hl", "--hl-eq", "255", "-j", "ACCEPT"))
	}
	for _, t := range mldTypes {
		input.add(append(r("-s", linkLocal6), append(icmp6(t), "-j", "ACCEPT")...))
	}
	input.Rules = append(input.Rules,
		r("-m", "conntrack", "--ctstate", "INVALID", "-j", kn.ChainDropInval),
		r("-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"),
	)
	for _, t := range errorTypes {
		input.add(append(icmp6(t), "-j", "ACCEPT"))
	}
	input.Rules = append(input.Rules,
		append(icmp6(icmp6EchoRequest), "-m", "limit", "--limit", "1/sec", "-j", "ACCEPT"),
		append(icmp6(icmp6EchoRequest), "-j", kn.ChainDropFlood),
	)
	for _, lan := range p.LANs {
		// A LAN's IPv6 prefixes come and go with the ISPs' delegations,
		// and its hosts speak from link-local addresses too (DHCPv6,
		// router solicitations), so the LAN is trusted by device.
		input.add(r("-i", lan.Kernel, "-j", "ACCEPT"))
	}
	for _, dev := range ispDevices(p) {
		// DHCPv6 servers answer the router's client from link-local.
		input.add(r("-s", linkLocal6, "-i", dev, "-p", "udp", "-m", "udp", "--sport", "547", "--dport", "546", "-j", "ACCEPT"))
	}
	if cfg.InternetSSH && len(p.ISPs) > 0 {
		input.Rules = append(input.Rules,
			r("-p", "tcp", "-m", "tcp", "--dport", "22", "-m", "conntrack", "--ctstate", "NEW",
				"-m", "hashlimit", "--hashlimit-upto", "6/min", "--hashlimit-burst", "6",
				"--hashlimit-mode", "srcip", "--hashlimit-name", "ispb-ssh6", "-j", "ACCEPT"),
			r("-p", "tcp", "-m", "tcp", "--dport", "22", "-j", kn.ChainDropFlood),
		)
	}
	input.add(r("-j", kn.ChainRejectPerm))

	forward := Chain{Name: kn.ChainForward, Rules: [][]string{
		r("-m", "conntrack", "--ctstate", "INVALID", "-j", kn.ChainDropInval),
		r("-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"),
	}}
	for _, t := range errorTypes {
		forward.add(append(icmp6(t), "-j", "ACCEPT"))
	}
	for _, lan := range p.LANs {
		for _, isp := range p.ISPs {
			if cfg.MayForward(lan.Name, isp.Name) {
				forward.add(r("-i", lan.Kernel, "-o", isp.Kernel, "-j", "ACCEPT"))
			}
		}
		for _, other := range p.LANs {
			if other.Name != lan.Name && cfg.MayForward(lan.Name, other.Name) {
				forward.add(r("-i", lan.Kernel, "-o", other.Kernel, "-j", "ACCEPT"))
			}
		}
	}
	forward.add(r("-j", kn.ChainDropGen))

	output := Chain{Name: kn.ChainOutput, Rules: [][]string{
		r("-o", "lo", "-j", "ACCEPT"),
	}}
	// The router's own neighbour discovery and MLD work on every link,
	// configured or not, as ARP does for IPv4.
	for _, t := range append(append([]int(nil), ndTypes...), mldTypes...) {
		output.add(append(icmp6(t), "-j", "ACCEPT"))
	}
	output.add(r("-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"))
	for _, dev := range devices(p) {
		output.add(r("-o", dev, "-j", "ACCEPT"))
	}
	output.add(r("-j", kn.ChainDropSpoof))

	chains = append(chains, input, forward, output)
	return []Table{{Name: "filter", Chains: chains, Jumps: []Jump{
		{"INPUT", kn.ChainInput}, {"FORWARD", kn.ChainForward}, {"OUTPUT", kn.ChainOutput},
	}}}
}

// ispDevices lists the kernel devices of the ISPs, each once.
func ispDevices(p Plan) []string {
	var out []string
	seen := map[string]bool{}
	for _, isp := range p.ISPs {
		if !seen[isp.Kernel] {
			seen[isp.Kernel] = true
			out = append(out, isp.Kernel)
		}
	}
	return out
}

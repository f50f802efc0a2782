package plan

import (
	"math"
	"sort"
	"strconv"

	"github.com/ispbalance/ispbalance/internal/config"
	kn "github.com/ispbalance/ispbalance/internal/kernelnames"
)

// logChains are the original's log-and-act chains. Each logs at most once
// a minute (burst 1) so that a flood cannot fill the disk.
var logChains = []struct {
	name, prefix string
	action       []string
}{
	{kn.ChainDropGen, "GENERAL", []string{"-j", "DROP"}},
	{kn.ChainDropInval, "INVALID", []string{"-j", "DROP"}},
	{kn.ChainDropPerm, "ACCESS-DENIED", []string{"-j", "DROP"}},
	{kn.ChainDropSpoof, "SPOOFED", []string{"-j", "DROP"}},
	{kn.ChainDropFlood, "FLOOD", []string{"-j", "DROP"}},
	{kn.ChainRejectPerm, "REJECTED", nil}, // the family's REJECT: see logAndActChains
	{kn.ChainDebug, "DEBUG", nil},
}

func r(args ...string) []string { return args }

func planFirewall(cfg *config.Config, p Plan, u *userRules) ([]Table, error) {
	mangle, err := mangleTable(p, u)
	if err != nil {
		return nil, err
	}
	tables := []Table{filterTable(cfg, p, u), mangle, natTable(p, u)}
	if raw := u.userChains("raw"); len(raw) > 0 {
		tables = append(tables, Table{Name: "raw", Chains: raw, Jumps: builtinJumps(u, "raw", "PREROUTING", "OUTPUT")})
	}
	return tables, nil
}

// builtinJumps jumps from built-in chains to the user chains that hold a
// rule file's rules for them.
func builtinJumps(u *userRules, table string, builtins ...string) []Jump {
	var jumps []Jump
	for _, b := range builtins {
		if u.has(table, b) {
			jumps = append(jumps, Jump{b, kn.UserChain(b)})
		}
	}
	return jumps
}

// userJump is the rule in one of our chains that runs the rule files'
// rules for a built-in chain, or nil when there are none.
func userJump(u *userRules, table, builtin string) [][]string {
	if u.has(table, builtin) {
		return [][]string{r("-j", kn.UserChain(builtin))}
	}
	return nil
}

// logAndActChains builds the log-and-act chains; reject is the REJECT
// rule, which differs by family.
func logAndActChains(reject []string) []Chain {
	var chains []Chain
	for _, lc := range logChains {
		c := Chain{Name: lc.name, Rules: [][]string{
			r("-m", "limit", "--limit", "1/min", "--limit-burst", "1", "-j", "LOG", "--log-prefix", kn.LogPrefix+lc.prefix+": "),
		}}
		action := lc.action
		if lc.name == kn.ChainRejectPerm {
			action = reject
		}
		if action != nil {
			c.Rules = append(c.Rules, action)
		}
		chains = append(chains, c)
	}
	return chains
}

func filterTable(cfg *config.Config, p Plan, u *userRules) Table {
	chains := logAndActChains(r("-j", "REJECT", "--reject-with", "icmp-port-unreachable"))

	input := Chain{Name: kn.ChainInput, Rules: [][]string{
		r("-i", "lo", "-j", "ACCEPT"),
		r("-s", "127.0.0.0/8", "-j", kn.ChainDropSpoof),
		r("-m", "conntrack", "--ctstate", "INVALID", "-j", kn.ChainDropInval),
		r("-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"),
	}}
	// The rule files' INPUT rules come before ispbalance's openings, so
	// they can refuse what ispbalance would accept, and accept anything.
	input.Rules = append(input.Rules, userJump(u, "filter", "INPUT")...)
	input.Rules = append(input.Rules,
		r("-p", "icmp", "-m", "icmp", "--icmp-type", "8", "-m", "limit", "--limit", "1/sec", "-j", "ACCEPT"),
		r("-p", "icmp", "-m", "icmp", "--icmp-type", "8", "-j", kn.ChainDropFlood),
	)
	for _, lan := range p.LANs {
		input.Rules = append(input.Rules,
			r("-s", lan.Addr.Masked().String(), "-i", lan.Kernel, "-j", "ACCEPT"),
			r("-i", lan.Kernel, "-m", "addrtype", "--dst-type", "BROADCAST", "-j", "ACCEPT"),
			// DHCP requests come from 0.0.0.0, outside the LAN's subnet.
			r("-i", lan.Kernel, "-p", "udp", "-m", "udp", "--sport", "68", "--dport", "67", "-j", "ACCEPT"),
		)
	}
	if cfg.InternetSSH && len(p.ISPs) > 0 {
		// The original's documentation promises ssh from the Internet;
		// a per-source rate limit keeps password guessing slow.
		input.Rules = append(input.Rules,
			r("-p", "tcp", "-m", "tcp", "--dport", "22", "-m", "conntrack", "--ctstate", "NEW",
				"-m", "hashlimit", "--hashlimit-upto", "6/min", "--hashlimit-burst", "6",
				"--hashlimit-mode", "srcip", "--hashlimit-name", "ispb-ssh", "-j", "ACCEPT"),
			r("-p", "tcp", "-m", "tcp", "--dport", "22", "-j", kn.ChainDropFlood),
		)
	}
	input.Rules = append(input.Rules, r("-j", kn.ChainRejectPerm))

	forward := Chain{Name: kn.ChainForward, Rules: [][]string{
		r("-m", "conntrack", "--ctstate", "INVALID", "-j", kn.ChainDropInval),
		r("-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"),
	}}
	forward.Rules = append(forward.Rules, userJump(u, "filter", "FORWARD")...)
	for _, lan := range p.LANs {
		for _, isp := range p.ISPs {
			if cfg.MayForward(lan.Name, isp.Name) {
				forward.Rules = append(forward.Rules, r("-s", lan.Addr.Masked().String(), "-i", lan.Kernel, "-o", isp.Kernel, "-j", "ACCEPT"))
			}
		}
		for _, other := range p.LANs {
			if other.Name != lan.Name && cfg.MayForward(lan.Name, other.Name) {
				forward.Rules = append(forward.Rules, r("-s", lan.Addr.Masked().String(), "-d", other.Addr.Masked().String(), "-i", lan.Kernel, "-o", other.Kernel, "-j", "ACCEPT"))
			}
		}
	}
	forward.Rules = append(forward.Rules, r("-j", kn.ChainDropGen))

	output := Chain{Name: kn.ChainOutput, Rules: [][]string{
		r("-o", "lo", "-j", "ACCEPT"),
		r("-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"),
	}}
	output.Rules = append(output.Rules, userJump(u, "filter", "OUTPUT")...)
	for _, dev := range devices(p) {
		output.Rules = append(output.Rules, r("-o", dev, "-j", "ACCEPT"))
	}
	output.Rules = append(output.Rules, r("-j", kn.ChainDropSpoof))

	chains = append(chains, input, forward, output)
	chains = append(chains, u.userChains("filter")...)
	return Table{Name: "filter", Chains: chains, Jumps: []Jump{
		{"INPUT", kn.ChainInput}, {"FORWARD", kn.ChainForward}, {"OUTPUT", kn.ChainOutput},
	}}
}

// devices lists the kernel devices of LANs then ISPs, each once.
func devices(p Plan) []string {
	var out []string
	seen := map[string]bool{}
	add := func(d string) {
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	for _, lan := range p.LANs {
		add(lan.Kernel)
	}
	for _, isp := range p.ISPs {
		add(isp.Kernel)
	}
	return out
}

func markArg(m uint32) string { return kn.FormatMark(m) + "/" + kn.FormatMark(kn.MarkMask) }

// markChain assigns a connection to an ISP: the mark on the packet routes
// it, the mark saved on the connection keeps its later packets there.
func markChain(isp ISP) Chain {
	mask := kn.FormatMark(kn.MarkMask)
	return Chain{Name: kn.MarkChain(isp.Name), Rules: [][]string{
		r("-j", "MARK", "--set-xmark", markArg(isp.Mark)),
		r("-j", "CONNMARK", "--save-mark", "--nfmask", mask, "--ctmask", mask),
	}}
}

// mssClamps are the mangle FORWARD rules for ppp uplinks: PPPoE's smaller
// MTU breaks path-MTU discovery behind many firewalls, and clamping the
// MSS of SYNs avoids stalled sessions.
func mssClamps(isps []ISP) [][]string {
	var rules [][]string
	for _, isp := range isps {
		if isp.PPP {
			rules = append(rules,
				r("-o", isp.Kernel, "-p", "tcp", "-m", "tcp", "--tcp-flags", "SYN,RST", "SYN", "-j", "TCPMSS", "--clamp-mss-to-pmtu"),
				r("-i", isp.Kernel, "-p", "tcp", "-m", "tcp", "--tcp-flags", "SYN,RST", "SYN", "-j", "TCPMSS", "--clamp-mss-to-pmtu"))
		}
	}
	return rules
}

func mangleTable(p Plan, u *userRules) (Table, error) {
	mask := kn.FormatMark(kn.MarkMask)
	pre := Chain{Name: kn.ChainPrerouting, Rules: [][]string{
		// Packets of a connection already assigned to an ISP carry its mark
		// again, so the connection stays on that ISP for its lifetime.
		r("-j", "CONNMARK", "--restore-mark", "--nfmask", mask, "--ctmask", mask),
		r("-m", "mark", "!", "--mark", "0x0/"+mask, "-j", "RETURN"),
	}}
	pre.Rules = append(pre.Rules, userJump(u, "mangle", "PREROUTING")...)
	forced, origins, err := u.forceRoutes(p)
	if err != nil {
		return Table{}, err
	}
	var chains []Chain
	for _, isp := range p.ISPs {
		chains = append(chains, markChain(isp))
		// Connections that arrive on an ISP are tied to it, so replies to
		// them (port forwards, services on the router) leave the same way.
		in := r("-i", isp.Kernel)
		if isp.Alias {
			in = r("-d", isp.Addr.Addr().String()+"/32", "-i", isp.Kernel)
		}
		pre.add(append(in, "-m", "conntrack", "--ctstate", "NEW", "-j", kn.MarkChain(isp.Name)))
	}
	// force-route lines come after the inbound marking, so a connection
	// that arrived on an ISP keeps replying through it, and before
	// balancing, whose random choice only takes unmarked packets.
	for i, rule := range forced {
		pre.addFrom(origins[i], append(r("-m", "mark", "--mark", "0x0/"+mask), rule...))
	}
	for _, lan := range p.LANs {
		pre.add(r("-s", lan.Addr.Masked().String(), "-i", lan.Kernel,
			"-m", "conntrack", "--ctstate", "NEW", "-m", "addrtype", "!", "--dst-type", "LOCAL", "-j", kn.ChainBalance))
	}
	balance := Chain{Name: kn.ChainBalance, Rules: balanceRules(p)}

	forward := Chain{Name: kn.ChainForward, Rules: append(userJump(u, "mangle", "FORWARD"), mssClamps(p.ISPs)...)}
	chains = append([]Chain{pre, balance, forward}, chains...)
	chains = append(chains, u.userChains("mangle")...)
	jumps := []Jump{{"PREROUTING", kn.ChainPrerouting}, {"FORWARD", kn.ChainForward}}
	return Table{Name: "mangle", Chains: chains, Jumps: append(jumps, builtinJumps(u, "mangle", "INPUT", "OUTPUT", "POSTROUTING")...)}, nil
}

// balanceRules assigns a new connection to an up ISP. In balanced mode it
// is the original's cascade of random matches: sorted by share ascending,
// rule i matches with share_i / (1 - earlier shares), so each ISP gets its
// weight's share and the last rule always matches. In failover mode all
// go to the heaviest up ISP.
func balanceRules(p Plan) [][]string {
	var routing []ISP
	for _, isp := range p.ISPs {
		if isp.Routing {
			routing = append(routing, isp)
		}
	}
	return balanceCascade(p.Mode, routing)
}

// balanceCascade assigns a new connection to one of routing, by weight or
// to the failover choice: the same for both families.
func balanceCascade(mode config.Mode, routing []ISP) [][]string {
	return balanceCascadeTo(mode, routing, kn.MarkChain)
}

// balanceCascadeTo is balanceCascade jumping to the chain target names
// for the chosen ISP.
func balanceCascadeTo(mode config.Mode, routing []ISP, target func(service string) string) [][]string {
	if len(routing) == 0 {
		return nil
	}
	if mode == config.Failover {
		return [][]string{r("-j", target(heaviest(routing).Name))}
	}
	// A mark chain returns here after marking; matching only unmarked
	// packets stops the cascade at the first ISP chosen.
	unmarked := r("-m", "mark", "--mark", "0x0/"+kn.FormatMark(kn.MarkMask))
	total := 0
	for _, isp := range routing {
		total += isp.Weight
	}
	sort.SliceStable(routing, func(i, j int) bool { return routing[i].Weight < routing[j].Weight })
	var rules [][]string
	remaining := total
	for i, isp := range routing {
		if i == len(routing)-1 {
			rules = append(rules, append(unmarked[:len(unmarked):len(unmarked)], "-j", target(isp.Name)))
			break
		}
		prob := float64(isp.Weight) / float64(remaining)
		rules = append(rules, append(unmarked[:len(unmarked):len(unmarked)], "-m", "statistic", "--mode", "random", "--probability", probability(prob), "-j", target(isp.Name)))
		remaining -= isp.Weight
	}
	return rules
}

// probability spells a random-match probability exactly as iptables-save
// prints it back: the kernel keeps it as a fraction of 2^31, shown with 11
// decimals. Writing the canonical form lets the applier recognise an
// unchanged chain and leave it alone.
func probability(p float64) string {
	return strconv.FormatFloat(math.Round(p*0x80000000)/0x80000000, 'f', 11, 64)
}

func natTable(p Plan, u *userRules) Table {
	// The rule files' POSTROUTING rules (their own SNAT, say) come before
	// ispbalance's masquerading.
	post := Chain{Name: kn.ChainPostrouting, Rules: userJump(u, "nat", "POSTROUTING")}
	if len(p.LANs) > 0 {
		// An alias ISP shares its device with another ISP. MASQUERADE picks
		// the device address in the gateway's subnet, which is right only
		// while the gateway lies in one; naming the alias's address for its
		// connections (known by their mark), ahead of the device's general
		// MASQUERADE, keeps it right for on-link gateways outside it too.
		for _, isp := range p.ISPs {
			if isp.Alias {
				post.Rules = append(post.Rules, r("-o", isp.Kernel, "-m", "mark", "--mark", markArg(isp.Mark), "-j", "SNAT", "--to-source", isp.Addr.Addr().String()))
			}
		}
		for _, isp := range p.ISPs {
			if !isp.Alias {
				post.Rules = append(post.Rules, r("-o", isp.Kernel, "-j", "MASQUERADE"))
			}
		}
	}
	chains := append([]Chain{post}, u.userChains("nat")...)
	jumps := append([]Jump{{"POSTROUTING", kn.ChainPostrouting}}, builtinJumps(u, "nat", "PREROUTING", "INPUT", "OUTPUT")...)
	return Table{Name: "nat", Chains: chains, Jumps: jumps}
}

package labtest

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ispbalance/ispbalance/internal/lab"
)

// writeRules puts a rule file beside balance.conf, in balance/DIR/NAME.
func (r *router) writeRules(dir, name, text string) string {
	r.t.Helper()
	path := filepath.Join(r.dir, "balance", dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		r.t.Fatal(err)
	}
	return path
}

// serve runs a socat server in a lab namespace that answers every
// connection with reply, until the test ends. It returns once the
// server answers on the namespace's loopback.
func (r *router) serve(ns string, port int, reply string) {
	r.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", r.lab.NS(ns), "socat",
		fmt.Sprintf("TCP-LISTEN:%d,fork,reuseaddr", port), "SYSTEM:echo "+reply)
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("starting socat: %v", err)
	}
	r.t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lab.WaitFor(r.t, fmt.Sprintf("socat answering on port %d in %s", port, ns), settle, func() bool {
		got, err := r.fetch(ns, fmt.Sprintf("127.0.0.1:%d", port))
		return err == nil && got == reply
	})
}

// fetch connects from a namespace and returns what the server said.
func (r *router) fetch(ns, addr string) (string, error) {
	out, err := r.lab.Exec(ns, "socat", "-T2", "-", "TCP:"+addr+",connect-timeout=2")
	return strings.TrimSpace(string(out)), err
}

// TestRulesForward: `forward 8080 LANHOST:80` makes the LAN server
// reachable from the internet through each ISP's address, and each reply
// leaves by the ISP the request came in on (the ISPs drop spoofed
// sources, and failover mode makes the router prefer ISP1 for its own
// traffic, so a reply via the wrong ISP would be lost).
func TestRulesForward(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "fwd"}, "mode=failover\nISP1 wan1 isp default 5\nISP2 wan2 isp default 1\nLAN lan1 lan\n")
	r.writeRules("firewall", "10.forwards", "# a web server on the LAN\nforward 8080 192.168.1.10:80\n")
	r.serve("lan1", 80, "lan-web")
	direct := r.lab.LANHost(1).String() + ":80"
	// The internet host gets a route to the LAN server's own address,
	// and ISP1 routes it: before ispbalance the server answers there.
	r.routeLANFromInternet(1)
	r.beforeBalancing(1, func() {
		if got, err := r.fetch("inet", direct); err != nil || got != "lan-web" {
			t.Fatalf("before ispbalance, the LAN server does not answer the internet at %s: %q, %v: the test could not tell a blocked port", direct, got, err)
		}
	})
	r.mustRun()
	for k := 1; k <= 2; k++ {
		got, err := r.fetch("inet", r.lab.RouterISPAddr(k).String()+":8080")
		if err != nil || got != "lan-web" {
			t.Errorf("via ISP%d's address: %q, %v", k, got, err)
		}
	}
	// The LAN server is not reachable at its own address from outside,
	// though the forward just brought the same client to it.
	if got, err := r.fetch("inet", direct); err == nil {
		t.Errorf("LAN server reachable directly from the internet: %q", got)
	}
}

// TestRulesForwardWithSNAT: a LAN client reaches the forwarded service at
// the router's ISP1 address.
func TestRulesForwardWithSNAT(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "snat"}, ispConf(1, 1))
	r.writeRules("firewall", "10.forwards", "forward-with-snat 8080 192.168.1.10:80\n")
	r.serve("lan1", 80, "lan-web")
	r.mustRun()
	got, err := r.fetch("lan1", r.lab.RouterISPAddr(1).String()+":8080")
	if err != nil || got != "lan-web" {
		t.Errorf("LAN client to the router's ISP1 address: %q, %v", got, err)
	}
	if got, err := r.fetch("inet", r.lab.RouterISPAddr(2).String()+":8080"); err != nil || got != "lan-web" {
		t.Errorf("internet client via ISP2: %q, %v", got, err)
	}
}

// TestRulesForceRoute: force-route sends every new connection to port 25
// through DSL while other traffic stays balanced; with DSL down, port 25
// is balanced over the rest.
func TestRulesForceRoute(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "force", ISPs: 3}, "CABLE wan1 isp\nDSL wan2 isp\nFIBER wan3 isp\nLAN lan1 lan\n")
	r.writeRules("firewall", "20.mail", "force-route DSL -p tcp --dport 25\n")
	r.startServer()
	stop, err := r.lab.StartServer(25)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	r.mustRun()
	mail := map[int]int{}
	for i := 0; i < 100; i++ {
		k, err := r.lab.WhichISP(1, 25, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		mail[k]++
	}
	if mail[2] != 100 {
		t.Errorf("port 25 connections per ISP %v, want all 100 via DSL (ISP 2)", mail)
	}
	web := r.shares(1, 150)
	if web[1] < 25 || web[2] < 25 || web[3] < 25 {
		t.Errorf("other connections are not balanced: %v", web)
	}
	r.mustRun("down", "DSL")
	mail = map[int]int{}
	for i := 0; i < 100; i++ {
		k, err := r.lab.WhichISP(1, 25, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		mail[k]++
	}
	if mail[2] != 0 || mail[1] < 25 || mail[3] < 25 {
		t.Errorf("with DSL down, port 25 connections per ISP %v, want balanced over CABLE and FIBER", mail)
	}
}

// TestRulesAddRoute: add-route makes a network behind a third router
// interface reachable from the LAN.
func TestRulesAddRoute(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "side"}, ispConf(1, 1))
	side := r.lab.Prefix() + "-side"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", side)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", side).Run() })
	run("-n", r.lab.NS("router"), "link", "add", "side0", "type", "veth", "peer", "name", "eth0", "netns", side)
	run("-n", r.lab.NS("router"), "addr", "add", "192.168.50.1/24", "dev", "side0")
	run("-n", r.lab.NS("router"), "link", "set", "side0", "up")
	run("-n", side, "addr", "add", "192.168.50.2/24", "dev", "eth0")
	run("-n", side, "addr", "add", "192.168.60.1/32", "dev", "lo")
	run("-n", side, "link", "set", "eth0", "up")
	run("-n", side, "link", "set", "lo", "up")
	run("-n", side, "route", "add", "default", "via", "192.168.50.1")
	srv := exec.Command("ip", "netns", "exec", side, "socat", "TCP-LISTEN:7000,fork,reuseaddr", "SYSTEM:echo side")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	// The side network's own host reaches the listener at the address
	// the LAN is to reach only after add-route.
	lab.WaitFor(t, "the side network's listener answering at 192.168.60.1:7000", settle, func() bool {
		out, err := exec.Command("ip", "netns", "exec", side, "socat", "-T2", "-", "TCP:192.168.60.1:7000,connect-timeout=2").Output()
		return err == nil && strings.TrimSpace(string(out)) == "side"
	})
	r.mustRun()
	if got, err := r.fetch("lan1", "192.168.60.1:7000"); err == nil {
		t.Fatalf("the side network is reachable before add-route: %q", got)
	}
	r.writeRules("routes", "10.side", "add-route 192.168.60.0/24 side0\n")
	r.mustRun()
	if got, err := r.fetch("lan1", "192.168.60.1:7000"); err != nil || got != "side" {
		t.Errorf("LAN to the side network after add-route: %q, %v", got, err)
	}
	if out := r.sh("router", "ip", "route", "show", "192.168.60.0/24"); !strings.Contains(out, "proto 177") {
		t.Errorf("the route is not tagged as ispbalance's: %s", out)
	}
	// Removing the file removes the route on the next rebuild.
	os.Remove(filepath.Join(r.dir, "balance", "routes", "10.side"))
	r.mustRun()
	if out := r.sh("router", "ip", "route", "show", "table", "all", "192.168.60.0/24"); strings.TrimSpace(out) != "" {
		t.Errorf("route left after its rule file was removed: %s", out)
	}
}

// TestRulesPlaceholderPerLAN: a ${:lan.net} line becomes one rule per LAN,
// and both rules work.
func TestRulesPlaceholderPerLAN(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "ph", LANs: 2}, "ISP1 wan1 isp\nISP2 wan2 isp\nLAN lan1 lan\nGUEST lan2 lan\n")
	r.startServer()
	stop, err := r.lab.StartServer(9999)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	// Before the rule exists, every LAN reaches the port it is to close.
	r.mustRun()
	blockedPort := netip.AddrPortFrom(r.lab.ServerAddr(), 9999)
	for j := 1; j <= 2; j++ {
		r.answers("lan"+itoa(j), blockedPort, "before the rule")
	}
	r.writeRules("firewall", "30.block", "# no LAN may reach the test port\niptables -A FORWARD -s ${:lan.net} -p tcp --dport 9999 -j REJECT\n")
	r.mustRun()
	save := r.sh("router", "iptables-save", "-t", "filter")
	for _, want := range []string{"-A ISPB-U-FORWARD -s 192.168.1.0/24 -p tcp", "-A ISPB-U-FORWARD -s 192.168.2.0/24 -p tcp"} {
		if !strings.Contains(save, want) {
			t.Errorf("missing %q:\n%s", want, save)
		}
	}
	for j := 1; j <= 2; j++ {
		if _, err := r.lab.WhichISP(j, 9999, time.Second); err == nil {
			t.Errorf("lan%d reached port 9999 despite the rule", j)
		}
		if _, err := r.lab.WhichISP(j, serverPort, 2*time.Second); err != nil {
			t.Errorf("lan%d cannot reach the internet: %v", j, err)
		}
	}
}

// TestRulesBadLine: a shell construct, an unknown service and a rule
// iptables rejects each fail the run with file:line and leave the
// previous state exactly as it was.
func TestRulesBadLine(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "rbad"}, ispConf(1, 1))
	r.writeRules("firewall", "10.good", "iptables -A INPUT -p tcp --dport 2222 -j ACCEPT\n")
	r.mustRun()
	before := r.kernelState()
	cases := []struct{ text, want string }{
		{"# ok\niptables -A INPUT -p tcp --dport 25 -j ACCEPT; rm -rf /\n", "20.bad:2:"},
		{"iptables -A INPUT -i ${NOPE.dev} -j ACCEPT\n", "20.bad:1:"},
		{"\n\niptables -A INPUT -m nosuchmatch --foo -j ACCEPT\n", "20.bad:3:"},
		{"ip route add 10.1.0.0/16 via 192.0.2.1 dev nosuchdev\n", "20.bad:1:"},
	}
	for _, c := range cases {
		path := r.writeRules("firewall", "20.bad", c.text)
		out, err := r.run()
		t.Logf("%q -> %s", c.text, strings.TrimSpace(out))
		if err == nil {
			t.Errorf("bad rule file accepted: %q", c.text)
		}
		if !strings.Contains(out, c.want) {
			t.Errorf("error for %q does not name %s:\n%s", c.text, c.want, out)
		}
		if after := r.kernelState(); after != before {
			t.Errorf("bad rule file %q changed the kernel state:\n--- before\n%s\n--- after\n%s", c.text, before, after)
		}
		os.Remove(path)
	}
}

// TestRulesCommands: pre-run and post-run commands run around the
// rebuild, without a shell, and -d shows them without running them.
func TestRulesCommands(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "cmd"}, ispConf(1, 1))
	marker := filepath.Join(r.dir, "ran")
	r.writeRules("pre-run", "10.touch", "touch "+marker+"-pre\n")
	r.writeRules("post-run", "10.touch", "touch '"+marker+"-post $(not a shell)'\n")
	out := r.mustRun("-d")
	if !strings.Contains(out, "touch "+marker+"-pre") || !strings.Contains(out, "post-run commands") {
		t.Errorf("-d does not show the commands:\n%s", out)
	}
	if _, err := os.Stat(marker + "-pre"); err == nil {
		t.Fatalf("-d ran a pre-run command")
	}
	r.mustRun()
	if _, err := os.Stat(marker + "-pre"); err != nil {
		t.Errorf("pre-run command did not run: %v", err)
	}
	if _, err := os.Stat(marker + "-post $(not a shell)"); err != nil {
		t.Errorf("post-run command did not run with its argument as one word: %v", err)
	}
}

// TestRuleFileChainsLeftAlone: rule files spelled unlike iptables-save
// (`-s 192.168.1.5` comes back as `/32`, a force-route line in our own
// PREROUTING chain) no longer make every rebuild rewrite their chains:
// the second rebuild after a change learns the kernel's spelling, the
// ones after it send no firewall transaction at all; an edit of the rule
// file is still applied.
func TestRuleFileChainsLeftAlone(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "spell"}, ispConf(1, 1))
	r.writeRules("firewall", "10-site", "iptables -A INPUT -s 192.168.1.5 -p tcp --dport 2222 -j ACCEPT\nforce-route ISP1 -p tcp --dport 25\n")
	r.mustRun()
	r.mustRun()
	if out := r.mustRun("-v"); strings.Contains(out, "iptables-restore") {
		t.Errorf("a rebuild with unchanged facts and rule files rewrote the firewall:\n%s", out)
	}
	r.writeRules("firewall", "10-site", "iptables -A INPUT -s 192.168.1.6 -p tcp --dport 2222 -j ACCEPT\nforce-route ISP1 -p tcp --dport 25\n")
	r.mustRun()
	if save := r.sh("router", "iptables-save", "-t", "filter"); !strings.Contains(save, "-s 192.168.1.6/32") || strings.Contains(save, "192.168.1.5") {
		t.Errorf("an edited rule file was not applied:\n%s", save)
	}
}

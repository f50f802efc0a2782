package labtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ispbalance/ispbalance/internal/lab"
)

// repoRoot is where the distro hook scripts live, two levels up.
var repoRoot, _ = filepath.Abs("../..")

// hookResult is one hook run: its exit status and what it logged.
type hookResult struct {
	code   int
	stderr string
}

// hookArgs are ifup-balance's options that point a hook at this router's
// files: its configuration, state and run directories, and --root so the
// hooks' lease records stay in the test's directory too.
func (r *router) hookArgs() []string {
	return []string{"-c", r.conf, "--state-dir", r.stateDir, "--run-dir", r.runDir(), "--root", r.dir}
}

// hook runs `ifup-balance hook ARGS...` in the router namespace with
// exactly the environment env (plus PATH), as the network stack would.
func (r *router) hook(env []string, args ...string) hookResult {
	r.t.Helper()
	full := append([]string{"netns", "exec", r.lab.NS("router"), "env", "-i", "PATH=" + os.Getenv("PATH")}, env...)
	full = append(append(append(full, binary), r.hookArgs()...), append([]string{"-v", "hook"}, args...)...)
	return runHookCmd(r.t, exec.Command("ip", full...))
}

func runHookCmd(t *testing.T, cmd *exec.Cmd) hookResult {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	res := hookResult{stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		res.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running the hook: %v", err)
	}
	return res
}

// wrapper writes a stand-in for /usr/sbin/ifup-balance that runs the test
// binary with this router's options, so the distro's own hook scripts can
// run unchanged but for that path.
func (r *router) wrapper() string {
	r.t.Helper()
	path := filepath.Join(r.dir, "ifup-balance-wrapper")
	script := fmt.Sprintf("#!/bin/sh\nexec %s %s \"$@\"\n", binary, strings.Join(r.hookArgs(), " "))
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		r.t.Fatal(err)
	}
	return path
}

// distroHook copies a hook script from distro/ with /usr/sbin/ifup-balance
// replaced by the wrapper.
func (r *router) distroHook(rel string) string {
	r.t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "distro", rel))
	if err != nil {
		r.t.Fatal(err)
	}
	path := filepath.Join(r.dir, filepath.Base(rel))
	text := strings.ReplaceAll(string(data), "/usr/sbin/ifup-balance", r.wrapper())
	if err := os.WriteFile(path, []byte(text), 0o755); err != nil {
		r.t.Fatal(err)
	}
	return path
}

// dhclientScriptHarness sources an exit hook the way Debian's
// /sbin/dhclient-script does (run_hook in isc-dhcp-client 4.4): inside a
// function, with exit_status as a local variable, in /bin/sh.
const dhclientScriptHarness = `run_hook() {
    local script="$1"
    local exit_status="$2"
    if [ -f $script ]; then
        . $script
    fi
    if [ -n "$exit_status" ] && [ "$exit_status" -ne 0 ]; then
        logger -p daemon.err "$script returned non-zero exit status $exit_status"
    fi
    return $exit_status
}
run_hook "$HOOK" 0
echo "dhclient-script went on after the hook"
`

// sourceDhclientHook runs the distro's dhclient exit hook with dhclient's
// exported variables env, sourced by /bin/sh in the router namespace.
func (r *router) sourceDhclientHook(env ...string) (hookResult, string) {
	r.t.Helper()
	hook := r.distroHook("debian/dhclient-exit-hook")
	full := append([]string{"netns", "exec", r.lab.NS("router"), "env", "-i", "PATH=" + os.Getenv("PATH"), "HOOK=" + hook}, env...)
	cmd := exec.Command("ip", append(full, "/bin/sh", "-c", dhclientScriptHarness)...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	res := runHookCmd(r.t, cmd)
	return res, stdout.String()
}

// moveISPGateway gives ISP k's router a new address on the customer link,
// as an ISP that renumbers its gateway does, and drops the old one.
func (r *router) moveISPGateway(k int, to string) {
	r.t.Helper()
	ns := "isp" + itoa(k)
	// Old one first: deleting a primary address takes its secondaries along.
	r.sh(ns, "ip", "addr", "del", r.lab.ISPGateway(k).String()+"/24", "dev", "down0")
	r.sh(ns, "ip", "addr", "add", to+"/24", "dev", "down0")
}

// ispTable lists ISP k's routing table; empty when the table does not exist.
func (r *router) ispTable(k int) string {
	out, _ := r.lab.Exec("router", "ip", "route", "show", "table", itoa(4200+k))
	return string(out)
}

// TestHookIfupdownPostUp: if-up.d's call with ifupdown's environment
// rebuilds (ISP1's table, flushed behind ispbalance's back, comes back);
// pre-up, other devices and --all do nothing; the script in if-up.d exits 0.
func TestHookIfupdownPostUp(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "hkif"}, ispConf(1, 1))
	r.mustRun()
	r.sh("router", "ip", "route", "flush", "table", "4201")
	ifupdown := func(iface, phase string) []string {
		return []string{"IFACE=" + iface, "LOGICAL=" + iface, "ADDRFAM=inet", "METHOD=static", "MODE=start", "PHASE=" + phase, "VERBOSITY=0"}
	}
	for _, ignored := range [][]string{ifupdown("wan1", "pre-up"), ifupdown("eth9", "post-up"), ifupdown("--all", "post-up")} {
		if res := r.hook(ignored, "ifupdown"); res.code != 0 || strings.Contains(res.stderr, "rebuilt") {
			t.Errorf("hook with %v: exit %d, log:\n%s", ignored, res.code, res.stderr)
		}
	}
	if out := r.ispTable(1); strings.TrimSpace(out) != "" {
		t.Fatalf("an ignored event rebuilt ISP1's table:\n%s", out)
	}
	// The if-up.d script itself, as run-parts runs it.
	script := r.distroHook("debian/ifupdown-hook")
	full := append([]string{"netns", "exec", r.lab.NS("router"), "env", "-i", "PATH=" + os.Getenv("PATH")}, ifupdown("wan1", "post-up")...)
	res := runHookCmd(t, exec.Command("ip", append(full, script)...))
	if res.code != 0 {
		t.Errorf("if-up.d hook exited %d: %s", res.code, res.stderr)
	}
	if out := r.ispTable(1); !strings.Contains(out, "default via 100.64.1.1 dev wan1") {
		t.Errorf("post-up did not rebuild ISP1's table:\n%s\nhook log:\n%s", out, res.stderr)
	}
}

// TestHookDhclientRenewNewGateway: a RENEW whose router moved, run through
// the distro's exit hook sourced like dhclient-script sources it, puts the
// new gateway in ISP1's table within 1 s, and traffic through ISP1 flows.
func TestHookDhclientRenewNewGateway(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "hkdh"}, ispConf(1, 1))
	r.startServer()
	r.mustRun()
	r.moveISPGateway(1, "100.64.1.254")
	start := time.Now()
	res, stdout := r.sourceDhclientHook("reason=RENEW", "interface=wan1", "medium=",
		"new_ip_address=100.64.1.2", "new_subnet_mask=255.255.255.0", "new_routers=100.64.1.254",
		"new_dhcp_lease_time=600", "old_ip_address=100.64.1.2", "old_routers=100.64.1.1")
	took := time.Since(start)
	if res.code != 0 || !strings.Contains(stdout, "went on after the hook") {
		t.Fatalf("sourced hook: exit %d, stdout %q, log:\n%s", res.code, stdout, res.stderr)
	}
	if out := r.ispTable(1); !strings.Contains(out, "default via 100.64.1.254 dev wan1") {
		t.Fatalf("ISP1's table after the RENEW:\n%s\nhook log:\n%s", out, res.stderr)
	}
	t.Logf("RENEW with a new router: ISP1's table updated %v after the hook started", took.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("ISP1's table took %v to follow the RENEW, want within 1 s", took)
	}
	// Every connection succeeds: those balanced onto ISP1 use the new gateway.
	if c := r.shares(1, 30); c[1] == 0 || c[1]+c[2] != 30 {
		t.Errorf("connections per ISP after the move: %v", c)
	}
	// The lease is gone: its record goes with it, and discovery falls back.
	res, _ = r.sourceDhclientHook("reason=EXPIRE", "interface=wan1", "old_ip_address=100.64.1.2", "old_routers=100.64.1.254")
	if _, err := os.Stat(filepath.Join(r.dir, "run/ispbalance/leases/wan1")); !os.IsNotExist(err) {
		t.Errorf("EXPIRE left the lease record (%v); log:\n%s", err, res.stderr)
	}
}

// TestNMDispatcherDhcp4Change: nm-dispatcher-balance, called with
// NetworkManager's arguments and an environment built from scratch as the
// dispatcher builds it, after NetworkManager put the renewed lease's new
// gateway in main, moves ISP1's table there within 1 s.
// It uses the default paths, so it runs in a private mount namespace with
// fresh /run and /var/lib.
func TestNMDispatcherDhcp4Change(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "hknm"}, ispConf(1, 1))
	disp := buildDispatcher(t)
	r.mustRun()
	r.moveISPGateway(1, "100.64.1.254")
	// NetworkManager applies the new lease to main before it dispatches.
	r.sh("router", "ip", "route", "replace", "default", "via", "100.64.1.254", "dev", "wan1", "metric", "100")
	env := []string{"CONNECTION_ID=isp1", "CONNECTION_UUID=5f0c1c64-29b4-4a5d-9b8f-6a0f3e2d1c00",
		"CONNECTION_DBUS_PATH=/org/freedesktop/NetworkManager/Settings/1", "DEVICE_IFACE=wan1", "DEVICE_IP_IFACE=wan1",
		"NM_DISPATCHER_ACTION=dhcp4-change", "IP4_ADDRESS_0=100.64.1.2/24 100.64.1.254", "IP4_NUM_ADDRESSES=1",
		"IP4_GATEWAY=100.64.1.254", "IP4_NUM_ROUTES=0", "DHCP4_IP_ADDRESS=100.64.1.2", "DHCP4_ROUTERS=100.64.1.254",
		"DHCP4_DHCP_LEASE_TIME=600", "ISPBALANCE_CONFIG=" + r.conf}
	start := time.Now()
	res := r.privateRun(disp, env, "wan1", "dhcp4-change")
	took := time.Since(start)
	if res.code != 0 {
		t.Fatalf("dispatcher hook exited %d:\n%s", res.code, res.stderr)
	}
	if out := r.ispTable(1); !strings.Contains(out, "default via 100.64.1.254 dev wan1") {
		t.Fatalf("ISP1's table after dhcp4-change:\n%s\nhook log:\n%s", out, res.stderr)
	}
	t.Logf("dhcp4-change with a new router: ISP1's table updated %v after the dispatcher started", took.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("took %v, want within 1 s", took)
	}
}

var (
	dispatcherOnce sync.Once
	dispatcher     string
	dispatcherErr  error
)

func buildDispatcher(t *testing.T) string {
	t.Helper()
	dispatcherOnce.Do(func() {
		dispatcher = filepath.Join(filepath.Dir(binary), "nm-dispatcher-balance")
		out, err := exec.Command("go", "build", "-o", dispatcher, "github.com/ispbalance/ispbalance/cmd/nm-dispatcher-balance").CombinedOutput()
		if err != nil {
			dispatcherErr = fmt.Errorf("building nm-dispatcher-balance: %v\n%s", err, out)
		}
	})
	if dispatcherErr != nil {
		t.Fatal(dispatcherErr)
	}
	return dispatcher
}

// privateRun runs prog in the router namespace and in a private mount
// namespace whose /run and /var/lib are empty, so a program that uses
// the default paths (/run/ispbalance, /var/lib/lsm) writes nothing on the
// host. env is the whole environment, plus PATH.
func (r *router) privateRun(prog string, env []string, args ...string) hookResult {
	r.t.Helper()
	sh := `mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /var/lib && exec "$@"`
	full := []string{"netns", "exec", r.lab.NS("router"), "unshare", "-m", "--propagation", "private", "/bin/sh", "-c", sh, "sh",
		"env", "-i", "PATH=" + os.Getenv("PATH")}
	full = append(append(append(full, env...), prog), args...)
	return runHookCmd(r.t, exec.Command("ip", full...))
}

// TestHookHostile: hostile values are refused and logged with the
// variable named; nothing runs, nothing changes, every hook exits 0.
func TestHookHostile(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "hkbad"}, ispConf(1, 1))
	disp := buildDispatcher(t)
	r.mustRun()
	before := r.kernelState()
	marker := filepath.Join(r.dir, "x")
	// The kernel passes no argument or environment string longer than
	// 128 KiB (MAX_ARG_STRLEN), so this is the hugest value a hook can
	// get; the unit tests of internal/hook use 1 MiB.
	huge := strings.Repeat("1.2.3.4 ", 16000)
	check := func(what string, res hookResult, wantVar string) {
		t.Helper()
		if res.code != 0 {
			t.Errorf("%s: exit %d", what, res.code)
		}
		if !strings.Contains(res.stderr, "refused") || !strings.Contains(res.stderr, wantVar) {
			t.Errorf("%s: log does not name %s as refused:\n%s", what, wantVar, res.stderr)
		}
		if len(res.stderr) > 2000 {
			t.Errorf("%s: logged %d bytes; an absurd value must not be repeated", what, len(res.stderr))
		}
	}
	res, stdout := r.sourceDhclientHook("reason=RENEW", "interface=wan1", "new_ip_address=100.64.1.2",
		"new_routers=1.2.3.4;touch "+marker, "old_routers=100.64.1.1")
	check("dhclient gateway with a command", res, "new_routers")
	if !strings.Contains(stdout, "went on after the hook") {
		t.Errorf("dhclient-script did not go on after the hook: %q", stdout)
	}
	res, _ = r.sourceDhclientHook("reason=BOUND", "interface=../../etc", "new_ip_address=100.64.1.2", "new_routers=100.64.1.1")
	check("dhclient interface ../../etc", res, "interface")
	res, _ = r.sourceDhclientHook("reason=RENEW", "interface=wan1", "new_routers="+huge)
	check("dhclient 1 MiB router list", res, "new_routers")
	res = r.hook([]string{"IFACE=$(touch " + marker + ")", "MODE=start", "PHASE=post-up", "ADDRFAM=inet"}, "ifupdown")
	check("ifupdown IFACE with a command", res, "IFACE")
	nmEnv := []string{"ISPBALANCE_CONFIG=" + r.conf, "IP4_GATEWAY=1.2.3.4;touch " + marker}
	res = r.privateRun(disp, nmEnv, "wan1", "up")
	check("NetworkManager gateway with a command", res, "IP4_GATEWAY")
	res = r.privateRun(disp, []string{"ISPBALANCE_CONFIG=" + r.conf}, "../../etc", "dhcp4-change")
	check("NetworkManager interface ../../etc", res, "argument 1")
	res = r.privateRun(disp, []string{"ISPBALANCE_CONFIG=" + r.conf, "CONNECTION_ID=" + huge}, "wan1", "up")
	check("NetworkManager 1 MiB connection name", res, "CONNECTION_ID")
	res = r.hook(nil, "ifup-local", "../../etc")
	check("ifup-local ../../etc", res, "argument 1")

	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Errorf("a hostile value was executed: %s exists (%v)", marker, err)
	}
	if now := r.kernelState(); now != before {
		t.Errorf("hostile hooks changed the router:\nbefore:\n%s\nafter:\n%s", before, now)
	}
	for _, p := range []string{"run/ispbalance/leases", "run/hook-events.json"} {
		if _, err := os.Stat(filepath.Join(r.dir, p)); !os.IsNotExist(err) {
			t.Errorf("a refused event left %s behind (%v)", p, err)
		}
	}
}

// TestHookSameEventTwice: NetworkManager's up and Debian's replay of the
// ifupdown hooks for it, and a repeated RENEW, each cause one rebuild.
func TestHookSameEventTwice(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "hkdup"}, ispConf(1, 1))
	r.mustRun()
	nmUp := []string{"DEVICE_IFACE=wan1", "DEVICE_IP_IFACE=wan1", "CONNECTION_ID=isp1", "IP4_GATEWAY=100.64.1.1", "IP4_ADDRESS_0=100.64.1.2/24 100.64.1.1"}
	replay := []string{"IFACE=wan1", "LOGICAL=wan1", "METHOD=NetworkManager", "ADDRFAM=inet", "MODE=start", "PHASE=post-up", "VERBOSITY=0"}
	first := r.hook(nmUp, "networkmanager", "wan1", "up")
	second := r.hook(replay, "ifupdown")
	if !strings.Contains(first.stderr, "hook: rebuilt") {
		t.Errorf("NetworkManager up did not rebuild:\n%s", first.stderr)
	}
	if !strings.Contains(second.stderr, "same event again") || strings.Contains(second.stderr, "hook: rebuilt") {
		t.Errorf("the ifupdown replay of the same up rebuilt again:\n%s", second.stderr)
	}
	renew := []string{"reason=RENEW", "interface=wan2", "new_ip_address=100.64.2.2", "new_routers=100.64.2.1"}
	a, b := r.hook(renew, "dhclient"), r.hook(renew, "dhclient")
	if !strings.Contains(a.stderr, "hook: rebuilt") || !strings.Contains(b.stderr, "same event again") {
		t.Errorf("two identical RENEWs:\nfirst:\n%s\nsecond:\n%s", a.stderr, b.stderr)
	}
	// A changed router is a new event; so is the device going down.
	changed := []string{"reason=RENEW", "interface=wan2", "new_ip_address=100.64.2.2", "new_routers=100.64.2.9"}
	if c := r.hook(changed, "dhclient"); !strings.Contains(c.stderr, "hook: rebuilt") {
		t.Errorf("a RENEW with another router was taken for a repeat:\n%s", c.stderr)
	}
	down := []string{"IFACE=wan2", "ADDRFAM=inet", "MODE=stop", "PHASE=post-down"}
	if d := r.hook(down, "ifupdown"); !strings.Contains(d.stderr, "hook: rebuilt") {
		t.Errorf("post-down after the RENEW was taken for a repeat:\n%s", d.stderr)
	}
}

// TestHookBurst: 20 hook calls from four sources within one second end in
// one consistent state: every hook exits 0 without an error, and there is
// no duplicate rule, route or firewall rule.
func TestHookBurst(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "hkbu"}, ispConf(1, 1))
	r.startServer()
	r.mustRun()
	calls := [][]string{
		{"dhclient", "reason=RENEW", "interface=wan1", "new_ip_address=100.64.1.2", "new_routers=100.64.1.1"},
		{"dhclient", "reason=REBIND", "interface=wan2", "new_ip_address=100.64.2.2", "new_routers=100.64.2.1"},
		{"ifupdown", "IFACE=wan1", "ADDRFAM=inet", "MODE=start", "PHASE=post-up"},
		{"ifupdown", "IFACE=lan1", "ADDRFAM=inet", "MODE=start", "PHASE=post-up"},
		{"networkd-dispatcher", "IFACE=wan2", "STATE=routable", "ADDR=100.64.2.2"},
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		results []hookResult
	)
	start := time.Now()
	for i := 0; i < 20; i++ {
		c := calls[i%len(calls)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := r.hook(c[1:], c[0])
			mu.Lock()
			results = append(results, res)
			mu.Unlock()
		}()
		time.Sleep(40 * time.Millisecond)
	}
	wg.Wait()
	took := time.Since(start)
	counts := map[string]int{}
	for _, res := range results {
		if res.code != 0 || strings.Contains(res.stderr, "level=ERROR") {
			t.Errorf("a hook in the burst failed (exit %d):\n%s", res.code, res.stderr)
		}
		switch {
		case strings.Contains(res.stderr, "hook: rebuilt"):
			counts["rebuilt"]++
		case strings.Contains(res.stderr, "covered by a rebuild"):
			counts["covered"]++
		case strings.Contains(res.stderr, "same event again"):
			counts["repeat"]++
		}
	}
	t.Logf("20 hook calls in %v: %v", took.Round(time.Millisecond), counts)
	if counts["rebuilt"] == 0 || counts["rebuilt"]+counts["covered"]+counts["repeat"] != 20 {
		t.Errorf("burst outcome %v, want every call rebuilt, covered or a repeat", counts)
	}
	lists := map[string]string{
		"ip rule": r.sh("router", "ip", "-4", "rule"),
		"routes":  r.sh("router", "ip", "-4", "route", "show", "table", "all"),
	}
	for i, table := range strings.Split(lab.StripCounters(r.sh("router", "iptables-save")), "\n*") {
		lists[fmt.Sprintf("iptables table %d", i)] = table
	}
	for what, lines := range lists {
		if d := duplicates(lines); len(d) > 0 {
			t.Errorf("duplicates in %s after the burst: %q", what, d)
		}
	}
	for k := 1; k <= 2; k++ {
		if out := r.ispTable(k); strings.Count(out, "default via") != 1 {
			t.Errorf("ISP%d's table after the burst:\n%s", k, out)
		}
	}
	if c := r.shares(1, 20); c[1]+c[2] != 20 || c[1] == 0 || c[2] == 0 {
		t.Errorf("connections per ISP after the burst: %v", c)
	}
}

func duplicates(s string) []string {
	seen := map[string]int{}
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" && l != "COMMIT" {
			seen[l]++
		}
	}
	var d []string
	for l, n := range seen {
		if n > 1 {
			d = append(d, l)
		}
	}
	sort.Strings(d)
	return d
}

// TestHookHandsToMonitor: with a monitor running, a hook only signals it
// (SIGUSR2) and the monitor rebuilds, taking the hook's gateway.
func TestHookHandsToMonitor(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "hkmo"}, monitorConf(1, 1))
	r.startMonitor("--root", r.dir) // where the hook keeps its lease records
	r.moveISPGateway(1, "100.64.1.254")
	res := r.hook([]string{"reason=RENEW", "interface=wan1", "new_ip_address=100.64.1.2", "new_routers=100.64.1.254"}, "dhclient")
	if res.code != 0 || !strings.Contains(res.stderr, "handed to the monitor") {
		t.Fatalf("hook with a monitor running: exit %d\n%s", res.code, res.stderr)
	}
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(r.ispTable(1), "via 100.64.1.254") {
		if time.Now().After(deadline) {
			t.Fatalf("the monitor did not follow the hook's gateway:\n%s", r.ispTable(1))
		}
		time.Sleep(20 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(r.dir, "monitor.log"))
	if !strings.Contains(string(log), "hook event (SIGUSR2)") {
		t.Errorf("monitor log does not show the hook's rebuild:\n%s", log)
	}
}

// TestMonitorIdleWithoutISPs: the shipped configuration (no ISP) keeps the
// monitor running, ready and hands-off; a reload after ISPs are added
// starts balancing; SIGTERM ends it with status 0.
func TestMonitorIdleWithoutISPs(t *testing.T) {
	shipped, err := os.ReadFile(filepath.Join(repoRoot, "distro/common/balance.conf"))
	if err != nil {
		t.Fatal(err)
	}
	r := newRouter(t, lab.Options{Prefix: "hkid"}, string(shipped))
	before := r.kernelState()
	sock := filepath.Join(r.dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var logBuf bytes.Buffer
	cmd := exec.Command("ip", "netns", "exec", r.lab.NS("router"), binary, "-c", r.conf, "--state-dir", r.stateDir, "--run-dir", r.runDir(), "monitor")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			cmd.Process.Kill()
			<-exited
		}
	}()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if err != nil || string(buf[:n]) != "READY=1" {
		t.Fatalf("no readiness from an idle monitor: %q, %v\n%s", buf[:n], err, logBuf.String())
	}
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-exited:
		t.Fatalf("idle monitor exited: %v\n%s", err, logBuf.String())
	default:
	}
	if now := r.kernelState(); now != before {
		t.Errorf("an idle monitor changed the router:\n%s", now)
	}
	r.writeConf(ispConf(1, 1))
	pid := runningPid(t, r.runDir())
	syscall.Kill(pid, syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(r.ispTable(1), "default via") {
		if time.Now().After(deadline) {
			t.Fatalf("reload with ISPs did not start balancing:\n%s", logBuf.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Errorf("monitor exit after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("monitor did not stop")
	}
}

func runningPid(t *testing.T, runDir string) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(runDir, "monitor.pid"))
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	fmt.Sscan(string(data), &pid)
	return pid
}

// TestStopSticks: after `ifup-balance stop`, a hook event (an ifupdown
// run, a NetworkManager reapply) and an external lsm's verdict change
// nothing, and -s says balancing is stopped; a plain `ifup-balance`
// starts it again, and hooks work again.
func TestStopSticks(t *testing.T) {
	r := newRouter(t, lab.Options{Prefix: "stick"}, ispConf(1, 1))
	// A router where ispbalance never ran says so, without iptables'
	// complaints about chains that do not exist.
	if st := r.mustRun("-s"); !strings.Contains(st, "Balancing: not installed") || !strings.Contains(st, "Firewall: not installed (iptables") ||
		strings.Contains(st, "does not exist") || strings.Contains(st, "Installed differs") {
		t.Errorf("status before the first run:\n%s", st)
	}
	before := lab.WithoutEmptyTables(r.kernelState())
	r.mustRun()
	r.mustRun("stop")
	if now := lab.WithoutEmptyTables(r.kernelState()); now != before {
		t.Fatalf("stop did not restore the state before:\n%s\nwant:\n%s", now, before)
	}
	postUp := []string{"IFACE=wan1", "LOGICAL=wan1", "ADDRFAM=inet", "METHOD=static", "MODE=start", "PHASE=post-up", "VERBOSITY=0"}
	if res := r.hook(postUp, "ifupdown"); res.code != 0 || !strings.Contains(res.stderr, "stopped") {
		t.Errorf("hook after stop: exit %d, want 0 and a log saying it is stopped:\n%s", res.code, res.stderr)
	}
	if out, err := r.run("down", "ISP1"); err != nil || !strings.Contains(out, "stopped") {
		t.Errorf("lsm event after stop: %v, want a note that it is stopped:\n%s", err, out)
	}
	if now := lab.WithoutEmptyTables(r.kernelState()); now != before {
		t.Errorf("a hook or lsm event after stop reinstalled balancing:\n%s", now)
	}
	if st := r.mustRun("-s"); !strings.Contains(st, "Balancing: stopped") {
		t.Errorf("status after stop does not say so:\n%s", st)
	}
	r.mustRun()
	if st := r.mustRun("-s"); strings.Contains(st, "Balancing: stopped") {
		t.Errorf("status after a new start still says stopped:\n%s", st)
	}
	r.sh("router", "ip", "route", "flush", "table", "4201")
	if res := r.hook(postUp, "ifupdown"); res.code != 0 {
		t.Errorf("hook after restart exited %d:\n%s", res.code, res.stderr)
	}
	if out := r.ispTable(1); !strings.Contains(out, "default via 100.64.1.1 dev wan1") {
		t.Errorf("after a new start the hook did not rebuild ISP1's table:\n%s", out)
	}
}

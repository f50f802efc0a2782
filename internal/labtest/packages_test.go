package labtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ispbalance/ispbalance/internal/lab"
)

// The package tests build the .deb and .rpm with `make packages`, inspect
// them, and install the .deb on this machine: with the shipped balance.conf
// it must not touch the machine's network, which the test checks before
// and after. Everything the installed hooks do to a router happens in lab
// namespaces and private mount namespaces.

// packaged is one file as a package listing shows it.
type packaged struct {
	mode, owner, target string
}

// debFiles and rpmFiles are every non-directory the packages hold: path,
// mode as ls prints it, owner/group.
var commonFiles = map[string]string{
	"/usr/sbin/ifup-balance":                               "-rwxr-xr-x",
	"/usr/sbin/nm-dispatcher-balance":                      "-rwxr-xr-x",
	"/usr/lib/NetworkManager/dispatcher.d/90-ispbalance":   "lrwxrwxrwx",
	"/usr/share/man/man8/ifup-balance.8.gz":                "-rw-r--r--",
	"/usr/share/man/man8/nm-dispatcher-balance.8.gz":       "-rw-r--r--",
	"/usr/share/man/man5/balance.conf.5.gz":                "-rw-r--r--",
	"/usr/share/doc/ispbalance/copyright":                  "-rw-r--r--",
	"/usr/share/ispbalance/grafana-dashboard.json":         "-rw-r--r--",
	"/usr/lib/systemd/networkd.conf.d/ispbalance.conf":     "-rw-r--r--",
	"/usr/lib/networkd-dispatcher/routable.d/ispbalance":   "-rwxr-xr-x",
	"/usr/lib/networkd-dispatcher/degraded.d/ispbalance":   "-rwxr-xr-x",
	"/usr/lib/networkd-dispatcher/no-carrier.d/ispbalance": "-rwxr-xr-x",
	"/usr/lib/networkd-dispatcher/off.d/ispbalance":        "-rwxr-xr-x",
}

var debOnly = map[string]string{
	"/lib/systemd/system/ispbalance.service":        "-rw-r--r--",
	"/usr/share/doc/ispbalance/changelog.Debian.gz": "-rw-r--r--",
	"/usr/share/lintian/overrides/ispbalance":       "-rw-r--r--",
	"/etc/network/balance.conf":                     "-rw-r--r--",
	"/etc/network/balance/firewall/01.accept":       "-rw-r--r--",
	"/etc/network/balance/firewall/02.forward":      "-rw-r--r--",
	"/etc/network/balance/routes/01.routes":         "-rw-r--r--",
	"/etc/network/if-up.d/ispbalance":               "-rwxr-xr-x",
	"/etc/network/if-post-down.d/ispbalance":        "-rwxr-xr-x",
	"/etc/dhcp/dhclient-exit-hooks.d/ispbalance":    "-rw-r--r--",
	"/usr/lib/dhcpcd/dhcpcd-hooks/70-ispbalance":    "-rw-r--r--",
}

var rpmOnly = map[string]string{
	"/usr/lib/systemd/system/ispbalance.service":                 "-rw-r--r--",
	"/etc/sysconfig/network-scripts/balance.conf":                "-rw-r--r--",
	"/etc/sysconfig/network-scripts/balance/firewall/01.accept":  "-rw-r--r--",
	"/etc/sysconfig/network-scripts/balance/firewall/02.forward": "-rw-r--r--",
	"/etc/sysconfig/network-scripts/balance/routes/01.routes":    "-rw-r--r--",
	"/etc/dhcp/dhclient.d/ispbalance.sh":                         "-rwxr-xr-x",
	"/usr/libexec/ispbalance/ifup-local":                         "-rwxr-xr-x",
	"/usr/libexec/ispbalance/ifdown-local":                       "-rwxr-xr-x",
}

func merged(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		lab.SkipOrFail(t, "package tests install on this machine: run as root")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			lab.SkipOrFail(t, "%s is missing (scripts/setup.sh installs it)", tool)
		}
	}
}

// buildPackages runs `make packages` once per test binary.
var builtPackages struct {
	deb, rpm string
	err      error
	done     bool
}

func buildPackages(t *testing.T) (deb, rpm string) {
	t.Helper()
	if !builtPackages.done {
		builtPackages.done = true
		start := time.Now()
		cmd := exec.Command("make", "-C", repoRoot, "clean", "packages")
		out, err := cmd.CombinedOutput()
		if err != nil {
			builtPackages.err = fmt.Errorf("make packages: %v\n%s", err, out)
		} else {
			debs, _ := filepath.Glob(filepath.Join(repoRoot, "dist", "ispbalance_*.deb"))
			rpms, _ := filepath.Glob(filepath.Join(repoRoot, "dist", "ispbalance-*.rpm"))
			if len(debs) != 1 || len(rpms) != 1 {
				builtPackages.err = fmt.Errorf("make packages left %v and %v in dist/", debs, rpms)
			} else {
				builtPackages.deb, builtPackages.rpm = debs[0], rpms[0]
			}
			t.Logf("make packages: %v", time.Since(start).Round(100*time.Millisecond))
		}
	}
	if builtPackages.err != nil {
		t.Fatal(builtPackages.err)
	}
	return builtPackages.deb, builtPackages.rpm
}

func output(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// parseListing reads `dpkg-deb -c` or `rpm -qlpv` lines: mode, owner,
// group, ..., path [-> target].
func parseListing(t *testing.T, text string, ownerField int, ownerSep string) map[string]packaged {
	t.Helper()
	files := map[string]packaged{}
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("unexpected listing line %q", line)
		}
		p := packaged{mode: f[0]}
		if ownerSep == "" {
			p.owner = f[ownerField] + "/" + f[ownerField+1]
		} else {
			p.owner = f[ownerField]
		}
		path := ""
		for i, w := range f {
			if strings.HasPrefix(w, "/") || strings.HasPrefix(w, "./") {
				path = strings.TrimPrefix(w, ".")
				if i+2 < len(f) && f[i+1] == "->" {
					p.target = f[i+2]
				}
				break
			}
		}
		files[strings.TrimSuffix(path, "/")] = p
	}
	return files
}

func checkListing(t *testing.T, kind string, files map[string]packaged, want map[string]string) {
	t.Helper()
	for path, mode := range want {
		got, ok := files[path]
		switch {
		case !ok:
			t.Errorf("%s: %s is missing", kind, path)
		case got.mode != mode && !(mode[0] == 'l' && got.mode[0] == 'l'):
			t.Errorf("%s: %s has mode %s, want %s", kind, path, got.mode, mode)
		case got.owner != "root/root":
			t.Errorf("%s: %s is owned by %s, want root/root", kind, path, got.owner)
		}
	}
	for path, got := range files {
		if got.mode[0] == 'd' {
			if got.mode != "drwxr-xr-x" || got.owner != "root/root" {
				t.Errorf("%s: directory %s is %s %s, want drwxr-xr-x root/root", kind, path, got.mode, got.owner)
			}
			continue
		}
		if _, ok := want[path]; !ok {
			t.Errorf("%s: unexpected file %s", kind, path)
		}
	}
	if l := files["/usr/lib/NetworkManager/dispatcher.d/90-ispbalance"]; l.target != "../../../sbin/nm-dispatcher-balance" {
		t.Errorf("%s: the dispatcher hook links to %q", kind, l.target)
	}
}

// TestPackageContents: both packages hold every file at its path with its
// mode and owner, configuration files are marked as such, the hook names
// pass run-parts, and lintian finds no error.
func TestPackageContents(t *testing.T) {
	needTools(t, "make", "dpkg-deb", "rpm", "run-parts")
	deb, rpm := buildPackages(t)

	debFiles := parseListing(t, output(t, "dpkg-deb", "-c", deb), 1, "/")
	checkListing(t, "deb", debFiles, merged(commonFiles, debOnly))
	rpmFiles := parseListing(t, output(t, "rpm", "-qlpv", rpm), 2, "")
	checkListing(t, "rpm", rpmFiles, merged(commonFiles, rpmOnly))

	conffiles := strings.Fields(output(t, "dpkg-deb", "-I", deb, "conffiles"))
	sort.Strings(conffiles)
	var wantConf []string
	for p := range debOnly {
		if strings.HasPrefix(p, "/etc/") {
			wantConf = append(wantConf, p)
		}
	}
	sort.Strings(wantConf)
	if strings.Join(conffiles, " ") != strings.Join(wantConf, " ") {
		t.Errorf("deb conffiles %v, want %v", conffiles, wantConf)
	}
	flags := output(t, "rpm", "-qp", "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]", rpm)
	for p := range rpmOnly {
		if strings.HasPrefix(p, "/etc/") && !strings.Contains(flags, p+" cn\n") {
			t.Errorf("rpm: %s is not %%config(noreplace):\n%s", p, flags)
		}
	}
	reqs := output(t, "rpm", "-qpR", rpm)
	for _, want := range []string{"iproute", "iptables"} {
		if !strings.Contains(reqs, want) {
			t.Errorf("rpm does not require %s:\n%s", want, reqs)
		}
	}
	if dep := output(t, "dpkg-deb", "-f", deb, "Depends"); !strings.Contains(dep, "iproute2") || !strings.Contains(dep, "iptables") {
		t.Errorf("deb Depends: %s", dep)
	}

	// run-parts runs only names of letters, digits, _ and -; check with
	// run-parts itself on the extracted package.
	dir := t.TempDir()
	output(t, "dpkg-deb", "-x", deb, dir)
	for _, d := range []string{"etc/network/if-up.d", "etc/network/if-post-down.d", "usr/lib/networkd-dispatcher/routable.d"} {
		if out := output(t, "run-parts", "--test", filepath.Join(dir, d)); !strings.Contains(out, "/ispbalance\n") {
			t.Errorf("run-parts --test %s does not run our hook:\n%s", d, out)
		}
	}
	// dhclient-script lists its hooks with run-parts --list.
	if out := output(t, "run-parts", "--list", filepath.Join(dir, "etc/dhcp/dhclient-exit-hooks.d")); !strings.Contains(out, "/ispbalance\n") {
		t.Errorf("run-parts --list does not list the dhclient hook:\n%s", out)
	}

	if _, err := exec.LookPath("lintian"); err == nil {
		out, _ := exec.Command("lintian", "--allow-root", deb).CombinedOutput()
		t.Logf("lintian:\n%s", out)
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "E:") {
				t.Errorf("lintian: %s", line)
			}
		}
	}
}

// hostNetwork is what installing with the shipped configuration must not
// change on this machine.
func hostNetwork(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, c := range [][]string{{"ip", "-4", "rule"}, {"ip", "route", "show", "table", "all"}, {"iptables-save"}, {"nft", "list", "ruleset"}} {
		out, _ := exec.Command(c[0], c[1:]...).CombinedOutput()
		b.WriteString(lab.StripCounters(string(out)))
	}
	for _, s := range []string{"net/ipv4/ip_forward", "net/ipv4/conf/all/rp_filter"} {
		v, _ := os.ReadFile("/proc/sys/" + s)
		fmt.Fprintf(&b, "%s=%s", s, v)
	}
	return b.String()
}

func apt(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command("apt-get", append([]string{"-y", "-q"}, args...)...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestPackageInstall: the .deb installs with apt-get, works from its
// installed paths, leaves the machine's network alone, and remove and
// purge leave nothing but what the administrator wrote. In between, the
// installed hooks face a real DHCP client and a real NetworkManager in
// the namespace lab.
func TestPackageInstall(t *testing.T) {
	needTools(t, "make", "dpkg-deb", "apt-get", "dpkg-query")
	if out, err := exec.Command("dpkg-query", "-W", "-f", "${Status}", "ispbalance").Output(); err == nil && strings.Contains(string(out), "installed") {
		t.Skip("ispbalance is installed on this machine; the test does not replace it")
	}
	if _, err := os.Stat("/etc/network/balance.conf"); err == nil {
		t.Skip("/etc/network/balance.conf exists: this machine may be a real router")
	}
	deb, _ := buildPackages(t)
	_, hadLsm := os.Stat("/var/lib/lsm")
	// Directories the package creates when they are missing; the test
	// leaves the machine with those it had.
	var missing []string
	for _, d := range []string{"/etc/network/if-up.d", "/etc/network/if-post-down.d", "/etc/network", "/etc/dhcp/dhclient-exit-hooks.d", "/etc/dhcp"} {
		if _, err := os.Stat(d); os.IsNotExist(err) {
			missing = append(missing, d)
		}
	}
	before := hostNetwork(t)
	t.Cleanup(func() {
		cmd := exec.Command("apt-get", "-y", "-q", "purge", "ispbalance")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Run()
		os.RemoveAll("/etc/network/balance")
		os.Remove("/etc/network/balance.conf")
		for _, d := range missing {
			os.Remove(d) // only if empty
		}
	})
	start := time.Now()
	apt(t, "install", "--no-install-recommends", deb)
	t.Logf("apt-get install: %v", time.Since(start).Round(100*time.Millisecond))
	if now := hostNetwork(t); now != before {
		t.Fatalf("installing changed this machine's network:\nbefore:\n%s\nafter:\n%s", before, now)
	}

	if out := output(t, "/usr/sbin/ifup-balance", "-V"); !strings.HasPrefix(out, "ifup-balance 0.") {
		t.Errorf("ifup-balance -V: %q", out)
	}
	if out := output(t, "/usr/sbin/nm-dispatcher-balance", "--version"); !strings.HasPrefix(out, "nm-dispatcher-balance 0.") {
		t.Errorf("nm-dispatcher-balance --version: %q", out)
	}
	// NetworkManager runs a dispatcher script only if it resolves to a
	// root-owned regular file that group and others cannot write.
	var st syscall.Stat_t
	if err := syscall.Stat("/usr/lib/NetworkManager/dispatcher.d/90-ispbalance", &st); err != nil {
		t.Errorf("dispatcher hook: %v", err)
	} else if st.Uid != 0 || st.Mode&0o022 != 0 || st.Mode&syscall.S_IFMT != syscall.S_IFREG || st.Mode&0o100 == 0 {
		t.Errorf("dispatcher hook: uid %d mode %o", st.Uid, st.Mode)
	}
	for _, d := range []string{"/etc/network/if-up.d", "/etc/network/if-post-down.d"} {
		if out := output(t, "run-parts", "--test", d); !strings.Contains(out, d+"/ispbalance\n") {
			t.Errorf("run-parts --test %s:\n%s", d, out)
		}
	}
	if _, err := exec.LookPath("systemd-analyze"); err == nil {
		out, err := exec.Command("systemd-analyze", "verify", "/lib/systemd/system/ispbalance.service").CombinedOutput()
		if err != nil || strings.Contains(string(out), "ispbalance") {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	}

	// With the shipped configuration the hooks do nothing, quickly.
	hookStart := time.Now()
	cmd := exec.Command("/etc/network/if-up.d/ispbalance")
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "IFACE=eth0", "MODE=start", "PHASE=post-up", "ADDRFAM=inet", "METHOD=dhcp"}
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("if-up.d hook with the shipped configuration: %v %q", err, out)
	}
	t.Logf("if-up.d hook with the shipped configuration: %v", time.Since(hookStart).Round(time.Millisecond))
	if out, err := exec.Command("/usr/sbin/ifup-balance", "-d").CombinedOutput(); err == nil || !strings.Contains(string(out), "no isp services") {
		t.Errorf("ifup-balance -d with the shipped configuration: %v\n%s", err, out)
	}

	// The administrator configures ISPs (devices this machine does not
	// have) and adds a rule file of their own; -d shows the plan with the
	// shipped rule files.
	admin := "# my router\nISP1 ispbtest1 isp\nISP2 ispbtest2 isp\nLAN ispbtest3 lan\n"
	if err := os.WriteFile("/etc/network/balance.conf", []byte(admin), 0o644); err != nil {
		t.Fatal(err)
	}
	mine := "/etc/network/balance/firewall/99-mine"
	if err := os.WriteFile(mine, []byte("iptables -A INPUT -p tcp --dport 2222 -j ACCEPT\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := output(t, "/usr/sbin/ifup-balance", "-d"); !strings.Contains(out, "ispbalance plan") || !strings.Contains(out, "--dport 2222") || !strings.Contains(out, "01.accept") {
		t.Errorf("ifup-balance -d from the installed path:\n%s", out)
	}

	t.Run("real dhclient", testRealDhclient)
	t.Run("real NetworkManager", testRealNetworkManager)

	apt(t, "remove", "ispbalance")
	for _, gone := range []string{"/usr/sbin/ifup-balance", "/usr/sbin/nm-dispatcher-balance", "/lib/systemd/system/ispbalance.service", "/usr/lib/NetworkManager/dispatcher.d/90-ispbalance"} {
		if _, err := os.Lstat(gone); !os.IsNotExist(err) {
			t.Errorf("after remove, %s is still there (%v)", gone, err)
		}
	}
	if data, _ := os.ReadFile("/etc/network/balance.conf"); string(data) != admin {
		t.Errorf("after remove, the administrator's balance.conf is %q", data)
	}
	// Conffile hooks stay after remove and must do nothing without the binary.
	cmd = exec.Command("/etc/network/if-up.d/ispbalance")
	cmd.Env = []string{"IFACE=ispbtest1", "MODE=start", "PHASE=post-up", "ADDRFAM=inet"}
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("if-up.d hook after remove: %v %q", err, out)
	}
	out, err := exec.Command("/bin/sh", "-c", ". /etc/dhcp/dhclient-exit-hooks.d/ispbalance; echo sourced").CombinedOutput()
	if err != nil || string(out) != "sourced\n" {
		t.Errorf("dhclient hook after remove: %v %q", err, out)
	}

	apt(t, "purge", "ispbalance")
	for path := range merged(commonFiles, debOnly) {
		if _, err := os.Lstat(path); !os.IsNotExist(err) {
			t.Errorf("after purge, %s is still there (%v)", path, err)
		}
	}
	if _, err := os.Stat(mine); err != nil {
		t.Errorf("purge removed the administrator's own rule file: %v", err)
	}
	for _, gone := range []string{"/run/ispbalance", "/var/lib/lsm/ispbalance"} {
		if _, err := os.Stat(gone); !os.IsNotExist(err) {
			t.Errorf("after purge, %s is still there", gone)
		}
	}
	if _, err := os.Stat("/var/lib/lsm"); os.IsNotExist(hadLsm) && !os.IsNotExist(err) {
		t.Errorf("after purge, /var/lib/lsm is still there")
	}
	if now := hostNetwork(t); now != before {
		t.Errorf("install, remove and purge changed this machine's network:\nbefore:\n%s\nafter:\n%s", before, now)
	}
}

// background starts a long-running program and stops it when the test ends.
func background(t *testing.T, logPath string, name string, args ...string) *exec.Cmd {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		logf.Close()
		if t.Failed() {
			data, _ := os.ReadFile(logPath)
			t.Logf("%s log:\n%s", filepath.Base(logPath), data)
		}
	})
	return cmd
}

// dnsmasq serves DHCP on ISP 1's customer link from 100.64.1.first to
// .first+49, announcing router gw and renewal after 4 s, so renewals happen
// within the test.
func (r *router) dnsmasq(t *testing.T, gw string, first int) func() {
	t.Helper()
	leases := filepath.Join(r.dir, "dnsmasq.leases")
	cmd := background(t, filepath.Join(r.dir, "dnsmasq-"+gw+".log"), "ip", "netns", "exec", r.lab.NS("isp1"),
		"dnsmasq", "-k", "--interface=down0", "--bind-interfaces", fmt.Sprintf("--dhcp-range=100.64.1.%d,100.64.1.%d,255.255.255.0,2m", first, first+49),
		"--dhcp-option=3,"+gw, "--dhcp-option=option:T1,4", "--dhcp-option=option:T2,6", "--no-resolv", "--no-hosts", "-p", "0",
		"--dhcp-authoritative", "--log-dhcp", "--log-facility=-", "--pid-file="+filepath.Join(r.dir, "dnsmasq.pid"), "--dhcp-leasefile="+leases)
	return func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		for i := 0; i < 100 && cmd.ProcessState == nil; i++ {
			if err := syscall.Kill(cmd.Process.Pid, 0); err != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// privateMounts is the shell prologue that gives a program the installed
// package's default paths with this lab's configuration: its own /run,
// /var/lib/lsm and resolv.conf, and the lab's balance.conf in place of
// /etc/network/balance.conf.
func (r *router) privateMounts() string {
	resolv := filepath.Join(r.dir, "resolv.conf")
	os.WriteFile(resolv, nil, 0o644)
	return fmt.Sprintf("mount -t tmpfs tmpfs /run && mkdir -p /run/ispbalance /run/dbus /run/NetworkManager /run/udev && "+
		"mount -t tmpfs tmpfs /var/lib/lsm && mount --bind %s /etc/network/balance.conf && mount --bind %s /etc/resolv.conf && ",
		r.conf, resolv)
}

// testRealDhclient: dhclient in the router namespace, with the installed
// exit hook, gets a lease from dnsmasq in ISP 1's namespace; when ISP 1
// moves its gateway and dnsmasq hands out the new router at the next
// renewal, ISP 1's table follows, although Debian's dhclient-script leaves
// main's default route on the old gateway.
func testRealDhclient(t *testing.T) {
	needTools(t, "dhclient", "dnsmasq", "unshare")
	r := newRouter(t, lab.Options{Prefix: "pkdh"}, ispConf(1, 1))
	r.sh("router", "ip", "addr", "flush", "dev", "wan1")
	stop := r.dnsmasq(t, "100.64.1.1", 50)
	script := r.privateMounts() + "exec dhclient -4 -d -v -pf " + filepath.Join(r.dir, "dhclient.pid") + " -lf " + filepath.Join(r.dir, "dhclient.leases") + " wan1"
	dh := background(t, filepath.Join(r.dir, "dhclient.log"), "ip", "netns", "exec", r.lab.NS("router"), "unshare", "-m", "--propagation", "private", "/bin/sh", "-c", script)
	took := lab.WaitFor(t, "ISP1's table via the leased gateway", 20*time.Second, func() bool {
		return strings.Contains(r.ispTable(1), "default via 100.64.1.1 dev wan1")
	})
	t.Logf("dhclient BOUND: ISP1's table via 100.64.1.1 %v after dhclient started", took.Round(time.Millisecond))
	leaseRecord := fmt.Sprintf("/proc/%d/root/run/ispbalance/leases/wan1", dh.Process.Pid)

	// ISP 1 renumbers its router; the DHCP server announces it from now on.
	r.sh("isp1", "ip", "addr", "add", "100.64.1.254/24", "dev", "down0")
	stop()
	r.dnsmasq(t, "100.64.1.254", 50)
	took = lab.WaitFor(t, "ISP1's table via the renewed lease's gateway", 20*time.Second, func() bool {
		return strings.Contains(r.ispTable(1), "default via 100.64.1.254 dev wan1")
	})
	rec, _ := os.ReadFile(leaseRecord)
	t.Logf("after the gateway moved: ISP1's table followed %v after dnsmasq restarted (renewal every 4 s); hook record %s; main: %s",
		took.Round(time.Millisecond), strings.TrimSpace(string(rec)), strings.TrimSpace(r.sh("router", "ip", "route", "show", "default")))
	if !strings.Contains(string(rec), "dhclient RENEW") && !strings.Contains(string(rec), "dhclient REBIND") {
		t.Errorf("the change did not come from a renewal's hook: %s", rec)
	}
}

// nmConf makes NetworkManager manage wan1 only, with its internal DHCP
// client, writing no DNS configuration.
const nmConf = `[main]
plugins=keyfile
dhcp=internal
dns=none
no-auto-default=*
[keyfile]
unmanaged-devices=except:interface-name:wan1
[logging]
level=INFO
domains=DEFAULT:INFO,DISPATCH:DEBUG
`

// testRealNetworkManager: a real NetworkManager manages wan1 in the router
// namespace (private /run, D-Bus and udev); its dispatcher runs the
// installed hook on dhcp4-change, up and down, and balancing follows each;
// discovery reads NetworkManager's gateway over D-Bus when nothing else
// tells it.
func testRealNetworkManager(t *testing.T) {
	needTools(t, "NetworkManager", "nmcli", "dbus-daemon", "dnsmasq", "unshare", "nsenter", "udevadm")
	r := newRouter(t, lab.Options{Prefix: "pknm"}, ispConf(1, 1))
	r.sh("router", "ip", "addr", "flush", "dev", "wan1")
	stop := r.dnsmasq(t, "100.64.1.1", 50)
	conf := filepath.Join(r.dir, "NetworkManager.conf")
	os.WriteFile(conf, []byte(nmConf), 0o644)
	script := r.privateMounts() + "mount -t tmpfs tmpfs /var/lib/NetworkManager && " +
		"dbus-daemon --system --fork && /lib/systemd/systemd-udevd --daemon && " +
		"udevadm trigger --subsystem-match=net --action=add && udevadm settle && " +
		"exec NetworkManager --debug --config=" + conf
	nm := background(t, filepath.Join(r.dir, "NetworkManager.log"), "ip", "netns", "exec", r.lab.NS("router"), "unshare", "-m", "--propagation", "private", "/bin/sh", "-c", script)
	// The shell execs NetworkManager, so its pid is the process's.
	inNM := func(args ...string) (string, error) {
		out, err := exec.Command("nsenter", append([]string{"-t", itoa(nm.Process.Pid), "-m", "-n"}, args...)...).CombinedOutput()
		return string(out), err
	}
	lab.WaitFor(t, "NetworkManager on its bus", 20*time.Second, func() bool {
		out, err := inNM("nmcli", "-t", "-f", "DEVICE,STATE", "device")
		return err == nil && strings.Contains(out, "wan1:")
	})
	if out, err := inNM("nmcli", "con", "add", "type", "ethernet", "ifname", "wan1", "con-name", "isp1", "ipv4.method", "auto", "ipv6.method", "disabled", "connection.autoconnect", "no"); err != nil {
		t.Fatalf("nmcli con add: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "nsenter", "-t", itoa(nm.Process.Pid), "-m", "-n", "nmcli", "--wait", "20", "con", "up", "isp1").CombinedOutput(); err != nil {
		t.Fatalf("nmcli con up: %v\n%s", err, out)
	}
	took := lab.WaitFor(t, "ISP1's table after up", 10*time.Second, func() bool {
		return strings.Contains(r.ispTable(1), "default via 100.64.1.1 dev wan1")
	})
	t.Logf("NetworkManager up: ISP1's table via 100.64.1.1 %v after activation", took.Round(time.Millisecond))
	nmLog := filepath.Join(r.dir, "NetworkManager.log")
	// During activation the dhcp4-change comes before up, without
	// IP4_GATEWAY: the hook asks NetworkManager over D-Bus.
	for _, action := range []string{"dhcp4-change", "up"} {
		lab.WaitFor(t, "NetworkManager running the installed hook for "+action, 5*time.Second, func() bool { return dispatched(t, nmLog, action) })
	}

	// ISP 1 renumbers its router and its DHCP server moves its pool: the
	// next renewal is refused and a new lease, with a new address and
	// router, follows. NetworkManager 1.42 applies it to main without a
	// dispatcher event (the monitor's netlink watch catches that); an
	// administrator's reapply is dispatched, and balancing follows.
	r.sh("isp1", "ip", "addr", "add", "100.64.1.254/24", "dev", "down0")
	stop()
	r.dnsmasq(t, "100.64.1.254", 100)
	lab.WaitFor(t, "NetworkManager's new lease in main", 30*time.Second, func() bool {
		return strings.Contains(r.sh("router", "ip", "route", "show", "default"), "via 100.64.1.254 dev wan1")
	})
	if out, err := inNM("nmcli", "device", "reapply", "wan1"); err != nil {
		t.Fatalf("nmcli device reapply: %v\n%s", err, out)
	}
	took = lab.WaitFor(t, "ISP1's table after reapply", 10*time.Second, func() bool {
		return strings.Contains(r.ispTable(1), "default via 100.64.1.254 dev wan1")
	})
	t.Logf("reapply: ISP1's table followed the new lease %v after nmcli returned", took.Round(time.Millisecond))
	lab.WaitFor(t, "NetworkManager running the installed hook for reapply", 5*time.Second, func() bool { return dispatched(t, nmLog, "reapply") })

	// Discovery asks NetworkManager over D-Bus when no route names the
	// gateway (as with ipv4.never-default).
	r.sh("router", "ip", "route", "del", "default", "dev", "wan1")
	out, err := inNM("/usr/sbin/ifup-balance", "-s", "--json")
	if err != nil || !regexp.MustCompile(`"gateway":\s*"100\.64\.1\.254",\s*"gateway_from":\s*"networkmanager"`).MatchString(out) {
		t.Errorf("status with the gateway only known to NetworkManager: %v\n%s", err, out)
	}

	// down: ISP 1 leaves balancing. NetworkManager may still be finishing
	// the reapply; a disconnect taken during it can be followed by a new
	// activation, so wait until the device is settled.
	lab.WaitFor(t, "wan1 activated after the reapply", 10*time.Second, func() bool {
		out, _ := inNM("nmcli", "-t", "-f", "GENERAL.STATE", "device", "show", "wan1")
		return strings.Contains(out, "100 (connected)")
	})
	time.Sleep(time.Second)
	if out, err := inNM("nmcli", "device", "disconnect", "wan1"); err != nil {
		t.Fatalf("nmcli device disconnect: %v\n%s", err, out)
	}
	took = lab.WaitFor(t, "ISP1 out of balancing after down", 10*time.Second, func() bool {
		return !strings.Contains(r.ispTable(1), "default") && !strings.Contains(r.sh("router", "ip", "route", "show", "table", "4200"), "wan1")
	})
	t.Logf("NetworkManager down: ISP1 out of balancing %v after nmcli returned", took.Round(time.Millisecond))
	lab.WaitFor(t, "NetworkManager running the installed hook for down", 5*time.Second, func() bool { return dispatched(t, nmLog, "down") })
}

// dispatched reads NetworkManager's log (DISPATCH at debug level) and
// reports whether the dispatcher ran the installed hook, successfully,
// for a wan1 event with this action.
func dispatched(t *testing.T, logPath, action string) bool {
	t.Helper()
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	requests := map[string]bool{}
	start := regexp.MustCompile(`dispatcher: \((\d+)\) \(wan1\) dispatching action '` + regexp.QuoteMeta(action) + `'`)
	ran := regexp.MustCompile(`dispatcher: \((\d+)\) /usr/lib/NetworkManager/dispatcher.d/90-ispbalance succeeded`)
	for _, line := range strings.Split(string(data), "\n") {
		if m := start.FindStringSubmatch(line); m != nil {
			requests[m[1]] = true
		}
		if m := ran.FindStringSubmatch(line); m != nil && requests[m[1]] {
			return true
		}
	}
	return false
}

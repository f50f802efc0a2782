package labtest

// Address plan (see internal/lab): ISP k is 100.64.k.0/24 with the router
// at .2 and the ISP's gateway at .1; LAN j is 192.168.j.0/24 with the
// router at .1 and a host at .10; the internet server is 203.0.113.10 and
// reports the source address it sees, which names the ISP a masqueraded
// connection used.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ispbalance/ispbalance/internal/lab"
)

// binary is the ifup-balance built once for all tests.
var binary string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if err := lab.Available(); err != nil {
		if lab.Required() {
			fmt.Fprintf(os.Stderr, "lab tests cannot run here: %v (%s=1: they may not be skipped)\n", err, lab.RequiredEnv)
			return 1
		}
		return m.Run() // every test skips
	}
	dir, err := os.MkdirTemp("", "ispbalance-labtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	binary = filepath.Join(dir, "ifup-balance")
	out, err := exec.Command("go", "build", "-o", binary, "github.com/ispbalance/ispbalance/cmd/ifup-balance").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building ifup-balance: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// router is a lab with a balance.conf and a state directory of its own.
type router struct {
	t        *testing.T
	lab      *lab.Lab
	dir      string
	conf     string
	stateDir string
}

// newRouter builds a lab and writes conf (with %d-free device names
// wan1.., lan1..) as its balance.conf.
func newRouter(t *testing.T, opts lab.Options, conf string) *router {
	t.Helper()
	if err := lab.Available(); err != nil {
		lab.SkipOrFail(t, "lab not available: %v", err)
	}
	l, err := lab.New(opts)
	if err != nil {
		t.Fatalf("building lab: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("closing lab: %v", err)
		}
	})
	// Not t.TempDir: its parent is private to root, and the dry-run test
	// reads the configuration as an ordinary user.
	dir, err := os.MkdirTemp("", "ispbalance-router-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	r := &router{t: t, lab: l, dir: dir, conf: filepath.Join(dir, "balance.conf"), stateDir: filepath.Join(dir, "state")}
	r.writeConf(conf)
	return r
}

func (r *router) writeConf(conf string) {
	r.t.Helper()
	if err := os.WriteFile(r.conf, []byte(conf), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// runDir keeps this router's locks and monitor files apart from other
// labs' and from the machine's own.
func (r *router) runDir() string { return filepath.Join(r.dir, "run") }

// run runs ifup-balance in the router namespace, without starting the
// monitor (tests of the monitor start it themselves).
func (r *router) run(args ...string) (string, error) {
	full := append([]string{"-c", r.conf, "--state-dir", r.stateDir, "--run-dir", r.runDir(), "--no-monitor"}, args...)
	out, err := r.lab.Exec("router", append([]string{binary}, full...)...)
	return string(out), err
}

// mustRun runs ifup-balance and fails the test if it fails.
func (r *router) mustRun(args ...string) string {
	r.t.Helper()
	out, err := r.run(args...)
	if err != nil {
		r.t.Fatalf("ifup-balance %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// sh runs a command in a lab namespace and fails the test if it fails.
func (r *router) sh(ns string, args ...string) string {
	r.t.Helper()
	out, err := r.lab.Exec(ns, args...)
	if err != nil {
		r.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// kernelState is what a rebuild must leave untouched, or restore exactly.
func (r *router) kernelState() string {
	r.t.Helper()
	return r.sh("router", "ip", "-4", "rule") + lab.WithoutCarrierFlags(r.sh("router", "ip", "-4", "route", "show", "table", "all")) +
		lab.StripCounters(r.sh("router", "iptables-save"))
}

// shares opens n connections from LAN host lan and counts which ISP each used.
func (r *router) shares(lan, n int) map[int]int {
	r.t.Helper()
	counts := map[int]int{}
	for i := 0; i < n; i++ {
		k, err := r.lab.WhichISP(lan, serverPort, 2*time.Second)
		if err != nil {
			r.t.Fatalf("connection %d from lan%d: %v", i, lan, err)
		}
		counts[k]++
	}
	return counts
}

const serverPort = 8080

func (r *router) startServer() {
	r.t.Helper()
	stop, err := r.lab.StartServer(serverPort)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(stop)
}

func ispConf(weights ...int) string {
	var b strings.Builder
	for i, w := range weights {
		fmt.Fprintf(&b, "ISP%d wan%d isp default %d\n", i+1, i+1, w)
	}
	b.WriteString("LAN lan1 lan\n")
	return b.String()
}

func itoa(i int) string { return strconv.Itoa(i) }

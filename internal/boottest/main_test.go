package boottest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ispbalance/ispbalance/internal/bootlab"
	"github.com/ispbalance/ispbalance/internal/lab"
)

// repoRoot holds the Makefile that builds the packages.
var repoRoot, _ = filepath.Abs("../..")

// artefacts are the packages built once for all tests: two releases of
// the .deb (for the upgrade) and the .rpm.
var artefacts struct {
	once      sync.Once
	dir       string
	deb, deb2 string
	rpm, rpm2 string
	image     string
	err       error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if artefacts.dir != "" {
		os.RemoveAll(artefacts.dir)
	}
	os.Exit(code)
}

// prepare builds the packages and the Debian root, once per test binary.
func prepare(t *testing.T) {
	t.Helper()
	if err := lab.Available(); err != nil {
		lab.SkipOrFail(t, "lab not available: %v", err)
	}
	for _, tool := range []string{"mmdebstrap", "make", "dnsmasq", "script", "unshare", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			lab.SkipOrFail(t, "%s is missing (scripts/setup.sh installs it)", tool)
		}
	}
	artefacts.once.Do(func() {
		start := time.Now()
		artefacts.dir, artefacts.err = os.MkdirTemp("", "ispbalance-boottest-")
		if artefacts.err != nil {
			return
		}
		os.Chmod(artefacts.dir, 0o755)
		var wg sync.WaitGroup
		var imgErr error
		var imgLog strings.Builder
		wg.Go(func() {
			artefacts.image, imgErr = bootlab.Image(context.Background(), bootlab.Packages, &logWriter{b: &imgLog})
		})
		for release, dst := range map[string][2]*string{"1": {&artefacts.deb, &artefacts.rpm}, "2": {&artefacts.deb2, &artefacts.rpm2}} {
			if artefacts.err != nil {
				break
			}
			artefacts.err = makePackages(release, dst[0], dst[1])
		}
		wg.Wait()
		if imgErr != nil {
			artefacts.err = fmt.Errorf("%w\n%s", imgErr, imgLog.String())
		}
		fmt.Fprintf(os.Stderr, "boottest: packages and Debian root ready in %v\n", time.Since(start).Round(100*time.Millisecond))
	})
	if artefacts.err != nil {
		t.Fatal(artefacts.err)
	}
}

// logWriter collects mmdebstrap's output for an error message.
type logWriter struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// makePackages builds the .deb and .rpm of one release and moves them
// out of dist/.
func makePackages(release string, deb, rpm *string) error {
	cmd := exec.Command("make", "-C", repoRoot, "clean", "packages", "RELEASE="+release)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("make packages RELEASE=%s: %v\n%s", release, err, out)
	}
	for _, p := range []struct {
		glob string
		dst  *string
	}{{"ispbalance_*.deb", deb}, {"ispbalance-*.rpm", rpm}} {
		found, _ := filepath.Glob(filepath.Join(repoRoot, "dist", p.glob))
		if len(found) != 1 {
			return fmt.Errorf("make packages RELEASE=%s left %v in dist/", release, found)
		}
		*p.dst = filepath.Join(artefacts.dir, filepath.Base(found[0]))
		if err := os.Rename(found[0], *p.dst); err != nil {
			return err
		}
	}
	return nil
}

// router is a lab whose router namespace runs a booted Debian.
type router struct {
	t   *testing.T
	lab *lab.Lab
	sys *bootlab.System
	dir string
}

// newRouter builds a lab with a bare router and prepares a system for it;
// files are written onto its disk before the first boot.
func newRouter(t *testing.T, prefix string, isps int, files map[string]string) *router {
	t.Helper()
	prepare(t)
	l, err := lab.New(lab.Options{Prefix: prefix, ISPs: isps, BareRouter: true})
	if err != nil {
		t.Fatalf("building lab: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("closing lab: %v", err)
		}
	})
	dir := t.TempDir()
	sys, err := bootlab.New(artefacts.image, l.NS("router"), dir)
	if err != nil {
		t.Fatal(err)
	}
	r := &router{t: t, lab: l, sys: sys, dir: dir}
	// Registered after the lab's, so it runs first: the system dies
	// before its namespace goes.
	t.Cleanup(func() {
		if t.Failed() && sys.Running() {
			out, _ := sys.Exec("journalctl", "-b", "--no-pager", "-n", "300")
			t.Logf("the booted system's journal:\n%s", out)
		}
		if err := sys.Close(); err != nil {
			t.Errorf("stopping the booted system: %v", err)
		}
	})
	for name, data := range files {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, "!x") {
			name, mode = strings.TrimSuffix(name, "!x"), 0o755
		}
		if err := sys.WriteFile(name, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
	}
	stop, err := l.StartServer(serverPort)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return r
}

const serverPort = 8080

// boot boots the system and returns how long systemd took.
func (r *router) boot() time.Duration {
	r.t.Helper()
	took, err := r.sys.Boot(90 * time.Second)
	if err != nil {
		r.t.Fatal(err)
	}
	return took
}

// reboot kills the system, gives it a fresh router namespace and boots
// it again; it returns when the boot began.
func (r *router) reboot() time.Time {
	r.t.Helper()
	if err := r.sys.Kill(); err != nil {
		r.t.Fatal(err)
	}
	if err := r.lab.ResetRouter(); err != nil {
		r.t.Fatal(err)
	}
	start := time.Now()
	r.boot()
	return start
}

// sh runs a command in the booted system and fails the test if it fails.
func (r *router) sh(args ...string) string {
	r.t.Helper()
	out, err := r.sys.Exec(args...)
	if err != nil {
		r.t.Fatal(err)
	}
	return string(out)
}

// try runs a command in the booted system; the error says what failed.
func (r *router) try(args ...string) (string, error) {
	out, err := r.sys.Exec(args...)
	return string(out), err
}

// install copies a package into the system and installs it with apt.
func (r *router) install(pkg string) {
	r.t.Helper()
	data, err := os.ReadFile(pkg)
	if err != nil {
		r.t.Fatal(err)
	}
	in := "/root/" + filepath.Base(pkg)
	if err := r.sys.WriteFile(in, data, 0o644); err != nil {
		r.t.Fatal(err)
	}
	r.sh("apt-get", "install", "-y", "-q", "--no-install-recommends", in)
}

// status is the part of `ifup-balance -s --json` the tests read.
type status struct {
	Services []struct {
		Service string `json:"service"`
		Role    string `json:"role"`
		State   string `json:"state"`
		Routing bool   `json:"routing"`
		Gateway string `json:"gateway"`
	} `json:"services"`
	NotInstalled bool `json:"not_installed"`
	Monitor      *struct {
		PID  int `json:"pid"`
		ISPs []struct {
			Service string `json:"service"`
			State   string `json:"state"`
		} `json:"isps"`
	} `json:"monitor"`
}

func (r *router) status() (status, error) {
	var st status
	out, err := r.try("ifup-balance", "-s", "--json")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return st, fmt.Errorf("reading ifup-balance -s --json: %w\n%s", err, out)
	}
	return st, nil
}

// routing lists the ISP services that carry new connections and that the
// running monitor judges up (the recorded verdict alone may be a previous
// boot's).
func (st status) routing() []string {
	judged := map[string]bool{}
	if st.Monitor != nil {
		for _, m := range st.Monitor.ISPs {
			judged[m.Service] = m.State == "up"
		}
	}
	var out []string
	for _, s := range st.Services {
		if s.Role == "isp" && s.Routing && s.State == "up" && judged[s.Service] {
			out = append(out, s.Service)
		}
	}
	return out
}

// balanced reports whether both ISPs are up and routing, as -s says.
func (r *router) balanced(services ...string) bool {
	st, err := r.status()
	return err == nil && strings.Join(st.routing(), " ") == strings.Join(services, " ")
}

// shares opens n connections from the LAN host and counts the ISPs they
// used; failed connections count under 0.
func (r *router) shares(n int) map[int]int {
	counts := map[int]int{}
	for range n {
		k, err := r.lab.WhichISP(1, serverPort, 2*time.Second)
		if err != nil {
			k = 0
		}
		counts[k]++
	}
	return counts
}

// mustHost runs a command on the machine running the lab.
func (r *router) mustHost(args ...string) {
	r.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		r.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// background starts a program on the machine running the lab; the test's
// end stops it if stopBackground did not.
func background(t *testing.T, out *os.File, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	t.Cleanup(func() { stopBackground(cmd) })
	return cmd
}

// stopBackground ends a program started by background and waits for it.
func stopBackground(cmd *exec.Cmd) {
	if cmd.ProcessState != nil {
		return
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	cmd.Wait()
}

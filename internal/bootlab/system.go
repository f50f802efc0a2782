package bootlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// System is one Debian system booted, or to be booted, on an overlay of
// an Image in a network namespace.
type System struct {
	base  string
	netns string
	dir   string

	cmd  *exec.Cmd
	done chan struct{}
	pid1 int
}

// New prepares a system on top of the root base, to boot in the named
// network namespace (as `ip netns exec` takes it). Its disk (the overlay's
// upper layer) and console log live in a new directory under workDir.
func New(base, netns, workDir string) (*System, error) {
	dir, err := os.MkdirTemp(workDir, "system-")
	if err != nil {
		return nil, fmt.Errorf("creating the system's directory: %w", err)
	}
	for _, d := range []string{"upper", "work", "root"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("creating the system's %s: %w", d, err)
		}
	}
	return &System{base: base, netns: netns, dir: dir}, nil
}

// bootScript makes the system's root and starts its systemd, as a
// container manager would, in the new mount, PID, UTS and IPC
// namespaces unshare gives it. The network namespace is the lab's
// router. /proc/sys is read-only but for net/, so the system cannot
// change the kernel settings of the machine running the lab. The
// host's PID of the future PID 1 is written first, read from the host's
// /proc before the system's own one is mounted.
const bootScript = `set -e
read -r self rest </proc/self/stat
echo "$self" >"$DIR/pid1"
mount --make-rprivate /
R=$DIR/root
mount -t overlay overlay -o "lowerdir=$BASE,upperdir=$DIR/upper,workdir=$DIR/work" "$R"
mount -t proc proc "$R/proc"
mount --bind "$R/proc/sys" "$R/proc/sys"
mount -o remount,bind,ro "$R/proc/sys"
mount --bind /proc/sys/net "$R/proc/sys/net"
mount --rbind /sys "$R/sys"
mount -t tmpfs -o mode=755 tmpfs "$R/run"
mount -t tmpfs -o mode=755 tmpfs "$R/dev"
for d in null zero full random urandom tty; do
	touch "$R/dev/$d"
	mount --bind "/dev/$d" "$R/dev/$d"
done
mkdir "$R/dev/pts" "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
mount -t tmpfs tmpfs "$R/dev/shm"
touch "$R/dev/console"
mount --bind "$(tty)" "$R/dev/console"
cd "$R"
mkdir -p .oldroot
pivot_root . .oldroot
exec env -i container=ispbalance-lab /bin/sh -c 'umount -l /.oldroot; rmdir /.oldroot; exec /lib/systemd/systemd --log-target=console'
`

// Running reports whether the system's PID 1 runs.
func (s *System) Running() bool {
	if s.done == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// PID1 is the host's process id of the system's systemd.
func (s *System) PID1() int { return s.pid1 }

// Console returns what the system wrote to its console so far.
func (s *System) Console() string {
	data, _ := os.ReadFile(filepath.Join(s.dir, "console.log"))
	return string(data)
}

// Boot starts the system and waits until systemd reports the boot
// finished (running or degraded), at most limit. It returns how long
// that took.
func (s *System) Boot(limit time.Duration) (time.Duration, error) {
	if s.Running() {
		return 0, errors.New("booting the system: it is running")
	}
	os.Remove(filepath.Join(s.dir, "pid1"))
	// Every boot starts with a clean overlay work directory, as a kernel
	// mounting the disk again would have it.
	work := filepath.Join(s.dir, "work")
	if err := os.RemoveAll(work); err != nil {
		return 0, fmt.Errorf("booting the system: clearing the overlay's work directory: %w", err)
	}
	if err := os.Mkdir(work, 0o755); err != nil {
		return 0, fmt.Errorf("booting the system: %w", err)
	}
	script := filepath.Join(s.dir, "boot.sh")
	if err := os.WriteFile(script, []byte(bootScript), 0o755); err != nil {
		return 0, fmt.Errorf("booting the system: writing its boot script: %w", err)
	}
	start := time.Now()
	// script(1) gives the system a terminal for its console.
	s.cmd = exec.Command("ip", "netns", "exec", s.netns, "script", "-qfec",
		"unshare --pid --mount --uts --ipc --fork /bin/sh "+script, filepath.Join(s.dir, "console.log"))
	s.cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DIR=" + s.dir, "BASE=" + s.base}
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		return 0, fmt.Errorf("booting the system: %w", err)
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(s.cmd, s.done)

	deadline := start.Add(limit)
	for s.pid1 = 0; s.pid1 == 0; {
		data, _ := os.ReadFile(filepath.Join(s.dir, "pid1"))
		s.pid1, _ = strconv.Atoi(strings.TrimSpace(string(data)))
		if s.pid1 != 0 {
			break
		}
		if !s.Running() || time.Now().After(deadline) {
			s.Kill()
			return 0, fmt.Errorf("booting the system: its boot script did not start systemd; console:\n%s", s.Console())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for {
		// --wait blocks until the boot is done, once systemd answers at
		// all; before that it fails, and is asked again.
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		out, _ := s.execContext(ctx, "systemctl", "is-system-running", "--wait")
		cancel()
		switch state := strings.TrimSpace(string(out)); state {
		case "running", "degraded":
			return time.Since(start), nil
		}
		if !s.Running() || time.Now().After(deadline) {
			s.Kill()
			return 0, fmt.Errorf("booting the system: not up within %v (systemd says %q); console:\n%s", limit, strings.TrimSpace(string(out)), s.Console())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Exec runs a command inside the running system (all of its namespaces,
// its root and its PID 1's environment left aside) and returns its
// combined output; on failure the error includes that output.
func (s *System) Exec(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := s.execContext(ctx, args...)
	if err != nil {
		return out, fmt.Errorf("running %q in the booted system: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// ExecContext is Exec that ends with ctx.
func (s *System) ExecContext(ctx context.Context, args ...string) ([]byte, error) {
	out, err := s.execContext(ctx, args...)
	if err != nil {
		return out, fmt.Errorf("running %q in the booted system: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

func (s *System) execContext(ctx context.Context, args ...string) ([]byte, error) {
	if !s.Running() {
		return nil, errors.New("the system is not running")
	}
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(s.pid1), "-a"}, args...)...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", "DEBIAN_FRONTEND=noninteractive", "HOME=/root"}
	return cmd.CombinedOutput()
}

// Path is where a file of the system is seen from the host: inside the
// running system's root, or on its disk while it is down.
func (s *System) Path(name string) string {
	if s.Running() {
		return filepath.Join("/proc", strconv.Itoa(s.pid1), "root", name)
	}
	return filepath.Join(s.dir, "upper", name)
}

// WriteFile writes a file of the system, making its directories; while
// the system is down it goes onto its disk.
func (s *System) WriteFile(name string, data []byte, mode os.FileMode) error {
	p := s.Path(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("writing %s in the system: %w", name, err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		return fmt.Errorf("writing %s in the system: %w", name, err)
	}
	return os.Chmod(p, mode)
}

// ReadFile reads a file of the running system.
func (s *System) ReadFile(name string) ([]byte, error) {
	if !s.Running() {
		return nil, fmt.Errorf("reading %s: the system is not running", name)
	}
	return os.ReadFile(s.Path(name))
}

// Kill ends the system at once, as a power cut does: SIGKILL to its PID
// 1 takes every process of the system with it, and its mounts vanish
// with its mount namespace. What it wrote to disk stays for the next
// Boot. The network namespace keeps whatever the system configured;
// the lab's ResetRouter gives a fresh one.
func (s *System) Kill() error {
	if s.done == nil {
		return nil
	}
	if s.pid1 > 0 {
		syscall.Kill(s.pid1, syscall.SIGKILL)
	}
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		// PID 1 never started, or the wrapper hangs: end the whole group.
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			return fmt.Errorf("stopping the system: pid %d did not end", s.cmd.Process.Pid)
		}
	}
	s.done, s.pid1 = nil, 0
	return nil
}

// Close kills the system if it runs and removes its disk.
func (s *System) Close() error {
	err := s.Kill()
	if rerr := os.RemoveAll(s.dir); rerr != nil {
		err = errors.Join(err, fmt.Errorf("removing the system's disk: %w", rerr))
	}
	return err
}

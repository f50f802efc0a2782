package lab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns` looks for named namespaces.
const netnsDir = "/run/netns"

// onFreshThread runs fn on a locked OS thread of its own, which fn may
// switch into any network namespace. Afterwards the thread goes back to
// the original namespace; if that fails it stays locked, so the runtime
// discards it instead of reusing a thread in the wrong namespace.
func onFreshThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("opening the current network namespace: %w", err)
			return
		}
		defer orig.Close()
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("returning to the original network namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Do runs fn on an OS thread switched into the namespace ns (a short
// name such as "router", or the full one). Sockets fn creates stay in
// that namespace after Do returns. Goroutines fn starts do not inherit
// the namespace.
func (l *Lab) Do(ns string, fn func() error) error {
	h, err := l.dupHandle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	return onFreshThread(func() error {
		if err := netns.Set(h); err != nil {
			return fmt.Errorf("entering namespace %s: %w", l.NS(ns), err)
		}
		return fn()
	})
}

// dupHandle returns a private copy of the namespace's descriptor, so that
// Close may run while Do is busy.
func (l *Lab) dupHandle(ns string) (netns.NsHandle, error) {
	short, ok := l.short(ns)
	if !ok {
		return netns.None(), fmt.Errorf("lab %s has no namespace %q", l.prefix, ns)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return netns.None(), fmt.Errorf("lab %s is closed", l.prefix)
	}
	h, ok := l.handles[short]
	if !ok {
		return netns.None(), fmt.Errorf("namespace %s was never created", l.NS(short))
	}
	fd, err := unix.FcntlInt(uintptr(h), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return netns.None(), fmt.Errorf("duplicating the handle of namespace %s: %w", l.NS(short), err)
	}
	return netns.NsHandle(fd), nil
}

// Exec runs a command inside namespace ns with `ip netns exec`, which also
// gives it that namespace's view of /sys. On failure the error includes
// the combined output.
func (l *Lab) Exec(ns string, args ...string) ([]byte, error) {
	return l.ExecInput(ns, "", args...)
}

// ExecInput is Exec with input on the command's standard input (a
// ruleset for iptables-restore, say).
func (l *Lab) ExecInput(ns, input string, args ...string) ([]byte, error) {
	full := l.NS(ns)
	if full == "" {
		return nil, fmt.Errorf("lab %s has no namespace %q", l.prefix, ns)
	}
	if len(args) == 0 {
		return nil, errors.New("running a command: no command given")
	}
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("running %q: lab %s is closed", strings.Join(args, " "), l.prefix)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", full}, args...)...)
	if input != "" {
		cmd.Stdin = strings.NewReader(input)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("running %q in %s: %w: %s", strings.Join(args, " "), full, err, bytes.TrimSpace(out))
	}
	return out, nil
}

// run starts a program directly from a thread inside ns: the child
// inherits the thread's network namespace, which saves the extra process
// of `ip netns exec`. Good for tools that only talk netlink, like
// iptables.
func (l *Lab) run(ns string, prog string, args ...string) ([]byte, error) {
	var out []byte
	err := l.Do(ns, func() error {
		var err error
		out, err = exec.Command(prog, args...).CombinedOutput()
		return err
	})
	if err != nil {
		return out, fmt.Errorf("running %s %s in %s: %w: %s", prog, strings.Join(args, " "), l.NS(ns), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// iptables runs iptables in ns. -w because iptables-legacy, should the
// host switch back to it, serialises on a lock file shared by all
// namespaces.
func (l *Lab) iptables(ns string, args ...string) ([]byte, error) {
	return l.run(ns, "iptables", append([]string{"-w"}, args...)...)
}

var prepareNetnsDir = sync.OnceValue(func() error {
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", netnsDir, err)
	}
	// As `ip netns add` does: a shared mount makes namespaces created
	// later visible in mount namespaces made earlier, such as that of a
	// command still running under `ip netns exec`.
	err := unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) {
		if err := unix.Mount(netnsDir, netnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind-mounting %s on itself: %w", netnsDir, err)
		}
		err = unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("making %s a shared mount: %w", netnsDir, err)
	}
	return nil
})

// createNamespaces makes one named namespace per short name, the way `ip
// netns add` does but without a process each. The name is claimed with
// O_EXCL before anything else, so a clash with another lab fails instead
// of taking over (and later deleting) its namespace.
func (l *Lab) createNamespaces(shorts []string) error {
	if err := prepareNetnsDir(); err != nil {
		return err
	}
	return onFreshThread(func() error {
		for _, short := range shorts {
			full := l.NS(short)
			path := filepath.Join(netnsDir, full)
			f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
			if err != nil {
				return fmt.Errorf("claiming namespace name %s: %w", full, err)
			}
			f.Close()
			l.mu.Lock()
			l.created = append(l.created, full)
			l.mu.Unlock()
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return fmt.Errorf("creating namespace %s: %w", full, err)
			}
			if err := unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("naming namespace %s: %w", full, err)
			}
			h, err := netns.Get()
			if err != nil {
				return fmt.Errorf("opening namespace %s: %w", full, err)
			}
			l.mu.Lock()
			l.handles[short] = h
			l.mu.Unlock()
		}
		return nil
	})
}

// removeNamespace undoes createNamespaces for one name, as `ip netns del`
// does. The kernel frees the namespace once nothing refers to it.
func removeNamespace(full string) error {
	path := filepath.Join(netnsDir, full)
	// EINVAL: the name was claimed but creating the namespace failed.
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting namespace %s: %w", full, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing namespace %s: %w", full, err)
	}
	return nil
}

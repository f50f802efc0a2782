package state

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DefaultDir is where the original and lsm's scripts keep state files.
const DefaultDir = "/var/lib/lsm"

// Verdict is an ISP's recorded state.
type Verdict string

const (
	Up       Verdict = "up"
	Down     Verdict = "down"
	LongDown Verdict = "long_down"
	// Unknown means no state file: a first run, where every ISP counts as up.
	Unknown Verdict = ""
)

// Read returns the recorded verdict of service, Unknown when none is.
func Read(dir, service string) (Verdict, error) {
	data, err := os.ReadFile(filepath.Join(dir, service+".state"))
	if errors.Is(err, os.ErrNotExist) {
		return Unknown, nil
	}
	if err != nil {
		return Unknown, fmt.Errorf("reading state of %s: %w", service, err)
	}
	switch v := Verdict(strings.TrimSpace(string(data))); v {
	case Up, Down, LongDown:
		return v, nil
	default:
		return Unknown, fmt.Errorf("%s: unknown state %q", filepath.Join(dir, service+".state"), v)
	}
}

// Write records the verdict of service, atomically so a reader never sees
// a half-written file.
func Write(dir, service string, v Verdict) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating state directory: %w", err)
	}
	path := filepath.Join(dir, service+".state")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(string(v)+"\n"), 0o644); err != nil {
		return fmt.Errorf("recording state of %s: %w", service, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("recording state of %s: %w", service, err)
	}
	return nil
}

// Lock is an exclusive lock on a file, held until Unlock.
type Lock struct{ f *os.File }

// Acquire takes the lock at path, waiting up to timeout (the original
// waited 30 s). The kernel drops the lock if the holder dies, so a crash
// never leaves the router locked.
func Acquire(path string, timeout time.Duration) (*Lock, error) {
	return AcquireContext(context.Background(), path, timeout)
}

// AcquireContext is Acquire that also gives up when ctx ends. It waits in
// the kernel (a blocking flock), so the lock goes to a waiter the moment
// it is released, with no polling.
func AcquireContext(ctx context.Context, path string, timeout time.Duration) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating lock directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		// waitFlock owns f from here unless it got the lock.
		switch err := waitFlock(ctx, f, timeout); {
		case errors.Is(err, errGaveUp):
			return nil, fmt.Errorf("%s holds %s for more than %v", holder(path), path, timeout)
		case err != nil && ctx.Err() != nil:
			return nil, fmt.Errorf("waiting for %s: %w", path, ctx.Err())
		case err != nil:
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
	}
	// The pid lets a run that gives up waiting say who held it up.
	if f.Truncate(0) == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

var errGaveUp = errors.New("gave up waiting for the lock")

// waitFlock blocks in flock until the lock is ours, the timeout passes or
// ctx ends. A flock cannot be interrupted, so on giving up the waiting
// call is left to finish on its own: it then releases the lock at once
// and closes the file. f belongs to waitFlock unless it returns nil.
func waitFlock(ctx context.Context, f *os.File, timeout time.Duration) error {
	got := make(chan error, 1)
	go func() { got <- syscall.Flock(int(f.Fd()), syscall.LOCK_EX) }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	giveUp := func(why error) error {
		go func() {
			if <-got == nil {
				syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
			}
			f.Close()
		}()
		return why
	}
	select {
	case err := <-got:
		if err != nil {
			f.Close()
		}
		return err
	case <-timer.C:
		return giveUp(errGaveUp)
	case <-ctx.Done():
		return giveUp(ctx.Err())
	}
}

// Unlock releases the lock, first erasing the pid so the file never names
// a process that no longer holds it.
func (l *Lock) Unlock() error {
	l.f.Truncate(0)
	return l.f.Close()
}

// holder describes the process whose pid the lock file holds, with its
// command line when it still runs.
func holder(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "another ispbalance run"
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return "another ispbalance run"
	}
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	args := strings.Fields(strings.ReplaceAll(string(cmdline), "\x00", " "))
	if err != nil || len(args) == 0 {
		return fmt.Sprintf("another ispbalance run (pid %d)", pid)
	}
	text := strings.Join(args, " ")
	if len(text) > 200 {
		text = text[:200] + "..."
	}
	return fmt.Sprintf("another ispbalance run (pid %d: %s)", pid, text)
}

// IPv6Name is the name under which an ISP's IPv6 half is judged and its
// verdict kept ("CABLE.ipv6"): the monitor judges the families apart.
func IPv6Name(service string) string { return service + ".ipv6" }

// DegradedFile is where the running monitor lists the ISPs (and ISPs'
// IPv6 halves, by IPv6Name) that answer their probes but exceed their
// quality thresholds, one name a line, for every rebuild to read. It
// lives in the run directory: it means something only while the monitor
// that wrote it runs, which clears it when it starts and stops.
func DegradedFile(runDir string) string { return filepath.Join(runDir, "degraded") }

// ReadDegraded returns the names listed in the degraded file at path;
// none when there is no file.
func ReadDegraded(path string) (map[string]bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the degraded ISPs: %w", err)
	}
	out := map[string]bool{}
	for _, name := range strings.Fields(string(data)) {
		out[name] = true
	}
	return out, nil
}

// WriteDegraded lists names in the degraded file at path, atomically;
// no names removes the file.
func WriteDegraded(path string, names []string) error {
	if len(names) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("clearing the degraded ISPs: %w", err)
		}
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("recording the degraded ISPs: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.Join(names, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("recording the degraded ISPs: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("recording the degraded ISPs: %w", err)
	}
	return nil
}

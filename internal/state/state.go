package state

import (
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
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating lock directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening lock %s: %w", path, err)
	}
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			// The pid lets a run that gives up waiting say who held it up.
			if f.Truncate(0) == nil {
				f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
			}
			return &Lock{f: f}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("%s holds %s for more than %v", holder(path), path, timeout)
		}
		time.Sleep(2 * time.Millisecond)
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

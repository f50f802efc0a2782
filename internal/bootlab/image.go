package bootlab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Suite is the Debian release the lab boots.
const Suite = "bookworm"

// Packages is what the booted system holds besides minbase: systemd and
// the three network stacks the package hooks into, what the package
// depends on and recommends, a local mail transport for warn_email, and
// rpm for the Red Hat scriptlets. Inside the lab the system cannot reach
// the registry, so everything a test installs or runs must be here.
var Packages = []string{
	"systemd", "systemd-sysv", "dbus", "iproute2", "iptables", "conntrack",
	"ifupdown", "isc-dhcp-client", "iputils-ping", "procps",
	"network-manager", "udev", "exim4-daemon-light", "rpm",
}

// maxImageAge is how long a built root is reused: long enough for a day
// of test runs, short enough to pick up the registry's updates.
const maxImageAge = 24 * time.Hour

// Image returns the directory of an unpacked Debian root holding
// packages, building it with mmdebstrap when no recent one exists. Roots
// are kept under the system's temporary directory, one per package list;
// concurrent callers wait for one build. Progress goes to log.
func Image(ctx context.Context, packages []string, log io.Writer) (string, error) {
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		return "", fmt.Errorf("building a Debian root: mmdebstrap is missing (scripts/setup.sh installs it): %w", err)
	}
	list := append([]string(nil), packages...)
	sort.Strings(list)
	sum := sha256.Sum256([]byte(Suite + "\n" + strings.Join(list, ",")))
	dir := filepath.Join(os.TempDir(), "ispbalance-bootroot-"+hex.EncodeToString(sum[:8]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating %s: %w", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return "", fmt.Errorf("opening the lock of %s: %w", dir, err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("locking %s: %w", dir, err)
	}
	root := filepath.Join(dir, "root")
	done := filepath.Join(dir, "complete")
	if st, err := os.Stat(done); err == nil && time.Since(st.ModTime()) < maxImageAge {
		return root, nil
	}
	os.Remove(done)
	if err := os.RemoveAll(root); err != nil {
		return "", fmt.Errorf("removing the old root %s: %w", root, err)
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, "mmdebstrap", "--variant=minbase", "--include="+strings.Join(list, ","),
		// The lab's system has a console but no terminal to log in on:
		// console-getty would hang up the console and stall PID 1.
		"--customize-hook=ln -sf /dev/null \"$1\"/etc/systemd/system/console-getty.service",
		Suite, root)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		os.RemoveAll(root)
		return "", fmt.Errorf("building a Debian %s root with mmdebstrap: %w", Suite, err)
	}
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		return "", errors.Join(fmt.Errorf("marking %s complete: %w", root, err), os.RemoveAll(root))
	}
	fmt.Fprintf(log, "bootlab: built the %s root in %v\n", Suite, time.Since(start).Round(100*time.Millisecond))
	return root, nil
}

package state

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReadWrite(t *testing.T) {
	dir := t.TempDir()
	if v, err := Read(dir, "CABLE"); err != nil || v != Unknown {
		t.Fatalf("missing file: got %q, %v", v, err)
	}
	for _, v := range []Verdict{Up, Down, LongDown} {
		if err := Write(dir, "CABLE", v); err != nil {
			t.Fatal(err)
		}
		if got, err := Read(dir, "CABLE"); err != nil || got != v {
			t.Fatalf("got %q, %v; want %q", got, err, v)
		}
	}
	os.WriteFile(filepath.Join(dir, "DSL.state"), []byte("sideways\n"), 0o644)
	if _, err := Read(dir, "DSL"); err == nil || !strings.Contains(err.Error(), "DSL.state") {
		t.Fatalf("garbage state: got %v, want an error naming the file", err)
	}
}

func TestLockExcludes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	l, err := Acquire(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Acquire(path, 50*time.Millisecond); err == nil {
		t.Fatal("second lock succeeded while the first is held")
	}
	l.Unlock()
	l2, err := Acquire(path, 50*time.Millisecond)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	l2.Unlock()
}

func TestLockTimeoutNamesHolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	l, err := Acquire(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(path, 20*time.Millisecond)
	want := fmt.Sprintf("another ispbalance run (pid %d: ", os.Getpid())
	if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "holds "+path+" for more than 20ms") {
		t.Errorf("got %v, want %s...) holds %s for more than 20ms", err, want, path)
	}
	l.Unlock()
	if data, _ := os.ReadFile(path); len(data) != 0 {
		t.Errorf("the lock file still names a holder after Unlock: %q", data)
	}
}

// TestLockWaitsInTheKernel: a waiter gets the lock once the holder lets
// go; one whose context ends gives up at once and, when the lock is
// released later, does not keep it.
func TestLockWaitsInTheKernel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rebuild.lock")
	held, err := Acquire(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		l, err := AcquireContext(context.Background(), path, time.Minute)
		if err == nil {
			l.Unlock()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("the waiter got the lock while it was held: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() {
		_, err := AcquireContext(ctx, path, time.Minute)
		gaveUp <- err
	}()
	cancel()
	select {
	case err := <-gaveUp:
		if err == nil || !strings.Contains(err.Error(), "context canceled") {
			t.Fatalf("a cancelled waiter returned %v, want the cancellation", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled waiter kept waiting")
	}
	held.Unlock()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("the waiter did not get the released lock: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter did not get the released lock")
	}
	// The abandoned waiter let go as soon as it got the lock.
	l, err := Acquire(path, 5*time.Second)
	if err != nil {
		t.Fatalf("the lock stayed taken after every holder let go: %v", err)
	}
	l.Unlock()
}

func TestDegradedFile(t *testing.T) {
	path := DegradedFile(t.TempDir())
	if got, err := ReadDegraded(path); err != nil || len(got) != 0 {
		t.Fatalf("no file: %v, %v", got, err)
	}
	if err := WriteDegraded(path, []string{"CABLE", IPv6Name("DSL")}); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadDegraded(path); err != nil || len(got) != 2 || !got["CABLE"] || !got["DSL.ipv6"] {
		t.Fatalf("got %v, %v", got, err)
	}
	if err := WriteDegraded(path, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("an empty list left the file: %v", err)
	}
}

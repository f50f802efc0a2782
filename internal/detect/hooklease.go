package detect

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// HookLeaseDir holds what the hooks were last told about each device's
// lease, one file per kernel device, relative to Options.Root. It is a
// lease directory of ispbalance's own: DHCP clients write their own lease
// files late or not at all (dhclient skips the write within 15 s of the
// last one), and Debian's dhclient-script keeps the old default route in
// main when a renewal keeps the address but changes the router, so the
// hook's word is the freshest fact there is.
const HookLeaseDir = "/run/ispbalance/leases"

// HookLease is one hook's record of a device's lease.
type HookLease struct {
	Gateway netip.Addr `json:"gateway"`
	// Addr is the device address the lease was for; the record counts
	// only while the device still has it. Zero means any address.
	Addr netip.Addr `json:"address,omitzero"`
	// Expires ends the record's use; zero means no known lifetime.
	Expires time.Time `json:"expires,omitzero"`
	// Source says who told us, for -s and logs ("dhclient RENEW").
	Source string `json:"source"`
}

// maxHookLease bounds a record file; a real one is about 150 bytes.
const maxHookLease = 4096

func hookLeasePath(root, dev string) (string, error) {
	if dev == "" || dev == "." || dev == ".." || strings.ContainsAny(dev, "/\x00") || len(dev) > 15 {
		return "", fmt.Errorf("recording hook lease: %q is not an interface name", dev)
	}
	return filepath.Join(root, HookLeaseDir, dev), nil
}

// WriteHookLease records l for device dev, atomically.
func WriteHookLease(root, dev string, l HookLease) error {
	path, err := hookLeasePath(root, dev)
	if err != nil {
		return err
	}
	return writeRecord(path, l)
}

// writeRecord writes v as JSON to path through a rename, so readers see
// the old record or the new one.
func writeRecord(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("recording hook lease: %w", err)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("recording hook lease: %w", err)
	}
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("recording hook lease: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("recording hook lease: %w", err)
	}
	return nil
}

// RemoveHookLease forgets device dev's record (its lease went away).
func RemoveHookLease(root, dev string) error {
	path, err := hookLeasePath(root, dev)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing hook lease: %w", err)
	}
	return nil
}

// hookGateway returns the gateway a hook recorded for dev, if the record
// still applies to the device's current address and has not expired. A
// missing record is normal; an unreadable one is a warning.
func hookGateway(root, dev string, addr netip.Prefix, now time.Time) (netip.Addr, string, string) {
	path, err := hookLeasePath(root, dev)
	if err != nil {
		return netip.Addr{}, "", ""
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return netip.Addr{}, "", ""
	}
	if err != nil {
		return netip.Addr{}, "", fmt.Sprintf("reading hook lease: %v", err)
	}
	defer f.Close()
	buf := make([]byte, maxHookLease+1)
	n, _ := f.Read(buf)
	gw, source, ok := hookRecordGateway(buf[:n], addr.Addr(), now)
	if !ok {
		return netip.Addr{}, "", fmt.Sprintf("reading hook lease %s: not a record ispbalance wrote", path)
	}
	return gw, source, ""
}

// hookRecordGateway reads a record's contents: the gateway it gives a
// device whose address is own, if any; ok is false when data is not a
// record. The file is only as trustworthy as everything else under /run,
// so its gateway must be one that could be a next hop, as a lease's
// routers must.
func hookRecordGateway(data []byte, own netip.Addr, now time.Time) (gw netip.Addr, source string, ok bool) {
	var l HookLease
	if len(data) > maxHookLease || json.Unmarshal(data, &l) != nil {
		return netip.Addr{}, "", false
	}
	switch {
	case !isUsableRouter(l.Gateway) || l.Gateway == own:
		return netip.Addr{}, "", true
	case l.Addr.IsValid() && l.Addr != own:
		return netip.Addr{}, "", true // a lease for an address the device no longer has
	case !l.Expires.IsZero() && now.After(l.Expires):
		return netip.Addr{}, "", true
	}
	return l.Gateway, l.Source, true
}

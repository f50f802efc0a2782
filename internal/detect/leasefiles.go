package detect

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// maxLeaseFile bounds what is read from one lease file. dhclient rewrites
// its database every few dozen leases, so real files stay far below this;
// anything larger is not a lease file we understand.
const maxLeaseFile = 4 << 20

// Directories holding DHCP client state, relative to Options.Root.
const (
	dirDhclientDebian = "/var/lib/dhcp"
	dirDhclientRedHat = "/var/lib/dhclient"
	dirNetworkManager = "/var/lib/NetworkManager"
	dirNetworkd       = "/run/systemd/netif/leases"
	dirDhcpcd         = "/var/lib/dhcpcd"
)

// leaseSource finds lease files. Directory listings are cached because one
// discovery may ask for several devices; files are read only on request.
type leaseSource struct {
	root     string
	listings map[string][]fs.DirEntry
}

func newLeaseSource(root string) *leaseSource {
	return &leaseSource{root: root, listings: make(map[string][]fs.DirEntry)}
}

// candidates reads every lease file that may describe the kernel device
// dev with link index index. Files that do not exist are normal (each
// system runs one DHCP client at most); other read failures are warnings.
func (s *leaseSource) candidates(dev string, index int) ([]leaseFile, []string) {
	var (
		files    []leaseFile
		warnings []string
	)
	add := func(path string, kind leaseKind) {
		f, err := readLeaseFile(path, kind)
		switch {
		case err == nil:
			files = append(files, f)
		case !errors.Is(err, fs.ErrNotExist):
			warnings = append(warnings, err.Error())
		}
	}
	for _, dir := range []string{dirDhclientDebian, dirDhclientRedHat} {
		names, w := s.list(dir)
		warnings = append(warnings, w...)
		for _, name := range names {
			if match, shared := dhclientFileFor(name, dev); match {
				kind := kindDhclient
				if shared {
					kind = kindDhclientShared
				}
				add(filepath.Join(s.root, dir, name), kind)
			}
		}
	}
	names, w := s.list(dirNetworkManager)
	warnings = append(warnings, w...)
	for _, name := range names {
		if kind, ok := networkManagerFileFor(name, dev); ok {
			add(filepath.Join(s.root, dirNetworkManager, name), kind)
		}
	}
	add(filepath.Join(s.root, dirNetworkd, strconv.Itoa(index)), kindKeyValue)
	add(filepath.Join(s.root, dirDhcpcd, dev+".lease"), kindBootp)
	return files, warnings
}

// list returns the names in dir; a failure other than absence is reported
// the first time only.
func (s *leaseSource) list(dir string) ([]string, []string) {
	entries, seen := s.listings[dir]
	var warnings []string
	if !seen {
		var err error
		entries, err = os.ReadDir(filepath.Join(s.root, dir))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			warnings = append(warnings, fmt.Sprintf("listing lease directory: %v", err))
		}
		s.listings[dir] = entries
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names, warnings
}

func readLeaseFile(path string, kind leaseKind) (leaseFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return leaseFile{}, fmt.Errorf("reading lease file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return leaseFile{}, fmt.Errorf("reading lease file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return leaseFile{}, fmt.Errorf("reading lease file %s: not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxLeaseFile+1))
	if err != nil {
		return leaseFile{}, fmt.Errorf("reading lease file: %w", err)
	}
	if len(data) > maxLeaseFile {
		return leaseFile{}, fmt.Errorf("reading lease file %s: larger than %d bytes", path, maxLeaseFile)
	}
	return leaseFile{Path: path, ModTime: fi.ModTime(), Kind: kind, Data: data}, nil
}

// dhclientFileFor decides whether a file in a dhclient state directory
// holds IPv4 leases for dev. Debian's ifupdown names it
// dhclient.<dev>.leases, Red Hat's scripts dhclient-<dev>.leases or
// dhclient-<uuid>-<dev>.lease; the name must end in the device name exactly
// so that eth1 does not pick up eth10's leases. A bare dhclient.leases is
// shared by every interface dhclient was started on.
func dhclientFileFor(name, dev string) (match, shared bool) {
	stem, ok := strings.CutSuffix(name, ".leases")
	if !ok {
		if stem, ok = strings.CutSuffix(name, ".lease"); !ok {
			return false, false
		}
	}
	rest, ok := strings.CutPrefix(stem, "dhclient")
	if !ok || strings.HasPrefix(rest, "6") {
		return false, false
	}
	if rest == "" {
		return true, true
	}
	return dev != "" && (strings.HasSuffix(rest, "."+dev) || strings.HasSuffix(rest, "-"+dev)), false
}

// networkManagerFileFor decides whether a file in NetworkManager's state
// directory is an IPv4 lease for dev: dhclient-<uuid>-<dev>.lease from its
// dhclient backend, internal-<uuid>-<dev>.lease from its own client.
func networkManagerFileFor(name, dev string) (leaseKind, bool) {
	stem, ok := strings.CutSuffix(name, ".lease")
	if !ok || dev == "" || !strings.HasSuffix(stem, "-"+dev) {
		return 0, false
	}
	switch {
	case strings.HasPrefix(stem, "dhclient-"):
		return kindDhclient, true
	case strings.HasPrefix(stem, "internal-"):
		return kindKeyValue, true
	}
	return 0, false
}

package detect

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParseDhclient(t *testing.T) {
	tests := []struct {
		file string
		want []dhclientLease
	}{
		{"dhclient.wan1.leases", []dhclientLease{
			{iface: "wan1", fixed: "100.64.1.57", routers: []string{"100.64.1.1"}},
			{iface: "wan1", fixed: "100.64.1.58", routers: []string{"100.64.1.254", "100.64.1.253"}},
		}},
		{"dhclient.leases", []dhclientLease{
			{iface: "eth0", fixed: "198.51.100.20", routers: []string{"198.51.100.1"}},
			{iface: "eth1", fixed: "203.0.113.77", routers: []string{"203.0.113.1"}},
			{fixed: "192.168.77.5", routers: []string{"192.168.77.1"}},
		}},
		// The quoted text must not open or close blocks or forge a routers
		// statement, and the block cut short by a crash is dropped.
		{"hostile.leases", []dhclientLease{
			{iface: "wan9", fixed: "100.64.9.10", routers: []string{
				"999.1.1.1", "0100.064.9.1", "224.0.0.1", "100.64.9.10", "::ffff:100.64.9.1", "100.64.9.1",
			}},
		}},
		{"empty.leases", nil},
		// dhclient6 databases nest blocks; nothing in them is an IPv4 lease.
		{"", nil},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data := []byte(`lease6 { interface "wan1"; ia-na 1a:2b { iaaddr 2001:db8::5 { starts 1; } } option dhcp6.name-servers 2001:db8::1; }`)
			if tt.file != "" {
				data = readTestdata(t, tt.file)
			}
			got := parseDhclient(data)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(dhclientLease{})); diff != "" {
				t.Errorf("parseDhclient (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseDhclientUnbalancedBraces(t *testing.T) {
	// A stray closing brace must not make the next block look nested.
	got := parseDhclient([]byte("} }\nlease { interface \"a\"; option routers 192.0.2.1; }"))
	want := []dhclientLease{{iface: "a", routers: []string{"192.0.2.1"}}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(dhclientLease{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// bootpReply builds a DHCP reply as dhcpcd stores it, with the given
// yiaddr and raw options after the magic cookie.
func bootpReply(yiaddr [4]byte, options ...byte) []byte {
	msg := make([]byte, bootpOptions)
	msg[0] = 2 // BOOTREPLY
	copy(msg[bootpYiaddr:], yiaddr[:])
	copy(msg[bootpOptions-4:], dhcpMagic)
	return append(msg, options...)
}

func TestPickLease(t *testing.T) {
	t0 := time.Date(2025, 6, 10, 9, 0, 0, 0, time.UTC)
	file := func(name string, kind leaseKind, age time.Duration) leaseFile {
		return leaseFile{Path: "/x/" + name, ModTime: t0.Add(-age), Kind: kind, Data: readTestdata(t, name)}
	}
	raw := func(path string, kind leaseKind, data []byte) leaseFile {
		return leaseFile{Path: path, ModTime: t0, Kind: kind, Data: data}
	}
	tests := []struct {
		name     string
		files    []leaseFile
		dev      string
		own      string
		wantGW   string
		wantPath string
		warnings int
	}{
		{
			name:  "last dhclient block wins and its first router is used",
			files: []leaseFile{file("dhclient.wan1.leases", kindDhclient, 0)},
			dev:   "wan1", own: "100.64.1.58",
			wantGW: "100.64.1.254", wantPath: "/x/dhclient.wan1.leases",
		},
		{
			name:  "last block is for another address: stale, not used",
			files: []leaseFile{file("dhclient.wan1.leases", kindDhclient, 0)},
			dev:   "wan1", own: "100.64.1.57",
		},
		{
			name:  "shared file: only the interface's block",
			files: []leaseFile{file("dhclient.leases", kindDhclientShared, 0)},
			dev:   "eth1", own: "203.0.113.77",
			wantGW: "203.0.113.1", wantPath: "/x/dhclient.leases",
		},
		{
			name:  "shared file: a block naming no interface belongs to nobody",
			files: []leaseFile{file("dhclient.leases", kindDhclientShared, 0)},
			dev:   "eth2", own: "192.168.77.5",
		},
		{
			name:  "per-device file: a block naming no interface is the device's",
			files: []leaseFile{file("dhclient.leases", kindDhclient, 0)},
			dev:   "eth2", own: "192.168.77.5",
			wantGW: "192.168.77.1", wantPath: "/x/dhclient.leases",
		},
		{
			name: "NetworkManager: internal lease has no router, dhclient one has",
			files: []leaseFile{
				file("internal-5f0c1c64-29b4-4a5d-9b8f-6a0f3e2d1c00-wan2.lease", kindKeyValue, 0),
				file("dhclient-5f0c1c64-29b4-4a5d-9b8f-6a0f3e2d1c00-wan2.lease", kindDhclient, time.Hour),
			},
			dev: "wan2", own: "100.64.2.61",
			wantGW: "100.64.2.1", wantPath: "/x/dhclient-5f0c1c64-29b4-4a5d-9b8f-6a0f3e2d1c00-wan2.lease",
		},
		{
			name:  "networkd key=value",
			files: []leaseFile{file("networkd-lease-3", kindKeyValue, 0)},
			dev:   "wan3", own: "100.64.3.40",
			wantGW: "100.64.3.1", wantPath: "/x/networkd-lease-3",
		},
		{
			name:  "networkd JSON",
			files: []leaseFile{file("networkd-lease-3.json", kindKeyValue, 0)},
			dev:   "wan3", own: "100.64.3.40",
			wantGW: "100.64.3.1", wantPath: "/x/networkd-lease-3.json",
		},
		{
			name:  "networkd lease for another address",
			files: []leaseFile{file("networkd-lease-3", kindKeyValue, 0)},
			dev:   "wan3", own: "100.64.3.41",
		},
		{
			name: "newest usable file wins",
			files: []leaseFile{
				file("networkd-lease-3", kindKeyValue, time.Minute),
				{Path: "/x/newer", ModTime: t0, Kind: kindKeyValue, Data: []byte("ADDRESS=100.64.3.40\nROUTER=100.64.3.9\n")},
				file("networkd-lease-3.json", kindKeyValue, time.Hour),
			},
			dev: "wan3", own: "100.64.3.40",
			wantGW: "100.64.3.9", wantPath: "/x/newer",
		},
		{
			name:  "hostile lease: junk and own address skipped with warnings, smuggled router ignored",
			files: []leaseFile{file("hostile.leases", kindDhclient, 0)},
			dev:   "wan9", own: "100.64.9.10",
			wantGW: "100.64.9.1", wantPath: "/x/hostile.leases", warnings: 5,
		},
		{
			name:  "key=value with only junk routers",
			files: []leaseFile{raw("/x/junk", kindKeyValue, []byte("ROUTER=256.0.0.1 1.2.3 0.0.0.0 127.0.0.1 255.255.255.255 $(reboot)\n"))},
			dev:   "wan3", own: "100.64.3.40",
			warnings: 6,
		},
		{
			name:  "JSON with an out-of-range byte",
			files: []leaseFile{raw("/x/bad.json", kindKeyValue, []byte(`{"Address":[100,64,3,40],"Router":[[100,64,3,300],[100,64,3,2]]}`))},
			dev:   "wan3", own: "100.64.3.40",
			wantGW: "100.64.3.2", wantPath: "/x/bad.json", warnings: 1,
		},
		{
			name:  "JSON that is not JSON",
			files: []leaseFile{raw("/x/broken.json", kindKeyValue, []byte(`{"Router":[[1,2,3,4]`))},
			dev:   "wan3", own: "100.64.3.40",
			warnings: 1,
		},
		{
			name:  "dhcpcd reply",
			files: []leaseFile{raw("/x/wan4.lease", kindBootp, bootpReply([4]byte{100, 64, 4, 20}, 53, 1, 5, 0, 3, 8, 100, 64, 4, 1, 100, 64, 4, 2, 255))},
			dev:   "wan4", own: "100.64.4.20",
			wantGW: "100.64.4.1", wantPath: "/x/wan4.lease",
		},
		{
			name:  "dhcpcd reply for another address",
			files: []leaseFile{raw("/x/wan4.lease", kindBootp, bootpReply([4]byte{100, 64, 4, 21}, 3, 4, 100, 64, 4, 1, 255))},
			dev:   "wan4", own: "100.64.4.20",
		},
		{
			name:  "dhcpcd reply with a truncated option",
			files: []leaseFile{raw("/x/wan4.lease", kindBootp, bootpReply([4]byte{100, 64, 4, 20}, 3, 8, 100, 64, 4, 1))},
			dev:   "wan4", own: "100.64.4.20",
			warnings: 1,
		},
		{
			name:  "dhcpcd file without the magic cookie",
			files: []leaseFile{raw("/x/wan4.lease", kindBootp, make([]byte, 300))},
			dev:   "wan4", own: "100.64.4.20",
			warnings: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gw, path, warnings := pickLease(tt.files, tt.dev, netip.MustParseAddr(tt.own))
			var want netip.Addr
			if tt.wantGW != "" {
				want = netip.MustParseAddr(tt.wantGW)
			}
			if gw != want || path != tt.wantPath {
				t.Errorf("got %v from %q, want %v from %q", gw, path, want, tt.wantPath)
			}
			if len(warnings) != tt.warnings {
				t.Errorf("got %d warnings, want %d:\n%s", len(warnings), tt.warnings, strings.Join(warnings, "\n"))
			}
		})
	}
}

// TestPickLeaseBoundsErrorText: an error about a lease's contents may
// quote them (the JSON decoder quotes a number too big for an int in
// full); the warning stays short all the same.
func TestPickLeaseBoundsErrorText(t *testing.T) {
	data := []byte(`{"Address":[1` + strings.Repeat("0", 5000) + `,64,3,40],"Router":[[100,64,3,1]]}`)
	_, _, warnings := pickLease([]leaseFile{{Path: "/x/big.json", Kind: kindKeyValue, Data: data}}, "wan3", netip.MustParseAddr("100.64.3.40"))
	if len(warnings) != 1 || len(warnings[0]) > 300 {
		t.Errorf("got %d warnings, the first %d bytes long; want one short one", len(warnings), len(strings.Join(warnings, "")))
	}
}

func TestQuoteShortBoundsHostileText(t *testing.T) {
	got := quoteShort(strings.Repeat("\n", 1000))
	if len(got) > 200 || strings.Contains(got, "\n") {
		t.Errorf("quoteShort let through %d bytes: %q", len(got), got)
	}
}

func TestDhclientFileFor(t *testing.T) {
	tests := []struct {
		name, dev     string
		match, shared bool
	}{
		{"dhclient.eth1.leases", "eth1", true, false},
		{"dhclient.eth10.leases", "eth1", false, false},
		{"dhclient.veth1.leases", "eth1", false, false},
		{"dhclient-eth1.leases", "eth1", true, false},
		{"dhclient-5f0c1c64-29b4-4a5d-9b8f-6a0f3e2d1c00-eth1.lease", "eth1", true, false},
		{"dhclient.v0.10.leases", "v0.10", true, false},
		{"dhclient6.eth1.leases", "eth1", false, false},
		{"dhclient.eth1.leases.bak", "eth1", false, false},
		{"dhclient.leases", "eth1", true, true},
		{"dhcpd.leases", "eth1", false, false},
		{"dhclient.eth1.leases", "", false, false},
	}
	for _, tt := range tests {
		match, shared := dhclientFileFor(tt.name, tt.dev)
		if match != tt.match || shared != tt.shared {
			t.Errorf("dhclientFileFor(%q, %q) = %v, %v; want %v, %v", tt.name, tt.dev, match, shared, tt.match, tt.shared)
		}
	}
}

func TestNetworkManagerFileFor(t *testing.T) {
	tests := []struct {
		name, dev string
		kind      leaseKind
		ok        bool
	}{
		{"internal-5f0c1c64-29b4-4a5d-9b8f-6a0f3e2d1c00-eth1.lease", "eth1", kindKeyValue, true},
		{"dhclient-5f0c1c64-29b4-4a5d-9b8f-6a0f3e2d1c00-eth1.lease", "eth1", kindDhclient, true},
		{"internal6-5f0c1c64-29b4-4a5d-9b8f-6a0f3e2d1c00-eth1.lease", "eth1", 0, false},
		{"dhclient6-5f0c1c64-29b4-4a5d-9b8f-6a0f3e2d1c00-eth1.lease", "eth1", 0, false},
		{"internal-5f0c1c64-29b4-4a5d-9b8f-6a0f3e2d1c00-eth10.lease", "eth1", 0, false},
		{"NetworkManager-intern.conf", "eth1", 0, false},
		{"timestamps", "eth1", 0, false},
	}
	for _, tt := range tests {
		kind, ok := networkManagerFileFor(tt.name, tt.dev)
		if kind != tt.kind || ok != tt.ok {
			t.Errorf("networkManagerFileFor(%q, %q) = %v, %v; want %v, %v", tt.name, tt.dev, kind, ok, tt.kind, tt.ok)
		}
	}
}

// TestLeaseSourceCandidates checks which files of a fake root are read for
// a device, and that the newest usable one wins across clients.
func TestLeaseSourceCandidates(t *testing.T) {
	root := t.TempDir()
	write := func(rel string, data []byte, age time.Duration) {
		t.Helper()
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		mt := time.Now().Add(-age)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	wan1 := readTestdata(t, "dhclient.wan1.leases")
	write("var/lib/dhcp/dhclient.wan1.leases", wan1, time.Hour)
	write("var/lib/dhcp/dhclient.wan10.leases", []byte(`lease { interface "wan10"; option routers 100.64.10.1; }`), 0)
	write("var/lib/dhclient/dhclient-wan1.leases", []byte(`lease { interface "wan1"; fixed-address 100.64.1.58; option routers 100.64.1.77; }`), 2*time.Hour)
	write("var/lib/NetworkManager/internal-5f0c1c64-29b4-4a5d-9b8f-6a0f3e2d1c00-wan1.lease", []byte("ADDRESS=100.64.1.58\n"), 0)
	write("run/systemd/netif/leases/7", []byte("ADDRESS=100.64.1.58\nROUTER=100.64.1.99\n"), 3*time.Hour)
	write("run/systemd/netif/leases/8", []byte("ADDRESS=100.64.1.58\nROUTER=100.64.1.88\n"), 0)
	write("var/lib/dhcpcd/wan1.lease", bootpReply([4]byte{100, 64, 1, 58}, 3, 4, 100, 64, 1, 66, 255), 30*time.Minute)
	if err := os.Mkdir(filepath.Join(root, "var/lib/dhcp/dhclient.wan1.leases.d"), 0o755); err != nil {
		t.Fatal(err)
	}

	src := newLeaseSource(root)
	files, warnings := src.candidates("wan1", 7)
	if len(warnings) != 0 {
		t.Errorf("unexpected warnings: %v", warnings)
	}
	var got []string
	for _, f := range files {
		rel, _ := filepath.Rel(root, f.Path)
		got = append(got, rel)
	}
	want := []string{
		"var/lib/dhcp/dhclient.wan1.leases",
		"var/lib/dhclient/dhclient-wan1.leases",
		"var/lib/NetworkManager/internal-5f0c1c64-29b4-4a5d-9b8f-6a0f3e2d1c00-wan1.lease",
		"run/systemd/netif/leases/7",
		"var/lib/dhcpcd/wan1.lease",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("candidates (-want +got):\n%s", diff)
	}
	gw, path, _ := pickLease(files, "wan1", netip.MustParseAddr("100.64.1.58"))
	if gw != netip.MustParseAddr("100.64.1.66") || path != filepath.Join(root, "var/lib/dhcpcd/wan1.lease") {
		t.Errorf("pickLease = %v from %s, want 100.64.1.66 from the dhcpcd lease (the newest)", gw, path)
	}
}

func TestLeaseSourceReportsUnreadable(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, "var/lib/dhcp/dhclient.wan1.leases")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, maxLeaseFile+1)
	if err := os.WriteFile(p, big, 0o644); err != nil {
		t.Fatal(err)
	}
	files, warnings := newLeaseSource(root).candidates("wan1", 3)
	if len(files) != 0 || len(warnings) != 1 || !strings.Contains(warnings[0], "larger than") {
		t.Errorf("got %d files and warnings %q, want none and one about size", len(files), warnings)
	}
}

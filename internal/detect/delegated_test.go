package detect

import (
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A lease database as dhclient -6 -P writes it: an older lease6 block
// followed by the renewed one, an IA_NA besides the IA_PD, and a quoted
// string that tries to forge a prefix.
const dhclient6Leases = `default-duid "\000\001\000\001,\242\211\020\012\000'\000\000\001";
lease6 {
  interface "wan1";
  ia-pd 1a:2b:3c:4d {
    starts 1764550000;
    renew 1800;
    rebind 2880;
    iaprefix 2001:db8:100::/56 {
      starts 1764550000;
      preferred-life 3600;
      max-life 7200;
    }
  }
  option dhcp6.server-id 0:1:0:1:2c:a2:89:10:a:0:27:0:0:2;
}
lease6 {
  interface "wan1";
  ia-na 1a:2b:3c:4d {
    starts 1764553600;
    iaaddr 2001:db8:1::99 {
      starts 1764553600;
      preferred-life 3600;
      max-life 7200;
    }
  }
  ia-pd 1a:2b:3c:4d {
    starts 1764553600;
    iaprefix 2001:db8:200::/56 {
      starts 1764553600;
      preferred-life 3600;
      max-life 7200;
    }
  }
  option dhcp6.domain-search "x; } iaprefix 2001:db8:666::/48 { starts 1764553600; max-life 99999999; }";
}
lease6 {
  interface "wan2";
  ia-pd 1 {
    iaprefix 2001:db8:300::/48 {
      starts 1764553600;
      max-life 7200;
    }
  }
}
`

func TestDhclientDelegations(t *testing.T) {
	got := dhclientDelegations([]byte(dhclient6Leases), "wan1")
	want := delegation{netip.MustParsePrefix("2001:db8:200::/56"), time.Unix(1764553600+7200, 0)}
	if len(got) != 1 || got[0].prefix != want.prefix || !got[0].expires.Equal(want.expires) {
		t.Fatalf("got %v, want only the newest lease's %v", got, want)
	}
	if got := dhclientDelegations([]byte(dhclient6Leases), "wan2"); len(got) != 1 || got[0].prefix != netip.MustParsePrefix("2001:db8:300::/48") {
		t.Errorf("wan2: got %v", got)
	}
	// A block cut short by a concurrent write yields nothing from it.
	cut := dhclient6Leases[:strings.Index(dhclient6Leases, "2001:db8:200::/56")+40]
	if got := dhclientDelegations([]byte(cut), "wan1"); len(got) != 1 {
		t.Errorf("cut file: got %v, want the first, complete lease only", got)
	}
}

func TestFindDelegatedPicksNewestUnexpired(t *testing.T) {
	root := t.TempDir()
	write := func(rel, text string) {
		t.Helper()
		path := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("var/lib/dhcp/dhclient6.wan1.leases", dhclient6Leases)
	write("var/lib/dhcp/dhclient.wan1.leases", "lease { interface \"wan1\"; }") // IPv4: ignored
	now := time.Unix(1764553600+60, 0)
	p, from, warnings := findDelegated(root, "wan1", now)
	if p != netip.MustParsePrefix("2001:db8:200::/56") || from != FromLeasePrefix+filepath.Join(root, "var/lib/dhcp/dhclient6.wan1.leases") || len(warnings) != 0 {
		t.Errorf("got %v from %q (warnings %v)", p, from, warnings)
	}
	// Once every delegation has expired there is none.
	if p, _, _ := findDelegated(root, "wan1", now.Add(3*time.Hour)); p.IsValid() {
		t.Errorf("expired lease still delegates %v", p)
	}
	if p, _, _ := findDelegated(root, "wan3", now); p.IsValid() {
		t.Errorf("wan3 has no lease but got %v", p)
	}
}

// dhcp6Reply builds a DHCPv6 Reply holding one IA_PD with the prefixes.
func dhcp6Reply(valid uint32, prefixes ...netip.Prefix) []byte {
	opt := func(code uint16, body []byte) []byte {
		b := binary.BigEndian.AppendUint16(nil, code)
		b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
		return append(b, body...)
	}
	ia := []byte{0, 0, 0, 1, 0, 0, 0, 100, 0, 0, 0, 200}
	for _, p := range prefixes {
		body := binary.BigEndian.AppendUint32(nil, valid/2)
		body = binary.BigEndian.AppendUint32(body, valid)
		a := p.Addr().As16()
		body = append(append(body, byte(p.Bits())), a[:]...)
		ia = append(ia, opt(dhcp6OptIAPrefix, body)...)
	}
	msg := []byte{7, 0xab, 0xcd, 0xef}
	msg = append(msg, opt(1, []byte{0, 3, 0, 1, 2, 3, 4, 5, 6, 7})...) // client id
	return append(msg, opt(dhcp6OptIAPD, ia)...)
}

func TestDhcpcdDelegations(t *testing.T) {
	written := time.Unix(1764553600, 0)
	pfx := netip.MustParsePrefix("2001:db8:400::/60")
	got, err := dhcpcdDelegations(dhcp6Reply(3600, pfx), written)
	if err != nil || len(got) != 1 || got[0].prefix != pfx || !got[0].expires.Equal(written.Add(time.Hour)) {
		t.Fatalf("got %v, %v", got, err)
	}
	// A link-local "prefix" or one with host bits is skipped, not used.
	bad, err := dhcpcdDelegations(dhcp6Reply(3600, netip.MustParsePrefix("fe80::/64")), written)
	if err != nil || len(bad) != 0 {
		t.Errorf("link-local: got %v, %v", bad, err)
	}
	msg := dhcp6Reply(3600, pfx)
	if _, err := dhcpcdDelegations(msg[:len(msg)-3], written); err == nil {
		t.Error("a truncated reply was read without error")
	}
}

func FuzzDelegations(f *testing.F) {
	f.Add([]byte(dhclient6Leases))
	f.Add(dhcp6Reply(60, netip.MustParsePrefix("2001:db8::/56")))
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(ds []delegation) {
			for _, d := range ds {
				if !d.prefix.Addr().Is6() || d.prefix != d.prefix.Masked() || !d.prefix.Addr().IsGlobalUnicast() {
					t.Fatalf("unusable delegation %v", d.prefix)
				}
			}
		}
		check(dhclientDelegations(data, "wan1"))
		ds, _ := dhcpcdDelegations(data, time.Unix(0, 0))
		check(ds)
	})
}

// TestHookDelegationWins: a hook's record beats the lease files, also
// when it says the delegation ended; an expired or forged record does
// not count.
func TestHookDelegationWins(t *testing.T) {
	root := t.TempDir()
	leases := filepath.Join(root, "var/lib/dhcp/dhclient6.leases")
	os.MkdirAll(filepath.Dir(leases), 0o755)
	if err := os.WriteFile(leases, []byte(dhclient6Leases), 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1764553600+60, 0)
	fromLease := netip.MustParsePrefix("2001:db8:200::/56")
	renewed := netip.MustParsePrefix("2001:db8:900::/56")

	if err := WriteHookDelegation(root, "wan1", HookDelegation{Prefix: renewed, Expires: now.Add(time.Hour), Source: "dhclient RENEW6"}); err != nil {
		t.Fatal(err)
	}
	if p, from, _ := findDelegated(root, "wan1", now); p != renewed || from != "hook:dhclient RENEW6" {
		t.Errorf("with a hook record: got %v from %q, want %v from the hook", p, from, renewed)
	}
	if p, _, _ := findDelegated(root, "wan1", now.Add(2*time.Hour)); p.IsValid() {
		t.Errorf("after the record and the leases expired: got %v", p)
	}
	if err := WriteHookDelegation(root, "wan1", HookDelegation{Source: "dhclient RELEASE6"}); err != nil {
		t.Fatal(err)
	}
	if p, _, _ := findDelegated(root, "wan1", now); p.IsValid() {
		t.Errorf("after RELEASE6 the lease file's %v was still believed", p)
	}
	path, _ := hookLeasePath(root, "wan1")
	os.WriteFile(path+".ipv6", []byte(`{"prefix":"fe80::/64","source":"x"}`), 0o644)
	p, _, warnings := findDelegated(root, "wan1", now)
	if p != fromLease || len(warnings) != 1 {
		t.Errorf("with a forged record: got %v, warnings %v; want the lease's %v and a warning", p, warnings, fromLease)
	}
}

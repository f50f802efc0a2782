package detect

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// addTestdata seeds f with every lease file in testdata.
func addTestdata(f *testing.F, add func(data []byte)) {
	paths, err := filepath.Glob(filepath.Join("testdata", "*"))
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		add(data)
	}
}

// quoteDhclient writes s as a dhclient string, escaping what the
// tokenizer unescapes.
func quoteDhclient(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// renderDhclient writes leases back as a dhclient database, every value
// quoted.
func renderDhclient(leases []dhclientLease) string {
	var b strings.Builder
	for _, l := range leases {
		b.WriteString("lease {\n")
		b.WriteString("  interface " + quoteDhclient(l.iface) + ";\n")
		b.WriteString("  fixed-address " + quoteDhclient(l.fixed) + ";\n")
		if len(l.routers) > 0 {
			var rs []string
			for _, r := range l.routers {
				rs = append(rs, quoteDhclient(r))
			}
			b.WriteString("  option routers " + strings.Join(rs, ", ") + ";\n")
		}
		b.WriteString("}\n")
	}
	return b.String()
}

// FuzzParseDhclient checks the dhclient parser two ways. Whatever it reads
// from a file, written back and read again, is the same. And text a
// server puts in a string, however hostile, is data: a block with such a
// string in it reads as that block, with the string intact where it is a
// value the parser keeps.
func FuzzParseDhclient(f *testing.F) {
	addTestdata(f, func(data []byte) { f.Add(data, `x"; } lease { interface "wan9"; option routers 192.0.2.66; #`) })
	f.Add([]byte("} }\nlease { interface \"a\"; option routers 192.0.2.1; }"), "}")
	f.Add([]byte(`lease6 { interface "wan1"; ia-na 1a:2b { iaaddr 2001:db8::5 { starts 1; } } }`), `\`)
	opts := cmp.Options{cmp.AllowUnexported(dhclientLease{}), cmpopts.EquateEmpty()}
	f.Fuzz(func(t *testing.T, data []byte, hostile string) {
		leases := parseDhclient(data)
		text := renderDhclient(leases)
		if diff := cmp.Diff(leases, parseDhclient([]byte(text)), opts); diff != "" {
			t.Fatalf("written back and read again (-first +again):\n%s\n%s", diff, text)
		}

		block := "lease {\n  interface " + quoteDhclient(hostile) + ";\n  option domain-name " + quoteDhclient(hostile) +
			";\n  fixed-address 100.64.1.2;\n  option routers 100.64.1.1;\n}\n"
		want := []dhclientLease{{iface: hostile, fixed: "100.64.1.2", routers: []string{"100.64.1.1"}}}
		if diff := cmp.Diff(want, parseDhclient([]byte(block)), opts); diff != "" {
			t.Fatalf("a string changed the block (-want +got):\n%s\n%s", diff, block)
		}
	})
}

// FuzzParseKeyValue checks that networkd's KEY=VALUE files read the same
// when written back.
func FuzzParseKeyValue(f *testing.F) {
	addTestdata(f, func(data []byte) { f.Add(data) })
	f.Add([]byte(" A = b = c \n#X=1\n=\nA=again\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		kv := parseKeyValue(data)
		var b strings.Builder
		for k, v := range kv {
			b.WriteString(k + "=" + v + "\n")
		}
		if diff := cmp.Diff(kv, parseKeyValue([]byte(b.String()))); diff != "" {
			t.Fatalf("written back and read again (-first +again):\n%s", diff)
		}
	})
}

// FuzzPickLease gives pickLease one file of any kind and any content. A
// gateway it returns must be a unicast IPv4 address other than the
// device's own, from that file; its warnings must be single, bounded
// lines, since a lease is what whoever answered DHCP chose.
func FuzzPickLease(f *testing.F) {
	addTestdata(f, func(data []byte) {
		for k := range kindBootp + 1 {
			f.Add(uint8(k), data, "wan1", "100.64.1.58")
		}
	})
	f.Add(uint8(kindBootp), bootpReply([4]byte{100, 64, 4, 20}, 53, 1, 5, 0, 3, 8, 100, 64, 4, 1, 100, 64, 4, 2, 255), "wan4", "100.64.4.20")
	f.Add(uint8(kindBootp), bootpReply([4]byte{100, 64, 4, 20}, 3, 8, 100, 64, 4, 1), "wan4", "100.64.4.20")
	f.Add(uint8(kindKeyValue), []byte(`{"Address":[100,64,3,40],"Router":[[100,64,3,300],[100,64,3,2]]}`), "wan3", "100.64.3.40")
	f.Add(uint8(kindKeyValue), []byte(`{"Address":[1`+strings.Repeat("0", 400)+`,64,3,40]}`), "wan3", "100.64.3.40")
	f.Add(uint8(kindKeyValue), []byte("ROUTER=256.0.0.1 1.2.3 0.0.0.0 127.0.0.1 255.255.255.255 $(reboot)\n"), "wan3", "100.64.3.40")
	f.Fuzz(func(t *testing.T, kind uint8, data []byte, dev, ownText string) {
		own, err := netip.ParseAddr(ownText)
		if err != nil {
			return
		}
		const path = "/var/lib/x.lease"
		file := leaseFile{Path: path, ModTime: time.Unix(1e9, 0), Kind: leaseKind(kind % (uint8(kindBootp) + 1)), Data: data}
		gw, from, warnings := pickLease([]leaseFile{file}, dev, own)
		if gw.IsValid() {
			if !isUsableRouter(gw) || gw == own || from != path {
				t.Fatalf("gateway %v from %q (own address %v)", gw, from, own)
			}
			// Text formats name the router as written (JSON and BOOTP
			// hold bytes, and a dhclient string may escape its dots).
			text := file.Kind != kindBootp && !bytes.HasPrefix(bytes.TrimSpace(data), []byte("{")) && !bytes.ContainsRune(data, '\\')
			if text && !bytes.Contains(data, []byte(gw.String())) {
				t.Fatalf("gateway %v is not in the file", gw)
			}
		} else if from != "" {
			t.Fatalf("no gateway, but from %q", from)
		}
		for _, w := range warnings {
			if len(w) > len(path)+300 || strings.ContainsFunc(w, unicode.IsControl) {
				t.Fatalf("warning of %d bytes or with control characters: %.400q", len(w), w)
			}
		}
	})
}

// FuzzBootpFacts builds dhcpcd lease files around fuzzed addresses and
// other options: the offered address and every router come back as
// written. Any bytes at all give only IPv4 addresses.
func FuzzBootpFacts(f *testing.F) {
	f.Add([]byte{100, 64, 4, 20}, []byte{100, 64, 4, 1, 100, 64, 4, 2}, []byte{53, 1, 5}, []byte{})
	f.Add([]byte{0, 0, 0, 0}, []byte{}, []byte{0, 0, 12, 3, 'a', 'b', 'c'}, make([]byte, 300))
	f.Fuzz(func(t *testing.T, yiaddr, routers, other, raw []byte) {
		if facts, _, err := bootpFacts(raw); err == nil {
			for _, s := range append(facts.routers, facts.addr) {
				if a, err := netip.ParseAddr(s); s != "" && (err != nil || !a.Is4()) {
					t.Fatalf("%q from a DHCP message", s)
				}
			}
		}
		if len(yiaddr) != 4 {
			return
		}
		routers = routers[:min(len(routers), 252)/4*4]
		// Other options, as code-length-value triples; a stray option
		// 3 or 255 in them would be a different message.
		var opts []byte
		for len(other) >= 2 && len(other) >= 2+int(other[1]) {
			if c := other[0]; c != optPad && c != optRouter && c != optEnd {
				opts = append(opts, other[:2+int(other[1])]...)
			}
			other = other[2+int(other[1]):]
		}
		if len(routers) > 0 {
			opts = append(opts, optRouter, byte(len(routers)))
			opts = append(opts, routers...)
		}
		opts = append(opts, optEnd)
		facts, ok, err := bootpFacts(bootpReply([4]byte(yiaddr), opts...))
		if err != nil || ok != (len(routers) > 0) {
			t.Fatalf("bootpFacts = %v, %v", ok, err)
		}
		want := leaseFacts{}
		if y := netip.AddrFrom4([4]byte(yiaddr)); !y.IsUnspecified() {
			want.addr = y.String()
		}
		for r := routers; len(r) >= 4; r = r[4:] {
			want.routers = append(want.routers, netip.AddrFrom4([4]byte(r[:4])).String())
		}
		if diff := cmp.Diff(want, facts, cmp.AllowUnexported(leaseFacts{})); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
	})
}

// FuzzHookRecord reads hook lease records. A gateway it gives must be one
// that could be a next hop and is not the device's own address; a record
// that WriteHookLease would write, still fresh and for the current
// address, gives its gateway back.
func FuzzHookRecord(f *testing.F) {
	f.Add([]byte(`{"gateway":"100.64.1.254","address":"100.64.1.2","source":"dhclient RENEW"}`), "100.64.1.254", "100.64.1.2")
	f.Add([]byte("gateway 1.2.3.4;id\n"), "127.0.0.1", "100.64.1.2")
	f.Add([]byte(`{"gateway":"0.0.0.0"}`), "224.0.0.1", "100.64.1.2")
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte, gwText, ownText string) {
		own, err := netip.ParseAddr(ownText)
		if err != nil {
			return
		}
		if gw, _, ok := hookRecordGateway(data, own, now); gw.IsValid() && (!ok || !isUsableRouter(gw) || gw == own) {
			t.Fatalf("record %q gives gateway %v for own address %v", data, gw, own)
		}
		gw, err := netip.ParseAddr(gwText)
		if err != nil {
			return
		}
		rec, err := json.Marshal(HookLease{Gateway: gw, Addr: own, Expires: now.Add(time.Minute), Source: "dhclient RENEW"})
		if err != nil {
			t.Fatal(err)
		}
		got, source, ok := hookRecordGateway(rec, own, now)
		want := gw
		if !isUsableRouter(gw) || gw == own {
			want = netip.Addr{}
		}
		if !ok || got != want || got.IsValid() && source != "dhclient RENEW" {
			t.Fatalf("record %s gives %v from %q (%v), want %v", rec, got, source, ok, want)
		}
	})
}

package hook

import (
	"errors"
	"maps"
	"math"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// kernelValidName is the kernel's dev_valid_name, byte for byte: at most
// 15 bytes, not "." or "..", and no '/', ':' or byte that the kernel's
// isspace counts (\t \n \v \f \r, space and 0xa0).
func kernelValidName(name string) bool {
	if name == "" || len(name) > 15 || name == "." || name == ".." || strings.IndexByte(name, 0) >= 0 {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c == '/' || c == ':' || c == ' ' || c >= '\t' && c <= '\r' || c == 0xa0:
			return false
		}
	}
	return true
}

// packCall and unpackCall turn a hook call into fuzzable strings: the
// arguments and the environment's NAME=VALUE pairs, each NUL-separated.
func packCall(args []string, env map[string]string) (string, string) {
	var kv []string
	for _, k := range slices.Sorted(maps.Keys(env)) {
		kv = append(kv, k+"="+env[k])
	}
	return strings.Join(args, "\x00"), strings.Join(kv, "\x00")
}

func unpackCall(args, env string) ([]string, map[string]string) {
	var argv []string
	if args != "" {
		argv = strings.Split(args, "\x00")
	}
	m := map[string]string{}
	for _, kv := range strings.Split(env, "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return argv, m
}

// FuzzParse feeds every source arbitrary arguments and environments. What
// Parse accepts must be what it promises: a device the kernel could name,
// IPv4 addresses taken from the environment (a gateway only when it could
// be a next hop), a lease that fits DHCP's 32 bits, and nothing for an
// event it ignores. What it refuses must name a variable or argument it
// read, and never repeat an absurd value in full.
func FuzzParse(f *testing.F) {
	for _, tt := range parseCases {
		args, env := packCall(tt.args, tt.env)
		f.Add(string(tt.src), args, env)
	}
	for _, tt := range refusedCases {
		if len(tt.args) > 0 && len(tt.args[0]) > 2*MaxValue {
			continue
		}
		short := map[string]string{}
		for k, v := range tt.env {
			short[k] = v[:min(len(v), MaxValue+1)]
		}
		args, env := packCall(tt.args, short)
		f.Add(string(tt.src), args, env)
	}
	f.Add(string(NetworkManager), "wan1\x00up", "IP4_GATEWAY=127.0.0.1\x00DHCP4_ROUTERS=100.64.1.1\x00IP4_ADDRESS_0=0.0.0.0/24")
	f.Add(string(Ifupdown), "", "IFACE=\xc3\xa0\x00MODE=start\x00PHASE=up\x00ADDRFAM=inet")
	for _, s := range Sources {
		f.Add(string(s), "", "")
	}
	f.Fuzz(func(t *testing.T, src, args, envText string) {
		argv, vars := unpackCall(args, envText)
		asked := map[string]bool{}
		getenv := func(k string) string { asked[k] = true; return vars[k] }
		ev, err := Parse(Source(src), argv, getenv)
		again, err2 := Parse(Source(src), slices.Clone(argv), func(k string) string { return vars[k] })
		if ev != again || (err == nil) != (err2 == nil) {
			t.Fatalf("Parse is not deterministic: %+v, %v then %+v, %v", ev, err, again, err2)
		}
		if err != nil {
			if n := len(err.Error()); n > 600 {
				t.Fatalf("refusal of %d bytes repeats the value: %.100q...", n, err.Error())
			}
			var ve *ValueError
			if errors.As(err, &ve) && !asked[ve.Var] && !strings.HasPrefix(ve.Var, "argument ") {
				t.Fatalf("refusal names %q, which Parse never read: %v", ve.Var, err)
			}
			return
		}
		if !slices.Contains(Sources, ev.Source) || ev.Source != Source(src) {
			t.Fatalf("event of source %q from a %q call", ev.Source, src)
		}
		switch ev.Action {
		case None:
			if ev.Device != "" || ev.Gateway.IsValid() || ev.Addr.IsValid() || ev.Lease != 0 {
				t.Fatalf("ignored event carries facts: %+v", ev)
			}
			return
		case Up, Change, Down:
		default:
			t.Fatalf("unknown action %q", ev.Action)
		}
		if ev.Device == "" && !(ev.Source == NetworkManager && ev.What == "connectivity-change") {
			t.Fatalf("event without a device: %+v", ev)
		}
		if ev.Device != "" && (!kernelValidName(ev.Device) || CheckDevice("x", ev.Device) != nil) {
			t.Fatalf("device %q is not a name the kernel accepts", ev.Device)
		}
		fromEnv := func(a netip.Addr) bool {
			for k, v := range vars {
				if asked[k] && strings.Contains(v, a.String()) {
					return true
				}
			}
			return false
		}
		if g := ev.Gateway; g.IsValid() && (!g.Is4() || !usableGateway(g) || !fromEnv(g)) {
			t.Fatalf("gateway %v is not a usable IPv4 address from the environment", g)
		}
		if a := ev.Addr; a.IsValid() && (!a.Is4() || a.IsUnspecified() || !fromEnv(a)) {
			t.Fatalf("address %v is not an IPv4 address from the environment", a)
		}
		if ev.Lease < 0 || ev.Lease > math.MaxUint32*time.Second || ev.Lease%time.Second != 0 {
			t.Fatalf("lease %v is not a DHCP lease time", ev.Lease)
		}
		if len(ev.What) > MaxValue || len(ev.Connection) > MaxValue {
			t.Fatalf("a value longer than %d bytes got through", MaxValue)
		}
	})
}

// FuzzCheckDevice holds CheckDevice to its promise: whatever it accepts,
// the kernel's own check accepts too.
func FuzzCheckDevice(f *testing.F) {
	for _, s := range []string{"eth0", "eth0.10", "br-lan", "..", "a/b", "eth0:1", "a b", "\xc3\xa0", "123456789012345", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if CheckDevice("IFACE", name) == nil && !kernelValidName(name) {
			t.Fatalf("CheckDevice accepted %q, which the kernel refuses", name)
		}
	})
}

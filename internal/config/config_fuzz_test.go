package config

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ispbalance/ispbalance/internal/kernelnames"
	"github.com/ispbalance/ispbalance/internal/trust"
)

// kernelName is the kernel's dev_valid_name.
func kernelName(name string) bool {
	if name == "" || len(name) > 15 || name == "." || name == ".." {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c == 0 || c == '/' || c == ':' || c == ' ' || c >= '\t' && c <= '\r' || c == 0xa0 {
			return false
		}
	}
	return true
}

// deviceOK checks a DEVICE column: a kernel name, optionally with an
// address label ("eth3:0", at most 15 bytes, as the kernel keeps labels)
// and with the "@parent" that `ip addr` shows, which is dropped.
func deviceOK(dev string) bool {
	name := dev
	if at := strings.IndexByte(name, '@'); at >= 0 {
		end := len(name)
		if c := strings.IndexByte(name[at:], ':'); c >= 0 {
			end = at + c
		}
		if !kernelName(name[at+1 : end]) {
			return false
		}
		name = name[:at] + name[end:]
	}
	kernel, _, labelled := strings.Cut(name, ":")
	return kernelName(kernel) && (!labelled || len(name) <= 15)
}

// render writes c out as a balance.conf.
func render(c *Config) string {
	var b strings.Builder
	dflt := func(s string) string {
		if s == "" {
			return "default"
		}
		return s
	}
	hasRole := map[Role]bool{}
	for _, s := range c.Services {
		hasRole[s.Role] = true
		fmt.Fprintf(&b, "%s %s %s", s.Name, s.Device, s.Role)
		if s.PingTargets != nil {
			fmt.Fprintf(&b, " %s", dflt(strings.Join(s.PingTargets, ",")))
		}
		if s.Role == RoleISP && s.PingTargets != nil {
			gw := ""
			if s.Gateway.IsValid() {
				gw = s.Gateway.String()
			}
			fmt.Fprintf(&b, " %d %s", s.Weight, dflt(gw))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "mode=%s\ninternet_ssh=%v\nlast_resort=%s\n", c.Mode, c.InternetSSH, c.LastResort)
	if c.FlushConntrack {
		b.WriteString("flush_conntrack=on-down\n")
	} else {
		b.WriteString("flush_conntrack=never\n")
	}
	if c.Files == trust.Allow {
		fmt.Fprintf(&b, "%s=allow\n", trust.Setting)
	}
	for _, g := range c.Groups {
		switch {
		case g.Line == 0: // the default group, written by leaving groups out
		case len(g.Members) > 0:
			fmt.Fprintf(&b, "forwarding_group=%s\n", strings.Join(g.Members, " "))
		case !hasRole[RoleLAN]:
			b.WriteString("forwarding_group=:lan\n")
		default:
			b.WriteString("forwarding_group=:isp\n")
		}
	}
	fmt.Fprintf(&b, "ipv6=%v\n", c.IPv6)
	for _, svc := range slices.Sorted(maps.Keys(c.IPv6Gateways)) {
		fmt.Fprintf(&b, "ipv6_gateway=%s %s\n", svc, c.IPv6Gateways[svc].Addr)
	}
	for _, svc := range slices.Sorted(maps.Keys(c.IPv6Prefixes)) {
		fmt.Fprintf(&b, "ipv6_prefix=%s %s\n", svc, c.IPv6Prefixes[svc].Prefix)
	}
	fmt.Fprintf(&b, "ipv6_nat=%s\n", c.IPv6NAT)
	for _, o := range c.MonitorOptions {
		fmt.Fprintf(&b, "%s=%s\n", o.Name, o.Value)
	}
	return b.String()
}

// FuzzParse reads arbitrary balance.conf files. An accepted file holds
// only values that are safe and usable downstream: service names that
// fit in chain names, devices the kernel could name, ping targets that
// are addresses or host names (nothing a shell would act on), gateways
// that could be next hops, weights in range, forwarding groups of known
// services; and written out again it reads the same. Every refusal names
// the file and a line of it.
func FuzzParse(f *testing.F) {
	f.Add(sample)
	f.Add("A eth0 isp\nforwarding_group=:lan\n")
	f.Add("A eth0.10@bond0 isp 192.0.2.1,host.example 1000 100.64.1.1\nB eth3:0 lan\nC .. lan\n")
	f.Add("A eth0123456789:label lan\n")
	for _, tc := range parseErrorCases {
		f.Add(tc.src)
	}
	opts := cmp.Options{
		cmpopts.IgnoreFields(Service{}, "Line"), cmpopts.IgnoreFields(Group{}, "Line"),
		cmpopts.IgnoreFields(Option{}, "Line", "File"), cmpopts.IgnoreFields(IPv6Gateway{}, "Line"),
		cmpopts.IgnoreFields(Config{}, "Path"),
		cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	}
	f.Fuzz(func(t *testing.T, src string) {
		c, err := Parse("f", strings.NewReader(src))
		lines := strings.Count(src, "\n") + 1
		if err != nil {
			var le *LineError
			switch {
			case errors.As(err, &le):
				if le.File != "f" || le.Line < 1 || le.Line > lines {
					t.Fatalf("error at %s:%d of a %d-line file: %v", le.File, le.Line, lines, err)
				}
			case !strings.HasPrefix(err.Error(), "f: ") || !strings.Contains(err.Error(), "ISP services"):
				t.Fatalf("error without file:line: %v", err)
			}
			return
		}
		names, devices := map[string]bool{}, map[string]bool{}
		for _, s := range c.Services {
			if !serviceName.MatchString(s.Name) || len(kernelnames.MarkChain(s.Name)) > 28 || names[s.Name] {
				t.Fatalf("service name %q", s.Name)
			}
			if !deviceOK(s.Device) || devices[s.Device] {
				t.Fatalf("service %s: device %q is not one the kernel could have", s.Name, s.Device)
			}
			names[s.Name], devices[s.Device] = true, true
			for _, p := range s.PingTargets {
				if _, err := netip.ParseAddr(p); err != nil && (!hostName().MatchString(p) || strings.ContainsAny(p, " \t\n;&|$`'\"\\<>(){}*?[]!#~")) {
					t.Fatalf("service %s: ping target %q", s.Name, p)
				}
			}
			if s.Weight < 1 || s.Weight > 1000 || s.Role != RoleISP && s.Role != RoleLAN || s.Line < 1 || s.Line > lines ||
				s.PingTargets == nil && (s.Weight != 1 || s.Gateway.IsValid()) {
				t.Fatalf("accepted invalid service %+v", s)
			}
			if g := s.Gateway; g.IsValid() && (!g.Is4() || unusableGateway(g) != "" || s.Role != RoleISP) {
				t.Fatalf("service %s: gateway %v", s.Name, g)
			}
		}
		for _, g := range c.Groups {
			for _, m := range g.Members {
				if !names[m] {
					t.Fatalf("forwarding group member %q is no service", m)
				}
			}
		}
		for svc, gw := range c.IPv6Gateways {
			if s, ok := c.Service(svc); !ok || s.Role != RoleISP {
				t.Fatalf("ipv6_gateway for %q, which is no ISP", svc)
			}
			if a := gw.Addr; !a.Is6() || a.Is4In6() || a.Zone() != "" || a.IsLoopback() || a.IsMulticast() || a.IsUnspecified() {
				t.Fatalf("ipv6_gateway %v for %s", a, svc)
			}
		}
		for svc, pfx := range c.IPv6Prefixes {
			if s, ok := c.Service(svc); !ok || s.Role != RoleISP {
				t.Fatalf("ipv6_prefix for %q, which is no ISP", svc)
			}
			if p := pfx.Prefix; !p.Addr().Is6() || p != p.Masked() || !p.Addr().IsGlobalUnicast() || p.Bits() > 64 {
				t.Fatalf("ipv6_prefix %v for %s", p, svc)
			}
		}
		for _, o := range c.MonitorOptions {
			if !settingName.MatchString(o.Name) || o.File != "f" || o.Line < 1 || o.Line > lines {
				t.Fatalf("monitor option %+v", o)
			}
		}
		text := render(c)
		again, err := Parse("again", strings.NewReader(text))
		if err != nil {
			t.Fatalf("written out, the configuration does not parse: %v\n%s", err, text)
		}
		if diff := cmp.Diff(c, again, opts); diff != "" {
			t.Fatalf("written out and read again (-first +again):\n%s\n%s", diff, text)
		}
	})
}

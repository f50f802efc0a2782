package lsm

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/google/go-cmp/cmp"
)

// FuzzParseFile reads a foolsm configuration that includes two more
// files, all three fuzzed, from a temporary directory. An accepted
// configuration must hold only values the monitor can use, and must read
// back the same when written out again; every error must name one of the
// files and a line of it that has a statement on it.
func FuzzParseFile(f *testing.F) {
	const inc = "include inc.conf\n-include conf.d/*.conf\n"
	for _, tt := range parseCases {
		f.Add([]byte(inc+tt.src), []byte{}, []byte{})
	}
	for _, tt := range parseErrorCases {
		f.Add([]byte(tt.src), []byte{}, []byte{})
	}
	def := func(name string) string { return "connection {\nname=" + name + "\ncheckip=192.0.2.1\n}\n" }
	f.Add([]byte(inc+def("MAIN")), []byte("defaults {\nwarn_email=x\n}\n"+def("A")), []byte(def("B")+"include ../inc.conf\n"))
	f.Add([]byte("\n\ninclude inc.conf\n"), []byte("\nfoo\n"), []byte{})
	f.Add([]byte("include inc.conf\nname=A\n}\n"), []byte("connection {\n"), []byte{})
	f.Add([]byte(inc+"group {\nmember-connection=A\nmember-connection=B\nlogic=1\n}\n"), []byte(def("A")), []byte(def("B")))
	f.Add([]byte("include [.conf\ninclude none*.conf\n"), []byte{}, []byte{})
	f.Add([]byte(inc+"connection {\nname=A\ncheckip=192.0.2.1\ndevice=eth\v0\n}\n"), []byte{}, []byte{})

	dir := f.TempDir()
	top := filepath.Join(dir, "foolsm.conf")
	if err := os.Mkdir(filepath.Join(dir, "conf.d"), 0o755); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, mainSrc, incSrc, subSrc []byte) {
		srcs := map[string][]byte{
			top:                                    mainSrc,
			filepath.Join(dir, "inc.conf"):         incSrc,
			filepath.Join(dir, "conf.d", "b.conf"): subSrc,
		}
		for name, src := range srcs {
			// Includes that leave the directory would read the real
			// file system (and /dev/zero never ends).
			if escapes(dir, name, src) {
				t.Skip()
			}
			if err := os.WriteFile(name, src, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		cfg, err := ParseFile(top)
		if err != nil {
			checkErrors(t, err, srcs)
			return
		}
		checkConfig(t, cfg)
		text, ok := render(cfg)
		if !ok {
			return
		}
		again, err := Parse("again.conf", []byte(text), nil)
		if err != nil {
			t.Fatalf("written out, the configuration does not parse: %v\n%s", err, text)
		}
		if diff := cmp.Diff(cfg, again); diff != "" {
			t.Fatalf("written out and read back (-first +again):\n%s\n%s", diff, text)
		}
	})
}

// escapes reports whether an include line of src, in file name, could
// match a file outside dir.
func escapes(dir, name string, src []byte) bool {
	for _, raw := range strings.Split(string(src), "\n") {
		line := normalize(raw)
		pattern, ok := strings.CutPrefix(line, "include ")
		if !ok {
			pattern, ok = strings.CutPrefix(line, "-include ")
		}
		if !ok {
			continue
		}
		full := pattern
		if !path.IsAbs(full) {
			full = path.Join(path.Dir(filepath.ToSlash(name)), full)
		}
		if !strings.HasPrefix(path.Clean(full), filepath.ToSlash(dir)+"/") {
			return true
		}
	}
	return false
}

// checkErrors requires every error to be an *Error at a statement line
// of one of the files.
func checkErrors(t *testing.T, err error, srcs map[string][]byte) {
	t.Helper()
	var leaves []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		leaves = j.Unwrap()
	} else {
		leaves = []error{err}
	}
	for _, e := range leaves {
		var le *Error
		if !errors.As(e, &le) {
			t.Fatalf("error without a file and line: %v", e)
		}
		src, ok := srcs[filepath.FromSlash(le.File)]
		if !ok {
			t.Fatalf("error names %q, not one of the files: %v", le.File, e)
		}
		lines := strings.Split(string(src), "\n")
		if le.Line < 1 || le.Line > len(lines) {
			t.Fatalf("error at line %d of a %d-line file: %v", le.Line, len(lines), e)
		}
		if normalize(lines[le.Line-1]) == "" {
			t.Fatalf("error blames line %d, which is blank or a comment: %v", le.Line, e)
		}
	}
}

// deviceOK is the kernel's dev_valid_name, with ':' allowed for alias
// labels; empty means no device.
func deviceOK(d string) bool {
	if d == "" {
		return true
	}
	if len(d) > 15 || d == "." || d == ".." {
		return false
	}
	for i := 0; i < len(d); i++ {
		if c := d[i]; c == 0 || c == '/' || c == ' ' || c >= '\t' && c <= '\r' || c == 0xa0 {
			return false
		}
	}
	return true
}

func nameOK(n string) bool {
	return n != "" && !strings.ContainsRune(n, '/') && !strings.ContainsFunc(n, unicode.IsSpace)
}

func checkConfig(t *testing.T, cfg *Config) {
	t.Helper()
	if cfg.Debug < 0 || cfg.Debug > maxDebug {
		t.Fatalf("debug %d out of range", cfg.Debug)
	}
	script := func(s string) bool { return s == "" || path.IsAbs(s) }
	names := map[string]bool{}
	for _, c := range cfg.Connections {
		if !nameOK(c.Name) || names[c.Name] {
			t.Fatalf("connection name %q is empty, has a blank or slash, or is used twice", c.Name)
		}
		names[c.Name] = true
		dst, dstErr := netip.ParseAddr(c.CheckIP)
		if c.CheckIP == "" || dstErr != nil && !isHostname(c.CheckIP) {
			t.Fatalf("connection %q: checkip %q", c.Name, c.CheckIP)
		}
		if c.SourceIP != "" {
			src, err := netip.ParseAddr(c.SourceIP)
			if err != nil || dstErr == nil && src.Is6() != dst.Is6() {
				t.Fatalf("connection %q: sourceip %q for checkip %q", c.Name, c.SourceIP, c.CheckIP)
			}
		}
		if c.CheckARP && dstErr == nil && dst.Is6() {
			t.Fatalf("connection %q: check_arp with %s", c.Name, dst)
		}
		if !deviceOK(c.Device) {
			t.Fatalf("connection %q: device %q is no interface name", c.Name, c.Device)
		}
		for _, s := range []string{c.EventScript, c.NotifyScript, c.LongDownEventScript, c.LongDownNotifyScript} {
			if !script(s) {
				t.Fatalf("connection %q: script %q is not absolute", c.Name, s)
			}
		}
		if c.TTL < 0 || c.TTL > 255 || c.Status < Down || c.Status > LongDown ||
			c.Interval < minIntervalMS*time.Millisecond || c.Timeout < time.Millisecond ||
			c.MaxPacketLoss <= c.MinPacketLoss || c.MinPacketLoss < 0 || c.MaxPacketLoss > c.Window ||
			c.MaxSuccessivePktsLost < 1 || c.MinSuccessivePktsRcvd < 1 || c.MinSuccessivePktsRcvd > c.Window ||
			c.StartupAcceleration > c.Window || c.StartupBurstPkts >= FollowedPkts || c.Window != FollowedPkts {
			t.Fatalf("connection %q: settings out of range: %+v", c.Name, c)
		}
	}
	groups := map[string]bool{}
	for _, g := range cfg.Groups {
		if !nameOK(g.Name) || groups[g.Name] {
			t.Fatalf("group name %q is empty, has a blank or slash, or is used twice", g.Name)
		}
		groups[g.Name] = true
		if g.Logic != Or && g.Logic != And || g.Status < Down || g.Status > LongDown || !deviceOK(g.Device) ||
			!script(g.EventScript) || !script(g.NotifyScript) {
			t.Fatalf("group %q: %+v", g.Name, g)
		}
		for _, m := range g.Members {
			if !names[m] {
				t.Fatalf("group %q: member %q is no connection", g.Name, m)
			}
		}
	}
}

// render writes cfg out as a foolsm configuration that sets every option
// explicitly. ok is false when a value cannot be written so that it reads
// back the same: one ending in CR (the line would end in CR LF, which is
// read like LF).
func render(cfg *Config) (string, bool) {
	var b strings.Builder
	ok := true
	kv := func(k string, v any) {
		s := fmt.Sprint(v)
		ok = ok && !strings.HasSuffix(s, "\r")
		fmt.Fprintf(&b, "%s=%s\n", k, s)
	}
	flag := func(v bool) int {
		if v {
			return 1
		}
		return 0
	}
	ms := func(d time.Duration) int64 { return d.Milliseconds() }
	kv("debug", cfg.Debug)
	for _, c := range cfg.Connections {
		b.WriteString("connection {\n")
		kv("name", c.Name)
		kv("checkip", c.CheckIP)
		kv("device", c.Device)
		kv("sourceip", c.SourceIP)
		kv("eventscript", c.EventScript)
		kv("notifyscript", c.NotifyScript)
		kv("long_down_eventscript", c.LongDownEventScript)
		kv("long_down_notifyscript", c.LongDownNotifyScript)
		kv("warn_email", c.WarnEmail)
		kv("long_down_email", c.LongDownEmail)
		kv("queue", c.Queue)
		kv("unknown_up_notify", flag(c.UnknownUpNotify))
		kv("check_arp", flag(c.CheckARP))
		kv("ttl", c.TTL)
		kv("status", int(c.Status))
		kv("interval_ms", ms(c.Interval))
		kv("timeout_ms", ms(c.Timeout))
		kv("max_packet_loss", c.MaxPacketLoss)
		kv("max_successive_pkts_lost", c.MaxSuccessivePktsLost)
		kv("min_packet_loss", c.MinPacketLoss)
		kv("min_successive_pkts_rcvd", c.MinSuccessivePktsRcvd)
		kv("long_down_time", int64(c.LongDownTime/time.Second))
		kv("startup_acceleration", c.StartupAcceleration)
		kv("startup_burst_pkts", c.StartupBurstPkts)
		kv("startup_burst_interval", ms(c.StartupBurstInterval))
		b.WriteString("}\n")
	}
	for _, g := range cfg.Groups {
		b.WriteString("group {\n")
		kv("name", g.Name)
		kv("eventscript", g.EventScript)
		kv("notifyscript", g.NotifyScript)
		kv("unknown_up_notify", flag(g.UnknownUpNotify))
		kv("warn_email", g.WarnEmail)
		kv("logic", int(g.Logic))
		kv("device", g.Device)
		kv("status", int(g.Status))
		kv("queue", g.Queue)
		for _, m := range slices.Clone(g.Members) {
			kv("member-connection", m)
		}
		b.WriteString("}\n")
	}
	return b.String(), ok
}

// FuzzDefaultsFromOptions reads balance.conf's name=value lines as the
// monitor's defaults. Accepted settings must be ones the decision rules
// can work with; every error must name the file and the line of an
// option.
func FuzzDefaultsFromOptions(f *testing.F) {
	f.Add("warn_email=noc@example.net\nlong_down_time=300\ndebug=9\n")
	f.Add("max_packet_loss=30\n")
	f.Add("interval_ms=2000\ninterval_ms=500\n")
	f.Add("max_packet_loss=10\nmin_packet_loss=10\n")
	f.Add("startup_acceleration=101\ncheckip=1.2.3.4\nfoo=1\nttl=x\n")
	f.Fuzz(func(t *testing.T, src string) {
		var opts []Option
		lines := map[int]bool{}
		for i, line := range strings.Split(src, "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				opts = append(opts, Option{Name: k, Value: v, File: "b.conf", Line: i + 1})
				lines[i+1] = true
			}
		}
		s, err := DefaultsFromOptions(opts)
		if err != nil {
			leaves := []error{err}
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				leaves = j.Unwrap()
			}
			for _, e := range leaves {
				var le *Error
				if !errors.As(e, &le) || le.File != "b.conf" || !lines[le.Line] {
					t.Fatalf("error not at an option's line: %v", e)
				}
			}
			return
		}
		if err := checkSettings(s); err != nil {
			t.Fatalf("accepted settings the rules cannot use: %v", err)
		}
		if s.Interval < minIntervalMS*time.Millisecond || s.Timeout < time.Millisecond || s.TTL < 0 || s.TTL > 255 ||
			s.MinPacketLoss < 0 || s.MaxSuccessivePktsLost < 1 || s.MinSuccessivePktsRcvd < 1 ||
			s.StartupBurstPkts >= FollowedPkts || s.Window < 1 || s.Window > FollowedPkts {
			t.Fatalf("accepted settings out of range: %+v", s)
		}
		for _, sc := range []string{s.EventScript, s.NotifyScript, s.LongDownEventScript, s.LongDownNotifyScript} {
			if sc != "" && !path.IsAbs(sc) {
				t.Fatalf("script %q is not absolute", sc)
			}
		}
	})
}

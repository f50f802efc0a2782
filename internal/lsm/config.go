package lsm

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Config is a foolsm configuration file (spec §1).
type Config struct {
	Debug       int // lsm's log verbosity; 8 unless set
	Connections []Settings
	Groups      []Group
}

// Logic says how a group combines its members.
type Logic int

const (
	Or  Logic = 0 // up when any member is up
	And Logic = 1 // up when every member is up
)

// Group is a `group { }` block: a state derived from some connections,
// with its own scripts. Groups are not probed.
type Group struct {
	Name            string
	EventScript     string
	NotifyScript    string
	UnknownUpNotify bool
	WarnEmail       string
	Logic           Logic
	Device          string // only passed to scripts as $4
	Status          State
	Queue           string
	Members         []string // connection names, in order
}

// ParseFile reads a foolsm configuration file and the files it includes.
// Relative include patterns are taken relative to the directory of the
// file that contains them; lsm took them relative to its working
// directory, which depended on how it was started.
func ParseFile(name string) (*Config, error) {
	abs, err := filepath.Abs(name)
	if err != nil {
		return nil, fmt.Errorf("reading monitor config: %w", err)
	}
	abs = filepath.ToSlash(abs)
	fsys := os.DirFS("/")
	src, err := fs.ReadFile(fsys, fsName(abs))
	if err != nil {
		return nil, fmt.Errorf("reading monitor config: %w", err)
	}
	return Parse(abs, src, fsys)
}

// Parse parses src, the contents of the file called name, reading the
// files it includes from fsys (nil: includes are errors). Absolute names
// map to fsys paths without the leading slash, so os.DirFS("/") gives
// the real file system and an fstest.MapFS a fake one.
//
// The grammar is foolsm's (spec §1.2–1.5), with these deliberate
// differences, all of which turn silent misbehaviour into errors:
//   - values are checked: integers must be integers in range (lsm's atoi
//     turned "ten" into 0), names must be non-empty without blanks or
//     slashes, scripts absolute paths, sourceip an IP address, and
//     connection and group names unique (lsm silently used the first);
//   - every error carries the file and the real line number (lsm skipped
//     blank, comment, include and `}` lines when counting);
//   - relative include patterns are relative to the including file's
//     directory, not to the working directory;
//   - a block left open at the end of a file is an error here too, and a
//     line ending in CR LF is read like one ending in LF (lsm rejected
//     every block opener of such a file);
//   - checkip host names are checked for syntax but not resolved: the
//     prober resolves them, and again later (lsm resolved them once, at
//     load time, and then could not ping them at all).
//
// All errors found are returned together.
func Parse(name string, src []byte, fsys fs.FS) (*Config, error) {
	p := &parser{fsys: fsys, def: block{s: FoolsmDefaults()}}
	p.cfg.Debug = 8
	p.parseFile(name, src)
	p.validate()
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	for _, c := range p.conns {
		p.cfg.Connections = append(p.cfg.Connections, c.s)
	}
	for _, g := range p.groups {
		p.cfg.Groups = append(p.cfg.Groups, g.g)
	}
	return &p.cfg, nil
}

// pos is a place in a configuration file. n orders settings across files.
type pos struct {
	file string
	line int
	n    int
}

// block is a defaults or connection block being read.
type block struct {
	s   Settings
	at  map[string]pos // where each option was last set, inherited ones included
	pos pos            // the opening line
}

type groupBlock struct {
	g       Group
	pos     pos
	members []pos
}

type mode int

const (
	topLevel mode = iota
	inDefaults
	inConnection
	inGroup
)

var blockOpeners = map[string]mode{"defaults {": inDefaults, "connection {": inConnection, "group {": inGroup}

// maxIncludeDepth stops runaway nesting that is not a loop (a loop is
// reported as such before this is reached).
const maxIncludeDepth = 32

type parser struct {
	fsys   fs.FS
	cfg    Config
	def    block
	conns  []block
	groups []groupBlock
	stack  []string // files being read, outermost first
	n      int
	errs   []error
}

func (p *parser) errorf(at pos, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: at.file, Line: at.line, Err: fmt.Errorf(format, args...)})
}

func (p *parser) parseFile(name string, src []byte) {
	p.stack = append(p.stack, name)
	defer func() { p.stack = p.stack[:len(p.stack)-1] }()

	m, opened := topLevel, pos{}
	for i, raw := range strings.Split(string(src), "\n") {
		line := normalize(raw)
		if line == "" {
			continue
		}
		p.n++
		at := pos{file: name, line: i + 1, n: p.n}
		if m == topLevel {
			m, opened = p.topLevel(line, at), at
			continue
		}
		if line == "}" {
			m = topLevel
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		switch {
		case !ok && (strings.HasPrefix(line, "include ") || strings.HasPrefix(line, "-include ")):
			p.errorf(at, "include inside the block opened at line %d: includes are only allowed outside blocks", opened.line)
		case !ok && blockOpeners[line] != topLevel:
			p.errorf(at, "%q inside the block opened at line %d: blocks do not nest (missing \"}\"?)", line, opened.line)
		case !ok:
			p.errorf(at, "%q: expected name=value or \"}\"", line)
		case m == inDefaults:
			p.setOption(&p.def, key, value, at, "defaults")
		case m == inConnection:
			p.setOption(&p.conns[len(p.conns)-1], key, value, at, "connection")
		case m == inGroup:
			p.setGroupOption(&p.groups[len(p.groups)-1], key, value, at)
		}
	}
	if m != topLevel {
		p.errorf(opened, "block not closed before the end of the file")
	}
}

// topLevel handles a line outside blocks and returns the mode it opens.
func (p *parser) topLevel(line string, at pos) mode {
	if m, ok := blockOpeners[line]; ok {
		switch m {
		case inConnection:
			c := p.def
			c.at = maps.Clone(p.def.at)
			c.pos = at
			p.conns = append(p.conns, c)
		case inGroup:
			d := p.def.s
			p.groups = append(p.groups, groupBlock{pos: at, g: Group{
				Name:            d.Name,
				EventScript:     d.EventScript,
				NotifyScript:    d.NotifyScript,
				UnknownUpNotify: d.UnknownUpNotify,
				WarnEmail:       d.WarnEmail,
				Logic:           Or,
				Device:          d.Device,
				Status:          d.Status,
				Queue:           d.Queue,
			}})
		}
		return m
	}
	if rest, ok := strings.CutPrefix(line, "include "); ok {
		p.include(rest, true, at)
		return topLevel
	}
	if rest, ok := strings.CutPrefix(line, "-include "); ok {
		p.include(rest, false, at)
		return topLevel
	}
	if key, value, ok := strings.Cut(line, "="); ok && key == "debug" {
		n, err := parseInt(value, 0, maxDebug)
		if err != nil {
			p.errorf(at, "debug: %w", err)
		}
		p.cfg.Debug = n
		return topLevel
	}
	hint := ""
	if squeezed := strings.ReplaceAll(line, " ", ""); blockOpeners[strings.TrimSuffix(squeezed, "{")+" {"] != topLevel {
		hint = fmt.Sprintf(" (write %q)", strings.TrimSuffix(squeezed, "{")+" {")
	} else if _, ok := connOptions[strings.SplitN(line, "=", 2)[0]]; ok {
		hint = " (options belong in a defaults, connection or group block)"
	}
	p.errorf(at, "unrecognised statement %q%s", line, hint)
	return topLevel
}

func (p *parser) setOption(b *block, key, value string, at pos, what string) {
	if _, ok := connOptions[key]; !ok {
		hint := ""
		if key == "logic" || key == "member-connection" {
			hint = " (a group option)"
		}
		p.errorf(at, "unknown %s option %q%s", what, key, hint)
		return
	}
	if err := setConnOption(&b.s, key, value); err != nil {
		p.errorf(at, "%w", err)
		return
	}
	if b.at == nil {
		b.at = map[string]pos{}
	}
	b.at[key] = at
}

func (p *parser) setGroupOption(gb *groupBlock, key, value string, at pos) {
	g := &gb.g
	var err error
	switch key {
	case "name":
		err = setName(&g.Name, value)
	case "eventscript":
		err = setScript(&g.EventScript, value)
	case "notifyscript":
		err = setScript(&g.NotifyScript, value)
	case "unknown_up_notify":
		err = setBool(&g.UnknownUpNotify, value)
	case "warn_email":
		g.WarnEmail = value
	case "logic":
		// lsm also took other numbers, with meanings nobody intended
		// (spec §3.6).
		var n int
		if n, err = parseInt(value, int(Or), int(And)); err == nil {
			g.Logic = Logic(n)
		}
	case "device":
		err = setDevice(&g.Device, value)
	case "status":
		err = setState(&g.Status, value)
	case "queue":
		g.Queue = value
	case "member-connection":
		if value == "" {
			err = errors.New("empty connection name")
		}
		g.Members = append(g.Members, value)
		gb.members = append(gb.members, at)
	default:
		p.errorf(at, "unknown group option %q", key)
		return
	}
	if err != nil {
		p.errorf(at, "%s: %w", key, err)
	}
}

// include reads the files matching pattern: a literal directory and a
// shell pattern for the file name, whose matches are read in name order,
// skipping names ending in "~" and directories. With must, an unreadable
// directory or no match is an error; without (-include), it is not.
func (p *parser) include(pattern string, must bool, at pos) {
	if p.fsys == nil {
		p.errorf(at, "include %q: no file system to include from", pattern)
		return
	}
	full := pattern
	if !path.IsAbs(full) {
		full = path.Join(path.Dir(at.file), full)
	}
	dir, glob := path.Split(full)
	dir = path.Clean(dir)
	if _, err := path.Match(glob, ""); err != nil || glob == "" {
		p.errorf(at, "include %q: bad file name pattern", pattern)
		return
	}
	entries, err := fs.ReadDir(p.fsys, fsName(dir))
	if err != nil {
		if must {
			p.errorf(at, "include %q: %w", pattern, err)
		}
		return
	}
	found := 0
	for _, e := range entries {
		if ok, _ := path.Match(glob, e.Name()); !ok || strings.HasSuffix(e.Name(), "~") || e.IsDir() {
			continue
		}
		found++
		file := path.Join(dir, e.Name())
		if i := slices.Index(p.stack, file); i >= 0 {
			p.errorf(at, "include loop: %s -> %s", strings.Join(p.stack[i:], " -> "), file)
			continue
		}
		if len(p.stack) >= maxIncludeDepth {
			p.errorf(at, "includes nested deeper than %d files", maxIncludeDepth)
			return
		}
		src, err := fs.ReadFile(p.fsys, fsName(file))
		if err != nil {
			p.errorf(at, "include %q: %w", pattern, err)
			continue
		}
		p.parseFile(file, src)
	}
	if found == 0 && must {
		p.errorf(at, "include %q: no file matches", pattern)
	}
}

// fsName turns a slash-separated path into an io/fs name.
func fsName(name string) string {
	name = strings.TrimPrefix(path.Clean(name), "/")
	if name == "" {
		return "."
	}
	return name
}

// normalize applies lsm's per-line rules (spec §1.2): comment removed,
// tabs to spaces, runs of spaces to one, spaces next to "=" and at the
// ends removed. A trailing CR is removed too.
func normalize(line string) string {
	line = strings.TrimSuffix(line, "\r")
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	line = strings.ReplaceAll(line, "\t", " ")
	for strings.Contains(line, "  ") {
		line = strings.ReplaceAll(line, "  ", " ")
	}
	line = strings.ReplaceAll(line, " =", "=")
	line = strings.ReplaceAll(line, "= ", "=")
	return strings.Trim(line, " ")
}

// validate applies the checks lsm made once everything was read (spec
// §1.6), and the ones it should have made.
func (p *parser) validate() {
	conns := map[string]pos{}
	for _, c := range p.conns {
		s := c.s
		if prev, ok := conns[s.Name]; ok {
			p.errorf(c.pos, "connection name %q already used at %s:%d", s.Name, prev.file, prev.line)
		} else {
			conns[s.Name] = c.pos
		}
		if s.CheckIP == "" {
			p.errorf(c.blame("checkip"), "connection %q has no checkip", s.Name)
		}
		dst, dstErr := netip.ParseAddr(s.CheckIP)
		if s.CheckARP && dstErr == nil && dst.Is6() {
			p.errorf(c.blame("check_arp", "checkip"), "connection %q: check_arp works only with IPv4 targets", s.Name)
		}
		if src, err := netip.ParseAddr(s.SourceIP); err == nil && dstErr == nil && src.Is6() != dst.Is6() {
			p.errorf(c.blame("sourceip", "checkip"), "connection %q: sourceip %s and checkip %s are of different families", s.Name, s.SourceIP, s.CheckIP)
		}
		if err := checkSettings(s); err != nil {
			p.errorf(c.blame("max_packet_loss", "min_packet_loss", "startup_acceleration"), "connection %q: %w", s.Name, err)
		}
	}
	groups := map[string]pos{}
	for _, g := range p.groups {
		if prev, ok := groups[g.g.Name]; ok {
			p.errorf(g.pos, "group name %q already used at %s:%d", g.g.Name, prev.file, prev.line)
		} else {
			groups[g.g.Name] = g.pos
		}
		for i, m := range g.g.Members {
			if _, ok := conns[m]; !ok && m != "" {
				p.errorf(g.members[i], "group %q: no connection named %q", g.g.Name, m)
			}
		}
	}
}

// blame returns where the most recent of the given options was set, or
// the block's opening line when none was.
func (b block) blame(keys ...string) pos {
	at := b.pos
	for _, k := range keys {
		if a, ok := b.at[k]; ok && (at == b.pos || a.n > at.n) {
			at = a
		}
	}
	return at
}

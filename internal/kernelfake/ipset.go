package kernelfake

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// IPSets is the kernel's IP sets, spoken to in the text of `ipset
// restore -exist` and `ipset list -t`. It models hash:ip sets with
// timeout support only, the kind ispbalance makes, and refuses any other
// type, option or command. As the real restore does, it runs commands in
// order and stops at the first error, keeping what the lines before it
// did; -exist lets an identical create, a destroy of a missing set, an
// add of a member and a del of a non-member pass.
//
// A set that a rule of a Netfilter attached with UseSets refers to
// cannot be destroyed, and such a Netfilter refuses a rule that names a
// set that does not exist or is of the other family, as the kernel
// does. Time does not pass: members keep the timeout they were given.
type IPSets struct {
	mu       sync.Mutex
	sets     map[string]*ipset
	users    []*Netfilter
	restores []string

	// Fail, when set, is asked before every restore with its input; an
	// error it returns fails the restore, and nothing changes.
	Fail func(input string) error
}

type ipset struct {
	ipv6    bool
	members map[netip.Addr]int // member -> timeout in seconds, 0 for none
}

// NewIPSets returns a kernel without sets.
func NewIPSets() *IPSets { return &IPSets{sets: map[string]*ipset{}} }

// UseSets lets n's rules refer to the sets of s; ipv6 says n is
// ip6tables, whose rules can use only inet6 sets.
func (n *Netfilter) UseSets(s *IPSets, ipv6 bool) {
	n.mu.Lock()
	n.sets, n.ipv6 = s, ipv6
	n.mu.Unlock()
	s.mu.Lock()
	s.users = append(s.users, n)
	s.mu.Unlock()
}

// setArgs are the options of the set match and the SET target that name
// a set.
var setArgs = []string{"--match-set", "--add-set", "--del-set"}

// setsOf lists the sets a rule names.
func setsOf(rule []string) []string {
	var out []string
	for i := 0; i+1 < len(rule); i++ {
		if slices.Contains(setArgs, rule[i]) {
			out = append(out, rule[i+1])
		}
	}
	return out
}

// checkSets refuses a rule naming a set that does not exist or is of the
// other family, with iptables-restore's words. It runs with n locked.
func (n *Netfilter) checkSets(rule []string) error {
	for _, name := range setsOf(rule) {
		ipv6, ok := false, false
		if n.sets != nil {
			ipv6, ok = n.sets.family(name)
		}
		switch {
		case !ok:
			return fmt.Errorf("Set %s doesn't exist.", name)
		case ipv6 != n.ipv6:
			fam := "IPv4"
			if ipv6 {
				fam = "IPv6"
			}
			return fmt.Errorf("The protocol family of set %s is %s, which is not applicable.", name, fam)
		}
	}
	return nil
}

func (s *IPSets) family(name string) (ipv6, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.sets[name]
	if set == nil {
		return false, false
	}
	return set.ipv6, true
}

// referenced counts the rules that name each set.
func (n *Netfilter) referenced() map[string]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	refs := map[string]int{}
	for _, t := range n.tables {
		for _, c := range t.chains {
			for _, r := range c.rules {
				for _, name := range setsOf(r) {
					refs[name]++
				}
			}
		}
	}
	return refs
}

// Restores returns the input of every restore that succeeded, oldest
// first.
func (s *IPSets) Restores() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.restores)
}

// List prints every set's header as `ipset list -t` does, by name.
func (s *IPSets) List(ctx context.Context) ([]byte, error) {
	refs := s.references()
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for i, name := range slices.Sorted(maps.Keys(s.sets)) {
		set := s.sets[name]
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "Name: %s\nType: hash:ip\nRevision: 6\nHeader: family %s hashsize 1024 maxelem 65536 timeout 0 bucketsize 12 initval 0x00000000\n"+
			"Size in memory: %d\nReferences: %d\nNumber of entries: %d\n", name, family(set.ipv6), 200+16*len(set.members), refs[name], len(set.members))
	}
	return []byte(b.String()), nil
}

// Save prints every set and its members as `ipset save` does, by name
// and address: the whole state, for tests to compare.
func (s *IPSets) Save() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(s.sets)) {
		set := s.sets[name]
		fmt.Fprintf(&b, "create %s hash:ip family %s hashsize 1024 maxelem 65536 timeout 0\n", name, family(set.ipv6))
		for _, a := range slices.SortedFunc(maps.Keys(set.members), netip.Addr.Compare) {
			fmt.Fprintf(&b, "add %s %s timeout %d\n", name, a, set.members[a])
		}
	}
	return b.String()
}

func family(ipv6 bool) string {
	if ipv6 {
		return "inet6"
	}
	return "inet"
}

func (s *IPSets) references() map[string]int {
	s.mu.Lock()
	users := slices.Clone(s.users)
	s.mu.Unlock()
	refs := map[string]int{}
	for _, n := range users {
		for name, c := range n.referenced() {
			refs[name] += c
		}
	}
	return refs
}

// ipsetError is how the fake refuses a line, in ipset's words.
type ipsetError struct {
	line int
	msg  string
}

func (e *ipsetError) Error() string {
	return fmt.Sprintf("ipset v7.17: Error in line %d: %s", e.line, e.msg)
}

// Restore runs `ipset restore -exist` input.
func (s *IPSets) Restore(ctx context.Context, input string) error {
	// The rules are counted before s is locked: a Netfilter checking a
	// rule locks itself, then s.
	refs := s.references()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Fail != nil {
		if err := s.Fail(input); err != nil {
			return err
		}
	}
	for i, line := range strings.Split(input, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if err := s.command(f, refs); err != nil {
			return &ipsetError{line: i + 1, msg: err.Error()}
		}
	}
	s.restores = append(s.restores, input)
	return nil
}

func (s *IPSets) command(f []string, refs map[string]int) error {
	if len(f) < 2 {
		return fmt.Errorf("missing set name in %q", strings.Join(f, " "))
	}
	name, set := f[1], s.sets[f[1]]
	switch f[0] {
	case "create":
		if len(f) != 7 || f[2] != "hash:ip" || f[3] != "family" || (f[4] != "inet" && f[4] != "inet6") || f[5] != "timeout" {
			return fmt.Errorf("the fake makes only `create NAME hash:ip family inet|inet6 timeout N` sets, not %q", strings.Join(f, " "))
		}
		if t, err := strconv.Atoi(f[6]); err != nil || t != 0 {
			return fmt.Errorf("the fake makes sets with timeout 0 only, not %q", f[6])
		}
		if len(name) > 31 {
			return fmt.Errorf("setname '%s' is too long, must not be longer than 31 characters", name)
		}
		ipv6 := f[4] == "inet6"
		if set != nil {
			if set.ipv6 != ipv6 {
				return fmt.Errorf("Set cannot be created: set with the same name already exists")
			}
			return nil
		}
		s.sets[name] = &ipset{ipv6: ipv6, members: map[netip.Addr]int{}}
	case "destroy":
		switch {
		case len(f) != 2:
			return fmt.Errorf("unknown argument %q", f[2])
		case set == nil:
			return nil
		case refs[name] > 0:
			return fmt.Errorf("Set cannot be destroyed: it is in use by a kernel component")
		}
		delete(s.sets, name)
	case "flush":
		if set == nil {
			return fmt.Errorf("The set with the given name does not exist")
		}
		clear(set.members)
	case "add", "del":
		if set == nil {
			return fmt.Errorf("The set with the given name does not exist")
		}
		if len(f) < 3 {
			return fmt.Errorf("missing element in %q", strings.Join(f, " "))
		}
		a, err := netip.ParseAddr(f[2])
		if err != nil || a.Is6() != set.ipv6 || a.Zone() != "" {
			return fmt.Errorf("Syntax error: cannot parse %s: resolving to IPv%s address failed", f[2], map[bool]string{false: "4", true: "6"}[set.ipv6])
		}
		if f[0] == "del" {
			if len(f) != 3 {
				return fmt.Errorf("unknown argument %q", f[3])
			}
			delete(set.members, a)
			return nil
		}
		timeout := 0
		switch {
		case len(f) == 5 && f[3] == "timeout":
			if timeout, err = strconv.Atoi(f[4]); err != nil || timeout < 0 {
				return fmt.Errorf("Syntax error: '%s' is invalid as number", f[4])
			}
		case len(f) != 3:
			return fmt.Errorf("the fake adds `ADDRESS [timeout N]` only, not %q", strings.Join(f[2:], " "))
		}
		set.members[a] = timeout
	default:
		return fmt.Errorf("No command specified: unknown argument %s", f[0])
	}
	return nil
}

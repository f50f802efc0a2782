package apply

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// A rebuild that finds nothing new should not fork an iptables-save per
// family to learn so (each costs milliseconds), and one that moves an ISP
// needs only the restore. So the applier keeps a record of ispbalance's
// part of the firewall as the nf_tables generation Gen left it, and
// trusts it instead of reading the firewall while the ruleset is still at
// Gen. Anyone's change to any table raises the generation, and the next
// rebuild reads the firewall again. The record is only ever written with
// a state known exactly:
//   - read by iptables-save with the same generation before and after
//     the reads (no commit in between), or
//   - that state with the restore text applied, when every commit
//     between the generation before the restore and the one after was
//     made by the iptables-restore processes the applier ran (the kernel
//     names the committing process in each commit's NEWGEN notice).
//
// It is removed before any firewall write, so a write that fails or is
// interrupted leaves no record, and the monitor's drift check, which
// always reads the firewall, removes a record that disagrees with it.
// Where the record lives should not outlive a reboot (/run).
type firewallRecord struct {
	Instance string `json:"instance"`
	Gen      uint32 `json:"generation"`
	// Families holds ispbalance's part of each family's firewall
	// ("ipv4", "ipv6") in iptables-save's format (see ours).
	Families map[string]string `json:"families"`
}

// loadRecord returns the record if it exists and speaks of ruleset rs at
// generation gen, with the families wanted.
func (a *Applier) loadRecord(rs Ruleset, gen uint32, families ...string) (map[string]firewallState, bool) {
	if a.recordPath == "" {
		return nil, false
	}
	data, err := os.ReadFile(a.recordPath)
	if err != nil {
		return nil, false
	}
	var rec firewallRecord
	if json.Unmarshal(data, &rec) != nil || rec.Instance != rs.Instance() || rec.Gen != gen {
		return nil, false
	}
	out := map[string]firewallState{}
	for _, fam := range families {
		text, ok := rec.Families[fam]
		if !ok {
			return nil, false
		}
		st, err := parseSave([]byte(text))
		if err != nil {
			return nil, false
		}
		out[fam] = st
	}
	return out, true
}

// writeRecord saves what is known of the firewall at generation gen.
func (a *Applier) writeRecord(rs Ruleset, gen uint32, states map[string]firewallState) error {
	if a.recordPath == "" {
		return nil
	}
	rec := firewallRecord{Instance: rs.Instance(), Gen: gen, Families: map[string]string{}}
	for fam, st := range states {
		rec.Families[fam] = st.ours().text()
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(a.recordPath), 0o755); err != nil {
		return fmt.Errorf("recording the firewall: %w", err)
	}
	tmp := a.recordPath + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("recording the firewall: %w", err)
	}
	if err := os.Rename(tmp, a.recordPath); err != nil {
		return fmt.Errorf("recording the firewall: %w", err)
	}
	return nil
}

// forgetRecord removes the record; done before every firewall write.
func (a *Applier) forgetRecord() error {
	if a.recordPath == "" {
		return nil
	}
	if err := os.Remove(a.recordPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("forgetting the firewall record: %w", err)
	}
	return nil
}

// ours returns what the applier uses of a saved firewall: every table's
// chain names and policies, the rules of ispbalance's chains and the
// jumps to them; other software's rules are left out.
func (st firewallState) ours() firewallState {
	out := firewallState{}
	for name, t := range st {
		c := &savedTable{policies: maps.Clone(t.policies), chains: slices.Clone(t.chains),
			rules: map[string][]string{}, jumps: maps.Clone(t.jumps)}
		for _, ch := range t.chains {
			if isOurs(ch) {
				c.rules[ch] = slices.Clone(t.rules[ch])
			}
		}
		out[name] = c
	}
	return out
}

// text renders a state made by ours in iptables-save's format, which
// parseSave reads back to the same state: tables, policies, chains and
// jumps in sorted order, each chain's rules in theirs. Two states with
// the same text are the same firewall as far as the applier looks.
func (st firewallState) text() string {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(st)) {
		t := st[name]
		fmt.Fprintf(&b, "*%s\n", name)
		for _, c := range slices.Sorted(maps.Keys(t.policies)) {
			fmt.Fprintf(&b, ":%s %s [0:0]\n", c, t.policies[c])
		}
		chains := slices.Sorted(slices.Values(t.chains))
		for _, c := range chains {
			fmt.Fprintf(&b, ":%s - [0:0]\n", c)
		}
		for _, c := range chains {
			if !isOurs(c) {
				continue
			}
			for _, r := range t.rules[c] {
				fmt.Fprintf(&b, "-A %s %s\n", c, r)
			}
		}
		for _, j := range slices.Sorted(maps.Keys(t.jumps)) {
			from, to, _ := strings.Cut(j, " ")
			for range t.jumps[j] {
				fmt.Fprintf(&b, "-A %s -j %s\n", from, to)
			}
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

// after returns the state (as made by ours) that restore text the
// applier rendered makes of st, or false for a line it does not follow.
// Rules come out as the text spells them; see predictSpelling.
func (st firewallState) after(input string) (firewallState, bool) {
	out := st.ours()
	var t *savedTable
	var name string
	for _, line := range strings.Split(input, "\n") {
		switch {
		case line == "":
		case strings.HasPrefix(line, "*"):
			name = line[1:]
			if t = out[name]; t == nil {
				// A table's first use creates it with its built-in chains,
				// whose policies iptables-save then prints as ACCEPT.
				t = &savedTable{policies: map[string]string{}, rules: map[string][]string{}, jumps: map[string]int{}}
				for _, c := range builtinChains[name] {
					t.policies[c] = "ACCEPT"
				}
				out[name] = t
			}
		case t == nil:
			return nil, false
		case line == "COMMIT":
			t = nil
		case strings.HasPrefix(line, ":"):
			chain, rest, _ := strings.Cut(line[1:], " ")
			if rest != "- [0:0]" || !isOurs(chain) {
				return nil, false
			}
			if !slices.Contains(t.chains, chain) {
				t.chains = append(t.chains, chain)
			}
			t.rules[chain] = nil
		case strings.HasPrefix(line, "-A ") || strings.HasPrefix(line, "-D "):
			chain, rest, _ := strings.Cut(line[3:], " ")
			to, jump := strings.CutPrefix(rest, "-j ")
			switch {
			case isOurs(chain) && line[1] == 'A':
				t.rules[chain] = append(t.rules[chain], rest)
			case isBuiltin(name, chain) && jump && isOurs(to) && !strings.Contains(to, " "):
				if line[1] == 'A' {
					t.jumps[chain+" "+to]++
				} else if t.jumps[chain+" "+to]--; t.jumps[chain+" "+to] <= 0 {
					delete(t.jumps, chain+" "+to)
				}
			default:
				return nil, false
			}
		case strings.HasPrefix(line, "-X "):
			chain := line[3:]
			if !isOurs(chain) {
				return nil, false
			}
			t.chains = slices.DeleteFunc(t.chains, func(c string) bool { return c == chain })
			delete(t.rules, chain)
		default:
			return nil, false
		}
	}
	return out, t == nil
}

package apply

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	kn "github.com/ispbalance/ispbalance/internal/kernelnames"
	"github.com/ispbalance/ispbalance/internal/plan"
	"github.com/ispbalance/ispbalance/internal/render"
)

// Rule files' rules are written as the admin spelled them, and
// iptables-save prints them back in its own spelling (`-s 10.0.0.5`
// becomes `-s 10.0.0.5/32`), so comparing the plan with the kernel would
// call such a chain changed on every rebuild and rewrite it. spellings
// remembers, per chain, the text last written and what the kernel printed
// for it afterwards: while both still hold, the chain is unchanged.
type spellings map[string]spelling

type spelling struct {
	Planned []string `json:"planned"`
	// Kernel is iptables-save's text for Planned, learnt at the first
	// rebuild after the chain was written; nil until then.
	Kernel []string `json:"kernel,omitempty"`
}

// spellingKey names one chain of one family's table.
func spellingKey(family, table, chain string) string { return family + "/" + table + "/" + chain }

// readSpellings reads the record, and returns its bytes too so that an
// unchanged record is not written again.
func readSpellings(path string) (spellings, []byte) {
	sp := spellings{}
	data, err := os.ReadFile(path)
	if err != nil {
		return sp, nil
	}
	if json.Unmarshal(data, &sp) != nil {
		// A damaged record costs one rewrite of the chains, nothing more.
		return spellings{}, data
	}
	return sp, data
}

// writeSpellings saves the record when it differs from what was read.
func writeSpellings(path string, sp spellings, onDisk []byte) error {
	if len(sp) == 0 && onDisk == nil {
		return nil
	}
	data, err := json.Marshal(sp)
	if err != nil {
		return err
	}
	if bytes.Equal(data, onDisk) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("recording rule-file spellings: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("recording rule-file spellings: %w", err)
	}
	return os.Rename(tmp, path)
}

// adminSpelled reports whether a chain holds text as the admin wrote it:
// a rule file's own chain, or one of ours with rule-file lines in it.
func adminSpelled(c plan.Chain) bool {
	if strings.HasPrefix(c.Name, kn.UserChainPrefix) {
		return true
	}
	for i := range c.Rules {
		if c.Origin(i) != "" {
			return true
		}
	}
	return false
}

// existingAsPlanned returns the kernel's rules of our chains, with each
// admin-spelled chain whose recorded spelling still matches both the plan
// and the kernel replaced by the plan's own text, so the renderer leaves
// it alone. It also learns the kernel's spelling of chains written by the
// previous rebuild.
func (st firewallState) existingAsPlanned(family string, tables []plan.Table, sp spellings) map[string]map[string][]string {
	existing := st.ourRules()
	for _, t := range tables {
		for _, c := range t.Chains {
			if !adminSpelled(c) {
				continue
			}
			have, ok := existing[t.Name][c.Name]
			rec, known := sp[spellingKey(family, t.Name, c.Name)]
			if !ok || !known || !slices.Equal(rec.Planned, plannedText(c)) {
				continue
			}
			if rec.Kernel == nil {
				rec.Kernel = slices.Clone(have)
				sp[spellingKey(family, t.Name, c.Name)] = rec
			}
			if slices.Equal(rec.Kernel, have) {
				existing[t.Name][c.Name] = plannedText(c)
			}
		}
	}
	return existing
}

// recordWritten notes the admin-spelled chains a restore text rewrote;
// their kernel spelling is learnt at the next rebuild.
func recordWritten(family string, tables []plan.Table, input string, sp spellings) {
	for _, t := range tables {
		for _, c := range t.Chains {
			key := spellingKey(family, t.Name, c.Name)
			switch {
			case !adminSpelled(c):
				// Compared as it is; a record of an earlier plan's
				// rule-file lines in it would be stale.
				delete(sp, key)
			case rewrites(input, t.Name, c.Name):
				sp[key] = spelling{Planned: plannedText(c)}
			}
		}
	}
	for key := range sp {
		if strings.HasPrefix(key, family+"/") && !plannedChain(family, tables, key) {
			delete(sp, key)
		}
	}
}

func plannedChain(family string, tables []plan.Table, key string) bool {
	for _, t := range tables {
		for _, c := range t.Chains {
			if spellingKey(family, t.Name, c.Name) == key {
				return true
			}
		}
	}
	return false
}

// rewrites reports whether restore text declares (and so rewrites) chain
// in table.
func rewrites(input, table, chain string) bool {
	inTable := false
	for _, line := range strings.Split(input, "\n") {
		switch {
		case strings.HasPrefix(line, "*"):
			inTable = line[1:] == table
		case inTable && line == ":"+chain+" - [0:0]":
			return true
		}
	}
	return false
}

func plannedText(c plan.Chain) []string {
	out := make([]string, len(c.Rules))
	for i, r := range c.Rules {
		out[i] = render.Quote(r)
	}
	return out
}

// spellingsPath is where the applier keeps the record.
func (a *Applier) spellingsPath() string {
	return filepath.Join(filepath.Dir(a.savedSysctls), "chains.spelling")
}

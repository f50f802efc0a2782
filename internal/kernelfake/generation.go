package kernelfake

import (
	"errors"
	"slices"
	"sync"

	"github.com/ispbalance/ispbalance/internal/apply"
)

// Ruleset stands for the nf_tables ruleset generation that both
// families' firewalls share in one network namespace: every table a
// restore commits raises it by one and is noted with the writer that
// committed it, as the kernel's NEWGEN notice names the process. Give
// the same Ruleset to the IPv4 and the IPv6 Netfilter (see Attach).
//
// It is strict where the applier could lean on luck: a commit's notice
// reaches only watchers that were watching before it, and LoseNotices
// makes Commits fail as a kernel's full socket queue would.
type Ruleset struct {
	mu       sync.Mutex
	gen      uint32
	log      []apply.Commit
	instance string
	// watchFrom is where in log the current watch began; -1 when not
	// watching.
	watchFrom int
	lost      bool
	writers   int
	closed    bool
}

// NewRuleset returns a ruleset at generation 1 (a namespace's first),
// named instance.
func NewRuleset(instance string) *Ruleset {
	return &Ruleset{gen: 1, instance: instance, watchFrom: -1}
}

// Attach makes each of nfs commit through r.
func (r *Ruleset) Attach(nfs ...*Netfilter) {
	for _, n := range nfs {
		n.mu.Lock()
		n.ruleset = r
		n.mu.Unlock()
	}
}

// Instance implements apply.Ruleset.
func (r *Ruleset) Instance() string { return r.instance }

// Generation implements apply.Ruleset.
func (r *Ruleset) Generation() (uint32, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, errors.New("kernelfake: ruleset used after Close")
	}
	return r.gen, nil
}

// Watch implements apply.Ruleset.
func (r *Ruleset) Watch() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.watchFrom, r.lost = len(r.log), false
	return nil
}

// Commits implements apply.Ruleset.
func (r *Ruleset) Commits() ([]apply.Commit, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.watchFrom < 0 {
		return nil, errors.New("kernelfake: Commits without Watch")
	}
	out := slices.Clone(r.log[r.watchFrom:])
	if r.lost {
		return out, errors.New("kernelfake: commit notices lost")
	}
	return out, nil
}

// Close implements apply.Ruleset; the fake stays usable by a later
// applier, as the kernel's ruleset outlives a socket.
func (r *Ruleset) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.watchFrom = -1
	return nil
}

// LoseNotices makes the current watch report lost notices, as when the
// kernel could not queue them.
func (r *Ruleset) LoseNotices() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lost = true
}

// newWriter returns an id no commit has carried yet: a process's pid.
func (r *Ruleset) newWriter() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writers++
	return 1000 + r.writers
}

func (r *Ruleset) commit(writer int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	if r.gen == 0 {
		r.gen = 1
	}
	r.log = append(r.log, apply.Commit{Gen: r.gen, Writer: writer})
}

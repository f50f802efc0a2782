package rules

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/ispbalance/ispbalance/internal/trust"
)

// EventStates name the directories lsmDir/<state>.d whose scripts run when
// an ISP changes state.
var EventStates = []string{"up", "down", "long_down"}

// EventScripts lists the scripts an event of the given state runs: the
// executable regular files of lsmDir/<state>.d (the balance/lsm directory
// beside balance.conf), in byte order of their names, leftovers skipped
// as in ReadDir. A missing directory lists nothing. Since the scripts run
// as root, lsmDir, the state's directory and every script must pass
// trust.Check: under trust.Refuse the first that fails is the error and
// nothing is listed; under trust.Allow each is a note.
func EventScripts(lsmDir, state string, policy trust.Policy) (scripts []string, notes []Note, err error) {
	dir := filepath.Join(lsmDir, state+".d")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading event scripts: %w", err)
	}
	check := func(path string) error {
		warning, err := policy.Check(path)
		if warning != "" {
			notes = append(notes, Note{Pos{File: path}, warning})
		}
		if err != nil {
			return fmt.Errorf("reading event scripts: %w", err)
		}
		return nil
	}
	if err := check(lsmDir); err != nil {
		return nil, notes, err
	}
	if err := check(dir); err != nil {
		return nil, notes, err
	}
	for _, e := range entries {
		if Leftover(e.Name()) {
			continue
		}
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() || info.Mode()&0o111 == 0 {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if err := check(path); err != nil {
			return nil, notes, err
		}
		scripts = append(scripts, path)
	}
	return scripts, notes, nil
}

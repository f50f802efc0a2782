package monitor

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ispbalance/ispbalance/internal/lsm"
	"github.com/ispbalance/ispbalance/internal/rules"
)

// directoryScripts lists the executable files in dir, alphabetically.
func directoryScripts(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if rules.Leftover(e.Name()) {
			continue
		}
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() || info.Mode()&0o111 == 0 {
			continue
		}
		out = append(out, filepath.Join(dir, e.Name()))
	}
	sort.Strings(out)
	return out
}

// runEventScripts starts, in the background, the scripts an lsm event
// calls: the configured event and notify scripts, then the files in
// balance/lsm/<state>.d/ in alphabetical order, each with lsm's 16
// arguments and a time limit, and mails warn_email when a mailer exists.
// Probing never waits for them.
func (m *Monitor) runEventScripts(ev lsm.Event) {
	var cmds []lsm.Command
	cmds = append(cmds, ev.Commands()...)
	if !ev.Group && m.opts.ScriptDir != "" {
		args := lsm.ScriptArgs(ev)
		for _, path := range directoryScripts(filepath.Join(m.opts.ScriptDir, ev.State.String()+".d")) {
			cmds = append(cmds, lsm.Command{Path: path, Args: args})
		}
	}
	mail := ev.Email
	if len(cmds) == 0 && mail == "" {
		return
	}
	// Like lsm, start them all without waiting for one another: a script
	// that hangs delays nothing but itself, until its time limit.
	for _, c := range cmds {
		m.scripts.Add(1)
		go func() {
			defer m.scripts.Done()
			m.runScript(c)
		}()
	}
	if mail != "" && !ev.Group {
		m.scripts.Add(1)
		go func() {
			defer m.scripts.Done()
			m.mail(mail, ev)
		}()
	}
}

func (m *Monitor) runScript(c lsm.Command) {
	ctx, cancel := context.WithTimeout(m.scriptCtx, m.opts.ScriptTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Path, c.Args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// A script that leaves children holding its output open must not
	// keep us waiting past the limit either.
	cmd.WaitDelay = m.opts.ScriptTimeout / 10
	err := cmd.Run()
	if m.scriptCtx.Err() != nil {
		m.log.Warn("event script stopped with the monitor", "script", c.Path)
		return
	}
	if ctx.Err() != nil {
		m.log.Warn("event script killed after its time limit", "script", c.Path, "limit", m.opts.ScriptTimeout)
		return
	}
	if err != nil {
		m.log.Warn("event script failed", "script", c.Path, "err", err, "output", strings.TrimSpace(out.String()))
		return
	}
	m.log.Debug("event script ran", "script", c.Path)
}

// mailers are tried in order; a router without one simply sends no mail.
var mailers = []string{"/usr/sbin/sendmail", "/usr/lib/sendmail"}

func (m *Monitor) mail(to string, ev lsm.Event) {
	for _, path := range mailers {
		if _, err := os.Stat(path); err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(m.scriptCtx, m.opts.ScriptTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, path, "-t")
		host, _ := os.Hostname()
		cmd.Stdin = strings.NewReader(fmt.Sprintf("To: %s\nSubject: ispbalance: %s is %s on %s\n\n%s went from %s to %s at %s (device %s, probe target %s).\n",
			to, ev.Name, ev.State, host, ev.Name, ev.Prev, ev.State, ev.Time.Format("2006-01-02 15:04:05 MST"), ev.Device, ev.CheckIP))
		if err := cmd.Run(); err != nil {
			m.log.Warn("sending warning mail", "to", to, "err", err)
		}
		return
	}
}

// RunEventScripts runs the executables of scriptDir/<state>.d with args,
// for an event that an external lsm delivers as `ifup-balance down NAME
// ...`, as the original did. They run side by side, each with the time
// limit; it returns when all have ended.
func RunEventScripts(ctx context.Context, scriptDir, state string, args []string, limit time.Duration, log *slog.Logger) {
	m := New(Options{ScriptTimeout: limit, Log: log}, nil)
	m.scriptCtx, m.stopScript = context.WithCancel(ctx)
	defer m.stopScript()
	for _, path := range directoryScripts(filepath.Join(scriptDir, state+".d")) {
		m.scripts.Add(1)
		go func() {
			defer m.scripts.Done()
			m.runScript(lsm.Command{Path: path, Args: args})
		}()
	}
	m.scripts.Wait()
}

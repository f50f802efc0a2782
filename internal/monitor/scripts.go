package monitor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/ispbalance/ispbalance/internal/lsm"
	"github.com/ispbalance/ispbalance/internal/rules"
	"github.com/ispbalance/ispbalance/internal/trust"
)

// directoryScripts lists the scripts of scriptDir/<state>.d. When the
// directory or one of its scripts could be changed by anyone but root,
// it lists none and logs what to fix.
func (m *Monitor) directoryScripts(scriptDir, state string) []string {
	scripts, notes, err := rules.EventScripts(scriptDir, state, m.opts.Files)
	for _, n := range notes {
		m.log.Warn("event scripts: " + n.String())
	}
	if err != nil {
		m.log.Error("event scripts not run", "state", state, "err", err)
		return nil
	}
	return scripts
}

// trusted reports whether a configured event or notify script may run.
func (m *Monitor) trusted(path string) bool {
	warning, err := m.opts.Files.Check(path)
	if warning != "" {
		m.log.Warn("event script: " + warning)
	}
	if err != nil {
		m.log.Error("event script not run", "script", path, "err", err)
		return false
	}
	return true
}

// runEventScripts starts, in the background, the scripts an lsm event
// calls: the configured event and notify scripts, then the files in
// balance/lsm/<state>.d/ in alphabetical order, each with lsm's 16
// arguments and a time limit, and mails warn_email when a mailer exists.
// Probing never waits for them.
//
// family ("ipv4" or "ipv6"; "" for a group) reaches the scripts as
// ISPBALANCE_FAMILY: lsm's 16 arguments stay as they are, and an ISP's
// IPv6 half reports under the ISP's own name.
func (m *Monitor) runEventScripts(ev lsm.Event, family string) {
	var cmds []lsm.Command
	for _, c := range ev.Commands() {
		if m.trusted(c.Path) {
			cmds = append(cmds, c)
		}
	}
	if !ev.Group && m.opts.ScriptDir != "" {
		args := lsm.ScriptArgs(ev)
		for _, path := range m.directoryScripts(m.opts.ScriptDir, ev.State.String()) {
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
			m.runScript(c, family)
		}()
	}
	if mail != "" && !ev.Group {
		m.scripts.Add(1)
		go func() {
			defer m.scripts.Done()
			m.mail(mail, ev, family)
		}()
	}
}

func (m *Monitor) runScript(c lsm.Command, family string) {
	ctx, cancel := context.WithTimeout(m.scriptCtx, m.opts.ScriptTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Path, c.Args...)
	if family != "" {
		cmd.Env = append(os.Environ(), FamilyEnv+"="+family)
	}
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

// FamilyEnv tells an event script which family of the ISP changed.
const FamilyEnv = "ISPBALANCE_FAMILY"

// mailers are tried in order, when no mail transport listens on
// localSMTP; a router without either simply sends no mail.
var mailers = []string{"/usr/sbin/sendmail", "/usr/lib/sendmail"}

// localSMTP is where a local mail transport agent (exim4, postfix) listens
// by default. Handing the mail over by SMTP keeps the service's sandbox
// intact: their sendmail programs need setuid or setgid and capabilities
// the unit does not grant (exim's fails with "setgroups() failed:
// Operation not permitted"). A variable so tests can point it elsewhere.
var localSMTP = "127.0.0.1:25"

// smtpPatience is how long a refused connection to localSMTP is tried
// again, every smtpRetry, before falling back to sendmail: at boot the
// monitor's first verdicts come before the mail transport listens
// (exim4 waits for network-online.target), and the fallback fails
// under the unit's sandbox. Variables so tests can shorten them.
var smtpPatience, smtpRetry = 3 * time.Minute, 5 * time.Second

func (m *Monitor) mail(to string, ev lsm.Event, family string) {
	name := ev.Name
	if family == "ipv6" {
		name += "'s IPv6"
	}
	host, _ := os.Hostname()
	body := fmt.Sprintf("Subject: ispbalance: %s is %s on %s\n\n%s went from %s to %s at %s (device %s, probe target %s).\n",
		name, ev.State, host, name, ev.Prev, ev.State, ev.Time.Format("2006-01-02 15:04:05 MST"), ev.Device, ev.CheckIP)
	send := func() error {
		ctx, cancel := context.WithTimeout(m.scriptCtx, m.opts.ScriptTimeout)
		defer cancel()
		return sendSMTP(ctx, localSMTP, host, to, body)
	}
	err := send()
	if errors.Is(err, syscall.ECONNREFUSED) && haveMailer() {
		// A mail transport is installed but not listening yet.
		for give := time.Now().Add(smtpPatience); errors.Is(err, syscall.ECONNREFUSED) && time.Now().Before(give); {
			select {
			case <-m.scriptCtx.Done():
				return
			case <-time.After(smtpRetry):
			}
			err = send()
		}
	}
	if err == nil {
		return
	}
	ctx, cancel := context.WithTimeout(m.scriptCtx, m.opts.ScriptTimeout)
	defer cancel()
	if !errors.Is(err, syscall.ECONNREFUSED) {
		m.log.Warn("sending warning mail to the local mail transport", "to", to, "addr", localSMTP, "err", err)
	}
	for _, path := range mailers {
		if _, err := os.Stat(path); err != nil {
			continue
		}
		cmd := exec.CommandContext(ctx, path, "-t")
		cmd.Stdin = strings.NewReader("To: " + to + "\n" + body)
		if out, err := cmd.CombinedOutput(); err != nil {
			m.log.Warn("sending warning mail", "to", to, "mailer", path, "err", err, "output", strings.TrimSpace(string(out)))
		}
		return
	}
}

// haveMailer says a sendmail program exists: then a mail transport is
// installed, whether or not it listens yet.
func haveMailer() bool {
	for _, path := range mailers {
		if _, err := os.Stat(path); err == nil {
			return true
		}
	}
	return false
}

// sendSMTP hands a mail to the transport at addr. Addresses without a
// domain are local users: @localhost, which local transports accept from
// the local host where they refuse unqualified ones.
func sendSMTP(ctx context.Context, addr, host, to, body string) error {
	var rcpts []string
	for _, a := range strings.FieldsFunc(to, func(r rune) bool { return r == ',' || r == ' ' }) {
		if !strings.Contains(a, "@") {
			a += "@localhost"
		}
		rcpts = append(rcpts, a)
	}
	if len(rcpts) == 0 {
		return fmt.Errorf("mailing %q: no address", to)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	c, err := smtp.NewClient(conn, "localhost")
	if err != nil {
		return fmt.Errorf("greeting %s: %w", addr, err)
	}
	defer c.Close()
	if host == "" {
		host = "localhost"
	}
	if err := c.Hello(host); err != nil {
		return fmt.Errorf("saying hello to %s: %w", addr, err)
	}
	if err := c.Mail("root@localhost"); err != nil {
		return fmt.Errorf("giving %s the sender: %w", addr, err)
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r); err != nil {
			return fmt.Errorf("giving %s the recipient %s: %w", addr, r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("sending the mail to %s: %w", addr, err)
	}
	msg := "From: ispbalance <root@localhost>\r\nTo: " + strings.Join(rcpts, ", ") + "\r\n" + strings.ReplaceAll(body, "\n", "\r\n")
	if _, err := io.WriteString(w, msg); err != nil {
		return fmt.Errorf("sending the mail to %s: %w", addr, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("sending the mail to %s: %w", addr, err)
	}
	return c.Quit()
}

// RunEventScripts runs the executables of scriptDir/<state>.d with args,
// for an event that an external lsm delivers as `ifup-balance down NAME
// ...`, as the original did. They run side by side, each with the time
// limit; it returns when all have ended. files is balance.conf's policy
// for scripts that others could change.
func RunEventScripts(ctx context.Context, scriptDir, state string, files trust.Policy, args []string, limit time.Duration, log *slog.Logger) {
	m := New(Options{ScriptTimeout: limit, Files: files, Log: log}, nil)
	m.scriptCtx, m.stopScript = context.WithCancel(ctx)
	defer m.stopScript()
	for _, path := range m.directoryScripts(scriptDir, state) {
		m.scripts.Add(1)
		go func() {
			defer m.scripts.Done()
			m.runScript(lsm.Command{Path: path, Args: args}, "")
		}()
	}
	m.scripts.Wait()
}

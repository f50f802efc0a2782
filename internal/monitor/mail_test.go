package monitor

import (
	"bufio"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ispbalance/ispbalance/internal/lsm"
)

// fakeSMTP accepts one mail and returns the dialogue as it saw it.
func fakeSMTP(t *testing.T) (addr string, seen <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	out := make(chan string, 1)
	go serveOneMail(ln, out)
	return ln.Addr().String(), out
}

// serveOneMail answers one SMTP client on ln as a mail transport would
// and sends out the dialogue as it saw it.
func serveOneMail(ln net.Listener, out chan<- string) {
	c, err := ln.Accept()
	if err != nil {
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var got strings.Builder
	r := bufio.NewReader(c)
	c.Write([]byte("220 fake ESMTP\r\n"))
	inData := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break
		}
		got.WriteString(line)
		switch {
		case inData && line == ".\r\n":
			inData = false
			c.Write([]byte("250 queued\r\n"))
		case inData:
		case strings.HasPrefix(line, "DATA"):
			inData = true
			c.Write([]byte("354 go on\r\n"))
		case strings.HasPrefix(line, "QUIT"):
			c.Write([]byte("221 bye\r\n"))
			out <- got.String()
			return
		default:
			c.Write([]byte("250 ok\r\n"))
		}
	}
	out <- got.String()
}

// TestMailBySMTP: warn_email goes to the local mail transport by SMTP,
// with a local user's address qualified as @localhost; no sendmail is
// run when it is accepted.
func TestMailBySMTP(t *testing.T) {
	addr, seen := fakeSMTP(t)
	old, oldMailers := localSMTP, mailers
	localSMTP, mailers = addr, []string{"/nonexistent/sendmail"}
	t.Cleanup(func() { localSMTP, mailers = old, oldMailers })
	m := New(Options{}, nil)
	m.scriptCtx, m.stopScript = context.WithCancel(context.Background())
	defer m.stopScript()
	m.mail("admin", lsm.Event{Name: "ISP1", State: lsm.Down, Prev: lsm.Up, Time: time.Now(), Device: "wan1", CheckIP: "192.0.2.1"}, "ipv4")
	select {
	case got := <-seen:
		for _, want := range []string{"MAIL FROM:<root@localhost>", "RCPT TO:<admin@localhost>", "Subject: ispbalance: ISP1 is down on ", "ISP1 went from up to down"} {
			if !strings.Contains(got, want) {
				t.Errorf("the SMTP dialogue lacks %q:\n%s", want, got)
			}
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no mail reached the SMTP server")
	}
}

// TestMailWaitsForTheTransport: when a mail transport is installed but
// does not listen yet (at boot it starts after the monitor), the mail is
// tried again until it does, instead of going to a sendmail that the
// service's sandbox makes fail.
func TestMailWaitsForTheTransport(t *testing.T) {
	// A port that refuses: listened on, then closed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	sendmail := filepath.Join(t.TempDir(), "sendmail")
	ran := filepath.Join(t.TempDir(), "ran")
	if err := os.WriteFile(sendmail, []byte("#!/bin/sh\ntouch "+ran+"\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	old, oldMailers, oldPatience, oldRetry := localSMTP, mailers, smtpPatience, smtpRetry
	localSMTP, mailers, smtpPatience, smtpRetry = addr, []string{sendmail}, 5*time.Second, 50*time.Millisecond
	t.Cleanup(func() { localSMTP, mailers, smtpPatience, smtpRetry = old, oldMailers, oldPatience, oldRetry })

	seen := make(chan string, 1)
	go func() {
		// The transport comes up 300 ms later on the same port.
		time.Sleep(300 * time.Millisecond)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			seen <- "listen: " + err.Error()
			return
		}
		defer ln.Close()
		serveOneMail(ln, seen)
	}()
	m := New(Options{}, nil)
	m.scriptCtx, m.stopScript = context.WithCancel(context.Background())
	defer m.stopScript()
	m.mail("admin", lsm.Event{Name: "ISP1", State: lsm.Down, Prev: lsm.Up, Time: time.Now(), Device: "wan1"}, "ipv4")
	select {
	case got := <-seen:
		if !strings.Contains(got, "RCPT TO:<admin@localhost>") {
			t.Errorf("the late transport did not get the mail:\n%s", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no mail reached the transport that came up late")
	}
	if _, err := os.Stat(ran); err == nil {
		t.Error("sendmail ran although the transport came up within the patience")
	}
}

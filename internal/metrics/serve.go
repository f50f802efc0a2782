package metrics

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"time"
)

// Serving over HTTP is done here rather than with net/http, whose code
// alone adds 3 MB to the monitor's resident memory: a scraper needs one
// GET answered, and each connection gets exactly that.
const (
	// connTimeout bounds one connection, request and answer: a client
	// that stalls is dropped.
	connTimeout = 5 * time.Second
	// maxRequest bounds a request's line and headers.
	maxRequest = 8 << 10
	// maxConns is how many connections are served at once; more wait in
	// the kernel's accept queue.
	maxConns = 4
)

// Serve answers GET /metrics (and HEAD) on ln until ln is closed, with
// the set in the text format; other paths get 404, other methods 405.
// It returns nil once ln is closed.
func (s *Set) Serve(ln net.Listener) error {
	slots := make(chan struct{}, maxConns)
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accepting metrics connections: %w", err)
		}
		slots <- struct{}{}
		go func() {
			defer func() { <-slots }()
			s.serveConn(conn)
		}()
	}
}

func (s *Set) serveConn(conn net.Conn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(connTimeout))
	r := textproto.NewReader(bufio.NewReader(&limitedReader{conn, maxRequest}))
	line, err := r.ReadLine()
	if err != nil {
		return
	}
	if _, err := r.ReadMIMEHeader(); err != nil {
		respond(conn, "400 Bad Request", "text/plain", []byte("bad request\n"), true)
		return
	}
	method, rest, _ := strings.Cut(line, " ")
	target, proto, _ := strings.Cut(rest, " ")
	path, _, _ := strings.Cut(target, "?")
	switch {
	case !strings.HasPrefix(proto, "HTTP/1."):
		respond(conn, "400 Bad Request", "text/plain", []byte("bad request\n"), true)
	case method != "GET" && method != "HEAD":
		respond(conn, "405 Method Not Allowed", "text/plain", []byte("only GET and HEAD\n"), method != "HEAD")
	case path != "/metrics":
		respond(conn, "404 Not Found", "text/plain", []byte("the metrics are at /metrics\n"), true)
	default:
		var b bytes.Buffer
		s.Write(&b)
		respond(conn, "200 OK", ContentType, b.Bytes(), method == "GET")
	}
}

func respond(conn net.Conn, status, contentType string, body []byte, withBody bool) {
	w := bufio.NewWriter(conn)
	fmt.Fprintf(w, "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n", status, contentType, len(body))
	if strings.HasPrefix(status, "405") {
		w.WriteString("Allow: GET, HEAD\r\n")
	}
	w.WriteString("\r\n")
	if withBody {
		w.Write(body)
	}
	w.Flush()
}

// limitedReader ends a request that goes on for longer than n bytes.
type limitedReader struct {
	conn net.Conn
	n    int
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errors.New("request too long")
	}
	p = p[:min(len(p), l.n)]
	n, err := l.conn.Read(p)
	l.n -= n
	return n, err
}

package config

import (
	"bufio"
	"errors"
	"io"
	"net/netip"
	"strings"
)

// maxLineBytes bounds a balance.conf line. Nothing sensible comes close;
// a longer line is a damaged or wrong file, reported with its line number.
const maxLineBytes = 1 << 20

// lineScanner reads lines like bufio.Scanner, but reads a line that is too
// long to its end, so the error can say where it is and how long it is.
type lineScanner struct {
	r    *bufio.Reader
	text string
	err  error
	// tooLong is the length of the line that stopped the scan, 0 if none.
	tooLong int
}

func newLineScanner(r io.Reader) *lineScanner {
	return &lineScanner{r: bufio.NewReaderSize(r, 64*1024)}
}

func (s *lineScanner) Scan() bool {
	if s.err != nil || s.tooLong > 0 {
		return false
	}
	var line []byte
	n, newline := 0, false
	var last, beforeLast byte
	for {
		chunk, err := s.r.ReadSlice('\n')
		n += len(chunk)
		for _, c := range chunk[max(len(chunk)-2, 0):] {
			beforeLast, last = last, c
		}
		if len(line) <= maxLineBytes {
			line = append(line, chunk...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			s.err = err
			return false
		}
		if n == 0 {
			return false
		}
		newline = err == nil
		break
	}
	if newline {
		n--
		last = beforeLast
	}
	if n > 0 && last == '\r' {
		n--
	}
	if n > maxLineBytes {
		s.tooLong = n
		return false
	}
	s.text = strings.TrimSuffix(strings.TrimSuffix(string(line), "\n"), "\r")
	return true
}

func (s *lineScanner) Text() string { return s.text }

func (s *lineScanner) Err() error { return s.err }

// unusableGateway says why an address can never be a next hop, "" if it
// could be one. The kernel refuses these only when the plan is applied,
// far from the line that named them.
func unusableGateway(gw netip.Addr) string {
	switch {
	case gw.IsUnspecified():
		return "the unspecified address"
	case gw.IsLoopback():
		return "a loopback address"
	case gw.IsMulticast():
		return "a multicast address"
	case gw == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "the broadcast address"
	}
	return ""
}

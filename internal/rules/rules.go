package rules

import "fmt"

// Kind says which rule directory a file comes from; it decides what the
// file's plain commands become.
type Kind int

// The kinds, in the order a rebuild uses them.
const (
	PreRun Kind = iota
	Routes
	Firewall
	PostRun
)

// kinds lists every Kind in rebuild order.
var kinds = []Kind{PreRun, Routes, Firewall, PostRun}

// String returns the directory name of the kind.
func (k Kind) String() string {
	switch k {
	case PreRun:
		return "pre-run"
	case Routes:
		return "routes"
	case Firewall:
		return "firewall"
	case PostRun:
		return "post-run"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Family is the address family a line is about.
type Family int

const (
	// AnyFamily: an `ip` line without -4 or -6, whose family iproute2
	// takes from the first address it names (IPv4 when it names none).
	AnyFamily Family = iota
	IPv4
	IPv6
)

// Pos is a line of a rule file. Line is 0 when a note is about the whole
// file.
type Pos struct {
	File string
	Line int
}

func (p Pos) String() string {
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d", p.File, p.Line)
}

// Note is something the user may want to know that does not stop a
// rebuild: a skipped file or line.
type Note struct {
	Pos Pos
	Msg string
}

func (n Note) String() string { return n.Pos.String() + ": " + n.Msg }

// Error is a problem with one line of a rule file.
type Error struct {
	Pos Pos
	Err error
}

func (e *Error) Error() string { return e.Pos.String() + ": " + e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

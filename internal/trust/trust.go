package trust

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Setting is the balance.conf setting whose value "allow" relaxes the
// check for rule files, rule directories and event scripts (Allow).
// balance.conf itself is always checked: whoever can write it controls
// the router anyway, and the setting lives in it.
const Setting = "insecure_files"

// Policy says what becomes of a rule file, rule directory or event
// script that fails Check.
type Policy int

const (
	// Refuse makes a failed check an error; it is the default.
	Refuse Policy = iota
	// Allow uses the file anyway, with a warning.
	Allow
)

// Error says why a file or directory may not be trusted and how to fix
// it.
type Error struct {
	// Path is what the caller asked about.
	Path string
	// At is what is at fault: Path, or the directory holding the symlink
	// Path.
	At string
	// Target is what the symlink Path points to, when that is at fault.
	Target string
	// Owner is At's (or Target's) owner when that is neither root nor the
	// running user; -1 when the owner is fine.
	Owner int
	// Mode holds the permission and sticky bits when group or others may
	// write; 0 when not.
	Mode fs.FileMode
}

// Problem names the file and what is wrong with it.
func (e *Error) Problem() string {
	var b strings.Builder
	switch {
	case e.At != e.Path:
		fmt.Fprintf(&b, "%s, the directory holding the symlink %s,", e.At, e.Path)
	case e.Target != "":
		fmt.Fprintf(&b, "%s (a symlink to %s)", e.Path, e.Target)
	default:
		b.WriteString(e.Path)
	}
	var what []string
	if e.Owner >= 0 {
		what = append(what, fmt.Sprintf("is owned by uid %d, not %s", e.Owner, allowedOwners()))
	}
	if e.Mode != 0 {
		w := "group and others"
		switch e.Mode & 0o022 {
		case 0o020:
			w = "group"
		case 0o002:
			w = "others"
		}
		what = append(what, fmt.Sprintf("is writable by %s (mode %s)", w, octal(e.Mode)))
	}
	b.WriteString(" " + strings.Join(what, " and "))
	return b.String()
}

// Fix is the command that makes it trusted.
func (e *Error) Fix() string {
	var fix []string
	if e.Owner >= 0 {
		fix = append(fix, "chown root "+e.At)
	}
	if e.Mode != 0 {
		fix = append(fix, "chmod go-w "+e.At)
	}
	return strings.Join(fix, " && ")
}

func (e *Error) Error() string {
	return e.Problem() + ", so others could make ispbalance run commands as root; fix it with `" + e.Fix() + "`"
}

func allowedOwners() string {
	if euid := os.Geteuid(); euid != 0 {
		return fmt.Sprintf("root or uid %d (the running user)", euid)
	}
	return "root"
}

func octal(m fs.FileMode) string {
	n := uint32(m.Perm())
	if m&fs.ModeSticky != 0 {
		n |= 0o1000
	}
	return fmt.Sprintf("%04o", n)
}

// Check returns an *Error when the file or directory at path could be
// changed by someone other than root or the running user (see the package
// comment). Other errors, such as fs.ErrNotExist, are returned wrapped.
func Check(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("checking owner and mode: %w", err)
	}
	e := &Error{Path: path, At: path}
	if fi.Mode()&fs.ModeSymlink != 0 {
		dir := filepath.Dir(path)
		di, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("checking owner and mode: %w", err)
		}
		if inspect(e, di) {
			e.At = dir
			return e
		}
		if fi, err = os.Stat(path); err != nil {
			return fmt.Errorf("checking owner and mode: %w", err)
		}
		if inspect(e, fi) {
			// Only for the message: chown and chmod follow the link.
			e.Target, _ = filepath.EvalSymlinks(path)
			if e.Target == "" {
				e.Target, _ = os.Readlink(path)
			}
			return e
		}
		return nil
	}
	if inspect(e, fi) {
		return e
	}
	return nil
}

// inspect fills in e's Owner and Mode from fi and reports whether either
// is wrong.
func inspect(e *Error, fi fs.FileInfo) bool {
	e.Owner, e.Mode = -1, 0
	st := fi.Sys().(*syscall.Stat_t) // ispbalance is for Linux only
	if st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		e.Owner = int(st.Uid)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		e.Mode = fi.Mode() & (fs.ModePerm | fs.ModeSticky)
	}
	return e.Owner >= 0 || e.Mode != 0
}

// Check applies the policy to path. Under Refuse a failed check is an
// error that also says how to relax the policy; under Allow it comes back
// as warning instead, and err is nil. Errors other than a failed check
// (a file that is missing) are returned as they are under either policy.
func (p Policy) Check(path string) (warning string, err error) {
	err = Check(path)
	var e *Error
	if err == nil || !errors.As(err, &e) {
		return "", err
	}
	if p == Allow {
		return "used only because of " + Setting + "=allow: " + e.Problem(), nil
	}
	return "", fmt.Errorf("%w; or, to accept such files, set %s=allow in balance.conf", err, Setting)
}

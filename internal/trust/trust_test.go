package trust

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// mk creates a file (or, for a name with a trailing slash, a directory)
// in dir with exactly the given mode, whatever the umask.
func mk(t *testing.T, dir, name string, mode fs.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if strings.HasSuffix(name, "/") {
		if err := os.Mkdir(path, 0o700); err != nil {
			t.Fatal(err)
		}
	} else if err := os.WriteFile(path, []byte("logger hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		mode fs.FileMode
		// want is a piece of the error; "" means accepted.
		want []string
	}{
		{"file-0644", 0o644, nil},
		{"file-0755", 0o755, nil},
		{"file-0600", 0o600, nil},
		{"file-0666", 0o666, []string{"is writable by group and others (mode 0666)", "chmod go-w "}},
		{"file-0664", 0o664, []string{"is writable by group (mode 0664)"}},
		{"file-0646", 0o646, []string{"is writable by others (mode 0646)"}},
		{"dir-0755/", 0o755, nil},
		{"dir-0777/", 0o777, []string{"is writable by group and others (mode 0777)", "chmod go-w "}},
		{"dir-1777/", 0o777 | fs.ModeSticky, []string{"(mode 1777)"}},
		{"dir-0775/", 0o775, []string{"is writable by group (mode 0775)"}},
	} {
		t.Run(strings.TrimSuffix(c.name, "/"), func(t *testing.T) {
			path := mk(t, dir, c.name, c.mode)
			err := Check(path)
			checkErr(t, err, path, c.want)
			if _, err := Refuse.Check(path); c.want != nil && (err == nil || !strings.Contains(err.Error(), Setting+"=allow")) {
				t.Errorf("Refuse: %v, want an error that names the setting", err)
			}
			warning, err := Allow.Check(path)
			if err != nil || (warning != "") != (c.want != nil) {
				t.Errorf("Allow: warning %q, error %v", warning, err)
			}
		})
	}
}

func TestCheckOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files away")
	}
	dir := t.TempDir()
	file := mk(t, dir, "10.nobody", 0o644)
	sub := mk(t, dir, "post-run/", 0o755)
	for _, p := range []string{file, sub} {
		if err := os.Chown(p, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		checkErr(t, Check(p), p, []string{"is owned by uid 65534, not root", "chown root " + p})
		if warning, err := Allow.Check(p); err != nil || !strings.Contains(warning, "uid 65534") {
			t.Errorf("Allow: warning %q, error %v", warning, err)
		}
	}
	both := mk(t, dir, "20.both", 0o666)
	os.Chown(both, 65534, 65534)
	checkErr(t, Check(both), both, []string{"owned by uid 65534, not root and is writable by group and others", "chown root " + both + " && chmod go-w " + both})
}

func TestCheckSymlink(t *testing.T) {
	dir := t.TempDir()
	good := mk(t, dir, "good", 0o644)
	bad := mk(t, dir, "bad", 0o666)
	safe := mk(t, dir, "safe/", 0o755)
	open := mk(t, dir, "open/", 0o777)

	link := filepath.Join(safe, "10.good")
	os.Symlink(good, link)
	checkErr(t, Check(link), link, nil)

	link = filepath.Join(safe, "20.bad")
	os.Symlink(bad, link)
	checkErr(t, Check(link), link, []string{"a symlink to " + bad, "mode 0666", "chmod go-w " + link})

	// The target is fine, but anyone may replace the link.
	link = filepath.Join(open, "30.good")
	os.Symlink(good, link)
	checkErr(t, Check(link), open, []string{"the directory holding the symlink " + link, "chmod go-w " + open})

	link = filepath.Join(safe, "40.dangling")
	os.Symlink(filepath.Join(dir, "missing"), link)
	if err := Check(link); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("dangling link: %v, want fs.ErrNotExist", err)
	}
}

func TestCheckMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing")
	for _, p := range []Policy{Refuse, Allow} {
		if _, err := p.Check(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("policy %d: %v, want fs.ErrNotExist", p, err)
		}
	}
}

func checkErr(t *testing.T, err error, at string, want []string) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Errorf("%s refused: %v", at, err)
		}
		return
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%s: %v, want a *trust.Error", at, err)
	}
	if e.At != at {
		t.Errorf("error is about %s, want %s", e.At, at)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
}

package rules

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ispbalance/ispbalance/internal/trust"
)

// TestReadDirRefusesInsecure: a rule file, rule directory or event script
// that others could change fails the whole read with an error naming it
// and the fix, unless the policy allows it, when it is read with a note.
func TestReadDirRefusesInsecure(t *testing.T) {
	for _, c := range []struct {
		name string
		// spoil makes root's tree insecure and returns what it spoiled.
		spoil func(t *testing.T, root string) string
		want  string
	}{
		{"world-writable file", func(t *testing.T, root string) string {
			return chmod(t, filepath.Join(root, "post-run", "10.x"), 0o666)
		}, "is writable by group and others (mode 0666)"},
		{"group-writable file", func(t *testing.T, root string) string {
			return chmod(t, filepath.Join(root, "firewall", "10.fw"), 0o664)
		}, "is writable by group (mode 0664)"},
		{"world-writable rule directory", func(t *testing.T, root string) string {
			return chmod(t, filepath.Join(root, "post-run"), 0o777)
		}, "(mode 0777)"},
		{"sticky world-writable balance directory", func(t *testing.T, root string) string {
			return chmod(t, root, 0o777|fs.ModeSticky)
		}, "(mode 1777)"},
		{"file of uid 65534", func(t *testing.T, root string) string {
			return chown(t, filepath.Join(root, "post-run", "10.x"))
		}, "is owned by uid 65534, not root"},
		{"rule directory of uid 65534", func(t *testing.T, root string) string {
			return chown(t, filepath.Join(root, "routes"))
		}, "is owned by uid 65534, not root"},
		{"world-writable event script", func(t *testing.T, root string) string {
			return chmod(t, filepath.Join(root, "lsm", "down.d", "10-mail"), 0o777)
		}, "(mode 0777)"},
		{"world-writable event directory", func(t *testing.T, root string) string {
			return chmod(t, filepath.Join(root, "lsm", "up.d"), 0o777)
		}, "(mode 0777)"},
		{"world-writable lsm directory", func(t *testing.T, root string) string {
			return chmod(t, filepath.Join(root, "lsm"), 0o777)
		}, "(mode 0777)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := secureTree(t)
			spoiled := c.spoil(t, root)
			files, _, err := ReadDir(root, trust.Refuse)
			var te *trust.Error
			if !errors.As(err, &te) || te.At != spoiled || files != nil {
				t.Fatalf("got %d files, error %v; want a refusal of %s", len(files), err, spoiled)
			}
			for _, want := range []string{spoiled + " ", c.want, "fix it with", trust.Setting + "=allow"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			files, notes, err := ReadDir(root, trust.Allow)
			if err != nil || len(files) != 3 {
				t.Fatalf("allowed: %d files, %v; want all 3", len(files), err)
			}
			if !slices.ContainsFunc(notes, func(n Note) bool { return n.Pos.File == spoiled && strings.Contains(n.Msg, c.want) }) {
				t.Errorf("allowed: notes %v say nothing about %s", notes, spoiled)
			}
		})
	}
}

func TestEventScripts(t *testing.T) {
	root := secureTree(t)
	lsm := filepath.Join(root, "lsm")
	for name, mode := range map[string]os.FileMode{
		"20-second": 0o755, "30-not-executable": 0o644, "40-backup~": 0o777, "#70-x": 0o777, ".hidden": 0o777,
	} {
		write(t, filepath.Join(lsm, "down.d", name), mode)
	}
	os.Mkdir(filepath.Join(lsm, "down.d", "80-dir"), 0o755)
	got, notes, err := EventScripts(lsm, "down", trust.Refuse)
	want := []string{filepath.Join(lsm, "down.d", "10-mail"), filepath.Join(lsm, "down.d", "20-second")}
	if !slices.Equal(got, want) || len(notes) > 0 || err != nil {
		t.Errorf("got %v, notes %v, error %v; want %v", got, notes, err, want)
	}
	if got, _, err := EventScripts(lsm, "long_down", trust.Refuse); got != nil || err != nil {
		t.Errorf("a missing directory lists %v, %v", got, err)
	}
}

// secureTree writes a balance directory of root's own: three rule files
// and one event script in each event directory.
func secureTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{
		{"routes/10.r", 0o644}, {"firewall/10.fw", 0o644}, {"post-run/10.x", 0o755},
		{"lsm/up.d/10-mail", 0o755}, {"lsm/down.d/10-mail", 0o755},
	} {
		write(t, filepath.Join(root, f.path), f.mode)
	}
	return root
}

func write(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("logger -t test hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	chmod(t, path, mode)
}

// chmod sets the mode exactly, whatever the umask.
func chmod(t *testing.T, path string, mode os.FileMode) string {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func chown(t *testing.T, path string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files away")
	}
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	return path
}

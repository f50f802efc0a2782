package cli

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMissingConfigSaysWhereAndHow(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc", "network"), 0o755)
	code, _, errOut := run([]string{"--root", root, "-d"}, nil)
	want := []string{
		"no configuration file: " + filepath.Join(root, "etc/network/balance.conf") + " does not exist",
		filepath.Join(root, "etc/network/balance.conf"),
		filepath.Join(root, "etc/sysconfig/network-scripts/balance.conf"),
		filepath.Join(root, "etc/balance.conf"),
		"-c FILE", "ISPBALANCE_CONFIG=FILE",
	}
	for _, w := range want {
		if code != 1 || !strings.Contains(errOut, w) {
			t.Errorf("exit %d, stderr %q: want %q in it", code, errOut, w)
		}
	}
	// A balance.conf in another layout's place is pointed out.
	other := filepath.Join(root, "etc", "balance.conf")
	os.WriteFile(other, []byte("# nothing\n"), 0o644)
	if _, _, errOut := run([]string{"--root", root, "-d"}, nil); !strings.Contains(errOut, other+" exists: name it with -c "+other) {
		t.Errorf("stderr %q does not point at %s", errOut, other)
	}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"-c", "/nonexistent/c.conf", "-d"}, nil, "configuration file /nonexistent/c.conf (given with -c) does not exist"},
		{[]string{"-d"}, map[string]string{ConfigEnv: "/nonexistent/e.conf"}, "configuration file /nonexistent/e.conf (from $ISPBALANCE_CONFIG) does not exist"},
	} {
		if _, _, errOut := run(tc.args, tc.env); !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, "-c FILE or ISPBALANCE_CONFIG=FILE") {
			t.Errorf("%v %v: stderr %q, want %q", tc.args, tc.env, errOut, tc.want)
		}
	}
}

func TestExplainMissingConfigKeepsTheCause(t *testing.T) {
	_, readErr := os.ReadFile("/nonexistent/balance.conf")
	err := explainMissingConfig(readErr, "/nonexistent/balance.conf", configFromLayout, "")
	if !errors.Is(err, fs.ErrNotExist) || err.Error() == readErr.Error() {
		t.Errorf("got %v: want an explanation that still is fs.ErrNotExist", err)
	}
	other := errors.New("x")
	if got := explainMissingConfig(other, "/nonexistent/balance.conf", configFromLayout, ""); got != other {
		t.Errorf("an unrelated error changed: %v", got)
	}
	_, readErr = os.ReadFile("/nonexistent/rules")
	if got := explainMissingConfig(readErr, "/nonexistent/balance.conf", configFromLayout, ""); got != readErr {
		t.Errorf("another missing file is explained as the configuration: %v", got)
	}
}

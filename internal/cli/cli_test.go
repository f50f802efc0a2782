package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func run(args []string, env map[string]string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := Run(context.Background(), Env{Args: args, Stdout: &stdout, Stderr: &stderr,
		Getenv: func(k string) string { return env[k] }})
	return code, stdout.String(), stderr.String()
}

// These cases all end before discovery, so they read nothing from the
// host's network namespace.
func TestArguments(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc", "network"), 0o755)
	cases := []struct {
		name       string
		args       []string
		env        map[string]string
		code       int
		out, errit string
	}{
		{"version", []string{"-V"}, nil, 0, "ifup-balance " + Version, ""},
		{"help", []string{"-h"}, nil, 0, "Usage:", ""},
		{"unknown flag", []string{"-z"}, nil, 2, "", "flag provided but not defined: -z"},
		{"event without name", []string{"up"}, nil, 2, "", "up needs a service name"},
		{"stop with words", []string{"stop", "now"}, nil, 2, "", `stop takes no arguments, got "now"`},
		{"debian layout", []string{"--root", root}, nil, 1, "", filepath.Join(root, "etc/network/balance.conf")},
		{"env config", []string{"--root", root}, map[string]string{ConfigEnv: "/nonexistent/b.conf"}, 1, "", "/nonexistent/b.conf"},
		{"-c beats env", []string{"-c", "/nonexistent/c.conf"}, map[string]string{ConfigEnv: "/nonexistent/b.conf"}, 1, "", "/nonexistent/c.conf"},
		{"dry stop", []string{"-d", "stop"}, nil, 0, "stop would remove", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := run(tc.args, tc.env)
			if code != tc.code || !strings.Contains(out, tc.out) || !strings.Contains(errOut, tc.errit) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
					code, out, errOut, tc.code, tc.out, tc.errit)
			}
		})
	}
}

func TestInterspersedOptions(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"stop", "-f"}, "stop"},
		{[]string{"-v", "CABLE", "-d", "DSL"}, "CABLE DSL"},
		{[]string{"up", "CABLE", "-", "-x", "7"}, "up CABLE - -x 7"},
	}
	for _, tc := range cases {
		fs, _ := newFlags()
		got, err := parseInterspersed(fs, tc.args)
		if err != nil || strings.Join(got, " ") != tc.want {
			t.Errorf("%q: got %q, %v; want %q", tc.args, got, err, tc.want)
		}
	}
}

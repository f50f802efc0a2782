package detect

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDetectLayout(t *testing.T) {
	tests := []struct {
		name    string
		dirs    []string
		files   []string
		family  string
		confDir string
	}{
		{"debian", []string{"etc/network"}, nil, FamilyDebian, "etc/network"},
		{"redhat", []string{"etc/sysconfig/network-scripts"}, nil, FamilyRedHat, "etc/sysconfig/network-scripts"},
		{"both: debian wins", []string{"etc/network", "etc/sysconfig/network-scripts"}, nil, FamilyDebian, "etc/network"},
		{"neither", []string{"etc"}, nil, FamilyOther, "etc"},
		{"a file is not a directory", []string{"etc/sysconfig"}, []string{"etc/network"}, FamilyOther, "etc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for _, d := range tt.dirs {
				if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for _, f := range tt.files {
				if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want := Layout{
				Family:     tt.family,
				ConfigPath: filepath.Join(root, tt.confDir, "balance.conf"),
				RulesDir:   filepath.Join(root, tt.confDir, "balance"),
				StateDir:   filepath.Join(root, "var/lib/lsm"),
			}
			if got := DetectLayout(root); got != want {
				t.Errorf("DetectLayout = %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestConfigPlacesAgreeWithLayout(t *testing.T) {
	root := t.TempDir()
	places := ConfigPlaces(root)
	dirs := []string{"etc/network", "etc/sysconfig/network-scripts", "etc"}
	if len(places) != len(dirs) {
		t.Fatalf("places %v", places)
	}
	// Creating the directories from the last to the first makes each place
	// the layout's choice in turn.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.MkdirAll(filepath.Join(root, dirs[i]), 0o755); err != nil {
			t.Fatal(err)
		}
		if got := DetectLayout(root).ConfigPath; got != places[i] {
			t.Errorf("with %s: layout uses %s, ConfigPlaces says %s", dirs[i], got, places[i])
		}
	}
}

package detect

import (
	"os"
	"path/filepath"
)

// Distribution families, as reported in Layout.Family.
const (
	FamilyDebian = "debian"
	FamilyRedHat = "redhat"
	FamilyOther  = "other"
)

// Layout says where ispbalance's files live on this system.
type Layout struct {
	Family     string // FamilyDebian, FamilyRedHat or FamilyOther
	ConfigPath string // balance.conf
	RulesDir   string // the "balance" directory beside balance.conf
	StateDir   string // the link monitor's state directory
}

// DetectLayout finds the layout under root ("" or "/" for the running
// system). The order is Net-ISP-Balance's, so existing installations keep
// their configuration: /etc/network wins over /etc/sysconfig/network-scripts,
// and with neither /etc/balance.conf is used (this is also where a Red Hat
// system managed only by NetworkManager ends up). Returned paths include root.
func DetectLayout(root string) Layout {
	family, dir := FamilyOther, "/etc"
	switch {
	case isDir(filepath.Join(root, "/etc/network")):
		family, dir = FamilyDebian, "/etc/network"
	case isDir(filepath.Join(root, "/etc/sysconfig/network-scripts")):
		family, dir = FamilyRedHat, "/etc/sysconfig/network-scripts"
	}
	confDir := filepath.Join(root, dir)
	return Layout{
		Family:     family,
		ConfigPath: filepath.Join(confDir, "balance.conf"),
		RulesDir:   filepath.Join(confDir, "balance"),
		StateDir:   filepath.Join(root, "/var/lib/lsm"),
	}
}

// ConfigPlaces lists where DetectLayout may put balance.conf under root,
// in the order it considers them, for messages about a missing file.
func ConfigPlaces(root string) []string {
	var out []string
	for _, dir := range []string{"/etc/network", "/etc/sysconfig/network-scripts", "/etc"} {
		out = append(out, filepath.Join(root, dir, "balance.conf"))
	}
	return out
}

// isDir treats any stat failure as absence: an unreadable directory cannot
// hold a configuration we could read either.
func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

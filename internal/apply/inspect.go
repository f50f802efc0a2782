package apply

import (
	"fmt"
	"os"
	"strings"

	"github.com/coreos/go-iptables/iptables"

	"github.com/ispbalance/ispbalance/internal/plan"
)

// FirewallStatus says whether the jumps into our chains are in place, for
// the status table, in both families. go-iptables suits this kind of
// one-off inspection; writing goes through iptables-restore instead (see
// Binaries).
func FirewallStatus(tables, tables6 []plan.Table) (string, error) {
	ipt, err := iptables.New()
	if err != nil {
		return "", fmt.Errorf("inspecting the firewall: %w", err)
	}
	v1, v2, v3 := ipt.GetIptablesVersion()
	missing, err := missingJumps(ipt, tables, "")
	if err != nil {
		return "", err
	}
	families := "IPv4"
	if len(tables6) > 0 {
		if !ipv6Enabled() {
			families += "; IPv6 is off in this kernel"
		} else if ipt6, err := iptables.NewWithProtocol(iptables.ProtocolIPv6); err != nil {
			missing = append(missing, "IPv6 ("+err.Error()+")")
		} else {
			m6, err := missingJumps(ipt6, tables6, "IPv6 ")
			if err != nil {
				return "", err
			}
			missing = append(missing, m6...)
			families += " and IPv6"
		}
	}
	if len(missing) > 0 {
		return fmt.Sprintf("not installed (missing %s; iptables %d.%d.%d)", strings.Join(missing, ", "), v1, v2, v3), nil
	}
	return fmt.Sprintf("installed, %s (iptables %d.%d.%d)", families, v1, v2, v3), nil
}

func missingJumps(ipt *iptables.IPTables, tables []plan.Table, family string) ([]string, error) {
	var missing []string
	for _, t := range tables {
		for _, j := range t.Jumps {
			ok, err := ipt.Exists(t.Name, j.From, "-j", j.To)
			if err != nil {
				return nil, fmt.Errorf("inspecting %s%s %s: %w", family, t.Name, j.From, err)
			}
			if !ok {
				missing = append(missing, family+t.Name+" "+j.From+" -> "+j.To)
			}
		}
	}
	return missing, nil
}

// ipv6Enabled reports whether the kernel runs IPv6 at all (not built
// without it, not booted with ipv6.disable=1).
func ipv6Enabled() bool {
	_, err := os.Stat("/proc/net/if_inet6")
	return err == nil
}

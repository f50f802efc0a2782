package apply

import (
	"fmt"
	"strings"

	"github.com/coreos/go-iptables/iptables"

	"github.com/ispbalance/ispbalance/internal/plan"
)

// FirewallStatus says whether the jumps into our chains are in place, for
// the status table. go-iptables suits this kind of one-off inspection;
// writing goes through iptables-restore instead (see Netfilter).
func FirewallStatus(tables []plan.Table) (string, error) {
	ipt, err := iptables.New()
	if err != nil {
		return "", fmt.Errorf("inspecting the firewall: %w", err)
	}
	v1, v2, v3 := ipt.GetIptablesVersion()
	var missing []string
	for _, t := range tables {
		for _, j := range t.Jumps {
			ok, err := ipt.Exists(t.Name, j.From, "-j", j.To)
			if err != nil {
				return "", fmt.Errorf("inspecting %s %s: %w", t.Name, j.From, err)
			}
			if !ok {
				missing = append(missing, t.Name+" "+j.From+" -> "+j.To)
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Sprintf("not installed (missing %s; iptables %d.%d.%d)", strings.Join(missing, ", "), v1, v2, v3), nil
	}
	return fmt.Sprintf("installed (iptables %d.%d.%d)", v1, v2, v3), nil
}

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
	if len(missing) > 0 && len(missing) == countJumps(tables, tables6) {
		return fmt.Sprintf("not installed (iptables %d.%d.%d)", v1, v2, v3), nil
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
			// A jump to a chain that does not exist is an iptables error,
			// not an answer: ask about the chain first.
			there, err := ipt.ChainExists(t.Name, j.To)
			if err != nil {
				return nil, fmt.Errorf("inspecting %s%s: %w", family, t.Name, err)
			}
			if !there {
				missing = append(missing, family+t.Name+" "+j.From+" -> "+j.To)
				continue
			}
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

// countJumps counts the jumps the plan puts into built-in chains, in the
// families inspected.
func countJumps(tables, tables6 []plan.Table) int {
	n := 0
	for _, t := range tables {
		n += len(t.Jumps)
	}
	if ipv6Enabled() {
		for _, t := range tables6 {
			n += len(t.Jumps)
		}
	}
	return n
}

// Installed reports whether anything of ispbalance's is in the kernel's
// routing: a rule in its priority range or a route in its tables.
func Installed() (bool, error) {
	a, err := New(Options{})
	if err != nil {
		return false, err
	}
	defer a.Close()
	st, err := a.readRouting()
	if err != nil {
		return false, err
	}
	return len(st.rules) > 0 || len(st.routes) > 0, nil
}

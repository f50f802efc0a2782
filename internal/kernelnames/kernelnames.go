// Package kernelnames is the one place that claims kernel objects for
// ispbalance: routing table numbers, policy-rule priorities, fwmark bits,
// the route protocol tag and iptables chain names. Everything ispbalance
// installs is recognisable from these values alone, so a rebuild or a
// `stop` can find and replace exactly its own objects without the
// configuration and without touching anyone else's.
package kernelnames

import "fmt"

// MaxISPs bounds how many ISP services one router may balance. It follows
// from MarkMask: six mark bits give 63 non-zero ISP indexes.
const MaxISPs = 63

// Routing tables. The original used tables 1..N, which collide with
// anything else that picks small numbers (VPN clients, wg-quick uses
// 51820, Tailscale 52, strongSwan 220). 4200 and up is unused by the tools
// we know of and easy to spot in `ip rule`.
const (
	// BalanceTable holds the router's own default route: a weighted
	// multipath route over the up ISPs (balanced) or a single route via
	// the chosen ISP (failover). Keeping it out of main means
	// NetworkManager, networkd or a DHCP client can keep managing main.
	BalanceTable = 4200
	// ispTableBase + index is the table of ISP number index (1..MaxISPs).
	ispTableBase = 4200
)

// ISPTable returns the routing table of the ISP with the given 1-based index.
func ISPTable(index int) int { return ispTableBase + index }

// IsOurTable reports whether table belongs to ispbalance.
func IsOurTable(table int) bool {
	return table >= BalanceTable && table <= ispTableBase+MaxISPs
}

// Policy-rule priorities. The whole block 9000..9999 is ours; a rebuild
// deletes any rule in it that the plan does not want. It sits well below
// the kernel's main rule (32766) and away from Tailscale (5210-5310) and
// mwan3 (1000-2000, 2254).
const (
	PrioMin = 9000
	PrioMax = 9999

	// PrioSuppressMain is `lookup main suppress_prefixlength 0`, the
	// wg-quick trick: every route in main more specific than a default
	// route (LANs, VPNs, containers) still wins, and only the choice of
	// default route is made by our tables.
	PrioSuppressMain = 9000
	// PrioFwmarkBase + index: connections marked for an ISP leave by it.
	PrioFwmarkBase = 9100
	// PrioSourceBase + index: packets from an ISP's address leave by it,
	// so replies to connections made to that address go back the way
	// they came.
	PrioSourceBase = 9200
	// PrioOifBase + index: sockets bound to an ISP's device (the
	// monitor's probes) use that ISP's table.
	PrioOifBase = 9300
	// PrioBalance sends everything else to BalanceTable.
	PrioBalance = 9900
)

// Fwmark bits. Bits 24..29 are ours: Kubernetes uses 0x4000/0x8000, mwan3
// 0x3f00, Tailscale 0xff0000, Docker and Calico the low bits. An ISP's mark
// is its index shifted into the mask, so marks never collide with theirs.
const (
	MarkMask  uint32 = 0x3f000000
	markShift        = 24
)

// ISPMark returns the fwmark (and connmark) of the ISP with the given index.
func ISPMark(index int) uint32 { return uint32(index) << markShift }

// RouteProtocol tags every route ispbalance installs (`proto 177` in `ip
// route`), so routes in our tables are told apart from routes other tools
// add there. 177 is not assigned in iproute2's rt_protos.
const RouteProtocol = 177

// Chain names. Every chain ispbalance creates starts with ChainPrefix.
const ChainPrefix = "ISPB-"

// MaxChainName is the longest chain name iptables accepts: the kernel
// keeps names in XT_EXTENSION_MAXNAMELEN (29) bytes with the NUL. Service
// names and the names of rule files' chains are bounded so that MarkChain
// and UserChain stay within it.
const MaxChainName = 28

const (
	ChainInput       = ChainPrefix + "INPUT"
	ChainForward     = ChainPrefix + "FORWARD"
	ChainOutput      = ChainPrefix + "OUTPUT"
	ChainPrerouting  = ChainPrefix + "PREROUTING"
	ChainPostrouting = ChainPrefix + "POSTROUTING"
	ChainBalance     = ChainPrefix + "BALANCE"

	// Log-and-act chains, as in the original, each logging at most once a
	// minute so a flood cannot fill the log.
	ChainRejectPerm = ChainPrefix + "REJECTPERM"
	ChainDropGen    = ChainPrefix + "DROPGEN"
	ChainDropInval  = ChainPrefix + "DROPINVAL"
	ChainDropPerm   = ChainPrefix + "DROPPERM"
	ChainDropSpoof  = ChainPrefix + "DROPSPOOF"
	ChainDropFlood  = ChainPrefix + "DROPFLOOD"
	ChainDebug      = ChainPrefix + "DEBUG"
)

// UserChainPrefix starts the chains that hold the rules of the admin's
// rule files: "ISPB-U-INPUT" for rules a file appends to INPUT,
// "ISPB-U-MYCHAIN" for a chain a file creates. Keeping them under our
// prefix makes them part of the atomic rebuild and of `stop`.
const UserChainPrefix = ChainPrefix + "U-"

// UserChain names the chain that holds a rule file's rules for chain.
func UserChain(chain string) string { return UserChainPrefix + chain }

// User rule priorities: `ip rule` lines of rule files get priorities in
// this part of our block, after ispbalance's own per-ISP rules and before
// the balance rule.
const (
	PrioUserMin = 9400
	PrioUserMax = 9899
)

// MarkChain names the mangle chain that assigns connections to an ISP.
func MarkChain(service string) string { return ChainPrefix + "MARK-" + service }

// KeepChain names the mangle chain that gives a LAN address to an ISP
// under sticky=source: it records the address in the ISP's sticky set,
// takes it out of the other ISPs' sets, and marks the connection. It is
// as long as MarkChain, so the service names that fit one fit the other.
func KeepChain(service string) string { return ChainPrefix + "KEEP-" + service }

// IP sets. ispbalance's sets start with SetPrefix, so `stop` finds them
// without the configuration.
const SetPrefix = "ISPB-"

// MaxSetName is the longest set name ipset accepts: the kernel keeps
// names in IPSET_MAXNAMELEN (32) bytes with the NUL.
const MaxSetName = 31

// StickySet names the set of LAN addresses that sticky=source keeps on
// the ISP service, one per address family: "ISPB-STICKY4-CABLE".
func StickySet(service string, ipv6 bool) string {
	if ipv6 {
		return SetPrefix + "STICKY6-" + service
	}
	return SetPrefix + "STICKY4-" + service
}

// LogPrefix is the start of every kernel log line our chains write.
const LogPrefix = "ispb "

// FormatMark renders a mark as `ip rule` and iptables print it.
func FormatMark(mark uint32) string { return fmt.Sprintf("0x%x", mark) }

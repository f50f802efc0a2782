// Package detect answers two questions about the machine ispbalance runs on:
// where its files live (the distribution's layout) and what the kernel says
// right now about each configured interface — its IPv4 address, whether it
// can carry traffic, and which gateway traffic through it should use.
//
// Interface facts come from three netlink dumps per call (links, IPv4
// addresses, main-table routes), never from parsing `ip` output, so one
// discovery stays cheap enough to run on every rebuild. DHCP lease files are
// read only for devices whose gateway cannot be learnt from the kernel,
// after asking NetworkManager over D-Bus when it runs (with a short time
// budget, and not at all when there is no system bus). What ispbalance's
// own hooks were last told about a lease (HookLeaseDir) comes before the
// kernel's routes, which a DHCP client may have left stale.
package detect

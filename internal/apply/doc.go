// Package apply installs a plan on the running kernel and takes it away
// again. Routes and policy rules go in over netlink, replacing exactly
// the objects in ispbalance's tables and priority range; the firewall goes
// in as one `iptables-restore --noflush` transaction per table, touching
// only ISPB- chains and the jumps to them; sticky=source's IP sets are
// made before the firewall that names them and destroyed after it no
// longer does. If any step fails, what was there before is put back. On
// nf_tables, a record of the firewall tied to the ruleset's generation
// spares reading it while nothing changed.
package apply

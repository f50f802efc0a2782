// Package render prints a plan: as iptables-restore input (what the
// applier feeds the kernel), as a shell script of `ip`, `sysctl` and
// `iptables-restore` commands a person can read or paste (`ifup-balance
// -d`), and as the status table. It never touches the system.
package render

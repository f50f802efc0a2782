// Package trust decides whether a file that ispbalance obeys or runs as
// root may be used: balance.conf, the rule files and their directories,
// and the link monitor's event scripts. Like cron and sudo, it refuses
// anything that someone other than root could change, because whoever can
// write such a file can run commands as root on the next rebuild.
//
// A file passes when it (or what it points to, for a symlink) is owned by
// root or by the effective user of the running process, and is writable
// by neither group nor others; a symlink also needs such a directory
// around it, since whoever can write that directory can point the link
// elsewhere. The sticky bit does not help: it keeps others from replacing
// root's files but not from adding new ones to a rule directory. Allowing
// the running user lets an ordinary user dry-run a configuration of their
// own; as root it means root alone.
package trust

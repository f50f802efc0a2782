// Package boottest proves "install and forget" on a booted Debian: the
// package, built as it ships, is installed with apt in a Debian system
// whose PID 1 is systemd (package bootlab), inside a lab's router
// namespace, with the distribution's own network stack bringing the
// uplinks up at boot; the tests then renew leases, pull cables, kill the
// monitor, reboot, upgrade and remove, and check what the LAN sees.
package boottest

// Package bootlab boots a whole Debian system, with systemd as its PID 1,
// inside a lab's router namespace, so that tests can install the package
// as an administrator would and watch it live under the distribution's
// own network stack: ifupdown, NetworkManager or systemd-networkd bringing
// the uplinks up at boot, renewals, restarts, reboots and upgrades.
//
// Image builds the root file system with mmdebstrap from the Debian
// registry once and keeps it, keyed on its package list; every System
// boots an overlay of its own on top of it, so what one test installs or
// writes never reaches another, and a "reboot" (Kill, then the lab's
// ResetRouter, then Boot) sees exactly what the last boot left on disk.
//
// Like package lab it does not import "testing": tests wrap it with their
// own skip-or-fail rules.
package bootlab

// Package config reads balance.conf: the service table of ISPs and LANs,
// the balancing mode, forwarding groups, firewall switches and the link
// monitor's options. It only parses and validates; every error names the
// file and line it came from, so an admin can fix it without guessing.
package config

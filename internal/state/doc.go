// Package state keeps what ispbalance remembers between runs: each ISP's
// verdict in /var/lib/lsm/<SERVICE>.state, as the original and lsm's
// event scripts keep it, and the lock that serialises rebuilds.
package state

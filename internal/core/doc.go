// Package core is the one rebuild path every trigger uses (the CLI, the
// hooks, the monitor): take the lock, read the configuration, discover
// the interfaces, decide which ISPs are up, plan, and apply the plan or
// print it. It also answers status queries and tears everything down.
package core

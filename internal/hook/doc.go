// Package hook turns the environment a network stack gives its hooks
// (ifupdown, dhclient, dhcpcd, the NetworkManager dispatcher,
// networkd-dispatcher, Red Hat's ifup-local and ifdown-local) into one
// small Event, and refuses anything that is not what those tools send.
//
// The values come from DHCP servers and from whoever named a connection,
// so every one that is used is checked before it goes anywhere: interface
// names by the kernel's own rules, addresses by netip, numbers as numbers,
// and nothing longer than a real value could be. A refusal names the
// variable. The package does no I/O: callers pass argv and a getenv.
package hook

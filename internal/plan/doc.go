// Package plan turns a configuration, the live facts about its interfaces
// and the set of ISPs that are up into the complete desired state of the
// router: routing tables, policy rules, sysctls and the firewall. Build is
// a pure function: it does no I/O, never logs and returns a value that the
// render package prints and the apply package installs.
package plan

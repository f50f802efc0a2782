// Package cli is the ifup-balance command line: it parses arguments and
// the environment, then calls the core. It is separate from main so the
// whole command can be tested in-process.
package cli

// Package lsm holds the pure, kernel-free half of ispbalance's link
// monitor, which is compatible with lsm/foolsm: the foolsm configuration
// language, the monitor options accepted in balance.conf, the window of
// recent probes with its loss statistics, the up/down/long_down state
// machine for links and groups, flap damping, and the argument vector of
// lsm event scripts.
//
// Nothing here opens a socket, reads the clock or logs. The daemon sends
// probes, records them in a Window, and calls Decider.Decide with the
// current time after every send; the Event it gets back says which
// scripts to run and with which arguments.
//
// Time values should come from time.Now, which carries a monotonic
// reading: every interval, timeout and long-down duration is measured on
// it, so wall-clock steps cannot distort them (lsm used gettimeofday
// throughout). Only the TIMESTAMP handed to scripts uses the wall clock.
package lsm

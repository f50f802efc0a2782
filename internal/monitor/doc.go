// Package monitor is the running link monitor: it probes every ISP
// through that ISP, feeds the results to lsm's state machine (package
// lsm), watches carrier, addresses and routes over netlink, and on every
// verdict or link change records the ISP's state, runs the event scripts
// and triggers the core's rebuild in-process. It owns sockets, timers and
// processes; the decisions themselves are lsm's pure code.
package monitor

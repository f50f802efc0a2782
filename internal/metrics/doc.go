// Package metrics writes metrics in Prometheus' text exposition format
// (version 0.0.4): counters, gauges and histograms with labels, served
// over HTTP and written atomically as a node_exporter textfile. It is a
// few hundred lines instead of the Prometheus client library, which costs
// the monitor 6.6 MB of resident memory (see README, Performance); the
// library's parser and promtool check what it writes, in tests only.
// The metrics' names and meaning belong to their user (package monitor).
package metrics

package monitor

import (
	"net"
	"time"

	"github.com/ispbalance/ispbalance/internal/lsm"
	"github.com/ispbalance/ispbalance/internal/metrics"
)

// Rebuild reasons as the metrics count them: a small fixed set, where the
// log has the full reason.
const (
	rebuildStart   = "start"
	rebuildVerdict = "verdict"
	rebuildKernel  = "link_change"
	rebuildHook    = "hook"
	rebuildRetry   = "retry"
	rebuildResync  = "resync"
	rebuildReload  = "reload"
	rebuildRepair  = "repair"
)

// states are the values of ispbalance_isp_state's state label: exactly
// one of them is 1 for a link.
var states = []string{lsm.Up.String(), lsm.Down.String(), lsm.LongDown.String(), lsm.Unknown.String(), lsm.Degraded.String()}

// monitorMetrics are the monitor's Prometheus metrics.
type monitorMetrics struct {
	set *metrics.Set

	up, state, routing, hold          *metrics.Family
	loss, rttAverage, rttStddev       *metrics.Family
	lastChange, inState, changes      *metrics.Family
	sent, answered, rtt               *metrics.Family
	assigned, tracked                 *metrics.Family
	rxBytes, txBytes, rxPkts, txPkts  *metrics.Family
	rebuilds, rebuildDuration, starts *metrics.Family
}

// rttBuckets span a LAN gateway (under a millisecond) to a satellite
// link (600 ms) and the probe timeout.
var rttBuckets = []float64{.001, .0025, .005, .01, .02, .05, .1, .2, .3, .5, .8, 1, 2}

func newMonitorMetrics() *monitorMetrics {
	s := &metrics.Set{}
	link := []string{"isp", "family"}
	with := func(extra ...string) []string { return append(append([]string(nil), link...), extra...) }
	mm := &monitorMetrics{
		set:     s,
		up:      s.Gauge("ispbalance_isp_up", "1 when the link monitor judges the ISP up, else 0.", link...),
		state:   s.Gauge("ispbalance_isp_state", "The link monitor's state of the ISP: 1 for the current state, 0 for the others.", with("state")...),
		routing: s.Gauge("ispbalance_isp_routing", "1 when the latest rebuild routes new connections through the ISP (a down ISP may route as a last resort).", link...),
		hold:    s.Gauge("ispbalance_isp_hold_seconds", "How much longer flap damping holds the ISP down once its probes pass (0 when not held).", link...),
		loss:    s.Gauge("ispbalance_isp_loss_ratio", "Share of the probes in the monitor's window that were lost or answered late.", link...),
		rttAverage: s.Gauge("ispbalance_isp_rtt_average_seconds",
			"Mean round-trip time of the answered probes in the monitor's window.", link...),
		rttStddev: s.Gauge("ispbalance_isp_rtt_stddev_seconds",
			"Standard deviation of the round-trip times of the answered probes in the monitor's window (jitter).", link...),
		lastChange: s.Gauge("ispbalance_isp_last_change_timestamp_seconds",
			"Unix time of the ISP's latest state change, or of the monitor's first sight of it.", link...),
		inState: s.Gauge("ispbalance_isp_state_age_seconds",
			"Seconds since the ISP's latest state change, or since the monitor first saw it.", link...),
		changes:  s.Counter("ispbalance_isp_state_changes_total", "State changes of the ISP, by the state entered.", with("to")...),
		sent:     s.Counter("ispbalance_probes_sent_total", "Echo requests sent to the ISP's probe targets.", link...),
		answered: s.Counter("ispbalance_probes_answered_total", "Echo replies received from the ISP's probe targets, late ones included.", link...),
		rtt:      s.Histogram("ispbalance_probe_rtt_seconds", "Round-trip time of answered probes.", rttBuckets, link...),
		assigned: s.Counter("ispbalance_isp_connections_assigned_total",
			"New connections the firewall assigned to the ISP since the monitor started.", link...),
		tracked: s.Gauge("ispbalance_isp_tracked_connections", "Connections the kernel tracks as assigned to the ISP.", link...),
		rxBytes: s.Counter("ispbalance_isp_receive_bytes_total", "Bytes received on the ISP's device since the monitor started.", "isp"),
		txBytes: s.Counter("ispbalance_isp_transmit_bytes_total", "Bytes sent on the ISP's device since the monitor started.", "isp"),
		rxPkts:  s.Counter("ispbalance_isp_receive_packets_total", "Packets received on the ISP's device since the monitor started.", "isp"),
		txPkts:  s.Counter("ispbalance_isp_transmit_packets_total", "Packets sent on the ISP's device since the monitor started.", "isp"),
		rebuilds: s.Counter("ispbalance_rebuilds_total",
			"Rebuilds the monitor ran, by what asked for them and their result (ok or error).", "reason", "result"),
		rebuildDuration: s.Histogram("ispbalance_rebuild_duration_seconds",
			"Time from asking for a rebuild to its result.", []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}),
		starts: s.Gauge("ispbalance_monitor_start_time_seconds", "Unix time the monitor started."),
	}
	mm.rebuildDuration.With()
	return mm
}

// MetricNames lists every metric the monitor exports, for checks of what
// refers to them (the Grafana dashboard).
func MetricNames() []string { return newMonitorMetrics().set.Names() }

// linkMetrics are one link's series, resolved once so the probe path
// only adds to numbers.
type linkMetrics struct {
	mm          *monitorMetrics
	isp, family string
	sent        *metrics.Series
	answered    *metrics.Series
	rtt         *metrics.Series
}

func (mm *monitorMetrics) link(isp, family string) *linkMetrics {
	lm := &linkMetrics{mm: mm, isp: isp, family: family,
		sent: mm.sent.With(isp, family), answered: mm.answered.With(isp, family), rtt: mm.rtt.With(isp, family)}
	mm.assigned.With(isp, family)
	return lm
}

func (lm *linkMetrics) answer(rtt time.Duration) {
	lm.answered.Inc()
	lm.rtt.Observe(rtt.Seconds())
}

func (lm *linkMetrics) changed(to string) {
	lm.mm.changes.With(lm.isp, lm.family, to).Inc()
}

// publish sets the link's gauges from what the monitor knows now.
func (lm *linkMetrics) publish(l *link, now time.Time) {
	mm, isp, fam := lm.mm, lm.isp, lm.family
	cur := l.state.State.String()
	if l.grade.Degraded {
		cur = lsm.Degraded.String()
	}
	for _, s := range states {
		mm.state.With(isp, fam, s).Set(boolValue(s == cur))
	}
	mm.up.With(isp, fam).Set(boolValue(l.state.State == lsm.Up))
	mm.routing.With(isp, fam).Set(boolValue(l.target.Routing))
	mm.hold.With(isp, fam).Set(holdLeft(l.state, now).Seconds())
	mm.lastChange.With(isp, fam).Set(float64(l.since.UnixNano()) / 1e9)
	mm.inState.With(isp, fam).Set(now.Sub(l.since).Seconds())
	q := l.quality(now)
	mm.loss.With(isp, fam).Set(q.loss)
	mm.rttAverage.With(isp, fam).Set(q.Mean.Seconds())
	mm.rttStddev.With(isp, fam).Set(q.Stddev.Seconds())
	mm.tracked.With(isp, fam).Set(float64(l.counts.tracked))
}

// forget removes a link's series: an ISP taken out of balance.conf must
// not look stuck at its last values.
func (lm *linkMetrics) forget() {
	mm := lm.mm
	for _, f := range []*metrics.Family{mm.up, mm.state, mm.routing, mm.hold, mm.loss, mm.rttAverage, mm.rttStddev,
		mm.lastChange, mm.inState, mm.changes, mm.sent, mm.answered, mm.rtt, mm.assigned, mm.tracked} {
		// The other family's series of the same ISP stay.
		f.Delete(map[string]string{"isp": lm.isp, "family": lm.family})
	}
}

func (mm *monitorMetrics) rebuilt(reason string, err error, took time.Duration) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	mm.rebuilds.With(reason, result).Inc()
	mm.rebuildDuration.With().Observe(took.Seconds())
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// serveMetrics serves the metrics on addr until the returned function is
// called. A listener that cannot be had is logged, not fatal: metrics
// are no reason to leave the router unwatched.
func (m *Monitor) serveMetrics(addr string) (stop func()) {
	m.serving = false
	if addr == "" {
		return func() {}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		m.log.Error("metrics not served", "listen", addr, "err", err)
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := m.metrics.set.Serve(ln); err != nil {
			m.log.Error("serving metrics", "listen", addr, "err", err)
		}
	}()
	m.serving = true
	m.log.Info("serving metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	return func() {
		ln.Close()
		<-done
	}
}

// publishMetrics brings the gauges up to date and writes the textfile.
// Counters and the RTT histogram are kept up by the probe path itself.
func (m *Monitor) publishMetrics(now time.Time) {
	for _, l := range m.links {
		l.metrics.publish(l, now)
	}
	if m.opts.MetricsTextfile == "" {
		return
	}
	msg := ""
	if err := m.metrics.set.WriteFile(m.opts.MetricsTextfile); err != nil {
		msg = err.Error()
	}
	if msg != m.textfileErr {
		if msg != "" {
			m.log.Error("metrics textfile not written", "path", m.opts.MetricsTextfile, "err", msg)
		} else {
			m.log.Info("metrics textfile written again", "path", m.opts.MetricsTextfile)
		}
		m.textfileErr = msg
	}
}

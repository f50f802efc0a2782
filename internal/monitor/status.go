package monitor

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vishvananda/netlink"

	kn "github.com/ispbalance/ispbalance/internal/kernelnames"
	"github.com/ispbalance/ispbalance/internal/lsm"
	"github.com/ispbalance/ispbalance/internal/render"
)

// Snapshot is what the monitor publishes for `ifup-balance -s`, in the
// status table's own terms.
type Snapshot struct {
	PID     int                 `json:"pid"`
	Started time.Time           `json:"started"`
	Written time.Time           `json:"written"`
	ISPs    []render.MonitorISP `json:"isps"`
}

func (m *Monitor) snapshot(now time.Time) Snapshot {
	s := Snapshot{PID: os.Getpid(), Started: m.started, Written: now}
	totals := m.trafficTotals()
	for _, name := range m.serviceNames() {
		l := m.links[name]
		q := l.quality(now)
		is := render.MonitorISP{Service: name, Device: l.target.Device, State: l.state.State.String(), Since: l.since,
			Probing: l.conn != nil, AvgRTTms: ms(q.Mean), P95RTTms: ms(q.P95), JitterMs: ms(q.Stddev),
			LossPercent: 100 * q.loss, Warning: l.warning, IPv6: l.target.IPv6, InStateSeconds: now.Sub(l.since).Seconds()}
		is.Traffic = m.traffic(l, totals)
		is.MaxRTTms, is.MaxJitterMs = ms(l.settings.Quality.MaxRTT), ms(l.settings.Quality.MaxJitter)
		if l.grade.Degraded {
			is.State = lsm.Degraded.String()
			is.Degraded = l.grade.Why
			if l.target.Routing {
				is.Degraded += "; still routing: no healthy ISP is left"
			}
		}
		is.HoldSeconds = holdLeft(l.state, now).Seconds()
		for _, dst := range l.dsts {
			ts := render.MonitorTarget{Addr: dst.String(), Last: "not probed yet"}
			r := l.results[dst]
			if r != nil && !r.Replied && now.Sub(r.SentAt) <= l.settings.Timeout && r.Settled != nil {
				// The newest probe is on its way; say how the one before
				// it went.
				r = r.Settled
			}
			if r != nil && !r.SentAt.IsZero() {
				switch {
				case r.Replied:
					ts.Last = fmt.Sprintf("reply in %.1f ms", float64(r.RTT.Microseconds())/1000)
				case now.Sub(r.SentAt) > l.settings.Timeout:
					ts.Last = "no reply"
				default:
					ts.Last = "waiting"
				}
			}
			is.Targets = append(is.Targets, ts)
		}
		s.ISPs = append(s.ISPs, is)
	}
	return s
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (m *Monitor) writeStatus(now time.Time) {
	if m.opts.StatusPath == "" {
		return
	}
	data, err := json.MarshalIndent(m.snapshot(now), "", "  ")
	if err != nil {
		return
	}
	tmp := m.opts.StatusPath + ".tmp"
	if err := os.MkdirAll(filepath.Dir(tmp), 0o755); err == nil {
		if err := os.WriteFile(tmp, data, 0o644); err == nil {
			os.Rename(tmp, m.opts.StatusPath)
		}
	}
}

// ReadSnapshot reads the monitor's latest snapshot.
func ReadSnapshot(path string) (Snapshot, error) {
	var s Snapshot
	data, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("reading monitor status %s: %w", path, err)
	}
	return s, nil
}

// dump logs everything the monitor knows per connection, as lsm does on
// SIGUSR1.
func (m *Monitor) dump(now time.Time) {
	for _, is := range m.snapshot(now).ISPs {
		l := m.links[is.Service]
		st := l.window.Stats(now)
		m.log.Info("connection", "isp", is.Service, "device", is.Device, "state", is.State, "since", is.Since.Format(time.RFC3339),
			"probing", is.Probing, "src", l.target.Src, "mark", kn.FormatMark(l.target.Mark), "targets", is.Targets,
			"replied", st.Replied, "waiting", st.Waiting, "timeout", st.Timeout, "reply_late", st.ReplyLate,
			"cons_rcvd", st.ConsRcvd, "cons_wait", st.ConsWait, "cons_miss", st.ConsMiss, "avg_rtt", st.AvgRTT,
			"interval", l.settings.Interval, "max_packet_loss", l.settings.MaxPacketLoss,
			"max_successive_pkts_lost", l.settings.MaxSuccessivePktsLost, "min_packet_loss", l.settings.MinPacketLoss,
			"min_successive_pkts_rcvd", l.settings.MinSuccessivePktsRcvd, "warning", is.Warning)
	}
}

// markFilter matches connection-tracking entries assigned to one ISP.
type markFilter struct{ mark uint32 }

func (f markFilter) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	return flow.Mark&kn.MarkMask == f.mark
}

// flushConntrack deletes the connections assigned to the ISP with mark, so
// that LAN clients reconnect through a live ISP instead of hanging on a
// dead one; connections of other ISPs are untouched.
func flushConntrack(mark uint32, ipv6 bool) (uint, error) {
	family := netlink.FAMILY_V4
	if ipv6 {
		family = netlink.FAMILY_V6
	}
	return netlink.ConntrackDeleteFilters(netlink.ConntrackTable, netlink.InetFamily(family), markFilter{mark})
}

// reload adopts new options, keeping each link's probe history and state.
func (m *Monitor) reload(load func() (Options, error)) {
	opts, err := load()
	if err != nil {
		m.log.Error("configuration not reloaded; keeping the running one", "err", err)
		return
	}
	// What reaches the kernel and the log stays as the monitor was made.
	opts.Log, opts.Resolve = m.opts.Log, m.opts.Resolve
	opts.Prober, opts.FlushMark, opts.Watch, opts.Count = m.opts.Prober, m.opts.FlushMark, m.opts.Watch, m.opts.Count
	if opts.ScriptTimeout == 0 {
		opts.ScriptTimeout = m.opts.ScriptTimeout
	}
	listen := m.opts.MetricsListen
	m.opts = opts
	if opts.MetricsListen != listen || !m.serving {
		m.stopMetrics()
		m.stopMetrics = m.serveMetrics(opts.MetricsListen)
	}
	if opts.MetricsTextfile == "" {
		m.textfileErr = ""
	}
	for name, l := range m.links {
		s := m.linkSettings(name)
		if s.Window != l.settings.Window || s.Timeout != l.settings.Timeout {
			l.window = lsm.NewWindow(s.Window, s.Timeout)
			l.pending = map[int]pendingRound{}
		}
		l.settings, l.decider = s, lsm.NewDecider(s)
		l.resolved = time.Time{}
	}
	m.log.Info("configuration reloaded")
}

// holdLeft is how much longer a link held down by flap damping must keep
// passing the up rule: all of the hold while the rule does not hold yet.
func holdLeft(st lsm.LinkState, now time.Time) time.Duration {
	if st.State == lsm.Up || st.Hold <= 0 {
		return 0
	}
	if st.GoodSince.IsZero() {
		return st.Hold
	}
	return max(st.Hold-now.Sub(st.GoodSince), 0)
}

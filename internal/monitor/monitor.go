package monitor

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/ispbalance/ispbalance/internal/lsm"
	"github.com/ispbalance/ispbalance/internal/metrics"
	"github.com/ispbalance/ispbalance/internal/probe"
	"github.com/ispbalance/ispbalance/internal/state"
	"github.com/ispbalance/ispbalance/internal/trust"
)

// Target is one ISP as the latest rebuild saw it.
type Target struct {
	Service string
	Device  string // kernel device name
	Src     netip.Addr
	Mark    uint32
	Gateway netip.Addr
	// Ping holds the configured probe targets (addresses or host names);
	// empty means the gateway.
	Ping    []string
	Present bool
	Carrier bool
	// AdminDown says the admin set the ISP's device down (ifdown, `ip
	// link set DEV down`): the outage that follows is no failure for flap
	// damping.
	AdminDown bool
	// Routing says the rebuild routes new connections through the ISP,
	// which it may do for an ISP judged down as a last resort.
	Routing bool
	// IPv6 marks the ISP's IPv6 half: probed over ICMPv6 from its IPv6
	// address and judged apart from IPv4, under the link name
	// state.IPv6Name(Base). Base is the configured service for both.
	IPv6 bool
	Base string
}

// base is the configured service a target belongs to.
func (t Target) base() string {
	if t.Base != "" {
		return t.Base
	}
	return t.Service
}

// family names a target's address family for logs and event scripts.
func (t Target) family() string {
	if t.IPv6 {
		return "ipv6"
	}
	return "ipv4"
}

// flushRequest is one dead ISP half whose tracked connections go.
type flushRequest struct {
	mark uint32
	ipv6 bool
}

// Facts is what a rebuild tells the monitor.
type Facts struct {
	Targets []Target
	// Devices are all configured kernel devices, ISPs and LANs: netlink
	// events about them trigger a rebuild.
	Devices []string
	// Drift, when set, lists what of the rebuild's result is missing from
	// the kernel now (deleted by other software); firewall says whether to
	// look at the firewall too, which costs more than routing.
	Drift func(ctx context.Context, firewall bool) ([]string, error)
}

// Rebuilder runs the core's rebuild path.
type Rebuilder func(ctx context.Context, reason string) (Facts, error)

// Options configure a Monitor.
type Options struct {
	// Settings holds per-service lsm settings; services not in it use
	// Default.
	Settings map[string]lsm.Settings
	Default  lsm.Settings
	Groups   []lsm.Group
	// ScriptDir holds up.d/, down.d/ and long_down.d/ (balance/lsm).
	ScriptDir string
	// Files says whether event scripts that others could change run
	// with a warning (balance.conf's insecure_files=allow) or not at all.
	Files    trust.Policy
	StateDir string
	// StatusPath receives a JSON snapshot for `ifup-balance -s`.
	StatusPath string
	// DegradedPath receives the names of the links beyond their quality
	// thresholds, for the rebuilds (state.WriteDegraded); empty writes
	// none.
	DegradedPath string
	// FlushConntrack deletes the connection-tracking entries of an ISP
	// that goes down, so its clients reconnect via a live ISP.
	FlushConntrack bool
	ScriptTimeout  time.Duration
	Log            *slog.Logger
	// MetricsListen is the host:port serving Prometheus metrics at
	// /metrics; empty serves none.
	MetricsListen string
	// MetricsTextfile receives the same metrics every statusEvery, for
	// node_exporter's textfile collector; empty writes none.
	MetricsTextfile string
	// Resolve looks up host-name probe targets ("ip4" or "ip6" network);
	// nil uses the system resolver.
	Resolve func(ctx context.Context, network, host string) ([]netip.Addr, error)

	// The seams below reach the kernel; nil uses the real thing. Unit
	// tests give fakes, so the loop's logic is tested without root.

	// Prober opens a probe socket for one ISP.
	Prober Prober
	// FlushMark deletes the tracked connections of one family assigned to
	// an ISP's mark.
	FlushMark func(mark uint32, ipv6 bool) (uint, error)
	// Count reads the kernel's traffic counters for the targets.
	Count func(ctx context.Context, targets []Target) (Counts, error)
	// countEvery is how often Count runs; 0 means countEvery. Tests
	// shorten it.
	countEvery time.Duration
	// Watch reports kernel events: rebuild reasons on out, drift checks
	// of routing on check and of the firewall on checkFirewall.
	Watch func(ctx context.Context, out, check, checkFirewall chan<- string)
}

// Prober opens probe sockets; probe.Open is the real one.
type Prober func(src netip.Addr, mark uint32) (ProbeConn, error)

// ProbeConn is one ISP's probe socket (a *probe.Conn).
type ProbeConn interface {
	Send(dst netip.Addr, seq int) error
	Receive(deadline time.Time) (probe.Reply, error)
	Close() error
}

// Control carries requests from signal handlers into the loop.
type Control struct {
	// Reload asks for new options (SIGHUP); a nil result or error keeps
	// the old ones.
	Reload chan func() (Options, error)
	// Dump asks for a full per-connection log dump (SIGUSR1).
	Dump chan struct{}
	// Rebuild asks for a rebuild for the given reason (a hook's event,
	// SIGUSR2); it is coalesced with any rebuild already running.
	Rebuild chan string
}

// resolveEvery is how often host-name targets are looked up again, so a
// target whose address changes is followed.
const resolveEvery = 5 * time.Minute

// statusEvery is how often the snapshot for `ifup-balance -s` is written.
const statusEvery = 2 * time.Second

type targetResult struct {
	Addr    netip.Addr
	LastSeq int
	Replied bool
	RTT     time.Duration
	SentAt  time.Time
	// Settled is the previous probe's outcome, what the status shows
	// while the newest is still on its way.
	Settled *targetResult
}

type link struct {
	target   Target
	settings lsm.Settings
	decider  lsm.Decider
	state    lsm.LinkState
	since    time.Time
	window   *lsm.Window
	conn     ProbeConn
	dsts     []netip.Addr
	results  map[netip.Addr]*targetResult
	resolved time.Time
	nextDue  time.Time
	warning  string
	// grade is the verdict of the link's quality thresholds, judged
	// while lsm's rules say up.
	grade   lsm.QualityState
	metrics *linkMetrics
	counts  linkCounts
	// pending maps an echo sequence number to the probe round still
	// waiting for its first reply.
	pending map[int]pendingRound
	// burst counts the probes still to send at burstSpacing after the
	// link was given a new gateway; until trustUntil, a reply to one of
	// them brings the link up at once (see newGateway).
	burst      int
	trustUntil time.Time
}

// pendingRound is a round of probes not answered yet: its sequence
// number in the window and when it went out.
type pendingRound struct {
	seq  int
	sent time.Time
}

// A new gateway is probed burstProbes times burstSpacing apart, and
// trusted on a reply within trustFor.
const (
	burstProbes  = 5
	burstSpacing = 50 * time.Millisecond
	trustFor     = 3 * time.Second
)

type reply struct {
	service string
	conn    ProbeConn
	r       probe.Reply
}

// Monitor is one running monitor.
type Monitor struct {
	opts    Options
	rebuild Rebuilder
	log     *slog.Logger

	links   map[string]*link
	devices map[string]bool
	groups  map[string]lsm.State
	// flushPending holds the marks of ISPs that went down, whose tracked
	// connections are deleted after the next rebuild.
	flushPending map[string]flushRequest

	// drift checks the newest rebuild's result against the kernel;
	// factsGen counts rebuilds, so a check that raced with one is ignored.
	drift    func(ctx context.Context, firewall bool) ([]string, error)
	factsGen int
	repair   repairLimiter

	replies chan reply
	scripts sync.WaitGroup
	// scriptCtx ends event scripts still running when the monitor stops.
	scriptCtx  context.Context
	stopScript context.CancelFunc
	started    time.Time

	metrics *monitorMetrics
	// devTotals holds the ISPs' devices' traffic since the monitor
	// started, by device.
	devTotals map[string]*deviceTotals
	// stopMetrics stops the metrics listener, if one runs; serving says
	// whether one does, so a reload retries an address that could not be
	// had before (not configured yet at boot, say).
	stopMetrics func()
	serving     bool
	// textfileErr is the last failure to write MetricsTextfile, logged
	// once rather than every statusEvery.
	textfileErr string
}

// New returns a monitor; Run starts it.
func New(opts Options, rebuild Rebuilder) *Monitor {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.ScriptTimeout == 0 {
		opts.ScriptTimeout = 30 * time.Second
	}
	if opts.Resolve == nil {
		opts.Resolve = func(ctx context.Context, network, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, network, host)
		}
	}
	if opts.Prober == nil {
		opts.Prober = func(src netip.Addr, mark uint32) (ProbeConn, error) { return probe.Open(src, mark) }
	}
	if opts.FlushMark == nil {
		opts.FlushMark = flushConntrack
	}
	if opts.Count == nil {
		opts.Count = countKernel
	}
	m := &Monitor{
		opts: opts, rebuild: rebuild, log: opts.Log.With("component", "monitor"),
		links: map[string]*link{}, devices: map[string]bool{}, groups: map[string]lsm.State{},
		flushPending: map[string]flushRequest{},
		replies:      make(chan reply, 256),
		metrics:      newMonitorMetrics(),
		devTotals:    map[string]*deviceTotals{},
		stopMetrics:  func() {},
	}
	if m.opts.Watch == nil {
		m.opts.Watch = m.watchNetlink
	}
	return m
}

func (m *Monitor) settingsFor(service string) lsm.Settings {
	if s, ok := m.opts.Settings[service]; ok {
		return s
	}
	return m.opts.Default
}

// linkSettings are the settings of one service's link, named after it so
// events and scripts carry the service name.
func (m *Monitor) linkSettings(service string) lsm.Settings {
	s := m.settingsFor(service)
	s.Name = service
	return s
}

type rebuildResult struct {
	facts Facts
	err   error
}

// Run probes and reacts until ctx ends. ready is called once the first
// rebuild is done and probing has started (systemd's readiness).
func (m *Monitor) Run(ctx context.Context, ctl Control, ready func()) error {
	m.started = time.Now()
	m.scriptCtx, m.stopScript = context.WithCancel(context.Background())
	defer m.stopScripts()
	m.metrics.starts.With().Set(float64(m.started.UnixNano()) / 1e9)
	m.stopMetrics = m.serveMetrics(m.opts.MetricsListen)
	defer func() { m.stopMetrics() }()
	// Degraded verdicts are the running monitor's: a list left by one
	// that crashed must not keep an ISP out, nor one left when it stops.
	m.writeDegraded()
	defer m.clearDegraded()
	// A failed rebuild never stops the monitor: an interface that
	// vanishes during the first rebuild (NetworkManager taking an address
	// away) is no reason to leave the router unwatched. It is retried
	// with backoff instead.
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	backoff := time.Duration(0)
	failed := func(err error) {
		if backoff == 0 {
			backoff = retryFirst
		} else if backoff *= 2; backoff > retryMax {
			backoff = retryMax
		}
		m.log.Error("rebuild failed; retrying", "err", err, "in", backoff)
		retry.Reset(backoff)
	}
	start := time.Now()
	facts, err := m.rebuild(ctx, "monitor start")
	m.metrics.rebuilt(rebuildStart, err, time.Since(start))
	if err != nil {
		failed(err)
	} else {
		m.setFacts(facts)
	}
	defer m.closeAll()
	// Outside interference (an `ip rule flush`, a firewall reload) is
	// looked for every driftEvery: routing each time, the firewall every
	// firewallEvery-th time, as it costs a process per family.
	driftTick := time.NewTicker(driftEvery)
	defer driftTick.Stop()
	var (
		driftRound int
		checking   bool
		driftDone  = make(chan driftResult, 1)
	)
	// startCheck compares the newest rebuild's result with the kernel in
	// the background; a rebuild under way will set things right anyway.
	startCheck := func(withFirewall bool) {
		if checking || m.drift == nil {
			return
		}
		checking = true
		gen, check := m.factsGen, m.drift
		go func() {
			missing, err := check(ctx, withFirewall)
			driftDone <- driftResult{gen, missing, err}
		}()
	}

	nlEvents := make(chan string, 64)
	// Deletions of rules and of routes in our tables ask for a drift
	// check at once instead of waiting for the next round.
	checkNow := make(chan string, 1)
	checkFirewall := make(chan string, 1)
	go m.opts.Watch(ctx, nlEvents, checkNow, checkFirewall)
	// Traffic is counted in the background: iptables-save takes a few
	// milliseconds the probes should not wait for.
	countTick := time.NewTicker(cmp.Or(m.opts.countEvery, countEvery))
	defer countTick.Stop()
	var (
		counting  bool
		countDone = make(chan countResult, 1)
		countErr  string
	)
	startCount := func() {
		if counting || len(m.links) == 0 {
			return
		}
		counting = true
		targets := m.targets()
		go func() {
			c, err := m.opts.Count(ctx, targets)
			countDone <- countResult{c, err}
		}()
	}
	startCount()
	// A full resync now and then covers what no event and no check sees.
	resync := time.NewTicker(resyncEvery)
	defer resync.Stop()

	if ready != nil {
		ready()
	}
	m.log.Info("monitoring", "isps", m.serviceNames())

	// One timer, set to the next probe due (or the next status write):
	// the monitor sleeps between probes instead of polling, which keeps
	// it near zero CPU on a router.
	timer := time.NewTimer(0)
	defer timer.Stop()
	var (
		rebuilding    bool
		rebuildAsked  time.Time
		rebuildKind   string
		pendingReason string
		pendingKind   string
		done          = make(chan rebuildResult, 1)
		// flushing holds the conntrack flushes the running rebuild
		// covers: those requested before it started.
		flushing map[string]flushRequest
	)
	// kind is the reason's class for the metrics (rebuildVerdict...).
	requestRebuild := func(kind, reason string) {
		if rebuilding {
			// Coalesce: one more rebuild after this one, with the newest facts.
			pendingReason, pendingKind = reason, kind
			return
		}
		rebuilding, rebuildAsked, rebuildKind = true, time.Now(), kind
		flushing, m.flushPending = m.flushPending, map[string]flushRequest{}
		go func() {
			f, err := m.rebuild(ctx, reason)
			done <- rebuildResult{f, err}
		}()
	}
	nextStatus := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-timer.C:
			if changed := m.probeDue(ctx, now); len(changed) > 0 {
				requestRebuild(rebuildVerdict, fmt.Sprintf("verdict on %v", changed))
			}
			if !now.Before(nextStatus) {
				m.writeStatus(now)
				m.publishMetrics(now)
				nextStatus = now.Add(statusEvery)
			}
			timer.Reset(m.nextWake(nextStatus).Sub(time.Now()))
		case rp := <-m.replies:
			if name := m.recordReply(rp); name != "" {
				requestRebuild(rebuildVerdict, fmt.Sprintf("verdict on [%s up] (its new gateway answered)", name))
			}
		case reason := <-nlEvents:
			requestRebuild(rebuildKernel, reason)
		case <-retry.C:
			requestRebuild(rebuildRetry, "retrying a failed rebuild")
		case <-resync.C:
			requestRebuild(rebuildResync, "periodic full resync")
		case why := <-checkNow:
			m.log.Debug("checking for outside changes", "why", why)
			startCheck(false)
		case why := <-checkFirewall:
			m.log.Debug("checking for outside changes", "why", why)
			startCheck(true)
		case <-countTick.C:
			startCount()
		case res := <-countDone:
			counting = false
			m.applyCounts(res.counts)
			// A count that keeps failing (no conntrack support, say) is
			// logged when it starts and when it stops failing.
			if msg := errString(res.err); msg != countErr {
				if msg != "" {
					m.log.Warn("traffic not fully counted", "err", msg)
				} else {
					m.log.Info("traffic counted again")
				}
				countErr = msg
			}
		case <-driftTick.C:
			driftRound++
			startCheck(driftRound%firewallEvery == 0)
		case res := <-driftDone:
			checking = false
			if reason, ok := m.repair.judge(res, m.factsGen, rebuilding, time.Now()); ok {
				m.log.Warn("repairing what other software removed", "missing", res.missing)
				requestRebuild(rebuildRepair, reason)
			} else if res.err != nil {
				m.log.Debug("checking for outside changes", "err", res.err)
			}
		case res := <-done:
			rebuilding = false
			m.metrics.rebuilt(rebuildKind, res.err, time.Since(rebuildAsked))
			if res.err != nil {
				failed(res.err)
			} else {
				backoff = 0
				retry.Stop()
				m.setFacts(res.facts)
				timer.Reset(0) // new links are probed at once
			}
			m.flush(flushing)
			flushing = nil
			if pendingReason != "" {
				reason, kind := pendingReason, pendingKind
				pendingReason = ""
				requestRebuild(kind, reason)
			}
		case load := <-ctl.Reload:
			m.reload(load)
			timer.Reset(0)
			requestRebuild(rebuildReload, "configuration reloaded")
		case <-ctl.Dump:
			m.dump(time.Now())
		case reason := <-ctl.Rebuild:
			requestRebuild(rebuildHook, reason)
		}
	}
}

// A failed rebuild is retried after retryFirst, doubling up to retryMax.
const (
	retryFirst = time.Second
	retryMax   = 30 * time.Second
)

// scriptGrace is how long scripts still running at shutdown may finish.
const scriptGrace = 2 * time.Second

func (m *Monitor) stopScripts() {
	done := make(chan struct{})
	go func() { m.scripts.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(scriptGrace):
		m.stopScript()
		<-done
	}
	m.stopScript()
}

// nextWake is when the loop must next look at the links: the earliest
// probe due, or the next status write.
func (m *Monitor) nextWake(nextStatus time.Time) time.Time {
	next := nextStatus
	for _, l := range m.links {
		if l.nextDue.Before(next) {
			next = l.nextDue
		}
	}
	return next
}

// targets are the links' targets, for work done outside the loop.
func (m *Monitor) targets() []Target {
	var out []Target
	for _, l := range m.links {
		out = append(out, l.target)
	}
	return out
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (m *Monitor) serviceNames() []string {
	var out []string
	for name := range m.links {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// setFacts adopts a rebuild's view of the ISPs: new links start probing,
// links whose address or mark changed get a new socket, links that are
// gone stop. Probe history and lsm state survive every change.
func (m *Monitor) setFacts(f Facts) {
	m.factsGen++
	m.drift = f.Drift
	m.devices = map[string]bool{}
	for _, d := range f.Devices {
		m.devices[d] = true
	}
	watchedDevices.set(m.devices)
	seen := map[string]bool{}
	for _, t := range f.Targets {
		seen[t.Service] = true
		l := m.links[t.Service]
		if l == nil {
			s := m.linkSettings(t.base())
			l = &link{settings: s, decider: lsm.NewDecider(s), state: lsm.InitialState(s),
				window: lsm.NewWindow(s.Window, s.Timeout), results: map[netip.Addr]*targetResult{},
				pending: map[int]pendingRound{}, since: time.Now(), metrics: m.metrics.link(t.base(), t.family())}
			m.links[t.Service] = l
		}
		old := l.target
		l.target = t
		if t.Gateway.IsValid() && old.Gateway != t.Gateway && old.Service != "" {
			m.newGateway(l, old.Gateway, time.Now())
		}
		if l.conn != nil && (!t.Present || old.Src != t.Src || old.Mark != t.Mark) {
			l.conn.Close()
			l.conn = nil
		}
		if t.Present && l.conn == nil {
			conn, err := m.opts.Prober(t.Src, t.Mark)
			if err != nil {
				m.log.Error("cannot probe", "isp", t.Service, "err", err)
				continue
			}
			l.conn = conn
			go m.receive(t.Service, conn)
		}
		if !samePing(old, t) {
			l.resolved = time.Time{}
		}
	}
	for name, l := range m.links {
		if !seen[name] {
			if l.conn != nil {
				l.conn.Close()
			}
			l.metrics.forget()
			delete(m.links, name)
			if m.deviceISP(l.target.Device) == "" {
				delete(m.devTotals, l.target.Device)
			}
		}
	}
	// Traffic series go with the last link of their ISP.
	for _, f := range []*metrics.Family{m.metrics.rxBytes, m.metrics.txBytes, m.metrics.rxPkts, m.metrics.txPkts} {
		for _, isp := range f.Values("isp") {
			if !m.hasISP(isp) {
				f.Delete(map[string]string{"isp": isp})
			}
		}
	}
}

// hasISP says whether a link of the configured service isp is monitored.
func (m *Monitor) hasISP(isp string) bool {
	for _, l := range m.links {
		if l.target.base() == isp {
			return true
		}
	}
	return false
}

// newGateway treats a gateway the link has just been given (a DHCP
// renewal or a redial moving it, or the first lease) as new evidence: the
// window's losses were the old gateway's, so it starts afresh, a burst of
// probes goes out at once, and the first reply brings a link that is not
// up up without waiting for the ordinary up rule (lsm.Decider.Trust),
// which would take seconds of a clean window.
func (m *Monitor) newGateway(l *link, old netip.Addr, now time.Time) {
	m.log.Info("isp has a new gateway: probing it at once", "isp", l.target.Service, "old", old, "new", l.target.Gateway)
	l.window = lsm.NewWindow(l.settings.Window, l.settings.Timeout)
	l.pending = map[int]pendingRound{}
	l.results = map[netip.Addr]*targetResult{}
	// Probing the old gateway (the fallback while no configured target
	// resolves) must not outlive it.
	l.dsts, l.resolved = nil, time.Time{}
	l.nextDue = now
	l.burst = burstProbes
	l.trustUntil = now.Add(trustFor)
}

func samePing(a, b Target) bool {
	if a.Gateway != b.Gateway || len(a.Ping) != len(b.Ping) {
		return false
	}
	for i := range a.Ping {
		if a.Ping[i] != b.Ping[i] {
			return false
		}
	}
	return true
}

func (m *Monitor) closeAll() {
	for _, l := range m.links {
		if l.conn != nil {
			l.conn.Close()
		}
	}
}

// receive forwards one socket's replies to the loop until it is closed.
func (m *Monitor) receive(service string, conn ProbeConn) {
	for {
		r, err := conn.Receive(time.Time{})
		if err != nil {
			if !probe.IsClosed(err) {
				m.log.Warn("reading probe replies", "isp", service, "err", err)
			}
			return
		}
		m.replies <- reply{service: service, conn: conn, r: r}
	}
}

// recordReply counts a probe's reply; it returns the service when the
// reply brought its link up (a new gateway answering).
func (m *Monitor) recordReply(rp reply) string {
	l := m.links[rp.service]
	if l == nil || l.conn != rp.conn {
		return "" // a reply to a socket that has since been replaced
	}
	res := l.results[rp.r.From]
	if res == nil {
		return "" // not one of the link's targets
	}
	counted := false
	if res.LastSeq == rp.r.Seq {
		if res.Replied {
			return "" // a duplicate
		}
		res.Replied = true
		res.RTT = rp.r.At.Sub(res.SentAt)
		l.metrics.answer(res.RTT)
		counted = true
	}
	// A reply to an earlier round counts too: on a link whose RTT
	// exceeds the probe interval (a satellite, a saturated line) every
	// reply arrives after the next probe went out.
	p, awaited := l.pending[rp.r.Seq]
	if awaited {
		// A round counts as answered when any target answers.
		l.window.Reply(p.seq, rp.r.At)
		delete(l.pending, rp.r.Seq)
		if !counted {
			l.metrics.answer(rp.r.At.Sub(p.sent))
		}
	}
	if (!counted && !awaited) || l.trustUntil.IsZero() {
		return ""
	}
	trusted := rp.r.At.Before(l.trustUntil)
	l.trustUntil = time.Time{}
	if !trusted {
		return ""
	}
	next, ev, ok := l.decider.Trust(l.state, l.window, rp.r.At)
	l.state = next
	if !ok {
		return ""
	}
	l.since = rp.r.At
	m.fillEvent(l, &ev)
	m.transition(rp.service, l, ev)
	return rp.service
}

// resolve turns the configured targets into addresses of the link's
// family: literal addresses as they are, host names looked up (again
// every resolveEvery), and the gateway when none is configured. An IPv6
// link-local gateway gets its device as zone.
func (m *Monitor) resolve(ctx context.Context, l *link, now time.Time) {
	if !l.resolved.IsZero() && now.Sub(l.resolved) < resolveEvery {
		return
	}
	l.resolved = now
	var dsts []netip.Addr
	l.warning = ""
	gateway := l.target.Gateway
	if gateway.Is6() && gateway.IsLinkLocalUnicast() && l.target.Device != "" {
		gateway = gateway.WithZone(l.target.Device)
	}
	network, sameFamily := "ip4", func(a netip.Addr) bool { return a.Is4() || a.Is4In6() }
	if l.target.IPv6 {
		network, sameFamily = "ip6", func(a netip.Addr) bool { return a.Is6() && !a.Is4In6() }
	}
	var literals, names []string
	for _, p := range l.target.Ping {
		if a, err := netip.ParseAddr(p); err == nil {
			if sameFamily(a) {
				literals = append(literals, p)
			}
			continue
		}
		names = append(names, p)
	}
	if len(literals)+len(names) == 0 {
		dsts = append(dsts, gateway)
		l.warning = "probing the gateway only: failures beyond it go unseen"
		if len(l.target.Ping) > 0 {
			l.warning = "no " + l.target.family() + " probe target is configured; probing the gateway only"
		}
	}
	for _, p := range literals {
		dsts = append(dsts, netip.MustParseAddr(p))
	}
	for _, p := range names {
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		addrs, err := m.opts.Resolve(lctx, network, p)
		cancel()
		if err != nil || len(addrs) == 0 {
			m.log.Warn("cannot resolve probe target", "isp", l.target.Service, "target", p, "err", err)
			// Keep the previous addresses of this name rather than
			// probing nothing.
			for _, old := range l.dsts {
				dsts = append(dsts, old)
			}
			l.resolved = now.Add(-resolveEvery + 10*time.Second)
			continue
		}
		dsts = append(dsts, addrs[0])
	}
	l.dsts = uniq(dsts)
	if len(l.dsts) == 0 && gateway.IsValid() {
		// Probing nothing would count every round as lost and call a
		// healthy link down because DNS is slow.
		l.dsts = []netip.Addr{gateway}
		l.warning = "no probe target resolves; probing the gateway instead"
	}
}

func uniq(in []netip.Addr) []netip.Addr {
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	for _, a := range in {
		if a.IsValid() && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}

// probeDue sends the probes that are due and decides. It returns the
// services whose state changed.
func (m *Monitor) probeDue(ctx context.Context, now time.Time) []string {
	var changed []string
	for _, name := range m.serviceNames() {
		l := m.links[name]
		if now.Before(l.nextDue) {
			continue
		}
		l.nextDue = now.Add(l.settings.Interval)
		if l.burst > 0 {
			l.burst--
			l.nextDue = now.Add(min(burstSpacing, l.settings.Interval))
		}
		// A link without a socket (device gone, no address) still counts
		// its rounds, all lost, as lsm does: it goes down and its scripts
		// run, instead of looking healthy forever.
		seq := l.window.Send(now)
		if l.conn == nil {
			m.decide(name, l, now, &changed)
			continue
		}
		m.resolve(ctx, l, now)
		echoSeq := seq & 0xffff
		for k := range l.pending {
			if k == echoSeq {
				delete(l.pending, k)
			}
		}
		l.pending[echoSeq] = pendingRound{seq: seq, sent: now}
		if len(l.pending) > 4*l.window.Size() {
			for k := range l.pending {
				delete(l.pending, k)
				break
			}
		}
		for _, dst := range l.dsts {
			res := l.results[dst]
			if res == nil {
				res = &targetResult{Addr: dst}
				l.results[dst] = res
			}
			prev := *res
			prev.Settled = nil
			*res = targetResult{Addr: dst, LastSeq: echoSeq, SentAt: now}
			if !prev.SentAt.IsZero() {
				res.Settled = &prev
			}
			if err := l.conn.Send(dst, echoSeq); err != nil {
				m.log.Debug("probe not sent", "isp", name, "target", dst, "err", err)
			} else {
				l.metrics.sent.Inc()
			}
		}
		m.decide(name, l, now, &changed)
	}
	m.decideGroups(now)
	return changed
}

func (m *Monitor) decide(name string, l *link, now time.Time, changed *[]string) {
	prev := l.state
	next, ev, ok := l.decider.Decide(l.state, l.window, now)
	if ok && ev.State == lsm.Down && l.target.AdminDown {
		next = lsm.Excuse(prev, next)
	}
	l.state = next
	if !ok {
		if l.state.State == lsm.Up {
			m.judgeQuality(name, l, now, changed)
		}
		return
	}
	wasDegraded := l.grade.Degraded
	l.grade = lsm.QualityState{}
	if wasDegraded {
		// It was out of balancing already; scripts and the history say
		// where it really came from.
		ev.Prev = lsm.Degraded
		m.writeDegraded()
	}
	l.since = now
	m.fillEvent(l, &ev)
	m.transition(name, l, ev)
	if ev.State == lsm.Down && l.state.Hold > 0 {
		m.log.Warn("isp held down: it keeps failing, so its probes must answer for longer before it is used again",
			"isp", name, "hold", l.state.Hold, "failures_in_a_row", l.state.Flaps.Streak)
	}
	*changed = append(*changed, name+" "+ev.State.String())
}

// fillEvent adds what only the monitor knows to a link's event.
func (m *Monitor) fillEvent(l *link, ev *lsm.Event) {
	if l.target.Src.IsValid() {
		ev.SrcIP = l.target.Src.String()
	}
	ev.Device = l.target.Device
	if len(l.dsts) > 0 {
		ev.CheckIP = l.dsts[0].String()
	}
}

// flush deletes the tracked connections of ISPs that went down, except
// of those the rebuild still routes through as a last resort: their
// connections have nowhere better to go, and flushing them would cut
// every established connection of the LAN.
func (m *Monitor) flush(marks map[string]flushRequest) {
	for name, req := range marks {
		if l := m.links[name]; l != nil && l.target.Routing {
			m.log.Warn("keeping the connections of an isp judged down: it still routes as a last resort", "isp", name)
			continue
		}
		n, err := m.opts.FlushMark(req.mark, req.ipv6)
		if err != nil {
			m.log.Error("flushing connections of a dead isp", "isp", name, "err", err)
			continue
		}
		m.log.Info("flushed connections of a dead isp", "isp", name, "entries", n)
	}
}

// transition records a link's new state and runs what an lsm event runs.
func (m *Monitor) transition(name string, l *link, ev lsm.Event) {
	m.log.Warn("isp "+ev.State.String(), "isp", name, "family", l.target.family(), "previous", ev.Prev.String(),
		"loss", ev.Stats.Timeout, "window", l.window.Size(), "avg_rtt", ev.Stats.AvgRTT)
	if err := state.Write(m.opts.StateDir, name, verdict(ev.State)); err != nil {
		m.log.Error("recording state", "isp", name, "err", err)
	}
	if ev.State == lsm.Down && m.opts.FlushConntrack && l.target.Mark != 0 {
		// Flushed once the rebuild that takes the ISP out of balancing is
		// done: flushed earlier, a connection opened in between would be
		// assigned to the dead ISP again.
		m.flushPending[name] = flushRequest{l.target.Mark, l.target.IPv6}
	}
	l.metrics.changed(ev.State.String())
	if m.opts.StateDir != "" {
		if err := recordEvent(m.opts.StateDir, eventRecord(l, ev, time.Now())); err != nil {
			m.log.Error("recording the event history", "isp", name, "err", err)
		}
	}
	m.runEventScripts(ev, l.target.family())
}

func verdict(s lsm.State) state.Verdict {
	switch s {
	case lsm.Up:
		return state.Up
	case lsm.LongDown:
		return state.LongDown
	default:
		return state.Down
	}
}

func (m *Monitor) decideGroups(now time.Time) {
	for _, g := range m.opts.Groups {
		var members []lsm.State
		for _, name := range g.Members {
			if l, ok := m.links[name]; ok {
				members = append(members, l.state.State)
			}
		}
		prev, ok := m.groups[g.Name]
		if !ok {
			prev = g.Status
		}
		next, ev, changed := lsm.DecideGroup(g, prev, members, now)
		m.groups[g.Name] = next
		if changed {
			m.log.Warn("group "+next.String(), "group", g.Name)
			m.runEventScripts(ev, "")
		}
	}
}

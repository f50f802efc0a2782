package monitor

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	kn "github.com/ispbalance/ispbalance/internal/kernelnames"
	"github.com/ispbalance/ispbalance/internal/metrics"
	"github.com/ispbalance/ispbalance/internal/render"
)

// countEvery is how often the kernel's traffic counters are read: one
// iptables-save per family, a conntrack dump and the devices' statistics.
const countEvery = 10 * time.Second

// Counts is what the kernel has counted, raw: counters since the firewall
// chain or the device was made, not since the monitor started.
type Counts struct {
	// Assigned holds, by link (Target.Service), how many new connections
	// the ISP's mark chain has assigned to it.
	Assigned map[string]uint64
	// Tracked holds, by link, the tracked connections carrying its mark.
	Tracked map[string]int
	// Devices holds the statistics of the ISPs' devices, by device name.
	Devices map[string]DeviceCounts
}

// DeviceCounts are one device's statistics.
type DeviceCounts struct {
	RxBytes, TxBytes, RxPackets, TxPackets uint64
}

// Counter is a counter since the monitor started, fed with raw readings
// of a kernel counter that restarts from zero when its chain or device is
// made again.
type Counter struct {
	Total uint64
	last  uint64
	seen  bool
}

// update adds what raw grew by since the last reading; the first reading
// is the baseline. A reading below the last one means the kernel's
// counter restarted, and all of it is new.
func (c *Counter) update(raw uint64) uint64 {
	var delta uint64
	switch {
	case !c.seen:
	case raw >= c.last:
		delta = raw - c.last
	default:
		delta = raw
	}
	c.seen, c.last = true, raw
	c.Total += delta
	return delta
}

// linkCounts is what the monitor has counted of one link.
type linkCounts struct {
	assigned Counter
	tracked  int
}

// deviceTotals is what the monitor has counted of one device.
type deviceTotals struct {
	rxBytes, txBytes, rxPackets, txPackets Counter
}

// countKernel reads the kernel's counters for the targets.
func countKernel(ctx context.Context, targets []Target) (Counts, error) {
	c := Counts{Assigned: map[string]uint64{}, Tracked: map[string]int{}, Devices: map[string]DeviceCounts{}}
	var errs []string
	for _, ipv6 := range []bool{false, true} {
		byChain, byMark := map[string]string{}, map[uint32]string{}
		for _, t := range targets {
			if t.IPv6 == ipv6 && t.Mark != 0 {
				byChain[kn.MarkChain(t.base())] = t.Service
				byMark[t.Mark] = t.Service
			}
		}
		if len(byChain) == 0 {
			continue
		}
		save := "iptables-save"
		family := netlink.FAMILY_V4
		if ipv6 {
			save, family = "ip6tables-save", netlink.FAMILY_V6
		}
		out, err := exec.CommandContext(ctx, save, "-c", "-t", "mangle").Output()
		if err != nil {
			errs = append(errs, fmt.Sprintf("reading %s counters: %v", save, err))
		} else {
			for chain, n := range markCounts(out) {
				if svc, ok := byChain[chain]; ok {
					c.Assigned[svc] = n
				}
			}
		}
		flows, err := netlink.ConntrackTableList(netlink.ConntrackTable, netlink.InetFamily(family))
		if err != nil {
			errs = append(errs, fmt.Sprintf("listing tracked connections: %v", err))
		}
		for _, svc := range byMark {
			c.Tracked[svc] = 0
		}
		for _, f := range flows {
			if svc, ok := byMark[f.Mark&kn.MarkMask]; ok {
				c.Tracked[svc]++
			}
		}
	}
	for _, t := range targets {
		if t.Device == "" || !t.Present {
			continue
		}
		if _, done := c.Devices[t.Device]; done {
			continue
		}
		link, err := netlink.LinkByName(t.Device)
		if err != nil {
			errs = append(errs, fmt.Sprintf("reading statistics of %s: %v", t.Device, err))
			continue
		}
		if st := link.Attrs().Statistics; st != nil {
			c.Devices[t.Device] = DeviceCounts{RxBytes: st.RxBytes, TxBytes: st.TxBytes, RxPackets: st.RxPackets, TxPackets: st.TxPackets}
		}
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("counting traffic: %s", strings.Join(errs, "; "))
	}
	return c, nil
}

// markCounts reads iptables-save -c output and returns, by chain, the
// packet counter of the chain's MARK rule: in an ISP's mark chain that
// is how many new connections were assigned to it.
func markCounts(save []byte) map[string]uint64 {
	out := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(save))
	for sc.Scan() {
		// [123:4567] -A ISPB-MARK-CABLE -j MARK --set-xmark 0x1000000/0x3f000000
		f := strings.Fields(sc.Text())
		if len(f) < 5 || f[1] != "-A" || !strings.HasPrefix(f[2], kn.ChainPrefix+"MARK-") || f[3] != "-j" || f[4] != "MARK" {
			continue
		}
		pk, _, ok := strings.Cut(strings.Trim(f[0], "[]"), ":")
		if n, err := strconv.ParseUint(pk, 10, 64); ok && err == nil {
			out[f[2]] += n
		}
	}
	return out
}

// countResult is one background count's outcome.
type countResult struct {
	counts Counts
	err    error
}

// applyCounts adds a count to the links' and devices' totals and the
// metrics.
func (m *Monitor) applyCounts(c Counts) {
	for name, l := range m.links {
		if n, ok := c.Assigned[name]; ok {
			if d := l.counts.assigned.update(n); d > 0 {
				m.metrics.assigned.With(l.target.base(), l.target.family()).Add(float64(d))
			}
		}
		if n, ok := c.Tracked[name]; ok {
			l.counts.tracked = n
		}
	}
	for dev, dc := range c.Devices {
		t := m.devTotals[dev]
		if t == nil {
			t = &deviceTotals{}
			m.devTotals[dev] = t
		}
		isp := m.deviceISP(dev)
		for _, x := range []struct {
			c   *Counter
			raw uint64
			f   *metrics.Family
		}{{&t.rxBytes, dc.RxBytes, m.metrics.rxBytes}, {&t.txBytes, dc.TxBytes, m.metrics.txBytes},
			{&t.rxPackets, dc.RxPackets, m.metrics.rxPkts}, {&t.txPackets, dc.TxPackets, m.metrics.txPkts}} {
			if d := x.c.update(x.raw); d > 0 && isp != "" {
				x.f.With(isp).Add(float64(d))
			}
		}
	}
}

// deviceISP is the configured service whose device dev is.
func (m *Monitor) deviceISP(dev string) string {
	for _, l := range m.links {
		if l.target.Device == dev {
			return l.target.base()
		}
	}
	return ""
}

// allTraffic is the sum of every link's traffic since the monitor started,
// what shares are of.
type allTraffic struct {
	bytes, connections uint64
	counted            bool
}

func (m *Monitor) trafficTotals() allTraffic {
	var a allTraffic
	for _, t := range m.devTotals {
		a.bytes += t.rxBytes.Total + t.txBytes.Total
		a.counted = true
	}
	for _, l := range m.links {
		a.connections += l.counts.assigned.Total
		a.counted = a.counted || l.counts.assigned.seen
	}
	return a
}

// traffic is a link's traffic for the status, nil before the first count.
func (m *Monitor) traffic(l *link, all allTraffic) *render.MonitorTraffic {
	if !all.counted {
		return nil
	}
	t := &render.MonitorTraffic{Connections: l.counts.assigned.Total, Tracked: l.counts.tracked,
		ConnectionsPercent: percent(l.counts.assigned.Total, all.connections)}
	if d := m.devTotals[l.target.Device]; d != nil && !l.target.IPv6 {
		t.Bytes = d.rxBytes.Total + d.txBytes.Total
		t.BytesPercent = percent(t.Bytes, all.bytes)
	}
	return t
}

func percent(part, whole uint64) float64 {
	if whole == 0 {
		return 0
	}
	return 100 * float64(part) / float64(whole)
}

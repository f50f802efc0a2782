package plan

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/ispbalance/ispbalance/internal/config"
)

// vetGateways checks each planned ISP's gateway against the router's own
// addresses and the uplink's subnet. A gateway that is one of the router's
// addresses sends the ISP's traffic nowhere: written in balance.conf it is
// an error at its line; found by discovery (a stale route, a bad lease) it
// leaves the ISP out, as a missing gateway would, until discovery finds a
// better one. A gateway outside the subnet is planned onlink and works if
// the ISP's router answers there, but is usually a typing error, so it
// gets a warning; point-to-point links are exempt, that is how they work.
func vetGateways(cfg *config.Config, in Input, p *Plan) error {
	own := map[netip.Addr]string{} // address -> device, the first by name
	for _, dev := range slices.Sorted(maps.Keys(in.Links)) {
		l := in.Links[dev]
		if _, seen := own[l.Addr.Addr()]; l.Present && l.Addr.IsValid() && !seen {
			own[l.Addr.Addr()] = dev
		}
	}
	var kept []ISP
	for _, isp := range p.ISPs {
		if dev, mine := own[isp.Gateway]; mine {
			if s, ok := cfg.Service(isp.Name); ok && s.Gateway == isp.Gateway {
				return &config.LineError{File: cfg.Path, Line: s.Line,
					Msg: fmt.Sprintf("service %s: gateway %s is this router's own address on %s", isp.Name, isp.Gateway, dev)}
			}
			p.Skipped = append(p.Skipped, Skipped{isp.Name, isp.Device,
				fmt.Sprintf("gateway %s (from %s) is this router's own address on %s", isp.Gateway, isp.GwFrom, dev)})
			continue
		}
		l := in.Links[isp.Device]
		if onLink(isp) && !isp.PPP && !l.PointToPoint && isp.Addr.Bits() < 32 {
			isp.Warnings = append(isp.Warnings, fmt.Sprintf("gateway %s is outside %s's subnet %s; installed onlink", isp.Gateway, isp.Device, isp.Addr.Masked()))
		}
		kept = append(kept, isp)
	}
	p.ISPs = kept
	return nil
}

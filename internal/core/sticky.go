package core

import (
	"context"

	"github.com/ispbalance/ispbalance/internal/apply"
	"github.com/ispbalance/ispbalance/internal/config"
	kn "github.com/ispbalance/ispbalance/internal/kernelnames"
	"github.com/ispbalance/ispbalance/internal/render"
)

// stickyStatus says what keeps its ISP and, under sticky=source, how
// many LAN addresses each ISP holds now (reading the sets needs root).
func stickyStatus(f Facts, sets apply.IPSets) *render.StickyStatus {
	st := &render.StickyStatus{Mode: string(f.Config.Sticky)}
	if f.Config.Sticky != config.StickySource {
		return st
	}
	st.Timeout = f.Config.StickyTimeout
	if f.Plan.Sticky == nil {
		st.Problem = "no effect with mode=failover, which sends everything through one ISP"
		return st
	}
	held, err := apply.StickyHeld(context.Background(), sets)
	if err != nil {
		st.Problem = "addresses held: unknown (" + err.Error() + ")"
		return st
	}
	for _, isp := range f.Plan.ISPs {
		h := render.StickyHeld{Service: isp.Name, IPv4: held[kn.StickySet(isp.Name, false)]}
		if n, ok := held[kn.StickySet(isp.Name, true)]; ok {
			h.IPv6 = &n
		}
		st.Held = append(st.Held, h)
	}
	return st
}

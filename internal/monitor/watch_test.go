package monitor

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestWatchNamesTheNewGateway: a DHCP renewal with another gateway
// removes the old default route and adds the new one; the rebuild
// reasons say which is which, so the log does not present the old
// gateway as the news.
func TestWatchNamesTheNewGateway(t *testing.T) {
	watchedDevices.set(map[string]bool{"wan1": true})
	defer watchedDevices.set(map[string]bool{})
	m := New(Options{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	links := make(chan netlink.LinkUpdate, 4)
	addrs := make(chan netlink.AddrUpdate, 4)
	routes := make(chan netlink.RouteUpdate, 4)
	out := make(chan string, 8)
	go m.watchLoop(ctx, map[string]linkFacts{"wan1": {index: 7, present: true, up: true}}, links, addrs, routes, out, make(chan string, 8))
	route := func(typ uint16, gw string) netlink.RouteUpdate {
		return netlink.RouteUpdate{Type: typ, Route: netlink.Route{LinkIndex: 7, Table: unix.RT_TABLE_MAIN, Gw: net.ParseIP(gw)}}
	}
	routes <- route(unix.RTM_DELROUTE, "100.64.1.1")
	routes <- route(unix.RTM_NEWROUTE, "100.64.1.254")
	for _, want := range []string{"route via 100.64.1.1 on wan1 removed", "route via 100.64.1.254 on wan1 added"} {
		select {
		case got := <-out:
			if got != want {
				t.Errorf("reason %q, want %q", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no reason for %q", want)
		}
	}
}

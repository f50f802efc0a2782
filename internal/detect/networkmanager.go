package detect

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/Wifx/gonetworkmanager/v2"
	"github.com/godbus/dbus/v5"
)

// systemBusSocket is the system bus's default address; without it (and
// without DBUS_SYSTEM_BUS_ADDRESS) there is no bus to ask, and discovery
// does not wait for a dial to fail.
const systemBusSocket = "/run/dbus/system_bus_socket"

// nmDiscoveryTimeout bounds what asking NetworkManager may add to a
// discovery; the library itself has no timeouts.
const nmDiscoveryTimeout = 500 * time.Millisecond

// ErrNoNetworkManager means there is no system bus, or NetworkManager is
// not on it.
var ErrNoNetworkManager = errors.New("NetworkManager is not running on the system bus")

// NMIP4 is what NetworkManager knows about one device's IPv4 setup.
type NMIP4 struct {
	// State is the device state (100 = activated).
	State   uint32
	Gateway netip.Addr
	Addr    netip.Prefix
	// Lease is the DHCP lease time, 0 when there is no DHCP lease.
	Lease time.Duration
}

// NetworkManagerIP4 asks NetworkManager over the system bus about device
// dev: the gateway of its IPv4 configuration, or failing that the router
// of its DHCP lease (which exists before activation ends, when the
// dispatcher's dhcp4-change has no IP4_GATEWAY yet). It never activates
// NetworkManager by asking, and gives up when ctx ends.
func NetworkManagerIP4(ctx context.Context, dev string) (NMIP4, error) {
	if os.Getenv("DBUS_SYSTEM_BUS_ADDRESS") == "" {
		if _, err := os.Stat(systemBusSocket); err != nil {
			return NMIP4{}, ErrNoNetworkManager
		}
	}
	type result struct {
		ip  NMIP4
		err error
	}
	done := make(chan result, 1)
	// gonetworkmanager calls without a timeout; a hung bus costs one
	// goroutine, not the caller's time.
	go func() {
		ip, err := askNetworkManager(ctx, dev)
		done <- result{ip, err}
	}()
	select {
	case r := <-done:
		return r.ip, r.err
	case <-ctx.Done():
		return NMIP4{}, fmt.Errorf("asking NetworkManager about %s: %w", dev, ctx.Err())
	}
}

func askNetworkManager(ctx context.Context, dev string) (NMIP4, error) {
	var out NMIP4
	conn, err := dbus.SystemBus()
	if err != nil {
		return out, fmt.Errorf("%w: %v", ErrNoNetworkManager, err)
	}
	// A method call to an activatable name would start NetworkManager:
	// only ask one that already runs.
	var has bool
	if err := conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, gonetworkmanager.NetworkManagerInterface).Store(&has); err != nil {
		return out, fmt.Errorf("asking the system bus for NetworkManager: %w", err)
	}
	if !has {
		return out, ErrNoNetworkManager
	}
	nm, err := gonetworkmanager.NewNetworkManager()
	if err != nil {
		return out, fmt.Errorf("connecting to NetworkManager: %w", err)
	}
	d, err := nm.GetDeviceByIpIface(dev)
	if err != nil {
		return out, fmt.Errorf("asking NetworkManager for device %s: %w", dev, err)
	}
	st, err := d.GetPropertyState()
	if err != nil {
		return out, fmt.Errorf("reading NetworkManager state of %s: %w", dev, err)
	}
	out.State = uint32(st)
	if st <= gonetworkmanager.NmDeviceStateUnavailable {
		return out, nil // unmanaged or not ready: NetworkManager has nothing to say
	}
	cfg, err := d.GetPropertyIP4Config()
	if err != nil {
		return out, fmt.Errorf("reading NetworkManager IPv4 configuration of %s: %w", dev, err)
	}
	if cfg != nil {
		if gw, err := cfg.GetPropertyGateway(); err == nil {
			out.Gateway = parseNMAddr(gw)
		}
		if addrs, err := cfg.GetPropertyAddressData(); err == nil && len(addrs) > 0 {
			if a := parseNMAddr(addrs[0].Address); a.IsValid() && addrs[0].Prefix <= 32 {
				out.Addr = netip.PrefixFrom(a, int(addrs[0].Prefix))
			}
		}
	}
	dh, err := d.GetPropertyDHCP4Config()
	if err != nil || dh == nil {
		return out, nil
	}
	opts, err := dh.GetPropertyOptions()
	if err != nil {
		return out, nil
	}
	str := func(k string) string { s, _ := opts[k].(string); return s }
	if !out.Gateway.IsValid() {
		for _, f := range strings.Fields(str("routers")) {
			if a := parseNMAddr(f); a.IsValid() {
				out.Gateway = a
				break
			}
		}
	}
	if !out.Addr.IsValid() {
		if a := parseNMAddr(str("ip_address")); a.IsValid() {
			out.Addr = netip.PrefixFrom(a, 32)
		}
	}
	if n, err := strconv.ParseUint(str("dhcp_lease_time"), 10, 32); err == nil {
		out.Lease = time.Duration(n) * time.Second
	}
	return out, nil
}

// parseNMAddr accepts a unicast IPv4 address; anything else (including
// NetworkManager's "" or "0.0.0.0" for none) is the zero Addr.
func parseNMAddr(s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() || a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() {
		return netip.Addr{}
	}
	return a
}

// nmSource asks NetworkManager during one discovery, within one time
// budget for all devices, and stops asking once it knows there is no
// NetworkManager to ask. Discovery in another namespace (Options.Handle)
// never asks: the bus belongs to the caller's.
type nmSource struct {
	enabled bool
	ctx     context.Context
	cancel  context.CancelFunc
}

func newNMSource(enabled bool) *nmSource { return &nmSource{enabled: enabled} }

func (s *nmSource) gateway(dev string) netip.Addr {
	if !s.enabled {
		return netip.Addr{}
	}
	if s.ctx == nil {
		// The budget starts with the first question.
		s.ctx, s.cancel = context.WithTimeout(context.Background(), nmDiscoveryTimeout)
	}
	ip, err := NetworkManagerIP4(s.ctx, dev)
	if err != nil {
		if errors.Is(err, ErrNoNetworkManager) || s.ctx.Err() != nil {
			s.enabled = false
		}
		return netip.Addr{}
	}
	return ip.Gateway
}

func (s *nmSource) close() {
	if s.cancel != nil {
		s.cancel()
	}
}

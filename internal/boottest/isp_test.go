package boottest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// dhcpServer is dnsmasq serving DHCP on ISP 1's customer link.
type dhcpServer struct {
	r      *router
	cmd    *exec.Cmd
	done   chan struct{}
	log    string
	leases string
}

// startDHCP starts dnsmasq in ISP 1's namespace, handing out the router's
// lab address 100.64.1.2 with router gw, renewal after 4 s and rebinding
// after 6 s, so renewals happen within the test. The lease file is kept
// across restarts, as an ISP's server keeps it.
func (r *router) startDHCP(gw string) *dhcpServer {
	r.t.Helper()
	d := &dhcpServer{r: r, log: filepath.Join(r.dir, "dnsmasq-"+gw+".log"), leases: filepath.Join(r.dir, "dnsmasq.leases")}
	logf, err := os.Create(d.log)
	if err != nil {
		r.t.Fatal(err)
	}
	// --bind-dynamic: down0 is made again when the router reboots.
	d.cmd = exec.Command("ip", "netns", "exec", r.lab.NS("isp1"), "dnsmasq", "-k", "--interface=down0", "--bind-dynamic",
		"--dhcp-range=100.64.1.2,100.64.1.2,255.255.255.0,2m", "--dhcp-option=3,"+gw,
		"--dhcp-option=option:T1,4", "--dhcp-option=option:T2,6", "--no-resolv", "--no-hosts", "-p", "0",
		"--dhcp-authoritative", "--log-dhcp", "--log-facility=-", "--dhcp-leasefile="+d.leases,
		"--pid-file="+filepath.Join(r.dir, "dnsmasq.pid"))
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		r.t.Fatalf("starting dnsmasq: %v", err)
	}
	d.done = make(chan struct{})
	go func() { d.cmd.Wait(); logf.Close(); close(d.done) }()
	r.t.Cleanup(d.stop)
	return d
}

func (d *dhcpServer) stop() {
	select {
	case <-d.done:
		return
	default:
	}
	syscall.Kill(-d.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
	}
}

// acks counts the leases dnsmasq acknowledged so far.
func (d *dhcpServer) acks() int {
	data, _ := os.ReadFile(d.log)
	return strings.Count(string(data), "DHCPACK(down0)")
}

// moveGateway renumbers ISP 1's router from old to new on its customer
// link, as an ISP replacing its router does: the old address is gone at
// once, and the DHCP server announces the new router from now on.
func (r *router) moveGateway(d *dhcpServer, old, new string) *dhcpServer {
	r.t.Helper()
	d.stop()
	if _, err := r.lab.Exec("isp1", "ip", "addr", "del", old+"/24", "dev", "down0"); err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.lab.Exec("isp1", "ip", "addr", "add", new+"/24", "dev", "down0"); err != nil {
		r.t.Fatal(err)
	}
	return r.startDHCP(new)
}

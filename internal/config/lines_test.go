package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestGatewayNeverANextHop(t *testing.T) {
	for gw, want := range map[string]string{
		"127.0.0.1":       "gateway 127.0.0.1 is a loopback address",
		"127.8.9.10":      "gateway 127.8.9.10 is a loopback address",
		"224.0.0.1":       "gateway 224.0.0.1 is a multicast address",
		"0.0.0.0":         "gateway 0.0.0.0 is the unspecified address",
		"255.255.255.255": "gateway 255.255.255.255 is the broadcast address",
	} {
		src := "# uplinks\nLAN eth1 lan\nA eth0 isp default 1 " + gw + "\n"
		_, err := Parse("/etc/network/balance.conf", strings.NewReader(src))
		if err == nil || !strings.HasPrefix(err.Error(), "/etc/network/balance.conf:3: "+want) {
			t.Errorf("gateway %s: got %v, want /etc/network/balance.conf:3: %s...", gw, err, want)
		}
	}
	for _, gw := range []string{"192.0.2.1", "169.254.1.1", "100.64.1.255"} {
		if _, err := Parse("b", strings.NewReader("A eth0 isp default 1 "+gw+"\n")); err != nil {
			t.Errorf("gateway %s refused: %v", gw, err)
		}
	}
}

func TestLongLines(t *testing.T) {
	long := "# " + strings.Repeat("x", maxLineBytes)
	_, err := Parse("/etc/network/balance.conf", strings.NewReader("A eth0 isp\n\n"+long+"\nB eth1 isp\n"))
	var le *LineError
	want := fmt.Sprintf("line too long (%d bytes, at most %d)", len(long), maxLineBytes)
	if !errors.As(err, &le) || le.Line != 3 || le.Msg != want {
		t.Errorf("got %v, want /etc/network/balance.conf:3: %s", err, want)
	}
	// The last line, without a newline, is measured as well.
	if _, err := Parse("b", strings.NewReader("A eth0 isp\n"+long)); !errors.As(err, &le) || le.Line != 2 {
		t.Errorf("long last line: got %v, want line 2", err)
	}
	// Up to the limit, a line is read like any other; CRLF endings too.
	atLimit := "# " + strings.Repeat("y", maxLineBytes-2)
	c, err := Parse("b", strings.NewReader("A eth0 isp\r\n"+atLimit+"\r\nB eth1 isp default 2"))
	if err != nil {
		t.Fatalf("a line of %d bytes: %v", len(atLimit), err)
	}
	if len(c.Services) != 2 || c.Services[0].Line != 1 || c.Services[1].Line != 3 || c.Services[1].Weight != 2 {
		t.Errorf("services %+v", c.Services)
	}
}

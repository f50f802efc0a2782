package lsm

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestScriptArgs(t *testing.T) {
	when := time.Unix(1795459092, 0)
	stats := Stats{Replied: 1, Waiting: 2, Timeout: 3, ReplyLate: 4, ConsRcvd: 5, ConsWait: 6, ConsMiss: 7, AvgRTT: 8*time.Millisecond + 1500*time.Nanosecond, Used: 9}
	conn := Event{
		Name: "DEAD", State: Down, Prev: Unknown, CheckIP: "192.0.2.99", Device: "eth0", Email: "root",
		Stats: stats, SrcIP: "192.0.2.2", Time: when,
	}
	tests := []struct {
		name string
		ev   Event
		want []string
	}{
		{
			name: "connection",
			ev:   conn,
			//      $1      $2      $3            $4      $5      $6   $7   $8   $9   $10  $11  $12  $13     $14          $15        $16
			want: []string{"down", "DEAD", "192.0.2.99", "eth0", "root", "1", "2", "3", "4", "5", "6", "7", "8001", "192.0.2.2", "unknown", "1795459092"},
		},
		{
			name: "unknown source, IPv4 target",
			ev:   func() Event { e := conn; e.SrcIP = ""; return e }(),
			want: []string{"down", "DEAD", "192.0.2.99", "eth0", "root", "1", "2", "3", "4", "5", "6", "7", "8001", "0.0.0.0", "unknown", "1795459092"},
		},
		{
			name: "unknown source, IPv6 target; empty device and e-mail",
			ev:   Event{Name: "V6", State: Up, Prev: Down, CheckIP: "2001:db8::1", Time: when},
			want: []string{"up", "V6", "2001:db8::1", "", "", "0", "0", "0", "0", "0", "0", "0", "0", "::", "down", "1795459092"},
		},
		{
			name: "long_down",
			ev:   Event{Name: "FLAP", State: LongDown, Prev: Down, CheckIP: "127.0.0.5", Device: "lo", SrcIP: "127.0.0.1", Time: when},
			want: []string{"long_down", "FLAP", "127.0.0.5", "lo", "", "0", "0", "0", "0", "0", "0", "0", "0", "127.0.0.1", "down", "1795459092"},
		},
		{
			// Groups have no target, source or counters, whatever the
			// event holds.
			name: "group",
			ev:   Event{Group: true, Name: "GRP", State: Up, Prev: Unknown, CheckIP: "x", Email: "root", Stats: stats, SrcIP: "y", Time: when},
			want: []string{"up", "GRP", "", "", "root", "0", "0", "0", "0", "0", "0", "0", "0", "", "unknown", "1795459092"},
		},
		{
			name: "no time",
			ev:   Event{Name: "X", State: Up, Prev: Down, CheckIP: "192.0.2.1"},
			want: []string{"up", "X", "192.0.2.1", "", "", "0", "0", "0", "0", "0", "0", "0", "0", "0.0.0.0", "down", "0"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ScriptArgs(tt.ev)
			if len(got) != 16 {
				t.Fatalf("%d arguments, want 16", len(got))
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("$%d = %q, want %q", i+1, got[i], tt.want[i])
				}
			}
		})
	}
}

// Recovery from long_down runs four scripts; the long-down ones get
// long_down_email as $5, the others warn_email.
func TestEventCommands(t *testing.T) {
	s := testSettings()
	_, ev, _ := NewDecider(s).decide(LinkState{State: LongDown, DownAt: t0}, Stats{ConsRcvd: 10}, t0.Add(time.Hour))
	ev.SrcIP = "192.0.2.2"
	var got [][3]string
	for _, c := range ev.Commands() {
		got = append(got, [3]string{c.Path, c.Queue, c.Args[4]})
		if c.Args[0] != "up" || c.Args[14] != "long_down" || c.Args[13] != "192.0.2.2" {
			t.Errorf("%s: args %q, want up … 192.0.2.2 long_down …", c.Path, c.Args)
		}
	}
	want := [][3]string{{"/ld-ev", "q", "noc"}, {"/ld-notify", "", "noc"}, {"/ev", "q", "root"}, {"/notify", "", "root"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("commands (-want +got):\n%s", diff)
	}
}

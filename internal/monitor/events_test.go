package monitor

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ispbalance/ispbalance/internal/render"
)

func TestEventHistoryBounded(t *testing.T) {
	dir := t.TempDir()
	if ev, err := ReadEvents(dir); err != nil || ev != nil {
		t.Fatalf("before any event: %v, %v", ev, err)
	}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := range maxEvents + 20 {
		if err := recordEvent(dir, render.MonitorEvent{Time: t0.Add(time.Duration(i) * time.Second), ISP: fmt.Sprint("ISP", i)}); err != nil {
			t.Fatal(err)
		}
	}
	// A line cut short by a crash is passed over.
	f, err := os.OpenFile(EventsPath(dir), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"time":"2026-`)
	f.Close()
	ev, err := ReadEvents(dir)
	if err != nil || len(ev) != maxEvents || ev[0].ISP != "ISP20" || ev[len(ev)-1].ISP != fmt.Sprint("ISP", maxEvents+19) {
		t.Fatalf("got %d events (%v), want the newest %d, oldest first", len(ev), err, maxEvents)
	}
	if err := recordEvent(dir, render.MonitorEvent{ISP: "after"}); err != nil {
		t.Fatal(err)
	}
	if ev, _ := ReadEvents(dir); len(ev) != maxEvents || ev[len(ev)-1].ISP != "after" {
		t.Errorf("after the cut line: %d events, last %+v", len(ev), ev[len(ev)-1])
	}
}

// TestLoopRecordsEvents: the loop records each state change with its
// reason and figures.
func TestLoopRecordsEvents(t *testing.T) {
	r := startLoop(t, nil)
	r.journal.waitFor(t, "both ISPs up", func(e []string) bool { return index(e, "rebuild verdict on [ISP1 up ISP2 up]") >= 0 })
	r.net.setAlive(src1, false)
	r.journal.waitFor(t, "ISP1 down", func(e []string) bool { return index(e, "rebuild verdict on [ISP1 down]") >= 0 })
	ev, err := ReadEvents(r.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	var down *render.MonitorEvent
	for i := range ev {
		if ev[i].ISP == "ISP1" && ev[i].To == "down" {
			down = &ev[i]
		}
	}
	if len(ev) < 3 || down == nil {
		t.Fatalf("events: %+v", ev)
	}
	if down.From != "up" || down.Family != "ipv4" || down.Gateway != "100.64.1.1" || down.LossPercent == 0 ||
		!strings.Contains(down.Reason, "probes lost") || time.Since(down.Time) > time.Minute {
		t.Errorf("ISP1's down event: %+v", *down)
	}
	var table strings.Builder
	render.Events(&table, ev)
	if !strings.Contains(table.String(), "ISP1  up -> down") {
		t.Errorf("table:\n%s", table.String())
	}
}

package models

import (
	"bufio"
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

func TestWriteStats(t *testing.T) {
	s := newStats(nil)
	var live int64 = 7
	s.Gauge("threads_live", func() int64 { return live })
	s.opened()
	s.opened()
	s.done()
	// stop waits for the writer goroutine, so reading buf after it is race-free.
	var buf bytes.Buffer
	stop := WriteStats(&buf, s, 10*time.Millisecond)
	time.Sleep(55 * time.Millisecond)
	stop()
	stop() // idempotent

	var lines []StatsLine
	sc := bufio.NewScanner(bytes.NewReader(buf.Bytes()))
	for sc.Scan() {
		var l StatsLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	if len(lines) < 3 {
		t.Fatalf("got %d lines in 55ms at 10ms intervals, want at least 3", len(lines))
	}
	last := lines[len(lines)-1]
	want := StatsSnapshot{Counts: Counts{Accepted: 2, Active: 1, Closed: 1}, Gauges: map[string]int64{"threads_live": 7}}
	if last.Accepted != want.Accepted || last.Active != want.Active || last.Closed != want.Closed || last.Gauges["threads_live"] != 7 {
		t.Fatalf("last line %+v, want %+v", last.StatsSnapshot, want)
	}
	for i := 1; i < len(lines); i++ {
		if lines[i].ElapsedMS < lines[i-1].ElapsedMS {
			t.Fatalf("elapsed went backwards: %d then %d", lines[i-1].ElapsedMS, lines[i].ElapsedMS)
		}
	}
}

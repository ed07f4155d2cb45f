package bench

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestIdleSweepRuns runs a tiny idle sweep through the real loadgen: poll and
// epoll-et, 10 busy connections beside 0 and 2,000 idle ones. It plans, runs,
// resumes (nothing left to run) and draws; and it shows the curve's direction:
// poll's server CPU per request rises with the idle connections by a clearly
// larger factor than epoll-et's (ratios measured in one run).
func TestIdleSweepRuns(t *testing.T) {
	bin := buildTools(t, "idle")
	sp := Spec{Models: []string{"poll", "epoll-et"}, Conns: []int{10}, Idles: []int{0, 2000}, Heartbeat: time.Second,
		Protos: []string{"echo"}, Works: []string{"none"}, Reconnect: "off", Repeat: 1, Duration: time.Second, Warmup: 200 * time.Millisecond, Size: 64}
	store := Store{Dir: t.TempDir()}
	r := &Runner{Spec: sp, Store: store, Loadgen: filepath.Join(bin, "loadgen")}
	n, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n.Planned != 4 || n.OK != 4 {
		d, _ := store.Load()
		t.Fatalf("counts %+v, want 4 ok; records %+v", n, d.Records)
	}
	if n, err := r.Run(context.Background()); err != nil || n.Resumed != 4 || n.OK != 0 {
		t.Errorf("rerun: %+v, %v: want every trial resumed", n, err)
	}
	d, err := store.Load()
	if err != nil {
		t.Fatal(err)
	}
	s := Summarise(d)
	g := Group{Proto: "echo", Work: "none"}
	rise := map[string]float64{}
	for _, m := range sp.Models {
		a, b := s.CellAt(g, m, 10, 0), s.CellAt(g, m, 10, 2000)
		if a.CPUPerReqUS <= 0 || b.CPUPerReqUS <= 0 {
			t.Fatalf("%s: CPU per request %v and %v", m, a.CPUPerReqUS, b.CPUPerReqUS)
		}
		if h := b.Heartbeats; h == nil || h.EstablishedMin != 2000 || h.Answered == 0 || h.ErrorsTotal != 0 {
			t.Errorf("%s at 2000 idle: heartbeats %+v", m, h)
		}
		rise[m] = b.CPUPerReqUS / a.CPUPerReqUS
		t.Logf("%s: %.1f µs per request with 0 idle, %.1f with 2000 (×%.2f)", m, a.CPUPerReqUS, b.CPUPerReqUS, rise[m])
	}
	// poll walks 2,010 descriptors a pass: about 10 ready ones, 2,000 idle. A
	// generous margin: its rise must be 1.5 times epoll-et's.
	if rise["poll"] < 1.5*rise["epoll-et"] {
		t.Errorf("poll's CPU per request rose ×%.2f with 2000 idle connections, epoll-et's ×%.2f: want poll's clearly steeper", rise["poll"], rise["epoll-et"])
	}
	dir := t.TempDir()
	if _, err := WriteAll(d, store.Dir, dir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"idle-cpu-echo-c10.png", "idle-memory-echo-c10.png", "idle-heartbeat-echo-c10.png"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	md, _ := os.ReadFile(filepath.Join(store.Dir, "REPORT.md"))
	if !strings.Contains(string(md), "### Idle connections: the C10K experiment") {
		t.Error("REPORT.md has no idle section")
	}
}

package bench

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPlanInterleavesRepetitions(t *testing.T) {
	sp := Spec{Models: []string{"a", "b", "c"}, Conns: []int{1, 10}, Protos: []string{"echo"}, Works: []string{"none"},
		Reconnect: "off", Repeat: 2, Duration: time.Second, Size: 64, Timeline: 3 * time.Second, TimelineConns: 10}
	var got []string
	for _, tr := range sp.Plan() {
		got = append(got, tr.Key())
	}
	want := []string{
		"echo/c1/a/rep1", "echo/c1/b/rep1", "echo/c1/c/rep1", "echo/c10/a/rep1", "echo/c10/b/rep1", "echo/c10/c/rep1",
		"echo/c1/a/rep2", "echo/c1/b/rep2", "echo/c1/c/rep2", "echo/c10/a/rep2", "echo/c10/b/rep2", "echo/c10/c/rep2",
		"timeline/echo-c10/a/rep1", "timeline/echo-c10/b/rep1", "timeline/echo-c10/c/rep1",
	}
	if !slices.Equal(got, want) {
		t.Errorf("plan:\n got %q\nwant %q", got, want)
	}
	// No model runs twice in a row within the sweep: A B C A B C, not A A B B.
	plan := sp.Plan()
	for i := 1; i < 12; i++ {
		if plan[i].Cell.Model == plan[i-1].Cell.Model {
			t.Errorf("trials %d and %d both run %s", i-1, i, plan[i].Cell.Model)
		}
	}
}

// Counted repetitions follow the timed ones, in the same order, before the
// timelines; only the timed trials of such a spec leave syscalls uncounted,
// and a spec without them counts everything everywhere.
func TestPlanCountedRepetitions(t *testing.T) {
	sp := Spec{Models: []string{"a", "b"}, Conns: []int{1}, Protos: []string{"echo"}, Works: []string{"none"},
		Reconnect: "off", Repeat: 2, CountReps: 1, Duration: time.Second, Size: 64, Timeline: 3 * time.Second, TimelineConns: 1}
	var got, args []string
	for _, tr := range sp.Plan() {
		got = append(got, tr.Key())
		args = append(args, strings.Join(sp.CountArgs(tr), " "))
	}
	want := []string{"echo/c1/a/rep1", "echo/c1/b/rep1", "echo/c1/a/rep2", "echo/c1/b/rep2", "echo/c1/a/count1", "echo/c1/b/count1",
		"timeline/echo-c1/a/rep1", "timeline/echo-c1/b/rep1"}
	if !slices.Equal(got, want) {
		t.Errorf("plan:\n got %q\nwant %q", got, want)
	}
	off := "-count-syscalls=false"
	if wantArgs := []string{off, off, off, off, "", "", off, off}; !slices.Equal(args, wantArgs) {
		t.Errorf("count args %q, want %q", args, wantArgs)
	}
	if l := (Trial{Rep: 1, Counted: true}).Label(); l != "count 1" {
		t.Errorf("label %q", l)
	}
	sp.CountReps = 0
	for _, tr := range sp.Plan() {
		if tr.Counted || len(sp.CountArgs(tr)) > 0 {
			t.Errorf("without counted repetitions: %s counted=%v args %q", tr.Key(), tr.Counted, sp.CountArgs(tr))
		}
	}
	if why := sp.SameMeasurement(Spec{Repeat: 2, CountReps: 1, Duration: time.Second, Size: 64, Timeline: 3 * time.Second}); !strings.Contains(why, "counted repetitions 0 vs 1") {
		t.Errorf("a spec counting apart mixed with one counting in every repetition: %q", why)
	}
	sp.CountReps = -1
	if err := sp.Validate([]string{"a", "b"}); err == nil || !strings.Contains(err.Error(), "counted repetitions must not be negative") {
		t.Errorf("CountReps -1: %v", err)
	}
}

// Open-loop steps follow each repetition's closed-loop cells (they are
// calibrated by them), persistent connections only and not in counted
// repetitions; a search is one trial per model after the repetitions.
func TestPlanCurve(t *testing.T) {
	sp := Spec{Models: []string{"a", "b"}, Conns: []int{10}, Protos: []string{"echo"}, Works: []string{"none"},
		Reconnect: "both", Repeat: 1, CountReps: 1, Duration: time.Second, Size: 64,
		Loads: []float64{0.5, 1.1}, Rates: []float64{2000}, Arrival: "exp", Search: "p99<=1ms"}
	if err := sp.Validate([]string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tr := range sp.Plan() {
		got = append(got, tr.Key())
	}
	want := []string{"echo/c10/a/rep1", "echo/c10/b/rep1",
		"echo/c10/load0.5/a/rep1", "echo/c10/load0.5/b/rep1", "echo/c10/load1.1/a/rep1", "echo/c10/load1.1/b/rep1",
		"echo/c10/r2000/a/rep1", "echo/c10/r2000/b/rep1",
		"echo-reconnect/c10/a/rep1", "echo-reconnect/c10/b/rep1",
		"echo/c10/a/count1", "echo/c10/b/count1", "echo-reconnect/c10/a/count1", "echo-reconnect/c10/b/count1",
		"echo/c10/search/a/rep1", "echo/c10/search/b/rep1"}
	if !slices.Equal(got, want) {
		t.Errorf("plan:\n got %q\nwant %q", got, want)
	}
	c := Cell{Model: "a", Proto: "echo", Work: "none", Conns: 10, Load: 0.5}
	if cal := c.Calibration(); cal.Key() != "echo/c10/a" || !c.Open() || cal.Open() {
		t.Errorf("calibration of %s: %s", c.Key(), cal.Key())
	}
	if n := sp.SearchSteps(); n != 3*(1+5) {
		t.Errorf("search steps %d, want 18 (3 rounds of the peak and 5 halvings to 5%%)", n)
	}
	for _, bad := range []struct {
		mod  func(*Spec)
		want string
	}{
		{func(s *Spec) { s.Loads = []float64{0} }, "load 0"},
		{func(s *Spec) { s.Rates = []float64{-1} }, "rate -1"},
		{func(s *Spec) { s.Arrival = "burst" }, `arrival "burst"`},
		{func(s *Spec) { s.Search = "p99<1" }, "want pN<=DURATION"},
	} {
		s := sp
		bad.mod(&s)
		if err := s.Validate([]string{"a", "b"}); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%+v: %v, want %q", s, err, bad.want)
		}
	}
}

func TestGroupsOfFullPreset(t *testing.T) {
	sp := Presets["full"]
	var got []string
	for _, g := range sp.Groups() {
		got = append(got, g.Key())
	}
	// Work is an rpc feature; reconnect cells run without work; udp-echo has
	// neither, a group per batch instead.
	want := []string{"echo", "echo-reconnect", "rpc", "rpc-reconnect", "rpc-sleep-1ms", "udp-echo", "udp-echo-batch32"}
	if !slices.Equal(got, want) {
		t.Errorf("groups %q, want %q", got, want)
	}
	if g := (Group{Proto: "rpc", Work: "sleep:1ms"}); g.String() != "rpc, work sleep:1ms" {
		t.Errorf("String = %q", g.String())
	}
	if g := (Group{Proto: "udp-echo", Work: "none", Batch: 32}); g.String() != "udp-echo, batch 32" {
		t.Errorf("String = %q", g.String())
	}
}

// TestDatagramCells: a udp-echo cell carries its batch to loadgen (which
// passes it to the server), and the cells of a model or peer that serves
// connections only are skipped with the reason.
func TestDatagramCells(t *testing.T) {
	sp := Presets["udp"]
	sp.Models = []string{"epoll-et", "fork", "peer:cepoll"}
	var batches []int
	for _, tr := range sp.Plan() {
		if !slices.Contains(batches, tr.Cell.Batch) {
			batches = append(batches, tr.Cell.Batch)
		}
		args := strings.Join(sp.loadArgs(tr.Cell, "x.json"), " ")
		if !strings.Contains(args, "-timeout 1s") {
			t.Errorf("%s: loadgen args %q: want the preset's -timeout 1s", tr.Cell, args)
		}
		if !strings.Contains(args, "-proto udp-echo ") || !strings.Contains(args, fmt.Sprintf("-batch %d", tr.Cell.Batch)) {
			t.Errorf("%s: loadgen args %q: want -proto udp-echo and -batch %d", tr.Cell, args, tr.Cell.Batch)
		}
		skip := DefaultSkip(tr.Cell)
		switch tr.Cell.Model {
		case "epoll-et":
			if skip != "" {
				t.Errorf("%s skipped: %s", tr.Cell, skip)
			}
		case "fork":
			if !strings.Contains(skip, "does not serve udp-echo") || !strings.Contains(skip, "connection") {
				t.Errorf("%s: skip %q, want the model's reason", tr.Cell, skip)
			}
		case "peer:cepoll":
			if !strings.Contains(skip, "serves TCP only") {
				t.Errorf("%s: skip %q, want TCP only", tr.Cell, skip)
			}
		}
	}
	if !slices.Equal(batches, []int{1, 32}) {
		t.Errorf("batches planned %v, want [1 32]", batches)
	}
	sp.Batches = []int{0}
	if err := sp.Validate([]string{"epoll-et", "fork"}); err == nil || !strings.Contains(err.Error(), "batch 0") {
		t.Errorf("batch 0: %v", err)
	}
	sp.Batches, sp.Protos = []int{4}, []string{"echo"}
	if err := sp.Validate([]string{"epoll-et", "fork"}); err == nil || !strings.Contains(err.Error(), "without the udp-echo protocol") {
		t.Errorf("batch without udp-echo: %v", err)
	}
}

func TestPresetsAreValid(t *testing.T) {
	known := []string{"epoll-et", "poll"}
	for name, sp := range Presets {
		sp.Models = known
		sp.ResolveIdles(MaxIdle(20000, 10, 512))
		if err := sp.Validate(known); err != nil {
			t.Errorf("preset %s: %v", name, err)
		}
		if sp.Repeat < 3 {
			t.Errorf("preset %s: %d repetitions, want at least 3", name, sp.Repeat)
		}
	}
	if Presets["full"].Repeat < 5 || slices.Max(Presets["full"].Conns) < 10000 {
		t.Error("full preset: want ≥ 5 repetitions and 10,000 connections")
	}
	// An unresolved "max" is not a number of connections.
	if err := Presets["scale"].Validate([]string{"select", "poll", "epoll-lt", "epoll-et", "reactor", "multireactor", "prefork", "goroutine", "threadpool"}); err == nil || !strings.Contains(err.Error(), "idle connections -1") {
		t.Errorf("scale preset with max unresolved: %v", err)
	}
}

// TestIdleSweep: the idle dimension — keys, plan order, loadgen's arguments,
// the descriptor ceiling "max" resolves to.
func TestIdleSweep(t *testing.T) {
	for _, tt := range []struct {
		nofile      uint64
		conns, want int
	}{{20000, 10, 19478}, {1 << 20, 10, 100000}, {600, 10, 78}, {100, 10, 0}} {
		if got := MaxIdle(tt.nofile, tt.conns, 512); got != tt.want {
			t.Errorf("MaxIdle(%d, %d) = %d, want %d", tt.nofile, tt.conns, got, tt.want)
		}
	}
	sp := Spec{Models: []string{"poll", "epoll-et"}, Conns: []int{10}, Idles: []int{ScaleMax, 1000, 0, 1000}, Protos: []string{"echo"}, Works: []string{"none"},
		Reconnect: "both", Repeat: 1, Duration: time.Second, Size: 64, Heartbeat: 2 * time.Second}
	sp.ResolveIdles(5000)
	if !slices.Equal(sp.Idles, []int{0, 1000, 5000}) {
		t.Fatalf("resolved idles %v", sp.Idles)
	}
	var keys []string
	for _, tr := range sp.Plan() {
		keys = append(keys, tr.Cell.Key())
	}
	want := []string{"echo/c10/poll", "echo/c10/epoll-et", "echo/c10/i1000/poll", "echo/c10/i1000/epoll-et", "echo/c10/i5000/poll", "echo/c10/i5000/epoll-et",
		"echo-reconnect/c10/poll", "echo-reconnect/c10/epoll-et"}
	if !slices.Equal(keys, want) {
		t.Errorf("plan %q\nwant %q", keys, want)
	}
	args := strings.Join(sp.Args(Cell{Model: "poll", Proto: "echo", Work: "none", Conns: 10, Idle: 5000}, "x.json"), " ")
	if !strings.Contains(args, " -idle 5000 -heartbeat 2s ") {
		t.Errorf("args %s: want -idle 5000 -heartbeat 2s", args)
	}
	if c := (Cell{Model: "poll", Proto: "echo", Conns: 10, Idle: 5000}); c.String() != "poll echo c=10 idle=5000" {
		t.Errorf("cell string %q", c.String())
	}
}

func TestValidate(t *testing.T) {
	known := []string{"epoll-et"}
	good := Spec{Models: known, Conns: []int{1}, Protos: []string{"echo"}, Works: []string{"none"}, Reconnect: "off", Repeat: 1, Duration: time.Second, Size: 1}
	if err := good.Validate(known); err != nil {
		t.Fatalf("good spec: %v", err)
	}
	withPeers := good
	withPeers.Models = []string{"epoll-et", "peer:cepoll", "peer:nginx"}
	withPeers.Protos, withPeers.Path, withPeers.File = []string{"echo", "http", "file"}, "/index.html", "64k.bin"
	if err := withPeers.Validate(known); err != nil {
		t.Errorf("peers, http and file: %v", err)
	}
	for name, mut := range map[string]func(*Spec){
		"unknown model": func(s *Spec) { s.Models = []string{"nope"} },
		"no conns":      func(s *Spec) { s.Conns = nil },
		"zero conns":    func(s *Spec) { s.Conns = []int{0} },
		"bad proto":     func(s *Spec) { s.Protos = []string{"gopher"} },
		"unknown peer":  func(s *Spec) { s.Models = []string{"peer:apache"} },
		"path no http":  func(s *Spec) { s.Path = "/index.html" },
		"file no file":  func(s *Spec) { s.File = "1k.bin" },
		"relative path": func(s *Spec) { s.Protos, s.Path = []string{"http"}, "index.html" },
		"bad work":      func(s *Spec) { s.Works = []string{"spin"} },
		"bad reconnect": func(s *Spec) { s.Reconnect = "maybe" },
		"no repeat":     func(s *Spec) { s.Repeat = 0 },
		"echo only with work": func(s *Spec) {
			s.Works = []string{"sleep:1ms"}
		},
	} {
		s := good
		mut(&s)
		if err := s.Validate(known); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestArgs(t *testing.T) {
	sp := Spec{Duration: 2 * time.Second, Warmup: 500 * time.Millisecond, Size: 64, Timeline: 6 * time.Second}
	got := strings.Join(sp.Args(Cell{Model: "poll", Proto: "rpc", Work: "sleep:1ms", Reconnect: true, Conns: 10}, "x.json"), " ")
	want := "-model poll -proto rpc -c 10 -d 2s -warmup 500ms -size 64 -q -o x.json -reconnect -server-arg=-work=sleep:1ms"
	if got != want {
		t.Errorf("args\n got %s\nwant %s", got, want)
	}
	got = strings.Join(sp.Args(Cell{Model: "poll", Proto: "echo", Work: "none", Conns: 100, Timeline: true}, "y.json"), " ")
	if !strings.Contains(got, "-d 6s") || strings.Contains(got, "-work") || strings.Contains(got, "-timeline-step") {
		t.Errorf("timeline args %s: want -d 6s and no work, no timeline step", got)
	}
	// The gate's bound goes to every trial, the timeline's step to the timeline's.
	sp.SteadyTimeout, sp.TimelineStep = time.Minute, 100*time.Millisecond
	got = strings.Join(sp.Args(Cell{Model: "poll", Proto: "echo", Work: "none", Conns: 100, Timeline: true}, "y.json"), " ")
	if !strings.Contains(got, "-steady-timeout 1m0s -timeline-step 100ms") {
		t.Errorf("timeline args %s: want -steady-timeout 1m0s -timeline-step 100ms", got)
	}
	got = strings.Join(sp.Args(Cell{Model: "poll", Proto: "echo", Work: "none", Conns: 100}, "z.json"), " ")
	if !strings.Contains(got, "-steady-timeout 1m0s") || strings.Contains(got, "-timeline-step") {
		t.Errorf("sweep args %s: want -steady-timeout and no -timeline-step", got)
	}
}

func TestPeerArgs(t *testing.T) {
	sp := Spec{Duration: time.Second, Warmup: 300 * time.Millisecond, Size: 64, Path: "/index.html", File: "64k.bin"}
	got := strings.Join(sp.PeerArgs(Cell{Model: "peer:nginx", Proto: "http", Work: "none", Conns: 10}, "x.json", "127.0.0.1:4000", 77, "/sys/fs/cgroup/x", []int{0}, []int{1, 2}), " ")
	want := "-addr 127.0.0.1:4000 -server-pid 77 -server-cgroup /sys/fs/cgroup/x -server-cpus 0 -client-cpus 1-2 -proto http -c 10 -d 1s -warmup 300ms -path /index.html -q -o x.json"
	if got != want {
		t.Errorf("peer args\n got %s\nwant %s", got, want)
	}
	// A model's file cell: the file instead of a payload size.
	got = strings.Join(sp.Args(Cell{Model: "poll", Proto: "file", Work: "none", Conns: 1}, "y.json"), " ")
	if want := "-model poll -proto file -c 1 -d 1s -warmup 300ms -file 64k.bin -q -o y.json"; got != want {
		t.Errorf("file args\n got %s\nwant %s", got, want)
	}
}

func TestPeerSkip(t *testing.T) {
	for _, tt := range []struct {
		cell Cell
		want string
	}{
		{Cell{Model: "peer:cepoll", Proto: "echo", Work: "none"}, ""},
		{Cell{Model: "peer:cepoll", Proto: "rpc", Work: "none", Reconnect: true}, ""},
		{Cell{Model: "peer:cepoll", Proto: "http", Work: "none"}, "peer:cepoll does not speak http (it serves echo, rpc)"},
		{Cell{Model: "peer:nginx", Proto: "echo", Work: "none"}, "peer:nginx does not speak echo (it serves http)"},
		{Cell{Model: "peer:cepoll", Proto: "rpc", Work: "sleep:1ms"}, "peer:cepoll has no per-request work (work sleep:1ms is a flag of concbench's server)"},
		{Cell{Model: "epoll-et", Proto: "http", Work: "none"}, ""},
	} {
		if got := PeerSkip(tt.cell); got != tt.want {
			t.Errorf("PeerSkip(%s) = %q, want %q", tt.cell, got, tt.want)
		}
	}
}

func TestExpandModels(t *testing.T) {
	got := ExpandModels([]string{"all", "peer:cepoll", "poll"}, []string{"epoll-et", "poll"})
	if want := []string{"epoll-et", "poll", "peer:cepoll"}; !slices.Equal(got, want) {
		t.Errorf("ExpandModels = %q, want %q", got, want)
	}
	for _, name := range []string{"quick", "full"} {
		if q := Presets[name].Models; !slices.Equal(q, []string{"all", "peer:cepoll", "peer:uring", "peer:libevent"}) {
			t.Errorf("%s preset models %q: want every model and the C peers", name, q)
		}
	}
	h := Presets["http"]
	if !slices.Contains(h.Models, "peer:nginx") || !slices.Equal(h.Protos, []string{"http"}) || h.Path != "/index.html" || !slices.Equal(h.Conns, []int{10, 100}) {
		t.Errorf("http preset %+v", h)
	}
	if err := h.Validate([]string{"epoll-et", "reactor", "goroutine", "multireactor"}); err != nil {
		t.Errorf("http preset with its own models: %v", err)
	}
}

func TestSameMeasurement(t *testing.T) {
	a := Presets["quick"]
	if why := a.SameMeasurement(a); why != "" {
		t.Errorf("same spec: %q", why)
	}
	b := a
	b.Duration = time.Minute
	b.Models = []string{"other"} // the matrix may change; the measurement may not
	if why := a.SameMeasurement(b); !strings.Contains(why, "duration") {
		t.Errorf("different duration: %q", why)
	}
	c := Presets["http"]
	c.Path = "/1m.bin"
	if why := Presets["http"].SameMeasurement(c); !strings.Contains(why, "path") {
		t.Errorf("different path: %q", why)
	}
}

func TestParse(t *testing.T) {
	if got, err := ParseInts("1, 10,100,"); err != nil || !slices.Equal(got, []int{1, 10, 100}) {
		t.Errorf("ParseInts = %v, %v", got, err)
	}
	if _, err := ParseInts("1,x"); err == nil {
		t.Error("ParseInts(1,x): no error")
	}
	if got := ParseList(" a,,b "); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("ParseList = %q", got)
	}
}

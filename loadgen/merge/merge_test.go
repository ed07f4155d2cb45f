package merge_test

import (
	"bytes"
	"errors"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"concbench/internal/result"
	"concbench/loadgen"
	"concbench/loadgen/merge"
	"concbench/loadgen/trial"
)

// base is the literal results' clock origin: 2025-01-02 03:04:05 UTC.
var base = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()

const step = 100 * time.Millisecond // the literal results' timeline step

// spec describes one literal agent's result.
type spec struct {
	name      string
	conns     int
	rate      float64 // open loop when above 0
	seed      uint64  // of the values recorded
	n         int     // latencies recorded (its requests)
	loadStart time.Duration
	wait      time.Duration // from the load's start to the window's
	seconds   time.Duration // the window's length
	timeline  []result.Second
	errors    map[string]int64
	idle      int // idle connections, each with 10 heartbeats
}

// agent is a literal result and the values recorded into its histograms.
type agent struct {
	run                      *result.Run
	lat, unc, lag, conn, hbs []int64
}

// histogram records values into a histogram of loadgen's geometry.
func histogram(t *testing.T, values []int64) *hdr.Histogram {
	t.Helper()
	h := hdr.New(1, 60_000_000, 3)
	for _, v := range values {
		if err := h.RecordValue(v); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func encoded(t *testing.T, h *hdr.Histogram) string {
	t.Helper()
	b, err := h.Encode(hdr.V2CompressedEncodingCookieBase)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// latencies draws n latencies, µs: mostly tens to hundreds, 1% a tail up to 50 ms.
func latencies(rng *rand.Rand, n int) []int64 {
	v := make([]int64, n)
	for i := range v {
		v[i] = 20 + int64(rng.ExpFloat64()*200)
		if rng.IntN(100) == 0 {
			v[i] = 1000 + rng.Int64N(50_000)
		}
	}
	return v
}

// build makes s's result as loadgen would write it, every histogram recorded
// from values it keeps.
func build(t *testing.T, s spec) agent {
	t.Helper()
	rng := rand.New(rand.NewPCG(s.seed, 1))
	a := agent{lat: latencies(rng, s.n), conn: latencies(rng, s.conns)}
	w := result.Workload{Addr: "127.0.0.1:7000", Proto: "echo", Conns: s.conns, Pipeline: 1, Size: 64, Duration: 2 * time.Second,
		Warmup: 200 * time.Millisecond, Loops: 1, ConnectInFlight: 256, Timeout: 5 * time.Second, ConnectTimeout: 5 * time.Second,
		Backoff: 100 * time.Millisecond, SteadyTimeout: 30 * time.Second, SteadySettle: time.Second, TimelineStep: step, Idle: s.idle}
	if s.idle > 0 {
		w.Heartbeat = time.Second
	}
	loadStart := base + int64(s.loadStart)
	winStart := loadStart + int64(s.wait)
	lat, conn := histogram(t, a.lat), histogram(t, a.conn)
	ld := result.Load{
		Mode: "closed", Requests: int64(s.n), Seconds: s.seconds.Seconds(), Throughput: float64(s.n) / s.seconds.Seconds(),
		Latency: loadgen.Percentiles(lat), LatencyHist: encoded(t, lat),
		Connect: result.Connect{Target: s.conns, Established: s.conns, RampSeconds: 0.01 * float64(s.conns),
			Latency: loadgen.Percentiles(conn), LatencyHist: encoded(t, conn)},
		Steady: &result.Steady{State: result.SteadyOK, WaitSeconds: s.wait.Seconds(), SettleSeconds: 1, TimeoutSeconds: 30,
			ServedAtStart: s.conns, OpenAtStart: s.conns, OpenAtEnd: s.conns, IdleInWindow: 1},
		Errors: maps.Clone(s.errors), InFlightAtEnd: int64(s.conns),
		LoadStartUnixNS: loadStart, WindowStartUnixNS: winStart, WindowEndUnixNS: winStart + int64(s.seconds),
		Timeline: s.timeline, TimelineStepSeconds: step.Seconds(),
	}
	for _, n := range s.errors {
		ld.ErrorsTotal += n
	}
	if s.rate > 0 {
		w.Rate, w.Arrival, w.Seed = s.rate, "exp", s.seed
		a.unc, a.lag = latencies(rng, s.n), latencies(rng, s.n)
		unc, lag := histogram(t, a.unc), histogram(t, a.lag)
		u, g := loadgen.Percentiles(unc), loadgen.Percentiles(lag)
		ld.Mode, ld.TargetRate = "open", s.rate
		ld.Uncorrected, ld.UncorrectedHist, ld.SendLag, ld.SendLagHist = &u, encoded(t, unc), &g, encoded(t, lag)
		ld.ScheduledSends, ld.ParkedSends = int64(s.n)+5, 2
	}
	if s.idle > 0 {
		a.hbs = latencies(rng, 10*s.idle)
		hb := histogram(t, a.hbs)
		ld.Idle = &result.Idle{Conns: s.idle, Established: s.idle, OpenAtEnd: s.idle - 1, HeartbeatSeconds: 1,
			Sent: int64(10 * s.idle), Answered: int64(10 * s.idle), Late: 1, Missed: 2,
			Latency: loadgen.Percentiles(hb), LatencyHist: encoded(t, hb), Errors: map[string]int64{"eof": 1}, ErrorsTotal: 1}
	}
	a.run = &result.Run{
		Schema: result.SchemaVersion, Started: time.Unix(0, loadStart-int64(time.Second)).UTC(),
		Config: result.Config{Workload: w, ClientCPUs: []int{1}},
		Env: result.Env{Hostname: s.name + "-host", Kernel: "Linux 6.1", Arch: "x86_64", NumCPU: 2, GoVersion: "go1.26",
			Sysctls: map[string]string{"net/core/somaxconn": "4096", "net/ipv4/ip_local_port_range": s.name}},
		Load:   ld,
		Client: result.Client{CPUs: 1, CPUSeconds: 0.5, CPUCores: 0.25, Busy: 0.25},
	}
	return a
}

// timeline is n entries of requests from+k and errors k%2, warm-up before
// the window's start.
func timeline(n int, from int64, wait time.Duration) []result.Second {
	tl := make([]result.Second, n)
	for k := range tl {
		tl[k] = result.Second{T: k, Requests: from + int64(k), Errors: int64(k % 2), Warmup: time.Duration(k)*step < wait}
	}
	return tl
}

// three are three literal agents, their loads started 0, 130 and 60 ms after
// base, their windows 300 to 2300, 310 to 2310 and 305 to 2295 ms: in common
// 1.985 s of the shortest's 1.99.
func three(t *testing.T, rate float64) []agent {
	return []agent{
		build(t, spec{name: "a", conns: 4, rate: rate, seed: 1, n: 3000, loadStart: 0, wait: 300 * time.Millisecond, seconds: 2 * time.Second,
			timeline: timeline(23, 100, 300*time.Millisecond), errors: map[string]int64{"reset": 2, "timeout": 1}, idle: 3}),
		build(t, spec{name: "b", conns: 6, rate: rate, seed: 2, n: 5000, loadStart: 130 * time.Millisecond, wait: 180 * time.Millisecond, seconds: 2 * time.Second,
			timeline: timeline(21, 1000, 180*time.Millisecond), errors: map[string]int64{"reset": 5}}),
		build(t, spec{name: "c", conns: 2, rate: rate, seed: 3, n: 100, loadStart: 60 * time.Millisecond, wait: 245 * time.Millisecond, seconds: 1990 * time.Millisecond,
			timeline: timeline(23, 10000, 245*time.Millisecond), idle: 2}),
	}
}

func inputs(agents ...agent) []merge.Input {
	in := make([]merge.Input, len(agents))
	for i, a := range agents {
		in[i] = merge.Input{Name: a.run.Env.Hostname[:1] + ".json", Run: a.run}
	}
	return in
}

// sameHist checks that enc holds exactly the values, bucket by bucket, and
// that want's percentiles are read from them.
func sameHist(t *testing.T, what, enc string, got result.Percentiles, values []int64) {
	t.Helper()
	want := histogram(t, values)
	h, err := hdr.Decode([]byte(enc))
	if err != nil {
		t.Fatalf("%s: the merged histogram does not decode: %v", what, err)
	}
	gd, wd := h.Distribution(), want.Distribution()
	if len(gd) != len(wd) {
		t.Fatalf("%s: %d buckets, want %d", what, len(gd), len(wd))
	}
	for i := range gd {
		if gd[i] != wd[i] {
			t.Fatalf("%s: bucket %d: %+v, want %+v", what, i, gd[i], wd[i])
		}
	}
	if wp := loadgen.Percentiles(want); got != wp {
		t.Errorf("%s: percentiles %+v, want %+v (read from the values recorded together)", what, got, wp)
	}
}

// Counts summed, histograms merged exactly (against one histogram holding
// every agent's values), the rate summed, closed and open loop.
func TestMergeSums(t *testing.T) {
	for _, tc := range []struct {
		name string
		rate float64
	}{{"closed", 0}, {"open", 1500}} {
		t.Run(tc.name, func(t *testing.T) {
			ag := three(t, tc.rate)
			r, err := merge.Merge(inputs(ag...))
			if err != nil {
				t.Fatal(err)
			}
			ld, w := r.Load, r.Config.Workload
			var lat, conn, unc, lag, hbs []int64
			var tput float64
			for _, a := range ag {
				lat, conn, unc, lag, hbs = append(lat, a.lat...), append(conn, a.conn...), append(unc, a.unc...), append(lag, a.lag...), append(hbs, a.hbs...)
				tput += a.run.Load.Throughput
			}
			for _, c := range []struct {
				what      string
				got, want any
			}{
				{"requests", ld.Requests, int64(8100)},
				{"errors", ld.Errors, map[string]int64{"reset": 7, "timeout": 1}},
				{"errors total", ld.ErrorsTotal, int64(8)},
				{"in flight at end", ld.InFlightAtEnd, int64(12)},
				{"throughput (the agents' summed)", ld.Throughput, tput},
				{"conns", w.Conns, 12},
				{"idle", w.Idle, 5},
				{"loops", w.Loops, 3},
				{"rate", w.Rate, 3 * tc.rate},
				{"target rate", ld.TargetRate, 3 * tc.rate},
				{"scheduled sends", ld.ScheduledSends, map[bool]int64{true: 8115}[tc.rate > 0]},
				{"parked sends", ld.ParkedSends, map[bool]int64{true: 6}[tc.rate > 0]},
				{"connect target", ld.Connect.Target, 12},
				{"established", ld.Connect.Established, 12},
				{"ramp (the slowest agent's)", ld.Connect.RampSeconds, ag[1].run.Load.Connect.RampSeconds},
				{"steady", *ld.Steady, result.Steady{State: result.SteadyOK, WaitSeconds: 0.18, SettleSeconds: 1, TimeoutSeconds: 30, ServedAtStart: 12, OpenAtStart: 12, OpenAtEnd: 12, IdleInWindow: 3}},
				{"idle sent", ld.Idle.Sent, int64(50)},
				{"idle answered, late, missed", [3]int64{ld.Idle.Answered, ld.Idle.Late, ld.Idle.Missed}, [3]int64{50, 2, 4}},
				{"idle conns, established, open at end", [3]int{ld.Idle.Conns, ld.Idle.Established, ld.Idle.OpenAtEnd}, [3]int{5, 5, 3}},
				{"idle errors", ld.Idle.Errors, map[string]int64{"eof": 2}},
				{"client CPUs", r.Client.CPUs, 3},
				{"schema", r.Schema, result.SchemaVersion},
				{"started (the earliest)", r.Started, ag[0].run.Started},
				{"window start (the latest)", ld.WindowStartUnixNS, base + int64(310*time.Millisecond)},
				{"window end (the earliest)", ld.WindowEndUnixNS, base + int64(2295*time.Millisecond)},
				{"seconds (the common window)", ld.Seconds, (1985 * time.Millisecond).Seconds()},
				{"overlap", r.Merge.Overlap, float64(1985*time.Millisecond) / float64(1990*time.Millisecond)},
				{"env differs", r.Merge.EnvDiffers, []string{"hostname", "sysctls.net/ipv4/ip_local_port_range"}},
				{"env kept", [2]string{r.Env.Kernel, r.Env.Sysctls["net/core/somaxconn"]}, [2]string{"Linux 6.1", "4096"}},
			} {
				if !reflect.DeepEqual(c.got, c.want) {
					t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
				}
			}
			sameHist(t, "latency", ld.LatencyHist, ld.Latency, lat)
			sameHist(t, "connect latency", ld.Connect.LatencyHist, ld.Connect.Latency, conn)
			sameHist(t, "heartbeats", ld.Idle.LatencyHist, ld.Idle.Latency, hbs)
			if tc.rate > 0 {
				sameHist(t, "uncorrected", ld.UncorrectedHist, *ld.Uncorrected, unc)
				sameHist(t, "send lag", ld.SendLagHist, *ld.SendLag, lag)
			} else if ld.Uncorrected != nil || ld.SendLag != nil {
				t.Error("closed loop: an uncorrected latency or a send lag")
			}
			// Percentiles from the merge, not an average: the tail of the
			// agent with the most requests dominates.
			var mean float64
			for _, a := range ag {
				mean += float64(a.run.Load.Latency.P99US) / 3
			}
			if float64(ld.Latency.P99US) == mean {
				t.Errorf("p99 %d µs is the agents' mean", ld.Latency.P99US)
			}
			// The agents' shares, in order.
			if len(r.Merge.Inputs) != 3 {
				t.Fatalf("%d inputs listed, want 3", len(r.Merge.Inputs))
			}
			for i, in := range r.Merge.Inputs {
				a := ag[i].run
				if in.Name != string(rune('a'+i))+".json" || in.Requests != a.Load.Requests || in.Throughput != a.Load.Throughput ||
					in.Conns != a.Config.Workload.Conns || in.WindowStartUnixNS != a.Load.WindowStartUnixNS || in.Host != a.Env.Hostname {
					t.Errorf("input %d: %+v, does not match its result", i, in)
				}
			}
			// The inputs are left as they were.
			if ag[0].run.Config.Workload.Conns != 4 || ag[0].run.Load.Requests != 3000 || ag[0].run.Load.Errors["reset"] != 2 {
				t.Error("the merge modified an input")
			}
		})
	}
}

// The timelines summed entry by entry once aligned on their load starts (0,
// 130 and 60 ms after base: the origin is b's, 130 ms; a's entries are
// shifted by one step, 30 ms off, b's by none, c's by one, 70 ms rounded to
// 100: 30 ms off).
func TestMergeTimelineAligned(t *testing.T) {
	ag := three(t, 0)
	r, err := merge.Merge(inputs(ag...))
	if err != nil {
		t.Fatal(err)
	}
	ld := r.Load
	if ld.LoadStartUnixNS != base+int64(130*time.Millisecond) {
		t.Errorf("origin %d, want b's load start %d", ld.LoadStartUnixNS, base+int64(130*time.Millisecond))
	}
	if got, want := r.Merge.TimelineSkewNS, int64(30*time.Millisecond); got != want {
		t.Errorf("skew %v, want %v", time.Duration(got), time.Duration(want))
	}
	// a and c have 23 entries less the one shifted out, b 21: 21 in common.
	if len(ld.Timeline) != 21 {
		t.Fatalf("%d entries, want 21", len(ld.Timeline))
	}
	for j, e := range ld.Timeline {
		want := result.Second{T: j, Requests: (100 + int64(j+1)) + (1000 + int64(j)) + (10000 + int64(j+1)),
			Errors: int64((j+1)%2 + j%2 + (j+1)%2), Warmup: (j+1)*100 < 300 || j*100 < 180 || (j+1)*100 < 245}
		if e != want {
			t.Errorf("entry %d: %+v, want %+v", j, e, want)
		}
	}
	if ld.TimelineStepSeconds != step.Seconds() {
		t.Errorf("step %v, want %v", ld.TimelineStepSeconds, step.Seconds())
	}
}

// udp-echo's datagram account summed, its loss rate recomputed from the sums.
func TestMergeDatagrams(t *testing.T) {
	ag := three(t, 0)[:2]
	for i, d := range []result.Datagrams{
		{Sent: 3010, Answered: 3000, Lost: 10, Late: 1, Duplicated: 2, Reordered: 3, Mismatched: 0, LossRate: 10.0 / 3010, ClientDropped: 4},
		{Sent: 5100, Answered: 5000, Lost: 99, Late: 0, Duplicated: 1, Reordered: 7, Mismatched: 1, LossRate: 99.0 / 5100},
	} {
		r := ag[i].run
		r.Config.Workload.Proto, r.Config.Workload.Batch = "udp-echo", 32
		r.Load.Datagrams = &d
		r.Load.Idle, r.Config.Workload.Idle, r.Config.Workload.Heartbeat = nil, 0, 0
	}
	r, err := merge.Merge(inputs(ag...))
	if err != nil {
		t.Fatal(err)
	}
	want := result.Datagrams{Sent: 8110, Answered: 8000, Lost: 109, Late: 1, Duplicated: 3, Reordered: 10, Mismatched: 1, LossRate: 109.0 / 8110, ClientDropped: 4}
	if got := *r.Load.Datagrams; got != want {
		t.Errorf("datagrams %+v,\nwant %+v", got, want)
	}
	if r.Config.Workload.Batch != 32 || r.Config.Workload.Conns != 10 {
		t.Errorf("workload batch %d, flows %d; want 32 and 10", r.Config.Workload.Batch, r.Config.Workload.Conns)
	}
}

// What cannot be merged exactly is refused, saying why: the field in which the
// configurations differ, the windows, a lone result, what is not one run's.
func TestMergeRefuses(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(a, b *result.Run) // b is the second of two agents
		one    bool                   // merge a alone
		is     error
		want   string
	}{
		{name: "protocol", mutate: func(a, b *result.Run) { b.Config.Workload.Proto = "rpc" }, is: merge.ErrConfig, want: "workload.proto"},
		{name: "size", mutate: func(a, b *result.Run) { b.Config.Workload.Size = 128 }, is: merge.ErrConfig, want: "workload.size (64 and 128)"},
		{name: "pipeline", mutate: func(a, b *result.Run) { b.Config.Workload.Pipeline = 4 }, is: merge.ErrConfig, want: "workload.pipeline"},
		{name: "mode", mutate: func(a, b *result.Run) { b.Load.Mode = "open" }, is: merge.ErrConfig, want: "mode (closed or open loop)"},
		{name: "duration", mutate: func(a, b *result.Run) { b.Config.Workload.Duration = 3 * time.Second }, is: merge.ErrConfig, want: "workload.duration_ns (2s and 3s)"},
		{name: "address", mutate: func(a, b *result.Run) { b.Config.Workload.Addr = "127.0.0.1:7001" }, is: merge.ErrConfig, want: `workload.addr ("127.0.0.1:7000" and "127.0.0.1:7001")`},
		{name: "model", mutate: func(a, b *result.Run) { a.Config.Model, b.Config.Model = "epoll-et", "poll" }, is: merge.ErrConfig, want: "model"},
		{name: "timeline step", mutate: func(a, b *result.Run) { b.Config.Workload.TimelineStep = time.Second }, is: merge.ErrConfig, want: "workload.timeline_step_ns"},
		{name: "batch", mutate: func(a, b *result.Run) { b.Config.Workload.Batch = 8 }, is: merge.ErrConfig, want: "workload.batch"},
		{name: "arrival", mutate: func(a, b *result.Run) { b.Config.Workload.Arrival = "exp" }, is: merge.ErrConfig, want: "workload.arrival"},
		{name: "heartbeat", mutate: func(a, b *result.Run) { b.Config.Workload.Idle, b.Config.Workload.Heartbeat = 1, 2*time.Second }, is: merge.ErrConfig, want: "workload.heartbeat_ns (1s and 2s)"},
		{name: "two started servers", mutate: func(a, b *result.Run) { a.Server, b.Server = &result.Server{PID: 1}, &result.Server{PID: 2} }, is: merge.ErrConfig, want: "each started a server of their own"},
		{name: "disjoint windows", mutate: func(a, b *result.Run) { shift(b, 5*time.Second) }, is: merge.ErrWindow, want: "by 0% of the shortest"},
		{name: "overlap 90%", mutate: func(a, b *result.Run) { shift(b, 190*time.Millisecond) }, is: merge.ErrWindow, want: "by 90% of the shortest"},
		{name: "one run twice", mutate: func(a, b *result.Run) { *b = *a }, is: merge.ErrInput, want: "a.json and b.json are one run's result"},
		{name: "one input", one: true, is: merge.ErrTooFew, want: "only a.json given"},
		{name: "a search", mutate: func(a, b *result.Run) { b.Search = &result.Search{} }, is: merge.ErrInput, want: "b.json is a capacity search's"},
		{name: "a merge", mutate: func(a, b *result.Run) { b.Merge = &result.Merge{} }, is: merge.ErrInput, want: "b.json is already a merge"},
		{name: "no window", mutate: func(a, b *result.Run) { b.Load.WindowStartUnixNS, b.Load.Seconds = 0, 0 }, is: merge.ErrInput, want: "b.json measured no window"},
		{name: "old schema", mutate: func(a, b *result.Run) { b.Schema = 5 }, is: merge.ErrInput, want: "b.json is of schema 5"},
		{name: "no histogram", mutate: func(a, b *result.Run) { b.Load.Connect.LatencyHist = "" }, is: merge.ErrInput, want: "b.json has no connect latency histogram for its 6 values"},
		{name: "histogram and figures disagree", mutate: func(a, b *result.Run) { b.Load.Latency.Count++ }, is: merge.ErrInput, want: "holds 5000 values, its percentiles count 5001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ag := three(t, 0)[:2]
			in := inputs(ag...)
			if tt.one {
				in = in[:1]
			} else {
				tt.mutate(ag[0].run, ag[1].run)
			}
			r, err := merge.Merge(in)
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v (result %v), want %v saying %q", err, r != nil, tt.is, tt.want)
			}
		})
	}
	// 96% is one run's.
	ag := three(t, 0)[:2]
	shift(ag[1].run, 75*time.Millisecond) // b's window: 385 ms to 2385 ms; a's 300 to 2300
	if r, err := merge.Merge(inputs(ag...)); err != nil || r.Merge.Overlap < 0.957 || r.Merge.Overlap > 0.958 {
		t.Errorf("overlap of 1.915 s in 2 s: %v; want merged with overlap 0.9575", err)
	}
}

// What a result that drove -addr does not know of the server (its model,
// arguments, CPUs) agrees with any; those that know it must agree.
func TestMergeServerKnownToSome(t *testing.T) {
	ag := three(t, 0)
	ag[1].run.Config.Model, ag[1].run.Config.ServerArgs = "epoll-et", []string{"-model", "epoll-et"}
	r, err := merge.Merge(inputs(ag...))
	if err != nil || r.Config.Model != "epoll-et" || len(r.Config.ServerArgs) != 2 {
		t.Fatalf("model known to b only: %v; model %q, args %q; want b's", err, r.Config.Model, r.Config.ServerArgs)
	}
	ag[2].run.Config.Model = "poll"
	if _, err := merge.Merge(inputs(ag...)); !errors.Is(err, merge.ErrConfig) || !strings.Contains(err.Error(), `b.json and c.json differ in model ("epoll-et" and "poll")`) {
		t.Errorf("models epoll-et and poll: err = %v, want b's and c's named", err)
	}
}

// shift moves r's load and window by d.
func shift(r *result.Run, d time.Duration) {
	r.Load.LoadStartUnixNS += int64(d)
	r.Load.WindowStartUnixNS += int64(d)
	r.Load.WindowEndUnixNS += int64(d)
}

// The server's figures are the one agent's that sampled it, its samples' times
// moved to the merged origin; several that sampled it conflict.
func TestMergeServer(t *testing.T) {
	ag := three(t, 0)
	ag[2].run.Server = &result.Server{PID: 42, External: true, CPUCoresMean: 0.9, Samples: []result.ProcSample{{T: 0.5, CPUCores: 1}}}
	ag[2].run.Config.ServerCPUs = []int{0}
	r, err := merge.Merge(inputs(ag...))
	if err != nil {
		t.Fatal(err)
	}
	if r.Server == nil || r.Server.PID != 42 || r.Merge.ServerFrom != "c.json" || !r.Merge.Inputs[2].Server {
		t.Fatalf("server %+v from %q; want c.json's pid 42", r.Server, r.Merge.ServerFrom)
	}
	// c's load started 60 ms after base, the merged origin is 130 ms.
	if got := r.Server.Samples[0].T; got < 0.4299 || got > 0.4301 {
		t.Errorf("sample at %v s from the merged origin, want 0.43", got)
	}
	if ag[2].run.Server.Samples[0].T != 0.5 {
		t.Error("the merge moved the input's samples")
	}
	if c := r.Config.ServerCPUs; len(c) != 1 || c[0] != 0 {
		t.Errorf("server CPUs %v, want c's [0]", c)
	}
	ag[0].run.Server = &result.Server{PID: 42, External: true}
	r, err = merge.Merge(inputs(ag...))
	if err != nil {
		t.Fatal(err)
	}
	if r.Server != nil || r.Merge.ServerFrom != "" || !strings.Contains(r.Merge.ServerConflict, "a.json (pid 42), c.json (pid 42)") {
		t.Errorf("two samplers: server %+v, from %q, conflict %q; want none kept, the conflict named", r.Server, r.Merge.ServerFrom, r.Merge.ServerConflict)
	}
}

// An agent that was client-bound makes the merged run client-bound, and the
// summary names it as the bottleneck.
func TestMergeClientBound(t *testing.T) {
	ag := three(t, 0)
	ag[1].run.ClientBound, ag[1].run.Client.Busy = true, 0.97
	r, err := merge.Merge(inputs(ag...))
	if err != nil {
		t.Fatal(err)
	}
	if !r.ClientBound || !r.Merge.Inputs[1].ClientBound || r.Merge.Inputs[0].ClientBound {
		t.Errorf("client bound %v, agents %v %v; want the merge's and b's", r.ClientBound, r.Merge.Inputs[0].ClientBound, r.Merge.Inputs[1].ClientBound)
	}
	var out bytes.Buffer
	trial.PrintSummary(&out, r)
	for _, want := range []string{"BOTTLENECK: b.json (host b-host) was client-bound (its CPUs 97% busy)", "97% busy, CLIENT-BOUND", "merged from 3 results"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(strings.Join(r.Warnings, "\n"), "b.json (host b-host) was client-bound") {
		t.Errorf("warnings %q lack b's being client-bound", r.Warnings)
	}
}

// Read refuses what is not a loadgen result of schema 6 or later, naming the file.
func TestRead(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	if err := result.WriteFile(good, three(t, 0)[0].run); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, content, want string
	}{
		{"garbage.json", "garbage\x00", "garbage.json is not a loadgen result"},
		{"empty.json", "{}", "empty.json is not a loadgen result (it has no schema)"},
		{"old.json", `{"schema": 5}`, "old.json is of schema 5: results before schema 6 do not record when their window was"},
		{"new.json", `{"schema": 999}`, "new.json is of schema 999, newer than this build's"},
		{"missing.json", "", "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name)
			if tt.content != "" {
				if err := os.WriteFile(p, []byte(tt.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := merge.Read([]string{good, p})
			if !errors.Is(err, merge.ErrInput) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want ErrInput saying %q", err, tt.want)
			}
		})
	}
	in, err := merge.Read([]string{good, good})
	if err != nil || len(in) != 2 || in[0].Name != good || in[1].Run.Load.Requests != 3000 {
		t.Errorf("Read(good, good) = %d inputs, %v", len(in), err)
	}
}

// Write puts the merged latency histogram beside the result, which names it,
// and the result reads back as it was.
func TestWrite(t *testing.T) {
	r, err := merge.Merge(inputs(three(t, 1500)...))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "all.json")
	if err := merge.Write(path, r); err != nil {
		t.Fatal(err)
	}
	back, err := result.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, r) || back.HistogramFile != "all.hgrm" {
		t.Errorf("read back differs, or histogram file %q is not all.hgrm", back.HistogramFile)
	}
	if b, err := os.ReadFile(filepath.Join(filepath.Dir(path), "all.hgrm")); err != nil || !strings.Contains(string(b), "#[Max") {
		t.Errorf("all.hgrm: %v, %.100q", err, b)
	}
}

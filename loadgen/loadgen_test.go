package loadgen

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"concbench/internal/result"
)

// run runs w and fails t if it errs or does not stop by itself.
//
// Only the tests whose runs have a fixed number of requests (the duration a mere
// cap) and count exact outcomes are parallel. The others measure latency,
// throughput or allocations, or expect some requests within a time: a run's pace
// is what it gets of this process's CPUs (GOMAXPROCS), its loops and the test
// servers' goroutines alike, and a run beside it takes them (a reconnect run
// made 13 requests in 400 ms instead of about 3000). The parallel tests of a
// package start only once its serial tests have ended, so those run alone, other
// packages' tests aside.
func run(t *testing.T, w result.Workload) *Outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), w.Warmup+w.Duration+20*time.Second)
	defer cancel()
	o, err := Run(ctx, Config{Workload: w})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("Run did not stop by itself")
	}
	return o
}

func TestResolve(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		w    result.Workload
		ok   bool
	}{
		{"defaults", result.Workload{Addr: "127.0.0.1:1"}, true},
		{"localhost", result.Workload{Addr: "localhost:80"}, true},
		{"no port", result.Workload{Addr: "127.0.0.1"}, false},
		{"unix", result.Workload{Addr: "unix:/tmp/x.sock"}, true},
		{"unix no path", result.Workload{Addr: "unix:"}, false},
		{"bad proto", result.Workload{Addr: "127.0.0.1:1", Proto: "gopher"}, false},
		{"file defaults", result.Workload{Addr: "127.0.0.1:1", Proto: "file"}, true},
		{"http defaults", result.Workload{Addr: "127.0.0.1:1", Proto: "http"}, true},
		{"file other name", result.Workload{Addr: "127.0.0.1:1", Proto: "file", File: "dir/mine.txt"}, true},
		{"http query", result.Workload{Addr: "127.0.0.1:1", Proto: "http", Path: "/1m.bin?x=1"}, true},
		{"file size", result.Workload{Addr: "127.0.0.1:1", Proto: "file", Size: 64}, false},
		{"http size", result.Workload{Addr: "127.0.0.1:1", Proto: "http", Size: 64}, false},
		{"file absolute", result.Workload{Addr: "127.0.0.1:1", Proto: "file", File: "/1k.bin"}, false},
		{"file dotdot", result.Workload{Addr: "127.0.0.1:1", Proto: "file", File: "a/../../etc/passwd"}, false},
		{"http relative", result.Workload{Addr: "127.0.0.1:1", Proto: "http", Path: "index.html"}, false},
		{"http space", result.Workload{Addr: "127.0.0.1:1", Proto: "http", Path: "/a b"}, false},
		{"http crlf", result.Workload{Addr: "127.0.0.1:1", Proto: "http", Path: "/a\r\nX: y"}, false},
		{"file with path", result.Workload{Addr: "127.0.0.1:1", Proto: "file", Path: "/1k.bin"}, false},
		{"http with file", result.Workload{Addr: "127.0.0.1:1", Proto: "http", File: "1k.bin"}, false},
		{"echo with file", result.Workload{Addr: "127.0.0.1:1", File: "1k.bin"}, false},
		{"negative rate", result.Workload{Addr: "127.0.0.1:1", Rate: -1}, false},
		{"reconnect pipeline", result.Workload{Addr: "127.0.0.1:1", Reconnect: true, Pipeline: 2}, false},
		{"requests open loop", result.Workload{Addr: "127.0.0.1:1", Requests: 5, Rate: 10}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := Resolve(tt.w)
			if (err == nil) != tt.ok {
				t.Fatalf("Resolve: err = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrConfig) {
				t.Fatalf("err %v does not wrap ErrConfig", err)
			}
			if tt.name == "defaults" && (w.Conns != 1 || w.Size != 64 || w.Duration != DefaultDuration || w.Proto != "echo" || w.Loops != 1) {
				t.Fatalf("defaults not filled: %+v", w)
			}
			if tt.name == "file defaults" && (w.File != "1k.bin" || w.Size != 0) {
				t.Fatalf("file defaults: file %q size %d, want 1k.bin and 0", w.File, w.Size)
			}
			if tt.name == "http defaults" && (w.Path != "/index.html" || w.Size != 0) {
				t.Fatalf("http defaults: path %q size %d, want /index.html and 0", w.Path, w.Size)
			}
		})
	}
}

// A serial server with a 1 ms service time and one closed-loop connection: about
// 1000 req/s, p50 about 1 ms — and never better than the service time allows.
// Not parallel: it measures throughput and latency.
func TestClosedLoopFixedServiceTime(t *testing.T) {
	s := startServer(t, &testServer{proto: "rpc", size: 32, serial: true, service: time.Millisecond})
	o := run(t, result.Workload{Addr: s.addr(), Proto: "rpc", Size: 32, Conns: 1, Duration: 1500 * time.Millisecond, Warmup: 200 * time.Millisecond})
	ld := o.Load
	if ld.ErrorsTotal != 0 {
		t.Fatalf("errors: %v", ld.Errors)
	}
	if ld.Mode != "closed" || ld.Uncorrected != nil {
		t.Fatalf("mode %q, uncorrected %v: want closed loop without an uncorrected figure", ld.Mode, ld.Uncorrected)
	}
	// The machine is shared with other test runs, so the server's sleeps overrun:
	// the bounds are what a 1 ms service time allows at best, and Little's law.
	if ld.Throughput > 1005 || ld.Throughput < 400 {
		t.Errorf("throughput %.0f req/s, want about 1000 (at most 1000)", ld.Throughput)
	}
	if ld.Latency.P50US < 1000 || ld.Latency.P50US > 2000 {
		t.Errorf("p50 %d µs, want about 1000", ld.Latency.P50US)
	}
	// One connection, one request at a time: throughput × mean latency = 1.
	if l := ld.Throughput * ld.Latency.MeanUS / 1e6; l < 0.9 || l > 1.02 {
		t.Errorf("throughput %.0f/s × mean latency %.0f µs = %.3f, want 1 (Little's law)", ld.Throughput, ld.Latency.MeanUS, l)
	}
	if got := ld.Latency.Count; got != ld.Requests {
		t.Errorf("histogram holds %d values, %d requests completed", got, ld.Requests)
	}
	if len(ld.Timeline) != 2 || !ld.Timeline[0].Warmup || ld.Timeline[1].Warmup {
		t.Errorf("timeline %+v: want 2 seconds, the first in warm-up", ld.Timeline)
	}
	checkPlaced(t, o)
}

// checkPlaced checks what loadgen merge needs of a result: the load and the
// window placed on the wall clock, the window's length Seconds, and every
// histogram recorded beside its percentiles.
func checkPlaced(t *testing.T, o *Outcome) {
	t.Helper()
	ld := o.Load
	if ld.LoadStartUnixNS != o.LoadStart.UnixNano() || ld.WindowStartUnixNS < ld.LoadStartUnixNS ||
		time.Duration(ld.WindowEndUnixNS-ld.WindowStartUnixNS).Seconds() != ld.Seconds {
		t.Errorf("load start %d (want %d), window %d to %d: want the window after the load's start, %.6f s long",
			ld.LoadStartUnixNS, o.LoadStart.UnixNano(), ld.WindowStartUnixNS, ld.WindowEndUnixNS, ld.Seconds)
	}
	// The window opened after the warm-up, when the gate says: by the wall
	// clock too.
	if wait := time.Duration(ld.WindowStartUnixNS - ld.LoadStartUnixNS); wait < o.Workload.Warmup || ld.Steady == nil || math.Abs(wait.Seconds()-ld.Steady.WaitSeconds) > 1e-6 {
		t.Errorf("window opened %v after the load, warm-up %v, gate %+v", wait, o.Workload.Warmup, ld.Steady)
	}
	type hist struct {
		what string
		enc  string
		p    *result.Percentiles
	}
	hists := []hist{{"latency", ld.LatencyHist, &ld.Latency}, {"connect", ld.Connect.LatencyHist, &ld.Connect.Latency}}
	if ld.Mode == "open" {
		hists = append(hists, hist{"uncorrected", ld.UncorrectedHist, ld.Uncorrected}, hist{"send lag", ld.SendLagHist, ld.SendLag})
	} else if ld.UncorrectedHist != "" || ld.SendLagHist != "" {
		t.Error("closed loop: uncorrected or send lag histograms")
	}
	for _, h := range hists {
		got, err := hdr.Decode([]byte(h.enc))
		if err != nil {
			t.Errorf("%s histogram: %v", h.what, err)
			continue
		}
		if p := Percentiles(got); p != *h.p || p.Count == 0 {
			t.Errorf("%s histogram's percentiles %+v, the result's %+v", h.what, p, *h.p)
		}
	}
}

// Open loop at 2000 req/s against a server that can do 1000: the queue grows
// through the run, and the corrected latency shows it; the uncorrected one stays
// near the service time. Not parallel: it measures latency.
func TestOpenLoopQueueGrows(t *testing.T) {
	s := startServer(t, &testServer{proto: "echo", size: 16, serial: true, service: time.Millisecond})
	const d = 2 * time.Second
	o := run(t, result.Workload{Addr: s.addr(), Size: 16, Conns: 2, Rate: 2000, Duration: d})
	ld := o.Load
	if ld.ErrorsTotal != 0 {
		t.Fatalf("errors: %v", ld.Errors)
	}
	if ld.Mode != "open" || ld.Uncorrected == nil || ld.SendLag == nil {
		t.Fatalf("want an open-loop result with uncorrected latency and send lag, got %+v", ld)
	}
	if !ld.RateShortfall {
		t.Errorf("throughput %.0f of 2000 req/s asked, not flagged as short", ld.Throughput)
	}
	// The achieved-rate gate, and who could not keep up: the server (the
	// sends waited for replies); the queue grew through the window.
	if !ld.UnderRate || !strings.HasPrefix(ld.UnderRateCause, "server: ") {
		t.Errorf("under rate %v (%q), want the gate to fire on the server", ld.UnderRate, ld.UnderRateCause)
	}
	if st := ld.Stationarity; st == nil || !st.Tested || !st.Unstable {
		t.Errorf("stationarity %+v: want the growing queue found unstable", st)
	}
	// Sends meant for t go out about t·2000/1000 = 2t: the latency at t is about t/2,
	// so the worst is about d/2.
	if max := time.Duration(ld.Latency.MaxUS) * time.Microsecond; max < d/4 || max > d {
		t.Errorf("corrected max %v, want about %v", max, d/2)
	}
	if ld.Latency.P50US < 50*ld.Uncorrected.P50US {
		t.Errorf("corrected p50 %d µs is not far above uncorrected p50 %d µs", ld.Latency.P50US, ld.Uncorrected.P50US)
	}
	if u := ld.Uncorrected.P50US; u < 1000 || u > 5000 {
		t.Errorf("uncorrected p50 %d µs, want about the service time (2 connections queue for one server: 1-2 ms)", u)
	}
	tl := ld.Timeline
	// Two seconds, and a last entry of the few ms the window opened after the
	// load started (the steady-state gate: once both connections were answered).
	if len(tl) < 2 || tl[1].P99US <= tl[0].P99US {
		t.Errorf("timeline p99 does not grow: %+v", tl)
	}
}

// A server that stalls once for 400 ms, under an open-loop 1000 req/s: every send
// meant during the stall waits for its end, so the corrected p99 is the stall
// less 1% of the run (in time); the uncorrected p99 saw only one slow request.
// Not parallel: it measures latency.
func TestOpenLoopStallCorrected(t *testing.T) {
	const (
		rate  = 1000
		d     = 2 * time.Second
		stall = 400 * time.Millisecond
	)
	s := startServer(t, &testServer{proto: "echo", size: 16, before: func(n int64, _ []byte) {
		if n == 800 { // 0.8 s into the run
			time.Sleep(stall)
		}
	}})
	o := run(t, result.Workload{Addr: s.addr(), Size: 16, Conns: 1, Rate: rate, Duration: d})
	ld := o.Load
	if ld.ErrorsTotal != 0 {
		t.Fatalf("errors: %v", ld.Errors)
	}
	// The requests meant for the stall's i-th millisecond waited stall - i: the
	// largest 1% of the rate·d values are those down to stall - 0.01·d.
	want := stall - d/100
	got := time.Duration(ld.Latency.P99US) * time.Microsecond
	if got < want*85/100 || got > want*125/100 {
		t.Errorf("corrected p99 %v, want about %v", got, want)
	}
	if u := time.Duration(ld.Uncorrected.P99US) * time.Microsecond; u > want/4 {
		t.Errorf("uncorrected p99 %v, want far below %v (one request saw the stall)", u, want)
	}
	if u := time.Duration(ld.Uncorrected.MaxUS) * time.Microsecond; u < stall*9/10 {
		t.Errorf("uncorrected max %v, want the stall %v", u, stall)
	}
	checkPlaced(t, o)
}

// One byte flipped in 1 of every 1000 replies: exactly that many mismatches.
func TestCorruptionCounted(t *testing.T) {
	t.Parallel() // 6000 requests, exact counts, each protocol with its own server
	for _, p := range []string{"echo", "rpc"} {
		t.Run(p, func(t *testing.T) {
			t.Parallel()
			var corrupted int64
			s := startServer(t, &testServer{proto: p, size: 48, before: func(n int64, reply []byte) {
				if n%1000 == 999 {
					reply[len(reply)-1] ^= 0x20 // an uppercase letter turns lowercase
					corrupted++
				}
			}})
			const total = 6000
			o := run(t, result.Workload{Addr: s.addr(), Proto: p, Size: 48, Conns: 4, Pipeline: 2, Requests: total, Duration: 30 * time.Second})
			ld := o.Load
			s.kill() // wait for the server's goroutines: corrupted is then safe to read
			if corrupted != total/1000 {
				t.Fatalf("server corrupted %d replies, want %d", corrupted, total/1000)
			}
			if got := ld.Errors["mismatch"]; got != corrupted || ld.ErrorsTotal != corrupted {
				t.Errorf("mismatch errors %d (all errors %v), want exactly %d", got, ld.Errors, corrupted)
			}
			if ld.Requests != total-corrupted {
				t.Errorf("%d correct replies, want %d", ld.Requests, total-corrupted)
			}
		})
	}
}

// A server that dies mid-run: the errors are counted by kind, the replies before
// the death are reported, and the run ends on time.
func TestServerDies(t *testing.T) {
	s := startServer(t, &testServer{proto: "echo", size: 16})
	time.AfterFunc(300*time.Millisecond, s.kill)
	const d = 1200 * time.Millisecond
	begin := time.Now()
	o := run(t, result.Workload{Addr: s.addr(), Size: 16, Conns: 4, Duration: d})
	if el := time.Since(begin); el > d+2*time.Second {
		t.Errorf("run took %v for a %v duration", el, d)
	}
	ld := o.Load
	if ld.Requests == 0 {
		t.Errorf("no replies reported from before the death")
	}
	if ld.Errors["eof"]+ld.Errors["reset"]+ld.Errors["closed_idle"] == 0 {
		t.Errorf("the death itself is not counted: %v", ld.Errors)
	}
	if ld.Errors["connect_refused"] == 0 {
		t.Errorf("reconnects to the dead server not counted as refused: %v", ld.Errors)
	}
}

func TestPipelineAndRamp(t *testing.T) {
	s := startServer(t, &testServer{proto: "rpc", size: 100})
	o := run(t, result.Workload{Addr: s.addr(), Proto: "rpc", Size: 100, Conns: 300, Pipeline: 4, Loops: 2, ConnectInFlight: 16, Duration: 700 * time.Millisecond})
	ld := o.Load
	if ld.ErrorsTotal != 0 || ld.Requests == 0 {
		t.Fatalf("errors %v, %d requests", ld.Errors, ld.Requests)
	}
	if ld.Connect.Established != 300 || ld.Connect.Latency.Count != 300 || ld.Connect.RampSeconds <= 0 {
		t.Errorf("connect %+v: want 300 established, 300 connect latencies, a ramp time", ld.Connect)
	}
}

func TestReconnect(t *testing.T) {
	s := startServer(t, &testServer{proto: "echo", size: 10})
	for _, rate := range []float64{0, 300} {
		o := run(t, result.Workload{Addr: s.addr(), Size: 10, Conns: 3, Reconnect: true, Rate: rate, Duration: 700 * time.Millisecond})
		ld := o.Load
		if ld.ErrorsTotal != 0 || ld.Requests < 50 {
			t.Fatalf("rate %v: errors %v, %d requests", rate, ld.Errors, ld.Requests)
		}
		if ld.Connect.Latency.Count < ld.Requests {
			t.Errorf("rate %v: %d connects for %d requests: want a connection per request", rate, ld.Connect.Latency.Count, ld.Requests)
		}
	}
}

// TestUnixSocket: unix:PATH drives a Unix domain socket server, pipelined over
// kept connections and with a connection per request; a path with nothing
// listening counts refused connects.
func TestUnixSocket(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, &testServer{proto: "rpc", size: 100, unixPath: dir + "/s.sock"})
	o := run(t, result.Workload{Addr: s.addr(), Proto: "rpc", Size: 100, Conns: 20, Pipeline: 4, Loops: 2, Duration: 400 * time.Millisecond})
	ld := o.Load
	if ld.ErrorsTotal != 0 || ld.Requests < 100 || ld.Connect.Established != 20 {
		t.Fatalf("errors %v, %d requests, %d established", ld.Errors, ld.Requests, ld.Connect.Established)
	}
	if o.Workload.Addr != s.addr() {
		t.Errorf("recorded addr %q, want %q", o.Workload.Addr, s.addr())
	}
	e := startServer(t, &testServer{proto: "echo", size: 10, unixPath: dir + "/e.sock"})
	o = run(t, result.Workload{Addr: e.addr(), Size: 10, Conns: 3, Reconnect: true, Duration: 400 * time.Millisecond})
	ld = o.Load
	if ld.ErrorsTotal != 0 || ld.Requests < 50 || ld.Connect.Latency.Count < ld.Requests {
		t.Fatalf("reconnect: errors %v, %d requests, %d connects", ld.Errors, ld.Requests, ld.Connect.Latency.Count)
	}
	o = run(t, result.Workload{Addr: "unix:" + dir + "/nobody.sock", Size: 10, Conns: 2, Duration: 200 * time.Millisecond})
	if o.Load.Requests != 0 || o.Load.Errors["connect_refused"] == 0 {
		t.Errorf("nothing listening: %d requests, errors %v: want refused connects", o.Load.Requests, o.Load.Errors)
	}
}

// A request that times out is lost with its connection; the reconnected
// connection's replies are checked against its own requests: no mismatch
// follows (before, the lost request left every later reply one pattern off).
// Both loops, closed and open, with a pipeline of 2.
func TestTimeoutThenCleanReplies(t *testing.T) {
	for _, rate := range []float64{0, 2000} {
		var once atomic.Bool
		s := startServer(t, &testServer{proto: "echo", size: 16, before: func(n int64, _ []byte) {
			if n >= 200 && once.CompareAndSwap(false, true) {
				time.Sleep(400 * time.Millisecond) // past the 150 ms timeout
			}
		}})
		o := run(t, result.Workload{Addr: s.addr(), Size: 16, Conns: 1, Pipeline: 2, Rate: rate, Duration: time.Second, Warmup: 50 * time.Millisecond,
			Timeout: 150 * time.Millisecond, Backoff: 10 * time.Millisecond})
		ld := o.Load
		if ld.Errors["timeout"] == 0 || ld.Errors["mismatch"] != 0 || ld.Requests < 100 {
			t.Errorf("rate %v: errors %v over %d requests, want a timeout and no mismatch", rate, ld.Errors, ld.Requests)
		}
	}
}

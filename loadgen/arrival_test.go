package loadgen

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/gonum/stat"

	"concbench/internal/result"
)

// The schedules themselves, exactly: fixed sends keep their grid (each gap
// exactly the period, no drift after 100,000 sends); exponential gaps have the
// period as their mean and a coefficient of variation of 1. Over n = 100,000
// gaps the mean's standard error is period/√n (0.3%) and the CV's about 1/√n
// too (0.3%): tolerances of 2% are over six standard errors, and the seed is
// fixed, so the test is deterministic.
func TestSchedules(t *testing.T) {
	const n = 100000
	for _, arrival := range []string{ArrivalFixed, ArrivalExp} {
		t.Run(arrival, func(t *testing.T) {
			sh := &shared{open: true, periodNS: 4e6, phaseNS: 1e6, exp: arrival == ArrivalExp}
			sh.cfg.Seed = 42
			l := &loop{sh: sh, t0: 1e9, rng: rand.New(rand.NewPCG(42, 3))}
			c := &conn{gid: 3}
			due := l.firstDue(c)
			gaps := make([]float64, 0, n)
			for range n {
				c.k++
				next := l.nextDue(c, due)
				gaps = append(gaps, float64(next-due))
				due = next
			}
			mean, sd := stat.MeanStdDev(gaps, nil)
			switch arrival {
			case ArrivalFixed:
				if first := l.firstDue(&conn{gid: 3}); first != 1e9+3e6 {
					t.Errorf("first send of connection 3 at %d, want t0 + 3 phases", first)
				}
				if sd != 0 || mean != 4e6 || due != 1e9+3e6+n*4e6 {
					t.Errorf("fixed gaps: mean %.1f sd %.3f, last due %d: want exactly 4e6 apart on the grid", mean, sd, due)
				}
			case ArrivalExp:
				if math.Abs(mean/4e6-1) > 0.02 || math.Abs(sd/mean-1) > 0.02 {
					t.Errorf("exponential gaps: mean %.0f ns (want 4e6 ± 2%%), CV %.3f (want 1 ± 0.02)", mean, sd/mean)
				}
			}
		})
	}
}

// The Anderson–Darling statistic tells exponential gaps from others: a seeded
// exponential sample passes (its A*² is far below the critical value for this
// seed; at the 1% level one sample in a hundred would not), evenly spaced gaps,
// uniform gaps and gaps batched in pairs (every other one zero: two sends in
// one pass of the loop) are rejected.
func TestAndersonDarlingExp(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	sample := func(f func(i int) float64) []float64 {
		x := make([]float64, 2000)
		for i := range x {
			x[i] = f(i)
		}
		return x
	}
	for _, tc := range []struct {
		name string
		x    []float64
		fits bool
	}{
		{"exponential", sample(func(int) float64 { return rng.ExpFloat64() * 300 }), true},
		{"evenly spaced", sample(func(int) float64 { return 300 }), false},
		{"uniform", sample(func(int) float64 { return rng.Float64() * 600 }), false},
		{"batched in pairs", sample(func(i int) float64 {
			if i%2 == 0 {
				return 0
			}
			return rng.ExpFloat64() * 600
		}), false},
	} {
		a := andersonDarlingExp(tc.x)
		if fits := a <= result.ADCritical; fits != tc.fits {
			t.Errorf("%s: A*² = %.3f, fits %v, want %v", tc.name, a, fits, tc.fits)
		}
	}
}

// The trend test on literal timelines: a queue growing through the window is
// unstable; noise, a single slow entry and a small steady drift are not; too
// few entries are not tested.
func TestStationarity(t *testing.T) {
	tl := func(p50 ...int64) []result.Second {
		out := []result.Second{{Warmup: true, Requests: 5, P50US: 99999}}
		for _, v := range p50 {
			out = append(out, result.Second{Requests: 100, P50US: v})
		}
		return append(out, result.Second{Requests: 3, P50US: 1}) // the partial last entry
	}
	for _, tc := range []struct {
		name             string
		tl               []result.Second
		tested, unstable bool
	}{
		{"queue growing", tl(100, 150, 240, 300, 420, 500, 610, 700, 820, 900, 1000, 1150), true, true},
		{"stall, then a slow drain", tl(100, 110, 95, 105, 100, 98, 90000, 80000, 70000, 60000, 50000, 40000), true, true},
		{"noise", tl(100, 130, 90, 120, 95, 140, 85, 110, 125, 92, 118, 101), true, false},
		{"one slow entry", tl(100, 110, 95, 105, 100, 9800, 90, 102, 97, 104, 99, 101), true, false},
		{"small drift", tl(100, 103, 106, 109, 112, 115, 118, 121, 124, 127, 130, 133), true, false},
		// A backlog from the warm-up, still growing: 200 ms to 420 ms over the
		// window's 1.2 s (0.2 s a second), less than twice its start.
		{"backlog growing", tl(200000, 220000, 240000, 260000, 280000, 300000, 320000, 340000, 360000, 380000, 400000, 420000), true, true},
		{"too few", tl(100, 200, 400, 800, 1600), false, false},
	} {
		st := stationarity(tc.tl, 0.1)
		if st.Tested != tc.tested || st.Unstable != tc.unstable {
			t.Errorf("%s: tested %v unstable %v (p %.4f, first %.0f last %.0f), want %v %v",
				tc.name, st.Tested, st.Unstable, st.P, st.FirstP50US, st.LastP50US, tc.tested, tc.unstable)
		}
	}
}

// fitArrival on literal send times: a Poisson process's sends (cumulative
// exponential gaps) fit, with a CV near 1 and the share below the resolution
// an exponential's; the same sends with every other one held back to go out
// with the next (bunched by a busy client) are distorted; evenly spaced sends
// have a CV of 0 and no fit computed.
func TestFitArrival(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	times := func(gap func(i int) int64) []int64 {
		ts := make([]int64, 4000)
		for i := 1; i < len(ts); i++ {
			ts[i] = ts[i-1] + gap(i)
		}
		return ts
	}
	poisson := times(func(int) int64 { return int64(rng.ExpFloat64() * 500e3) })
	bunched := slices.Clone(poisson)
	for i := 1; i+1 < len(bunched); i += 2 {
		bunched[i] = bunched[i+1] // held back, sent with the next
	}
	even := times(func(int) int64 { return 500e3 })
	res := 50e3 // 50 µs
	for _, tc := range []struct {
		name      string
		process   string
		ts        []int64
		distorted bool
	}{{"poisson", ArrivalExp, poisson, false}, {"bunched", ArrivalExp, bunched, true}, {"even", ArrivalFixed, even, false}} {
		f := fitArrival(tc.process, [][]int64{tc.ts}, res)
		if f == nil || f.Distorted != tc.distorted {
			t.Errorf("%s: %+v, want distorted %v", tc.name, f, tc.distorted)
			continue
		}
		switch tc.name {
		case "poisson":
			if math.Abs(f.CV-1) > 0.05 || math.Abs(f.Below-f.BelowExpected) > 0.02 || math.Abs(f.MeanGapUS/500-1) > 0.05 {
				t.Errorf("poisson: CV %.3f, below %.3f (expected %.3f), mean %.1f µs", f.CV, f.Below, f.BelowExpected, f.MeanGapUS)
			}
		case "even":
			if f.CV > 1e-9 || f.AD != 0 {
				t.Errorf("even: CV %g, A*² %g", f.CV, f.AD)
			}
		}
	}
}

// Live pacing: Poisson arrivals at 2000 req/s over 40 connections to a fast
// server reach the rate, and the result carries the arrival process, its
// seed and the fit of the sends that went out (logged: on a quiet machine a
// CV of 1.0 and A*² well below the critical value; beside other tests' load,
// the client's own sends bunch and the fit says so — as it should). Evenly
// spaced sends keep their mean too; their exact spacing is TestSchedules'.
func TestOpenLoopArrivalsLive(t *testing.T) {
	s := startServer(t, &testServer{proto: "echo", size: 16})
	for _, arrival := range []string{ArrivalExp, ArrivalFixed} {
		o := run(t, result.Workload{Addr: s.addr(), Size: 16, Conns: 40, Rate: 2000, Arrival: arrival, Duration: 1500 * time.Millisecond, Warmup: 100 * time.Millisecond})
		ld := o.Load
		a := ld.Arrival
		if ld.ErrorsTotal != 0 || a == nil || a.Process != arrival || o.Workload.Arrival != arrival {
			t.Fatalf("%s: errors %v, arrival fit %+v, workload arrival %q", arrival, ld.Errors, a, o.Workload.Arrival)
		}
		t.Logf("%s: %d gaps, mean %.1f µs, CV %.3f, A*² %.2f above %.0f µs (%.3f below, %.3f expected); %.0f req/s, %d of %d sends parked", arrival, a.Sample, a.MeanGapUS, a.CV, a.AD, a.ResolutionUS, a.Below, a.BelowExpected, ld.Throughput, ld.ParkedSends, ld.ScheduledSends)
		if math.Abs(a.MeanGapUS/500-1) > 0.1 || a.Sample < 2000 {
			t.Errorf("%s: mean gap %.1f µs over %d gaps, want 500 ± 10%% over most of the window's 3000", arrival, a.MeanGapUS, a.Sample)
		}
		if (arrival == ArrivalExp) != (o.Workload.Seed != 0 && a.ResolutionUS >= 20) {
			t.Errorf("%s: seed %d, resolution %.0f µs: want both for exp only", arrival, o.Workload.Seed, a.ResolutionUS)
		}
		if ld.UnderRate || ld.Stationarity == nil || !ld.Stationarity.Tested {
			t.Errorf("%s: a fast server at 2000 req/s: under rate %v, stationarity %+v; want a tested window at the rate", arrival, ld.UnderRate, ld.Stationarity)
		}
	}
}

// A serial server of 0.8 ms per request (a sleep, overshooting by ~0.1 ms)
// under 1000 req/s is 80–90% busy; stalled 300 ms in the middle of the
// window, it works off the backlog at only 100–250 requests a second, so the
// latency stays high to the end: the window is unstable, though the server
// keeps up with the rate on average. Not parallel: it measures time.
func TestOpenLoopStallUnstable(t *testing.T) {
	s := startServer(t, &testServer{proto: "echo", size: 16, serial: true, service: 800 * time.Microsecond, before: func(n int64, _ []byte) {
		if n == 800 {
			time.Sleep(300 * time.Millisecond)
		}
	}})
	o := run(t, result.Workload{Addr: s.addr(), Size: 16, Conns: 1, Rate: 1000, Duration: 2 * time.Second})
	st := o.Load.Stationarity
	if st == nil || !st.Tested || !st.Unstable {
		t.Fatalf("stationarity %+v: want an unstable window", st)
	}
	if !strings.Contains(strings.Join(o.Warnings, "\n"), "unstable: the latency kept rising") {
		t.Errorf("warnings %q do not say the window was unstable", o.Warnings)
	}
}

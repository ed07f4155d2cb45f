package loadgen

import (
	"context"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"concbench/internal/result"
	"concbench/loadgen/search"
)

// md1WaitCDF is P(W ≤ t) in an M/D/1 queue of arrival rate lambda and service
// time d (Erlang 1909): (1−ρ) Σ_{k=0}^{⌊t/d⌋} (λ(kd−t))^k / k! · e^{−λ(kd−t)}.
func md1WaitCDF(t, lambda, d float64) float64 {
	sum := 0.0
	for k := 0; float64(k)*d <= t; k++ {
		x := lambda * (float64(k)*d - t)
		sum += math.Pow(x, float64(k)) / math.Gamma(float64(k)+1) * math.Exp(-x)
	}
	return (1 - lambda*d) * sum
}

// md1Capacity is the highest Poisson rate at which a server of deterministic
// service d answers a fraction q of requests within bound (wait + service).
func md1Capacity(d, bound, q float64) float64 {
	lo, hi := 0.0, 1/d
	for range 100 {
		mid := (lo + hi) / 2
		if md1WaitCDF(bound-d, mid, d) >= q {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// The analytic values the test relies on: at ρ → 0 no one waits; p99 of the
// wait grows without bound as ρ → 1.
func TestMD1(t *testing.T) {
	if p := md1WaitCDF(0, 100, 1e-3); math.Abs(p-0.9) > 1e-12 {
		t.Errorf("P(W=0) at ρ=0.1: %g, want 0.9", p)
	}
	// A simulation of the queue (Lindley's recursion, 2,000,000 Poisson
	// arrivals at 561/s, 1 ms service) put p99 of the response at 4.98 ms.
	if c := md1Capacity(1e-3, 5e-3, 0.99); math.Abs(c-561) > 5 {
		t.Errorf("M/D/1 capacity for p99 ≤ 5 ms at 1 ms service: %.0f/s, want 561 ± 5", c)
	}
}

// -search against a server of known service time: one connection to a server
// that takes 2 ms a request (a sleep, which overshoots by a steady ~0.1 ms here;
// a busy wait would be exact but would hold a core for the test's half minute,
// starving other packages' timing tests), Poisson arrivals, is an M/D/1 queue
// whose service time d is what the closed-loop calibration measures (the sleep
// and the round trip). The capacity found for
// p99 ≤ 10 ms is within 25% of the analytic one: p99 over the ~500 requests
// of a step is itself noisy (a few percent of the rate near the knee), and a
// shared machine's stalls (other packages' tests run beside this one) only
// ever make a step fail early — the 2 ms service keeps them small beside it.
// Not parallel: it measures time.
func TestSearchMD1(t *testing.T) {
	if testing.Short() {
		t.Skip("about 30 s of open-loop steps")
	}
	if os.Getenv("CONCBENCH_TIMING_TESTS") == "" {
		// Beside other packages' tests (go test ./... runs two at a time) the
		// server's 2 ms overshot to tens of ms: no queue is M/D/1 then.
		t.Skip("a timing test, run alone by make test: CONCBENCH_TIMING_TESTS=1 go test -run TestSearchMD1 ./loadgen/")
	}
	s := startServer(t, &testServer{proto: "echo", size: 16, service: 2 * time.Millisecond})
	// Up to three searches: other packages' tests share the machine, and a
	// neighbour's burst fails steps early. A search that is wrong (a bound
	// misread, steps misjudged) is wrong every time.
	//
	// The M/D/1 reference needs a deterministic service: a host that cannot
	// keep the server's 2 ms sleep (measured 2.7–2.9 ms on every attempt of
	// one CI-equivalent run, while the same code measured near 2 ms all day)
	// stretches and scatters it, and the queue is no longer M/D/1. Such a
	// run says nothing of the search: it is skipped with the measured
	// service times, unless some attempt's service was within 20% of 2 ms.
	const service = 2 * time.Millisecond
	keptTime := false
	var services []string
	for attempt := 1; ; attempt++ {
		res, d := searchMD1(t, s.addr())
		want := md1Capacity(d, 10e-3, 0.99)
		t.Logf("attempt %d: service %.0f µs (calibrated %.0f req/s); capacity %.0f [%.0f–%.0f], M/D/1 %.0f", attempt, d*1e6, res.CalibratedRate, res.Capacity, res.CapacityLo, res.CapacityHi, want)
		if math.Abs(res.Capacity/want-1) <= 0.25 {
			return
		}
		keptTime = keptTime || d <= 1.2*service.Seconds()
		services = append(services, fmt.Sprintf("%.0f µs", d*1e6))
		if attempt == 3 {
			if !keptTime {
				t.Skipf("the host did not keep the server's %v service (measured %s): no M/D/1 queue to compare with", service, strings.Join(services, ", "))
			}
			t.Fatalf("capacity %.0f req/s in three searches, want within 25%% of the M/D/1 value %.0f", res.Capacity, want)
		}
	}
}

// searchMD1 runs one search of p99 ≤ 10 ms over one connection to addr, and
// returns it with the service time its calibration measured, s.
func searchMD1(t *testing.T, addr string) (*result.Search, float64) {
	w := result.Workload{Addr: addr, Size: 16, Conns: 1, Duration: 2 * time.Second, Warmup: 200 * time.Millisecond}
	slo, err := search.ParseSLO("p99<=10ms")
	if err != nil {
		t.Fatal(err)
	}
	var d float64
	sr := search.Searcher{SLO: slo, Arrival: ArrivalExp, Rounds: 2, Tolerance: 0.05,
		Calibrate: func(ctx context.Context) (float64, error) {
			o := run(t, w)
			d = 1 / o.Load.Throughput
			return o.Load.Throughput, nil
		},
		Step: func(ctx context.Context, round int, rate float64) (result.SearchStep, error) {
			sw := w
			sw.Rate, sw.Arrival = rate, ArrivalExp
			o := run(t, sw)
			st := slo.Judge(round, rate, &result.Run{Load: o.Load})
			t.Logf("round %d: %.0f req/s offered, %.0f achieved, p99 %d µs, pass %v %s", round, rate, st.Achieved, st.P99US, st.Pass, st.Why)
			return st, nil
		}}
	res, err := sr.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return res, d
}

package search

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"concbench/internal/result"
)

func TestParseSLO(t *testing.T) {
	for _, tc := range []struct {
		in   string
		p    float64
		d    time.Duration
		fail string
	}{
		{"p99<=1ms", 99, time.Millisecond, ""},
		{"p99.9 <= 500us", 99.9, 500 * time.Microsecond, ""},
		{"p50<2ms", 50, 2 * time.Millisecond, ""},
		{"p97<=1ms", 0, 0, "percentile 97 is not recorded"},
		{"p99<=fast", 0, 0, "want pN<=DURATION"},
		{"99<=1ms", 0, 0, "want pN<=DURATION"},
		{"p99<=0.1us", 0, 0, "at least 1µs"},
	} {
		o, err := ParseSLO(tc.in)
		switch {
		case tc.fail != "" && (err == nil || !strings.Contains(err.Error(), tc.fail)):
			t.Errorf("%q: %v, want an error saying %q", tc.in, err, tc.fail)
		case tc.fail == "" && (err != nil || o.Percentile != tc.p || o.Bound != tc.d):
			t.Errorf("%q: %+v %v, want p%g <= %v", tc.in, o, err, tc.p, tc.d)
		}
	}
}

// A synthetic server whose steps pass exactly up to a capacity: every round
// ends within the tolerance below it, each bisection takes the steps it
// should, and one that holds at the peak is "at least" the peak.
func TestSearcher(t *testing.T) {
	for _, tc := range []struct {
		name     string
		capacity float64
		atLeast  bool
	}{{"below the peak", 700, false}, {"at the peak", 1e9, true}, {"never", 0, false}} {
		t.Run(tc.name, func(t *testing.T) {
			var steps []float64
			s := Searcher{SLO: SLO{Text: "p99<=1ms", Percentile: 99, Bound: time.Millisecond}, Rounds: 3, Tolerance: 0.05,
				Calibrate: func(context.Context) (float64, error) { return 1000, nil },
				Step: func(_ context.Context, round int, rate float64) (result.SearchStep, error) {
					steps = append(steps, rate)
					return result.SearchStep{Round: round, Rate: rate, Pass: rate <= tc.capacity}, nil
				}}
			res, err := s.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Capacities) != 3 || res.AtLeast != tc.atLeast || res.Level != 0.75 {
				t.Fatalf("%+v", res)
			}
			want := min(tc.capacity, 1000)
			if res.Capacity > want || res.Capacity < want-50 || res.CapacityLo > res.Capacity || res.CapacityHi < res.Capacity {
				t.Errorf("capacity %.1f [%.1f–%.1f], want within 50 (5%% of the peak) below %.0f", res.Capacity, res.CapacityLo, res.CapacityHi, want)
			}
			// The peak, then halvings down to a bracket of 50: 5 more per round.
			if wantSteps := map[bool]int{true: 3, false: 18}[tc.atLeast]; len(steps) != wantSteps || len(res.Steps) != wantSteps {
				t.Errorf("%d steps (%v), want %d", len(steps), steps, wantSteps)
			}
		})
	}
	failing := Searcher{SLO: SLO{Percentile: 99, Bound: time.Millisecond},
		Calibrate: func(context.Context) (float64, error) { return 1000, nil },
		Step: func(context.Context, int, float64) (result.SearchStep, error) {
			return result.SearchStep{}, errors.New("server would not start")
		}}
	if _, err := failing.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "server would not start") {
		t.Errorf("a step that cannot run: %v, want the search to stop saying why", err)
	}
}

// Judge: a step fails for errors, under rate, instability or a latency over
// the bound, and says which.
func TestJudge(t *testing.T) {
	o, _ := ParseSLO("p99<=1ms")
	run := func(f func(*result.Load)) *result.Run {
		r := &result.Run{Load: result.Load{Requests: 1000, Throughput: 900, Latency: result.Percentiles{P50US: 300, P99US: 900}}}
		f(&r.Load)
		return r
	}
	for _, tc := range []struct {
		name string
		r    *result.Run
		why  string
	}{
		{"pass", run(func(*result.Load) {}), ""},
		{"slow", run(func(l *result.Load) { l.Latency.P99US = 1200 }), "p99 1200 µs > 1000 µs"},
		{"errors", run(func(l *result.Load) { l.ErrorsTotal = 2 }), "2 errors"},
		{"under rate", run(func(l *result.Load) { l.UnderRate, l.UnderRateCause = true, "server: x" }), "under rate: server: x"},
		{"unstable", run(func(l *result.Load) { l.Stationarity = &result.Stationarity{Tested: true, Unstable: true} }), "unstable"},
	} {
		st := o.Judge(1, 1000, tc.r)
		if st.Pass != (tc.why == "") || !strings.HasPrefix(st.Why, tc.why) {
			t.Errorf("%s: pass %v why %q, want %q", tc.name, st.Pass, st.Why, tc.why)
		}
	}
}

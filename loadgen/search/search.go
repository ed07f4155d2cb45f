// Package search finds a server's capacity at a latency objective: the highest
// open-loop rate at which a percentile of the latency stays within a bound
// (result.Search). It only decides which rates to try and what they say; the
// caller runs each step (loadgen's -search runs a trial per step).
package search

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/montanaflynn/stats"

	"concbench/internal/result"
)

// SLO is a latency objective: the Percentile-th percentile at most Bound.
type SLO struct {
	Text       string
	Percentile float64
	Bound      time.Duration
}

// Percentiles an objective may name: those every result records.
var Percentiles = []float64{50, 90, 99, 99.9, 99.99}

var sloRE = regexp.MustCompile(`^\s*p([0-9]+(?:\.[0-9]+)?)\s*<=?\s*([0-9.]+[a-zµ]+)\s*$`)

// ParseSLO parses "p99<=1ms" (p50, p90, p99, p99.9 or p99.99; any duration).
func ParseSLO(s string) (SLO, error) {
	m := sloRE.FindStringSubmatch(s)
	if m == nil {
		return SLO{}, fmt.Errorf("objective %q: want pN<=DURATION, e.g. p99<=1ms or p99.9<=500us", s)
	}
	p, _ := strconv.ParseFloat(m[1], 64)
	if !slices.Contains(Percentiles, p) {
		return SLO{}, fmt.Errorf("objective %q: percentile %g is not recorded; want one of p50, p90, p99, p99.9, p99.99", s, p)
	}
	d, err := time.ParseDuration(m[2])
	if err != nil || d < time.Microsecond {
		return SLO{}, fmt.Errorf("objective %q: bound %q: want a duration of at least 1µs, e.g. 1ms", s, m[2])
	}
	return SLO{Text: s, Percentile: p, Bound: d}, nil
}

// Latency is p's value at the objective's percentile, µs.
func (o SLO) Latency(p result.Percentiles) int64 {
	switch o.Percentile {
	case 50:
		return p.P50US
	case 90:
		return p.P90US
	case 99:
		return p.P99US
	case 99.9:
		return p.P999US
	}
	return p.P9999US
}

// Judge makes a step of run r, offered rate: it passes when the latency at the
// percentile is within the bound, no request failed, and the run is neither
// under rate nor unstable nor without a measured window.
func (o SLO) Judge(round int, rate float64, r *result.Run) result.SearchStep {
	ld := r.Load
	st := result.SearchStep{Round: round, Rate: rate, Achieved: ld.Throughput, LatencyUS: o.Latency(ld.Latency),
		P50US: ld.Latency.P50US, P99US: ld.Latency.P99US, UnderRate: ld.UnderRate, Errors: ld.ErrorsTotal, ClientBound: r.ClientBound}
	if ld.Stationarity != nil {
		st.Unstable = ld.Stationarity.Unstable
	}
	if r.Server != nil {
		st.ServerCPU = r.Server.CPUCoresMean
	}
	bound := o.Bound.Microseconds()
	switch {
	case ld.Requests == 0:
		st.Why = "no request measured"
	case st.Errors > 0:
		st.Why = fmt.Sprintf("%d errors", st.Errors)
	case st.UnderRate:
		st.Why = "under rate: " + ld.UnderRateCause
	case st.Unstable:
		st.Why = "unstable: the latency kept rising"
	case st.LatencyUS > bound:
		st.Why = fmt.Sprintf("p%g %d µs > %d µs", o.Percentile, st.LatencyUS, bound)
	default:
		st.Pass = true
	}
	return st
}

// The defaults of a search: bisection rounds, and the bracket's width (a
// fraction of the calibrated peak) at which a round stops.
const (
	DefaultRounds    = 3
	DefaultTolerance = 0.05
)

// Resolve is rounds and tol with their defaults for zero.
func Resolve(rounds int, tol float64) (int, float64) {
	if rounds == 0 {
		rounds = DefaultRounds
	}
	if tol == 0 {
		tol = DefaultTolerance
	}
	return rounds, tol
}

// Searcher runs a search. Calibrate runs the closed loop and returns its
// throughput; Step runs one open-loop step at a rate and returns it judged.
type Searcher struct {
	SLO       SLO
	Arrival   string
	Rounds    int     // independent bisections; 0 means DefaultRounds
	Tolerance float64 // the bracket's width, relative to the peak, at which a bisection stops; 0 means DefaultTolerance
	Calibrate func(ctx context.Context) (float64, error)
	Step      func(ctx context.Context, round int, rate float64) (result.SearchStep, error)
	// Log, if set, is told each step as it is judged.
	Log func(result.SearchStep)
}

// Run calibrates and bisects. An error means the search could not go on (a
// step could not run, or ctx ended); the steps so far are in the result.
func (s Searcher) Run(ctx context.Context) (*result.Search, error) {
	rounds, tol := Resolve(s.Rounds, s.Tolerance)
	if rounds < 1 || tol <= 0 || tol >= 1 {
		return nil, errors.New("search: rounds must be at least 1 and the tolerance within (0, 1)")
	}
	out := &result.Search{SLO: s.SLO.Text, Percentile: s.SLO.Percentile, BoundUS: s.SLO.Bound.Microseconds(),
		Arrival: s.Arrival, Rounds: rounds, Tolerance: tol}
	peak, err := s.Calibrate(ctx)
	if err != nil {
		return out, fmt.Errorf("search: calibration: %w", err)
	}
	if peak <= 0 || math.IsNaN(peak) {
		return out, fmt.Errorf("search: calibration measured %g req/s: nothing to search under", peak)
	}
	out.CalibratedRate = peak
	step := func(round int, rate float64) (bool, error) {
		st, err := s.Step(ctx, round, rate)
		if err != nil {
			return false, fmt.Errorf("search: round %d, step at %.0f req/s: %w", round, rate, err)
		}
		out.Steps = append(out.Steps, st)
		if s.Log != nil {
			s.Log(st)
		}
		return st.Pass, nil
	}
	for round := 1; round <= rounds; round++ {
		lo, hi := 0.0, peak
		ok, err := step(round, peak)
		if err != nil {
			return out, err
		}
		if ok {
			out.AtLeast = true
			out.Capacities = append(out.Capacities, peak)
			continue
		}
		for hi-lo > tol*peak {
			mid := (lo + hi) / 2
			ok, err := step(round, mid)
			if err != nil {
				return out, err
			}
			if ok {
				lo = mid
			} else {
				hi = mid
			}
		}
		out.Capacities = append(out.Capacities, lo)
	}
	out.Capacity, _ = stats.Median(out.Capacities)
	out.CapacityLo, out.CapacityHi = slices.Min(out.Capacities), slices.Max(out.Capacities)
	out.Level = 1 - 2*math.Pow(0.5, float64(len(out.Capacities)))
	return out, nil
}

package bench

import (
	"fmt"
	"slices"

	"github.com/montanaflynn/stats"

	"concbench/internal/result"
)

// The run's noise, measured at its source (result.Host): steal and foreign
// work on the measured CPUs over each window, and the wake-up round trip
// between a server and a client CPU probed before each trial — which on a
// shared virtual machine moves with the host's load and sets what one
// connection can do.

// NoiseFindings says what the host did over the run: steal, the disturbed
// trials and the worst foreign work, the wake-up round trips, and how closely
// the lowest concurrency's throughput followed them.
func NoiseFindings(d *Dataset, s *Summary) []string {
	var steal, foreign []float64
	var rtts []float64
	disturbed := 0
	type pair struct{ rel, rtt float64 }
	var pairs []pair // lowest-concurrency trials: throughput relative to the cell's median, and the probe
	lowest := slices.Min(s.Spec.Conns)
	for _, t := range s.Trials {
		r := d.Results[t.Key()]
		if r == nil || r.Host == nil || t.Counted {
			continue
		}
		h := r.Host
		steal, foreign = append(steal, h.StealShare), append(foreign, h.ForeignShare)
		if h.Disturbed {
			disturbed++
		}
		if h.Before == nil {
			continue
		}
		rtts = append(rtts, h.Before.WakeRTTUS)
		if cs := s.Cells[t.Cell.Key()]; t.Cell.Conns == lowest && t.Cell.adaptive() && !h.Disturbed && cs.Throughput.Median > 0 && r.Load.Throughput > 0 {
			pairs = append(pairs, pair{r.Load.Throughput / cs.Throughput.Median, h.Before.WakeRTTUS})
		}
	}
	if len(steal) == 0 {
		return []string{"Not measured: no trial's result has the host's counters (results before schema 4, or loadgen not pinned)."}
	}
	var out []string
	maxSteal, _ := stats.Max(steal)
	if maxSteal == 0 {
		out = append(out, fmt.Sprintf("Steal: 0 in every one of the %d windows — this hypervisor reports none, so the host's share of the CPUs shows only in the probes below.", len(steal)))
	} else {
		med, _ := stats.Median(steal)
		out = append(out, fmt.Sprintf("Steal: median %.1f%%, at most %.1f%% of a window's measured CPUs.", 100*med, 100*maxSteal))
	}
	maxForeign, _ := stats.Max(foreign)
	out = append(out, fmt.Sprintf("Foreign work on the measured CPUs (other processes' user and system time beyond the server's and loadgen's): at most %.1f%% of a window; %d of %d windows disturbed (over %.0f%%), each left out of its cell's figures while the cell had two others.",
		100*maxForeign, disturbed, len(foreign), 100*result.DisturbedAt))
	if len(rtts) > 0 {
		med, _ := stats.Median(rtts)
		lo, _ := stats.Min(rtts)
		hi, _ := stats.Max(rtts)
		line := fmt.Sprintf("Wake-up round trip between a server and a client CPU, probed before each trial: median %.1f µs, %.1f–%.1f µs over the run (a one-connection request is two such wake-ups).", med, lo, hi)
		if len(pairs) >= 8 {
			var rel, rt []float64
			for _, p := range pairs {
				rel, rt = append(rel, p.rel), append(rt, p.rtt)
			}
			if rho, err := stats.Spearman(rel, rt); err == nil {
				line += fmt.Sprintf(" At %s, a trial's throughput relative to its cell's median against its probe's round trip: Spearman ρ = %.2f over %d trials", plural(float64(lowest), "connection"), rho, len(pairs))
				switch {
				case rho <= -0.5:
					line += " — the spread of those cells is the host's wake-up latency, which moves with the host's load and which the interleaved repetitions spread over every model alike."
				case rho <= -0.3:
					line += " — part of their spread follows the host's wake-up latency."
				default:
					line += " — their spread does not follow the wake-up latency."
				}
			}
		}
		out = append(out, line)
	}
	return out
}

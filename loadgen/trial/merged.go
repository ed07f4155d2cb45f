package trial

// The part of a merged result's summary that says how it was merged: how the
// agents' windows met, and a line per agent with its share and what limited
// it (result.Merge).

import (
	"fmt"
	"io"
	"time"

	"concbench/internal/result"
)

// printMerge writes how a merged result (loadgen merge, loadgen -agents) was
// merged and a line per agent with its share and what limited it; nothing if
// r is not a merge.
func printMerge(w io.Writer, r *result.Run) {
	mg := r.Merge
	if mg == nil {
		return
	}
	ld := r.Load
	clocks := "on the agents' clocks, as recorded"
	if mg.Coordinated {
		clocks = "on the coordinator's clock: each agent's times moved by its measured offset"
	}
	fmt.Fprintf(w, "\n  merged from %d results: common window %s from %s, %.1f%% of the shortest agent's; timelines aligned within %v (%s)\n",
		len(mg.Inputs), secs(ld.Seconds), time.Unix(0, ld.WindowStartUnixNS).UTC().Format("2006-01-02 15:04:05.000"), 100*mg.Overlap, time.Duration(mg.TimelineSkewNS).Round(time.Microsecond), clocks)
	fmt.Fprintf(w, "  %-20s %-16s %7s %9s %10s %8s %10s %9s %9s %7s  %s\n",
		"agent", "host", "conns", "rate", "requests", "seconds", "req/s", "p50", "p99", "errors", "client")
	var bound []result.MergeInput
	for _, in := range mg.Inputs {
		client := fmt.Sprintf("%.0f%% busy", 100*in.ClientBusy)
		if in.ClientBound {
			client += ", CLIENT-BOUND"
			bound = append(bound, in)
		}
		for _, v := range []struct {
			set  bool
			what string
		}{{in.UnderRate, "under rate"}, {in.Unstable, "unstable"}, {in.Distorted, "arrivals distorted"}, {in.Disturbed, "disturbed"}, {in.Server, "sampled the server"}} {
			if v.set {
				client += "; " + v.what
			}
		}
		fmt.Fprintf(w, "  %-20s %-16s %7d %9s %10d %8s %10.1f %9s %9s %7d  %s\n",
			in.Name, in.Host, in.Conns, rateOf(in.Rate), in.Requests, secs(in.Seconds), in.Throughput, us(in.P50US), us(in.P99US), in.Errors, client)
	}
	fmt.Fprintf(w, "  %-20s %-16s %7d %9s %10d %8s %10.1f %9s %9s %7d\n",
		"merged", "", r.Config.Workload.Conns, rateOf(ld.TargetRate), ld.Requests, secs(ld.Seconds), ld.Throughput, us(ld.Latency.P50US), us(ld.Latency.P99US), ld.ErrorsTotal)
	fmt.Fprintln(w, "  throughput: the agents' summed, each agent's requests over its own window")
	if mg.Coordinated {
		fmt.Fprint(w, "  clocks (agent − coordinator, read over ssh; true to ± half the round trip):")
		for _, in := range mg.Inputs {
			fmt.Fprintf(w, " %s %v ±%v;", in.Name, time.Duration(in.ClockOffsetNS), time.Duration(in.ClockRTTNS)/2)
		}
		fmt.Fprintln(w)
	}
	for _, in := range bound {
		fmt.Fprintf(w, "  BOTTLENECK: %s (host %s) was client-bound (its CPUs %.0f%% busy): its connections' throughput is its own limit, not the server's\n", in.Name, in.Host, 100*in.ClientBusy)
	}
	switch {
	case mg.ServerFrom != "" && mg.ServerClockRTTNS > 0:
		fmt.Fprintf(w, "  server figures: %s's (it sampled the server on its host; clock %v ±%v)\n",
			mg.ServerFrom, time.Duration(mg.ServerClockOffsetNS), time.Duration(mg.ServerClockRTTNS)/2)
	case mg.ServerFrom != "":
		fmt.Fprintf(w, "  server figures: %s's (it sampled the server)\n", mg.ServerFrom)
	case mg.ServerConflict != "":
		fmt.Fprintf(w, "  server figures: CONFLICT: %s\n", mg.ServerConflict)
	default:
		fmt.Fprintln(w, "  server figures: none (no agent sampled the server)")
	}
	if ld.Mode == "open" {
		fmt.Fprintln(w, "  arrivals and stationarity: each agent's (a failed one is flagged on its line); the merged result does not recompute them")
	}
	fmt.Fprintln(w, "  timeline: requests and errors summed per entry; the entries' percentiles are not merged (not in the results)")
}

// rateOf is an open-loop rate in req/s, "-" for a closed loop's.
func rateOf(r float64) string {
	if r == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", r)
}

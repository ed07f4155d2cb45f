package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"concbench/loadgen/merge"
	"concbench/loadgen/trial"
)

// mergeOptions are loadgen merge's.
type mergeOptions struct {
	files []string // the results to merge, in order
	out   string   // -o FILE.json; "" writes none
}

// parseMerge parses loadgen merge's arguments: flags may come before, between
// or after the files.
func parseMerge(args []string, stderr io.Writer) (mergeOptions, error) {
	var o mergeOptions
	fs := flag.NewFlagSet("loadgen merge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.out, "o", "", "write the merged result as JSON to `FILE.json`, and its latency histogram to FILE.hgrm")
	fs.Usage = func() { mergeUsage(fs) }
	for {
		if err := fs.Parse(args); err != nil {
			return o, err
		}
		if fs.NArg() == 0 {
			break
		}
		o.files = append(o.files, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(o.files) < 2 {
		return o, fmt.Errorf("merge: give at least two results to merge (got %d); see loadgen merge -h", len(o.files))
	}
	return o, nil
}

// runMerge is `loadgen merge`: it returns the exit status (0 merged, 1 merged
// but requests failed in it or the result could not be written, 2 bad
// arguments or inputs that cannot be merged).
func runMerge(args []string, stdout, stderr io.Writer) int {
	o, err := parseMerge(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		return 2
	}
	in, err := merge.Read(o.files)
	if err != nil {
		fmt.Fprintln(stderr, "loadgen: merge:", err)
		return 2
	}
	r, err := merge.Merge(in)
	if err != nil {
		fmt.Fprintln(stderr, "loadgen: merge:", err)
		return 2
	}
	if o.out != "" {
		if err := merge.Write(o.out, r); err != nil {
			fmt.Fprintln(stderr, "loadgen: merge:", err)
			return 1
		}
	}
	trial.PrintSummary(stdout, r)
	for _, w := range r.Warnings {
		fmt.Fprintln(stderr, "loadgen: warning:", w)
	}
	if r.Load.ErrorsTotal > 0 || r.Load.Idle != nil && r.Load.Idle.ErrorsTotal > 0 {
		fmt.Fprintf(stderr, "loadgen: merge: %d errors in the merged run\n", r.Load.ErrorsTotal)
		return 1
	}
	return 0
}

func mergeUsage(fs *flag.FlagSet) {
	fmt.Fprint(fs.Output(), `usage: loadgen merge A.json B.json [C.json …] [-o ALL.json]

Merges the results of several loadgen runs that drove the same server at the
same time — agents on several hosts, each with its share of the connections
and of the open-loop rate — into the one result a single client holding all
their connections would have measured, and prints its summary and a line per
agent (its requests, throughput, latency, and whether it was client-bound: the
bottleneck).

  counts     summed: requests, errors by kind, in flight at the end, sends
             scheduled and parked, connections, idle connections' heartbeats,
             udp-echo's datagram account (its loss rate recomputed)
  histograms merged (HdrHistogram, exact): latency, uncorrected latency, send
             lag, connect latency, heartbeats; every percentile is read from
             the merge, never averaged
  rate       throughput and the open-loop target rate are the agents' sums
             (each agent's requests over its own window); the achieved-rate
             gate is recomputed; arrivals and stationarity stay each agent's
  window     the agents' common overlap (each agent's own is in the result's
             merge.inputs, with its share)
  timeline   requests and errors summed entry by entry, the entries aligned on
             each agent's load start (absolute time, to the nearest step)
  server     the figures of the one agent that sampled it (-model or
             -server-pid); several that sampled it conflict, and none is kept

Refused (exit 2, saying why): fewer than two results; a file that is not a
loadgen result, or one older than schema 6 (which does not say when its window
was); results whose configurations differ (protocol, size, pipeline, closed or
open loop, duration, server address, model, … — the field is named; each
agent's connections, idle connections, rate, seed, loops and CPUs are its own);
windows overlapping by less than 95% of the shortest; two agents that each
started their own server; one run given twice; a -search result, or an
already merged one.
The agents' times are their own clocks': their offsets are not corrected here.

Exit status: 0 merged; 1 merged, but requests failed in the merged run (the
result is still written), or -o could not be written; 2 bad arguments or
inputs.

Examples:
  loadgen -addr 10.0.0.1:7000 -c 500 -d 10s -o a.json     # on host A
  loadgen -addr 10.0.0.1:7000 -c 500 -d 10s -o b.json     # on host B, at the same time
  loadgen merge a.json b.json -o all.json

Flags:
`)
	fs.PrintDefaults()
}

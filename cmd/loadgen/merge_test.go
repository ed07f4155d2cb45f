package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"concbench/internal/result"
	"concbench/loadgen"
)

// writeResult writes a literal closed-loop result of conns connections, its
// window from start for 2 s, and returns its path.
func writeResult(t *testing.T, dir, name string, conns int, start time.Time, mutate func(*result.Run)) string {
	t.Helper()
	lat := hdr.New(1, 60_000_000, 3)
	for i := range 1000 * conns {
		lat.RecordValue(int64(50 + i%400))
	}
	conn := hdr.New(1, 60_000_000, 3)
	for range conns {
		conn.RecordValue(80)
	}
	enc := func(h *hdr.Histogram) string {
		b, err := h.Encode(hdr.V2CompressedEncodingCookieBase)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	n := lat.TotalCount()
	r := &result.Run{Schema: result.SchemaVersion, Started: start,
		Config: result.Config{Workload: result.Workload{Addr: "127.0.0.1:7000", Proto: "echo", Conns: conns, Pipeline: 1, Size: 64,
			Duration: 2 * time.Second, Loops: 1, TimelineStep: time.Second}},
		Env: result.Env{Hostname: name + "-host"},
		Load: result.Load{Mode: "closed", Requests: n, Seconds: 2, Throughput: float64(n) / 2,
			Latency: loadgen.Percentiles(lat), LatencyHist: enc(lat),
			Connect:         result.Connect{Target: conns, Established: conns, Latency: loadgen.Percentiles(conn), LatencyHist: enc(conn)},
			Steady:          &result.Steady{State: result.SteadyOK, ServedAtStart: conns},
			LoadStartUnixNS: start.UnixNano(), WindowStartUnixNS: start.UnixNano(), WindowEndUnixNS: start.Add(2 * time.Second).UnixNano(),
			Timeline: []result.Second{{T: 0, Requests: n / 2}, {T: 1, Requests: n / 2}}, TimelineStepSeconds: 1},
		Client: result.Client{CPUs: 1, CPUCores: 0.5, Busy: 0.5},
	}
	if mutate != nil {
		mutate(r)
	}
	path := filepath.Join(dir, name+".json")
	if err := result.WriteFile(path, r); err != nil {
		t.Fatal(err)
	}
	return path
}

// loadgen merge: exit 0 with the merged summary and the result written;
// 1 when the merged run counts errors; 2, saying what is wrong, for bad
// arguments and inputs that cannot be merged.
func TestMergeCommand(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	a := writeResult(t, dir, "a", 2, t0, nil)
	b := writeResult(t, dir, "b", 3, t0.Add(20*time.Millisecond), func(r *result.Run) { r.ClientBound, r.Client.Busy = true, 0.95 })
	bigger := writeResult(t, dir, "bigger", 3, t0, func(r *result.Run) { r.Config.Workload.Size = 128 })
	late := writeResult(t, dir, "late", 3, t0.Add(time.Second), nil)
	failed := writeResult(t, dir, "failed", 3, t0, func(r *result.Run) { r.Load.Errors, r.Load.ErrorsTotal = map[string]int64{"reset": 1}, 1 })
	garbage := filepath.Join(dir, "garbage.json")
	if err := os.WriteFile(garbage, []byte("not a result"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "all.json")
	tests := []struct {
		name   string
		args   []string
		status int
		stdout []string
		stderr []string
	}{
		{"merged", []string{a, "-o", out, b}, 0,
			[]string{"5 connections", "5000 requests", "merged from 2 results", "a.json", "BOTTLENECK: " + b + " (host b-host) was client-bound (its CPUs 95% busy)", "histogram: all.hgrm"},
			[]string{"was client-bound"}},
		{"help", []string{"-h"}, 0, nil, []string{"usage: loadgen merge A.json B.json", "Refused (exit 2", "-o FILE.json"}},
		{"one", []string{a}, 2, nil, []string{"at least two results to merge (got 1)"}},
		{"none", nil, 2, nil, []string{"at least two results to merge (got 0)"}},
		{"bad flag", []string{"-x", a, b}, 2, nil, []string{"flag provided but not defined: -x"}},
		{"garbage", []string{a, garbage}, 2, nil, []string{garbage + " is not a loadgen result"}},
		{"missing", []string{a, filepath.Join(dir, "nope.json")}, 2, nil, []string{"nope.json: no such file"}},
		{"configurations", []string{a, bigger}, 2, nil, []string{"differ in workload.size (64 and 128)"}},
		{"windows", []string{a, late}, 2, nil, []string{"windows do not overlap by 50% of the shortest"}},
		{"errors", []string{a, failed}, 1, []string{"ERRORS: 1 (reset 1)"}, []string{"1 errors in the merged run"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if got := runMerge(tt.args, &stdout, &stderr); got != tt.status {
				t.Errorf("exit %d, want %d; stderr:\n%s", got, tt.status, stderr.String())
			}
			for _, want := range tt.stdout {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
				}
			}
			for _, want := range tt.stderr {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
				}
			}
		})
	}
	r, err := result.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.Load.Requests != 5000 || r.Config.Workload.Conns != 5 || r.Merge == nil || len(r.Merge.Inputs) != 2 || !r.ClientBound || r.HistogramFile != "all.hgrm" {
		t.Errorf("written: %d requests, %d conns, merge %v, client bound %v, histogram %q; want 5000, 5, two inputs, true, all.hgrm",
			r.Load.Requests, r.Config.Workload.Conns, r.Merge != nil, r.ClientBound, r.HistogramFile)
	}
	if _, err := os.Stat(filepath.Join(dir, "all.hgrm")); err != nil {
		t.Error(err)
	}
}

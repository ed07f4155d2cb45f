package trial

// The server's figures: /proc samples of its process tree turned into the
// result's, over the run and over the measured window. Pure: the sampler feeds
// them.

import (
	"slices"
	"time"

	"concbench/internal/procstat"
	"concbench/internal/result"
)

// maxSpan is how many sample intervals CPUCoresMax is measured over: without a
// cgroup, /proc's CPU times are in 10 ms ticks, so over one 100 ms interval a
// fully busy core reads anywhere from 0.9 to 1.1 cores (or more, with several
// threads each rounding up); over five the error is a fifth of that.
const maxSpan = 5

// serverFigures turns /proc samples into the server's figures: samples over the
// whole run (T from the load start), summaries over the measured window. cpus is
// how many CPUs the server may run on (0: unknown): no measurement of its CPU use
// can honestly exceed it.
func serverFigures(samples []procstat.Tree, pid int, loadStart, mStart, mEnd time.Time, cpus int) *result.Server {
	s := &result.Server{PID: pid, Samples: []result.ProcSample{}}
	var first, last *procstat.Tree
	var inWindow []*procstat.Tree
	for i := range samples {
		t := &samples[i]
		ps := result.ProcSample{T: t.When.Sub(loadStart).Seconds(), RSSBytes: t.RSSBytes, Threads: t.Threads, Procs: t.Procs()}
		if i > 0 {
			prev := &samples[i-1]
			if dt := t.When.Sub(prev.When).Seconds(); dt > 0 && t.CPU >= prev.CPU {
				ps.CPUCores = (t.CPU - prev.CPU).Seconds() / dt
			}
		}
		s.Samples = append(s.Samples, ps)
		if mStart.IsZero() || t.When.Before(mStart) || (!mEnd.IsZero() && t.When.After(mEnd)) {
			continue
		}
		if first == nil {
			first = t
		}
		inWindow = append(inWindow, t)
		last = t
		s.RSSMaxBytes = max(s.RSSMaxBytes, t.RSSBytes)
		s.ThreadsMax = max(s.ThreadsMax, t.Threads)
		s.ProcsMax = max(s.ProcsMax, t.Procs())
	}
	if first != nil && last != first && last.CPU >= first.CPU {
		s.CPUCoresMean = (last.CPU - first.CPU).Seconds() / last.When.Sub(first.When).Seconds()
	}
	// The busiest span of maxSpan intervals (or the whole window if shorter).
	span := min(maxSpan, len(inWindow)-1)
	for i := 0; span > 0 && i+span < len(inWindow); i++ {
		a, b := inWindow[i], inWindow[i+span]
		if dt := b.When.Sub(a.When).Seconds(); dt > 0 && b.CPU >= a.CPU {
			s.CPUCoresMax = max(s.CPUCoresMax, (b.CPU-a.CPU).Seconds()/dt)
		}
	}
	if cpus > 0 {
		s.CPUCoresMax = min(s.CPUCoresMax, float64(cpus))
	}
	return s
}

// treeChanged says whether the server's processes or its thread count changed
// between samples taken in the window [mStart, mEnd].
func treeChanged(samples []procstat.Tree, mStart, mEnd time.Time) bool {
	var first *procstat.Tree
	for i := range samples {
		t := &samples[i]
		if t.When.Before(mStart) || t.When.After(mEnd) {
			continue
		}
		if first == nil {
			first = t
		} else if t.Threads != first.Threads || !slices.Equal(t.PIDs, first.PIDs) {
			return true
		}
	}
	return false
}

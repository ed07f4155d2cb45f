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

// serverFigures turns /proc samples into the server's figures: samples over the
// whole run (T from the load start), summaries over the measured window.
func serverFigures(samples []procstat.Tree, pid int, loadStart, mStart, mEnd time.Time) *result.Server {
	s := &result.Server{PID: pid, Samples: []result.ProcSample{}}
	var first, last *procstat.Tree
	for i := range samples {
		t := &samples[i]
		ps := result.ProcSample{T: t.When.Sub(loadStart).Seconds(), RSSBytes: t.RSSBytes, Threads: t.Threads, Procs: t.Procs()}
		if i > 0 {
			prev := &samples[i-1]
			if dt := t.When.Sub(prev.When).Seconds(); dt > 0 && t.CPUTicks >= prev.CPUTicks {
				ps.CPUCores = procstat.CPUSeconds(t.CPUTicks-prev.CPUTicks) / dt
			}
		}
		s.Samples = append(s.Samples, ps)
		if mStart.IsZero() || t.When.Before(mStart) || (!mEnd.IsZero() && t.When.After(mEnd)) {
			continue
		}
		if first == nil {
			first = t
		} else {
			s.CPUCoresMax = max(s.CPUCoresMax, ps.CPUCores)
		}
		last = t
		s.RSSMaxBytes = max(s.RSSMaxBytes, t.RSSBytes)
		s.ThreadsMax = max(s.ThreadsMax, t.Threads)
		s.ProcsMax = max(s.ProcsMax, t.Procs())
	}
	if first != nil && last != first && last.CPUTicks >= first.CPUTicks {
		s.CPUCoresMean = procstat.CPUSeconds(last.CPUTicks-first.CPUTicks) / last.When.Sub(first.When).Seconds()
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

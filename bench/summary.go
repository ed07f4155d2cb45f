package bench

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/montanaflynn/stats"

	"concbench/internal/result"
)

// ConfLevel is the confidence asked of throughput intervals.
const ConfLevel = 0.95

// NoisyAt is the relative CI width above which a cell is called noisy.
const NoisyAt = 0.25

// CellSummary is a cell's repetitions reduced to the figures the report shows.
type CellSummary struct {
	Cell Cell `json:"cell"`
	// Planned, OK, Failed, Skipped count the cell's trials by status; a trial not
	// run yet is in Planned only.
	Planned int `json:"planned"`
	OK      int `json:"ok"`
	Failed  int `json:"failed"`
	Skipped int `json:"skipped"`
	// Measured is the number of trials with a result (ok, or failed with figures);
	// every figure below is over those.
	Measured int `json:"measured"`
	// Throughputs are the measured trials' requests/s, in repetition order.
	Throughputs []float64 `json:"throughputs"`
	Throughput  CI        `json:"throughput"`
	// Latency is read from the merge of every measured trial's histogram; Merged
	// is how many histograms went in (a result without one is left out).
	Latency result.Percentiles `json:"latency"`
	Merged  int                `json:"merged"`
	// Nines is the merged latency by percentile, for the "nines" plot.
	Nines []NinePoint `json:"nines,omitempty"`
	// CPUPerReqUS is the median over trials of the server's CPU time per request, µs.
	CPUPerReqUS float64 `json:"cpu_per_req_us"`
	// RSSMaxBytes, ThreadsMax and ProcsMax are the peaks over all trials.
	RSSMaxBytes int64 `json:"rss_max_bytes"`
	ThreadsMax  int   `json:"threads_max"`
	ProcsMax    int   `json:"procs_max"`
	// Errors are summed over the trials, by kind.
	Errors      map[string]int64 `json:"errors,omitempty"`
	ErrorsTotal int64            `json:"errors_total"`
	// ClientBound counts the trials whose load generator was saturated.
	ClientBound int `json:"client_bound"`
	// ActiveConns is the concurrency the server actually served, by Little's law:
	// median throughput × mean latency (closed loop, persistent connections only;
	// 0 otherwise). Far below Conns, most connections waited unanswered (a pool
	// smaller than the concurrency) and their waits are not in the percentiles.
	ActiveConns float64 `json:"active_conns,omitempty"`
	// Notes say what went wrong: failed and skipped trials, missing histograms.
	Notes []string `json:"notes,omitempty"`
	// Timeline is the first measured trial's per-second course.
	Timeline []result.Second `json:"timeline,omitempty"`
}

// NinePoint is the latency at one percentile.
type NinePoint struct {
	Percentile float64 `json:"percentile"` // 0 … 100
	US         float64 `json:"us"`
}

// Noisy reports whether the throughput interval is wide relative to the median.
func (s CellSummary) Noisy() bool { return s.Throughput.N >= 2 && s.Throughput.RelWidth() > NoisyAt }

// Starved reports whether fewer than half the connections were being served
// (see ActiveConns).
func (s CellSummary) Starved() bool {
	return s.ActiveConns > 0 && s.Cell.Conns > 1 && s.ActiveConns < 0.5*float64(s.Cell.Conns)
}

// HasData reports whether any trial measured the cell.
func (s CellSummary) HasData() bool { return s.Measured > 0 }

// Summarize reduces a cell's trials. recs and runs are by repetition (1-based
// index i-1); a missing record means not run, a nil run means no result.
func Summarize(c Cell, planned int, recs []*TrialRecord, runs []*result.Run) CellSummary {
	s := CellSummary{Cell: c, Planned: planned, Errors: map[string]int64{}}
	var merged *hdr.Histogram
	var cpu []float64
	closed := true
	for i, rec := range recs {
		if rec == nil {
			continue
		}
		switch rec.Status {
		case StatusOK:
			s.OK++
		case StatusFailed:
			s.Failed++
			s.Notes = append(s.Notes, fmt.Sprintf("rep %d failed (%s): %s", rec.Rep, rec.Failure, rec.Reason))
		case StatusSkipped:
			s.Skipped++
			s.Notes = append(s.Notes, fmt.Sprintf("rep %d skipped: %s", rec.Rep, rec.Reason))
		}
		r := runs[i]
		if r == nil {
			continue
		}
		s.Measured++
		closed = closed && r.Load.Mode == "closed"
		s.Throughputs = append(s.Throughputs, r.Load.Throughput)
		if r.Load.LatencyHist != "" {
			h, err := hdr.Decode([]byte(r.Load.LatencyHist))
			if err != nil {
				s.Notes = append(s.Notes, fmt.Sprintf("rep %d: latency histogram unreadable: %v", rec.Rep, err))
			} else {
				if merged == nil {
					merged = h
				} else {
					merged.Merge(h)
				}
				s.Merged++
			}
		} else {
			s.Notes = append(s.Notes, fmt.Sprintf("rep %d: no latency histogram in the result; left out of the percentiles", rec.Rep))
		}
		if r.Server != nil {
			if r.Load.Requests > 0 {
				cpu = append(cpu, r.Server.CPUCoresMean*r.Load.Seconds/float64(r.Load.Requests)*1e6)
			}
			s.RSSMaxBytes = max(s.RSSMaxBytes, r.Server.RSSMaxBytes)
			s.ThreadsMax = max(s.ThreadsMax, r.Server.ThreadsMax)
			s.ProcsMax = max(s.ProcsMax, r.Server.ProcsMax)
		}
		for k, n := range r.Load.Errors {
			s.Errors[k] += n
		}
		s.ErrorsTotal += r.Load.ErrorsTotal
		if r.ClientBound {
			s.ClientBound++
		}
		if s.Timeline == nil {
			s.Timeline = r.Load.Timeline
		}
	}
	s.Throughput = MedianCI(s.Throughputs, ConfLevel)
	if len(cpu) > 0 {
		s.CPUPerReqUS, _ = stats.Median(cpu)
	}
	if merged != nil && merged.TotalCount() > 0 {
		s.Latency = percentilesOf(merged)
		s.Nines = ninesOf(merged)
		if closed && !c.Reconnect {
			s.ActiveConns = s.Throughput.Median * s.Latency.MeanUS / 1e6
		}
	}
	if len(s.Errors) == 0 {
		s.Errors = nil
	}
	return s
}

func percentilesOf(h *hdr.Histogram) result.Percentiles {
	return result.Percentiles{
		Count: h.TotalCount(), MinUS: h.Min(), MeanUS: h.Mean(),
		P50US: h.ValueAtQuantile(50), P90US: h.ValueAtQuantile(90), P99US: h.ValueAtQuantile(99),
		P999US: h.ValueAtQuantile(99.9), P9999US: h.ValueAtQuantile(99.99), MaxUS: h.Max(),
	}
}

// ninesOf samples a histogram at percentiles 1-10^-e for e = 0, 0.1, … up to the
// resolution its count supports (at most 99.999%), and the maximum.
func ninesOf(h *hdr.Histogram) []NinePoint {
	n := h.TotalCount()
	maxE := min(5, math.Floor(math.Log10(float64(n))*10)/10)
	var pts []NinePoint
	for i := 0; float64(i)/10 <= maxE+1e-9; i++ {
		q := 100 * (1 - math.Pow(10, -float64(i)/10))
		pts = append(pts, NinePoint{Percentile: round6(q), US: float64(h.ValueAtQuantile(q))})
	}
	return pts
}

func round6(x float64) float64 { return math.Round(x*1e6) / 1e6 }

// Summary is a whole run summarised: every planned cell, by key.
type Summary struct {
	Spec  Spec
	Cells map[string]CellSummary // by Cell.Key
}

// Summarise reduces a dataset.
func Summarise(d *Dataset) *Summary {
	sp := d.Plan.Spec
	out := &Summary{Spec: sp, Cells: map[string]CellSummary{}}
	byCell := map[string][]Trial{}
	var order []Cell
	for _, t := range sp.Plan() {
		k := t.Cell.Key()
		if _, ok := byCell[k]; !ok {
			order = append(order, t.Cell)
		}
		byCell[k] = append(byCell[k], t)
	}
	for _, c := range order {
		ts := byCell[c.Key()]
		recs := make([]*TrialRecord, len(ts))
		runs := make([]*result.Run, len(ts))
		for i, t := range ts {
			if rec, ok := d.Records[t.Key()]; ok {
				recs[i] = &rec
			}
			runs[i] = d.Results[t.Key()]
		}
		out.Cells[c.Key()] = Summarize(c, len(ts), recs, runs)
	}
	return out
}

// Cell returns the summary of a sweep cell (zero if absent).
func (s *Summary) Cell(g Group, model string, conns int) CellSummary {
	c := Cell{Model: model, Proto: g.Proto, Work: g.Work, Reconnect: g.Reconnect, Conns: conns}
	if cs, ok := s.Cells[c.Key()]; ok {
		return cs
	}
	return CellSummary{Cell: c}
}

// ErrorsString is "reset 3, timeout 1" (kinds sorted).
func ErrorsString(errs map[string]int64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(errs)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, errs[k]))
	}
	return strings.Join(parts, ", ")
}

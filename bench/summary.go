package bench

import (
	"cmp"
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
	// P99s are the measured trials' own p99 latencies, µs, in repetition order:
	// what a comparison of two cells' p99 is tested on (Latency's percentiles,
	// from the merge, carry no spread).
	P99s []float64 `json:"p99s,omitempty"`
	// Nines is the merged latency by percentile, for the "nines" plot.
	Nines []NinePoint `json:"nines,omitempty"`
	// CPUPerReqUS is the median over trials of the server's CPU time per request,
	// µs; CPUPerReqs the trials' own, in repetition order.
	CPUPerReqUS float64   `json:"cpu_per_req_us"`
	CPUPerReqs  []float64 `json:"cpu_per_reqs,omitempty"`
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
	// The steady-state gate (result.Steady), over the measured trials whose
	// result has one (Gated of them; results of schema 1 have none):
	// HeldAtStart is the median of the connections served when the window opened,
	// OpenAtEnd the fewest open when it closed, IdleInWindow the most that
	// completed no request in it, and GateWaitSeconds the median time from the
	// load's start to the window's. Ceiling is the fewest connections served at
	// the window's start among the CeilingReps trials the gate opened at a
	// ceiling (the server held no more); NotSteady counts the trials that failed
	// because it never opened.
	Gated           int     `json:"gated,omitempty"`
	HeldAtStart     float64 `json:"held_at_start,omitempty"`
	OpenAtEnd       int     `json:"open_at_end,omitempty"`
	IdleInWindow    int     `json:"idle_in_window,omitempty"`
	GateWaitSeconds float64 `json:"gate_wait_seconds,omitempty"`
	Ceiling         int     `json:"ceiling,omitempty"`
	CeilingReps     int     `json:"ceiling_reps,omitempty"`
	NotSteady       int     `json:"not_steady,omitempty"`
	// Offered is an open-loop step's offered rate, req/s (the median over its
	// trials of the rate loadgen was given); UnderRate and Unstable count its
	// trials that missed the rate by more than 10% or whose latency kept rising
	// (loadgen's gates: the step did not measure the load asked for).
	Offered   float64 `json:"offered,omitempty"`
	UnderRate int     `json:"under_rate,omitempty"`
	Unstable  int     `json:"unstable,omitempty"`
	// Search is a search cell's capacity search (its one trial's).
	Search *result.Search `json:"search,omitempty"`
	// ServerKernel and ClientKernel are what a request cost the kernel on the
	// server's side (its whole tree) and on loadgen's, from the kernel's own
	// counts over the window (see KernelCost); nil when no trial counted them,
	// and then KernelMissing says why (the first trial's reason).
	ServerKernel  *KernelCost `json:"server_kernel,omitempty"`
	ClientKernel  *KernelCost `json:"client_kernel,omitempty"`
	KernelMissing string      `json:"kernel_missing,omitempty"`
	// Heartbeats are the idle connections' figures (Cell.Idle > 0), summed over
	// the measured trials, their latency read from the merge of the trials'
	// heartbeat histograms; nil without idle connections.
	Heartbeats *Heartbeats `json:"heartbeats,omitempty"`
	// Datagrams is udp-echo's account (result.Datagrams) summed over the
	// measured trials, with the server's own drops beside it; nil for the
	// stream protocols.
	Datagrams *DatagramSummary `json:"datagrams,omitempty"`
	// Disturbed counts the trials left out of the figures because another
	// process or the host took part of their measured CPUs (result.Host:
	// Disturbed); DisturbedKept the disturbed ones kept because the cell had
	// fewer than two others. (The host's figures themselves are read from the
	// results by NoiseFindings.)
	Disturbed     int `json:"disturbed,omitempty"`
	DisturbedKept int `json:"disturbed_kept,omitempty"`
	// LastFailed: the cell's last trial run failed or was skipped (adaptive
	// repetitions add none to it: what failed would fail again).
	LastFailed bool `json:"last_failed,omitempty"`
	// Notes say what went wrong: failed and skipped trials, missing histograms.
	Notes []string `json:"notes,omitempty"`
	// Timeline is the first measured trial's course, one entry per TimelineStep
	// seconds (a second in results that do not say); TimelineWait is that trial's
	// time from the load's start to the window's (0 without the gate: then the
	// warm-up), so that the window opens at TimelineWait.
	Timeline     []result.Second `json:"timeline,omitempty"`
	TimelineStep float64         `json:"timeline_step,omitempty"`
	TimelineWait float64         `json:"timeline_wait,omitempty"`
}

// DatagramSummary is a udp-echo cell's datagrams over its measured trials:
// loadgen's account of every request datagram of the windows (sums), the loss
// rate of each trial, and where the server says the lost ones went (from its
// counters at the window's edges, which its stats file gives every 100 ms:
// approximate).
type DatagramSummary struct {
	// The trials' accounts summed (result.Datagrams.Add): LossRate is Lost /
	// Sent over the trials, ClientDropped those lost at loadgen's own
	// sockets; LossRates is each trial's loss rate.
	result.Datagrams
	LossRates []float64 `json:"loss_rates"`
	// ServerRcvbuf is the datagrams the server's sockets dropped on arrival
	// (rcvbuf_drops), ServerDropped those it read and did not answer
	// (dropped_*), over the windows of the trials whose server reported
	// counters (ServerCounted of them).
	ServerRcvbuf  int64 `json:"server_rcvbuf"`
	ServerDropped int64 `json:"server_dropped"`
	ServerCounted int   `json:"server_counted"`
}

// addDatagrams adds a trial's datagram account to the cell's.
func (s *CellSummary) addDatagrams(r *result.Run) {
	d := r.Load.Datagrams
	if d == nil {
		return
	}
	ds := s.Datagrams
	if ds == nil {
		ds = &DatagramSummary{}
		s.Datagrams = ds
	}
	ds.Add(*d)
	ds.LossRates = append(ds.LossRates, d.LossRate)
	if sv := r.Server; sv != nil && sv.CountersAtWindowStart != nil && sv.CountersAtWindowEnd != nil {
		a, b := sv.CountersAtWindowStart, sv.CountersAtWindowEnd
		ds.ServerRcvbuf += b.Gauges["rcvbuf_drops"] - a.Gauges["rcvbuf_drops"]
		ds.ServerDropped += b.DroppedOversize + b.DroppedSendFull + b.DroppedSendError - a.DroppedOversize - a.DroppedSendFull - a.DroppedSendError
		ds.ServerCounted++
	}
}

// Heartbeats are what a cell's idle connections saw.
type Heartbeats struct {
	// EstablishedMin is the fewest idle connections open when a trial's ramp
	// ended; OpenAtEndMin the fewest still open at its end.
	EstablishedMin int   `json:"established_min"`
	OpenAtEndMin   int   `json:"open_at_end_min"`
	Sent           int64 `json:"sent"`
	Answered       int64 `json:"answered"`
	Late           int64 `json:"late"`
	Missed         int64 `json:"missed"`
	// Latency is the heartbeats' round trips, from the merged histograms.
	Latency     result.Percentiles `json:"latency"`
	ErrorsTotal int64              `json:"errors_total"`
	Errors      map[string]int64   `json:"errors,omitempty"`
}

// NinePoint is the latency at one percentile.
type NinePoint struct {
	Percentile float64 `json:"percentile"` // 0 … 100
	US         float64 `json:"us"`
}

// Noisy reports whether the throughput interval is wide relative to the median.
func (s CellSummary) Noisy() bool { return s.Throughput.N >= 2 && s.Throughput.RelWidth() > NoisyAt }

// Starved reports, for results without the steady-state gate (schema 1), whether
// fewer than half the connections were being served by Little's law (see
// ActiveConns). Gated results say it exactly: see Apart.
func (s CellSummary) Starved() bool {
	return s.Gated == 0 && s.ActiveConns > 0 && s.Cell.Conns > 1 && s.ActiveConns < 0.5*float64(s.Cell.Conns)
}

// Apart says why the cell's figures are not comparable with those of a server
// that served all its connections ("" when they are): the gate opened the window
// at a ceiling ("ceiling 240/1000": the server held only that many), some
// connections completed no request in the window ("unserved 12/1000"), some idle
// connections were lost or never held ("idle held 1010/5000"), fewer than 90% of
// the idle connections' heartbeats were answered ("heartbeats answered 0/2008":
// open, but never accepted), or, for
// results without the gate, Little's law says most connections waited
// ("starved ~8/100"). Such a cell is flagged in tables, drawn hollow and apart
// from its model's line, and left out of every ranking.
func (s CellSummary) Apart() string {
	switch {
	case s.Ceiling > 0:
		return fmt.Sprintf("ceiling %d/%d", s.Ceiling, s.Cell.Conns)
	case s.IdleInWindow > 0:
		return fmt.Sprintf("unserved %d/%d", s.IdleInWindow, s.Cell.Conns)
	case s.Heartbeats != nil && s.Heartbeats.OpenAtEndMin < s.Cell.Idle:
		return fmt.Sprintf("idle held %d/%d", s.Heartbeats.OpenAtEndMin, s.Cell.Idle)
	case s.Heartbeats != nil && float64(s.Heartbeats.Answered) < 0.9*float64(s.Heartbeats.Sent):
		// Open on the client's side but not served: waiting in the backlog
		// of a server that accepts no more (fork at its process cap).
		return fmt.Sprintf("heartbeats answered %d/%d", s.Heartbeats.Answered, s.Heartbeats.Sent)
	case s.Starved():
		return fmt.Sprintf("starved ~%.0f/%d", s.ActiveConns, s.Cell.Conns)
	}
	return ""
}

// Held is the connections the server held in the window: those served when it
// opened, by the gate, or the concurrency asked for in results without it.
func (s CellSummary) Held() float64 {
	if s.Gated > 0 {
		return s.HeldAtStart
	}
	return float64(s.Cell.Conns)
}

// HasData reports whether any trial measured the cell.
func (s CellSummary) HasData() bool { return s.Measured > 0 }

// Summarize reduces a cell's trials. recs and runs are by repetition (1-based
// index i-1); a missing record means not run, a nil run means no result.
func Summarize(c Cell, planned int, recs []*TrialRecord, runs []*result.Run) CellSummary {
	s := CellSummary{Cell: c, Planned: planned, Errors: map[string]int64{}}
	var merged *hdr.Histogram
	var cpu, held, wait, offered []float64
	var serverK, clientK kernelAcc
	var serverSys, clientSys *kernelAcc // the counted repetitions' syscalls
	var beats *hdr.Histogram
	closed := true
	// A disturbed trial is left out while the cell has two undisturbed ones.
	calm, disturbed := 0, 0
	for i, rec := range recs {
		if rec != nil && !rec.Counted && runs[i] != nil {
			if h := runs[i].Host; h != nil && h.Disturbed {
				disturbed++
			} else {
				calm++
			}
		}
	}
	dropDisturbed := calm >= 2
	if !dropDisturbed {
		s.DisturbedKept = disturbed
	}
	for i, rec := range recs {
		if rec == nil {
			continue
		}
		if !rec.Counted {
			s.LastFailed = rec.Status != StatusOK
		}
		switch rec.Status {
		case StatusOK:
			s.OK++
		case StatusFailed:
			s.Failed++
			if rec.Failure == FailNotSteady {
				s.NotSteady++
			}
			s.Notes = append(s.Notes, fmt.Sprintf("%s failed (%s): %s", rec.Label(), rec.Failure, rec.Reason))
		case StatusSkipped:
			s.Skipped++
			s.Notes = append(s.Notes, fmt.Sprintf("%s skipped: %s", rec.Label(), rec.Reason))
		}
		r := runs[i]
		if rec.Counted {
			// A counted repetition gives the syscalls and nothing else: its
			// times paid for the counting.
			if serverSys == nil {
				serverSys, clientSys = &kernelAcc{}, &kernelAcc{}
			}
			switch {
			case r == nil:
				why := fmt.Sprintf("not measured: %s has no result (%s: %s)", rec.Label(), rec.Status, rec.Reason)
				serverSys.addSyscalls(nil, why, 0)
				clientSys.addSyscalls(nil, why, 0)
			default:
				if r.Server != nil {
					serverSys.addSyscalls(r.Server.Kernel, cmp.Or(r.Server.KernelMissing, "not measured: no server counts"), r.Load.Requests)
				}
				clientSys.addSyscalls(r.Client.Kernel, cmp.Or(r.Client.KernelMissing, "not measured: no client counts"), r.Load.Requests)
			}
			continue
		}
		if r == nil {
			continue
		}
		if h := r.Host; h != nil && h.Disturbed && dropDisturbed {
			s.Disturbed++
			s.Notes = append(s.Notes, fmt.Sprintf("%s disturbed (%s): left out of the figures", rec.Label(), h.Why))
			continue
		}
		s.Measured++
		closed = closed && r.Load.Mode == "closed"
		if rate := r.Config.Workload.Rate; rate > 0 {
			offered = append(offered, rate)
		}
		if r.Load.UnderRate {
			s.UnderRate++
		}
		if st := r.Load.Stationarity; st != nil && st.Unstable {
			s.Unstable++
		}
		if r.Search != nil {
			s.Search = r.Search
		}
		s.Throughputs = append(s.Throughputs, r.Load.Throughput)
		if r.Load.Latency.Count > 0 {
			s.P99s = append(s.P99s, float64(r.Load.Latency.P99US))
		}
		if r.Load.LatencyHist != "" {
			var err error
			if merged, err = mergeHist(merged, r.Load.LatencyHist); err != nil {
				s.Notes = append(s.Notes, fmt.Sprintf("%s: latency histogram unreadable: %v", rec.Label(), err))
			} else {
				s.Merged++
			}
		} else {
			s.Notes = append(s.Notes, fmt.Sprintf("%s: no latency histogram in the result; left out of the percentiles", rec.Label()))
		}
		if r.Server != nil {
			if r.Load.Requests > 0 {
				cpu = append(cpu, r.Server.CPUCoresMean*r.Load.Seconds/float64(r.Load.Requests)*1e6)
			}
			s.RSSMaxBytes = max(s.RSSMaxBytes, r.Server.RSSMaxBytes)
			s.ThreadsMax = max(s.ThreadsMax, r.Server.ThreadsMax)
			s.ProcsMax = max(s.ProcsMax, r.Server.ProcsMax)
		}
		if id := r.Load.Idle; id != nil {
			hb := s.Heartbeats
			if hb == nil {
				hb = &Heartbeats{EstablishedMin: id.Established, OpenAtEndMin: id.OpenAtEnd, Errors: map[string]int64{}}
				s.Heartbeats = hb
			}
			hb.EstablishedMin, hb.OpenAtEndMin = min(hb.EstablishedMin, id.Established), min(hb.OpenAtEndMin, id.OpenAtEnd)
			hb.Sent, hb.Answered, hb.Late, hb.Missed = hb.Sent+id.Sent, hb.Answered+id.Answered, hb.Late+id.Late, hb.Missed+id.Missed
			hb.ErrorsTotal += id.ErrorsTotal
			for k, n := range id.Errors {
				hb.Errors[k] += n
			}
			if id.LatencyHist != "" {
				var err error
				if beats, err = mergeHist(beats, id.LatencyHist); err != nil {
					s.Notes = append(s.Notes, fmt.Sprintf("%s: heartbeat histogram unreadable: %v", rec.Label(), err))
				}
			}
		}
		s.addDatagrams(r)
		if r.Server != nil {
			serverK.add(r.Server.Kernel, r.Server.KernelMissing, r.Load.Requests)
		}
		clientK.add(r.Client.Kernel, r.Client.KernelMissing, r.Load.Requests)
		for k, n := range r.Load.Errors {
			s.Errors[k] += n
		}
		s.ErrorsTotal += r.Load.ErrorsTotal
		if r.ClientBound {
			s.ClientBound++
		}
		if st := r.Load.Steady; st != nil && (st.State == result.SteadyOK || st.State == result.SteadyCeiling) {
			if s.Gated == 0 || st.OpenAtEnd < s.OpenAtEnd {
				s.OpenAtEnd = st.OpenAtEnd
			}
			s.Gated++
			held = append(held, float64(st.ServedAtStart))
			wait = append(wait, st.WaitSeconds)
			s.IdleInWindow = max(s.IdleInWindow, st.IdleInWindow)
			if st.State == result.SteadyCeiling {
				if s.CeilingReps == 0 || st.ServedAtStart < s.Ceiling {
					s.Ceiling = st.ServedAtStart
				}
				s.CeilingReps++
			}
		}
		if s.Timeline == nil {
			s.Timeline, s.TimelineStep = r.Load.Timeline, r.Load.TimelineStepSeconds
			if s.TimelineStep <= 0 {
				s.TimelineStep = 1
			}
			s.TimelineWait = r.Config.Workload.Warmup.Seconds()
			if st := r.Load.Steady; st != nil && st.State != result.SteadyOff {
				s.TimelineWait = st.WaitSeconds
			}
		}
	}
	s.Throughput = MedianCI(s.Throughputs, ConfLevel)
	if len(offered) > 0 {
		s.Offered, _ = stats.Median(offered)
	}
	if len(cpu) > 0 {
		s.CPUPerReqUS, _ = stats.Median(cpu)
		s.CPUPerReqs = cpu
	}
	s.ServerKernel, s.ClientKernel = serverK.cost(serverSys), clientK.cost(clientSys)
	if beats != nil && beats.TotalCount() > 0 {
		s.Heartbeats.Latency = percentilesOf(beats)
	}
	if hb := s.Heartbeats; hb != nil && len(hb.Errors) == 0 {
		hb.Errors = nil
	}
	if s.ServerKernel == nil {
		s.KernelMissing = serverK.missing
	}
	if len(held) > 0 {
		s.HeldAtStart, _ = stats.Median(held)
		s.GateWaitSeconds, _ = stats.Median(wait)
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

// mergeHist adds the encoded histogram enc (a result's) to acc, nil for none
// yet, and returns the sum; acc is returned unchanged when enc cannot be read.
func mergeHist(acc *hdr.Histogram, enc string) (*hdr.Histogram, error) {
	h, err := hdr.Decode([]byte(enc))
	switch {
	case err != nil:
		return acc, err
	case acc == nil:
		return h, nil
	}
	acc.Merge(h)
	return acc, nil
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
	// Trials are the plan's trials, the adaptive repetitions included.
	Trials []Trial
}

// Summarise reduces a dataset.
func Summarise(d *Dataset) *Summary {
	sp := d.Plan.Spec
	out := &Summary{Spec: sp, Cells: map[string]CellSummary{}, Trials: d.Plan.Trials()}
	byCell := map[string][]Trial{}
	var order []Cell
	for _, t := range out.Trials {
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

// Cell returns the summary of a sweep cell without idle connections (zero if
// absent).
func (s *Summary) Cell(g Group, model string, conns int) CellSummary {
	return s.CellAt(g, model, conns, 0)
}

// CellAt returns the summary of a sweep cell with idle connections (zero if
// absent).
func (s *Summary) CellAt(g Group, model string, conns, idle int) CellSummary {
	c := g.cell(model, conns)
	c.Idle = idle
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

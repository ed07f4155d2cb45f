package bench

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/montanaflynn/stats"

	"concbench/internal/result"
)

// The "what this run shows" sentences: pure functions of a Summary, so that the
// report says only what the numbers support. They rank models only: a reference
// peer (peer:NAME) is never "led", "cheapest" or "slowest"; where one has
// figures, a separate sentence says how the models compare with it.

// measured lists the models (not the peers) with throughput figures in a cell
// row, fastest first.
func measured(s *Summary, g Group, conns int) []CellSummary {
	return ranked(s, g, conns, false)
}

// ranked lists the models, and the peers if withPeers, with throughput figures
// in a cell row, fastest first.
func ranked(s *Summary, g Group, conns int, withPeers bool) []CellSummary {
	var out []CellSummary
	for _, m := range s.Spec.Models {
		if IsPeer(m) && !withPeers {
			continue
		}
		if cs := s.Cell(g, m, conns); cs.Throughput.N > 0 {
			out = append(out, cs)
		}
	}
	slices.SortStableFunc(out, func(a, b CellSummary) int {
		switch {
		case a.Throughput.Median > b.Throughput.Median:
			return -1
		case a.Throughput.Median < b.Throughput.Median:
			return 1
		}
		return 0
	})
	return out
}

// LeadFinding says which model led a row by throughput, by how much over the
// runner-up, and whether that is significant, consistent or noise; which models
// cannot be told apart from the leader; and which was slowest. unit is "req/s"
// or "conn/s".
func LeadFinding(s *Summary, g Group, conns int, unit string) string {
	ms := measured(s, g, conns)
	head := fmt.Sprintf("c=%d: ", conns)
	switch len(ms) {
	case 0:
		return head + "no model has figures."
	case 1:
		return head + fmt.Sprintf("only %s has figures (%s %s).", ms[0].Cell.Model, Num(ms[0].Throughput.Median), unit)
	}
	l, r := ms[0], ms[1]
	cmp := Compare(l.Throughputs, r.Throughputs)
	var b strings.Builder
	fmt.Fprintf(&b, "%s**%s** led with %s %s [%s–%s]", head, l.Cell.Model, Num(l.Throughput.Median), unit, Num(l.Throughput.Lo), Num(l.Throughput.Hi))
	switch cmp.Verdict {
	case Significant:
		fmt.Fprintf(&b, ", %s ahead of %s (%s) — significant (Mann–Whitney p=%.2g)", Pct(cmp.Ratio), r.Cell.Model, Num(r.Throughput.Median), cmp.P)
	case Consistent:
		fmt.Fprintf(&b, ", %s ahead of %s (%s) in every repetition — consistent, but %d against %d repetitions cannot make it significant (p=%.2g)",
			Pct(cmp.Ratio), r.Cell.Model, Num(r.Throughput.Median), l.Throughput.N, r.Throughput.N, cmp.P)
	default:
		fmt.Fprintf(&b, ", but its %s over %s (%s) is within the noise (p=%.2g)", Pct(cmp.Ratio), r.Cell.Model, Num(r.Throughput.Median), cmp.P)
	}
	var tied []string
	for _, m := range ms[1:] {
		if Compare(l.Throughputs, m.Throughputs).Verdict == Noise {
			tied = append(tied, m.Cell.Model)
		}
	}
	if len(tied) > 1 {
		fmt.Fprintf(&b, "; cannot be told apart from the leader: %s", strings.Join(tied, ", "))
	}
	last := ms[len(ms)-1]
	if len(ms) > 2 {
		fmt.Fprintf(&b, "; slowest: %s at %s (%s of the leader)", last.Cell.Model, Num(last.Throughput.Median), pctOf(last.Throughput.Median/l.Throughput.Median))
	}
	b.WriteString(".")
	if l.ClientBound > 0 {
		b.WriteString(" The leader's load generator was saturated (client-bound): its figure is a floor.")
	}
	return b.String()
}

func pctOf(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "–"
	}
	if r < 0.1 {
		return fmt.Sprintf("%.1f%%", r*100)
	}
	return fmt.Sprintf("%.0f%%", r*100)
}

// ThroughputFindings is one LeadFinding per concurrency, and how the leader
// changed across the sweep.
func ThroughputFindings(s *Summary, g Group) []string {
	var out []string
	var leaders []string
	for _, c := range s.Spec.Conns {
		out = append(out, LeadFinding(s, g, c, "req/s"))
		if ms := measured(s, g, c); len(ms) > 0 {
			leaders = append(leaders, fmt.Sprintf("%s at c=%d", ms[0].Cell.Model, c))
		}
	}
	if len(leaders) > 1 {
		out = append(out, "Leaders across the sweep: "+strings.Join(leaders, ", ")+".")
	}
	return append(out, PeerFindings(s, g)...)
}

// peers lists the spec's reference peers.
func peers(sp Spec) []string {
	var out []string
	for _, m := range sp.Models {
		if IsPeer(m) {
			out = append(out, m)
		}
	}
	return out
}

// PeerFindings says, for each reference peer with figures, what it reached and
// how the leading model compares with it at each concurrency: "x% of it", and
// whether the difference is significant, consistent or within the noise.
func PeerFindings(s *Summary, g Group) []string {
	var out []string
	for _, p := range peers(s.Spec) {
		var parts []string
		for _, c := range s.Spec.Conns {
			pc := s.Cell(g, p, c)
			if pc.Throughput.N == 0 || pc.Throughput.Median <= 0 {
				continue
			}
			part := fmt.Sprintf("c=%d %s req/s", c, Num(pc.Throughput.Median))
			if pc.ClientBound > 0 {
				part += " (client-bound)"
			}
			if ms := measured(s, g, c); len(ms) > 0 {
				best := ms[0]
				cmp := Compare(best.Throughputs, pc.Throughputs)
				var verdict string
				switch cmp.Verdict {
				case Significant:
					verdict = fmt.Sprintf("significant, p=%.2g", cmp.P)
				case Consistent:
					verdict = "consistent in every repetition, too few for significance"
				default:
					verdict = fmt.Sprintf("within the noise, p=%.2g", cmp.P)
				}
				part += fmt.Sprintf(", the best model %s at %s of it (%s)", best.Cell.Model, pctOf(best.Throughput.Median/pc.Throughput.Median), verdict)
			}
			parts = append(parts, part)
		}
		if len(parts) > 0 {
			out = append(out, fmt.Sprintf("Reference %s (a peer, not ranked with the models): %s.", p, strings.Join(parts, "; ")))
		}
	}
	return out
}

// latencyCells are the cells of g at c with a latency histogram, less the starved
// ones (their histograms leave out the waits of most connections, so their low
// percentiles would rank first for the wrong reason); the starved are returned
// apart so a finding can say they were left out.
func latencyCells(s *Summary, g Group, c int) (ms, starved []CellSummary) {
	for _, m := range s.Spec.Models {
		switch cs := s.Cell(g, m, c); {
		case IsPeer(m), cs.Latency.Count == 0:
		case cs.Starved():
			starved = append(starved, cs)
		default:
			ms = append(ms, cs)
		}
	}
	return ms, starved
}

// starvedNote says which cells a latency finding left out, or nothing.
func starvedNote(starved []CellSummary) string {
	if len(starved) == 0 {
		return ""
	}
	var parts []string
	for _, cs := range starved {
		parts = append(parts, fmt.Sprintf("%s (~%.0f of %d connections served)", cs.Cell.Model, cs.ActiveConns, cs.Cell.Conns))
	}
	return " Left out as starved, their waits unmeasured: " + strings.Join(parts, ", ") + "."
}

// P99Findings names the lowest and highest p99 at each concurrency.
func P99Findings(s *Summary, g Group) []string {
	var out []string
	for _, c := range s.Spec.Conns {
		ms, starved := latencyCells(s, g, c)
		var refs []string
		for _, p := range peers(s.Spec) {
			if cs := s.Cell(g, p, c); cs.Latency.Count > 0 {
				refs = append(refs, fmt.Sprintf("%s %s", p, Micros(float64(cs.Latency.P99US))))
			}
		}
		var line string
		switch {
		case len(ms) >= 2:
			slices.SortStableFunc(ms, func(a, b CellSummary) int { return int(a.Latency.P99US - b.Latency.P99US) })
			lo, hi := ms[0], ms[len(ms)-1]
			line = fmt.Sprintf("c=%d: lowest p99 %s (%s), highest %s (%s), %s apart.",
				c, lo.Cell.Model, Micros(float64(lo.Latency.P99US)), hi.Cell.Model, Micros(float64(hi.Latency.P99US)),
				times(float64(hi.Latency.P99US)/float64(max(lo.Latency.P99US, 1))))
		case len(ms) == 1 && len(refs) > 0:
			line = fmt.Sprintf("c=%d: p99 %s (%s).", c, ms[0].Cell.Model, Micros(float64(ms[0].Latency.P99US)))
		default:
			continue
		}
		if len(refs) > 0 {
			line += " Reference: " + strings.Join(refs, ", ") + "."
		}
		out = append(out, line+starvedNote(starved))
	}
	if len(out) > 0 {
		out = append(out, "Percentiles come from the merged histograms of all repetitions and carry no interval; on a shared 2-core machine, read differences under about 1.5× with care.")
	}
	return out
}

func times(r float64) string {
	if r < 10 {
		return fmt.Sprintf("×%.1f", r)
	}
	return fmt.Sprintf("×%.0f", r)
}

// NinesFindings describes the tail at one concurrency.
func NinesFindings(s *Summary, g Group, conns int) []string {
	ms, starved := latencyCells(s, g, conns)
	if len(ms) < 2 {
		return nil
	}
	slices.SortStableFunc(ms, func(a, b CellSummary) int { return int(a.Latency.P999US - b.Latency.P999US) })
	lo, hi := ms[0], ms[len(ms)-1]
	worst := slices.MaxFunc(ms, func(a, b CellSummary) int { return int(a.Latency.MaxUS - b.Latency.MaxUS) })
	return []string{
		fmt.Sprintf("At c=%d the median latency ranged from %s to %s, the p99.9 from %s (%s) to %s (%s).",
			conns, Micros(float64(slices.MinFunc(ms, byP50).Latency.P50US)), Micros(float64(slices.MaxFunc(ms, byP50).Latency.P50US)),
			Micros(float64(lo.Latency.P999US)), lo.Cell.Model, Micros(float64(hi.Latency.P999US)), hi.Cell.Model) + starvedNote(starved),
		fmt.Sprintf("The slowest single request took %s (%s); a steep rise at the right of a line is a tail the median does not show.",
			Micros(float64(worst.Latency.MaxUS)), worst.Cell.Model),
	}
}

func byP50(a, b CellSummary) int { return int(a.Latency.P50US - b.Latency.P50US) }

// CPUFindings names the cheapest and costliest model per request at each
// concurrency.
func CPUFindings(s *Summary, g Group) []string {
	var out []string
	for _, c := range s.Spec.Conns {
		var ms []CellSummary
		var refs []string
		for _, m := range s.Spec.Models {
			cs := s.Cell(g, m, c)
			switch {
			case cs.CPUPerReqUS <= 0:
			case IsPeer(m):
				refs = append(refs, fmt.Sprintf("%s %s", m, Micros(cs.CPUPerReqUS)))
			default:
				ms = append(ms, cs)
			}
		}
		var line string
		switch {
		case len(ms) >= 2:
			lo := slices.MinFunc(ms, byCPU)
			hi := slices.MaxFunc(ms, byCPU)
			line = fmt.Sprintf("c=%d: cheapest %s at %s of server CPU per request, costliest %s at %s (%s).",
				c, lo.Cell.Model, Micros(lo.CPUPerReqUS), hi.Cell.Model, Micros(hi.CPUPerReqUS), times(hi.CPUPerReqUS/lo.CPUPerReqUS))
		case len(ms) == 1 && len(refs) > 0:
			line = fmt.Sprintf("c=%d: %s at %s of server CPU per request.", c, ms[0].Cell.Model, Micros(ms[0].CPUPerReqUS))
		default:
			continue
		}
		if len(refs) > 0 {
			line += " Reference: " + strings.Join(refs, ", ") + "."
		}
		out = append(out, line)
	}
	return out
}

func byCPU(a, b CellSummary) int {
	switch {
	case a.CPUPerReqUS < b.CPUPerReqUS:
		return -1
	case a.CPUPerReqUS > b.CPUPerReqUS:
		return 1
	}
	return 0
}

// MemoryFindings estimates each model's memory per connection from the peak RSS
// at the lowest and highest concurrency it was measured at.
func MemoryFindings(s *Summary, g Group) []string {
	type grow struct {
		model        string
		lo, hi       int
		rssLo, rssHi int64
		perConn      float64 // bytes
	}
	var gs []grow
	for _, m := range s.Spec.Models {
		if IsPeer(m) {
			continue
		}
		var cs []CellSummary
		for _, c := range s.Spec.Conns {
			if x := s.Cell(g, m, c); x.RSSMaxBytes > 0 {
				cs = append(cs, x)
			}
		}
		if len(cs) < 2 {
			continue
		}
		a, b := cs[0], cs[len(cs)-1]
		gs = append(gs, grow{m, a.Cell.Conns, b.Cell.Conns, a.RSSMaxBytes, b.RSSMaxBytes,
			float64(b.RSSMaxBytes-a.RSSMaxBytes) / float64(b.Cell.Conns-a.Cell.Conns)})
	}
	if len(gs) == 0 {
		return nil
	}
	slices.SortStableFunc(gs, func(a, b grow) int { return cmp.Compare(b.perConn, a.perConn) }) // largest first
	var parts []string
	for _, x := range gs {
		parts = append(parts, fmt.Sprintf("%s %s", x.model, perConn(x.perConn)))
	}
	top := gs[0]
	out := []string{
		fmt.Sprintf("Memory per added connection (peak RSS growth from the lowest to the highest concurrency, divided by the connections added): %s.", strings.Join(parts, ", ")),
		fmt.Sprintf("The costliest, %s, went from %s at c=%d to %s at c=%d.", top.model, MiB(top.rssLo), top.lo, MiB(top.rssHi), top.hi),
	}
	return out
}

func perConn(b float64) string {
	switch {
	case b >= 1<<20:
		return fmt.Sprintf("%.2f MiB", b/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.0f KiB", b/(1<<10))
	case b > -1<<10:
		return "< 1 KiB"
	}
	return fmt.Sprintf("%.0f KiB", b/(1<<10))
}

// TimelineRow is one model's timeline in numbers.
type TimelineRow struct {
	Model string
	// Steady is the median requests/s over the measured (not warm-up) whole seconds.
	Steady float64
	// First is the first second's requests relative to Steady.
	First float64
	// P99Median and P99Worst are the median and the worst per-second p99, µs, over
	// the measured seconds; WorstAt is the second of the worst.
	P99Median, P99Worst float64
	WorstAt             int
}

// TimelineRows reduces each model's timeline trial.
func TimelineRows(s *Summary) []TimelineRow {
	var rows []TimelineRow
	for _, m := range s.Spec.Models {
		c, ok := s.Spec.TimelineCell(m)
		if !ok {
			return nil
		}
		secs := wholeSeconds(s.Spec, c, s.Cells[c.Key()].Timeline)
		var reqs, p99s []float64
		row := TimelineRow{Model: m}
		for _, sec := range secs {
			if sec.Warmup {
				continue
			}
			reqs = append(reqs, float64(sec.Requests))
			p99s = append(p99s, float64(sec.P99US))
			if float64(sec.P99US) > row.P99Worst {
				row.P99Worst, row.WorstAt = float64(sec.P99US), sec.T
			}
		}
		if len(reqs) == 0 {
			continue
		}
		row.Steady, _ = stats.Median(reqs)
		row.P99Median, _ = stats.Median(p99s)
		if row.Steady > 0 {
			row.First = float64(secs[0].Requests) / row.Steady
		}
		rows = append(rows, row)
	}
	return rows
}

// TimelineFindings calls out slow starts and latency spikes.
func TimelineFindings(rows []TimelineRow) []string {
	var slow, spiky []string
	for _, r := range rows {
		if r.First < 0.8 {
			slow = append(slow, fmt.Sprintf("%s (%s of steady)", r.Model, pctOf(r.First)))
		}
		if r.P99Median > 0 && r.P99Worst > 3*r.P99Median {
			spiky = append(spiky, fmt.Sprintf("%s (%s at t=%d s vs a median %s)", r.Model, Micros(r.P99Worst), r.WorstAt, Micros(r.P99Median)))
		}
	}
	var out []string
	if len(slow) > 0 {
		out = append(out, "Slow first second: "+strings.Join(slow, ", ")+".")
	} else if len(rows) > 0 {
		out = append(out, "Every model reached at least 80% of its steady throughput in the first second.")
	}
	if len(spiky) > 0 {
		out = append(out, "p99 spikes above 3× the run's median p99: "+strings.Join(spiky, ", ")+".")
	} else if len(rows) > 0 {
		out = append(out, "No second's p99 exceeded 3× the run's median p99 for any model.")
	}
	return out
}

// wholeSeconds drops a trailing partial second (the load does not end on a
// second boundary) so it does not read as a drop in throughput.
func wholeSeconds(sp Spec, c Cell, secs []result.Second) []result.Second {
	total := sp.TrialDuration(c).Seconds()
	if n := len(secs); n > 0 && total != math.Trunc(total) && float64(n) > total {
		return secs[:n-1]
	}
	return secs
}

// WorkFindings says how much throughput each model kept under blocking work.
func WorkFindings(s *Summary, proto string, conns int) []string {
	var works []string
	for _, g := range sweepGroups(s.Spec) {
		if g.Proto == proto {
			works = append(works, g.Work)
		}
	}
	if len(works) < 2 || works[0] != "none" {
		return nil
	}
	var out []string
	for _, w := range works[1:] {
		type kept struct {
			model string
			r     float64
		}
		var ks []kept
		for _, m := range s.Spec.Models {
			if IsPeer(m) {
				continue
			}
			a := s.Cell(Group{Proto: proto, Work: "none"}, m, conns)
			b := s.Cell(Group{Proto: proto, Work: w}, m, conns)
			if a.Throughput.N > 0 && b.Throughput.N > 0 && a.Throughput.Median > 0 {
				ks = append(ks, kept{m, b.Throughput.Median / a.Throughput.Median})
			}
		}
		slices.SortStableFunc(ks, func(a, b kept) int { return cmp.Compare(b.r, a.r) }) // largest first
		var parts []string
		for _, k := range ks {
			parts = append(parts, fmt.Sprintf("%s %s", k.model, pctOf(k.r)))
		}
		if len(parts) > 0 {
			out = append(out, fmt.Sprintf("Throughput kept with work %s at c=%d, relative to no work: %s.", w, conns, strings.Join(parts, ", ")))
		}
	}
	return out
}

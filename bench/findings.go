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

// measured lists the models (not the peers) with comparable throughput figures
// in a cell row, fastest first: cells apart (see CellSummary.Apart) are left out.
func measured(s *Summary, g Group, conns int) []CellSummary {
	return ranked(s, g, conns, false, false)
}

// ranked lists the models, and the peers if withPeers, with throughput figures
// in a cell row, fastest first; cells apart only if withApart.
func ranked(s *Summary, g Group, conns int, withPeers, withApart bool) []CellSummary {
	var out []CellSummary
	for _, m := range s.Spec.Models {
		if IsPeer(m) && !withPeers {
			continue
		}
		if cs := s.Cell(g, m, conns); cs.Throughput.N > 0 && (withApart || cs.Apart() == "") {
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

// apartCells lists the models' cells of a row with figures that are apart (see
// CellSummary.Apart): left out of the row's rankings, and named by apartNote.
func apartCells(s *Summary, g Group, conns int) []CellSummary {
	var out []CellSummary
	for _, m := range s.Spec.Models {
		if cs := s.Cell(g, m, conns); !IsPeer(m) && cs.Measured > 0 && cs.Apart() != "" {
			out = append(out, cs)
		}
	}
	return out
}

// apartNote says which cells a finding left out and why, or nothing.
func apartNote(apart []CellSummary) string {
	if len(apart) == 0 {
		return ""
	}
	var parts []string
	for _, cs := range apart {
		parts = append(parts, fmt.Sprintf("%s (%s)", cs.Cell.Model, cs.Apart()))
	}
	return " Left out as not comparable — the server did not serve all its connections in the window: " + strings.Join(parts, ", ") + "."
}

// LeadFinding says which model led a row by throughput, by how much over the
// runner-up, and whether that is significant, consistent or noise; which models
// cannot be told apart from the leader; and which was slowest. unit is "req/s"
// or "conn/s".
func LeadFinding(s *Summary, g Group, conns int, unit string) string {
	ms := measured(s, g, conns)
	head := fmt.Sprintf("c=%d: ", conns)
	note := apartNote(apartCells(s, g, conns))
	switch len(ms) {
	case 0:
		return head + "no model has comparable figures." + note
	case 1:
		return head + fmt.Sprintf("only %s has comparable figures (%s %s).", ms[0].Cell.Model, Num(ms[0].Throughput.Median), unit) + note
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
	b.WriteString(note)
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
	var real, none []string
	for _, c := range s.Spec.Conns {
		out = append(out, LeadFinding(s, g, c, "req/s"))
		ms := measured(s, g, c)
		if len(ms) < 2 {
			continue
		}
		if v := Compare(ms[0].Throughputs, ms[1].Throughputs).Verdict; v == Noise {
			none = append(none, fmt.Sprintf("c=%d", c))
		} else {
			real = append(real, fmt.Sprintf("%s at c=%d (%s)", ms[0].Cell.Model, c, v))
		}
	}
	switch {
	case len(real) > 0 && len(none) > 0:
		out = append(out, fmt.Sprintf("Across the sweep, a lead the repetitions support: %s; at %s the fastest median is within the noise of the next, which is no lead.", strings.Join(real, ", "), strings.Join(none, ", ")))
	case len(real) > 0:
		out = append(out, "Across the sweep, a lead the repetitions support: "+strings.Join(real, ", ")+".")
	case len(none) > 1:
		out = append(out, "At no concurrency is the fastest median clear of the next beyond the noise: this run ranks no model first by throughput.")
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

// latencyCells are the cells of g at c with a latency histogram, less those apart
// (their histograms leave out the waits of the connections not served, so their
// low percentiles would rank first for the wrong reason); those are returned
// apart so a finding can say they were left out.
func latencyCells(s *Summary, g Group, c int) (ms, apart []CellSummary) {
	for _, m := range s.Spec.Models {
		switch cs := s.Cell(g, m, c); {
		case IsPeer(m), cs.Latency.Count == 0:
		case cs.Apart() != "":
			apart = append(apart, cs)
		default:
			ms = append(ms, cs)
		}
	}
	return ms, apart
}

// P99Findings names the lowest and highest p99 at each concurrency.
func P99Findings(s *Summary, g Group) []string {
	var out []string
	for _, c := range s.Spec.Conns {
		ms, apart := latencyCells(s, g, c)
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
		out = append(out, line+apartNote(apart))
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
	ms, apart := latencyCells(s, g, conns)
	if len(ms) < 2 {
		return nil
	}
	slices.SortStableFunc(ms, func(a, b CellSummary) int { return int(a.Latency.P999US - b.Latency.P999US) })
	lo, hi := ms[0], ms[len(ms)-1]
	worst := slices.MaxFunc(ms, func(a, b CellSummary) int { return int(a.Latency.MaxUS - b.Latency.MaxUS) })
	return []string{
		fmt.Sprintf("At c=%d the median latency ranged from %s to %s, the p99.9 from %s (%s) to %s (%s).",
			conns, Micros(float64(slices.MinFunc(ms, byP50).Latency.P50US)), Micros(float64(slices.MaxFunc(ms, byP50).Latency.P50US)),
			Micros(float64(lo.Latency.P999US)), lo.Cell.Model, Micros(float64(hi.Latency.P999US)), hi.Cell.Model) + apartNote(apart),
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
			case cs.Apart() != "":
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
		out = append(out, line+apartNote(apartCells(s, g, c)))
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

// MemoryFindings estimates each model's memory per held connection: the growth
// of the peak RSS from the lowest to the highest concurrency it was measured at,
// divided by the growth of the connections it held in the window (CellSummary.Held:
// served when the gate opened it, so a fork or thread model still in its ramp or
// at a ceiling is divided by what it held, not by what was asked). For models
// with a process or a thread per connection it also gives the same growth per
// process or thread added, counted from the tree itself.
func MemoryFindings(s *Summary, g Group) []string {
	gs := memoryGrowth(s, g)
	if len(gs) == 0 {
		return nil
	}
	slices.SortStableFunc(gs, func(a, b growth) int { return cmp.Compare(b.perConn, a.perConn) }) // largest first
	var parts, direct []string
	for _, x := range gs {
		part := fmt.Sprintf("%s %s", x.model, perConn(x.perConn))
		if x.heldHi < float64(x.hi.Cell.Conns) {
			part += fmt.Sprintf(" (held %.0f of %d at c=%d)", x.heldHi, x.hi.Cell.Conns, x.hi.Cell.Conns)
		}
		parts = append(parts, part)
		// A process or a thread per held connection: the RSS growth per
		// process (or thread) added, counted from the tree itself.
		dHeld := x.heldHi - x.heldLo
		dRSS := float64(x.hi.RSSMaxBytes - x.lo.RSSMaxBytes)
		switch dp, dt := float64(x.hi.ProcsMax-x.lo.ProcsMax), float64(x.hi.ThreadsMax-x.lo.ThreadsMax); {
		case dp >= 0.9*dHeld:
			direct = append(direct, fmt.Sprintf("%s %s per process (%d to %d processes)", x.model, perConn(dRSS/dp), x.lo.ProcsMax, x.hi.ProcsMax))
		case dt >= 0.9*dHeld:
			direct = append(direct, fmt.Sprintf("%s %s per thread (%d to %d threads)", x.model, perConn(dRSS/dt), x.lo.ThreadsMax, x.hi.ThreadsMax))
		}
	}
	top := gs[0]
	out := []string{
		fmt.Sprintf("Memory per held connection (peak RSS growth from the lowest to the highest concurrency, divided by the growth of the connections the server held in the window): %s.", strings.Join(parts, ", ")),
		fmt.Sprintf("The costliest, %s, went from %s with %s held to %s with %s.", top.model, MiB(top.lo.RSSMaxBytes), plural(top.heldLo, "connection"), MiB(top.hi.RSSMaxBytes), plural(top.heldHi, "connection")),
	}
	if len(direct) > 0 {
		out = append(out, "Where a process or a thread serves each connection, the same growth counted per process or thread added: "+strings.Join(direct, ", ")+" (RSS counts pages shared by processes once in each, so a figure per process is what a child maps, more than it adds).")
	}
	return out
}

// growth is a model's peak RSS growth over the sweep, per connection held.
type growth struct {
	model          string
	lo, hi         CellSummary
	heldLo, heldHi float64
	perConn        float64 // bytes
}

// memoryGrowth is each model's growth of the peak RSS from the lowest to the
// highest concurrency it was measured at, divided by the growth of the
// connections it held in the window (see MemoryFindings), in model order.
func memoryGrowth(s *Summary, g Group) []growth {
	var gs []growth
	for _, m := range s.Spec.Models {
		if IsPeer(m) {
			continue
		}
		var cs []CellSummary
		for _, c := range s.Spec.Conns {
			if x := s.Cell(g, m, c); x.RSSMaxBytes > 0 && x.Held() > 0 {
				cs = append(cs, x)
			}
		}
		if len(cs) < 2 {
			continue
		}
		a, b := cs[0], cs[len(cs)-1]
		if b.Held() <= a.Held() {
			continue
		}
		gs = append(gs, growth{m, a, b, a.Held(), b.Held(),
			float64(b.RSSMaxBytes-a.RSSMaxBytes) / (b.Held() - a.Held())})
	}
	return gs
}

// plural is "1 connection", "40 connections".
func plural(n float64, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%.0f %ss", n, what)
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
	// Steady is the median requests/s over the measured window's entries.
	Steady float64
	// First is the requests/s of the load's first second relative to Steady.
	First float64
	// P99Median and P99Worst are the median and the worst p99 of an entry, µs,
	// over the window's entries; WorstAt is when the worst one began, seconds
	// since the window opened.
	P99Median, P99Worst float64
	WorstAt             float64
	// Wait is the time from the load's start to the window's (the warm-up, or
	// the steady-state gate), seconds; Apart is CellSummary.Apart.
	Wait  float64
	Apart string
}

// TimelineRows reduces each model's timeline trial.
func TimelineRows(s *Summary) []TimelineRow {
	var rows []TimelineRow
	for _, m := range s.Spec.Models {
		c, ok := s.Spec.TimelineCell(m)
		if !ok {
			return nil
		}
		cs := s.Cells[c.Key()]
		secs := wholeEntries(s.Spec, cs)
		var rates, p99s []float64
		row := TimelineRow{Model: m, Wait: cs.TimelineWait, Apart: cs.Apart()}
		var first float64
		for _, sec := range secs {
			if float64(sec.T)*cs.TimelineStep < 1-1e-9 {
				first += float64(sec.Requests)
			}
			if sec.Warmup {
				continue
			}
			rates = append(rates, float64(sec.Requests)/cs.TimelineStep)
			p99s = append(p99s, float64(sec.P99US))
			if float64(sec.P99US) > row.P99Worst {
				row.P99Worst, row.WorstAt = float64(sec.P99US), float64(sec.T)*cs.TimelineStep-cs.TimelineWait
			}
		}
		if len(rates) == 0 {
			continue
		}
		row.Steady, _ = stats.Median(rates)
		row.P99Median, _ = stats.Median(p99s)
		if row.Steady > 0 {
			row.First = first / min(1, float64(len(secs))*cs.TimelineStep) / row.Steady
		}
		rows = append(rows, row)
	}
	return rows
}

// TimelineFindings calls out slow starts, long gates and latency spikes.
func TimelineFindings(rows []TimelineRow) []string {
	var slow, spiky, apart []string
	for _, r := range rows {
		if r.First < 0.8 {
			slow = append(slow, fmt.Sprintf("%s (%s of steady; window opened after %.1f s)", r.Model, pctOf(r.First), r.Wait))
		}
		if r.P99Median > 0 && r.P99Worst > 3*r.P99Median {
			spiky = append(spiky, fmt.Sprintf("%s (%s at %.1f s vs a median %s)", r.Model, Micros(r.P99Worst), r.WorstAt, Micros(r.P99Median)))
		}
		if r.Apart != "" {
			apart = append(apart, fmt.Sprintf("%s (%s)", r.Model, r.Apart))
		}
	}
	var out []string
	if len(slow) > 0 {
		out = append(out, "Slow first second: "+strings.Join(slow, ", ")+".")
	} else if len(rows) > 0 {
		out = append(out, "Every model reached at least 80% of its steady throughput in the load's first second.")
	}
	if len(spiky) > 0 {
		out = append(out, "p99 spikes above 3× the window's median p99 (time since the window opened): "+strings.Join(spiky, ", ")+".")
	} else if len(rows) > 0 {
		out = append(out, "No entry's p99 exceeded 3× the window's median p99 for any model.")
	}
	if len(apart) > 0 {
		out = append(out, "Did not serve all their connections in the window (drawn hollow): "+strings.Join(apart, ", ")+".")
	}
	return out
}

// wholeEntries is a timeline trial's entries less a trailing partial one (the
// load does not end on an entry's boundary), so that it does not read as a drop
// in throughput. The load lasted the wait before the window and the window.
func wholeEntries(sp Spec, cs CellSummary) []result.Second {
	secs := cs.Timeline
	step := cs.TimelineStep
	if step <= 0 {
		step = 1
	}
	window := sp.Timeline.Seconds()
	if !cs.Cell.Timeline {
		window = sp.Duration.Seconds()
	}
	full := int(math.Floor((cs.TimelineWait+window)/step + 1e-6))
	if full < len(secs) {
		return secs[:full]
	}
	return secs
}

// worksOf is proto's per-request works in the sweep, in the spec's order.
func worksOf(sp Spec, proto string) []string {
	var works []string
	for _, g := range sweepGroups(sp) {
		// udp-echo's groups differ by batch, not work: one "none".
		if g.Proto == proto && !slices.Contains(works, g.Work) {
			works = append(works, g.Work)
		}
	}
	return works
}

// WorkFindings says how much throughput each model kept under blocking work.
func WorkFindings(s *Summary, proto string, conns int) []string {
	works := worksOf(s.Spec, proto)
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

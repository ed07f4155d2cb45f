package bench

import (
	"fmt"
	"strings"
)

// Adaptive repetitions (Spec.RepeatAuto, bench -repeat auto): after the planned
// repetitions, bench keeps adding interleaved repetitions — one more of every
// cell that has not converged, then again — until every cell's confidence
// interval of its median throughput is narrower than ±RepeatTarget of the
// median at ConfLevel coverage, or the cell has RepeatMax repetitions. A
// disturbed trial (the host was busy with other work on the measured CPUs: see
// result.Host) does not count towards a cell's figures while it has enough
// undisturbed ones, and earns the cell one more repetition. The added trials
// are recorded in plan.json (Plan.Extra) before they run, so that a resumed
// run and the report know them.

// Adaptive reports whether a closed-loop timed cell takes adaptive
// repetitions: not a timeline, search or open-loop cell (a step's rate comes
// from its calibration; its figures are the latency at that rate).
func (c Cell) adaptive() bool {
	return !c.Timeline && !c.Search && c.Load == 0 && c.Rate == 0
}

// Converged reports whether a cell's throughput interval meets the spec's
// target: at least Repeat repetitions in its figures (undisturbed ones, see
// Summarize), an interval that reaches ConfLevel coverage, and a half-width
// within RepeatTarget of the median.
func (s Spec) Converged(cs CellSummary) bool {
	ci := cs.Throughput
	return ci.N >= s.Repeat && ci.Level >= ConfLevel && ci.RelWidth()/2 <= s.RepeatTarget
}

// MoreReps is the next round of adaptive repetitions: one more trial of every
// adaptive cell (in plan order, so the round interleaves the models as the
// planned ones do) that has not converged, while under RepeatMax. (A
// disturbed trial is left out of the figures, so it is made up for by the
// same rule: its cell has one undisturbed repetition fewer.) A cell whose last trial failed or was
// skipped gets none: what failed would fail again. trials are the plan's so
// far (the planned and the extra ones), sum their summary.
func (s Spec) MoreReps(sum *Summary, trials []Trial) []Trial {
	if !s.RepeatAuto {
		return nil
	}
	last := map[string]int{} // the highest timed repetition of each cell
	var cells []Cell
	for _, t := range trials {
		if t.Counted || !t.Cell.adaptive() {
			continue
		}
		k := t.Cell.Key()
		if _, ok := last[k]; !ok {
			cells = append(cells, t.Cell)
		}
		last[k] = max(last[k], t.Rep)
	}
	var out []Trial
	for _, c := range cells {
		k := c.Key()
		cs, ok := sum.Cells[k]
		if !ok || last[k] >= s.RepeatMax || cs.LastFailed || cs.Measured == 0 {
			continue
		}
		if !s.Converged(cs) {
			out = append(out, Trial{Cell: c, Rep: last[k] + 1})
		}
	}
	return out
}

// RepeatString says how many repetitions the spec asks for, for the report.
func (s Spec) RepeatString() string {
	if !s.RepeatAuto {
		return fmt.Sprintf("%d repetitions", s.Repeat)
	}
	return fmt.Sprintf("%d to %d repetitions (adaptive: more until the median's %.0f%% interval is within ±%.0f%% of it, disturbed trials made up for)",
		s.Repeat, s.RepeatMax, ConfLevel*100, s.RepeatTarget*100)
}

// repeatOutcome says what the adaptive repetitions came to: how many closed-loop
// cells converged, how many repetitions they took in all, and which never did.
func repeatOutcome(s *Summary) string {
	timed := map[string]int{}
	var order []Cell
	for _, t := range s.Trials {
		if t.Counted || !t.Cell.adaptive() {
			continue
		}
		k := t.Cell.Key()
		if timed[k] == 0 {
			order = append(order, t.Cell)
		}
		timed[k]++
	}
	var cells, converged, reps int
	var never []string
	for _, c := range order {
		cs, ok := s.Cells[c.Key()]
		if !ok || cs.Measured == 0 {
			continue
		}
		cells++
		reps += timed[c.Key()]
		if s.Spec.Converged(cs) {
			converged++
		} else {
			never = append(never, fmt.Sprintf("%s c=%d (±%.0f%% after %d)", c.Model, c.Conns, 50*cs.Throughput.RelWidth(), timed[c.Key()]))
		}
	}
	out := fmt.Sprintf("adaptive repetitions: %d of %d closed-loop cells converged to ±%.0f%%; %d timed repetitions in all (%.1f a cell)",
		converged, cells, 100*s.Spec.RepeatTarget, reps, float64(reps)/float64(max(cells, 1)))
	if len(never) > 0 {
		out += "; never converged: " + strings.Join(never, ", ")
	}
	return out
}

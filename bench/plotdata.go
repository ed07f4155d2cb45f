package bench

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/montanaflynn/stats"

	"concbench/internal/proto"
)

// The plots are built in two steps: pure functions turn a Summary into plot data
// (Figure: series of numbers with titles and axes, tested against golden files),
// and Render draws a Figure as a PNG with gonum/plot.

// Point is one point of a series; Lo and Hi bound its error bar (equal to Y when
// there is none).
type Point struct {
	X, Y, Lo, Hi float64
	// ClientBound marks a point whose load generator was saturated: the figure is
	// the client's limit, drawn with a warning glyph.
	ClientBound bool `json:",omitempty"`
	// Apart marks a point whose server did not serve all its connections in the
	// window (CellSummary.Apart: a ceiling, connections unserved, starved): drawn
	// hollow and not joined to its series' line, which runs through the other
	// points only.
	Apart bool `json:",omitempty"`
	// Mark rings the point with a square in its series' colour: a knee.
	Mark bool `json:",omitempty"`
}

// Series is one line (one model).
type Series struct {
	Name string
	// Model keys the line's look (LookOf) when Name carries more than the
	// model's name ("procpool (ceiling 1/100)"); "" means Name is the model.
	Model string `json:",omitempty"`
	// Peer marks a reference peer's line: drawn dotted, "(reference)" in the legend.
	Peer   bool `json:",omitempty"`
	Points []Point
}

// Bar is one bar of a group; Missing bars (no data) are not drawn.
type Bar struct {
	Value       float64
	Missing     bool `json:",omitempty"`
	ClientBound bool `json:",omitempty"`
	// Lo and Hi, if Hi > Lo, draw an interval whisker over the bar.
	Lo, Hi float64 `json:",omitempty"`
}

// BarSet is one colour of bars: one value per category. Hue, if positive, is
// 1 + the palette index of its colour, the same in every figure (a syscall's);
// 0 colours the set by its position.
type BarSet struct {
	Name string
	Hue  int `json:",omitempty"`
	Bars []Bar
}

// Panel is one chart: lines (Series) or grouped bars (Categories × BarSets).
type Panel struct {
	Title          string
	XLabel, YLabel string
	LogX, LogY     bool
	// YMicros labels the y axis as durations given in µs ("250µs", "10ms").
	YMicros bool `json:",omitempty"`
	// XTicks, if set, label the x axis at these values (e.g. "99.9%").
	XTicks []Tick `json:",omitempty"`
	Series []Series
	// VLines are vertical lines across the panel (a line-chart panel only).
	VLines []VLine `json:",omitempty"`
	// Categories and BarSets make a grouped bar chart instead of lines; Stacked
	// stacks the sets' bars of a category instead of setting them side by side.
	Categories []string `json:",omitempty"`
	BarSets    []BarSet `json:",omitempty"`
	Stacked    bool     `json:",omitempty"`
	// ApartLabel is the legend of hollow (Apart) points; "" says "hollow: some
	// unserved". MarkLabel is the legend of marked points.
	ApartLabel string `json:",omitempty"`
	MarkLabel  string `json:",omitempty"`
	// HumanX labels a linear x axis as 25k, 1M; XMicros as durations in µs.
	HumanX  bool `json:",omitempty"`
	XMicros bool `json:",omitempty"`
	// HBars makes a horizontal bar chart instead: one row per bar, the first at
	// the top, each coloured by its model (LookOf), the value written at its end.
	HBars []HBar `json:",omitempty"`
	// XClip, if positive, ends a horizontal bar panel's axis there: longer bars
	// are cut, with a break mark and their value written (see clipAt).
	XClip float64 `json:",omitempty"`
}

// HBar is one row of a horizontal bar chart: a model's figure in one cell.
type HBar struct {
	Model string
	// Name is the row's label (the model, with its peer or apart note).
	Name  string
	Value float64
	// Lo and Hi, if Hi > Lo, draw the interval as a whisker.
	Lo, Hi float64 `json:",omitempty"`
	// Label is written at the bar's end (the value, formatted).
	Label       string
	ClientBound bool `json:",omitempty"`
	// Apart draws the bar hollow: the cell is not comparable (see
	// CellSummary.Apart). Peer draws it as a reference (grey, dotted outline).
	Apart bool `json:",omitempty"`
	Peer  bool `json:",omitempty"`
	// Tied marks the first row and the rows within the noise of it: a bracket
	// joins them (a tooth at each).
	Tied bool `json:",omitempty"`
	// Segments, if any, split the bar into stacked parts of fixed hues (a
	// syscall's, hueOf): their values add up to Value.
	Segments []Segment `json:",omitempty"`
}

// Segment is one stacked part of a horizontal bar.
type Segment struct {
	Name  string
	Value float64
	Hue   int // 1 + the palette index of its colour
}

// VLine is a labelled vertical line at X.
type VLine struct {
	X     float64
	Label string
}

// Tick is a labelled axis position.
type Tick struct {
	Value float64
	Label string
}

// Figure is one PNG: one or more panels, stacked vertically or, with Cols > 1,
// laid out Cols to a row.
type Figure struct {
	Name   string // file name, without .png
	Title  string // for the report
	Panels []Panel
	Cols   int `json:",omitempty"`
	// ShareY puts every panel on the same y range (panels of one quantity side
	// by side).
	ShareY bool `json:",omitempty"`
	// Caption explains how to read it (axes, glyphs).
	Caption string
}

// HasData reports whether any panel has a point or a bar to draw.
func (f Figure) HasData() bool {
	for _, p := range f.Panels {
		for _, s := range p.Series {
			if len(s.Points) > 0 {
				return true
			}
		}
		for _, b := range p.BarSets {
			for _, v := range b.Bars {
				if !v.Missing {
					return true
				}
			}
		}
		if len(p.HBars) > 0 {
			return true
		}
	}
	return false
}

// lineGroups are the groups drawn as concurrency sweeps (all but reconnect).
func sweepGroups(sp Spec) []Group {
	var gs []Group
	for _, g := range sp.Groups() {
		if !g.Reconnect {
			gs = append(gs, g)
		}
	}
	return gs
}

// Figures lists every figure the summary supports, in report order.
func Figures(s *Summary) []Figure {
	sp := s.Spec
	var figs []Figure
	for _, g := range sweepGroups(sp) {
		// A line against concurrency needs two concurrencies: with one (the
		// scale preset) those figures would be a column of dots.
		figs = append(figs, ThroughputFigure(s, g))
		if f, ok := SetFigure(s, g); ok {
			figs = append(figs, f)
		}
		if len(sp.Conns) > 1 {
			figs = append(figs, ThroughputLinesFigure(s, g), P99Figure(s, g))
		}
		figs = append(figs, NinesFigure(s, g, sp.FocusConns()), CPUFigure(s, g))
		if len(sp.Conns) > 1 {
			figs = append(figs, MemoryFigure(s, g))
		}
		figs = append(figs, SyscallsFigure(s, g))
		for _, c := range sp.Conns {
			figs = append(figs, SyscallFigure(s, g, c))
		}
		if idleSwept(sp) {
			for _, c := range sp.Conns {
				figs = append(figs, IdleFigures(s, g, c)...)
			}
		}
		if sp.Curved() {
			for _, c := range sp.Conns {
				if proto.IsDatagram(g.Proto) {
					figs = append(figs, DatagramFigure(s, g, c))
				}
				figs = append(figs, CapacityFigure(s, g, c), CurveFigure(s, g, c, "p99"), CurveFigure(s, g, c, "p50"))
			}
		}
	}
	if f, ok := TimelineFigure(s); ok {
		figs = append(figs, f)
	}
	for _, g := range sp.Groups() {
		if g.Reconnect {
			figs = append(figs, ReconnectFigure(s, g, sp.FocusConns()))
		}
	}
	figs = append(figs, WorkFigures(s, sp.FocusConns())...)
	var out []Figure
	for _, f := range figs {
		if f.HasData() {
			out = append(out, f)
		}
	}
	return out
}

const clientBoundCaption = " A ringed point is client-bound: the load generator was saturated, so the figure is a floor for the server, not its limit. A hollow point, not joined to its model's line, is a cell whose server did not serve all its connections in the window (a ceiling: a pool or a cap smaller than the concurrency; or connections left unserved): its latency leaves their waits out, and it is not comparable with the others."

// ThroughputFigure: throughput as small multiples, a panel per concurrency, each
// on its own axis: a horizontal bar per model sorted by median, the median's
// confidence interval as a whisker, the models within the noise of the leader
// joined by a bracket, client-bound bars outlined in red, cells apart hollow at
// the bottom.
func ThroughputFigure(s *Summary, g Group) Figure {
	f := Figure{Name: "throughput-" + g.Key(), Title: "Throughput by concurrency (" + g.String() + ")", Cols: smallMultipleCols(len(s.Spec.Conns))}
	level := 0.0
	for _, c := range s.Spec.Conns {
		pn := Panel{Title: "Throughput, " + connsTitle(c), XLabel: "requests/s (median; whisker: its CI)"}
		pn.HBars = rankedBars(s, g, c, throughputMetric, true, Num)
		for _, m := range s.Spec.Models {
			level = max(level, s.Cell(g, m, c).Throughput.Level)
		}
		f.Panels = append(f.Panels, pn)
	}
	f.Caption = fmt.Sprintf("A panel per concurrency, each on its own scale; in each, the models sorted by median throughput over the repetitions, the whisker the median's order-statistic confidence interval (coverage %s with %s). The bracket on the right joins the leader and every model whose repetitions cannot be told from the leader's (two-sided Mann–Whitney p ≥ 0.05, samples overlapping): a tooth marks each. A red outline is client-bound (the load generator was saturated: the figure is a floor for the server). A hollow bar at the bottom is a cell whose server did not serve all its connections in the window, not comparable with the others. Reference peers are grey with a dotted outline.",
		levelString(level), s.Spec.RepeatString())
	return f
}

// ThroughputLinesFigure: throughput vs concurrency, a line per model, a panel per
// family of models with the reference peers on each, so that no panel holds
// more than a handful of lines.
func ThroughputLinesFigure(s *Summary, g Group) Figure {
	p := Panel{Title: "Throughput vs concurrency — " + g.String(), XLabel: "concurrent connections (log)",
		YLabel: "requests/s (median)", LogX: true}
	level := 0.0
	for _, m := range s.Spec.Models {
		ser := Series{Name: m, Peer: IsPeer(m)}
		for _, c := range s.Spec.Conns {
			cs := s.Cell(g, m, c)
			if cs.Throughput.N == 0 || cs.Throughput.Median <= 0 {
				continue
			}
			level = max(level, cs.Throughput.Level)
			ser.Points = append(ser.Points, Point{X: float64(c), Y: cs.Throughput.Median,
				Lo: cs.Throughput.Lo, Hi: cs.Throughput.Hi, ClientBound: cs.ClientBound > 0, Apart: cs.Apart() != ""})
		}
		p.Series = append(p.Series, ser)
	}
	p.LogY = spansDecades(p.Series, 1.5)
	if p.LogY {
		p.YLabel += " (log)"
	}
	return Figure{Name: "throughput-lines-" + g.Key(), Title: "Throughput vs concurrency, by family (" + g.String() + ")", Panels: splitByFamily(p, "Throughput vs concurrency, "+g.String()), Cols: 2, ShareY: true,
		Caption: fmt.Sprintf("How each model's throughput changes with the concurrency, a panel per family of models, the reference peers (dotted) on each. Median over the repetitions; error bars are the median's order-statistic confidence interval (coverage %s with %s).",
			levelString(level), s.Spec.RepeatString()) + clientBoundCaption}
}

// rankedBars are the horizontal bars of one concurrency: every model and peer
// with a figure by m, sorted best first (highest if higherBetter, else lowest),
// each with its median's interval, the cells apart after the others. The
// models are ranked and tied as the verdict ranks and ties them (rankBy,
// markTied): the best model (never a peer) and the models within the noise of
// it are Tied. label formats a value.
func rankedBars(s *Summary, g Group, conns int, m metric, higherBetter bool, label func(float64) string) []HBar {
	rs := rankBy(s, g, conns, m, higherBetter)
	markTied(rs)
	if len(rs) > 0 { // the bracket starts at the best when it has company
		rs[0].tied = slices.ContainsFunc(rs[1:], func(r ranking) bool { return r.tied })
	}
	tied := map[string]bool{}
	for _, r := range rs {
		tied[r.model] = r.tied
	}
	var rows, apart []HBar
	for _, model := range s.Spec.Models {
		cs := s.Cell(g, model, conns)
		v, reps, ok := m(cs)
		if !ok {
			continue
		}
		b := HBar{Model: model, Name: model, Value: v, Label: label(v), ClientBound: cs.ClientBound > 0, Peer: IsPeer(model), Tied: tied[model]}
		if ci := MedianCI(reps, ConfLevel); ci.N > 1 && ci.Hi > ci.Lo {
			b.Lo, b.Hi = ci.Lo, ci.Hi
		}
		if why := cs.Apart(); why != "" {
			b.Apart, b.Label = true, b.Label+"  "+why
			apart = append(apart, b)
			continue
		}
		rows = append(rows, b)
	}
	better := func(a, b HBar) int {
		if higherBetter {
			return cmp.Compare(b.Value, a.Value)
		}
		return cmp.Compare(a.Value, b.Value)
	}
	slices.SortStableFunc(rows, better)
	slices.SortStableFunc(apart, better)
	return append(rows, apart...)
}

// clipAt is where a lower-is-better bar panel's axis ends so that one costly
// model does not flatten the differences among the rest: at 3× the median of the
// comparable bars when the longest bar or whisker reaches past 4× it; 0 (no cut)
// otherwise.
func clipAt(bs []HBar) float64 {
	var vs []float64
	top := 0.0
	for _, b := range bs {
		if !b.Apart {
			vs = append(vs, b.Value)
		}
		top = max(top, b.Value, b.Hi)
	}
	med, err := stats.Median(vs)
	if err != nil || med <= 0 || top <= 4*med {
		return 0
	}
	return 3 * med
}

// smallMultipleCols is how many panels a row of small multiples holds.
func smallMultipleCols(n int) int {
	if n <= 1 {
		return 1
	}
	return 2
}

// connsTitle names a concurrency: "1 connection", "100 connections".
func connsTitle(c int) string {
	if c == 1 {
		return "1 connection"
	}
	return fmt.Sprintf("%d connections", c)
}

// splitByFamily splits a line panel into one per family of models (Families),
// each with its models' series and every reference peer's, titled short and
// the family; a panel whose series are all of one family is returned as is.
func splitByFamily(p Panel, short string) []Panel {
	var models, peerNames []string
	byModel := map[string]Series{}
	for _, ser := range p.Series {
		m := cmp.Or(ser.Model, ser.Name)
		byModel[m] = ser
		if IsPeer(m) {
			peerNames = append(peerNames, m)
		} else {
			models = append(models, m)
		}
	}
	fams, members := byFamily(models)
	if len(fams) <= 1 {
		return []Panel{p}
	}
	var out []Panel
	for i, fam := range fams {
		q := p
		q.Title = short + " — " + fam
		q.Series = nil
		drawn := false
		for _, m := range members[i] {
			q.Series = append(q.Series, byModel[m])
			drawn = drawn || len(byModel[m].Points) > 0
		}
		if !drawn {
			continue // a family whose models have no figure here
		}
		for _, m := range peerNames {
			q.Series = append(q.Series, byModel[m])
		}
		out = append(out, q)
	}
	if len(out) == 0 {
		return []Panel{p}
	}
	return out
}

// P99Figure: p99 latency vs concurrency, log y.
func P99Figure(s *Summary, g Group) Figure {
	p := Panel{Title: "p99 latency vs concurrency — " + g.String(), XLabel: "concurrent connections (log)",
		YLabel: "p99 latency (log)", LogX: true, LogY: true, YMicros: true}
	for _, m := range s.Spec.Models {
		ser := Series{Name: m, Peer: IsPeer(m)}
		for _, c := range s.Spec.Conns {
			cs := s.Cell(g, m, c)
			if cs.Latency.Count == 0 || cs.Latency.P99US <= 0 {
				continue
			}
			y := float64(cs.Latency.P99US)
			ser.Points = append(ser.Points, Point{X: float64(c), Y: y, Lo: y, Hi: y, ClientBound: cs.ClientBound > 0, Apart: cs.Apart() != ""})
		}
		p.Series = append(p.Series, ser)
	}
	return Figure{Name: "p99-" + g.Key(), Title: "p99 latency vs concurrency (" + g.String() + ")", Panels: splitByFamily(p, "p99 vs concurrency, "+g.String()), Cols: 2, ShareY: true,
		Caption: "The 99th percentile of the merged latency histogram of all repetitions (closed loop: latency from the actual send), a panel per family of models with the reference peers (dotted) on each." + clientBoundCaption}
}

// ninesTicks label the nines plot's x axis, at 1/(1-q).
var ninesTicks = []Tick{{1, "0%"}, {10, "90%"}, {100, "99%"}, {1e3, "99.9%"}, {1e4, "99.99%"}, {1e5, "99.999%"}}

// NinesFigure: latency by percentile at one concurrency, log x in "nines".
func NinesFigure(s *Summary, g Group, conns int) Figure {
	p := Panel{Title: fmt.Sprintf("Latency by percentile at %d connections — %s", conns, g.String()),
		XLabel: "percentile (log scale of 1/(1−p))", YLabel: "latency (log)", LogX: true, LogY: true, YMicros: true, XTicks: ninesTicks}
	for _, m := range s.Spec.Models {
		cs := s.Cell(g, m, conns)
		ser := Series{Name: m, Peer: IsPeer(m)}
		if why := cs.Apart(); why != "" {
			ser.Name, ser.Model = m+" ("+why+")", m
		}
		for _, n := range cs.Nines {
			if n.US <= 0 {
				continue
			}
			x := 1 / (1 - n.Percentile/100)
			ser.Points = append(ser.Points, Point{X: x, Y: n.US, Lo: n.US, Hi: n.US})
		}
		p.Series = append(p.Series, ser)
	}
	return Figure{Name: fmt.Sprintf("nines-%s-c%d", g.Key(), conns), Title: fmt.Sprintf("Latency by percentile at %d connections (%s)", conns, g.String()),
		Panels: splitByFamily(p, fmt.Sprintf("Latency by percentile, c=%d, %s", conns, g.String())), Cols: 2, ShareY: true, Caption: "Each line is one model's merged latency histogram read at every percentile up to what its request count resolves; the tail is on the right. A panel per family of models, the reference peers (dotted) on each. A model marked (ceiling n/c), (unserved n/c) or (starved) served only some of its connections in the window: the others' waits are not in its histogram."}
}

// CPUFigure: server CPU per request as small multiples, a panel per
// concurrency on its own axis, the cheapest model at the top; the whisker is the
// median's confidence interval over the repetitions, the bracket joins the
// cheapest and the models within the noise of it.
func CPUFigure(s *Summary, g Group) Figure {
	f := Figure{Name: "cpu-" + g.Key(), Title: "Server CPU per request (" + g.String() + ")", Cols: smallMultipleCols(len(s.Spec.Conns))}
	for _, c := range s.Spec.Conns {
		pn := Panel{Title: "CPU per request, " + connsTitle(c), XLabel: "server CPU time per request (median; whisker: its CI)", XMicros: true}
		pn.HBars = rankedBars(s, g, c, cpuMetric, false, Micros)
		pn.XClip = clipAt(pn.HBars)
		f.Panels = append(f.Panels, pn)
	}
	f.Caption = "The server process tree's CPU time (user+system, all threads and processes, from /proc) over the measured window, divided by the requests served; median over repetitions, the whisker its confidence interval. A panel per concurrency, each on its own scale, cheapest first; the bracket joins the cheapest and every model whose repetitions cannot be told from its (Mann–Whitney p ≥ 0.05, samples overlapping). Lower is cheaper."
	return f
}

// MemoryFigure: peak RSS of the server tree vs connections.
func MemoryFigure(s *Summary, g Group) Figure {
	p := Panel{Title: "Peak server memory vs connections — " + g.String(), XLabel: "concurrent connections (log)",
		YLabel: "peak RSS of the server tree, MiB", LogX: true}
	for _, m := range s.Spec.Models {
		ser := Series{Name: m, Peer: IsPeer(m)}
		for _, c := range s.Spec.Conns {
			cs := s.Cell(g, m, c)
			if cs.RSSMaxBytes <= 0 {
				continue
			}
			y := float64(cs.RSSMaxBytes) / (1 << 20)
			ser.Points = append(ser.Points, Point{X: float64(c), Y: y, Lo: y, Hi: y, Apart: cs.Apart() != ""})
		}
		p.Series = append(p.Series, ser)
	}
	p.LogY = spansDecades(p.Series, 1)
	if p.LogY {
		p.YLabel += " (log)"
	}
	return Figure{Name: "rss-" + g.Key(), Title: "Peak memory vs connections (" + g.String() + ")", Panels: []Panel{p},
		Caption: "The highest summed resident set of the server's process tree during the measured window, over all repetitions: what a thread or a process per connection costs in memory."}
}

// TimelineFigure: throughput and p99 per timeline entry (a second, or the spec's
// TimelineStep) of each model's timeline trial, against the time since its
// window opened, so that the window opens at 0 for every model (the steady-state
// gate opens it after a different wait for each).
func TimelineFigure(s *Summary) (Figure, bool) {
	sp := s.Spec
	var cells []CellSummary
	for _, m := range sp.Models {
		c, ok := sp.TimelineCell(m)
		if !ok {
			return Figure{}, false
		}
		cells = append(cells, s.Cells[c.Key()])
	}
	if len(cells) == 0 {
		return Figure{}, false
	}
	c0 := cells[0].Cell
	g := c0.Group()
	step := 0.0
	for _, cs := range cells {
		if len(cs.Timeline) > 0 {
			step = max(step, cs.TimelineStep)
		}
	}
	stepName := "second"
	if step > 0 && step != 1 {
		stepName = fmt.Sprintf("%v", time.Duration(step*float64(time.Second)))
	}
	open := []VLine{{X: 0, Label: "window opens"}}
	tp := Panel{Title: fmt.Sprintf("Throughput per %s, %d connections — %s", stepName, c0.Conns, g.String()),
		XLabel: "seconds since the measured window opened (before 0: warm-up and ramp)", YLabel: "requests/s", VLines: open}
	lp := Panel{Title: "p99 latency per " + stepName, XLabel: "seconds since the measured window opened",
		YLabel: "p99 latency (log)", LogY: true, YMicros: true, VLines: open}
	for _, cs := range cells {
		name := cs.Cell.Model
		apart := cs.Apart() != ""
		if apart {
			name += " (" + cs.Apart() + ")"
		}
		ts := Series{Name: name, Model: cs.Cell.Model, Peer: IsPeer(cs.Cell.Model)}
		ls := Series{Name: name, Model: cs.Cell.Model, Peer: IsPeer(cs.Cell.Model)}
		for _, sec := range wholeEntries(sp, cs) {
			// x is the middle of the entry.
			x := (float64(sec.T)+0.5)*cs.TimelineStep - cs.TimelineWait
			y := float64(sec.Requests) / cs.TimelineStep
			ts.Points = append(ts.Points, Point{X: x, Y: y, Lo: y, Hi: y, Apart: apart})
			if sec.P99US > 0 {
				l := float64(sec.P99US)
				ls.Points = append(ls.Points, Point{X: x, Y: l, Lo: l, Hi: l, Apart: apart})
			}
		}
		tp.Series = append(tp.Series, ts)
		lp.Series = append(lp.Series, ls)
	}
	tp.LogY = spansDecades(tp.Series, 1.5)
	if tp.LogY {
		tp.YLabel += " (log)"
		for i := range tp.Series { // an entry with no reply has no place on a log axis
			tp.Series[i].Points = slices.DeleteFunc(tp.Series[i].Points, func(p Point) bool { return p.Y <= 0 })
		}
	}
	return Figure{Name: fmt.Sprintf("timeline-%s-c%d", g.Key(), c0.Conns), Title: fmt.Sprintf("One run's course, %s by %s (%d connections, %s)", stepName, stepName, c0.Conns, g.String()),
		Panels:  []Panel{tp, lp},
		Caption: fmt.Sprintf("One %v trial per model, its window opened by the steady-state gate (every connection served, and at least %v of warm-up); each model is drawn against the time since its own window opened, so the vertical line at 0 is every model's window, and what lies left of it is its ramp and warm-up (not measured in the other figures). A dip in throughput or a spike in p99 shows start-up, a GC pause or a pool growing; a partial last entry is left out. A model drawn hollow did not serve all its connections.", sp.Timeline, sp.Warmup)}, true
}

// ReconnectFigure: connections per second per model (bars), at one concurrency.
func ReconnectFigure(s *Summary, g Group, conns int) Figure {
	p := Panel{Title: fmt.Sprintf("New connections per second, %d concurrent — %s", conns, g.String()),
		YLabel: "connections/s (each: connect, one request, close)", Categories: s.Spec.Models}
	bs := BarSet{Name: fmt.Sprintf("c=%d", conns)}
	for _, m := range s.Spec.Models {
		cs := s.Cell(g, m, conns)
		bs.Bars = append(bs.Bars, Bar{Value: cs.Throughput.Median, Missing: cs.Throughput.N == 0 || !(cs.Throughput.Median > 0), ClientBound: cs.ClientBound > 0})
	}
	p.BarSets = []BarSet{bs}
	return Figure{Name: fmt.Sprintf("reconnect-%s-c%d", g.Key(), conns), Title: fmt.Sprintf("Connections per second (%s, %d concurrent)", g.String(), conns),
		Panels: []Panel{p}, Caption: "Median over repetitions of requests/s in reconnect mode, where every request opens and closes its own connection."}
}

// WorkFigures: for each protocol with blocking work, throughput per model with
// and without it, at one concurrency.
func WorkFigures(s *Summary, conns int) []Figure {
	var figs []Figure
	for _, proto := range s.Spec.Protos {
		works := worksOf(s.Spec, proto)
		if len(works) < 2 {
			continue
		}
		p := Panel{Title: fmt.Sprintf("Throughput with blocking work, %d connections — %s", conns, proto),
			YLabel: "requests/s (median)", Categories: s.Spec.Models}
		for _, w := range works {
			bs := BarSet{Name: "work " + w}
			for _, m := range s.Spec.Models {
				cs := s.Cell(Group{Proto: proto, Work: w}, m, conns)
				bs.Bars = append(bs.Bars, Bar{Value: cs.Throughput.Median, Missing: cs.Throughput.N == 0 || !(cs.Throughput.Median > 0), ClientBound: cs.ClientBound > 0})
			}
			p.BarSets = append(p.BarSets, bs)
		}
		p.LogY = barsSpanDecades(p.BarSets, 1.5)
		if p.LogY {
			p.YLabel += " (log)"
		}
		figs = append(figs, Figure{Name: fmt.Sprintf("work-%s-c%d", proto, conns), Title: fmt.Sprintf("Blocking vs non-blocking handlers (%s, %d connections)", proto, conns),
			Panels: []Panel{p}, Caption: "A handler that sleeps blocks whatever thread runs it: an event loop serialises the sleeps, a thread or process per connection overlaps them."})
	}
	return figs
}

// spansDecades reports whether the positive y values range over more than
// decades orders of magnitude.
func spansDecades(ss []Series, decades float64) bool {
	lo, hi := math.Inf(1), 0.0
	for _, s := range ss {
		for _, p := range s.Points {
			if p.Y > 0 {
				lo, hi = min(lo, p.Y), max(hi, p.Y)
			}
		}
	}
	return hi > 0 && math.Log10(hi/lo) > decades
}

func barsSpanDecades(bs []BarSet, decades float64) bool {
	var ss []Series
	for _, b := range bs {
		var s Series
		for _, v := range b.Bars {
			if !v.Missing {
				s.Points = append(s.Points, Point{Y: v.Value})
			}
		}
		ss = append(ss, s)
	}
	return spansDecades(ss, decades)
}

func levelString(l float64) string {
	if l == 0 {
		return "none"
	}
	return strconv.FormatFloat(math.Round(l*10000)/100, 'f', -1, 64) + "%"
}

// sortedModels returns models sorted by key descending, ties by name.
func sortedModels(models []string, key func(string) float64) []string {
	out := slices.Clone(models)
	slices.SortStableFunc(out, func(a, b string) int {
		ka, kb := key(a), key(b)
		switch {
		case ka > kb:
			return -1
		case ka < kb:
			return 1
		}
		return 0
	})
	return out
}

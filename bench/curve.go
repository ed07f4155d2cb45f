package bench

// Load–latency curves: each model's open-loop steps (Spec.Loads, Spec.Rates)
// as latency against offered load — flat, then a knee, then a wall — and its
// capacity at the latency objective (Spec.Search), ranked.

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"concbench/internal/proto"
	"concbench/internal/result"
)

// KneeFactor: a model's knee is its first step whose p99 is more than this
// many times its p99 at its lowest step (or the first step that was under
// rate or unstable).
const KneeFactor = 5

// curveCells are a model's open-loop steps at one group and concurrency that
// measured something, by offered load.
func curveCells(s *Summary, g Group, conns int, model string) []CellSummary {
	var out []CellSummary
	for _, c := range s.Spec.openCells(g, conns) {
		c.Model = model
		if cs, ok := s.Cells[c.Key()]; ok && cs.Measured > 0 && cs.Offered > 0 {
			out = append(out, cs)
		}
	}
	slices.SortStableFunc(out, func(a, b CellSummary) int { return cmp.Compare(a.Offered, b.Offered) })
	return out
}

// stepFailed reports whether most of a step's trials were under rate or
// unstable: the step did not measure the load it offered.
func stepFailed(cs CellSummary) bool {
	return 2*cs.UnderRate > cs.Measured || 2*cs.Unstable > cs.Measured
}

// knee is the index of the first step of cells past the knee, -1 if none: the
// first that was under rate or unstable, or whose p99 is more than KneeFactor
// times the lowest p99 of the steps below it (the lowest, not the first: a
// light step's p99 is its few slowest requests, and noisy).
func knee(cells []CellSummary) int {
	base := 0.0
	for i, cs := range cells {
		p99 := float64(cs.Latency.P99US)
		if stepFailed(cs) || i > 0 && p99 > KneeFactor*base {
			return i
		}
		if i == 0 || p99 < base {
			base = p99
		}
	}
	return -1
}

// CurveFigure: a percentile of the latency (p50 or p99) against the offered
// load, a panel per family of models, the reference peers in every panel.
func CurveFigure(s *Summary, g Group, conns int, pct string) Figure {
	name := fmt.Sprintf("curve-%s-%s-c%d", pct, g.Key(), conns)
	title := fmt.Sprintf("Load–latency curves: %s against offered load, %s (%s)", pct, plural(float64(conns), "connection"), g.String())
	arrival := "evenly spaced"
	if s.Spec.Arrival == "exp" {
		arrival = "Poisson"
	}
	f := Figure{Name: name, Title: title,
		Caption: fmt.Sprintf("Each point is an open-loop step (%s arrivals) at a fraction of the model's own closed-loop peak: x the offered rate, y the %s latency from the intended send (coordinated omission corrected) over its repetitions' merged histograms, log scale. Flat, then a knee — the first step whose p99 is more than %d× that of the lowest step, ringed by a square — then a wall. Hollow points were under rate (more than 10%% short of the offered rate) or unstable (the latency still rising at the window's end) in most repetitions: the server did not carry that load. Models are grouped by family, one panel each; a reference peer is drawn dotted in every panel.", arrival, pct, KneeFactor), Cols: 2, ShareY: true}
	value := func(cs CellSummary) float64 {
		if pct == "p50" {
			return float64(cs.Latency.P50US)
		}
		return float64(cs.Latency.P99US)
	}
	// A panel per family of models (palette.go's), the reference peers on each.
	var models, refs []string
	for _, m := range s.Spec.Models {
		if IsPeer(m) {
			refs = append(refs, m)
		} else {
			models = append(models, m)
		}
	}
	fams, members := byFamily(models)
	for fi, fname := range fams {
		pn := Panel{Title: capitalize(fname), XLabel: "offered load (requests/s)", YLabel: pct + " latency", LogY: true, YMicros: true,
			ApartLabel: "hollow: under rate/unstable", MarkLabel: "knee", HumanX: true}
		measuredHere := 0
		for _, m := range append(slices.Clone(members[fi]), refs...) {
			se := Series{Name: m, Peer: IsPeer(m)}
			cells := curveCells(s, g, conns, m)
			k := knee(cells)
			for i, cs := range cells {
				se.Points = append(se.Points, Point{X: cs.Offered, Y: value(cs), Apart: stepFailed(cs), Mark: i == k, ClientBound: 2*cs.ClientBound > cs.Measured})
			}
			if !IsPeer(m) && len(cells) > 0 {
				measuredHere++
			}
			pn.Series = append(pn.Series, se)
		}
		if measuredHere > 0 {
			f.Panels = append(f.Panels, pn)
		}
	}
	return f
}

// DatagramFigure: for udp-echo's open-loop steps, what each model delivered
// and what was lost against the rate offered — where a model starts dropping.
// Three panels on one x axis: the replies per second that came back; the
// share of the datagrams sent that the server lost (its socket's receive
// buffer overflowed, or it read one and could not send the reply: its own
// counters over the window); and the share loadgen lost itself (its sockets'
// receive buffers overflowed while it was busy sending: the instrument's
// limit, not the server's).
func DatagramFigure(s *Summary, g Group, conns int) Figure {
	name := fmt.Sprintf("udp-loss-%s-c%d", g.Key(), conns)
	title := fmt.Sprintf("Datagrams: delivered and lost against offered rate, %s (%s)", plural(float64(conns), "flow"), g.String())
	f := Figure{Name: name, Title: title, Cols: 3,
		Caption: "Each point is an open-loop step at a fraction of the model's own closed-loop peak (medians and sums over its repetitions): x the datagrams offered per second; left, the replies per second that came back; middle, the share of the datagrams sent that the server lost — its socket's receive buffer overflowed, or it could not send a reply (its own counters over the window, read every 100 ms: approximate); right, the share loadgen lost itself, its sockets' receive buffers overflowing while its one core was busy sending. Up to its capacity a model delivers what is offered and loses nothing; past it UDP does not push back: the server's socket overflows and the kernel drops what does not fit. Where the right panel climbs, the instrument reached its limit first: the server was not the one dropping. A ringed point is client-bound (loadgen's CPU saturated); hollow points missed the offered rate by more than 10% in most repetitions."}
	deliv := Panel{Title: "Delivered", XLabel: "offered (datagrams/s)", YLabel: "replies/s (median)", HumanX: true, ApartLabel: "hollow: under rate"}
	srv := Panel{Title: "Lost by the server", XLabel: "offered (datagrams/s)", YLabel: "% of datagrams sent", HumanX: true, ApartLabel: "hollow: under rate"}
	cli := Panel{Title: "Lost by loadgen (the instrument's limit)", XLabel: "offered (datagrams/s)", YLabel: "% of datagrams sent", HumanX: true, ApartLabel: "hollow: under rate"}
	for _, m := range s.Spec.Models {
		if IsPeer(m) {
			continue
		}
		a, b, c := Series{Name: m, Model: m}, Series{Name: m, Model: m}, Series{Name: m, Model: m}
		for _, cs := range curveCells(s, g, conns, m) {
			d := cs.Datagrams
			if d == nil || d.Sent == 0 {
				continue
			}
			apart, bound := 2*cs.UnderRate > cs.Measured, 2*cs.ClientBound > cs.Measured
			a.Points = append(a.Points, Point{X: cs.Offered, Y: cs.Throughput.Median, Lo: cs.Throughput.Lo, Hi: cs.Throughput.Hi, Apart: apart, ClientBound: bound})
			if d.ServerCounted == cs.Measured {
				b.Points = append(b.Points, Point{X: cs.Offered, Y: 100 * float64(d.ServerRcvbuf+d.ServerDropped) / float64(d.Sent), Apart: apart, ClientBound: bound})
			}
			c.Points = append(c.Points, Point{X: cs.Offered, Y: 100 * float64(d.ClientDropped) / float64(d.Sent), Apart: apart, ClientBound: bound})
		}
		if len(a.Points) > 0 {
			deliv.Series = append(deliv.Series, a)
			srv.Series = append(srv.Series, b)
			cli.Series = append(cli.Series, c)
		}
	}
	if len(deliv.Series) > 0 {
		f.Panels = []Panel{deliv, srv, cli}
	}
	return f
}

// searchRow is a model's capacity search at one group and concurrency.
type searchRow struct {
	Model  string
	Search *result.Search
}

// searchRows are the searches of a row that found a capacity: the models by
// capacity (highest first), then the reference peers.
func searchRows(s *Summary, g Group, conns int) []searchRow {
	var models, refs []searchRow
	for _, m := range s.Spec.Models {
		c := Cell{Model: m, Proto: g.Proto, Work: g.Work, Conns: conns, Search: true}
		cs, ok := s.Cells[c.Key()]
		if !ok || cs.Search == nil || len(cs.Search.Capacities) == 0 {
			continue
		}
		if IsPeer(m) {
			refs = append(refs, searchRow{m, cs.Search})
		} else {
			models = append(models, searchRow{m, cs.Search})
		}
	}
	slices.SortStableFunc(models, func(a, b searchRow) int { return cmp.Compare(b.Search.Capacity, a.Search.Capacity) })
	return append(models, refs...)
}

// CapacityFigure: each model's capacity at the objective, with its interval
// (the range over the search's rounds), as horizontal bars in the models'
// colours, highest first, reference peers last; a model that held the
// objective at no rate offered says "none" on an empty row.
func CapacityFigure(s *Summary, g Group, conns int) Figure {
	name := fmt.Sprintf("capacity-%s-c%d", g.Key(), conns)
	title := fmt.Sprintf("Capacity at %s, %s (%s)", s.Spec.Search, plural(float64(conns), "connection"), g.String())
	rows := searchRows(s, g, conns)
	if len(rows) == 0 {
		return Figure{Name: name, Title: title}
	}
	pn := Panel{Title: title, XLabel: "requests/s at the objective (median of the rounds; whisker: their range)"}
	for _, r := range rows {
		b := HBar{Model: r.Model, Name: r.Model, Value: max(r.Search.Capacity, 0), Peer: IsPeer(r.Model), Label: Num(r.Search.Capacity)}
		if r.Search.CapacityHi > r.Search.CapacityLo {
			b.Lo, b.Hi = r.Search.CapacityLo, r.Search.CapacityHi
		}
		switch {
		case r.Search.Capacity <= 0:
			b.Label = "none: it held " + s.Spec.Search + " at no rate offered"
		case r.Search.AtLeast:
			b.Label = "≥ " + b.Label + " (held at its closed-loop peak)"
		}
		pn.HBars = append(pn.HBars, b)
	}
	return Figure{Name: name, Title: title, Panels: []Panel{pn},
		Caption: fmt.Sprintf("The highest offered rate at which %s held (loadgen -search: a closed-loop calibration, then %d rounds of bisection with open-loop steps; a step passes within the bound, without errors, neither under rate nor unstable). The bar is the median over the rounds, the whisker their range (an order-statistic interval of the median). A model marked ≥ met the objective at its own closed-loop peak, beyond which the search does not offer load; \"none\" met it at no rate. Models by capacity, reference peers last, in grey.", s.Spec.Search, rows[0].Search.Rounds)}
}

// CapacityTable is the Markdown table of a row's capacities, ranked, with
// each model's comparison to the leader and its knee on the curve.
func CapacityTable(s *Summary, g Group, conns int) string {
	rows := searchRows(s, g, conns)
	if len(rows) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| model | capacity at %s [range] | × closed-loop peak | vs the leader | knee on the curve | what limited it |\n|---|--:|--:|---|---|---|\n", s.Spec.Search)
	var leader *searchRow
	for i, r := range rows {
		name := r.Model
		vs := "leader"
		if IsPeer(r.Model) {
			name, vs = "*"+name+"*", "reference"
		} else if leader == nil {
			leader = &rows[i]
		} else {
			c := Compare(leader.Search.Capacities, r.Search.Capacities)
			vs = fmt.Sprintf("%s (×%.2f, p = %.2f)", verdictText(c.Verdict), 1/c.Ratio, c.P)
		}
		atLeast := ""
		if r.Search.AtLeast {
			atLeast = "≥ "
		}
		capacity := fmt.Sprintf("%s%s [%s–%s]", atLeast, Num(r.Search.Capacity), Num(r.Search.CapacityLo), Num(r.Search.CapacityHi))
		if r.Search.CapacityHi <= 0 {
			capacity = "none: no step met it"
			if vs != "reference" && vs != "leader" {
				vs = "below in every round"
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %.2f | %s | %s | %s |\n", name, capacity,
			r.Search.Capacity/r.Search.CalibratedRate, vs, kneeText(s, g, conns, r.Model), limiter(r.Search, s.Cell(g, r.Model, conns)))
	}
	return b.String()
}

// verdictText is a comparison's verdict for the table.
func verdictText(v string) string {
	switch v {
	case Significant:
		return "below, significant"
	case Consistent:
		return "below in every round"
	}
	return "tied (within the noise)"
}

// kneeText says where the model's curve bends: the offered rate, as a
// fraction of its peak, and the p99 before and at it.
func kneeText(s *Summary, g Group, conns int, model string) string {
	cells := curveCells(s, g, conns, model)
	k := knee(cells)
	switch {
	case len(cells) == 0:
		return "–"
	case k < 0:
		return fmt.Sprintf("none up to %s req/s (p99 %s)", Num(cells[len(cells)-1].Offered), Micros(float64(cells[len(cells)-1].Latency.P99US)))
	case k == 0:
		return fmt.Sprintf("at its lowest step, %s req/s", Num(cells[0].Offered))
	}
	at := cells[k]
	why := fmt.Sprintf("p99 %s → %s", Micros(float64(cells[k-1].Latency.P99US)), Micros(float64(at.Latency.P99US)))
	if stepFailed(at) {
		why = "under rate or unstable"
	}
	frac := ""
	if at.Cell.Load > 0 {
		frac = fmt.Sprintf(" (%g× peak)", at.Cell.Load)
	}
	return fmt.Sprintf("%s req/s%s: %s", Num(at.Offered), frac, why)
}

// limiter says what stopped the model at its capacity, from the search's
// lowest failing step above it: loadgen's CPU, the server's CPU, a pool that
// serves fewer than the connections (its closed-loop cell cal set apart), the
// server falling behind the rate, or latency with CPU to spare (queueing).
func limiter(sr *result.Search, cal CellSummary) string {
	var fail *result.SearchStep
	for i, st := range sr.Steps {
		if !st.Pass && st.Rate > sr.Capacity && (fail == nil || st.Rate < fail.Rate) {
			fail = &sr.Steps[i]
		}
	}
	switch {
	case sr.AtLeast:
		return "nothing up to its closed-loop peak"
	case fail == nil:
		return "–"
	case fail.ClientBound:
		return fmt.Sprintf("the client: loadgen's CPU saturated at %s req/s", Num(fail.Rate))
	case cal.Apart() != "":
		return fmt.Sprintf("a starved pool: its closed loop served only part of the connections (%s); at %s req/s %s", cal.Apart(), Num(fail.Rate), fail.Why)
	case fail.ServerCPU >= 0.85:
		return fmt.Sprintf("server CPU: %.2f cores busy at %s req/s (%s)", fail.ServerCPU, Num(fail.Rate), fail.Why)
	case strings.HasPrefix(fail.Why, "under rate: server"):
		return fmt.Sprintf("the server fell behind the rate at %s req/s with %.2f cores busy", Num(fail.Rate), fail.ServerCPU)
	}
	return fmt.Sprintf("latency with CPU to spare: at %s req/s %s, %.2f cores busy", Num(fail.Rate), fail.Why, fail.ServerCPU)
}

// CurveFindings are the curve section's sentences: which models the capacity
// separates, against what the closed-loop table said.
func CurveFindings(s *Summary, g Group, conns int) []string {
	rows := searchRows(s, g, conns)
	var ms []searchRow
	for _, r := range rows {
		if !IsPeer(r.Model) {
			ms = append(ms, r)
		}
	}
	if len(ms) < 2 {
		return nil
	}
	lead := ms[0]
	var tied, apart []string
	for _, r := range ms[1:] {
		c := Compare(lead.Search.Capacities, r.Search.Capacities)
		closed := Compare(s.Cell(g, lead.Model, conns).Throughputs, s.Cell(g, r.Model, conns).Throughputs)
		switch {
		case c.Verdict == Noise:
			tied = append(tied, r.Model)
		case closed.Verdict == Noise:
			apart = append(apart, fmt.Sprintf("%s (%s against %s req/s)", r.Model, Num(r.Search.Capacity), Num(lead.Search.Capacity)))
		}
	}
	out := []string{fmt.Sprintf("Highest capacity at %s: %s, %s req/s [%s–%s], %.0f%% of its closed-loop peak.", s.Spec.Search, lead.Model,
		Num(lead.Search.Capacity), Num(lead.Search.CapacityLo), Num(lead.Search.CapacityHi), 100*lead.Search.Capacity/lead.Search.CalibratedRate)}
	if len(tied) > 0 {
		out = append(out, "Tied with it (the rounds' capacities overlap): "+strings.Join(tied, ", ")+".")
	}
	if len(apart) > 0 {
		out = append(out, fmt.Sprintf("Within the noise of %s in the closed-loop table at %d connections, but below it in every round of the search: %s.", lead.Model, conns, strings.Join(apart, "; ")))
	}
	for _, r := range rows {
		capacity := fmt.Sprintf("capacity %s req/s, %.0f%% of its closed-loop peak", Num(r.Search.Capacity), 100*r.Search.Capacity/r.Search.CalibratedRate)
		if r.Search.CapacityHi <= 0 {
			capacity = fmt.Sprintf("no step met %s, down to %s req/s", s.Spec.Search, Num(lowestStep(r.Search)))
		}
		out = append(out, fmt.Sprintf("%s: %s; knee %s; limited by %s.", r.Model, capacity, kneeText(s, g, conns, r.Model), limiter(r.Search, s.Cell(g, r.Model, conns))))
	}
	return out
}

// curveSection writes a group's load–latency section: per concurrency, the
// capacity table and findings, the capacity plot and the curves.
func curveSection(w func(string, ...any), s *Summary, g Group, img func(string, []string)) {
	for _, c := range s.Spec.Conns {
		key := fmt.Sprintf("%s-c%d", g.Key(), c)
		w("### Load–latency curves and capacity (%s, %s)\n\n", g.String(), plural(float64(c), "connection"))
		if proto.IsDatagram(g.Proto) {
			img("udp-loss-"+key, nil)
		}
		if t := CapacityTable(s, g, c); t != "" {
			w("Capacity at %s, ranked: the median of the search's rounds and their range; \"vs the leader\" compares the rounds' capacities (Mann–Whitney); the knee is where the model's curve below bends.\n\n%s\n", s.Spec.Search, t)
		}
		img("capacity-"+key, CurveFindings(s, g, c))
		img("curve-p99-"+key, nil)
		img("curve-p50-"+key, nil)
	}
}

// lowestStep is the lowest rate a search tried.
func lowestStep(sr *result.Search) float64 {
	lo := 0.0
	for i, st := range sr.Steps {
		if i == 0 || st.Rate < lo {
			lo = st.Rate
		}
	}
	return lo
}

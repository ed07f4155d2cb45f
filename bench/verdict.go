package bench

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode"
)

// The verdict: what a reader came for — which model for which job — computed
// from the run, at the top of the report. One row per question the run can
// answer (a question its matrix did not ask is left out), each with the answer,
// its figure, its margin over the runner-up and the section with the
// evidence; then a card per model.

// VerdictRow is one question the run answers.
type VerdictRow struct {
	Question string
	// Answer is the model, with the models tied with it ("≈ a, b").
	Answer string
	Figure string
	// Margin is how far ahead of the runner-up, and whether the repetitions
	// show it: "within the noise of poll (p = 0.18)", "significant …".
	Margin string
	// Anchor is the report section with the evidence ("#server-cpu-…").
	Anchor string
}

// ranking is one question's candidates at one cell row: a value per model (the
// median) and the repetitions' own, best first.
type ranking struct {
	model string
	value float64
	reps  []float64
	bound bool // client-bound
	tied  bool // within the noise of the first (markTied)
}

// metric is what the verdict and the small multiples rank a cell by: its
// figure (a median), its repetitions' own values, and whether it has one.
type metric func(CellSummary) (value float64, reps []float64, ok bool)

func throughputMetric(cs CellSummary) (float64, []float64, bool) {
	return cs.Throughput.Median, cs.Throughputs, cs.Throughput.N > 0 && cs.Throughput.Median > 0
}

func cpuMetric(cs CellSummary) (float64, []float64, bool) {
	return cs.CPUPerReqUS, cs.CPUPerReqs, cs.CPUPerReqUS > 0
}

func p99Metric(cs CellSummary) (float64, []float64, bool) {
	return float64(cs.Latency.P99US), cs.P99s, cs.Latency.Count > 0 && cs.Latency.P99US > 0
}

// rankBy ranks the comparable cells (not peers, not apart) of g at conns by m,
// best first.
func rankBy(s *Summary, g Group, conns int, m metric, higherBetter bool) []ranking {
	var out []ranking
	for _, model := range s.Spec.Models {
		cs := s.Cell(g, model, conns)
		if IsPeer(model) || cs.Apart() != "" {
			continue
		}
		if v, reps, ok := m(cs); ok {
			out = append(out, ranking{model: model, value: v, reps: reps, bound: cs.ClientBound > 0})
		}
	}
	slices.SortStableFunc(out, func(a, b ranking) int {
		if higherBetter {
			return cmp.Compare(b.value, a.value)
		}
		return cmp.Compare(a.value, b.value)
	})
	return out
}

// markTied marks the rankings after the first whose repetitions cannot be told
// from the first's (Compare: Noise).
func markTied(rs []ranking) {
	for i := 1; i < len(rs); i++ {
		rs[i].tied = Compare(rs[0].reps, rs[i].reps).Verdict == Noise
	}
}

// verdictOf fills a row from a ranking: the first is the answer, the models
// within the noise of it are listed beside it, the margin is over the
// runner-up. unit formats a value.
func verdictOf(question string, rs []ranking, unit func(float64) string, higherBetter bool, anchor string) (VerdictRow, bool) {
	if len(rs) == 0 {
		return VerdictRow{}, false
	}
	best := rs[0]
	row := VerdictRow{Question: question, Answer: "**" + best.model + "**", Figure: unit(best.value), Anchor: anchor}
	if best.bound {
		// Client-bound: the load generator was saturated, so a throughput is
		// a floor, and a latency or a CPU cost was measured below the
		// server's limit.
		row.Figure += " (client-bound)"
	}
	markTied(rs)
	var tied []string
	for _, r := range rs[1:] {
		if r.tied {
			tied = append(tied, r.model)
		}
	}
	if len(tied) > 0 {
		row.Answer += " ≈ " + strings.Join(tied, ", ")
	}
	if len(rs) == 1 {
		row.Margin = "the only model measured"
		return row, true
	}
	next := rs[1]
	c := Compare(best.reps, next.reps)
	diff, rel := pctFine(best.value/next.value-1, true), "over"
	if !higherBetter {
		diff, rel = pctFine(1-best.value/next.value, false)+" lower", "than"
	}
	switch c.Verdict {
	case Significant:
		row.Margin = fmt.Sprintf("%s %s %s, significant (p = %.2g)", diff, rel, next.model, c.P)
	case Consistent:
		row.Margin = fmt.Sprintf("%s %s %s in every repetition, too few for significance (p = %.2g)", diff, rel, next.model, c.P)
	default:
		row.Margin = fmt.Sprintf("within the noise of %s (%s, p = %.2g)", next.model, diff, c.P)
	}
	if len(tied) > 0 && c.Verdict != Noise {
		// The runner-up is clear of the best, yet a model further down is
		// not (a wider spread): say so rather than contradict the list.
		row.Margin += "; the models after ≈ overlap it"
	}
	return row, true
}

// pctFine formats a relative difference as "12%", or "0.4%" under 1% (so that
// a margin is never "0%"), signed when sign is set.
func pctFine(x float64, sign bool) string {
	switch {
	case math.IsNaN(x) || math.IsInf(x, 0):
		return "–"
	case sign && math.Abs(x) < 0.01:
		return fmt.Sprintf("%+.1f%%", 100*x)
	case sign:
		return fmt.Sprintf("%+.0f%%", 100*x)
	case math.Abs(x) < 0.01:
		return fmt.Sprintf("%.1f%%", 100*x)
	}
	return fmt.Sprintf("%.0f%%", 100*x)
}

// Verdict is the run's verdict table rows, in the order questions are asked:
// throughput, CPU per request and p99 at each concurrency, then memory per
// connection, connections held, blocking work, new connections and capacity
// where the run measured them. anchor gives the report section of a figure
// name ("" when the figure was not drawn).
func Verdict(s *Summary, anchor func(fig string, fallback string) string) []VerdictRow {
	sp := s.Spec
	var rows []VerdictRow
	groups := sweepGroups(sp)
	add := func(r VerdictRow, ok bool) {
		if ok {
			rows = append(rows, r)
		}
	}
	for _, g := range groups {
		where := ""
		if len(groups) > 1 {
			where = ", " + g.String()
		}
		section := capitalize(g.String())
		for _, c := range sp.Conns {
			rs := rankBy(s, g, c, throughputMetric, true)
			add(verdictOf(fmt.Sprintf("Highest throughput, %s%s", connsTitle(c), where), rs, func(v float64) string { return Num(v) + " req/s" }, true,
				anchor("throughput-"+g.Key(), section)))
		}
		for _, c := range sp.Conns {
			rs := rankBy(s, g, c, cpuMetric, false)
			add(verdictOf(fmt.Sprintf("Lowest CPU per request, %s%s", connsTitle(c), where), rs, func(v float64) string { return Micros(v) + " of server CPU" }, false,
				anchor("cpu-"+g.Key(), section)))
		}
		for _, c := range sp.Conns {
			rs := rankBy(s, g, c, p99Metric, false)
			fig := "p99-" + g.Key()
			if len(sp.Conns) == 1 {
				fig = fmt.Sprintf("nines-%s-c%d", g.Key(), c)
			}
			add(verdictOf(fmt.Sprintf("Lowest p99 latency, %s%s", connsTitle(c), where), rs, func(v float64) string { return Micros(v) + " p99" }, false,
				anchor(fig, section)))
		}
		if r, ok := memoryVerdict(s, g); ok {
			r.Question += where
			r.Anchor = anchor("rss-"+g.Key(), section)
			rows = append(rows, r)
		}
		if idleSwept(sp) {
			for _, c := range sp.Conns {
				if r, ok := heldVerdict(s, g, c); ok {
					r.Question += where
					r.Anchor = anchor(fmt.Sprintf("idle-cpu-%s-c%d", g.Key(), c), section)
					rows = append(rows, r)
				}
			}
		}
		if sp.Curved() {
			for _, c := range sp.Conns {
				if r, ok := capacityVerdict(s, g, c); ok {
					r.Question += where
					r.Anchor = anchor(fmt.Sprintf("capacity-%s-c%d", g.Key(), c), section)
					rows = append(rows, r)
				}
			}
		}
	}
	focus := sp.FocusConns()
	for _, proto := range sp.Protos {
		if r, ok := workVerdict(s, proto, focus); ok {
			r.Anchor = anchor(fmt.Sprintf("work-%s-c%d", proto, focus), "")
			rows = append(rows, r)
		}
	}
	for _, g := range sp.Groups() {
		if !g.Reconnect {
			continue
		}
		rs := rankBy(s, g, focus, throughputMetric, true)
		add(verdictOf(fmt.Sprintf("Cheapest new connection (connect, one request, close), %d concurrent, %s", focus, g.Proto), rs,
			func(v float64) string { return Num(v) + " conn/s" }, true, anchor(fmt.Sprintf("reconnect-%s-c%d", g.Key(), focus), capitalize(g.String()))))
	}
	return rows
}

// memoryVerdict: the least memory per held connection (MemoryFindings' growth).
// RSS peaks resolve to about a page per connection, so models within 1 KiB of
// the least are listed beside it.
func memoryVerdict(s *Summary, g Group) (VerdictRow, bool) {
	gs := memoryGrowth(s, g)
	if len(gs) == 0 {
		return VerdictRow{}, false
	}
	slices.SortStableFunc(gs, func(a, b growth) int { return cmp.Compare(a.perConn, b.perConn) })
	best := gs[0]
	row := VerdictRow{Question: "Least memory per held connection", Answer: "**" + best.model + "**",
		Figure: perConn(best.perConn) + fmt.Sprintf(" (RSS from %s to %s held)", plural(best.heldLo, "connection"), plural(best.heldHi, "connection"))}
	var near []string
	i := 1
	for ; i < len(gs) && gs[i].perConn-best.perConn < 1024; i++ {
		near = append(near, gs[i].model)
	}
	if len(near) > 0 {
		row.Answer += " ≈ " + strings.Join(near, ", ")
	}
	switch {
	case i < len(gs):
		row.Margin = fmt.Sprintf("next: %s at %s (one peak per cell, no repetitions to test: models within 1 KiB are listed as tied)", gs[i].model, perConn(gs[i].perConn))
	default:
		row.Margin = "every model within 1 KiB per connection of it"
	}
	return row, true
}

// heldVerdict: the most idle connections held beside the busy ones at conns,
// with their heartbeats answered (the idle sweep).
func heldVerdict(s *Summary, g Group, conns int) (VerdictRow, bool) {
	type held struct {
		model string
		n     int
	}
	var hs []held
	for _, m := range s.Spec.Models {
		if IsPeer(m) {
			continue
		}
		most := -1
		for _, idle := range s.Spec.idles() {
			cs := s.CellAt(g, m, conns, idle)
			if cs.Planned == 0 || cs.OK == 0 || cs.Apart() != "" {
				break
			}
			n := idle
			if h := cs.Heartbeats; h != nil {
				n = h.EstablishedMin
			}
			most = max(most, n)
		}
		if most >= 0 {
			hs = append(hs, held{m, most})
		}
	}
	if len(hs) == 0 {
		return VerdictRow{}, false
	}
	slices.SortStableFunc(hs, func(a, b held) int { return cmp.Compare(b.n, a.n) })
	top := hs[0]
	row := VerdictRow{Question: fmt.Sprintf("Most idle connections held beside %d busy", conns), Answer: "**" + top.model + "**",
		Figure: fmt.Sprintf("%d idle", top.n)}
	var same []string
	i := 1
	for ; i < len(hs) && hs[i].n == top.n; i++ {
		same = append(same, hs[i].model)
	}
	if len(same) > 0 {
		row.Answer += " = " + strings.Join(same, ", ")
	}
	if i < len(hs) {
		row.Margin = fmt.Sprintf("the sweep's steps are the resolution; next: %s held %d", hs[i].model, hs[i].n)
	} else {
		row.Margin = "every model held the sweep's largest step"
	}
	return row, true
}

// capacityVerdict: the highest capacity at the latency objective (the search).
func capacityVerdict(s *Summary, g Group, conns int) (VerdictRow, bool) {
	var rs []ranking
	for _, r := range searchRows(s, g, conns) {
		if !IsPeer(r.Model) {
			rs = append(rs, ranking{model: r.Model, value: r.Search.Capacity, reps: r.Search.Capacities})
		}
	}
	return verdictOf(fmt.Sprintf("Most capacity at %s, %s", s.Spec.Search, connsTitle(conns)), rs, func(v float64) string { return Num(v) + " req/s" }, true, "")
}

// workVerdict: the model that kept the most of its throughput under the first
// blocking work of proto, relative to none.
func workVerdict(s *Summary, proto string, conns int) (VerdictRow, bool) {
	works := worksOf(s.Spec, proto)
	if len(works) < 2 || works[0] != "none" {
		return VerdictRow{}, false
	}
	w := works[1]
	var rs []ranking
	for _, m := range s.Spec.Models {
		a := s.Cell(Group{Proto: proto, Work: "none"}, m, conns)
		b := s.Cell(Group{Proto: proto, Work: w}, m, conns)
		if IsPeer(m) || a.Throughput.N == 0 || b.Throughput.N == 0 || a.Throughput.Median <= 0 || b.Apart() != "" {
			continue
		}
		rs = append(rs, ranking{model: m, value: b.Throughput.Median, reps: b.Throughputs, bound: b.ClientBound > 0})
	}
	slices.SortStableFunc(rs, func(a, b ranking) int { return cmp.Compare(b.value, a.value) })
	return verdictOf(fmt.Sprintf("Blocking work tolerated (%s, work %s, %d connections)", proto, w, conns), rs,
		func(v float64) string { return Num(v) + " req/s with the work" }, true, "")
}

// VerdictTable is the verdict as a markdown table, each question linking to
// its evidence.
func VerdictTable(rows []VerdictRow) string {
	var b strings.Builder
	b.WriteString("| question | answer (≈ within the noise of it) | figure | margin over the runner-up |\n|---|---|--:|---|\n")
	for _, r := range rows {
		q := r.Question
		if r.Anchor != "" {
			q = fmt.Sprintf("[%s](%s)", q, r.Anchor)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", q, r.Answer, r.Figure, r.Margin)
	}
	return b.String()
}

// Anchor is the link GitHub's markdown gives a heading: lower case, spaces to
// hyphens, punctuation dropped.
func Anchor(heading string) string {
	var b strings.Builder
	b.WriteByte('#')
	for _, r := range strings.ToLower(heading) {
		switch {
		case unicode.IsLetter(r), unicode.IsDigit(r), r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// ModelCard is one model in one line: where it stood best and worst against
// the leader of each cell row, where it hit a ceiling, and its flags.
type ModelCard struct {
	Model, Family string
	Best, Worst   string
	Ceilings      string
	Flags         string
	// Config is the server flags its cells ran with beyond its defaults
	// (Spec.CellConfig), "" for none.
	Config string
}

// ModelCards are a card per model and peer, models first, over the sweep's
// closed-loop cells.
func ModelCards(s *Summary) []ModelCard {
	sp := s.Spec
	groups := sweepGroups(sp)
	var cards []ModelCard
	for _, m := range sp.Models {
		card := ModelCard{Model: m, Family: FamilyOf(m)}
		type standing struct {
			where string
			cs    CellSummary
			ratio float64
		}
		var st []standing
		var ceilings []string
		cells, bound, noisy, failed := 0, 0, 0, 0
		for _, g := range groups {
			for _, c := range sp.Conns {
				cs := s.Cell(g, m, c)
				if cs.Planned == 0 {
					continue
				}
				cells++
				failed += cs.Failed
				where := fmt.Sprintf("c=%d", c)
				if len(groups) > 1 {
					where = g.String() + " " + where
				}
				if why := cs.Apart(); why != "" {
					ceilings = append(ceilings, where+": "+why)
				}
				if cs.ClientBound > 0 {
					bound++
				}
				if cs.Noisy() {
					noisy++
				}
				if cs.Throughput.N == 0 || cs.Apart() != "" {
					continue
				}
				if ms := measured(s, g, c); len(ms) > 0 && ms[0].Throughput.Median > 0 {
					st = append(st, standing{where, cs, cs.Throughput.Median / ms[0].Throughput.Median})
				}
			}
		}
		say := func(x standing) string {
			return fmt.Sprintf("%s: %s req/s, %s of the leader", x.where, Num(x.cs.Throughput.Median), pctOf(x.ratio))
		}
		switch {
		case len(st) == 0:
			card.Best, card.Worst = "–", "–"
		default:
			best := slices.MaxFunc(st, func(a, b standing) int { return cmp.Compare(a.ratio, b.ratio) })
			worst := slices.MinFunc(st, func(a, b standing) int { return cmp.Compare(a.ratio, b.ratio) })
			card.Best, card.Worst = say(best), say(worst)
			switch {
			case len(st) == 1:
				card.Worst = "–"
			case worst.ratio > best.ratio-0.005:
				card.Worst = "the same standing in every cell"
			}
		}
		card.Ceilings = cmp.Or(strings.Join(ceilings, "; "), "–")
		card.Config = configSummary(sp, m, groups)
		var flags []string
		if bound > 0 {
			flags = append(flags, fmt.Sprintf("client-bound in %d of %d cells", bound, cells))
		}
		if noisy > 0 {
			flags = append(flags, fmt.Sprintf("noisy in %d of %d", noisy, cells))
		}
		if failed > 0 {
			flags = append(flags, fmt.Sprintf("%d trials failed", failed))
		}
		card.Flags = cmp.Or(strings.Join(flags, "; "), "–")
		cards = append(cards, card)
	}
	slices.SortStableFunc(cards, func(a, b ModelCard) int {
		return cmp.Compare(slices.Index(Families, a.Family), slices.Index(Families, b.Family))
	})
	return cards
}

// configSummary is the flags a model's cells ran with beyond its defaults, each
// flag's values over the concurrencies joined: "-workers=1/10/100/1000".
func configSummary(sp Spec, model string, groups []Group) string {
	var order []string
	vals := map[string][]string{}
	for _, g := range groups {
		for _, c := range sp.Conns {
			for _, idle := range sp.idles() {
				for _, a := range sp.CellConfig(Cell{Model: model, Proto: g.Proto, Work: g.Work, Conns: c, Idle: idle}) {
					flag, v, _ := strings.Cut(a, "=")
					if _, ok := vals[flag]; !ok {
						order = append(order, flag)
					}
					if !slices.Contains(vals[flag], v) {
						vals[flag] = append(vals[flag], v)
					}
				}
			}
		}
	}
	var parts []string
	for _, f := range order {
		parts = append(parts, f+"="+strings.Join(vals[f], "/"))
	}
	return strings.Join(parts, " ")
}

// ModelCardTable is the cards as a markdown table.
func ModelCardTable(cards []ModelCard) string {
	var b strings.Builder
	b.WriteString("| model | family | configured | best cell (throughput against each row's leader) | worst cell | not all connections served | flags |\n|---|---|---|---|---|---|---|\n")
	for _, c := range cards {
		name := c.Model
		if IsPeer(name) {
			name = "*" + name + "*"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", name, c.Family, cmp.Or(c.Config, "defaults"), c.Best, c.Worst, c.Ceilings, c.Flags)
	}
	return b.String()
}

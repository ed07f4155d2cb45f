package bench

// The C10K experiment: a few busy connections beside many idle ones (Spec.Idles),
// each idle one sending a heartbeat now and then. select and poll hand the kernel
// every descriptor on every pass, so their cost per request grows with the idle
// connections; epoll's does not. These are the figures, plots and sentences of
// that sweep: CPU per request against connections held, memory per idle
// connection, the heartbeats' latency, and each model's slope.

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"gonum.org/v1/gonum/stat/distuv"
)

// idleSwept reports whether the spec sweeps idle connections.
func idleSwept(sp Spec) bool {
	return slices.ContainsFunc(sp.Idles, func(n int) bool { return n > 0 })
}

// IdleFigures are the idle sweep's plots for a group at one concurrency: CPU per
// request against connections held (log-log), memory per idle connection, and
// the heartbeats' p99 against idle connections.
func IdleFigures(s *Summary, g Group, conns int) []Figure {
	sp := s.Spec
	key := fmt.Sprintf("%s-c%d", g.Key(), conns)
	cpu := Panel{Title: fmt.Sprintf("Server CPU per request vs connections held — %d busy, the rest idle; %s", conns, g.String()),
		XLabel: "connections held: busy + idle (log)", YLabel: "server CPU time per request (log)", LogX: true, LogY: true, YMicros: true}
	mem := Panel{Title: fmt.Sprintf("Memory per idle connection vs connections held — %d busy; %s", conns, g.String()),
		XLabel: "connections held: busy + idle (log)", YLabel: "peak RSS growth per idle connection, KiB", LogX: true}
	hb := Panel{Title: fmt.Sprintf("Heartbeat p99 vs idle connections — %d busy; %s", conns, g.String()),
		XLabel: "idle connections (log)", YLabel: "heartbeat round trip p99 (log)", LogX: true, LogY: true, YMicros: true}
	for _, m := range sp.Models {
		c, mm, h := Series{Name: m, Peer: IsPeer(m)}, Series{Name: m, Peer: IsPeer(m)}, Series{Name: m, Peer: IsPeer(m)}
		base := s.CellAt(g, m, conns, 0)
		for _, idle := range sp.idles() {
			cs := s.CellAt(g, m, conns, idle)
			if cs.Measured == 0 {
				continue
			}
			apart := cs.Apart() != ""
			if cs.CPUPerReqUS > 0 {
				c.Points = append(c.Points, Point{X: float64(conns + idle), Y: cs.CPUPerReqUS, Lo: cs.CPUPerReqUS, Hi: cs.CPUPerReqUS, Apart: apart})
			}
			if idle > 0 && base.RSSMaxBytes > 0 && cs.RSSMaxBytes > 0 {
				kib := float64(cs.RSSMaxBytes-base.RSSMaxBytes) / float64(idle) / 1024
				mm.Points = append(mm.Points, Point{X: float64(conns + idle), Y: kib, Lo: kib, Hi: kib, Apart: apart})
			}
			if b := cs.Heartbeats; idle > 0 && b != nil && b.Latency.P99US > 0 {
				y := float64(b.Latency.P99US)
				h.Points = append(h.Points, Point{X: float64(idle), Y: y, Lo: y, Hi: y, Apart: apart})
			}
		}
		cpu.Series, mem.Series, hb.Series = append(cpu.Series, c), append(mem.Series, mm), append(hb.Series, h)
	}
	// A process or a thread per connection costs orders of magnitude more
	// than an event loop's buffers: a log axis keeps both readable.
	if spansDecades(mem.Series, 1.5) {
		mem.LogY, mem.YLabel = true, mem.YLabel+" (log)"
		for i := range mem.Series {
			mem.Series[i].Points = slices.DeleteFunc(mem.Series[i].Points, func(p Point) bool { return p.Y <= 0 })
		}
	}
	return []Figure{
		{Name: "idle-cpu-" + key, Title: fmt.Sprintf("CPU per request vs connections held (%d busy, %s)", conns, g.String()), Panels: []Panel{cpu},
			Caption: fmt.Sprintf("The C10K experiment: %d busy connections in a closed loop beside 0 and more idle ones, each idle one sending a heartbeat every %s. Server CPU per request (median over repetitions), both axes log: a line that rises is a model that pays for every connection it holds on every pass (select, poll), a flat one pays only for the ready ones (epoll). Hollow points did not serve all their connections (a descriptor ceiling, idle connections lost).", conns, heartbeatString(sp))},
		{Name: "idle-memory-" + key, Title: fmt.Sprintf("Memory per idle connection (%d busy, %s)", conns, g.String()), Panels: []Panel{mem},
			Caption: "The growth of the server tree's peak RSS over the same model with no idle connection, divided by the idle connections: what holding one costs in user-space memory (buffers, per-connection state). Kernel socket memory is not in RSS."},
		{Name: "idle-heartbeat-" + key, Title: fmt.Sprintf("Heartbeat latency vs idle connections (%d busy, %s)", conns, g.String()), Panels: []Panel{hb},
			Caption: "The p99 round trip of the idle connections' heartbeats (merged over repetitions): how long a rarely-speaking client waits beside the busy ones."},
	}
}

func heartbeatString(sp Spec) string {
	if sp.Heartbeat > 0 {
		return sp.Heartbeat.String()
	}
	return "5s (loadgen's default)"
}

// Slope is a least-squares line through a model's CPU per request (one point per
// trial) against its idle connections: µs of server CPU per request added by
// each 1,000 idle connections, with a 95% confidence interval.
type Slope struct {
	Model string
	// PerK is the slope, µs per request per 1,000 idle connections; Lo and Hi
	// bound its 95% interval (Student's t on n-2 degrees of freedom).
	PerK, Lo, Hi float64
	// Intercept is the fitted CPU per request with no idle connection, µs.
	Intercept float64
	N         int // trials in the fit
	MaxIdle   int // the most idle connections the fit covers
}

// Flat reports whether the interval includes 0: no growth the data can show.
func (sl Slope) Flat() bool { return sl.Lo <= 0 && sl.Hi >= 0 }

// fitSlope fits y = a + b·x by least squares and gives b's 95% interval; ok is
// false with fewer than 3 points or no spread in x.
func fitSlope(xs, ys []float64) (a, b, lo, hi float64, ok bool) {
	n := len(xs)
	if n < 3 || len(ys) != n {
		return 0, 0, 0, 0, false
	}
	var mx, my float64
	for i := range xs {
		mx += xs[i]
		my += ys[i]
	}
	mx, my = mx/float64(n), my/float64(n)
	var sxx, sxy float64
	for i := range xs {
		sxx += (xs[i] - mx) * (xs[i] - mx)
		sxy += (xs[i] - mx) * (ys[i] - my)
	}
	if sxx == 0 {
		return 0, 0, 0, 0, false
	}
	b = sxy / sxx
	a = my - b*mx
	var sse float64
	for i := range xs {
		r := ys[i] - a - b*xs[i]
		sse += r * r
	}
	se := math.Sqrt(sse / float64(n-2) / sxx)
	t := distuv.StudentsT{Mu: 0, Sigma: 1, Nu: float64(n - 2)}.Quantile(0.975)
	return a, b, b - t*se, b + t*se, true
}

// IdleSlopes fits each model's slope over the idle sweep at one concurrency,
// from the trials of the cells where it served every connection (those apart
// are left out: their cost per request is of fewer connections).
func IdleSlopes(s *Summary, g Group, conns int) []Slope {
	var out []Slope
	for _, m := range s.Spec.Models {
		var xs, ys []float64
		maxIdle := 0
		for _, idle := range s.Spec.idles() {
			cs := s.CellAt(g, m, conns, idle)
			if cs.Apart() != "" {
				continue
			}
			for _, v := range cs.CPUPerReqs {
				xs, ys = append(xs, float64(idle)/1000), append(ys, v)
				maxIdle = max(maxIdle, idle)
			}
		}
		if a, b, lo, hi, ok := fitSlope(xs, ys); ok {
			out = append(out, Slope{Model: m, PerK: b, Lo: lo, Hi: hi, Intercept: a, N: len(xs), MaxIdle: maxIdle})
		}
	}
	return out
}

// IdleTable is the idle sweep's Markdown table at one concurrency: per model and
// idle connections, throughput, CPU per request, peak RSS, heartbeats and flags.
func IdleTable(s *Summary, g Group, conns int) string {
	var b strings.Builder
	b.WriteString("| model | idle | req/s [CI] | CPU/req | p99 | peak RSS | RSS per idle conn | threads / procs | heartbeats answered / sent (late, missed) | heartbeat p99 | idle lost | flags |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
	for _, m := range s.Spec.Models {
		base := s.CellAt(g, m, conns, 0)
		for _, idle := range s.Spec.idles() {
			cs := s.CellAt(g, m, conns, idle)
			if cs.Planned == 0 {
				continue
			}
			name := m
			if IsPeer(m) {
				name = "*" + m + "*"
			}
			beats, p99, lost := "–", "–", "–"
			if h := cs.Heartbeats; h != nil {
				beats = fmt.Sprintf("%d / %d (%d, %d)", h.Answered, h.Sent, h.Late, h.Missed)
				if h.Latency.Count > 0 {
					p99 = Micros(float64(h.Latency.P99US))
				}
				lost = "0"
				if h.ErrorsTotal > 0 {
					lost = ErrorsString(h.Errors)
				}
			}
			perIdle := "–"
			if idle > 0 && base.RSSMaxBytes > 0 && cs.RSSMaxBytes > 0 {
				perIdle = perConn(float64(cs.RSSMaxBytes-base.RSSMaxBytes) / float64(idle))
			}
			fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", name, idle, throughputCell(cs), cpuCell(cs), lat(cs, cs.Latency.P99US),
				rssCell(cs), perIdle, procCell(cs), beats, p99, lost, strings.Join(Flags(cs), " "))
		}
	}
	return b.String()
}

// IdleFindings says what the idle sweep shows: each model's slope (growing, or
// flat within its interval), the steepest against the flattest, and the cells
// where a model could not hold the connections, with the reason.
func IdleFindings(s *Summary, g Group, conns int) []string {
	slopes := IdleSlopes(s, g, conns)
	var grow, flat []string
	for _, sl := range slopes {
		if IsPeer(sl.Model) {
			continue
		}
		if sl.Flat() {
			flat = append(flat, fmt.Sprintf("%s (%+.3f µs [%+.3f, %+.3f])", sl.Model, sl.PerK, sl.Lo, sl.Hi))
		} else {
			// The measured ends beside the fitted slope: a curve need not be a line.
			lo, hi := s.CellAt(g, sl.Model, conns, 0), s.CellAt(g, sl.Model, conns, sl.MaxIdle)
			grow = append(grow, fmt.Sprintf("%s %+.2f µs [%+.2f, %+.2f] (measured: %s a request with no idle connection, %s with %d)",
				sl.Model, sl.PerK, sl.Lo, sl.Hi, Micros(lo.CPUPerReqUS), Micros(hi.CPUPerReqUS), sl.MaxIdle))
		}
	}
	var out []string
	if len(grow) > 0 {
		out = append(out, fmt.Sprintf("Server CPU per request grows with the idle connections held (least-squares slope per 1,000 idle connections, 95%% interval): %s.", strings.Join(grow, ", ")))
	}
	if len(flat) > 0 {
		out = append(out, fmt.Sprintf("Flat — no growth the repetitions can show (slope per 1,000 idle connections and its interval include 0): %s.", strings.Join(flat, ", ")))
	}
	for _, sl := range slopes {
		if IsPeer(sl.Model) {
			out = append(out, fmt.Sprintf("Reference %s: %+.3f µs per 1,000 idle connections [%+.3f, %+.3f].", sl.Model, sl.PerK, sl.Lo, sl.Hi))
		}
	}
	var limits []string
	for _, m := range s.Spec.Models {
		for _, idle := range s.Spec.idles() {
			cs := s.CellAt(g, m, conns, idle)
			switch {
			case cs.Apart() != "":
				limits = append(limits, fmt.Sprintf("%s at %d idle: %s", m, idle, cs.Apart()))
			case cs.OK == 0 && (cs.Failed > 0 || cs.Skipped > 0) && len(cs.Notes) > 0:
				limits = append(limits, fmt.Sprintf("%s at %d idle: %s", m, idle, cs.Notes[0]))
			default:
				continue
			}
			break // the first idle count a model could not hold is its ceiling
		}
	}
	if len(limits) > 0 {
		out = append(out, "Ceilings — the fewest idle connections a model could not hold: "+strings.Join(limits, "; ")+".")
	}
	return out
}

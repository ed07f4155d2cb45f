package bench

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"concbench/internal/result"
)

// The knee of a serial server of 1 ms per request under Poisson arrivals (an
// M/D/1 queue; p99 of the response from a simulation of 400,000 arrivals at
// each rate): 1.95 ms at 100 req/s, 4.3 at 500, 7.5 at 700, 11.2 at 800,
// 21.4 at 900; at 1100 the queue grows without bound (under rate). The knee,
// the first step past 5× the lowest step's p99, is at 800 req/s: 0.8 of the
// capacity of 1000.
func TestKneeMD1(t *testing.T) {
	var cells []CellSummary
	for _, p := range []struct {
		rate float64
		p99  int64
	}{{100, 1953}, {300, 2893}, {500, 4323}, {700, 7517}, {800, 11184}, {900, 21397}, {950, 50300}} {
		cells = append(cells, CellSummary{Measured: 3, Offered: p.rate, Latency: result.Percentiles{P99US: p.p99}})
	}
	if k := knee(cells); k < 0 || cells[k].Offered != 800 {
		t.Errorf("knee at %d, want the step at 800 req/s", k)
	}
	over := append(slices.Clone(cells[:3]), CellSummary{Measured: 3, UnderRate: 2, Offered: 1100, Latency: result.Percentiles{P99US: 3000}})
	if k := knee(over); k != 3 {
		t.Errorf("knee %d, want the step under rate (3)", k)
	}
}

// curveFixture is a dataset of the curve preset's shape: two models and a peer,
// closed loop, three steps and a search each.
func curveFixture(t *testing.T) *Dataset {
	sp := Spec{Preset: "test", Models: []string{"fast", "slow", "peer:cepoll"}, Conns: []int{100}, Protos: []string{"echo"}, Works: []string{"none"},
		Reconnect: "off", Repeat: 3, Duration: time.Second, Warmup: 300 * time.Millisecond, Size: 64,
		Loads: []float64{0.3, 0.7, 1.1}, Arrival: "exp", Search: "p99<=1ms", SearchRounds: 3}
	d := fixtureOf(t, sp)
	peak := map[string]float64{"fast": 100000, "slow": 20000, "peer:cepoll": 150000}
	for k, r := range d.Results {
		c := d.Records[k].Trial.Cell
		switch {
		case c.Open():
			r.Config.Workload.Rate = c.Load * peak[c.Model]
			r.Load.Latency.P99US = int64(500 * c.Load / (1.15 - c.Load)) // a wall near 1.15× the peak
			if c.Load > 1 {
				r.Load.UnderRate = true
			}
		case c.Search:
			caps := map[string][]float64{"fast": {80000, 82000, 81000}, "slow": {70000, 83000, 76000}, "peer:cepoll": {120000, 121000, 119000}}[c.Model]
			r.Search = &result.Search{SLO: "p99<=1ms", Percentile: 99, BoundUS: 1000, Arrival: "exp", Rounds: 3, Tolerance: 0.05,
				CalibratedRate: peak[c.Model], Capacities: caps, Capacity: caps[2], CapacityLo: slices.Min(caps), CapacityHi: slices.Max(caps), Level: 0.75,
				Steps: []result.SearchStep{{Round: 1, Rate: peak[c.Model], Pass: false, ServerCPU: 0.97, Why: "p99 3000 µs > 1000 µs"}}}
		}
	}
	return d
}

// The curve section: the capacity table ranked (a model whose rounds overlap
// the leader's is tied with it), a sentence per model, and the figures drawn.
func TestCurveReport(t *testing.T) {
	s := Summarise(curveFixture(t))
	g := Group{Proto: "echo", Work: "none"}
	table := CapacityTable(s, g, 100)
	var order []string
	for _, l := range strings.Split(table, "\n")[2:] {
		if f := strings.Split(l, "|"); len(f) > 2 {
			order = append(order, strings.TrimSpace(f[1]))
		}
	}
	if !slices.Equal(order, []string{"fast", "slow", "*peer:cepoll*"}) || !strings.Contains(table, "tied (within the noise)") {
		t.Errorf("capacity table:\n%s", table)
	}
	find := strings.Join(CurveFindings(s, g, 100), "\n")
	for _, want := range []string{"Highest capacity at p99<=1ms: fast, 81k req/s [80k–82k]", "Tied with it (the rounds' capacities overlap): slow.",
		"slow: capacity 76k req/s, 380% of its closed-loop peak; knee", "limited by server CPU: 0.97 cores busy"} {
		if !strings.Contains(find, want) {
			t.Errorf("curve findings lack %q:\n%s", want, find)
		}
	}
	for _, f := range []Figure{CurveFigure(s, g, 100, "p99"), CurveFigure(s, g, 100, "p50"), CapacityFigure(s, g, 100)} {
		if !f.HasData() {
			t.Errorf("%s: no data", f.Name)
			continue
		}
		if testing.Short() {
			continue
		}
		if err := Render(f, filepath.Join(plotDir(t), f.Name+".png")); err != nil {
			t.Errorf("render %s: %v", f.Name, err)
		}
	}
	// The capacity figure: bars in the models' colours, highest first, the peer
	// last; a model that held the objective at no rate says so on an empty row.
	names := func(f Figure) (out []string) {
		for _, b := range f.Panels[0].HBars {
			out = append(out, b.Name)
		}
		return out
	}
	capFig := CapacityFigure(s, g, 100)
	if got := names(capFig); !slices.Equal(got, []string{"fast", "slow", "peer:cepoll"}) || !capFig.Panels[0].HBars[2].Peer || capFig.Panels[0].HBars[0].Hi <= capFig.Panels[0].HBars[0].Lo {
		t.Errorf("capacity figure rows %v (%+v): want fast, slow, then the peer, with whiskers", got, capFig.Panels[0].HBars)
	}
	slow := s.Cells[Cell{Model: "slow", Proto: "echo", Work: "none", Conns: 100, Search: true}.Key()].Search
	held := *slow
	slow.Capacity, slow.CapacityLo, slow.CapacityHi = 0, 0, 0
	if b := CapacityFigure(s, g, 100).Panels[0].HBars[1]; b.Name != "slow" || b.Value != 0 || !strings.HasPrefix(b.Label, "none: it held p99<=1ms at no rate") {
		t.Errorf("a model with no capacity: %+v, want an empty row saying none", b)
	}
	*slow = held
	if cf := CurveFigure(s, g, 100, "p99"); len(cf.Panels) != 1 || !slices.ContainsFunc(cf.Panels[0].Series, func(se Series) bool {
		return se.Name == "fast" && len(se.Points) == 3 && se.Points[2].Apart && slices.ContainsFunc(se.Points, func(p Point) bool { return p.Mark })
	}) {
		t.Errorf("curve figure: want one panel (other models) with fast's 3 steps, the last hollow, a knee marked: %+v", cf.Panels)
	}
}

// datagramFixture is a udp-echo dataset: two models, batch 1 and 32, closed
// loop and open-loop steps at 0.5, 1 and 2 times each one's peak; a step
// above the peak loses what exceeds it, at the server's socket.
func datagramFixture(t *testing.T) *Dataset {
	sp := Spec{Preset: "test", Models: []string{"fast", "slow"}, Conns: []int{100}, Protos: []string{"udp-echo"}, Batches: []int{1, 32}, Works: []string{"none"},
		Reconnect: "off", Repeat: 3, Duration: time.Second, Warmup: 300 * time.Millisecond, Size: 64, Loads: []float64{0.5, 1, 2}}
	d := fixtureOf(t, sp)
	peak := map[string]float64{"fast": 100000, "slow": 20000}
	for k, r := range d.Results {
		c := d.Records[k].Trial.Cell
		offered := peak[c.Model]
		if c.Open() {
			offered = c.Load * peak[c.Model]
			r.Config.Workload.Rate = offered
		}
		sent := int64(offered * r.Load.Seconds)
		answered := min(sent, int64(peak[c.Model]*r.Load.Seconds))
		lost := sent - answered
		r.Load.Throughput = float64(answered) / r.Load.Seconds
		r.Load.Datagrams = &result.Datagrams{Sent: sent, Answered: answered, Lost: lost, LossRate: float64(lost) / float64(sent), Reordered: 2}
		if c.Load == 2 && c.Model == "fast" && c.Batch == 1 { // fast at twice its peak: loadgen itself loses some
			r.Load.Datagrams.ClientDropped = 100
		}
		r.Server.CountersAtWindowStart = &result.ServerCounters{Gauges: map[string]int64{"rcvbuf_drops": 10}}
		r.Server.CountersAtWindowEnd = &result.ServerCounters{Gauges: map[string]int64{"rcvbuf_drops": 10 + lost}}
	}
	return d
}

// The datagram report: each cell's loss summed over its trials and said
// where it happened, a group per batch, and the figure of delivered and lost
// datagrams against the offered rate.
func TestDatagramReport(t *testing.T) {
	d := datagramFixture(t)
	s := Summarise(d)
	for _, b := range []int{1, 32} {
		g := Group{Proto: "udp-echo", Work: "none", Batch: b}
		over := s.Cells[Cell{Model: "slow", Proto: "udp-echo", Work: "none", Batch: b, Conns: 100, Load: 2}.Key()]
		if dg := over.Datagrams; dg == nil || dg.Sent != 3*40000*2 || dg.Lost != dg.Sent/2 || dg.LossRate != 0.5 || dg.ServerRcvbuf != dg.Lost || dg.ServerCounted != 3 || len(dg.LossRates) != 3 {
			t.Fatalf("batch %d: slow at 2× its peak: %+v, want 3 trials of 2 s at 40k/s, half lost at the server's socket", b, over.Datagrams)
		}
		table := Table(s, g, "requests/s")
		if !strings.Contains(table, "| loss |") || !strings.Contains(table, "| 0% (reord 6) |") {
			t.Errorf("batch %d table:\n%s", b, table)
		}
		if got := lossCell(over); got != "50% (srv rcvbuf 120k, reord 6)" {
			t.Errorf("loss cell %q", got)
		}
		f := DatagramFigure(s, g, 100)
		if len(f.Panels) != 3 || len(f.Panels[1].Series) != 2 {
			t.Fatalf("batch %d: figure %+v: want three panels, a series a model", b, f)
		}
		for _, se := range f.Panels[1].Series {
			if len(se.Points) != 3 || se.Points[0].Y != 0 || se.Points[2].Y != 50 {
				t.Errorf("%s's server loss points %+v: want 0%% at half its peak, 50%% at twice", se.Name, se.Points)
			}
		}
		for _, se := range f.Panels[2].Series {
			if len(se.Points) != 3 || b == 32 && se.Points[2].Y != 0 {
				t.Errorf("%s's client loss points %+v: want none lost by loadgen", se.Name, se.Points)
			}
		}
		if b == 32 && !testing.Short() {
			if err := Render(f, filepath.Join(plotDir(t), f.Name+".png")); err != nil {
				t.Errorf("render: %v", err)
			}
		}
	}
	csv := string(TableCSV(s, Group{Proto: "udp-echo", Work: "none", Batch: 32}))
	if !strings.Contains(csv, ",32,600000,600000,0,0,") {
		t.Errorf("the CSV lacks batch 32's closed-loop datagram columns:\n%s", csv)
	}
	if !slices.ContainsFunc(Figures(s), func(f Figure) bool { return f.Name == "udp-loss-udp-echo-batch32-c100" }) {
		t.Error("Figures lacks the datagram figure of batch 32")
	}
	if se := DatagramFigure(s, Group{Proto: "udp-echo", Work: "none", Batch: 1}, 100).Panels[2].Series[0]; se.Name != "fast" || se.Points[2].Y != 100*3*100/float64(3*200000*2) {
		t.Errorf("fast's client loss %+v: want loadgen's 100 drops a trial of the step's datagrams sent", se.Points)
	}
	if works := worksOf(s.Spec, "udp-echo"); !slices.Equal(works, []string{"none"}) {
		t.Errorf("udp-echo's works %v: the batch groups are not work variants", works)
	}
}

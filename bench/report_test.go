package bench

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"gonum.org/v1/plot/vg"

	"concbench/internal/result"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// plotDir is where the render tests draw: a temporary directory, or
// $BENCH_TEST_PLOTS to keep the fixture's PNGs for a look.
func plotDir(t *testing.T) string {
	if d := os.Getenv("BENCH_TEST_PLOTS"); d != "" {
		return d
	}
	return t.TempDir()
}

// fixture is a literal dataset: three models and a reference peer, two
// concurrencies, three repetitions, a timeline each. fast is quicker than slow in
// every repetition; fast and twin overlap; the peer peer:cepoll is quicker than
// all of them and cheaper per request (it must never be ranked). One trial of slow
// at c=100 failed with resets but has figures; one of twin at c=100 was skipped;
// fast at c=100 is client-bound in one repetition.
func fixture(t testing.TB) *Dataset {
	return fixtureOf(t, Spec{Preset: "test", Models: []string{"fast", "slow", "twin", "peer:cepoll"}, Conns: []int{1, 100}, Protos: []string{"echo"},
		Works: []string{"none"}, Reconnect: "off", Repeat: 3, Duration: 2 * time.Second, Warmup: 500 * time.Millisecond,
		Size: 64, Timeline: 6 * time.Second, TimelineConns: 100})
}

// fixtureOf fills every trial of sp with literal figures (see fixture). Blocking
// work divides throughput by 50 for every model but slow (a thread per
// connection, say), which keeps it.
func fixtureOf(t testing.TB, sp Spec) *Dataset {
	d := &Dataset{Plan: Plan{Spec: sp, Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
		Records: map[string]TrialRecord{}, Results: map[string]*result.Run{}}
	base := map[string]float64{"fast": 100000, "slow": 20000, "twin": 98000, "peer:cepoll": 150000}
	lat := map[string]int64{"fast": 200, "slow": 2000, "twin": 210, "peer:cepoll": 130}
	for _, tr := range sp.Plan() {
		m, c, rep := tr.Cell.Model, tr.Cell.Conns, tr.Rep
		rec := TrialRecord{Trial: tr, Status: StatusOK, Started: d.Plan.Started, Seconds: 2.8, Result: "trials/" + tr.Key() + ".json"}
		if m == "twin" && c == 100 && rep == 2 {
			rec = TrialRecord{Trial: tr, Status: StatusSkipped, Reason: "test skip", ExitCode: -1, Started: d.Plan.Started}
			d.Records[tr.Key()] = rec
			continue
		}
		scale := float64(c) / 10
		if c == 1 {
			scale = 0.2
		}
		tput := base[m] * scale * (1 + 0.02*float64(rep-2))
		if m == "twin" {
			tput = base[m] * scale * (1 + 0.05*float64(2-rep)) // overlaps fast
		}
		if tr.Cell.Work != "none" && m != "slow" {
			tput /= 50
		}
		if IsPeer(m) && tr.Cell.Work != "none" {
			// A peer has no per-request work: its cell is skipped, as the runner does.
			d.Records[tr.Key()] = TrialRecord{Trial: tr, Status: StatusSkipped, Reason: PeerSkip(tr.Cell), ExitCode: -1, Started: d.Plan.Started}
			continue
		}
		if tr.Cell.Reconnect {
			tput /= 10
		}
		h := hdr.New(1, 60_000_000, 3)
		l := lat[m] * int64(max(1, c/10))
		for i := range int64(1000) {
			// A body around l and a tail: 1% at 10×, 0.1% at 50×.
			v := l + (i%100)*l/100
			switch {
			case i%1000 == 999:
				v = 50 * l
			case i%100 == 99:
				v = 10 * l
			}
			h.RecordValue(v + int64(rep))
		}
		enc, err := h.Encode(hdr.V2CompressedEncodingCookieBase)
		if err != nil {
			t.Fatal(err)
		}
		r := &result.Run{Schema: result.SchemaVersion, Started: d.Plan.Started,
			Config: result.Config{Model: m, ServerCPUs: []int{0}, ClientCPUs: []int{1}, PinningDefault: true},
			Env: result.Env{CPUModel: "Test CPU", NumCPU: 2, Kernel: "Linux test", Arch: "x86_64", GoVersion: "go1.26", GOMAXPROCS: 1,
				GitRevision: "abc123", NoFileLimit: 20000, Sysctls: map[string]string{"net/core/somaxconn": "4096"}},
			Load: result.Load{Mode: "closed", Requests: int64(tput * 2), Seconds: 2, Throughput: tput, LatencyHist: string(enc)},
			Server: &result.Server{CPUCoresMean: 0.9, RSSMaxBytes: int64(5<<20) + int64(c)*map[string]int64{"fast": 100, "slow": 64 << 10, "twin": 200, "peer:cepoll": 50}[m],
				ThreadsMax: map[string]int{"fast": 2, "slow": c + 2, "twin": 3, "peer:cepoll": 1}[m], ProcsMax: 1},
		}
		if IsPeer(m) {
			r.Config.Model = ""
			r.Server.External = true
			rec.Peer = &PeerRun{Bin: "/bin/cepoll", Args: []string{"-proto", "echo", "-addr", "127.0.0.1:0"}, PID: 4242,
				Addr: "127.0.0.1:40000", CPUs: []int{0}, Exit: &result.Exit{Clean: true}}
		}
		r.Load.Latency = percentilesOf(h)
		if m == "fast" && c == 100 && rep == 3 {
			r.ClientBound = true
		}
		if m == "slow" && c == 100 && rep == 1 {
			r.Load.Errors = map[string]int64{"reset": 3}
			r.Load.ErrorsTotal = 3
			rec.Status, rec.Failure, rec.Reason, rec.ExitCode = StatusFailed, FailErrors, "reset 3", 1
		}
		if tr.Cell.Timeline {
			for s := range 7 {
				n := int64(tput)
				p99 := l * 3
				if s == 0 && m == "slow" {
					n /= 2 // slow start
				}
				if s == 4 && m == "twin" {
					p99 *= 10 // a spike
				}
				if s == 6 {
					n /= 2 // the partial last second, dropped
				}
				r.Load.Timeline = append(r.Load.Timeline, result.Second{T: s, Warmup: s == 0, Requests: n, P99US: p99})
			}
		}
		d.Records[tr.Key()] = rec
		d.Results[tr.Key()] = r
	}
	return d
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test ./bench -update rewrites it after review):\n%s", name, firstDiff(string(got), string(want)))
	}
}

func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < max(len(g), len(w)); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d:\n got %s\nwant %s", i+1, gl, wl)
		}
	}
	return "(no line differs)"
}

func TestSummarize(t *testing.T) {
	s := Summarise(fixture(t))
	g := Group{Proto: "echo", Work: "none"}
	fast := s.Cell(g, "fast", 100)
	if fast.Throughput.N != 3 || !near(fast.Throughput.Median, 1e6) || fast.ClientBound != 1 || fast.Merged != 3 {
		t.Errorf("fast c=100: %+v", fast)
	}
	// Percentiles from the merged histogram of 3 × 1000 values: a body of 2000-3980
	// µs, 0.9% at 10× (20 ms), 0.1% at 50× (100 ms), plus the repetition (1-3 µs).
	// p99 falls at the top of the body, p99.9 in the 10× tail, p99.99 in the 50×.
	if got := fast.Latency; got.Count != 3000 || got.P99US < 3900 || got.P99US > 4000 ||
		got.P999US < 19_980 || got.P999US > 20_030 || got.P9999US < 99_900 || got.P9999US > 100_100 {
		t.Errorf("fast c=100 latency %+v: want 3000 values, p99 ≈ 3.96 ms, p99.9 ≈ 20 ms, p99.99 ≈ 100 ms", got)
	}
	// Little's law: active connections = throughput × mean latency.
	if want := fast.Throughput.Median * fast.Latency.MeanUS / 1e6; !near(fast.ActiveConns, want) || fast.Starved() {
		t.Errorf("fast active conns %g, want %g, not starved", fast.ActiveConns, want)
	}
	if starved := (CellSummary{Cell: Cell{Conns: 100}, ActiveConns: 1.2}); !starved.Starved() || !strings.HasPrefix(strings.Join(Flags(starved), " "), "starved ~1/100") {
		t.Errorf("1.2 of 100 connections served: Starved %v, flags %q", starved.Starved(), Flags(starved))
	}
	slow := s.Cell(g, "slow", 100)
	if slow.Failed != 1 || slow.Measured != 3 || slow.ErrorsTotal != 3 || slow.Errors["reset"] != 3 {
		t.Errorf("slow c=100: failed %d measured %d errors %v", slow.Failed, slow.Measured, slow.Errors)
	}
	twin := s.Cell(g, "twin", 100)
	if twin.Skipped != 1 || twin.Measured != 2 || len(Flags(twin)) != 1 || !strings.HasPrefix(Flags(twin)[0], "skip 1/3") {
		t.Errorf("twin c=100: skipped %d measured %d flags %q", twin.Skipped, twin.Measured, Flags(twin))
	}
	// CPU per request: 0.9 cores × 2 s / requests.
	if want := 0.9 * 2 / float64(int64(1e6*2)) * 1e6; !near(fast.CPUPerReqUS, want) {
		t.Errorf("fast CPU/req %g, want %g", fast.CPUPerReqUS, want)
	}
}

func TestFindings(t *testing.T) {
	s := Summarise(fixture(t))
	g := Group{Proto: "echo", Work: "none"}
	lead := LeadFinding(s, g, 1, "req/s")
	// fast and twin overlap: the lead must be called noise, not a win.
	if !strings.Contains(lead, "**fast** led") || !strings.Contains(lead, "within the noise") {
		t.Errorf("c=1 lead: %s", lead)
	}
	mem := strings.Join(MemoryFindings(s, g), " ")
	if !strings.Contains(mem, "slow 64 KiB") {
		t.Errorf("memory findings lack slow's 64 KiB per connection: %s", mem)
	}
	// The peer is the fastest and cheapest, but is never ranked: it gets its own
	// sentence instead.
	for name, lines := range map[string][]string{"throughput": ThroughputFindings(s, g), "p99": P99Findings(s, g),
		"nines": NinesFindings(s, g, 100), "cpu": CPUFindings(s, g), "memory": MemoryFindings(s, g)} {
		for _, l := range lines {
			if before, _, _ := strings.Cut(l, "Reference"); strings.Contains(before, "peer:") {
				t.Errorf("%s finding ranks the peer: %s", name, l)
			}
		}
	}
	peer := strings.Join(PeerFindings(s, g), " ")
	if want := "Reference peer:cepoll (a peer, not ranked with the models): c=1 30k req/s, the best model fast at 67% of it (consistent"; !strings.HasPrefix(peer, want) {
		t.Errorf("peer finding %q, want it to start %q", peer, want)
	}
	if cpu := strings.Join(CPUFindings(s, g), " "); !strings.Contains(cpu, "Reference: peer:cepoll") {
		t.Errorf("cpu findings lack the reference: %s", cpu)
	}
	tbl := Table(s, g, "req/s")
	if !strings.Contains(tbl, "| 100 | *peer:cepoll* | 1.5M") {
		t.Errorf("the table does not mark the peer:\n%s", tbl)
	}
	tl := strings.Join(TimelineFindings(TimelineRows(s)), " ")
	if !strings.Contains(tl, "slow (50% of steady)") || !strings.Contains(tl, "twin (") {
		t.Errorf("timeline findings: %s", tl)
	}
}

func TestReportGolden(t *testing.T) {
	d := fixture(t)
	s := Summarise(d)
	figs := Figures(s)
	golden(t, "report.md", []byte(Markdown(d, s, figs, "../../plots/test")))
	golden(t, "echo.csv", TableCSV(s, Group{Proto: "echo", Work: "none"}))
	b, err := json.MarshalIndent(figs, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "figures.json", append(b, '\n'))
}

// Every figure renders to a PNG of the intended size with something drawn on it.
func TestRender(t *testing.T) {
	figs := Figures(Summarise(fixture(t)))
	if len(figs) != 6 {
		t.Errorf("%d figures, want 6 (throughput, p99, nines, cpu, rss, timeline)", len(figs))
	}
	dir := plotDir(t)
	for _, f := range figs {
		path := filepath.Join(dir, f.Name+".png")
		if err := Render(f, path); err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		file, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(file)
		file.Close()
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		b := img.Bounds()
		if wantW := int(float64((panelW+legendW)/vg.Inch) * dpi); b.Dx() != wantW {
			t.Errorf("%s: width %d px, want %d", f.Name, b.Dx(), wantW)
		}
		ink := 0
		for y := b.Min.Y; y < b.Max.Y; y += 2 {
			for x := b.Min.X; x < b.Max.X; x += 2 {
				if r, g, bl, _ := img.At(x, y).RGBA(); r < 0xf000 || g < 0xf000 || bl < 0xf000 {
					ink++
				}
			}
		}
		if share := float64(ink) / float64(b.Dx()*b.Dy()/4); share < 0.01 {
			t.Errorf("%s: only %.2f%% of the pixels drawn", f.Name, share*100)
		}
	}
}

// The figures that need the full preset's cells: reconnect rate and blocking work.
func TestRenderFull(t *testing.T) {
	sp := Presets["full"]
	sp.Models, sp.Conns = []string{"fast", "slow", "twin", "peer:cepoll"}, []int{1, 100}
	s := Summarise(fixtureOf(t, sp))
	var names []string
	for _, f := range Figures(s) {
		names = append(names, f.Name)
		if strings.HasPrefix(f.Name, "reconnect-") || strings.HasPrefix(f.Name, "work-") {
			if err := Render(f, filepath.Join(plotDir(t), f.Name+".png")); err != nil {
				t.Error(err)
			}
		}
	}
	for _, want := range []string{"throughput-rpc-sleep-1ms", "reconnect-echo-reconnect-c100", "reconnect-rpc-reconnect-c100", "work-rpc-c100", "timeline-echo-c100"} {
		if !slices.Contains(names, want) {
			t.Errorf("figures %q lack %s", names, want)
		}
	}
	w := strings.Join(WorkFindings(s, "rpc", 100), " ")
	if !strings.Contains(w, "slow 100%, fast 2.0%") {
		t.Errorf("work findings: %s", w)
	}
}

// A figure with a zero on a log axis must be an error or be drawn, never a panic.
func TestRenderLogZero(t *testing.T) {
	f := Figure{Name: "zero", Panels: []Panel{{Title: "t", LogY: true, LogX: true,
		Series: []Series{{Name: "m", Points: []Point{{X: 1, Y: 10, Lo: 0, Hi: 20}, {X: 10, Y: 20, Lo: 20, Hi: 20}}}}}}}
	if err := Render(f, filepath.Join(t.TempDir(), "z.png")); err != nil {
		t.Errorf("Render: %v", err)
	}
	bad := Figure{Name: "bad", Panels: []Panel{{Title: "t", LogY: true, Series: []Series{{Name: "m", Points: []Point{{X: 1, Y: 0}}}}}}}
	if err := Render(bad, filepath.Join(t.TempDir(), "b.png")); err == nil {
		t.Error("a zero on a log axis: no error")
	}
}

// TestStarvedMarked: a cell where most connections waited unanswered is marked in
// the throughput and p99 plots and named so in the nines plot, so a pool's short
// latencies are never shown unqualified.
func TestStarvedMarked(t *testing.T) {
	s := Summarise(fixture(t))
	g := Group{Proto: "echo", Work: "none"}
	key := Cell{Model: "slow", Proto: "echo", Work: "none", Conns: 100}.Key()
	cs, ok := s.Cells[key]
	if !ok {
		t.Fatalf("fixture has no cell %s", key)
	}
	cs.ActiveConns = 2 // 2 of 100 connections served at a time
	s.Cells[key] = cs
	for _, f := range []Figure{ThroughputFigure(s, g), P99Figure(s, g)} {
		for _, ser := range f.Panels[0].Series {
			for _, pt := range ser.Points {
				want := ser.Name == "slow" && pt.X == 100
				if pt.Starved != want {
					t.Errorf("%s: %s at c=%v starved=%v, want %v", f.Name, ser.Name, pt.X, pt.Starved, want)
				}
			}
		}
	}
	var names []string
	for _, ser := range NinesFigure(s, g, 100).Panels[0].Series {
		names = append(names, ser.Name)
	}
	if want := []string{"fast", "slow (starved)", "twin", "peer:cepoll"}; !slices.Equal(names, want) {
		t.Errorf("nines series %q, want %q", names, want)
	}
	for _, lines := range [][]string{P99Findings(s, g), NinesFindings(s, g, 100)} {
		var c100 string
		for _, l := range lines {
			if strings.Contains(l, "c=100") {
				c100 = l
			}
		}
		if !strings.Contains(c100, "Left out as starved, their waits unmeasured: slow (~2 of 100 connections served).") {
			t.Errorf("finding at c=100 does not leave out the starved cell: %q", c100)
		}
		if before, _, _ := strings.Cut(c100, "Left out"); strings.Contains(before, "slow") {
			t.Errorf("a starved cell is ranked: %q", c100)
		}
	}
	for _, f := range []Figure{ThroughputFigure(s, g), P99Figure(s, g), NinesFigure(s, g, 100)} {
		if err := Render(f, filepath.Join(plotDir(t), f.Name+".png")); err != nil {
			t.Fatalf("render %s: %v", f.Name, err)
		}
	}
}

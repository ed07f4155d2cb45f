package bench

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"concbench/internal/result"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// renderLong draws f into plotDir, except under -short: drawing under -race
// takes seconds a figure, and TestRender draws every kind of figure in any mode;
// the other tests check the plot data itself.
func renderLong(t *testing.T, f Figure, name string) {
	t.Helper()
	if testing.Short() {
		return
	}
	if err := Render(f, filepath.Join(plotDir(t), name+".png")); err != nil {
		t.Fatalf("render %s: %v", f.Name, err)
	}
}

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
		bm := BaseModel(m) // a variant (-set) measures as its base model
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
		tput := base[bm] * scale * (1 + 0.02*float64(rep-2))
		if m == "twin" {
			tput = base[bm] * scale * (1 + 0.05*float64(2-rep)) // overlaps fast
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
		l := lat[bm] * int64(max(1, c/10))
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
			Config: result.Config{Workload: result.Workload{Conns: c, Warmup: sp.Warmup}, Model: m, ServerCPUs: []int{0}, ClientCPUs: []int{1}, PinningDefault: true},
			Env: result.Env{CPUModel: "Test CPU", NumCPU: 2, Kernel: "Linux test", Arch: "x86_64", GoVersion: "go1.26", GOMAXPROCS: 1,
				GitRevision: "abc123", NoFileLimit: 20000, Sysctls: map[string]string{"net/core/somaxconn": "4096"}},
			Load: result.Load{Mode: "closed", Requests: int64(tput * 2), Seconds: 2, Throughput: tput, LatencyHist: string(enc)},
			Server: &result.Server{CPUCoresMean: 0.9, RSSMaxBytes: int64(5<<20) + int64(c)*map[string]int64{"fast": 100, "slow": 64 << 10, "twin": 200, "peer:cepoll": 50}[bm],
				ThreadsMax: map[string]int{"fast": 2, "slow": c + 2, "twin": 3, "peer:cepoll": 1}[bm], ProcsMax: 1},
		}
		if IsPeer(m) {
			r.Config.Model = ""
			r.Server.External = true
			rec.Peer = &PeerRun{Bin: "/bin/cepoll", Args: []string{"-proto", "echo", "-addr", "127.0.0.1:0"}, PID: 4242,
				Addr: "127.0.0.1:40000", CPUs: []int{0}, Exit: &result.Exit{Clean: true}}
		}
		r.Load.Latency = percentilesOf(h)
		// The host: a probe whose round trip shortens as the repetitions go,
		// and one window disturbed by foreign work (left out of its cell).
		r.Host = &result.Host{WindowSeconds: 2, ForeignShare: 0.01, Before: &result.Probe{WakeRTTUS: 20 - float64(rep), CPUs: []int{0, 1}}}
		if m == "slow" && c == 1 && rep == 3 {
			r.Host.ForeignShare, r.Host.Disturbed, r.Host.Why = 0.2, true, "foreign work on the measured CPUs 20% of the window"
		}
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
	if !strings.Contains(tl, "slow (50% of steady; window opened after 0.5 s)") || !strings.Contains(tl, "twin (63ms at 3.5 s vs a median 6.3ms)") {
		t.Errorf("timeline findings: %s", tl)
	}
}

func TestReportGolden(t *testing.T) {
	d := fixture(t)
	d.Calibration = &Calibration{Proto: "echo", Conns: 100, Size: 64, Rounds: []CalibrationRound{
		{Client: "cclient", Requests: 160000, Seconds: 1, CPUUSPerReq: 6.1, SwitchesPerReq: 0.002},
		{Client: "loadgen", Requests: 150000, Seconds: 1, CPUUSPerReq: 6.6, SwitchesPerReq: 0.011},
	}}
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
	if len(figs) != 7 {
		t.Errorf("%d figures, want 7 (throughput, throughput lines, p99, nines, cpu, rss, timeline)", len(figs))
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
		// Readable at 100% on a laptop screen: no wider than 1600 px, no
		// taller than 1400 (small multiples and family panels share a grid).
		if b.Dx() < 600 || b.Dx() > 1600 || b.Dy() < 300 || b.Dy() > 1400 {
			t.Errorf("%s: %d×%d px, want 600–1600 wide and 300–1400 high", f.Name, b.Dx(), b.Dy())
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
			renderLong(t, f, f.Name)
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

// gatedFixture is fixture with the steady-state gate in every result: every
// connection served when the window opened, but for slow at c=100, which held
// only 40 of its 100 connections (a ceiling) in every repetition.
func gatedFixture(t testing.TB) *Dataset {
	d := fixture(t)
	for k, r := range d.Results {
		tr := d.Records[k].Trial
		st := &result.Steady{State: result.SteadyOK, WaitSeconds: 0.5, SettleSeconds: 1, TimeoutSeconds: 60,
			ServedAtStart: tr.Cell.Conns, OpenAtStart: tr.Cell.Conns, OpenAtEnd: tr.Cell.Conns}
		if tr.Cell.Model == "slow" && tr.Cell.Conns == 100 {
			st.State, st.ServedAtStart, st.WaitSeconds = result.SteadyCeiling, 40, 1.7
			r.Server.ThreadsMax = 42
		}
		r.Load.Steady = st
		// The kernel's counts, per request: fast 2.06 syscalls (read, write and
		// an epoll_wait every 16 requests), twin 3.06 (a read more), slow 2.4
		// (futex and a few others), the peer 2.05; one more syscall in the whole
		// window for each repetition past the first.
		n := r.Load.Requests
		per := map[string]map[string]float64{
			"fast": {"read": 1, "write": 1, "epoll_wait": 0.06}, "twin": {"read": 2, "write": 1, "epoll_wait": 0.06},
			"slow": {"read": 1, "write": 1, "futex": 0.3, "other": 0.1}, "peer:cepoll": {"read": 1, "write": 1, "epoll_wait": 0.05},
		}[tr.Cell.Model]
		k := &result.Kernel{Syscalls: map[string]int64{}, UserUS: n * 2, SystemUS: n * 4}
		for name, v := range per {
			c := int64(v * float64(n))
			if name == "other" {
				k.SyscallsOther = c
			} else {
				k.Syscalls[name] = c
			}
			k.SyscallsTotal += c
		}
		k.SyscallsTotal += int64(tr.Rep - 1)
		k.Voluntary, k.Involuntary = n/10, n/100
		if tr.Cell.Model == "slow" {
			k.Voluntary = n
		}
		k.CtxSwitches = k.Voluntary + k.Involuntary
		r.Server.Kernel = k
		r.Client.Kernel = &result.Kernel{Syscalls: map[string]int64{"read": n, "write": n}, SyscallsTotal: 2 * n, CtxSwitches: n / 20, Voluntary: n / 20}
	}
	d.Results[Trial{Cell: Cell{Model: "fast", Proto: "echo", Work: "none", Conns: 1}, Rep: 1}.Key()].Server.Kernel = nil
	d.Results[Trial{Cell: Cell{Model: "fast", Proto: "echo", Work: "none", Conns: 1}, Rep: 1}.Key()].Server.KernelMissing = "not measured: test"
	return d
}

// TestKernelCost: the kernel's counts per request are summarised per cell
// (medians, range, pooled by name), tabled and ranked fewest first with the
// cells apart after and the peers last, and drawn as stacked bars.
func TestKernelCost(t *testing.T) {
	s := Summarise(gatedFixture(t))
	g := Group{Proto: "echo", Work: "none"}
	fast := s.Cell(g, "fast", 100)
	if k := fast.ServerKernel; k == nil || k.Reps != 3 || !near(k.BySyscall["read"], 1) || k.SyscallsMin > k.SyscallsPerReq || k.SyscallsMax <= k.SyscallsMin ||
		!near(k.CtxPerReq, 0.11) || !near(k.UserUSPerReq, 2) || !near(k.SystemUSPerReq, 4) || k.Top(3) != "read 1.00, write 1.00, epoll_wait 0.06" {
		t.Errorf("fast c=100 kernel: %+v", fast.ServerKernel)
	}
	if c := fast.ClientKernel; c == nil || !near(c.SyscallsPerReq, 2) {
		t.Errorf("fast c=100 client kernel: %+v", c)
	}
	// One repetition not counted: the figures are over the other two.
	if k := s.Cell(g, "fast", 1).ServerKernel; k == nil || k.Reps != 2 {
		t.Errorf("fast c=1: %+v, want 2 repetitions counted", k)
	}
	var order []string
	for _, l := range strings.Split(KernelTable(s, g, 100), "\n")[2:] {
		if f := strings.Split(l, "|"); len(f) > 2 {
			order = append(order, strings.TrimSpace(f[1]))
		}
	}
	if want := []string{"fast", "slow", "twin", "*peer:cepoll*"}; !slices.Equal(order, []string{"fast", "twin", "slow", "*peer:cepoll*"}) {
		t.Errorf("kernel table order %q, want fast, twin, then slow (apart), then the peer (not %q)", order, want)
	}
	find := strings.Join(KernelFindings(s, g), " ")
	for _, want := range []string{"c=100: fewest syscalls per request fast, 2.06 (read 1.00, write 1.00, epoll_wait 0.06); most twin, 3.06", "×1.5",
		"Reference: peer:cepoll 2.05 syscalls", "By CPU per request (user + system µs, [min–max] over repetitions): fast 6.00 [6.00–6.00], twin 6.00 [6.00–6.00].",
		"c=100: within the noise of fast by throughput, but not by the kernel's counts: twin makes 1.00 more syscalls per request (read +1.00).",
		"Left out as not comparable — the server did not serve all its connections in the window: slow (ceiling 40/100)"} {
		if !strings.Contains(find, want) {
			t.Errorf("kernel findings lack %q:\n%s", want, find)
		}
	}
	f := SyscallFigure(s, g, 100)
	if len(f.Panels) != 2 || !f.Panels[0].Stacked || !slices.Equal(f.Panels[0].Categories, []string{"fast", "slow (ceiling 40/100)", "twin", "peer:cepoll (reference)"}) {
		t.Fatalf("syscall figure: %+v", f.Panels)
	}
	var sets []string
	for _, bs := range f.Panels[0].BarSets {
		sets = append(sets, bs.Name)
	}
	if want := []string{"epoll_wait", "futex", "read", "write", "other"}; !slices.Equal(sets, want) {
		t.Errorf("stacked sets %q, want %q", sets, want)
	}
	renderLong(t, f, f.Name)
	md := Markdown(gatedFixture(t), s, Figures(s), "plots")
	if !strings.Contains(md, "### Cost per request, counted by the kernel (echo)") || !strings.Contains(md, "syscalls-echo-c100.png") {
		t.Error("the report has no kernel section or plot")
	}
	if md := Markdown(fixture(t), Summarise(fixture(t)), nil, "plots"); !strings.Contains(md, "Not measured: the results carry no kernel counts") {
		t.Error("a run without kernel counts does not say so")
	}
}

// TestApartMarked: a cell whose server did not serve all its connections — a
// ceiling the gate found, or, in a result without the gate, too few served by
// Little's law — is flagged in the table, drawn hollow and apart from its
// model's line in every plot that shows it, named so in the nines plot, and
// left out of every ranking, with a note saying so; its memory is divided by
// the connections it held.
func TestApartMarked(t *testing.T) {
	g := Group{Proto: "echo", Work: "none"}
	ungated := Summarise(fixture(t))
	key := Cell{Model: "slow", Proto: "echo", Work: "none", Conns: 100}.Key()
	cs := ungated.Cells[key]
	cs.ActiveConns = 2 // 2 of 100 connections served at a time
	ungated.Cells[key] = cs
	gated := Summarise(gatedFixture(t))
	if got := gated.Cells[key]; got.Gated != 3 || got.Ceiling != 40 || got.CeilingReps != 3 || got.HeldAtStart != 40 || got.GateWaitSeconds != 1.7 || got.Apart() != "ceiling 40/100" {
		t.Errorf("gated slow c=100: gated %d, ceiling %d in %d, held %v, wait %v, apart %q", got.Gated, got.Ceiling, got.CeilingReps, got.HeldAtStart, got.GateWaitSeconds, got.Apart())
	}
	// The gate's verdict, not Little's law, decides for a gated result.
	if fast := gated.Cell(g, "fast", 100); fast.Apart() != "" || fast.Held() != 100 {
		t.Errorf("gated fast c=100: apart %q, held %v", fast.Apart(), fast.Held())
	}
	for _, tt := range []struct {
		name string
		s    *Summary
		why  string
	}{{"little", ungated, "starved ~2/100"}, {"gate", gated, "ceiling 40/100"}} {
		s := tt.s
		if got := s.Cells[key].Apart(); got != tt.why {
			t.Errorf("%s: apart %q, want %q", tt.name, got, tt.why)
		}
		for _, f := range []Figure{ThroughputFigure(s, g), P99Figure(s, g), MemoryFigure(s, g)} {
			for _, ser := range f.Panels[0].Series {
				for _, pt := range ser.Points {
					if want := ser.Name == "slow" && pt.X == 100; pt.Apart != want {
						t.Errorf("%s %s: %s at c=%v apart=%v, want %v", tt.name, f.Name, ser.Name, pt.X, pt.Apart, want)
					}
				}
			}
		}
		var names []string
		for _, ser := range NinesFigure(s, g, 100).Panels[0].Series {
			names = append(names, ser.Name)
		}
		if want := []string{"fast", "slow (" + tt.why + ")", "twin", "peer:cepoll"}; !slices.Equal(names, want) {
			t.Errorf("%s: nines series %q, want %q", tt.name, names, want)
		}
		lead := LeadFinding(s, g, 100, "req/s")
		for _, lines := range [][]string{P99Findings(s, g), NinesFindings(s, g, 100), CPUFindings(s, g), {lead}} {
			var c100 string
			for _, l := range lines {
				if strings.Contains(l, "c=100") {
					c100 = l
				}
			}
			if !strings.Contains(c100, "Left out as not comparable — the server did not serve all its connections in the window: slow ("+tt.why+").") {
				t.Errorf("%s: finding at c=100 does not leave out the cell apart: %q", tt.name, c100)
			}
			if before, _, _ := strings.Cut(c100, "Left out"); strings.Contains(before, "slow") {
				t.Errorf("%s: a cell apart is ranked: %q", tt.name, c100)
			}
		}
		table := Table(s, g, "req/s")
		var rows []string
		for _, l := range strings.Split(table, "\n") {
			if strings.HasPrefix(l, "| 100 |") {
				rows = append(rows, l)
			}
		}
		if len(rows) != 4 || !strings.Contains(rows[3], "| slow |") || !strings.Contains(rows[3], tt.why) {
			t.Errorf("%s: c=100 rows do not list slow last, flagged %q:\n%s", tt.name, tt.why, strings.Join(rows, "\n"))
		}
		for _, f := range []Figure{ThroughputFigure(s, g), P99Figure(s, g), NinesFigure(s, g, 100), MemoryFigure(s, g)} {
			renderLong(t, f, tt.name+"-"+f.Name)
		}
	}
	// Memory per held connection: slow's RSS grows by 64 KiB per connection asked
	// for (99 × 64 KiB from c=1 to c=100) over 39 more connections held.
	mem := strings.Join(MemoryFindings(gated, g), " ")
	if want := fmt.Sprintf("slow %s (held 40 of 100 at c=100)", perConn(99*64<<10/39.0)); !strings.Contains(mem, want) {
		t.Errorf("memory findings %q: want %q", mem, want)
	}
	if want := fmt.Sprintf("slow %s per thread (3 to 42 threads)", perConn((float64(100*64<<10)-float64(64<<10))/39)); !strings.Contains(mem, want) {
		t.Errorf("memory findings %q: want slow's RSS per thread", mem)
	}
	// The plot data of the gated run, as a golden file.
	b, err := json.MarshalIndent(Figures(gated), "", " ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "figures-gated.json", append(b, '\n'))
	csv := string(TableCSV(gated, g))
	if !strings.Contains(csv, ",3,40,100,0,1.7,40,3,0,ceiling 40/100,2.4") {
		t.Errorf("CSV has no gate columns for slow c=100:\n%s", csv)
	}
}

// idleFixture is a literal idle sweep: 10 busy connections beside 0, 1,000 and
// 5,000 idle ones, 3 repetitions. poll's CPU per request grows by 1 µs per 1,000
// idle connections (select's would), epoll-et's stays at 6 µs give or take
// 0.05; select cannot hold 5,000 (it loses 3,990 of them).
func idleFixture(t testing.TB) *Dataset {
	sp := Spec{Preset: "scale", Models: []string{"select", "poll", "epoll-et"}, Conns: []int{10}, Idles: []int{0, 1000, 5000}, Protos: []string{"echo"},
		Works: []string{"none"}, Reconnect: "off", Repeat: 3, Duration: 2 * time.Second, Warmup: 500 * time.Millisecond, Size: 64}
	d := &Dataset{Plan: Plan{Spec: sp, Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
		Records: map[string]TrialRecord{}, Results: map[string]*result.Run{}}
	for _, tr := range sp.Plan() {
		m, idle, rep := tr.Cell.Model, tr.Cell.Idle, tr.Rep
		cpu := 6 + 0.05*float64(rep-2) // µs per request
		if m != "epoll-et" {
			cpu += float64(idle) / 1000
		}
		tput := 1e6 / cpu / 1.1
		req := int64(tput * 2)
		h := hdr.New(1, 60_000_000, 3)
		for i := range int64(100) {
			h.RecordValue(100 + i)
		}
		enc, _ := h.Encode(hdr.V2CompressedEncodingCookieBase)
		r := &result.Run{Schema: result.SchemaVersion, Config: result.Config{Workload: result.Workload{Conns: 10, Idle: idle}, Model: m},
			Load: result.Load{Mode: "closed", Requests: req, Seconds: 2, Throughput: tput, LatencyHist: string(enc),
				Steady: &result.Steady{State: result.SteadyOK, ServedAtStart: 10, OpenAtStart: 10, OpenAtEnd: 10}},
			Server: &result.Server{CPUCoresMean: cpu * float64(req) / 2 / 1e6, RSSMaxBytes: 8<<20 + int64(idle)*map[string]int64{"select": 2048, "poll": 1024, "epoll-et": 1536}[m]},
		}
		rec := TrialRecord{Trial: tr, Status: StatusOK, Result: "trials/" + tr.Key() + ".json"}
		if idle > 0 {
			hb := hdr.New(1, 60_000_000, 3)
			for i := range int64(100) {
				hb.RecordValue(200 + int64(idle)/10 + i)
			}
			henc, _ := hb.Encode(hdr.V2CompressedEncodingCookieBase)
			id := &result.Idle{Conns: idle, Established: idle, OpenAtEnd: idle, HeartbeatSeconds: 5, Sent: int64(idle) / 2, Answered: int64(idle) / 2, LatencyHist: string(henc)}
			if m == "select" && idle == 5000 {
				id.Established, id.OpenAtEnd = 1010, 1010
				id.Errors, id.ErrorsTotal = map[string]int64{"eof": 3990}, 3990
				r.Load.Errors, r.Load.ErrorsTotal = id.Errors, id.ErrorsTotal
				rec.Status, rec.Failure, rec.Reason = StatusFailed, FailErrors, "eof 3990"
			}
			r.Load.Idle = id
		}
		d.Records[tr.Key()] = rec
		d.Results[tr.Key()] = r
	}
	return d
}

// TestIdleReport: the idle sweep's slopes (growing for select and poll, flat
// for epoll-et), its ceiling, table, plots (golden plot data) and report section.
func TestIdleReport(t *testing.T) {
	d := idleFixture(t)
	s := Summarise(d)
	g := Group{Proto: "echo", Work: "none"}
	slopes := map[string]Slope{}
	for _, sl := range IdleSlopes(s, g, 10) {
		slopes[sl.Model] = sl
	}
	if p := slopes["poll"]; p.N != 9 || !near(p.PerK, 1) || p.Flat() || !near(p.Intercept, 6) {
		t.Errorf("poll slope %+v: want 1 µs per 1,000 over 9 trials, not flat", p)
	}
	if e := slopes["epoll-et"]; e.N != 9 || !e.Flat() || math.Abs(e.PerK) > 1e-9 {
		t.Errorf("epoll-et slope %+v: want flat", e)
	}
	// select's 5,000 cell lost idle connections: apart, and left out of its fit.
	if sel := s.CellAt(g, "select", 10, 5000); sel.Apart() != "idle held 1010/5000" {
		t.Errorf("select at 5000 idle: apart %q", sel.Apart())
	}
	// Idle connections open but never served (in the backlog of a server at its
	// process cap) answer no heartbeat: apart too.
	backlog := CellSummary{Cell: Cell{Conns: 10, Idle: 5000}, Heartbeats: &Heartbeats{OpenAtEndMin: 5000, Sent: 2008}}
	if got := backlog.Apart(); got != "heartbeats answered 0/2008" {
		t.Errorf("idle connections never answered: apart %q", got)
	}
	if sl := slopes["select"]; sl.N != 6 || sl.MaxIdle != 1000 {
		t.Errorf("select slope %+v: want 6 trials up to 1000 idle", sl)
	}
	find := strings.Join(IdleFindings(s, g, 10), " ")
	for _, want := range []string{"grows with the idle connections held", "poll +1.00 µs [+0.98, +1.02] (measured: 6µs a request with no idle connection, 11µs with 5000)", "Flat — no growth", "epoll-et (", "Ceilings — the fewest idle connections a model could not hold: select at 5000 idle: idle held 1010/5000."} {
		if !strings.Contains(find, want) {
			t.Errorf("idle findings lack %q:\n%s", want, find)
		}
	}
	tbl := IdleTable(s, g, 10)
	if !strings.Contains(tbl, "| select | 5000 |") || !strings.Contains(tbl, "eof 11970") || !strings.Contains(tbl, "| poll | 1000 |") {
		t.Errorf("idle table:\n%s", tbl)
	}
	figs := IdleFigures(s, g, 10)
	b, err := json.MarshalIndent(figs, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "figures-idle.json", append(b, '\n'))
	for _, f := range figs {
		renderLong(t, f, f.Name)
	}
	md := Markdown(d, s, Figures(s), "plots")
	// The verdict's row for connections held: poll and epoll-et held the
	// sweep's 5,000, select lost its 5,000 and held 1,000.
	for _, want := range []string{"| [Most idle connections held beside 10 busy](#cpu-per-request-vs-connections-held-10-busy-echo) | **poll** = epoll-et | 5000 idle | the sweep's steps are the resolution; next: select held 1000 |"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks the verdict row %q:\n%s", want, md[:min(len(md), 3000)])
		}
	}
	for _, want := range []string{"### Idle connections: the C10K experiment (echo)", "idle-cpu-echo-c10.png", "- idle connections beside them: 0, 1000, 5000"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if csv := string(TableCSV(s, g)); !strings.Contains(csv, "echo,none,false,10,5000,select,") {
		t.Errorf("CSV has no idle rows:\n%s", csv)
	}
}

// TestKernelCostCountedReps: with counted repetitions, the timed ones count
// switches and CPU only; a cell's syscalls come from its counted repetition,
// its switches, CPU, throughput and latency from the timed ones alone. A cell
// whose counted repetition has no result says why its syscalls are missing,
// and the table, findings and CSV say "not counted" rather than show zeros.
func TestKernelCostCountedReps(t *testing.T) {
	sp := Spec{Preset: "test", Models: []string{"fast", "twin"}, Conns: []int{1, 100}, Protos: []string{"echo"},
		Works: []string{"none"}, Reconnect: "off", Repeat: 3, CountReps: 1, Duration: 2 * time.Second, Warmup: 500 * time.Millisecond, Size: 64}
	d := fixtureOf(t, sp)
	lost := Trial{Cell: Cell{Model: "twin", Proto: "echo", Work: "none", Conns: 100}, Rep: 1, Counted: true}
	for k, r := range d.Results {
		tr, n := d.Records[k].Trial, r.Load.Requests
		if tr.Counted {
			// Counting syscalls slowed it: half the throughput, ten times the
			// switches. None of that may reach the cell's timed figures.
			r.Load.Throughput /= 2
			r.Server.Kernel = &result.Kernel{Syscalls: map[string]int64{"read": n, "write": n}, SyscallsOther: n / 2, SyscallsTotal: 2*n + n/2, CtxSwitches: n, Voluntary: n, UserUS: 50 * n}
			r.Client.Kernel = &result.Kernel{Syscalls: map[string]int64{"read": n, "write": n}, SyscallsTotal: 2 * n, CtxSwitches: n, Voluntary: n}
			continue
		}
		r.Server.Kernel = &result.Kernel{SyscallsMissing: "not measured: -count-syscalls=false", CtxSwitches: n / 10, Voluntary: n / 10, UserUS: 2 * n, SystemUS: 4 * n}
		r.Client.Kernel = &result.Kernel{SyscallsMissing: "not measured: -count-syscalls=false", CtxSwitches: n / 20, Voluntary: n / 20}
	}
	delete(d.Results, lost.Key())
	rec := d.Records[lost.Key()]
	rec.Status, rec.Failure, rec.Reason, rec.Result = StatusFailed, FailErrors, "test failure", ""
	d.Records[lost.Key()] = rec

	s := Summarise(d)
	g := Group{Proto: "echo", Work: "none"}
	fast := s.Cell(g, "fast", 100)
	k := fast.ServerKernel
	if k == nil || k.Reps != 3 || k.SyscallReps != 1 || k.SyscallsMissing != "" || !near(k.SyscallsPerReq, 2.5) || !near(k.BySyscall["read"], 1) || !near(k.BySyscall["other"], 0.5) {
		t.Fatalf("fast c=100 server: %+v; want syscalls 2.5 from the counted repetition", k)
	}
	if !near(k.CtxPerReq, 0.1) || !near(k.CPUUSPerReq, 6) {
		t.Errorf("fast c=100 server: %.3f switches and %.2f µs per request, want 0.1 and 6 from the timed repetitions alone", k.CtxPerReq, k.CPUUSPerReq)
	}
	if c := fast.ClientKernel; c == nil || !near(c.SyscallsPerReq, 2) || !near(c.CtxPerReq, 0.05) {
		t.Errorf("fast c=100 client: %+v", c)
	}
	if fast.Measured != 3 || len(fast.Throughputs) != 3 || fast.Planned != 4 || fast.OK != 4 || fast.Merged != 3 {
		t.Errorf("fast c=100: measured %d, %d throughputs, planned %d, ok %d, %d histograms merged; want the 3 timed of 4 trials", fast.Measured, len(fast.Throughputs), fast.Planned, fast.OK, fast.Merged)
	}
	for _, v := range fast.Throughputs {
		if v < 9000 {
			t.Errorf("fast c=100 throughputs %v hold the counted repetition's", fast.Throughputs)
		}
	}

	twin := s.Cell(g, "twin", 100)
	if k := twin.ServerKernel; k == nil || k.HasSyscalls() || !strings.Contains(k.SyscallsMissing, "count 1 has no result (failed: test failure)") || !near(k.CtxPerReq, 0.1) {
		t.Errorf("twin c=100 server: %+v; want switches and no syscalls, saying why", k)
	}
	if !slices.ContainsFunc(twin.Notes, func(n string) bool { return strings.HasPrefix(n, "count 1 failed (errors): test failure") }) {
		t.Errorf("twin c=100 notes %q lack the counted repetition's failure", twin.Notes)
	}
	table := KernelTable(s, g, 100)
	if !strings.Contains(table, "| twin | not counted | – | 0.100") || strings.Index(table, "| fast |") > strings.Index(table, "| twin |") {
		t.Errorf("kernel table: want fast first, twin after it without syscalls:\n%s", table)
	}
	if find := strings.Join(KernelFindings(s, g), " "); !strings.Contains(find, "c=100: syscalls not counted for twin (not measured: count 1 has no result") {
		t.Errorf("kernel findings do not say twin's syscalls were not counted:\n%s", find)
	}
	csv := string(TableCSV(s, g))
	if !strings.Contains(csv, ",syscalls not measured: count 1 has no result") {
		t.Errorf("the CSV does not say why twin's syscalls are missing:\n%s", csv)
	}
	f := SyscallFigure(s, g, 100)
	if !slices.Contains(f.Panels[0].Categories, "twin (syscalls not counted)") {
		t.Errorf("syscall figure categories %q: want twin marked not counted", f.Panels[0].Categories)
	}
}

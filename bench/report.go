package bench

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"concbench/internal/proto"
	"concbench/internal/result"
)

// WriteAll writes everything a run directory's data supports: the plots into
// plotDir, a CSV per group and REPORT.md into the run directory. It runs nothing
// and can be repeated (`bench report`). It returns the files written.
func WriteAll(d *Dataset, runDir, plotDir string) ([]string, error) {
	s := Summarise(d)
	figs := Figures(s)
	var files []string
	var errs []error
	for _, f := range figs {
		path := filepath.Join(plotDir, f.Name+".png")
		if err := Render(f, path); err != nil {
			errs = append(errs, err)
			continue
		}
		files = append(files, path)
	}
	for _, g := range d.Plan.Spec.Groups() {
		path := filepath.Join(runDir, g.Key()+".csv")
		if err := writeFileAtomic(path, TableCSV(s, g)); err != nil {
			return files, err
		}
		files = append(files, path)
	}
	rel, err := filepath.Rel(runDir, plotDir)
	if err != nil {
		rel = plotDir
	}
	path := filepath.Join(runDir, "REPORT.md")
	if err := writeFileAtomic(path, []byte(Markdown(d, s, figs, filepath.ToSlash(rel)))); err != nil {
		return files, err
	}
	files = append(files, path)
	return files, errors.Join(errs...)
}

// firstResult is the first result in plan order (for the environment).
func firstResult(d *Dataset) *result.Run {
	for _, t := range d.Plan.Trials() {
		if r := d.Results[t.Key()]; r != nil {
			return r
		}
	}
	return nil
}

// Markdown is REPORT.md: environment, matrix, a table per group, the figures
// with what each shows, and the warnings. plotRel is the plot directory relative
// to the report.
func Markdown(d *Dataset, s *Summary, figs []Figure, plotRel string) string {
	sp := d.Plan.Spec
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	title := "concbench run"
	if sp.Preset != "" {
		title += " — preset " + sp.Preset
	}
	w("# %s\n\n", title)
	var ok, failed, skipped int
	var wall float64
	for _, rec := range d.Records {
		wall += rec.Seconds
		switch rec.Status {
		case StatusOK:
			ok++
		case StatusFailed:
			failed++
		default:
			skipped++
		}
	}
	planned := len(d.Plan.Trials())
	w("Started %s. %d trials planned: %d ok, %d failed, %d skipped, %d not run; %s spent in trials.\n\n",
		d.Plan.Started.UTC().Format(time.RFC3339), planned, ok, failed, skipped, planned-len(d.Records), time.Duration(wall*float64(time.Second)).Round(time.Second))

	byName := map[string]Figure{}
	for _, f := range figs {
		byName[f.Name] = f
	}
	if rows := Verdict(s, func(fig, fallback string) string {
		if f, ok := byName[fig]; ok {
			return Anchor(f.Title)
		}
		if fallback != "" {
			return Anchor(fallback)
		}
		return ""
	}); len(rows) > 0 {
		w("## Verdict\n\n")
		w("Computed from this run: for each question, the model that answered it best among those that served all their connections (reference peers are not ranked), the models whose repetitions cannot be told from it (≈: two-sided Mann–Whitney p ≥ 0.05 with overlapping samples), its figure, and its margin over the runner-up. p99 is compared on each repetition's own p99. Each question links to its evidence.\n\n")
		w("%s\n", VerdictTable(rows))
	}
	if cards := ModelCards(s); len(cards) > 0 {
		w("## Models at a glance\n\n")
		w("%s\n", ModelCardTable(cards))
	}

	w("## Environment\n\n")
	if r := firstResult(d); r != nil {
		e, c := r.Env, r.Config
		w("| | |\n|---|---|\n")
		w("| CPU | %s, %d CPUs online |\n", e.CPUModel, e.NumCPU)
		w("| kernel | %s (%s) |\n", e.Kernel, e.Arch)
		w("| Go | %s, loadgen GOMAXPROCS %d |\n", e.GoVersion, e.GOMAXPROCS)
		pin := "server CPUs " + ints(c.ServerCPUs) + ", loadgen CPUs " + ints(c.ClientCPUs)
		if c.PinningDefault {
			pin += " (loadgen's default split)"
		}
		w("| pinning | %s |\n", pin)
		rev := e.GitRevision
		if rev == "" {
			rev = "unknown"
		}
		if e.GitModified {
			rev += " (with uncommitted changes)"
		}
		w("| git revision | %s |\n", rev)
		w("| descriptors | RLIMIT_NOFILE %d |\n", e.NoFileLimit)
		w("| calibration | %s |\n", d.Calibration.Line())
		for _, k := range slices.Sorted(maps.Keys(e.Sysctls)) {
			w("| %s | %s |\n", k, e.Sysctls[k])
		}
		w("\n")
	} else {
		w("No trial has a result yet.\n\n")
	}

	w("## Matrix\n\n")
	var ms []string
	for _, m := range sp.Models {
		if !IsPeer(m) {
			ms = append(ms, m)
		}
	}
	w("- models: %s\n", strings.Join(ms, ", "))
	if ps := peers(sp); len(ps) > 0 {
		w("- reference peers (not concbench models; bench started each one pinned to the server's CPUs and drove it with loadgen like a model): ")
		for i, p := range ps {
			if i > 0 {
				w("; ")
			}
			w("**%s**, %s", p, PeerAbout(p))
			if v := peerVersion(d, p); v != "" {
				w(", %s", v)
			}
		}
		w("\n")
	}
	var gs []string
	for _, g := range sp.Groups() {
		gs = append(gs, g.String())
	}
	w("- workloads: %s\n", strings.Join(gs, "; "))
	w("- concurrency: %s connections\n", ints(sp.Conns))
	w("- server configuration: %s\n", sp.ConfigString())
	if sp.Set != "" {
		flag, values, _ := strings.Cut(sp.Set, "=")
		w("- swept: -%s at %s (-set), every model run at each value as MODEL@%s=VALUE\n", flag, strings.ReplaceAll(values, ",", ", "), flag)
	}
	if idleSwept(sp) {
		w("- idle connections beside them: %s, each sending a heartbeat every %s\n", ints(sp.Idles), heartbeatString(sp))
	}
	w("- %s of %v measured after at least %v of warm-up, %s, closed loop; repetitions interleaved across models (rep 1 of every cell, then rep 2, …)\n",
		sp.RepeatString(), sp.Duration, sp.Warmup, requestsString(sp))
	if sp.RepeatAuto {
		w("- %s\n", repeatOutcome(s))
	}
	if sp.CountReps > 0 {
		w("- plus %s per cell that counted syscalls: the timed repetitions count only context switches and CPU time (counting syscalls sends every syscall of the machine through the kernel's tracing path, about +0.2 µs each, which would slow what they time); the syscall figures come from %s alone, their times from nowhere\n",
			plural(float64(sp.CountReps), "further repetition"), map[bool]string{true: "it", false: "them"}[sp.CountReps == 1])
	}
	w("- the steady-state gate: a trial's window opens only once every connection has completed a request (or their number has stopped growing for a second: a ceiling), within %v of the load's start, or the trial fails as not steady\n", sp.steadyBound())
	if sp.Timeline > 0 {
		w("- plus one %v timeline trial per model at %d connections\n", sp.Timeline, sp.TimelineConns)
	}
	w("\n")

	w("## How to read this\n\n")
	if sp.RepeatAuto {
		w("- **req/s** is the median over repetitions; **[lo–hi]** its order-statistic confidence interval, the narrowest pair of order statistics covering at least 95%% (with 6 to 8 repetitions [min, max]; with 9, the 2nd smallest to the 2nd largest, 96.1%%); **n=** among the flags is how many repetitions a cell's figures took.\n")
	} else {
		w("- **req/s** is the median over repetitions; **[lo–hi]** its order-statistic confidence interval, which with %d repetitions covers %s (95%% needs at least 6).\n", sp.Repeat, levelString(coverage(sp.Repeat, 1)))
	}
	w("- Latency percentiles are read from the merge of every repetition's HdrHistogram, never averaged.\n")
	w("- A lead is **significant** when a two-sided Mann–Whitney test gives p < 0.05, **consistent** when every repetition of one beat every repetition of the other but there are too few repetitions for significance, and **within the noise** otherwise.\n")
	w("- A cell whose server did not serve all its connections in the window (**ceiling**, **unserved**, **starved** below) is not comparable with one that did: tables list it after the others, plots draw it as a hollow marker not joined to its model's line, and every ranking leaves it out.\n")
	w("- **CPU/req** is the server process tree's CPU time over the measured window per request (median over repetitions); **RSS**, **threads** and **procs** are peaks over all repetitions.\n")
	if len(peers(sp)) > 0 {
		w("- Rows in *italics* named peer:… are **reference peers**, servers that are not concbench models; plots draw them dotted, with \"(reference)\" in the legend. They are left out of every ranking below (led, slowest, lowest p99, cheapest, memory per connection); a separate sentence compares the best model with each.\n")
	}
	w("- Flags: **CB** client-bound (the load generator's CPUs were ≥ %.0f%% busy: the figure is a floor for the server), **noisy** (interval wider than %.0f%% of the median), **ceiling n/c** (the server held only n of the c connections: their number stopped growing before the window opened), **unserved n/c** (n connections completed no request in a repetition's window), **starved ~n/c** (results without the steady-state gate: by Little's law only about n of the c connections were being served), **not steady** (the connections served were still growing at the gate's bound: no window), **disturbed n left out** (n trials whose window another process or the host took more than %.0f%% of the measured CPUs in: see Noise), **n=** (with adaptive repetitions: the repetitions in the cell's figures), **fail**/**skip** (trials that failed or were skipped; see Warnings).\n\n", result.ClientBoundAt*100, NoisyAt*100, result.DisturbedAt*100)

	// img writes a figure with what it shows; findings without their figure
	// (one not drawn: no data, or a single concurrency) are still written.
	img := func(name string, findings []string) {
		if f, ok := byName[name]; ok {
			w("### %s\n\n![%s](%s/%s.png)\n\n%s\n\n", f.Title, f.Title, plotRel, f.Name, f.Caption)
		}
		if len(findings) > 0 {
			w("**What this run shows:**\n\n")
			for _, l := range findings {
				w("- %s\n", l)
			}
			w("\n")
		}
	}
	focus := sp.FocusConns()
	for _, g := range sp.Groups() {
		w("## %s\n\n", capitalize(g.String()))
		unit := "req/s"
		if g.Reconnect {
			unit = "conn/s"
		}
		w("%s\n(CSV: [%s.csv](%s.csv))\n\n", Table(s, g, unit), g.Key(), g.Key())
		if g.Reconnect {
			img(fmt.Sprintf("reconnect-%s-c%d", g.Key(), focus), []string{LeadFinding(s, g, focus, "conn/s")})
			continue
		}
		img("throughput-"+g.Key(), ThroughputFindings(s, g))
		img("set-"+g.Key(), nil)
		img("throughput-lines-"+g.Key(), nil)
		img("p99-"+g.Key(), P99Findings(s, g))
		img(fmt.Sprintf("nines-%s-c%d", g.Key(), focus), NinesFindings(s, g, focus))
		img("cpu-"+g.Key(), CPUFindings(s, g))
		kernelSection(w, s, g, img)
		if sp.Curved() {
			curveSection(w, s, g, img)
		}
		img("rss-"+g.Key(), MemoryFindings(s, g))
		if idleSwept(sp) {
			idleSection(w, s, g, img)
		}
	}
	for _, proto := range sp.Protos {
		name := fmt.Sprintf("work-%s-c%d", proto, focus)
		if _, ok := byName[name]; ok {
			w("## Blocking work (%s)\n\n", proto)
			img(name, WorkFindings(s, proto, focus))
		}
	}
	if rows := TimelineRows(s); len(rows) > 0 {
		c, _ := sp.TimelineCell(sp.Models[0])
		w("## Timeline\n\n")
		img(fmt.Sprintf("timeline-%s-c%d", c.Group().Key(), c.Conns), TimelineFindings(rows))
		w("| model | window opened after | steady req/s | first second | p99 median | worst p99 (at) | flags |\n|---|--:|--:|--:|--:|--:|---|\n")
		for _, r := range rows {
			name := r.Model
			if IsPeer(name) {
				name = "*" + name + "*"
			}
			w("| %s | %.1f s | %s | %s | %s | %s (%+.1f s) | %s |\n", name, r.Wait, Num(r.Steady), pctOf(r.First), Micros(r.P99Median), Micros(r.P99Worst), r.WorstAt, r.Apart)
		}
		w("\n")
	}

	w("## Noise, measured at its source\n\n")
	for _, l := range NoiseFindings(d, s) {
		w("- %s\n", l)
	}
	w("\n")

	w("## Warnings\n\n")
	warns := Warnings(s, d)
	if len(warns) == 0 {
		w("None: no cell was client-bound, failed, skipped or noisy.\n")
	}
	for _, l := range warns {
		w("- %s\n", l)
	}
	return b.String()
}

// idleSection writes a group's idle-connection sweep: per concurrency, the
// findings (slopes, ceilings), the plots and the table.
func idleSection(w func(string, ...any), s *Summary, g Group, img func(string, []string)) {
	w("### Idle connections: the C10K experiment (%s)\n\n", g.String())
	w("Each cell holds idle connections (%s) beside its busy ones, every idle one sending a heartbeat every %s. A model that hands the kernel every descriptor on every pass (select, poll) pays for the idle ones on every request; one told only about the ready ones (epoll) does not.\n\n", ints(s.Spec.Idles), heartbeatString(s.Spec))
	for _, c := range s.Spec.Conns {
		key := fmt.Sprintf("%s-c%d", g.Key(), c)
		img("idle-cpu-"+key, IdleFindings(s, g, c))
		img("idle-memory-"+key, nil)
		img("idle-heartbeat-"+key, nil)
		w("%s\n", IdleTable(s, g, c))
	}
}

// kernelSection writes a group's "cost per request" section: the kernel's counts
// per request, a table and a plot per concurrency, and the findings; or why there
// are none.
func kernelSection(w func(string, ...any), s *Summary, g Group, img func(string, []string)) {
	w("### Cost per request, counted by the kernel (%s)\n\n", g.String())
	if why := kernelMissing(s, g); why != "" {
		w("Not measured: %s. They need root (or CAP_BPF and CAP_PERFMON), a cgroup v2 mount and Linux 5.18 or later.\n\n", why)
		return
	}
	w("Syscalls, context switches and CPU time of the server's whole process tree over each trial's window, from the kernel's own counters (BPF programs on the sys_enter and sched_switch tracepoints, for a cgroup v2 made for the tree), divided by the requests of the window; medians over repetitions, [min–max] their range. loadgen's own counts beside them say how the client spends its core. Models with the fewest syscalls first; cells apart (not all connections served) after them, reference peers last.\n\n")
	if s.Spec.CountReps > 0 {
		w("The syscalls come from the counted repetitions (%d per cell), run apart because their counter costs every syscall; the switches and CPU time from the timed repetitions, which did not pay for it. Counts, not times: a single repetition gives them exactly.\n\n", s.Spec.CountReps)
	}
	for _, f := range KernelFindings(s, g) {
		w("- %s\n", f)
	}
	w("\n")
	img("syscalls-"+g.Key(), nil)
	for _, c := range s.Spec.Conns {
		if t := KernelTable(s, g, c); t != "" {
			w("**%s**\n\n%s\n", plural(float64(c), "connection"), t)
			img(fmt.Sprintf("syscalls-%s-c%d", g.Key(), c), nil)
		}
	}
}

// Warnings lists client-bound, failed, skipped, noisy and unrun cells, in plan
// order, then the damaged files left out.
func Warnings(s *Summary, d *Dataset) []string {
	var out []string
	seen := map[string]bool{}
	notRun := 0
	for _, t := range s.Trials {
		if _, ok := d.Records[t.Key()]; !ok {
			notRun++
		}
		k := t.Cell.Key()
		if seen[k] {
			continue
		}
		seen[k] = true
		cs := s.Cells[k]
		if cs.ClientBound > 0 {
			out = append(out, fmt.Sprintf("%s: client-bound in %d of %d repetitions — the load generator was saturated, the server's limit may be higher.", t.Cell, cs.ClientBound, cs.Measured))
		}
		switch {
		case cs.Ceiling > 0:
			out = append(out, fmt.Sprintf("%s: ceiling — in %d of %d repetitions the server held no more than %d of %d connections (their number stopped growing before the window opened); the others waited unanswered, their waits are not in the latency figures, and the cell is left out of every ranking.", t.Cell, cs.CeilingReps, cs.Measured, cs.Ceiling, cs.Cell.Conns))
		case cs.IdleInWindow > 0:
			out = append(out, fmt.Sprintf("%s: unserved — up to %d of %d connections completed no request in a repetition's window; the cell is left out of every ranking.", t.Cell, cs.IdleInWindow, cs.Cell.Conns))
		case cs.Starved():
			out = append(out, fmt.Sprintf("%s: starved — throughput × mean latency says only about %.0f of %d connections were being served (Little's law; a result without the steady-state gate); the others waited unanswered, and their waits are not in the latency figures.", t.Cell, cs.ActiveConns, cs.Cell.Conns))
		}
		if cs.Noisy() {
			out = append(out, fmt.Sprintf("%s: noisy — interval %s–%s around a median of %s req/s (%.0f%% wide).", t.Cell, Num(cs.Throughput.Lo), Num(cs.Throughput.Hi), Num(cs.Throughput.Median), cs.Throughput.RelWidth()*100))
		}
		for _, n := range cs.Notes {
			out = append(out, fmt.Sprintf("%s: %s", t.Cell, n))
		}
	}
	for _, e := range d.Damaged {
		out = append(out, fmt.Sprintf("%s — damaged, so its trial counts as not run; bench with the same -out runs it again.", e))
	}
	if notRun > 0 {
		out = append(out, fmt.Sprintf("%d planned trials have not run (an interrupted run, or damaged files: rerun the same command to resume).", notRun))
	}
	return out
}

// requestsString describes the requests: "64-byte requests" for echo and rpc,
// the file or path for file and http.
func requestsString(sp Spec) string {
	var parts []string
	for _, p := range sp.Protos {
		switch p {
		case "file":
			parts = append(parts, "file downloads of "+orDefault(sp.File, "1k.bin"))
		case "http":
			parts = append(parts, "HTTP GET "+orDefault(sp.Path, "/index.html"))
		default:
			if s := fmt.Sprintf("%d-byte requests", sp.Size); !slices.Contains(parts, s) {
				parts = append(parts, s)
			}
		}
	}
	return strings.Join(parts, ", ")
}

func orDefault(s, def string) string {
	if s == "" {
		return def + " (loadgen's default)"
	}
	return s
}

// peerVersion is the version a peer's first record says it ran ("" if none does).
func peerVersion(d *Dataset, model string) string {
	for _, t := range d.Plan.Trials() {
		if rec, ok := d.Records[t.Key()]; ok && t.Cell.Model == model && rec.Peer != nil && rec.Peer.Version != "" {
			return rec.Peer.Version
		}
	}
	return ""
}

// Table is a group's Markdown table: one row per concurrency and model, models
// and peers fastest first within a concurrency, peers' names in italics.
func Table(s *Summary, g Group, unit string) string {
	var b strings.Builder
	dg := proto.IsDatagram(g.Proto)
	if dg {
		// Datagrams: the loss beside the throughput, and where it happened.
		fmt.Fprintf(&b, "| c | model | %s [CI] | loss | p50 | p99 | p99.9 | CPU/req | peak RSS | threads / procs | errors | flags |\n", unit)
		b.WriteString("|--:|---|--:|---|--:|--:|--:|--:|--:|--:|---|---|\n")
	} else {
		fmt.Fprintf(&b, "| c | model | %s [CI] | p50 | p99 | p99.9 | CPU/req | peak RSS | threads / procs | errors | flags |\n", unit)
		b.WriteString("|--:|---|--:|--:|--:|--:|--:|--:|--:|---|---|\n")
	}
	for _, c := range s.Spec.Conns {
		// Comparable cells fastest first, then those apart (flagged), then
		// those without figures.
		rows := ranked(s, g, c, true, false)
		for _, cs := range ranked(s, g, c, true, true) {
			if cs.Apart() != "" {
				rows = append(rows, cs)
			}
		}
		for _, m := range s.Spec.Models {
			if cs := s.Cell(g, m, c); cs.Throughput.N == 0 {
				rows = append(rows, cs)
			}
		}
		for _, cs := range rows {
			name := cs.Cell.Model
			if IsPeer(name) {
				name = "*" + name + "*"
			}
			flags := Flags(cs)
			if s.Spec.RepeatAuto && cs.Throughput.N > 0 {
				// How many repetitions the cell's figures took.
				flags = append([]string{fmt.Sprintf("n=%d", cs.Throughput.N)}, flags...)
			}
			tp := throughputCell(cs)
			if dg {
				tp += " | " + lossCell(cs)
			}
			fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				c, name, tp, lat(cs, cs.Latency.P50US), lat(cs, cs.Latency.P99US), lat(cs, cs.Latency.P999US),
				cpuCell(cs), rssCell(cs), procCell(cs), errCell(cs), strings.Join(flags, " "))
		}
	}
	return b.String()
}

func throughputCell(cs CellSummary) string {
	if cs.Throughput.N == 0 {
		return "–"
	}
	if cs.Throughput.N == 1 {
		return Num(cs.Throughput.Median) + " (n=1)"
	}
	return fmt.Sprintf("%s [%s–%s]", Num(cs.Throughput.Median), Num(cs.Throughput.Lo), Num(cs.Throughput.Hi))
}

// lossCell is a datagram cell's loss rate over its trials, and where the
// lost datagrams went as far as the two sides' counters say: dropped at the
// server's socket on arrival (srv rcvbuf), read and not answered by the
// server (srv), dropped at loadgen's sockets (client); then duplicates and
// reordering, if any.
func lossCell(cs CellSummary) string {
	d := cs.Datagrams
	if d == nil || d.Sent == 0 {
		return "–"
	}
	out := Percent(d.LossRate)
	var where []string
	if d.ServerRcvbuf > 0 {
		where = append(where, "srv rcvbuf "+Num(float64(d.ServerRcvbuf)))
	}
	if d.ServerDropped > 0 {
		where = append(where, "srv "+Num(float64(d.ServerDropped)))
	}
	if d.ClientDropped > 0 {
		where = append(where, "client "+Num(float64(d.ClientDropped)))
	}
	if d.Duplicated > 0 {
		where = append(where, "dup "+Num(float64(d.Duplicated)))
	}
	if d.Reordered > 0 {
		where = append(where, "reord "+Num(float64(d.Reordered)))
	}
	if len(where) > 0 {
		out += " (" + strings.Join(where, ", ") + ")"
	}
	return out
}

func lat(cs CellSummary, v int64) string {
	if cs.Latency.Count == 0 {
		return "–"
	}
	return Micros(float64(v))
}

func cpuCell(cs CellSummary) string {
	if cs.CPUPerReqUS <= 0 {
		return "–"
	}
	return Micros(cs.CPUPerReqUS)
}

func rssCell(cs CellSummary) string {
	if cs.RSSMaxBytes <= 0 {
		return "–"
	}
	return MiB(cs.RSSMaxBytes)
}

func procCell(cs CellSummary) string {
	if cs.ThreadsMax == 0 {
		return "–"
	}
	return fmt.Sprintf("%d / %d", cs.ThreadsMax, cs.ProcsMax)
}

func errCell(cs CellSummary) string {
	if cs.ErrorsTotal == 0 {
		return "0"
	}
	return ErrorsString(cs.Errors)
}

// Flags are a cell's warning marks for tables.
func Flags(cs CellSummary) []string {
	var f []string
	if cs.ClientBound > 0 {
		f = append(f, fmt.Sprintf("CB %d/%d", cs.ClientBound, cs.Measured))
	}
	if cs.Noisy() {
		f = append(f, "noisy")
	}
	if cs.Disturbed > 0 {
		f = append(f, fmt.Sprintf("disturbed %d left out", cs.Disturbed))
	}
	if cs.DisturbedKept > 0 {
		f = append(f, fmt.Sprintf("disturbed %d kept", cs.DisturbedKept))
	}
	if why := cs.Apart(); why != "" {
		f = append(f, why)
	}
	if cs.NotSteady > 0 {
		f = append(f, fmt.Sprintf("not steady %d/%d", cs.NotSteady, cs.Planned))
	}
	if cs.Failed > 0 {
		f = append(f, fmt.Sprintf("fail %d/%d", cs.Failed, cs.Planned))
	}
	if cs.Skipped > 0 {
		f = append(f, fmt.Sprintf("skip %d/%d", cs.Skipped, cs.Planned))
	}
	if run := cs.OK + cs.Failed + cs.Skipped; run < cs.Planned {
		f = append(f, fmt.Sprintf("not run %d/%d", cs.Planned-run, cs.Planned))
	}
	return f
}

// TableCSV is a group's table as CSV, with full-precision numbers.
func TableCSV(s *Summary, g Group) []byte {
	var buf bytes.Buffer
	cw := csv.NewWriter(&buf)
	cw.Write([]string{"proto", "work", "reconnect", "conns", "idle", "model", "planned", "measured", "failed", "skipped",
		"throughput_median", "ci_lo", "ci_hi", "ci_level", "throughputs",
		"p50_us", "p90_us", "p99_us", "p99_9_us", "p99_99_us", "max_us", "latency_count",
		"cpu_us_per_req", "rss_max_bytes", "threads_max", "procs_max", "errors_total", "errors", "client_bound_reps", "noisy", "active_conns",
		"gated_reps", "held_at_start", "open_at_end", "idle_in_window", "gate_wait_s", "ceiling", "ceiling_reps", "not_steady_reps", "apart",
		"server_syscalls_per_req", "server_syscalls_min", "server_syscalls_max", "server_top_syscalls", "server_ctx_per_req", "server_voluntary_per_req", "server_involuntary_per_req",
		"server_user_us_per_req", "server_system_us_per_req", "client_syscalls_per_req", "client_ctx_per_req", "kernel_missing",
		"heartbeats_sent", "heartbeats_answered", "heartbeats_late", "heartbeats_missed", "heartbeat_p99_us", "idle_open_at_end_min", "idle_errors", "peer",
		"batch", "dgram_sent", "dgram_answered", "dgram_lost", "loss_rate", "dgram_late", "dgram_duplicated", "dgram_reordered", "dgram_mismatched",
		"dgram_client_dropped", "server_rcvbuf_drops", "server_dgram_dropped"})
	for _, c := range s.Spec.Conns {
		for _, idle := range s.Spec.idles() {
			for _, m := range s.Spec.Models {
				cs := s.CellAt(g, m, c, idle)
				if cs.Planned == 0 {
					continue // reconnect cells have no idle connections
				}
				var tps []string
				for _, t := range cs.Throughputs {
					tps = append(tps, fnum(t))
				}
				med, lo, hi := "", "", ""
				if cs.Throughput.N > 0 {
					med, lo, hi = fnum(cs.Throughput.Median), fnum(cs.Throughput.Lo), fnum(cs.Throughput.Hi)
				}
				l := cs.Latency
				row := []string{g.Proto, g.Work, strconv.FormatBool(g.Reconnect), strconv.Itoa(c), strconv.Itoa(idle), m,
					strconv.Itoa(cs.Planned), strconv.Itoa(cs.Measured), strconv.Itoa(cs.Failed), strconv.Itoa(cs.Skipped),
					med, lo, hi, fnum(cs.Throughput.Level), strings.Join(tps, " "),
					i64(l.P50US), i64(l.P90US), i64(l.P99US), i64(l.P999US), i64(l.P9999US), i64(l.MaxUS), i64(l.Count),
					fnum(cs.CPUPerReqUS), i64(cs.RSSMaxBytes), strconv.Itoa(cs.ThreadsMax), strconv.Itoa(cs.ProcsMax),
					i64(cs.ErrorsTotal), ErrorsString(cs.Errors), strconv.Itoa(cs.ClientBound), strconv.FormatBool(cs.Noisy()), fnum(cs.ActiveConns),
					strconv.Itoa(cs.Gated), fnum(cs.HeldAtStart), strconv.Itoa(cs.OpenAtEnd), strconv.Itoa(cs.IdleInWindow), fnum(cs.GateWaitSeconds),
					strconv.Itoa(cs.Ceiling), strconv.Itoa(cs.CeilingReps), strconv.Itoa(cs.NotSteady), cs.Apart()}
				row = append(row, kernelCSV(cs)...)
				row = append(row, heartbeatCSV(cs)...)
				row = append(row, strconv.FormatBool(IsPeer(m)))
				cw.Write(append(row, datagramCSV(g, cs)...))
			}
		}
	}
	cw.Flush()
	return buf.Bytes()
}

// heartbeatCSV is a cell's idle-connection columns of TableCSV (empty without
// idle connections).
// datagramCSV is a udp-echo cell's batch and datagram account; empty for a
// stream cell.
func datagramCSV(g Group, cs CellSummary) []string {
	d := cs.Datagrams
	if d == nil {
		return make([]string, 12)
	}
	return []string{strconv.Itoa(g.Batch), i64(d.Sent), i64(d.Answered), i64(d.Lost), fnum(d.LossRate), i64(d.Late), i64(d.Duplicated), i64(d.Reordered), i64(d.Mismatched),
		i64(d.ClientDropped), i64(d.ServerRcvbuf), i64(d.ServerDropped)}
}

func heartbeatCSV(cs CellSummary) []string {
	h := cs.Heartbeats
	if h == nil {
		return make([]string, 7)
	}
	return []string{i64(h.Sent), i64(h.Answered), i64(h.Late), i64(h.Missed), i64(h.Latency.P99US), strconv.Itoa(h.OpenAtEndMin), ErrorsString(h.Errors)}
}

// kernelCSV is a cell's kernel columns of TableCSV (empty when not counted).
func kernelCSV(cs CellSummary) []string {
	out := make([]string, 11)
	missing := cs.KernelMissing
	if k := cs.ServerKernel; k != nil {
		copy(out[4:], []string{fnum(k.CtxPerReq), fnum(k.VoluntaryPerReq), fnum(k.InvoluntaryPerReq), fnum(k.UserUSPerReq), fnum(k.SystemUSPerReq)})
		if k.HasSyscalls() {
			copy(out, []string{fnum(k.SyscallsPerReq), fnum(k.SyscallsMin), fnum(k.SyscallsMax), k.Top(3)})
		} else {
			missing = "syscalls " + k.SyscallsMissing
		}
	}
	if k := cs.ClientKernel; k != nil {
		out[10] = fnum(k.CtxPerReq)
		if k.HasSyscalls() {
			out[9] = fnum(k.SyscallsPerReq)
		}
	}
	return append(out, missing)
}

// fnum is a CSV number at full precision.
func fnum(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }

func i64(v int64) string { return strconv.FormatInt(v, 10) }

func ints(v []int) string {
	if len(v) == 0 {
		return "none"
	}
	var s []string
	for _, x := range v {
		s = append(s, strconv.Itoa(x))
	}
	return strings.Join(s, ", ")
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

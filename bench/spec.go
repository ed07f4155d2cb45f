// Package bench runs the comparison matrix — every model against a sweep of
// concurrency, protocols, per-request work and connection modes, repeated — by
// driving the load generator (bin/loadgen) once per trial and reading back its
// typed result (package internal/result). It then summarises the repetitions with
// medians, confidence intervals and merged latency histograms, says which
// differences are inside the noise, and writes REPORT.md, CSV tables and PNG plots.
//
// The layout of a run directory (see Store) is the contract between the runner and
// the report: `bench report` redraws everything from it without running anything.
package bench

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"concbench/internal/proto"
	"concbench/loadgen"
	"concbench/loadgen/search"
	"concbench/models"
)

// Spec is what a run measures: the matrix and how long each trial lasts. It is
// saved as plan.json in the run directory, so a report can be redrawn from data
// alone and a resumed run can check it measures the same thing.
type Spec struct {
	Preset string `json:"preset,omitempty"` // the preset it came from, if any
	// Models are registered model names and reference peers ("peer:cepoll",
	// "peer:nginx": servers bench starts itself, see PeerNames). In a preset,
	// "all" stands for every registered model (see ExpandModels).
	Models []string `json:"models"`
	Conns  []int    `json:"conns"` // concurrency sweep (connections)
	// Idles is the sweep of idle connections held beside each cell's active ones
	// (loadgen -idle): the C10K experiment. Empty means none (0 only). Each
	// idle connection sends a heartbeat every Heartbeat (0: loadgen's default, 5s).
	Idles     []int         `json:"idles,omitempty"`
	Heartbeat time.Duration `json:"heartbeat_ns,omitempty"`
	// Agents are the hosts the load came from (bench -agents, as given; the
	// Runner's Agents runs them); "" for this host's loadgen. A resumed run
	// must keep them: a run directory holds one or the other.
	Agents string   `json:"agents,omitempty"`
	Protos []string `json:"protos"` // "echo", "rpc", "file", "http", "udp-echo"
	// Batches are, for udp-echo, the -batch values swept (loadgen's and the
	// server's: datagrams per send or receive call), a group each; empty
	// means 1 alone.
	Batches []int `json:"batches,omitempty"`
	// File is the file every file request downloads ("" is loadgen's default,
	// 1k.bin); Path is the path every http request GETs ("" is loadgen's default,
	// /index.html). Both name the standard test files (internal/testfiles).
	File string `json:"file,omitempty"`
	Path string `json:"path,omitempty"`
	// Works are the per-request work kinds ("none", "sleep:1ms", "cpu:50us"). Work is
	// an rpc feature: echo cells are run with "none" only.
	Works []string `json:"works"`
	// Reconnect is "off" (persistent connections), "on" (a new connection per
	// request) or "both". Reconnect cells are run with work "none" only: they
	// measure connection set-up, not handlers.
	Reconnect string `json:"reconnect"`
	// Repeat is the number of repetitions of every cell. With RepeatAuto it is
	// the fewest: more are added, interleaved, to every closed-loop cell whose
	// median throughput's interval is wider than ±RepeatTarget of it, up to
	// RepeatMax repetitions (see MoreReps).
	Repeat       int     `json:"repeat"`
	RepeatAuto   bool    `json:"repeat_auto,omitempty"`
	RepeatMax    int     `json:"repeat_max,omitempty"`
	RepeatTarget float64 `json:"repeat_target,omitempty"`
	// CountReps is the number of further repetitions of every cell that count
	// its syscalls by name (loadgen's kernel counts, in full), run after the
	// timed ones. Counting syscalls sends every syscall of the machine through
	// the kernel's tracing path, which costs the server and the client alike
	// (about +0.2 µs a syscall here): with CountReps > 0 the Repeat timed
	// repetitions count only switches and CPU (loadgen -count-syscalls=false),
	// their throughput, latency and CPU figures are not paid for by counting,
	// and the syscall figures come from the counted repetitions alone (exact
	// counts: one repetition gives them). 0 counts syscalls in every
	// repetition, as results before this field did.
	CountReps int `json:"count_reps,omitempty"`
	// Duration and Warmup are each trial's measured time and unmeasured lead-in.
	Duration time.Duration `json:"duration_ns"`
	Warmup   time.Duration `json:"warmup_ns"`
	// Size is the request payload of echo and rpc, bytes (file and http requests
	// are a name).
	Size int `json:"size"`
	// Timeline, if positive, adds one longer trial per model (echo, or the first
	// protocol, at TimelineConns) to show a run's second-by-second course.
	Timeline      time.Duration `json:"timeline_ns,omitempty"`
	TimelineConns int           `json:"timeline_conns,omitempty"`
	// SteadyTimeout bounds each trial's steady-state gate (loadgen
	// -steady-timeout): the measured window opens once every connection has been
	// served (or their number has stopped growing: a ceiling), and a trial whose
	// number served still grows this long after its load started fails as
	// "not steady". 0 is loadgen's default. A trial may run this much longer than
	// its planned length.
	SteadyTimeout time.Duration `json:"steady_timeout_ns,omitempty"`
	// Timeout is how long a request may wait for its reply (loadgen
	// -timeout; 0 is loadgen's default, 5s): for udp-echo, after which a
	// datagram counts as lost — and as long as a trial that lost some waits
	// after its window for the fates of the datagrams sent in it.
	Timeout time.Duration `json:"timeout_ns,omitempty"`
	// TimelineStep is the width of one entry of the timeline trial's course
	// (loadgen -timeline-step); 0 is loadgen's default, a second.
	TimelineStep time.Duration `json:"timeline_step_ns,omitempty"`
	// Loads are open-loop steps as fractions of each model's closed-loop peak
	// in the same group and concurrency (its cell without a rate, which runs
	// first in each repetition and calibrates the steps: the rate of a step is
	// the fraction × that cell's first measured throughput). Rates are steps at
	// absolute rates, req/s. Both apply to persistent connections without idle
	// ones; Arrival is their arrival process (loadgen -arrival; "" is fixed).
	Loads   []float64 `json:"loads,omitempty"`
	Rates   []float64 `json:"rates,omitempty"`
	Arrival string    `json:"arrival,omitempty"`
	// Search, if set, is a latency objective ("p99<=1ms"): one more trial per
	// model, group and concurrency (persistent connections, no idle) runs
	// loadgen -search for the capacity at it, SearchRounds bisections of
	// open-loop steps of Duration each to SearchTol of the calibrated peak
	// (0: loadgen's defaults, 3 and 0.05), after the repetitions.
	Search       string  `json:"search,omitempty"`
	SearchRounds int     `json:"search_rounds,omitempty"`
	SearchTol    float64 `json:"search_tol,omitempty"`
	// Configure is how each cell's server is configured: ConfigureFair ("fair",
	// every preset) gives a pool the size a user would give it for the cell's
	// load (see CellConfig), ConfigureDefaults ("defaults", also what "" means:
	// runs before this field) every model its defaults. ProcessCap and
	// ThreadCap bound the fair pools: the worker processes and threads the
	// machine held when the run was planned (models.ProcessCap, ThreadCap);
	// CapsWhy says which limits set them.
	Configure  string `json:"configure,omitempty"`
	ProcessCap int    `json:"process_cap,omitempty"`
	ThreadCap  int    `json:"thread_cap,omitempty"`
	CapsWhy    string `json:"caps_why,omitempty"`
	// Set is a -set sweep ("workers=1,4,16,64"): Models then hold a variant
	// of each model per value (MODEL@FLAG=VALUE, see Variants), and the report
	// draws each model against the value (SetFigure). "" for none.
	Set string `json:"set,omitempty"`
	// Focus is the concurrency at which the per-model plots (latency by percentile,
	// CPU per request, reconnect rate, blocking work) are drawn; 0 picks 100 when
	// swept, else the highest swept.
	Focus int `json:"focus,omitempty"`
}

// Presets are the named matrices: quick is what `make bench` runs.
var Presets = map[string]Spec{
	// quick: every model and the C reference peer, echo, a concurrency sweep in
	// steps of 100 (one client, a hundred, a thousand: c = 10 is in full; the
	// sweep keeps make bench near its budget), fair pool sizes, 6 repetitions (the fewest for which the order-statistic
	// interval of a median, [min, max], covers ≥ 95%: 96.9%) and then adaptive
	// ones, up to 9 (the fewest whose interval drops the extremes), for every
	// cell not yet within ±10%, plus a 4 s timeline per model. Short trials buy
	// the repetitions (fork's and procpool's c=1000 trials wait ~5 s each for
	// their 1,000 processes before the steady-state gate opens their window). peer:cepoll is the line a one-core event loop in plain C reaches,
	// peer:uring the same for io_uring, peer:libevent the library reactor:
	// the report says how close the models get to them and never ranks them.
	"quick": {
		Models: []string{"all", "peer:cepoll", "peer:uring", "peer:libevent"},
		Conns:  []int{1, 100, 1000}, Protos: []string{"echo"}, Works: []string{"none"},
		Reconnect: "off", Repeat: 6, RepeatAuto: true, RepeatMax: 9, RepeatTarget: 0.10,
		CountReps: 1, Configure: ConfigureFair, Duration: time.Second, Warmup: 300 * time.Millisecond, Size: 64,
		Timeline: 4 * time.Second, TimelineConns: 100, TimelineStep: 100 * time.Millisecond,
		SteadyTimeout: time.Minute,
	},
	// full: echo, rpc and udp-echo (at -batch 1 and 32), blocking work,
	// reconnect mode, up to 10,000 connections, 5 repetitions of 5 s, and the
	// C peers (which take no blocking work and serve no datagrams: those cells
	// are skipped, as are fork's, thread's and procpool's datagram cells).
	// Hours, not minutes.
	"full": {
		Models: []string{"all", "peer:cepoll", "peer:uring", "peer:libevent"},
		Conns:  []int{1, 10, 100, 1000, 10000}, Protos: []string{"echo", "rpc", proto.UDPEcho}, Batches: []int{1, 32}, Works: []string{"none", "sleep:1ms"},
		Reconnect: "both", Repeat: 5, CountReps: 1, Configure: ConfigureFair, Duration: 5 * time.Second, Warmup: time.Second, Size: 64,
		Timeline: 15 * time.Second, TimelineConns: 100, TimelineStep: 100 * time.Millisecond,
		SteadyTimeout: 5 * time.Minute,
	},
	// scale: the C10K experiment — 10 busy connections beside 0 to the most idle
	// ones the descriptor limit allows (ScaleIdles), each idle one sending a
	// heartbeat every 5 s: select and poll pay for every descriptor on every
	// pass, epoll only for the ready ones; a thread or a process per connection
	// pays in memory. Every model and the C peer; 3 repetitions of 2 s.
	"scale": {
		Models: []string{"all", "peer:cepoll"},
		Conns:  []int{10}, Idles: []int{0, 1000, 5000, 10000, ScaleMax}, Protos: []string{"echo"}, Works: []string{"none"},
		Reconnect: "off", Repeat: 3, CountReps: 1, Configure: ConfigureFair, Duration: 2 * time.Second, Warmup: 500 * time.Millisecond, Size: 64,
		SteadyTimeout: time.Minute,
	},
	// curve: load–latency curves — every model and the C peer, echo at 100
	// connections: a closed-loop calibration (3 timed repetitions and a
	// counted one), then open-loop steps of Poisson arrivals at 10% to 110%
	// of each model's own peak (3 repetitions of 1 s each), then a search
	// for its capacity at p99 ≤ 1 ms (3 rounds of bisection to 5%).
	"curve": {
		Models: []string{"all", "peer:cepoll"},
		Conns:  []int{100}, Protos: []string{"echo"}, Works: []string{"none"},
		Reconnect: "off", Repeat: 3, CountReps: 1, Configure: ConfigureFair, Duration: time.Second, Warmup: 300 * time.Millisecond, Size: 64,
		Loads: []float64{0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 1.0, 1.1}, Arrival: "exp", Search: "p99<=1ms",
		SteadyTimeout: 30 * time.Second,
	},
	// udp: datagrams — every model (fork, thread and procpool refuse
	// udp-echo: skipped, with the reason) at 1 and 100 flows, -batch 1
	// (sendto/recvfrom) and 32 (sendmmsg/recvmmsg): a closed-loop
	// calibration, then open-loop steps at 50% to 200% of each model's own
	// peak, where the socket's receive buffer overflows and loss begins.
	// 3 repetitions of 1 s; a datagram unanswered after 1 s is lost (on
	// loopback a reply takes milliseconds at most), so that a lossy trial
	// waits 1 s, not loadgen's 5, for the fates of its window's datagrams.
	"udp": {
		Models: []string{"all"},
		Conns:  []int{1, 100}, Protos: []string{proto.UDPEcho}, Batches: []int{1, 32}, Works: []string{"none"},
		Reconnect: "off", Repeat: 3, CountReps: 1, Configure: ConfigureFair, Duration: time.Second, Warmup: 300 * time.Millisecond, Size: 64,
		Loads: []float64{0.5, 0.8, 1.0, 1.2, 1.5, 2.0}, SteadyTimeout: 30 * time.Second, Timeout: time.Second,
	},
	// http: the one-thread event loops, the goroutine baseline and the
	// multi-reactor serving a small static page over HTTP/1.1 keep-alive, against
	// nginx with one worker on the same CPUs. 6 short repetitions, no timeline:
	// about 2 minutes.
	"http": {
		Models: []string{"epoll-et", "reactor", "goroutine", "multireactor", "peer:nginx"},
		Conns:  []int{10, 100}, Protos: []string{"http"}, Path: "/index.html", Works: []string{"none"},
		Reconnect: "off", Repeat: 6, CountReps: 1, Configure: ConfigureFair, Duration: time.Second, Warmup: 300 * time.Millisecond, Size: 64,
		SteadyTimeout: 30 * time.Second,
	},
}

// ScaleMax in a preset's Idles stands for the most idle connections this machine
// allows beside the active ones (see MaxIdle), resolved when the spec is used.
const ScaleMax = -1

// MaxIdle is the most idle connections a cell of conns active ones can hold
// under a descriptor limit of nofile (the hard limit: loadgen and the server
// each raise their soft limit to it), leaving margin descriptors for the rest,
// at most 100,000 — the experiment's aim.
func MaxIdle(nofile uint64, conns, margin int) int {
	n := int(min(nofile, 1<<31)) - conns - margin
	return max(0, min(n, 100_000))
}

// ResolveIdles replaces ScaleMax in the spec's Idles by max, dropping repeats
// and sorting.
func (s *Spec) ResolveIdles(max int) {
	if len(s.Idles) == 0 {
		return
	}
	var out []int
	for _, n := range s.Idles {
		if n == ScaleMax {
			n = max
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	s.Idles = out
}

// idles is the spec's idle sweep: Idles, or 0 alone.
func (s Spec) idles() []int {
	if len(s.Idles) == 0 {
		return []int{0}
	}
	return s.Idles
}

// PresetNames lists the presets, sorted.
func PresetNames() []string { return slices.Sorted(maps.Keys(Presets)) }

// ExpandModels replaces "all" in a model list by every registered model, keeping
// the order and dropping repeats.
func ExpandModels(list, registered []string) []string {
	var out []string
	add := func(m string) {
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	for _, m := range list {
		if m == "all" {
			for _, r := range registered {
				add(r)
			}
			continue
		}
		add(m)
	}
	return out
}

// Protocols are the protocols a spec may sweep.
var Protocols = []string{"echo", "rpc", "file", "http", proto.UDPEcho}

// Cell is one point of the matrix: a model under one workload.
type Cell struct {
	Model     string `json:"model"`
	Proto     string `json:"proto"`
	Work      string `json:"work"`
	Reconnect bool   `json:"reconnect,omitempty"`
	Conns     int    `json:"conns"`
	// Batch is udp-echo's datagrams per send or receive call, of loadgen and
	// the server (Spec.Batches); 0 for the stream protocols.
	Batch int `json:"batch,omitempty"`
	// Idle is the idle connections held beside the Conns active ones.
	Idle int `json:"idle,omitempty"`
	// Timeline marks the one long trial per model that feeds the timeline plot; it
	// is not part of the sweep's statistics.
	Timeline bool `json:"timeline,omitempty"`
	// Load (a fraction of the model's closed-loop peak) or Rate (req/s) makes
	// the cell an open-loop step (Spec.Loads, Spec.Rates); Search makes it the
	// model's capacity search (Spec.Search).
	Load   float64 `json:"load,omitempty"`
	Rate   float64 `json:"rate,omitempty"`
	Search bool    `json:"search,omitempty"`
}

// Open reports whether the cell is an open-loop step.
func (c Cell) Open() bool { return c.Load > 0 || c.Rate > 0 }

// Calibration is the closed-loop cell an open-loop step or a search of c is
// measured against: the same model, group and concurrency.
func (c Cell) Calibration() Cell {
	c.Load, c.Rate, c.Search, c.Idle = 0, 0, false, 0
	return c
}

// Group is the workload of a cell without model and concurrency: one table and
// one set of plots each.
type Group struct {
	Proto     string `json:"proto"`
	Work      string `json:"work"`
	Reconnect bool   `json:"reconnect,omitempty"`
	Batch     int    `json:"batch,omitempty"` // udp-echo: datagrams per call (Spec.Batches)
}

// Group returns the cell's group.
func (c Cell) Group() Group { return Group{c.Proto, c.Work, c.Reconnect, c.Batch} }

// cell is the group's cell of model at conns connections.
func (g Group) cell(model string, conns int) Cell {
	return Cell{Model: model, Proto: g.Proto, Work: g.Work, Reconnect: g.Reconnect, Batch: g.Batch, Conns: conns}
}

// Key names the group in file names: "echo", "rpc-sleep-1ms", "echo-reconnect".
func (g Group) Key() string {
	k := g.Proto
	if g.Work != "" && g.Work != "none" {
		k += "-" + sanitize(g.Work)
	}
	if g.Reconnect {
		k += "-reconnect"
	}
	if g.Batch > 1 {
		k += fmt.Sprintf("-batch%d", g.Batch)
	}
	return k
}

// String is the group for humans: "echo", "rpc, work sleep:1ms, reconnect".
func (g Group) String() string {
	s := g.Proto
	if g.Work != "" && g.Work != "none" {
		s += ", work " + g.Work
	}
	if g.Reconnect {
		s += ", a new connection per request"
	}
	if g.Batch > 1 {
		s += fmt.Sprintf(", batch %d", g.Batch)
	}
	return s
}

// Key names the cell's directory: "echo/c100/epoll-et", "echo/c10/i5000/poll"
// (with idle connections), "timeline/echo-c100/poll".
func (c Cell) Key() string {
	if c.Timeline {
		return fmt.Sprintf("timeline/%s-c%d/%s", c.Group().Key(), c.Conns, c.Model)
	}
	switch {
	case c.Search:
		return fmt.Sprintf("%s/c%d/search/%s", c.Group().Key(), c.Conns, c.Model)
	case c.Load > 0:
		return fmt.Sprintf("%s/c%d/load%s/%s", c.Group().Key(), c.Conns, strconv.FormatFloat(c.Load, 'f', -1, 64), c.Model)
	case c.Rate > 0:
		return fmt.Sprintf("%s/c%d/r%s/%s", c.Group().Key(), c.Conns, strconv.FormatFloat(c.Rate, 'f', -1, 64), c.Model)
	}
	if c.Idle > 0 {
		return fmt.Sprintf("%s/c%d/i%d/%s", c.Group().Key(), c.Conns, c.Idle, c.Model)
	}
	return fmt.Sprintf("%s/c%d/%s", c.Group().Key(), c.Conns, c.Model)
}

// String is the cell for progress lines.
func (c Cell) String() string {
	s := fmt.Sprintf("%s %s c=%d", c.Model, c.Group(), c.Conns)
	if c.Idle > 0 {
		s += fmt.Sprintf(" idle=%d", c.Idle)
	}
	if c.Timeline {
		s += " (timeline)"
	}
	switch {
	case c.Search:
		s += " (capacity search)"
	case c.Load > 0:
		s += fmt.Sprintf(" at %g× its peak", c.Load)
	case c.Rate > 0:
		s += fmt.Sprintf(" at %g req/s", c.Rate)
	}
	return s
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.':
			return r
		}
		return '-'
	}, s)
}

// Trial is one run of one cell: what loadgen is started for.
type Trial struct {
	Cell Cell `json:"cell"`
	Rep  int  `json:"rep"` // 1-based repetition (of the timed ones, or of the counted ones)
	// Counted marks a repetition that counts syscalls (Spec.CountReps): its
	// figures give the cell's syscalls and nothing else.
	Counted bool `json:"counted,omitempty"`
}

// RepName is "rep2", or "count1" for a counted repetition.
func (t Trial) RepName() string {
	if t.Counted {
		return fmt.Sprintf("count%d", t.Rep)
	}
	return fmt.Sprintf("rep%d", t.Rep)
}

// Label is "rep 2", or "count 1" for a counted repetition: for messages.
func (t Trial) Label() string {
	if t.Counted {
		return fmt.Sprintf("count %d", t.Rep)
	}
	return fmt.Sprintf("rep %d", t.Rep)
}

// Key names the trial's files: the cell's key and "rep2" (or "count1").
func (t Trial) Key() string { return t.Cell.Key() + "/" + t.RepName() }

// Groups lists the spec's groups in order: protocols, then work, then reconnect.
func (s Spec) Groups() []Group {
	var gs []Group
	for _, p := range s.Protos {
		if proto.IsDatagram(p) {
			// No connection to reconnect, no work: a group per batch.
			for _, b := range s.batches() {
				gs = append(gs, Group{Proto: p, Work: "none", Batch: b})
			}
			continue
		}
		for _, w := range s.Works {
			if p != "rpc" && w != "none" {
				continue // work is an rpc feature
			}
			if s.Reconnect != "on" {
				gs = append(gs, Group{p, w, false, 0})
			}
			if s.Reconnect != "off" && w == "none" {
				gs = append(gs, Group{p, w, true, 0})
			}
		}
	}
	return gs
}

// batches is the spec's batch sweep for udp-echo: Batches, or 1 alone.
func (s Spec) batches() []int {
	if len(s.Batches) == 0 {
		return []int{1}
	}
	return s.Batches
}

// TimelineCell is the timeline cell of a model, or false when the spec has none.
func (s Spec) TimelineCell(model string) (Cell, bool) {
	gs := s.Groups()
	if s.Timeline <= 0 || len(gs) == 0 {
		return Cell{}, false
	}
	g := gs[0]
	c := g.cell(model, s.TimelineConns)
	c.Timeline = true
	return c, true
}

// Plan lists every trial in the order they run. Repetitions are the outer loop
// and models the inner one — rep 1 of every cell, then rep 2 … — so each
// repetition of one model sits between repetitions of the others (A B C A B C,
// never A A A B B B) and slow drift of a shared machine spreads over all models
// alike. Within a repetition the sweep goes group by group, concurrency rising,
// then idle connections rising. The counted repetitions (CountReps) follow the
// timed ones in the same order, and the timeline trials (one per model) run
// last. Idle connections are held beside persistent connections only:
// reconnect cells are run without them.
func (s Spec) Plan() []Trial {
	var ts []Trial
	round := func(rep int, counted bool) {
		for _, g := range s.Groups() {
			for _, c := range s.Conns {
				for _, idle := range s.idles() {
					if g.Reconnect && idle > 0 {
						continue
					}
					for _, m := range s.Models {
						cell := g.cell(m, c)
						cell.Idle = idle
						ts = append(ts, Trial{cell, rep, counted})
					}
				}
				if g.Reconnect || counted {
					continue // open-loop steps: persistent connections, timed
				}
				for _, cell := range s.openCells(g, c) {
					for _, m := range s.Models {
						cell.Model = m
						ts = append(ts, Trial{Cell: cell, Rep: rep})
					}
				}
			}
		}
	}
	for rep := 1; rep <= s.Repeat; rep++ {
		round(rep, false)
	}
	for rep := 1; rep <= s.CountReps; rep++ {
		round(rep, true)
	}
	if s.Search != "" {
		for _, g := range s.Groups() {
			for _, c := range s.Conns {
				for _, m := range s.Models {
					if !g.Reconnect {
						cell := g.cell(m, c)
						cell.Search = true
						ts = append(ts, Trial{Cell: cell, Rep: 1})
					}
				}
			}
		}
	}
	for _, m := range s.Models {
		if c, ok := s.TimelineCell(m); ok {
			ts = append(ts, Trial{Cell: c, Rep: 1})
		}
	}
	return ts
}

// openCells are a group's open-loop steps at one concurrency, model unset:
// the loads in order, then the rates.
func (s Spec) openCells(g Group, conns int) []Cell {
	var out []Cell
	for _, l := range s.Loads {
		c := g.cell("", conns)
		c.Load = l
		out = append(out, c)
	}
	for _, r := range s.Rates {
		c := g.cell("", conns)
		c.Rate = r
		out = append(out, c)
	}
	return out
}

// SearchSteps is the most open-loop steps a search trial runs: per round the
// peak and a halving until the bracket is within the tolerance.
func (s Spec) SearchSteps() int {
	rounds, tol := search.Resolve(s.SearchRounds, s.SearchTol)
	return rounds * (1 + int(math.Ceil(math.Log2(1/tol))))
}

// Curved reports whether the spec has open-loop steps or a search: a
// load–latency curve to draw.
func (s Spec) Curved() bool { return len(s.Loads) > 0 || len(s.Rates) > 0 || s.Search != "" }

// FocusConns is the concurrency of the per-model plots.
func (s Spec) FocusConns() int {
	if s.Focus > 0 {
		return s.Focus
	}
	if slices.Contains(s.Conns, 100) {
		return 100
	}
	if len(s.Conns) == 0 {
		return 0
	}
	return slices.Max(s.Conns)
}

// TrialDuration is the planned length of a trial's load, warm-up included.
func (s Spec) TrialDuration(c Cell) time.Duration {
	if c.Timeline {
		return s.Timeline + s.Warmup
	}
	return s.Duration + s.Warmup
}

// Validate checks the spec against the registered models (known) and the known
// peers.
func (s Spec) Validate(known []string) error {
	var errs []error
	if len(s.Models) == 0 {
		errs = append(errs, errors.New("no models"))
	}
	for _, m := range s.Models {
		if flag, value, ok := variantSetting(m); ok {
			switch {
			case IsPeer(m):
				errs = append(errs, fmt.Errorf("%q: a reference peer takes no -set", m))
			case !slices.Contains(SetFlags, flag) || value == "":
				errs = append(errs, fmt.Errorf("%q: want MODEL@FLAG=VALUE with FLAG one of %s", m, strings.Join(SetFlags, ", ")))
			}
			m = BaseModel(m)
		}
		switch _, peer := lookupPeer(m); {
		case peer:
		case IsPeer(m):
			errs = append(errs, fmt.Errorf("unknown peer %q (known: %s)", m, strings.Join(PeerNames(), ", ")))
		case !slices.Contains(known, m):
			errs = append(errs, fmt.Errorf("unknown model %q (registered: %s)", m, strings.Join(known, ", ")))
		}
	}
	if len(s.Conns) == 0 {
		errs = append(errs, errors.New("no concurrency levels"))
	}
	if s.RepeatAuto && (s.RepeatMax < s.Repeat || !(s.RepeatTarget > 0 && s.RepeatTarget < 1)) {
		errs = append(errs, fmt.Errorf("adaptive repetitions: want at most %d repetitions ≥ the %d planned and a target between 0 and 1 (got %g)", s.RepeatMax, s.Repeat, s.RepeatTarget))
	}
	if s.Configure != "" && !slices.Contains(Configures, s.Configure) {
		errs = append(errs, fmt.Errorf("configure %q: want one of %s", s.Configure, strings.Join(Configures, ", ")))
	}
	for _, c := range s.Conns {
		if c < 1 {
			errs = append(errs, fmt.Errorf("concurrency %d: must be at least 1", c))
		}
	}
	for _, n := range s.Idles {
		if n < 0 {
			errs = append(errs, fmt.Errorf("idle connections %d: must not be negative", n))
		}
	}
	if s.Heartbeat < 0 {
		errs = append(errs, errors.New("heartbeat must not be negative (0: loadgen's default)"))
	}
	for _, p := range s.Protos {
		if !slices.Contains(Protocols, p) {
			errs = append(errs, fmt.Errorf("protocol %q: want %s", p, strings.Join(Protocols, ", ")))
		}
	}
	for _, b := range s.Batches {
		if b < 1 || b > models.MaxBatch {
			errs = append(errs, fmt.Errorf("batch %d: datagrams per call, 1 to %d", b, models.MaxBatch))
		}
	}
	if len(s.Batches) > 0 && !slices.ContainsFunc(s.Protos, proto.IsDatagram) {
		errs = append(errs, fmt.Errorf("batch %v without the %s protocol", s.Batches, proto.UDPEcho))
	}
	if slices.ContainsFunc(s.Protos, proto.IsDatagram) && s.Size > proto.MaxDatagramIPv4 {
		errs = append(errs, fmt.Errorf("size %d: a %s datagram carries at most %d bytes", s.Size, proto.UDPEcho, proto.MaxDatagramIPv4))
	}
	if s.File != "" && !slices.Contains(s.Protos, "file") {
		errs = append(errs, fmt.Errorf("file %q without the file protocol", s.File))
	}
	if s.Path != "" && !slices.Contains(s.Protos, "http") {
		errs = append(errs, fmt.Errorf("path %q without the http protocol", s.Path))
	}
	if s.Path != "" && !strings.HasPrefix(s.Path, "/") {
		errs = append(errs, fmt.Errorf("path %q: must start with /", s.Path))
	}
	for _, w := range s.Works {
		if w != "none" && !strings.HasPrefix(w, "sleep:") && !strings.HasPrefix(w, "cpu:") {
			errs = append(errs, fmt.Errorf("work %q: want none, sleep:DUR or cpu:DUR", w))
		}
	}
	switch s.Reconnect {
	case "off", "on", "both":
	default:
		errs = append(errs, fmt.Errorf("reconnect %q: want off, on or both", s.Reconnect))
	}
	if s.Repeat < 1 || s.Duration <= 0 || s.Warmup < 0 || s.Size < 1 {
		errs = append(errs, errors.New("repeat, duration and size must be positive, warm-up not negative"))
	}
	for _, l := range s.Loads {
		if l <= 0 || l > 10 {
			errs = append(errs, fmt.Errorf("load %g: a fraction of the closed-loop peak, above 0 and at most 10", l))
		}
	}
	for _, r := range s.Rates {
		if r <= 0 {
			errs = append(errs, fmt.Errorf("rate %g: must be positive (req/s)", r))
		}
	}
	switch s.Arrival {
	case "", loadgen.ArrivalFixed, loadgen.ArrivalExp:
	default:
		errs = append(errs, fmt.Errorf("arrival %q: want %s or %s", s.Arrival, loadgen.ArrivalFixed, loadgen.ArrivalExp))
	}
	if s.Search != "" {
		if _, err := search.ParseSLO(s.Search); err != nil {
			errs = append(errs, err)
		}
	}
	if s.SearchRounds < 0 || s.SearchTol < 0 || s.SearchTol >= 1 {
		errs = append(errs, errors.New("search rounds must not be negative and the search tolerance within [0, 1)"))
	}
	if s.CountReps < 0 {
		errs = append(errs, errors.New("counted repetitions must not be negative (0: syscalls counted in every repetition)"))
	}
	if s.SteadyTimeout < 0 || s.TimelineStep < 0 || s.Timeout < 0 {
		errs = append(errs, errors.New("steady timeout, timeout and timeline step must not be negative (0: loadgen's default)"))
	}
	if len(errs) == 0 && len(s.Groups()) == 0 {
		errs = append(errs, errors.New("the protocols, work and reconnect choices leave no cell (work other than none applies to rpc only)"))
	}
	return errors.Join(errs...)
}

// SameMeasurement reports why a saved spec's trials cannot be mixed with s's
// ("" if they can): the trial length, warm-up and payload must match. The
// matrix itself may grow or shrink; cells are matched by key.
func (s Spec) SameMeasurement(saved Spec) string {
	var diffs []string
	if s.Duration != saved.Duration {
		diffs = append(diffs, fmt.Sprintf("duration %v vs %v", s.Duration, saved.Duration))
	}
	if s.Warmup != saved.Warmup {
		diffs = append(diffs, fmt.Sprintf("warm-up %v vs %v", s.Warmup, saved.Warmup))
	}
	if s.Size != saved.Size {
		diffs = append(diffs, fmt.Sprintf("size %d vs %d", s.Size, saved.Size))
	}
	if s.Timeline != saved.Timeline {
		diffs = append(diffs, fmt.Sprintf("timeline %v vs %v", s.Timeline, saved.Timeline))
	}
	if s.File != saved.File {
		diffs = append(diffs, fmt.Sprintf("file %q vs %q", s.File, saved.File))
	}
	if s.Path != saved.Path {
		diffs = append(diffs, fmt.Sprintf("path %q vs %q", s.Path, saved.Path))
	}
	if s.Arrival != saved.Arrival {
		diffs = append(diffs, fmt.Sprintf("arrival %q vs %q", s.Arrival, saved.Arrival))
	}
	if s.Search != saved.Search || s.SearchRounds != saved.SearchRounds || s.SearchTol != saved.SearchTol {
		diffs = append(diffs, fmt.Sprintf("search %q (%d rounds, tolerance %g) vs %q (%d, %g)", s.Search, s.SearchRounds, s.SearchTol, saved.Search, saved.SearchRounds, saved.SearchTol))
	}
	if s.Agents != saved.Agents {
		diffs = append(diffs, fmt.Sprintf("the load's agents %q vs %q (\"\": this host's loadgen)", s.Agents, saved.Agents))
	}
	if s.Heartbeat != saved.Heartbeat {
		diffs = append(diffs, fmt.Sprintf("heartbeat %v vs %v", s.Heartbeat, saved.Heartbeat))
	}
	if (s.CountReps > 0) != (saved.CountReps > 0) {
		// The timed repetitions of one would pay for syscall counting and the
		// other's not.
		diffs = append(diffs, fmt.Sprintf("counted repetitions %d vs %d (syscalls counted apart or in every repetition)", s.CountReps, saved.CountReps))
	}
	if s.fair() != saved.fair() {
		// (The caps are the machine's when the run was planned: a resumed
		// run takes the saved ones, see Runner.Run.)
		diffs = append(diffs, fmt.Sprintf("configure %q vs %q", cmp.Or(s.Configure, ConfigureDefaults), cmp.Or(saved.Configure, ConfigureDefaults)))
	}
	if s.TimelineStep != saved.TimelineStep {
		diffs = append(diffs, fmt.Sprintf("timeline step %v vs %v", s.TimelineStep, saved.TimelineStep))
	}
	return strings.Join(diffs, ", ")
}

// ParseInts parses "1,10,100".
func ParseInts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%q: not an integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// ParseFloats parses "0.1,0.5,1.1".
func ParseFloats(s string) ([]float64, error) {
	var out []float64
	for _, f := range ParseList(s) {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return nil, fmt.Errorf("%q: not a number", f)
		}
		out = append(out, v)
	}
	return out, nil
}

// ParseList parses "a,b" into its non-empty, trimmed items.
func ParseList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

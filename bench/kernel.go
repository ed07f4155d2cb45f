package bench

// What a request costs the kernel, per cell: the kernel's own counts of the
// server's tree and of loadgen over each trial's window (result.Kernel, counted
// by package kcount), divided by the requests of the window. Exact counts: a
// noisy neighbour slows a trial but does not change how many syscalls a request
// takes, so these figures separate models the throughput table cannot.

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/montanaflynn/stats"

	"concbench/internal/result"
)

// KernelCost is one side's kernel counts per request in a cell: medians over the
// trials that counted them, with the range, and the syscalls by name pooled
// over those trials (their counts summed, divided by their requests summed).
// The switches and CPU come from the timed repetitions; the syscalls from the
// counted ones when the spec has them (Spec.CountReps), else from the same.
type KernelCost struct {
	Reps int `json:"reps"` // trials whose switches and CPU are counted
	// SyscallReps is the number of trials whose syscalls are counted;
	// SyscallsMissing says why there are none ("" when there are).
	SyscallReps     int    `json:"syscall_reps"`
	SyscallsMissing string `json:"syscalls_missing,omitempty"`
	// SyscallsPerReq is the median of the trials' syscalls per request;
	// SyscallsMin and SyscallsMax the range over them.
	SyscallsPerReq float64 `json:"syscalls_per_req"`
	SyscallsMin    float64 `json:"syscalls_min"`
	SyscallsMax    float64 `json:"syscalls_max"`
	// BySyscall is per request by name ("other" for the names not counted apart).
	BySyscall map[string]float64 `json:"by_syscall"`
	// CtxPerReq is context switches per request, VoluntaryPerReq and
	// InvoluntaryPerReq its two parts (medians).
	CtxPerReq         float64 `json:"ctx_per_req"`
	VoluntaryPerReq   float64 `json:"voluntary_per_req"`
	InvoluntaryPerReq float64 `json:"involuntary_per_req"`
	// UserUSPerReq and SystemUSPerReq are CPU µs per request in user and kernel
	// mode (medians).
	UserUSPerReq   float64 `json:"user_us_per_req"`
	SystemUSPerReq float64 `json:"system_us_per_req"`
	// CPUUSPerReq is user + system µs per request (median), CPUMin and CPUMax
	// its range over the trials.
	CPUUSPerReq float64 `json:"cpu_us_per_req"`
	CPUMin      float64 `json:"cpu_min"`
	CPUMax      float64 `json:"cpu_max"`
}

// HasSyscalls reports whether c has syscall figures (a nil c has none).
func (c *KernelCost) HasSyscalls() bool { return c != nil && c.SyscallReps > 0 }

// kernelAcc collects one side's counts over a cell's trials.
type kernelAcc struct {
	ctx, vol, inv, user, system, cpu []float64
	sys                              []float64
	byName                           map[string]int64
	sysRequests                      int64 // of the trials in sys
	missing                          string
	sysMissing                       string // why a trial added has no syscalls
}

// add adds one trial's counts (k nil: not counted, missing says why): its
// switches and CPU, and its syscalls if it counted them.
func (a *kernelAcc) add(k *result.Kernel, missing string, requests int64) {
	if k == nil || requests <= 0 {
		if a.missing == "" {
			a.missing = missing
		}
		return
	}
	per := func(n int64) float64 { return float64(n) / float64(requests) }
	a.ctx = append(a.ctx, per(k.CtxSwitches))
	a.vol = append(a.vol, per(k.Voluntary))
	a.inv = append(a.inv, per(k.Involuntary))
	a.user = append(a.user, per(k.UserUS))
	a.system = append(a.system, per(k.SystemUS))
	a.cpu = append(a.cpu, per(k.UserUS+k.SystemUS))
	a.addSyscalls(k, "", requests)
}

// addSyscalls adds one trial's syscalls alone (k nil or without them: why is
// the reason, or k's, and is kept if no reason is yet).
func (a *kernelAcc) addSyscalls(k *result.Kernel, why string, requests int64) {
	switch {
	case k != nil && k.SyscallsMissing != "":
		why = k.SyscallsMissing
	case k == nil || requests <= 0:
	default:
		a.sys = append(a.sys, float64(k.SyscallsTotal)/float64(requests))
		if a.byName == nil {
			a.byName = map[string]int64{}
		}
		for name, n := range k.Syscalls {
			a.byName[name] += n
		}
		a.byName["other"] += k.SyscallsOther
		a.sysRequests += requests
		return
	}
	if a.sysMissing == "" {
		a.sysMissing = why
	}
}

// cost is the collected counts per request, nil if no trial had any. syscalls,
// if not nil, are the syscalls counted in repetitions of their own: they stand
// in for a's own when a has none.
func (a *kernelAcc) cost(syscalls *kernelAcc) *KernelCost {
	if len(a.ctx) == 0 {
		return nil
	}
	med := func(xs []float64) float64 { m, _ := stats.Median(xs); return m }
	c := &KernelCost{Reps: len(a.ctx),
		CtxPerReq: med(a.ctx), VoluntaryPerReq: med(a.vol), InvoluntaryPerReq: med(a.inv),
		UserUSPerReq: med(a.user), SystemUSPerReq: med(a.system),
		CPUUSPerReq: med(a.cpu), CPUMin: slices.Min(a.cpu), CPUMax: slices.Max(a.cpu)}
	src := a
	if len(a.sys) == 0 && syscalls != nil {
		src = syscalls
	}
	if len(src.sys) == 0 {
		c.SyscallsMissing = cmp.Or(src.sysMissing, a.sysMissing, "not measured: no trial counted syscalls")
		return c
	}
	c.SyscallReps, c.SyscallsPerReq, c.SyscallsMin, c.SyscallsMax = len(src.sys), med(src.sys), slices.Min(src.sys), slices.Max(src.sys)
	c.BySyscall = map[string]float64{}
	for name, n := range src.byName {
		if n > 0 {
			c.BySyscall[name] = float64(n) / float64(src.sysRequests)
		}
	}
	return c
}

// Top is "read 1.00, write 1.00, epoll_wait 0.06": the n syscalls made most
// per request.
func (c *KernelCost) Top(n int) string {
	names := slices.Collect(maps.Keys(c.BySyscall))
	slices.SortFunc(names, func(a, b string) int {
		if d := cmp.Compare(c.BySyscall[b], c.BySyscall[a]); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	var parts []string
	for _, name := range names[:min(n, len(names))] {
		parts = append(parts, fmt.Sprintf("%s %.2f", name, c.BySyscall[name]))
	}
	return strings.Join(parts, ", ")
}

// Spread is the range of syscalls per request over the trials relative to the
// median: how exact the figure is.
func (c *KernelCost) Spread() float64 {
	if c.SyscallsPerReq == 0 {
		return 0
	}
	return (c.SyscallsMax - c.SyscallsMin) / c.SyscallsPerReq
}

// kernelRows are the cells of a row with the server's counts: the comparable
// models by syscalls per request (fewest first), then those apart, then the
// reference peers.
func kernelRows(s *Summary, g Group, conns int) []CellSummary {
	var models, apart, refs []CellSummary
	for _, m := range s.Spec.Models {
		cs := s.Cell(g, m, conns)
		switch {
		case cs.ServerKernel == nil:
		case IsPeer(m):
			refs = append(refs, cs)
		case cs.Apart() != "":
			apart = append(apart, cs)
		default:
			models = append(models, cs)
		}
	}
	// Cells whose syscalls were not counted go after those whose were.
	key := func(cs CellSummary) float64 {
		if !cs.ServerKernel.HasSyscalls() {
			return math.Inf(1)
		}
		return cs.ServerKernel.SyscallsPerReq
	}
	by := func(a, b CellSummary) int { return cmp.Compare(key(a), key(b)) }
	slices.SortStableFunc(models, by)
	slices.SortStableFunc(apart, by)
	return append(append(models, apart...), refs...)
}

// KernelTable is the Markdown table of a row's kernel counts per request.
func KernelTable(s *Summary, g Group, conns int) string {
	rows := kernelRows(s, g, conns)
	if len(rows) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("| model | syscalls/req [min–max] | most made, per request | switches/req (voluntary + involuntary) | user µs/req | system µs/req | loadgen syscalls/req | loadgen switches/req | flags |\n")
	b.WriteString("|---|--:|---|--:|--:|--:|--:|--:|---|\n")
	for _, cs := range rows {
		k := cs.ServerKernel
		name := cs.Cell.Model
		if IsPeer(name) {
			name = "*" + name + "*"
		}
		client := []string{"–", "–"}
		if c := cs.ClientKernel; c != nil {
			client[1] = fmt.Sprintf("%.3f", c.CtxPerReq)
			if c.HasSyscalls() {
				client[0] = fmt.Sprintf("%.2f", c.SyscallsPerReq)
			}
		}
		sys, top := "not counted", "–"
		if k.HasSyscalls() {
			sys, top = fmt.Sprintf("%.2f [%.2f–%.2f]", k.SyscallsPerReq, k.SyscallsMin, k.SyscallsMax), k.Top(3)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %.3f (%.3f + %.3f) | %.2f | %.2f | %s | %s | %s |\n",
			name, sys, top, k.CtxPerReq, k.VoluntaryPerReq, k.InvoluntaryPerReq,
			k.UserUSPerReq, k.SystemUSPerReq, client[0], client[1], strings.Join(Flags(cs), " "))
	}
	return b.String()
}

// KernelFindings says, at each concurrency, which comparable model made the
// fewest and the most syscalls and context switches per request, how far apart,
// how steady the counts were over repetitions, and where the reference peers lie.
func KernelFindings(s *Summary, g Group) []string {
	var out []string
	worstSpread, minReps := 0.0, math.MaxInt
	for _, c := range s.Spec.Conns {
		var ms []CellSummary
		var refs, uncounted []string
		for _, cs := range kernelRows(s, g, c) {
			switch {
			case !cs.ServerKernel.HasSyscalls():
				uncounted = append(uncounted, fmt.Sprintf("%s (%s)", cs.Cell.Model, cs.ServerKernel.SyscallsMissing))
			case IsPeer(cs.Cell.Model):
				refs = append(refs, fmt.Sprintf("%s %.2f syscalls and %.3f switches per request", cs.Cell.Model, cs.ServerKernel.SyscallsPerReq, cs.ServerKernel.CtxPerReq))
			case cs.Apart() == "":
				ms = append(ms, cs)
				worstSpread = max(worstSpread, cs.ServerKernel.Spread())
				minReps = min(minReps, cs.ServerKernel.SyscallReps)
			}
		}
		if len(uncounted) > 0 {
			out = append(out, fmt.Sprintf("c=%d: syscalls not counted for %s.", c, strings.Join(uncounted, "; ")))
		}
		if len(ms) < 2 {
			continue
		}
		lo, hi := ms[0], ms[len(ms)-1]
		line := fmt.Sprintf("c=%d: fewest syscalls per request %s, %.2f (%s); most %s, %.2f (%s), %s.",
			c, lo.Cell.Model, lo.ServerKernel.SyscallsPerReq, lo.ServerKernel.Top(3), hi.Cell.Model, hi.ServerKernel.SyscallsPerReq, hi.ServerKernel.Top(3),
			times(hi.ServerKernel.SyscallsPerReq/lo.ServerKernel.SyscallsPerReq))
		byCtx := func(a, b CellSummary) int { return cmp.Compare(a.ServerKernel.CtxPerReq, b.ServerKernel.CtxPerReq) }
		clo, chi := slices.MinFunc(ms, byCtx), slices.MaxFunc(ms, byCtx)
		line += fmt.Sprintf(" Context switches per request: fewest %s, %.3f; most %s, %.3f.", clo.Cell.Model, clo.ServerKernel.CtxPerReq, chi.Cell.Model, chi.ServerKernel.CtxPerReq)
		if len(refs) > 0 {
			line += " Reference: " + strings.Join(refs, "; ") + "."
		}
		// The same models by CPU per request, with the range of each.
		byCPU := slices.Clone(ms)
		slices.SortStableFunc(byCPU, func(a, b CellSummary) int { return cmp.Compare(a.ServerKernel.CPUUSPerReq, b.ServerKernel.CPUUSPerReq) })
		var cpu []string
		for _, cs := range byCPU {
			k := cs.ServerKernel
			cpu = append(cpu, fmt.Sprintf("%s %.2f [%.2f–%.2f]", cs.Cell.Model, k.CPUUSPerReq, k.CPUMin, k.CPUMax))
		}
		line += " By CPU per request (user + system µs, [min–max] over repetitions): " + strings.Join(cpu, ", ") + "."
		out = append(out, line+apartNote(apartCells(s, g, c)))
		if sep := separatedByCounts(ms); sep != "" {
			out = append(out, fmt.Sprintf("c=%d: %s", c, sep))
		}
	}
	switch {
	case len(out) == 0:
	case minReps < 2:
		out = append(out, "These are counts, not samples: each cell's syscalls come from a single counted repetition, exact as counted (their spread over repetitions is not measured: give bench -count-reps 2 or more for it); the switches and CPU time come from the timed repetitions.")
	default:
		out = append(out, fmt.Sprintf("These are counts, not samples: over the counted repetitions of a cell, syscalls per request varied by at most %s of the median, where throughput varied far more.", pctOf(worstSpread)))
	}
	return out
}

// separatedByCounts names the models that throughput cannot tell from the one
// with the fewest syscalls per request (their repetitions' throughputs overlap:
// within the noise) but whose counts are clearly apart from its (their ranges do
// not overlap), with the syscall that differs most: what only the counts show.
// ms are sorted by syscalls per request, fewest first.
func separatedByCounts(ms []CellSummary) string {
	if len(ms) < 2 {
		return ""
	}
	lo := ms[0]
	var parts []string
	for _, cs := range ms[1:] {
		k, l := cs.ServerKernel, lo.ServerKernel
		if k.SyscallsMin <= l.SyscallsMax || k.SyscallsPerReq-l.SyscallsPerReq < 0.05 {
			continue // counts that overlap, or a difference of little weight
		}
		if Compare(cs.Throughputs, lo.Throughputs).Verdict != Noise {
			continue // throughput tells them apart already
		}
		name, diff := "", 0.0
		for n := range unionKeys(k.BySyscall, l.BySyscall) {
			if d := k.BySyscall[n] - l.BySyscall[n]; math.Abs(d) > math.Abs(diff) {
				name, diff = n, d
			}
		}
		parts = append(parts, fmt.Sprintf("%s makes %.2f more syscalls per request (%s %+.2f)", cs.Cell.Model, k.SyscallsPerReq-l.SyscallsPerReq, name, diff))
	}
	if len(parts) == 0 {
		return ""
	}
	return fmt.Sprintf("within the noise of %s by throughput, but not by the kernel's counts: %s.", lo.Cell.Model, strings.Join(parts, "; "))
}

// unionKeys is the set of keys of a and b.
func unionKeys(a, b map[string]float64) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// kernelMissing is why no cell of a group has kernel counts ("" if one has).
func kernelMissing(s *Summary, g Group) string {
	why := ""
	for _, c := range s.Spec.Conns {
		for _, m := range s.Spec.Models {
			cs := s.Cell(g, m, c)
			if cs.ServerKernel != nil {
				return ""
			}
			if why == "" {
				why = cs.KernelMissing
			}
		}
	}
	if why == "" {
		why = "the results carry no kernel counts (loadgen before they were counted, or -kernel-counts=false)"
	}
	return why
}

// syscallHues fix a colour per syscall (and per kind of switch) so that a
// syscall is the same colour in every plot: its 1-based index is its Hue. The
// names the models and peers make most come first; a name not here takes a hue
// after them (the palette wraps).
var syscallHues = []string{"read", "write", "epoll_wait", "epoll_pwait", "epoll_ctl", "futex", "nanosleep",
	"poll", "ppoll", "select", "pselect6", "sendto", "recvfrom", "other", "voluntary", "involuntary",
	"io_uring_enter", "readv", "writev", "sendmsg", "recvmsg", "accept4", "recvmmsg", "sendmmsg", "sched_yield"}

// hueOf is the BarSet.Hue of a syscall name (or "other", "voluntary",
// "involuntary"): fixed for the names in syscallHues, else from a hash of the
// name, so it is the same in every figure too.
func hueOf(name string) int {
	if i := slices.Index(syscallHues, name); i >= 0 {
		return i + 1
	}
	return len(syscallHues) + 1 + int(hashOf(name)%uint32(len(palette)))
}

// shownSyscalls are the syscalls a row's figures name: those that make at least
// 2% of some model's syscalls per request (the rest are drawn as "other"),
// sorted.
func shownSyscalls(s *Summary, g Group, conns int) []string {
	shown := map[string]bool{}
	for _, m := range s.Spec.Models {
		k := s.Cell(g, m, conns).ServerKernel
		if k == nil {
			continue
		}
		for n, v := range k.BySyscall {
			if n != "other" && k.SyscallsPerReq > 0 && v >= 0.02*k.SyscallsPerReq {
				shown[n] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(shown))
}

// SyscallsFigure: the syscall profile as small multiples, like throughput and
// CPU: a panel per concurrency, a horizontal bar per model (fewest syscalls
// per request first, cells apart after, reference peers among the models),
// split by syscall in the same hues as SyscallFigure's, the context switches
// per request written beside the total.
func SyscallsFigure(s *Summary, g Group) Figure {
	f := Figure{Name: "syscalls-" + g.Key(), Title: fmt.Sprintf("Syscalls per request by concurrency (%s)", g.String()), Cols: smallMultipleCols(len(s.Spec.Conns)),
		Caption: "The kernel's own counts over the window (BPF on the sys_enter and sched_switch tracepoints, for the server's whole process tree), divided by the requests of the window: a panel per concurrency, each model's bar the median counted trial's syscalls per request, split by syscall in proportion to the counted trials' pooled counts (names under 2% of every model's total in other), fewest first; the figure after the bar is its total, and in brackets its context switches (sw) per request. Exact counts, so a noisy machine does not blur them: these bars separate models the throughput bars cannot."}
	for _, c := range s.Spec.Conns {
		names := shownSyscalls(s, g, c)
		var rows, apart []HBar
		for _, m := range s.Spec.Models {
			cs := s.Cell(g, m, c)
			k := cs.ServerKernel
			if !k.HasSyscalls() {
				continue
			}
			b := HBar{Model: m, Name: m, Value: k.SyscallsPerReq, Peer: IsPeer(m),
				Label: fmt.Sprintf("%.2f (%.3f sw)", k.SyscallsPerReq, k.CtxPerReq), ClientBound: cs.ClientBound > 0}
			rest := k.SyscallsPerReq
			for _, n := range names {
				if v := k.BySyscall[n]; v > 0 {
					b.Segments = append(b.Segments, Segment{Name: n, Value: v, Hue: hueOf(n)})
					rest -= v
				}
			}
			if rest > 0 {
				b.Segments = append(b.Segments, Segment{Name: "other", Value: rest, Hue: hueOf("other")})
			}
			if rest < 0 {
				// The names are pooled over the trials, the total is the
				// median trial's: the parts are scaled to it, in proportion.
				scale := k.SyscallsPerReq / (k.SyscallsPerReq - rest)
				for i := range b.Segments {
					b.Segments[i].Value *= scale
				}
			}
			if why := cs.Apart(); why != "" {
				b.Apart, b.Label = true, b.Label+"  "+why
				apart = append(apart, b)
				continue
			}
			rows = append(rows, b)
		}
		byValue := func(a, b HBar) int { return cmp.Compare(a.Value, b.Value) }
		slices.SortStableFunc(rows, byValue)
		slices.SortStableFunc(apart, byValue)
		if len(rows)+len(apart) > 0 {
			f.Panels = append(f.Panels, Panel{Title: "Syscalls per request, " + connsTitle(c), XLabel: "server syscalls per request (split by syscall)",
				HBars: append(rows, apart...)})
		}
	}
	return f
}

// SyscallFigure: syscalls per request by name, one stacked bar per model, and
// context switches per request (voluntary and involuntary stacked) below, at one
// concurrency. Names that make less than 2% of every model's syscalls go into
// "other".
func SyscallFigure(s *Summary, g Group, conns int) Figure {
	var cats []string
	var cells []CellSummary
	for _, m := range s.Spec.Models {
		if cs := s.Cell(g, m, conns); cs.ServerKernel != nil {
			name := m
			if why := cs.Apart(); why != "" {
				name += " (" + why + ")"
			}
			if IsPeer(m) {
				name += " (reference)"
			}
			if !cs.ServerKernel.HasSyscalls() {
				name += " (syscalls not counted)"
			}
			cats = append(cats, name)
			cells = append(cells, cs)
		}
	}
	name := fmt.Sprintf("syscalls-%s-c%d", g.Key(), conns)
	title := fmt.Sprintf("Syscalls and context switches per request, %s (%s)", plural(float64(conns), "connection"), g.String())
	if len(cells) == 0 {
		return Figure{Name: name, Title: title}
	}
	names := shownSyscalls(s, g, conns)
	sp := Panel{Title: fmt.Sprintf("Server syscalls per request, by syscall — %s, %s", plural(float64(conns), "connection"), g.String()),
		YLabel: "syscalls per request", Categories: cats, Stacked: true}
	for _, n := range append(names, "other") {
		bs := BarSet{Name: n, Hue: hueOf(n)}
		for _, cs := range cells {
			v := cs.ServerKernel.BySyscall[n]
			if n == "other" {
				v = cs.ServerKernel.SyscallsPerReq
				for _, m := range names {
					v -= cs.ServerKernel.BySyscall[m]
				}
				// The stack adds up to the median trial's total, the names
				// being pooled over trials: never below zero.
				v = max(v, 0)
			}
			bs.Bars = append(bs.Bars, Bar{Value: v, Missing: v <= 0})
		}
		sp.BarSets = append(sp.BarSets, bs)
	}
	cp := Panel{Title: "Server context switches per request", YLabel: "switches per request", Categories: cats, Stacked: true}
	vol, inv := BarSet{Name: "voluntary (blocked)", Hue: hueOf("voluntary")}, BarSet{Name: "involuntary (preempted)", Hue: hueOf("involuntary")}
	for _, cs := range cells {
		vol.Bars = append(vol.Bars, Bar{Value: cs.ServerKernel.VoluntaryPerReq, Missing: cs.ServerKernel.VoluntaryPerReq <= 0})
		inv.Bars = append(inv.Bars, Bar{Value: cs.ServerKernel.InvoluntaryPerReq, Missing: cs.ServerKernel.InvoluntaryPerReq <= 0})
	}
	cp.BarSets = []BarSet{vol, inv}
	return Figure{Name: name, Title: title, Panels: []Panel{sp, cp},
		Caption: "The kernel's own counts over each trial's window (BPF on the sys_enter and sched_switch tracepoints, for the server's whole process tree), divided by the requests of the window: each bar is the median trial's total, split by syscall as the trials' counts pooled. Exact, so a noisy machine does not blur them: these bars separate models the throughput plot cannot. A reference peer's bar is a C server's cost for the same work."}
}

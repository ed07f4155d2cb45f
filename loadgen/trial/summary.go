package trial

// The human summary of a trial's result, which loadgen prints on stdout.

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"concbench/internal/cpuset"
	"concbench/internal/proto"
	"concbench/internal/result"
	"concbench/loadgen"
)

// PrintSummary writes the human summary of r, in the manner of wrk's: what ran,
// latency percentiles, throughput, errors, the server's and the client's figures.
func PrintSummary(w io.Writer, r *result.Run) {
	c, ld := r.Config, r.Load
	wl := c.Workload
	target := "server at " + wl.Addr
	if c.Model != "" {
		target = fmt.Sprintf("%s at %s", c.Model, wl.Addr)
	}
	mode := "closed loop (latency from the actual send)"
	if ld.Mode == "open" {
		arr := "evenly spaced sends"
		if wl.Arrival == "exp" {
			arr = fmt.Sprintf("Poisson arrivals, seed %d", wl.Seed)
		}
		mode = fmt.Sprintf("open loop at %g req/s, %s (latency from the intended send: coordinated omission corrected)", wl.Rate, arr)
	}
	fmt.Fprintf(w, "loadgen: %s, %s, %d %s", target, describeRequest(wl), wl.Conns, connsNoun(wl))
	if wl.Pipeline > 1 {
		fmt.Fprintf(w, " × pipeline %d", wl.Pipeline)
	}
	if wl.Reconnect {
		fmt.Fprint(w, ", a new connection per request")
	}
	fmt.Fprintf(w, ", %v (+%v warm-up), %d event loops\n", wl.Duration, wl.Warmup, wl.Loops)
	fmt.Fprintf(w, "  %s\n", mode)
	if len(c.ClientCPUs) > 0 || len(c.ServerCPUs) > 0 {
		def := ""
		if c.PinningDefault {
			def = " (default split)"
		}
		fmt.Fprintf(w, "  pinning: server CPUs %s, loadgen CPUs %s%s\n", orNone(c.ServerCPUs), orNone(c.ClientCPUs), def)
	}
	cn := ld.Connect
	switch {
	case proto.IsDatagram(wl.Proto):
		fmt.Fprintf(w, "  flows: %d/%d UDP sockets connected to the server\n", cn.Established, cn.Target)
	case wl.Reconnect:
		fmt.Fprintf(w, "  connects: %d, latency p50 %s p99 %s max %s\n", cn.Latency.Count, us(cn.Latency.P50US), us(cn.Latency.P99US), us(cn.Latency.MaxUS))
	default:
		fmt.Fprintf(w, "  connect ramp: %d/%d connections in %s; connect latency p50 %s p99 %s max %s\n",
			cn.Established, cn.Target, secs(cn.RampSeconds), us(cn.Latency.P50US), us(cn.Latency.P99US), us(cn.Latency.MaxUS))
	}
	if st := ld.Steady; st != nil {
		printSteady(w, st, wl)
	}
	fmt.Fprintf(w, "\n  %-13s %9s %9s %9s %9s %9s %9s %9s\n", "Latency", "p50", "p90", "p99", "p99.9", "p99.99", "max", "mean")
	row := func(name string, p result.Percentiles) {
		fmt.Fprintf(w, "  %-13s %9s %9s %9s %9s %9s %9s %9s\n", name, us(p.P50US), us(p.P90US), us(p.P99US), us(p.P999US), us(p.P9999US), us(p.MaxUS), us(int64(p.MeanUS)))
	}
	if ld.Mode == "open" {
		row("corrected", ld.Latency)
		row("uncorrected", *ld.Uncorrected)
		row("send lag", *ld.SendLag)
	} else {
		row("closed loop", ld.Latency)
	}
	fmt.Fprintf(w, "\n  %d requests in %s: %.1f req/s", ld.Requests, secs(ld.Seconds), ld.Throughput)
	if size, ok := contentSize(wl); ok && size > 0 {
		fmt.Fprintf(w, " (%s/s of content)", mib(int64(ld.Throughput*float64(size))))
	}
	if ld.RateShortfall {
		fmt.Fprintf(w, "  — SHORT of the %g req/s asked", ld.TargetRate)
	}
	fmt.Fprintln(w)
	if d := ld.Datagrams; d != nil {
		printDatagrams(w, d, wl)
	}
	printOpenLoop(w, ld, r.Client.Busy)
	if ld.ErrorsTotal == 0 {
		fmt.Fprintln(w, "  errors: none")
	} else {
		kinds := make([]string, 0, len(ld.Errors))
		for k, n := range ld.Errors {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
		}
		slices.Sort(kinds)
		fmt.Fprintf(w, "  ERRORS: %d (%s)\n", ld.ErrorsTotal, strings.Join(kinds, ", "))
	}
	if id := ld.Idle; id != nil {
		printIdle(w, id)
	}
	if ld.InFlightAtEnd > 0 {
		fmt.Fprintf(w, "  in flight at the end (not counted): %d\n", ld.InFlightAtEnd)
	}
	if s := r.Server; s != nil {
		if s.External {
			fmt.Fprintf(w, "  server: pid %d (external: sampled, not started nor stopped by loadgen)\n", s.PID)
		}
		fmt.Fprintf(w, "  server: CPU %.2f cores (max %.2f), RSS %s, threads %d, processes %d, ctx switches %d voluntary / %d involuntary",
			s.CPUCoresMean, s.CPUCoresMax, mib(s.RSSMaxBytes), s.ThreadsMax, s.ProcsMax, s.VoluntaryCtxSwitches, s.InvoluntaryCtxSwitches)
		if s.CtxSwitchesLowerBound {
			fmt.Fprint(w, " (at least: threads came and went mid-window, and the kernel drops an exited thread's count)")
		}
		fmt.Fprintln(w)
		printKernel(w, "server", s.Kernel, s.KernelMissing, ld.Requests)
		if s.SamplingError != "" {
			fmt.Fprintf(w, "  server: SAMPLING FAILED: %s (the figures above are from the samples read; the server was not gone)\n", s.SamplingError)
		}
		switch c := s.Counters; {
		case c != nil && proto.IsDatagram(wl.Proto):
			printDatagramCounters(w, c)
		case c != nil:
			printCounters(w, c, s.RefusedWhy)
		}
		if s.Exit != nil {
			if s.Exit.Clean {
				fmt.Fprintln(w, "  server exit: clean (0 after SIGTERM)")
			} else {
				fmt.Fprintf(w, "  server exit: NOT CLEAN: %s\n", s.Exit.Error)
			}
		}
	}
	fmt.Fprintf(w, "  client: CPU %.2f cores of %d (%.0f%% busy); client_bound=%v\n", r.Client.CPUCores, r.Client.CPUs, 100*r.Client.Busy, r.ClientBound)
	printKernel(w, "client", r.Client.Kernel, r.Client.KernelMissing, ld.Requests)
	if r.ClientBound {
		fmt.Fprintln(w, "  WARNING: loadgen's CPUs were saturated: this throughput is the client's limit, not the server's")
	}
	if r.HistogramFile != "" {
		fmt.Fprintf(w, "  histogram: %s (beside the result)\n", r.HistogramFile)
	}
	printMerge(w, r)
}

// printDatagrams writes udp-echo's account of the window's datagrams.
func printDatagrams(w io.Writer, d *result.Datagrams, wl result.Workload) {
	fmt.Fprintf(w, "  datagrams sent in the window: %d; answered %d, lost %d (loss rate %.3f%%, unanswered after %v), late %d, duplicated %d, reordered %d, mismatched %d\n",
		d.Sent, d.Answered, d.Lost, 100*d.LossRate, wl.Timeout, d.Late, d.Duplicated, d.Reordered, d.Mismatched)
	if d.ClientDropped > 0 {
		fmt.Fprintf(w, "  LOADGEN DROPPED %d replies itself (its sockets' receive buffers were full): in the lost above, but the client's loss\n", d.ClientDropped)
	}
}

// connsNoun is what the workload's connections are called.
func connsNoun(wl result.Workload) string {
	if proto.IsDatagram(wl.Proto) {
		return "flows"
	}
	return "connections"
}

// printIdle writes the idle connections' figures: held, heartbeats, losses.
func printIdle(w io.Writer, id *result.Idle) {
	fmt.Fprintf(w, "  idle: %d connections (%d open after the ramp, %d at the end)", id.Conns, id.Established, id.OpenAtEnd)
	if id.HeartbeatSeconds > 0 {
		fmt.Fprintf(w, ", a heartbeat each every %gs: %d sent, %d answered (p50 %s, p99 %s), %d late, %d missed",
			id.HeartbeatSeconds, id.Sent, id.Answered, us(id.Latency.P50US), us(id.Latency.P99US), id.Late, id.Missed)
	} else {
		fmt.Fprint(w, ", silent")
	}
	fmt.Fprintln(w)
	if id.ErrorsTotal > 0 {
		kinds := make([]string, 0, len(id.Errors))
		for k, n := range id.Errors {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
		}
		slices.Sort(kinds)
		fmt.Fprintf(w, "  IDLE CONNECTIONS LOST: %d (%s)\n", id.ErrorsTotal, strings.Join(kinds, ", "))
	}
}

// printSteady says how the window opened: the steady-state gate.
func printSteady(w io.Writer, st *result.Steady, wl result.Workload) {
	conns := connsNoun(wl)
	one := strings.TrimSuffix(conns, "s")
	switch st.State {
	case result.SteadyOK:
		fmt.Fprintf(w, "  steady: every %s served before the window opened, %.2fs into the load", one, st.WaitSeconds)
	case result.SteadyCeiling:
		fmt.Fprintf(w, "  CEILING: the server served %d of %d %s (no more for %.1fs); the window opened %.2fs into the load and its figures are of those %d",
			st.ServedAtStart, wl.Conns, conns, st.SettleSeconds, st.WaitSeconds, st.ServedAtStart)
	case result.SteadyNot:
		fmt.Fprintf(w, "  NOT STEADY: %d of %d %s served after %.1fs and still growing: no window was measured\n", st.ServedAtStart, wl.Conns, conns, st.WaitSeconds)
		return
	case result.SteadyOff:
		fmt.Fprint(w, "  window: no steady-state gate (a run of a request count, or a connection per request)")
	}
	fmt.Fprintf(w, "; %s open at its start %d, at its end %d", conns, st.OpenAtStart, st.OpenAtEnd)
	if st.IdleInWindow > 0 {
		fmt.Fprintf(w, ", %d completed no request in it", st.IdleInWindow)
	}
	fmt.Fprintln(w)
}

// printKernel writes one side's kernel counts per request: syscalls (the three
// most made), context switches, user and system CPU.
func printKernel(w io.Writer, side string, k *result.Kernel, missing string, requests int64) {
	switch {
	case k == nil && missing != "":
		fmt.Fprintf(w, "  %s kernel counts: %s\n", side, missing)
		return
	case k == nil || requests == 0:
		return
	}
	per := func(n int64) float64 { return float64(n) / float64(requests) }
	sys := fmt.Sprintf("%.2f syscalls/req (%s)", per(k.SyscallsTotal), TopSyscalls(k, requests, 3))
	if k.SyscallsMissing != "" {
		sys = "syscalls " + k.SyscallsMissing
	}
	fmt.Fprintf(w, "  %s: %s, %.3f ctx switches/req (%.3f voluntary, %.3f involuntary), CPU %.2f µs user + %.2f µs system per request\n",
		side, sys, per(k.CtxSwitches), per(k.Voluntary), per(k.Involuntary),
		per(k.UserUS), per(k.SystemUS))
}

// TopSyscalls is "read 1.00, write 1.00, epoll_pwait 0.05": the n syscalls
// made most, per request ("other" among them when it is).
func TopSyscalls(k *result.Kernel, requests int64, n int) string {
	type sc struct {
		name  string
		count int64
	}
	var all []sc
	for name, c := range k.Syscalls {
		if c > 0 {
			all = append(all, sc{name, c})
		}
	}
	if k.SyscallsOther > 0 {
		all = append(all, sc{"other", k.SyscallsOther})
	}
	slices.SortFunc(all, func(a, b sc) int {
		if a.count != b.count {
			return cmp.Compare(b.count, a.count)
		}
		return strings.Compare(a.name, b.name)
	})
	parts := make([]string, 0, n)
	for _, s := range all[:min(n, len(all))] {
		parts = append(parts, fmt.Sprintf("%s %.2f", s.name, float64(s.count)/float64(max(requests, 1))))
	}
	return strings.Join(parts, ", ")
}

// printCounters writes the server's own counters: what it accepted, refused and
// closed, and why — the server's side of the client's errors.
func printCounters(w io.Writer, c *result.ServerCounters, refusedWhy string) {
	fmt.Fprintf(w, "  server counters: accepted %d, closed %d", c.Accepted, c.Closed)
	for _, f := range []struct {
		n    int64
		what string
	}{
		{c.IOErrors, "on I/O errors"}, {c.ProtoErrors, "on protocol errors"}, {c.IdleClosed, "idle"}, {c.OutputCapped, "owing too much output"},
	} {
		if f.n > 0 {
			fmt.Fprintf(w, ", %d %s", f.n, f.what)
		}
	}
	if c.AcceptPauses > 0 {
		fmt.Fprintf(w, "; accepting paused %d times (out of descriptors, or at its cap)", c.AcceptPauses)
	}
	fmt.Fprintln(w)
	if c.Refused > 0 {
		why := refusedWhy
		if why == "" {
			why = "the model gives no reason"
		}
		fmt.Fprintf(w, "  SERVER REFUSED %d connections (accepted and closed at once): %s\n", c.Refused, why)
	}
}

// printDatagramCounters writes a udp-echo server's own counters: what it
// received and sent, and what it dropped and why — the server's side of the
// client's losses.
func printDatagramCounters(w io.Writer, c *result.ServerCounters) {
	fmt.Fprintf(w, "  server counters: datagrams in %d, out %d; dropped: send buffer full %d, oversize %d, send error %d",
		c.DatagramsIn, c.DatagramsOut, c.DroppedSendFull, c.DroppedOversize, c.DroppedSendError)
	if n, ok := c.Gauges["rcvbuf_drops"]; ok {
		fmt.Fprintf(w, "; its receive buffer dropped %d before it read them", n)
	}
	fmt.Fprintln(w, " (the server's whole run)")
}

// describeRequest says what each request is, and for file and http how the reply
// is verified.
func describeRequest(wl result.Workload) string {
	var what string
	switch wl.Proto {
	case "file":
		what = "file " + wl.File
	case "http":
		what = "http GET " + wl.Path
	case proto.UDPEcho:
		return fmt.Sprintf("%s %d B datagrams, batch %d", wl.Proto, wl.Size, max(wl.Batch, 1))
	default:
		return fmt.Sprintf("%s %d B", wl.Proto, wl.Size)
	}
	if size, ok := contentSize(wl); ok {
		return fmt.Sprintf("%s (%d B, size and CRC32C checked)", what, size)
	}
	return what + " (not a standard file: framing and size checked, not content)"
}

// contentSize is the size of a standard file that wl asks for.
func contentSize(wl result.Workload) (int64, bool) {
	switch wl.Proto {
	case "file":
		return loadgen.StdSize("file", wl.File)
	case "http":
		return loadgen.StdSize("http", wl.Path)
	}
	return 0, false
}

func orNone(cpus []int) string {
	if len(cpus) == 0 {
		return "any"
	}
	return cpuset.Format(cpus)
}

// us formats microseconds with a unit that keeps 3 figures.
func us(v int64) string {
	d := time.Duration(v) * time.Microsecond
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", v)
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(v)/1e3)
	default:
		return fmt.Sprintf("%.2fs", float64(v)/1e6)
	}
}

func secs(s float64) string { return fmt.Sprintf("%.2fs", s) }

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// printOpenLoop writes an open-loop run's checks: the achieved-rate gate (its
// cause, and the client's CPU beside it), the arrivals' fit and the window's
// trend.
func printOpenLoop(w io.Writer, ld result.Load, clientBusy float64) {
	if ld.Mode != "open" {
		return
	}
	if ld.UnderRate {
		fmt.Fprintf(w, "  UNDER RATE: more than 10%% below the rate asked — %s; loadgen's CPUs %.0f%% busy\n", ld.UnderRateCause, 100*clientBusy)
	}
	if a := ld.Arrival; a != nil {
		fmt.Fprintf(w, "  arrivals (%s): %d send gaps, mean %.1f µs per event loop, CV %.2f", a.Process, a.Sample, a.MeanGapUS, a.CV)
		if a.Process == "exp" {
			verdict := "consistent with Poisson"
			if a.Distorted {
				verdict = "DISTORTED: not a Poisson process"
			}
			fmt.Fprintf(w, "; above the loop's %.0f µs resolution (%.1f%% of gaps below it, %.1f%% expected) Anderson–Darling %.2f (1%% critical %.3f): %s",
				a.ResolutionUS, 100*a.Below, 100*a.BelowExpected, a.AD, result.ADCritical, verdict)
		}
		fmt.Fprintln(w)
	}
	if st := ld.Stationarity; st != nil {
		switch {
		case !st.Tested:
			fmt.Fprintf(w, "  stationarity: not tested (%d entries of %.3fs in the window, fewer than 6)\n", st.Steps, st.StepSeconds)
		case st.Unstable:
			fmt.Fprintf(w, "  UNSTABLE: the latency kept rising through the window (median %.0f µs in its first third, %.0f µs in its last; p %.3f)\n", st.FirstP50US, st.LastP50US, st.P)
		default:
			fmt.Fprintf(w, "  stationarity: stable over %d entries of %.3fs (median %.0f µs in the first third, %.0f µs in the last; p %.3f)\n", st.Steps, st.StepSeconds, st.FirstP50US, st.LastP50US, st.P)
		}
	}
}

// PrintSearch writes a capacity search: every step, then the capacity.
func PrintSearch(w io.Writer, s *result.Search) {
	fmt.Fprintf(w, "\n  search %s (%s arrivals): calibrated at %.0f req/s closed loop; %d rounds of bisection to %.0f%% of it\n",
		s.SLO, s.Arrival, s.CalibratedRate, s.Rounds, 100*s.Tolerance)
	fmt.Fprintf(w, "  %5s %10s %10s %9s %9s %9s  %s\n", "round", "offered", "achieved", "p50", "p99", "server", "verdict")
	for _, st := range s.Steps {
		verdict := "pass"
		if !st.Pass {
			verdict = "fail: " + st.Why
		}
		fmt.Fprintf(w, "  %5d %10.0f %10.0f %9s %9s %8.2fc  %s\n", st.Round, st.Rate, st.Achieved, us(st.P50US), us(st.P99US), st.ServerCPU, verdict)
	}
	if len(s.Capacities) == 0 {
		fmt.Fprintln(w, "  capacity: not found (the search did not finish)")
		return
	}
	atLeast := ""
	if s.AtLeast {
		atLeast = " (at least: the objective held at the calibrated peak)"
	}
	fmt.Fprintf(w, "  capacity at %s: %.0f req/s [%.0f–%.0f] (median of %d rounds, their range: %.1f%% coverage)%s\n",
		s.SLO, s.Capacity, s.CapacityLo, s.CapacityHi, len(s.Capacities), 100*s.Level, atLeast)
}

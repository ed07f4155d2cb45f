package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/sys/unix"

	"concbench/internal/cpuset"
	"concbench/internal/envinfo"
	"concbench/internal/procstat"
	"concbench/internal/result"
	"concbench/loadgen"
)

// sampleEvery is the /proc sampling interval of the server's process tree.
const sampleEvery = 100 * time.Millisecond

// run does the whole run and writes the summary to stdout (and the files asked
// for). It returns the result, and errFailed (wrapped) if requests failed or the
// server did not exit cleanly.
func run(ctx context.Context, o options, stdout io.Writer) (*result.Run, error) {
	r := &result.Run{Schema: result.SchemaVersion, Started: time.Now()}
	r.Config.Model = o.model
	warn := func(format string, a ...any) {
		msg := fmt.Sprintf(format, a...)
		r.Warnings = append(r.Warnings, msg)
		if !o.quiet {
			fmt.Fprintln(os.Stderr, "loadgen: warning:", msg)
		}
	}
	info := func(format string, a ...any) {
		if !o.quiet {
			fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", a...)
		}
	}

	// CPU sets.
	avail, err := cpuset.Available()
	if err != nil {
		return nil, err
	}
	var serverCPUs, clientCPUs []int
	if o.serverCPUs != "" {
		if serverCPUs, err = cpuset.Parse(o.serverCPUs); err != nil {
			return nil, err
		}
	}
	if o.clientCPUs != "" {
		if clientCPUs, err = cpuset.Parse(o.clientCPUs); err != nil {
			return nil, err
		}
	}
	if o.serverPID != 0 && serverCPUs == nil {
		// An external server's CPUs are whatever it was started with: record them.
		if serverCPUs, err = cpuset.Allowed(o.serverPID); err != nil {
			return nil, fmt.Errorf("-server-pid %d: %w", o.serverPID, err)
		}
	} else if o.serverPID != 0 {
		if got, err := cpuset.Allowed(o.serverPID); err != nil || !slices.Equal(got, serverCPUs) {
			warn("server pid %d runs on CPUs %v, not the %v given by -server-cpus (%v): loadgen does not pin a server it did not start", o.serverPID, got, serverCPUs, err)
			if err == nil {
				serverCPUs = got
			}
		}
	}
	if o.model != "" && (serverCPUs == nil || clientCPUs == nil) {
		ds, dc, err := cpuset.Split(avail)
		if err != nil {
			return nil, err
		}
		if serverCPUs == nil && clientCPUs == nil {
			serverCPUs, clientCPUs = ds, dc
			r.Config.PinningDefault = true
		} else if serverCPUs == nil {
			serverCPUs = without(avail, clientCPUs)
		} else {
			clientCPUs = without(avail, serverCPUs)
		}
		if len(serverCPUs) == 0 || len(clientCPUs) == 0 {
			return nil, fmt.Errorf("CPU sets server %v, loadgen %v: each side needs at least one CPU", serverCPUs, clientCPUs)
		}
	}
	for _, c := range clientCPUs {
		if slices.Contains(serverCPUs, c) {
			warn("server CPUs %s and loadgen CPUs %s overlap: they compete for CPU", cpuset.Format(serverCPUs), cpuset.Format(clientCPUs))
			break
		}
	}
	if clientCPUs != nil {
		if err := cpuset.PinProcess(clientCPUs); err != nil {
			return nil, err
		}
		runtime.GOMAXPROCS(len(clientCPUs))
		o.w.CPUs = clientCPUs
	}
	r.Config.ServerCPUs, r.Config.ClientCPUs = serverCPUs, clientCPUs
	if o.model != "" {
		how := "set by -server-cpus/-client-cpus"
		if r.Config.PinningDefault {
			how = "default: the machine's CPUs split in half; set -server-cpus and -client-cpus to change"
		}
		info("pinning: server on CPUs %s, loadgen on CPUs %s (%s)", cpuset.Format(serverCPUs), cpuset.Format(clientCPUs), how)
	}

	// Descriptors, then preflight checks against -c.
	if err := raiseNoFile(uint64(o.w.Conns) + 256); err != nil {
		warn("%v", err)
	}
	for _, msg := range preflight(o.w) {
		warn("%s", msg)
	}

	// The server.
	var srv *serverProc
	if o.model != "" {
		bin, err := findServer(o.serverBin)
		if err != nil {
			return nil, err
		}
		addr := "127.0.0.1:0"
		if o.unix {
			dir, err := os.MkdirTemp("", "concbench-")
			if err != nil {
				return nil, err
			}
			defer os.RemoveAll(dir) // after the server is gone (defers run last-in first-out)
			addr = "unix:" + filepath.Join(dir, "server.sock")
		}
		args := append([]string{"-model", o.model, "-proto", o.w.Proto, "-addr", addr}, o.serverArgs...)
		r.Config.ServerBin, r.Config.ServerArgs = bin, args
		if srv, err = startServer(bin, args, serverCPUs, 10*time.Second); err != nil {
			return nil, err
		}
		defer func() {
			if srv.alive() {
				srv.kill()
			}
		}()
		o.w.Addr = srv.addr
		if got, err := cpuset.Allowed(srv.pid()); err != nil || !slices.Equal(got, serverCPUs) {
			warn("server pid %d runs on CPUs %v, not %v (%v)", srv.pid(), got, serverCPUs, err)
		}
		info("server %s pid %d listening on %s", o.model, srv.pid(), srv.addr)
	}
	r.Env = envinfo.Collect()

	// Sampling and the measured window's marks.
	var sampler *procstat.Sampler
	serverPID := o.serverPID
	if srv != nil {
		serverPID = srv.pid()
	}
	if serverPID != 0 {
		sampler = procstat.Start("/proc", serverPID, sampleEvery)
	}
	if o.serverPID != 0 {
		if clientCPUs == nil {
			warn("loadgen is not pinned (-client-cpus): it may share CPUs with the server pid %d", o.serverPID)
		}
		info("sampling external server pid %d on CPUs %s", o.serverPID, cpuset.Format(serverCPUs))
	}
	var (
		mu                   sync.Mutex
		mStart, mEnd         time.Time
		ruStart, ruEnd       float64
		ctxStart, ctxEnd     map[int]procstat.Switches
		haveCtxS, haveCtxEnd bool
	)
	mark := func(start bool, at time.Time) {
		cpu := selfCPUSeconds()
		var sw map[int]procstat.Switches
		have := false
		if sampler != nil {
			if t, ok := sampler.Latest(); ok {
				sw = procstat.ThreadSwitches("/proc", t.PIDs)
				have = len(sw) > 0
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if start {
			mStart, ruStart, ctxStart, haveCtxS = at, cpu, sw, have
		} else {
			mEnd, ruEnd, ctxEnd, haveCtxEnd = at, cpu, sw, have
		}
	}
	mode := "closed loop"
	if o.w.Rate > 0 {
		mode = fmt.Sprintf("open loop at %g req/s", o.w.Rate)
	}
	info("%d connections, %s, %v + %v warm-up…", o.w.Conns, mode, o.w.Duration, o.w.Warmup)
	// A server that exits mid-run ends the load there, instead of leaving loadgen
	// to count refused connects until -d is over.
	loadCtx, stopLoad := context.WithCancel(ctx)
	watched, serverDied := watchServer(loadCtx, srv, o.serverPID, stopLoad)
	out, err := loadgen.Run(loadCtx, loadgen.Config{Workload: o.w, OnMeasure: mark})
	stopLoad()
	died, diedAt := serverDied()
	if died {
		warn("the server (pid %d) exited %v into the run: loadgen stopped the load there, and the figures cover the run until then",
			serverPID, diedAt.Sub(watched).Round(time.Millisecond))
	}
	if err != nil {
		if sampler != nil {
			sampler.Stop()
		}
		return nil, err
	}
	r.Config.Workload = out.Workload
	r.Load = out.Load
	if enc, err := out.Latency.Encode(hdr.V2CompressedEncodingCookieBase); err == nil {
		r.Load.LatencyHist = string(enc)
	} else {
		warn("latency histogram not encoded in the result: %v", err)
	}
	r.Env.GOMAXPROCS = runtime.GOMAXPROCS(0)
	for _, w := range out.Warnings {
		warn("%s", w)
	}

	// The server's figures, then its exit.
	mu.Lock()
	window := mEnd.Sub(mStart)
	if window > 0 {
		cpuSec := ruEnd - ruStart
		ncpu := len(clientCPUs)
		if ncpu == 0 {
			ncpu = len(avail)
		}
		r.Client = result.Client{CPUs: ncpu, CPUSeconds: cpuSec, CPUCores: cpuSec / window.Seconds()}
		r.Client.Busy = r.Client.CPUCores / float64(ncpu)
		r.ClientBound = r.Client.Busy >= result.ClientBoundAt
	}
	if sampler != nil {
		samples, serr := sampler.Stop()
		r.Server = serverFigures(samples, serverPID, out.LoadStart, mStart, mEnd)
		r.Server.External = srv == nil
		if haveCtxS && haveCtxEnd {
			d, churn := procstat.SwitchesDelta(ctxStart, ctxEnd)
			r.Server.VoluntaryCtxSwitches = int64(d.Vol)
			r.Server.InvoluntaryCtxSwitches = int64(d.Invol)
			r.Server.CtxSwitchesLowerBound = churn > 0 || treeChanged(samples, mStart, mEnd)
		}
		if serr != nil {
			warn("server sampling ended early: %v", serr)
		}
		if srv != nil {
			r.Server.Exit = srv.stop(10 * time.Second)
			if !r.Server.Exit.Clean {
				warn("server exit: %s (code %d %s)", r.Server.Exit.Error, r.Server.Exit.Code, r.Server.Exit.Signal)
			}
		} else if died {
			// Not loadgen's child: how it ended is its parent's to know.
			r.Server.Exit = &result.Exit{Code: -1, Error: "the server exited during the run (started elsewhere: its exit status is unknown here)"}
		}
	}
	mu.Unlock()
	if r.ClientBound {
		warn("loadgen's CPUs were %.0f%% busy: the throughput is the client's limit, not the server's", 100*r.Client.Busy)
	}

	if o.out != "" {
		hgrm := strings.TrimSuffix(o.out, ".json") + ".hgrm"
		r.HistogramFile = hgrm
		printSummary(stdout, r)
		if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
			return r, err
		}
		if err := writeHgrm(hgrm, out); err != nil {
			return r, err
		}
		if err := result.WriteFile(o.out, r); err != nil {
			return r, err
		}
	} else {
		printSummary(stdout, r)
	}
	switch {
	case ctx.Err() != nil:
		return r, fmt.Errorf("%w: interrupted; the figures are partial", errFailed)
	case r.Load.ErrorsTotal > 0:
		return r, fmt.Errorf("%w: %d errors", errFailed, r.Load.ErrorsTotal)
	case r.Server != nil && r.Server.Exit != nil && !r.Server.Exit.Clean:
		return r, fmt.Errorf("%w: server exit: %s", errFailed, r.Server.Exit.Error)
	case died:
		return r, fmt.Errorf("%w: the server exited mid-run", errFailed)
	}
	return r, nil
}

// watchServer watches the server loadgen started (srv) or the external server
// pid, from now until ctx is done, and calls stop if it exits meanwhile. died, to
// be called once ctx is done, waits for the watch to end and says whether the
// server exited during it, and when.
func watchServer(ctx context.Context, srv *serverProc, pid int, stop func()) (since time.Time, died func() (bool, time.Time)) {
	since = time.Now()
	var (
		exited bool
		at     time.Time
	)
	done := make(chan struct{})
	record := func() { exited, at = true, time.Now(); stop() }
	switch {
	case srv != nil:
		go func() {
			defer close(done)
			select {
			case <-srv.exited:
				record()
			case <-ctx.Done():
			}
		}()
	case pid != 0:
		pidfd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			close(done) // cannot watch it: the sampler still notices it gone
			break
		}
		go func() {
			defer close(done)
			defer unix.Close(pidfd)
			fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
			for ctx.Err() == nil {
				if n, err := unix.Poll(fds, 100); err == nil && n > 0 {
					record()
					return
				}
			}
		}()
	default:
		close(done)
	}
	return since, func() (bool, time.Time) {
		<-done
		return exited, at
	}
}

// serverFigures turns /proc samples into the server's figures: samples over the
// whole run (T from the load start), summaries over the measured window.
func serverFigures(samples []procstat.Tree, pid int, loadStart, mStart, mEnd time.Time) *result.Server {
	s := &result.Server{PID: pid, Samples: []result.ProcSample{}}
	var first, last *procstat.Tree
	for i := range samples {
		t := &samples[i]
		ps := result.ProcSample{T: t.When.Sub(loadStart).Seconds(), RSSBytes: t.RSSBytes, Threads: t.Threads, Procs: t.Procs()}
		if i > 0 {
			prev := &samples[i-1]
			if dt := t.When.Sub(prev.When).Seconds(); dt > 0 && t.CPUTicks >= prev.CPUTicks {
				ps.CPUCores = procstat.CPUSeconds(t.CPUTicks-prev.CPUTicks) / dt
			}
		}
		s.Samples = append(s.Samples, ps)
		if mStart.IsZero() || t.When.Before(mStart) || (!mEnd.IsZero() && t.When.After(mEnd)) {
			continue
		}
		if first == nil {
			first = t
		} else {
			s.CPUCoresMax = max(s.CPUCoresMax, ps.CPUCores)
		}
		last = t
		s.RSSMaxBytes = max(s.RSSMaxBytes, t.RSSBytes)
		s.ThreadsMax = max(s.ThreadsMax, t.Threads)
		s.ProcsMax = max(s.ProcsMax, t.Procs())
	}
	if first != nil && last != first && last.CPUTicks >= first.CPUTicks {
		s.CPUCoresMean = procstat.CPUSeconds(last.CPUTicks-first.CPUTicks) / last.When.Sub(first.When).Seconds()
	}
	return s
}

// treeChanged says whether the server's processes or its thread count changed
// between samples taken in the window [mStart, mEnd].
func treeChanged(samples []procstat.Tree, mStart, mEnd time.Time) bool {
	var first *procstat.Tree
	for i := range samples {
		t := &samples[i]
		if t.When.Before(mStart) || t.When.After(mEnd) {
			continue
		}
		if first == nil {
			first = t
		} else if t.Threads != first.Threads || !slices.Equal(t.PIDs, first.PIDs) {
			return true
		}
	}
	return false
}

func writeHgrm(path string, out *loadgen.Outcome) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	// Values are recorded in µs; the .hgrm is written in milliseconds, the unit
	// HdrHistogram's plotters assume.
	if _, err := out.Latency.PercentilesPrint(f, 5, 1000); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func selfCPUSeconds() float64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func without(all, drop []int) []int {
	var out []int
	for _, c := range all {
		if !slices.Contains(drop, c) {
			out = append(out, c)
		}
	}
	return out
}

// raiseNoFile lifts RLIMIT_NOFILE to at least need (up to the hard limit, or to
// fs/nr_open when allowed to raise the hard limit too).
func raiseNoFile(need uint64) error {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return os.NewSyscallError("getrlimit", err)
	}
	if rl.Cur >= need {
		return nil
	}
	if rl.Max < need {
		nrOpen := readUint("/proc/sys/fs/nr_open")
		want := unix.Rlimit{Cur: max(need, min(nrOpen, need*2)), Max: max(need, min(nrOpen, need*2))}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &want); err == nil {
			return nil
		}
		rl.Cur = rl.Max
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &rl)
		return fmt.Errorf("descriptor limit %d is below the %d that -c needs, and cannot be raised", rl.Max, need)
	}
	rl.Cur = rl.Max
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return os.NewSyscallError("setrlimit", err)
	}
	return nil
}

// preflight warns about system limits that a workload of w's size would hit.
func preflight(w result.Workload) []string {
	var out []string
	if lo, hi, ok := envinfo.PortRange(); ok {
		ports := hi - lo + 1
		if uint64(w.Conns) > ports {
			out = append(out, fmt.Sprintf("-c %d is above the %d ephemeral ports (net/ipv4/ip_local_port_range %d-%d): connects will fail with connect_addr", w.Conns, ports, lo, hi))
		}
	}
	if s := readUint("/proc/sys/net/core/somaxconn"); s > 0 && uint64(min(w.Conns, w.ConnectInFlight)) > s {
		out = append(out, fmt.Sprintf("net/core/somaxconn is %d, below the %d connects in flight: the accept queue may overflow (SYN retries add 1 s to connect latency)", s, min(w.Conns, w.ConnectInFlight)))
	}
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil && rl.Cur < uint64(w.Conns)+64 {
		out = append(out, fmt.Sprintf("RLIMIT_NOFILE is %d, below -c %d plus a margin: connects will fail with connect_fd", rl.Cur, w.Conns))
	}
	return out
}

func readUint(path string) uint64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return v
}

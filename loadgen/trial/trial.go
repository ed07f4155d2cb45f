// Package trial is loadgen's measured trial as a library: what `loadgen` does
// between parsing its flags and exiting. Run splits the CPUs between the server
// and the load generator and pins both, raises the descriptor limit and warns of
// system limits the load would hit, starts the server it was asked to (or
// samples one it was pointed at), drives it with the load engine (package
// loadgen) while sampling the server's process tree from /proc, marks the
// measured window (client CPU, context switches per server thread), stops the
// server and checks its exit, and writes the result (JSON and .hgrm).
package trial

import (
	"cmp"
	"context"
	"errors"
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
	"concbench/internal/hostnoise"
	"concbench/internal/procstat"
	"concbench/internal/proto"
	"concbench/internal/result"
	"concbench/internal/supervise"
	"concbench/loadgen"
	"concbench/models"
)

// ErrFailed means the run completed but something failed: errors were counted,
// the server did not exit cleanly or exited mid-run, or the run was
// interrupted. The result was still returned, and written when asked.
var ErrFailed = errors.New("run failed")

// Options say what trial Run runs. Exactly one of Model and Workload.Addr is set.
type Options struct {
	// Workload is the load (its defaults are result.Workload's). With Model, Run
	// sets Addr to where the server it starts listens, and CPUs to ClientCPUs.
	Workload result.Workload
	// Model is the model of the server Run starts, pins, samples and stops:
	// `ServerBin -model Model -proto Workload.Proto -addr 127.0.0.1:0 ServerArgs…`
	// (for udp-echo, with -batch Workload.Batch before ServerArgs: loadgen's
	// batch is the server's unless ServerArgs give it another). A server that
	// exits 2 before listening refused to serve (a model that does not serve
	// the protocol, say): Run's error wraps ErrImpossible and quotes it.
	Model string
	// ServerBin is the server executable; "" means `server` beside this
	// executable (make build puts loadgen and server in bin/).
	ServerBin string
	// ServerArgs are more arguments for the server, after -model, -proto and -addr.
	ServerArgs []string
	// Unix, with Model, serves on a Unix domain socket in a temporary directory
	// (removed after the run) instead of loopback TCP.
	Unix bool
	// ServerPID, with Workload.Addr, is the pid of a server Run did not start: its
	// process tree is sampled as a started server's is, and it is not stopped. 0
	// means no server figures.
	ServerPID int
	// ServerCPUs are the server's CPUs. nil means: with Model, the first half of
	// this process's CPUs, or those ClientCPUs leaves; with ServerPID, the CPUs
	// that process may run on (Run does not pin a server it did not start).
	ServerCPUs []int
	// ClientCPUs are the CPUs this process is pinned to for the run; nil means the
	// second half (or those ServerCPUs leaves) with Model, and unpinned otherwise.
	ClientCPUs []int
	// Out, if set, is FILE.json: the result is written there and the merged latency
	// histogram to FILE.hgrm.
	Out string
	// Log receives progress lines and warnings ("loadgen: warning: …") as they
	// happen; nil discards them (the warnings are in the result all the same).
	Log io.Writer
	// ServerLog receives what a started server writes (its stderr, and its stdout
	// after the address line); nil discards it.
	ServerLog io.Writer
	// NoKernelCounts turns off the kernel's counts of syscalls, context switches
	// and CPU time (Server.Kernel, Client.Kernel; package kcount): the result then
	// says "not measured: disabled". For measuring what counting itself costs.
	NoKernelCounts bool
	// NoSyscallCounts counts switches and CPU time but not syscalls. Counting
	// syscalls sends every syscall of the machine, the client's and the
	// server's, through the kernel's tracing path (about +0.2 µs each here):
	// bench times its repetitions without it and counts syscalls in repetitions
	// of their own. The result says "not measured: …" for the syscalls alone.
	NoSyscallCounts bool
	// ServerCgroup, with ServerPID, is the cgroup v2 directory the external
	// server's whole tree runs in (bench starts its peers in one), so that its
	// kernel counts can be read; "" leaves an external server's not measured.
	ServerCgroup string
	// WindowAt and WindowWait are loadgen.Config's: a coordinator of agents
	// (package agents) decides when the measured window opens.
	WindowAt   func(ready time.Time) (time.Time, error)
	WindowWait time.Duration
}

// sampleEvery is the /proc sampling interval of the server's process tree.
const sampleEvery = 100 * time.Millisecond

// serverGrace is how long a started server has, after SIGTERM, to exit (and how
// long it has to say where it listens).
const serverGrace = 10 * time.Second

// Run runs the trial o describes. It returns the result, and ErrFailed (wrapped)
// if requests failed, the server did not exit cleanly or ctx was cancelled (the
// figures are then partial). Any other error means there is no result: the trial
// could not be set up, or the load engine could not start; or, with the result,
// that writing it failed.
func Run(ctx context.Context, o Options) (*result.Run, error) {
	switch {
	case (o.Model == "") == (o.Workload.Addr == ""):
		return nil, errors.New("give exactly one of a model and an address")
	case o.Model != "" && o.ServerPID != 0:
		return nil, errors.New("a server pid is for a server loadgen did not start; with a model loadgen samples its own")
	}
	r := &result.Run{Schema: result.SchemaVersion, Started: time.Now()}
	r.Config.Model = o.Model
	warn := func(format string, a ...any) {
		msg := fmt.Sprintf(format, a...)
		r.Warnings = append(r.Warnings, msg)
		if o.Log != nil {
			fmt.Fprintln(o.Log, "loadgen: warning:", msg)
		}
	}
	info := func(format string, a ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, "loadgen: "+format+"\n", a...)
		}
	}
	w := o.Workload
	if w.Proto == "" {
		w.Proto = "echo"
	}

	avail, err := cpuset.Available()
	if err != nil {
		return nil, err
	}
	serverCPUs, clientCPUs, err := splitCPUs(o, avail, warn)
	if err != nil {
		return nil, err
	}
	r.Config.PinningDefault = o.Model != "" && o.ServerCPUs == nil && o.ClientCPUs == nil
	if clientCPUs != nil {
		if err := cpuset.PinProcess(clientCPUs); err != nil {
			return nil, err
		}
		// A P per event loop and one more: a loop back from epoll_wait then
		// finds a P free even while another goroutine (the /proc sampler, the
		// gate) holds one, instead of waiting for it. Measured on one CPU, an
		// open loop at 2400 req/s to epoll-lt, sampler scanning all of /proc:
		// send lag p99 2.2–2.8 ms with one P, 1.4–1.75 ms with two (the rest
		// was the scan's own CPU; listing the tree from its cgroup, 0.09 ms).
		runtime.GOMAXPROCS(len(clientCPUs) + 1)
		w.CPUs = clientCPUs
	}
	r.Config.ServerCPUs, r.Config.ClientCPUs = serverCPUs, clientCPUs
	if o.Model != "" {
		how := "set by -server-cpus/-client-cpus"
		if r.Config.PinningDefault {
			how = "default: the machine's CPUs split in half; set -server-cpus and -client-cpus to change"
		}
		info("pinning: server on CPUs %s, loadgen on CPUs %s (%s)", cpuset.Format(serverCPUs), cpuset.Format(clientCPUs), how)
	}

	// Descriptors: a load that cannot have one a connection is refused before it
	// starts anything; then the limits that can only be warned of.
	own := ownFDs(len(serverCPUs) + len(clientCPUs))
	limit, err := raiseNoFile(uint64(w.Conns) + uint64(w.Idle) + own)
	if err != nil {
		return nil, err
	}
	if err := checkDescriptors(w, own, limit); err != nil {
		return nil, err
	}
	// Over loopback IPv4 the load engine spreads connections over source
	// addresses itself when one address's ports would not do.
	loopback := o.Model != "" && !o.Unix || strings.HasPrefix(w.Addr, "127.")
	for _, msg := range preflight(w, loopback) {
		warn("%s", msg)
	}

	// The kernel's counts: the cgroups exist before the server, which is born in
	// its own.
	kc := newKernelCounts(o)
	defer kc.release()

	var srv *supervise.Process
	statsPath := "" // the server's -stats file: its own counters
	if o.Model != "" {
		bin, err := findServer(o.ServerBin)
		if err != nil {
			return nil, err
		}
		dir, err := os.MkdirTemp("", "concbench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir) // after the server is gone (defers run last-in first-out)
		addr := "127.0.0.1:0"
		if o.Unix {
			addr = "unix:" + filepath.Join(dir, "server.sock")
		}
		args := []string{"-model", o.Model, "-proto", w.Proto, "-addr", addr}
		if proto.IsDatagram(w.Proto) {
			// loadgen's batch is the server's too, unless ServerArgs set it
			// (the last -batch given wins).
			args = append(args, "-batch", strconv.Itoa(max(w.Batch, loadgen.DefaultBatch)))
		}
		args = append(args, o.ServerArgs...)
		if statsPath = flagValue(o.ServerArgs, "stats"); statsPath == "" {
			statsPath = filepath.Join(dir, "stats.jsonl")
			args = append(args, "-stats", statsPath)
		}
		r.Config.ServerBin, r.Config.ServerArgs = bin, args
		if srv, w.Addr, err = startServer(ctx, bin, args, serverCPUs, o.ServerLog, kc.serverCgroupFD()); err != nil {
			return nil, err
		}
		defer func() {
			if srv.Alive() {
				srv.Kill()
			}
		}()
		if got, err := cpuset.Allowed(srv.PID()); err != nil || !slices.Equal(got, serverCPUs) {
			warn("server pid %d runs on CPUs %v, not %v (%v)", srv.PID(), got, serverCPUs, err)
		}
		info("server %s pid %d listening on %s", o.Model, srv.PID(), w.Addr)
	}
	r.Env = envinfo.Collect()

	// Sampling and the measured window's marks.
	var sampler *procstat.Sampler
	serverPID := o.ServerPID
	if srv != nil {
		serverPID = srv.PID()
	}
	if serverPID != 0 {
		sampler = procstat.StartIn("/proc", serverPID, kc.serverCgroupDir(), sampleEvery)
	}
	if o.ServerPID != 0 {
		if clientCPUs == nil {
			warn("loadgen is not pinned (-client-cpus): it may share CPUs with the server pid %d", o.ServerPID)
		}
		info("sampling external server pid %d on CPUs %s", o.ServerPID, cpuset.Format(serverCPUs))
	}
	kc.open(serverCPUs, clientCPUs)
	win := &window{sampler: sampler, kernel: kc}
	mode := "closed loop"
	if w.Rate > 0 {
		mode = fmt.Sprintf("open loop at %g req/s", w.Rate)
	}
	info("%d %s, %s, %v + %v warm-up…", w.Conns, connsNoun(w), mode, w.Duration, w.Warmup)
	// A server that exits mid-run ends the load there, instead of leaving loadgen
	// to count refused connects until the duration is over.
	loadCtx, stopLoad := context.WithCancel(ctx)
	watched, serverDied := watchServer(loadCtx, srv, o.ServerPID, stopLoad)
	before, noProbe := probe(serverCPUs, clientCPUs)
	out, err := loadgen.Run(loadCtx, loadgen.Config{Workload: w, OnMeasure: win.mark, WindowAt: o.WindowAt, WindowWait: o.WindowWait})
	stopLoad()
	after, _ := probe(serverCPUs, clientCPUs)
	kc.closeCounters()
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
	win.mu.Lock()
	if span := win.end.Sub(win.start); span > 0 {
		cpuSec := win.cpuEnd - win.cpuStart
		ncpu := len(clientCPUs)
		if ncpu == 0 {
			ncpu = len(avail)
		}
		r.Client = result.Client{CPUs: ncpu, CPUSeconds: cpuSec, CPUCores: cpuSec / span.Seconds()}
		r.Client.Busy = r.Client.CPUCores / float64(ncpu)
		r.ClientBound = r.Client.Busy >= result.ClientBoundAt
		if r.Load.UnderRate && r.ClientBound && !strings.HasPrefix(r.Load.UnderRateCause, "server: it served only") {
			// Connections waiting for replies a saturated client is slow to
			// read are the client's doing, whatever the parked count says.
			r.Load.UnderRateCause = fmt.Sprintf("client: loadgen's CPUs were %.0f%% busy (client-bound); %s", 100*r.Client.Busy, r.Load.UnderRateCause)
		}
	}
	r.Client.Kernel, r.Client.KernelMissing = kc.client.result()
	if sampler != nil {
		r.Server = win.server(sampler, kc, serverPID, out.LoadStart, len(serverCPUs), warn)
		r.Server.External = srv == nil
		if srv != nil {
			r.Server.Exit = srv.Stop(serverGrace)
			if !r.Server.Exit.Clean {
				warn("server exit: %s (code %d %s)", r.Server.Exit.Error, r.Server.Exit.Code, r.Server.Exit.Signal)
			}
			if lines, err := readStats(statsPath); err != nil {
				warn("the server's counters (%s): %v", statsPath, err)
			} else {
				serverCounters(r.Server, lines, win.start, win.end)
				r.Server.RefusedWhy = models.Refusal(o.Model)
			}
		} else if died {
			// Not loadgen's child: how it ended is its parent's to know.
			r.Server.Exit = &result.Exit{Code: -1, Error: "the server exited during the run (started elsewhere: its exit status is unknown here)"}
		}
	}
	win.mu.Unlock()
	r.Host = hostResult(win, serverCPUs, clientCPUs, before, after, noProbe, ownCPUSeconds(r))
	if r.Host.Disturbed {
		warn("disturbed: %s", r.Host.Why)
	}
	if err := kc.release(); err != nil {
		warn("the kernel counts' cgroups: %v", err)
	}
	if r.ClientBound {
		warn("loadgen's CPUs were %.0f%% busy: the throughput is the client's limit, not the server's", 100*r.Client.Busy)
	}

	if o.Out != "" {
		if err := write(o.Out, r, out); err != nil {
			return r, err
		}
	}
	switch st := r.Load.Steady; {
	case ctx.Err() != nil:
		return r, fmt.Errorf("%w: interrupted; the figures are partial", ErrFailed)
	case out.WindowErr != nil && !died:
		// A window decided elsewhere (-start-at, an agents' coordinator)
		// that did not open: the run measured nothing.
		return r, fmt.Errorf("%w: no window was measured: %v", ErrFailed, out.WindowErr)
	case st != nil && st.State == result.SteadyNot && !died:
		return r, fmt.Errorf("%w: not steady: %d of %d connections served after %.1fs, still growing", ErrFailed, st.ServedAtStart, w.Conns, st.WaitSeconds)
	case r.Load.ErrorsTotal > 0:
		return r, fmt.Errorf("%w: %d errors", ErrFailed, r.Load.ErrorsTotal)
	case r.Load.Idle != nil && r.Load.Idle.ErrorsTotal > 0:
		return r, fmt.Errorf("%w: %d idle connections lost", ErrFailed, r.Load.Idle.ErrorsTotal)
	case r.Server != nil && r.Server.Exit != nil && !r.Server.Exit.Clean:
		return r, fmt.Errorf("%w: server exit: %s", ErrFailed, r.Server.Exit.Error)
	case died:
		return r, fmt.Errorf("%w: the server exited mid-run", ErrFailed)
	}
	return r, nil
}

// server is the server's figures over the window (w.mu held): the samples
// sampler took (it is stopped here), its kernel counts, its threads' switches.
func (w *window) server(sampler *procstat.Sampler, kc *kernelCounts, pid int, loadStart time.Time, ncpu int, warn func(string, ...any)) *result.Server {
	samples, serr := sampler.Stop()
	s := serverFigures(samples, pid, loadStart, w.start, w.end, ncpu)
	s.Kernel, s.KernelMissing = kc.server.result()
	if w.switchesStart != nil && w.switchesEnd != nil {
		d, churn := procstat.SwitchesDelta(w.switchesStart, w.switchesEnd)
		s.VoluntaryCtxSwitches = int64(d.Vol)
		s.InvoluntaryCtxSwitches = int64(d.Invol)
		s.CtxSwitchesLowerBound = churn > 0 || treeChanged(samples, w.start, w.end)
	}
	switch {
	case errors.Is(serr, procstat.ErrGone):
		warn("server sampling ended early: %v", serr)
	case serr != nil:
		// Not a death: /proc could not be read (this process out of
		// descriptors, say), so some figures are missing.
		s.SamplingError = serr.Error()
		warn("server sampling failed: %v; the server's figures are from the samples that were read", serr)
	}
	return s
}

// splitCPUs decides the CPU sets of the server and of this process, as Options
// describe (warning through warn of what it cannot do as asked).
func splitCPUs(o Options, avail []int, warn func(string, ...any)) (server, client []int, err error) {
	server, client = o.ServerCPUs, o.ClientCPUs
	if o.ServerPID != 0 && server == nil {
		// An external server's CPUs are whatever it was started with: record them.
		if server, err = cpuset.Allowed(o.ServerPID); err != nil {
			return nil, nil, fmt.Errorf("-server-pid %d: %w", o.ServerPID, err)
		}
	} else if o.ServerPID != 0 {
		if got, err := cpuset.Allowed(o.ServerPID); err != nil || !slices.Equal(got, server) {
			warn("server pid %d runs on CPUs %v, not the %v given by -server-cpus (%v): loadgen does not pin a server it did not start", o.ServerPID, got, server, err)
			if err == nil {
				server = got
			}
		}
	}
	if o.Model != "" && (server == nil || client == nil) {
		ds, dc, err := cpuset.Split(avail)
		if err != nil {
			return nil, nil, err
		}
		switch {
		case server == nil && client == nil:
			server, client = ds, dc
		case server == nil:
			server = without(avail, client)
		default:
			client = without(avail, server)
		}
		if len(server) == 0 || len(client) == 0 {
			return nil, nil, fmt.Errorf("CPU sets server %v, loadgen %v: each side needs at least one CPU", server, client)
		}
	}
	for _, c := range client {
		if slices.Contains(server, c) {
			warn("server CPUs %s and loadgen CPUs %s overlap: they compete for CPU", cpuset.Format(server), cpuset.Format(client))
			break
		}
	}
	return server, client, nil
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

// window holds the marks of the measured window, which the load engine sets
// from its own goroutine (OnMeasure): when, this process's CPU time, and the
// context switches of every thread of the server's tree.
type window struct {
	sampler *procstat.Sampler // nil: no server to read switches of
	kernel  *kernelCounts

	mu                         sync.Mutex
	start, end                 time.Time
	cpuStart, cpuEnd           float64
	switchesStart, switchesEnd map[int]procstat.Switches // nil: none read
	// hostStart and hostEnd are the host's counters, read at hostStartAt and
	// hostEndAt (hostErr: why not read).
	hostStart, hostEnd     hostnoise.Snapshot
	hostStartAt, hostEndAt time.Time
	hostErr                error
}

func (w *window) mark(start bool, at time.Time) {
	// The kernel's counts are exact to the syscall: read them at the very edge
	// of the window — last at its start (the loops measure from right after
	// this returns), first at its end (the load has stopped by then).
	if !start {
		w.kernel.mark(false)
		w.markHost(false)
	} else {
		defer w.kernel.mark(true)
		defer w.markHost(true) // runs before the kernel's mark, after the scan below
	}
	cpu := selfCPUSeconds()
	var sw map[int]procstat.Switches
	if w.sampler != nil {
		if t, ok := w.sampler.Latest(); ok {
			if sw = procstat.ThreadSwitches("/proc", t.PIDs); len(sw) == 0 {
				sw = nil
			}
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if start {
		w.start, w.cpuStart, w.switchesStart = at, cpu, sw
	} else {
		w.end, w.cpuEnd, w.switchesEnd = at, cpu, sw
	}
}

// markHost reads the host's counters at an edge of the window, beside the
// kernel's counts: after the scan of the server's threads at the start (which
// takes seconds with a thousand processes, before the loops measure), first
// thing at the end.
func (w *window) markHost(start bool) {
	host, err := hostnoise.Read("/proc")
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if start {
		w.hostStart, w.hostStartAt = host, now
	} else {
		w.hostEnd, w.hostEndAt = host, now
	}
	w.hostErr = cmp.Or(w.hostErr, err)
}

// hostResult is the trial's result.Host: the window's host counters against
// own, the server's and loadgen's CPU time over the window (ownCPUSeconds), and
// the probes.
func hostResult(w *window, serverCPUs, clientCPUs []int, before, after *result.Probe, noProbe string, own float64) *result.Host {
	w.mu.Lock()
	defer w.mu.Unlock()
	span := w.hostEndAt.Sub(w.hostStartAt)
	h := &result.Host{}
	var missing []string
	switch {
	case w.hostErr != nil:
		missing = append(missing, "host counters: "+w.hostErr.Error())
	case span <= 0:
		missing = append(missing, "host counters: no window")
	default:
		if hf, err := hostFigures(w.hostStart, w.hostEnd, span, serverCPUs, clientCPUs, own); err != nil {
			missing = append(missing, "host counters: "+err.Error())
		} else {
			h = hf
		}
	}
	h.Before, h.After = before, after
	if before == nil || after == nil {
		missing = append(missing, "probe: "+noProbe)
	}
	h.Missing = strings.Join(missing, "; ")
	return h
}

// ownCPUSeconds is the server tree's and loadgen's CPU time over r's window:
// the kernel's counts of each side's cgroup where taken, else the /proc
// samples' and getrusage's.
func ownCPUSeconds(r *result.Run) float64 {
	var own float64
	if k := r.Client.Kernel; k != nil {
		own += float64(k.UserUS+k.SystemUS) / 1e6
	} else {
		own += r.Client.CPUSeconds
	}
	if r.Server != nil {
		if k := r.Server.Kernel; k != nil {
			own += float64(k.UserUS+k.SystemUS) / 1e6
		} else {
			own += r.Server.CPUCoresMean * r.Load.Seconds
		}
	}
	return own
}

func selfCPUSeconds() float64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// write writes r to path (FILE.json) and the latency histogram of out beside it
// (FILE.hgrm), which r names by its file name alone: the two stay a pair when
// moved together (bench moves each trial's from a temporary directory).
func write(path string, r *result.Run, out *loadgen.Outcome) error {
	hgrm := strings.TrimSuffix(path, ".json") + ".hgrm"
	r.HistogramFile = filepath.Base(hgrm)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := writeHgrm(hgrm, out); err != nil {
		return err
	}
	return result.WriteFile(path, r)
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

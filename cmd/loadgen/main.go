// Command loadgen drives a concbench server (or any echo, rpc, file, HTTP or
// UDP echo server) with load and reports throughput, latency percentiles,
// errors by kind, datagrams lost, duplicated and reordered (udp-echo), and the
// server's CPU, memory, threads and processes.
//
//	loadgen -model epoll-et -c 10000 -d 10s
//	loadgen -addr 127.0.0.1:7000 -proto rpc -c 64 -rate 50000 -o run.json
//	loadgen -model epoll-et -proto http -path /1m.bin -c 100
//	loadgen -addr 127.0.0.1:8080 -proto http -server-pid 4242 -c 100
//	loadgen -model epoll-et -proto udp-echo -c 100 -d 10s
//	loadgen -model epoll-et -proto udp-echo -c 100 -rate 50000 -batch 32
//	loadgen merge a.json b.json -o all.json
//
// With -model it starts the server itself (bin/server beside it), pins server and
// loadgen to disjoint CPUs, runs, stops the server with SIGTERM and checks its exit.
// With -addr and -server-pid it samples a server someone else started. It exits 1
// if any request failed or the server did not exit cleanly, 2 on a usage error.
//
// `loadgen merge` merges the results of several loadgen runs that drove one
// server at the same time into one (package merge; loadgen merge -h).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"concbench/internal/cpuset"
	"concbench/internal/proto"
	"concbench/internal/result"
	"concbench/loadgen"
	"concbench/loadgen/dgram"
	"concbench/loadgen/search"
	"concbench/loadgen/trial"
	"concbench/models"
)

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, " ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// commaList is a list flag given comma-separated, repeatable.
type commaList []string

func (s *commaList) String() string { return strings.Join(*s, ",") }
func (s *commaList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}

// cpuList is a CPU list flag in the kernel's cpulist form, "0-3,6".
type cpuList []int

func (c *cpuList) String() string { return cpuset.Format(*c) }
func (c *cpuList) Set(v string) error {
	cpus, err := cpuset.Parse(v)
	*c = cpus
	return err
}

// rateValue is -rate's value, requests per second; a bad one is refused saying
// what a rate is (the flag package's own error says only "parse error").
type rateValue float64

func (r *rateValue) String() string { return strconv.FormatFloat(float64(*r), 'g', -1, 64) }
func (r *rateValue) Set(s string) error {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return errors.New("want requests per second over all connections, a number ≥ 0 (e.g. 20000 or 2.5e4; 0 is closed loop)")
	}
	*r = rateValue(v)
	return nil
}

// options are the trial's, and how the command reports it.
type options struct {
	trial.Options
	quiet bool // no progress lines nor warnings on stderr (they are in the result)
	// cpuProfile is -cpuprofile's file: a Go CPU profile of loadgen's own run.
	cpuProfile string
	// A capacity search (-search): its objective, rounds and tolerance.
	slo          search.SLO
	searchRounds int
	searchTol    float64
	// -agents: the load from agents on other hosts (agent.go).
	agents agentOptions
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "merge" {
		os.Exit(runMerge(os.Args[2:], os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "agent" {
		os.Exit(runAgent(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	o, err := parse(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	if !o.quiet {
		o.Log = os.Stderr
	}
	o.ServerLog = os.Stderr
	os.Exit(run(o))
}

// run does what the flags ask for and returns the exit code; its deferred
// calls (the CPU profile's end among them) run before the process exits.
func run(o options) int {
	if o.cpuProfile != "" {
		stopProfile, err := startCPUProfile(o.cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			return 2
		}
		defer stopProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if len(o.agents.targets) > 0 {
		return runAgents(ctx, o, os.Stdout, os.Stderr)
	}
	var (
		r   *result.Run
		err error
	)
	if o.slo.Text != "" {
		r, err = runSearch(ctx, o)
	} else {
		r, err = trial.Run(ctx, o.Options)
	}
	if r != nil {
		trial.PrintSummary(os.Stdout, r)
		if r.Search != nil {
			trial.PrintSearch(os.Stdout, r.Search)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		if errors.Is(err, trial.ErrImpossible) {
			return 2 // refused before it started: as a bad flag is
		}
		return 1
	}
	return 0
}

func parse(args []string, stderr io.Writer) (o options, err error) {
	var serverArgs stringList
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Model, "model", "", "start `server -model NAME` and drive it (exclusive with -addr)")
	fs.StringVar(&o.Workload.Addr, "addr", "", "drive a server already listening at HOST:PORT, or at a Unix domain socket unix:PATH")
	fs.BoolVar(&o.Unix, "unix", false, "with -model: start the server on a Unix domain socket (unix:$TMPDIR/concbench-*/server.sock) instead of loopback TCP")
	fs.StringVar(&o.Workload.Proto, "proto", "echo", "protocol: echo | rpc | file | http | "+proto.UDPEcho)
	fs.IntVar(&o.Workload.Batch, "batch", loadgen.DefaultBatch, fmt.Sprintf("%s: the most datagrams one send or receive call of a flow's socket moves: 1 is sendmsg and read, more sendmmsg and recvmmsg (at most %d). -batch applies to both: with -model the server gets the same -batch; override the server's with -server-arg=-batch=N", proto.UDPEcho, loadgen.MaxBatch))
	fs.StringVar(&o.Workload.File, "file", "", "proto file: the `NAME` every request asks for, relative to the server's root (default "+loadgen.DefaultFile+"; standard files: "+strings.Join(loadgen.StdNames(), ", ")+")")
	fs.StringVar(&o.Workload.Path, "path", "", "proto http: the `PATH` every request GETs (default "+loadgen.DefaultPath+")")
	fs.IntVar(&o.ServerPID, "server-pid", 0, "with -addr: sample the CPU, memory, threads and processes of this `PID`'s process tree, a server loadgen did not start")
	fs.IntVar(&o.Workload.Conns, "c", 1, "concurrent connections ("+proto.UDPEcho+": flows, each a UDP socket connected to the server)")
	fs.IntVar(&o.Workload.Idle, "idle", 0, "`N` idle connections besides the -c active ones: held for the run, each sending a heartbeat every -heartbeat (reported apart from the active load)")
	fs.DurationVar(&o.Workload.Heartbeat, "heartbeat", 5*time.Second, "the idle connections' heartbeat interval, spread evenly over them (0: silent, only watched for the server's close)")
	fs.Var((*commaList)(&o.Workload.Src), "src", "source `ADDRS` to spread connections over, bound before connect: an address or a range A-B, comma-separated or repeated (default: the kernel's choice; to a loopback IPv4 server with more connections than one address's ports, 127.0.0.1-127.0.0.N as needed)")
	fs.DurationVar(&o.Workload.Duration, "d", 10*time.Second, "measured duration")
	fs.DurationVar(&o.Workload.Warmup, "warmup", 2*time.Second, "load before the measured window, not measured: at least this long, and until every connection has completed a request (the steady-state gate)")
	fs.DurationVar(&o.Workload.SteadyTimeout, "steady-timeout", loadgen.DefaultSteadyTimeout, "give up (the run fails, \"not steady\") if the connections served are still growing this long after the load started")
	fs.DurationVar(&o.Workload.SteadySettle, "steady-settle", loadgen.DefaultSteadySettle, "the connections served staying the same this long is the server's ceiling: the window opens with those (\"ceiling: N of c\")")
	fs.DurationVar(&o.Workload.TimelineStep, "timeline-step", 0, "width of one entry of the result's timeline, e.g. 100ms to see GC pauses or a pool growing (default 1s; in open loop 1/20 of -d, from 10ms to 1s, so that the window's stationarity can be tested)")
	fs.IntVar(&o.Workload.Size, "size", loadgen.DefaultSize, fmt.Sprintf("echo, rpc and %s: request payload bytes (%s: the whole datagram, its %d-byte header included, up to %d over IPv4, %d over IPv6)", proto.UDPEcho, proto.UDPEcho, dgram.HeaderLen, proto.MaxDatagramIPv4, proto.MaxDatagramIPv6))
	fs.StringVar(&o.Workload.Arrival, "arrival", "", "open loop's arrivals: fixed (each connection sends every c/rate s, the connections' phases spread evenly) or exp (each connection a Poisson process of rate/c: independent exponential gaps, so the server sees a Poisson process of the whole rate, as from many independent users; default fixed)")
	fs.Uint64Var(&o.Workload.Seed, "seed", 0, "with -arrival exp: the seed of the gaps (0: chosen at start and recorded in the result)")
	slo := fs.String("search", "", "find the capacity at a latency objective, e.g. 'p99<=1ms' (p50, p90, p99, p99.9, p99.99): a closed-loop calibration, then -search-rounds bisections of open-loop steps of -d each (after -warmup) between 0 and the calibrated peak; a step passes within the bound, without errors, not under rate nor unstable. The result is the calibration's, with every step and the capacity")
	fs.IntVar(&o.searchRounds, "search-rounds", search.DefaultRounds, "with -search: independent bisections; the capacity is their median, their range its interval")
	fs.Float64Var(&o.searchTol, "search-tol", search.DefaultTolerance, "with -search: a bisection stops when its bracket is narrower than this fraction of the calibrated peak")
	fs.Var((*rateValue)(&o.Workload.Rate), "rate", "open loop: total requests/s on a schedule, latency from the intended send time (0: closed loop)")
	fs.IntVar(&o.Workload.Pipeline, "pipeline", 1, "requests outstanding per connection ("+proto.UDPEcho+": datagrams outstanding per flow, closed loop only)")
	fs.BoolVar(&o.Workload.Reconnect, "reconnect", false, "a new connection per request: connect, request, reply, close")
	fs.Int64Var(&o.Workload.Requests, "n", 0, "stop after this many requests in total (closed loop; 0: no limit)")
	fs.IntVar(&o.Workload.Loops, "loops", 0, "event loops (0: one per client CPU)")
	fs.IntVar(&o.Workload.ConnectInFlight, "connect-inflight", loadgen.DefaultConnectInFlight, "connects in flight during the ramp")
	fs.DurationVar(&o.Workload.Timeout, "timeout", loadgen.DefaultTimeout, "a reply later than this is a timeout error ("+proto.UDPEcho+": the datagram is lost, not an error; its slot is freed)")
	fs.DurationVar(&o.Workload.ConnectTimeout, "connect-timeout", loadgen.DefaultTimeout, "a connect longer than this is a connect_timeout error")
	fs.StringVar(&o.Out, "o", "", "write the result as JSON to `FILE.json`, and the latency histogram to FILE.hgrm")
	fs.StringVar(&o.ServerBin, "server-bin", "", "server executable (default: `server` beside loadgen)")
	fs.Var(&serverArgs, "server-arg", "pass one more argument to the server, e.g. -server-arg=-work=sleep:1ms (repeatable; arguments after -- are passed too)")
	fs.Var((*cpuList)(&o.ServerCPUs), "server-cpus", "`CPUS` for the server, e.g. 0-1 (default: first half of this process's CPUs)")
	fs.Var((*cpuList)(&o.ClientCPUs), "client-cpus", "`CPUS` for loadgen (default: the second half with -model; unpinned with -addr)")
	fs.BoolVar(&o.quiet, "q", false, "no progress lines on stderr")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a Go CPU profile of loadgen itself to `FILE` (go tool pprof; make pgo merges such profiles into cmd/loadgen/default.pgo, which go build optimizes loadgen with)")
	kernel := fs.Bool("kernel-counts", true, "count the server's and loadgen's syscalls (by name), context switches and user/system CPU over the window with the kernel's own counters (BPF programs on the sys_enter and sched_switch raw tracepoints, for a cgroup v2 per side; needs root, or CAP_BPF and CAP_PERFMON); false to measure without them")
	countSyscalls := fs.Bool("count-syscalls", true, "with -kernel-counts: count syscalls by name too. Their counter sends every syscall of the machine through the kernel's tracing path (about +0.2 µs each, the client's as well as the server's); false counts only switches and CPU, at no cost to syscalls (bench times with false and counts syscalls in repetitions of their own)")
	fs.StringVar(&o.ServerCgroup, "server-cgroup", "", "with -server-pid: the cgroup v2 `DIR` the server's tree runs in, so that its kernel counts can be read")
	addAgentFlags(fs, &o.agents)
	var at time.Time
	fs.Var(startAtValue{&at}, "start-at", "open the measured window at this instant by this host's clock — `TIME`, RFC 3339 (2026-12-04T18:00:00Z) or Unix seconds — after connecting, the steady-state gate and -warmup, loading meanwhile: several loadgens started by other means (a batch scheduler, a Kubernetes Indexed Job: deploy/) then measure one window, for loadgen merge; fails if not ready by then")
	fs.Usage = func() { usage(fs) }
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.ServerArgs = append(serverArgs, fs.Args()...)
	o.NoKernelCounts = !*kernel
	o.NoSyscallCounts = !*countSyscalls
	if *slo != "" {
		if o.slo, err = search.ParseSLO(*slo); err != nil {
			return o, fmt.Errorf("-search: %w", err)
		}
		switch {
		case o.Workload.Rate > 0:
			return o, errors.New("-search finds the rate itself: not with -rate")
		case o.searchRounds < 1 || o.searchTol <= 0 || o.searchTol >= 1:
			return o, errors.New("-search-rounds must be at least 1 and -search-tol within (0, 1)")
		case o.Workload.Reconnect:
			return o, errors.New("-search is for persistent connections: not with -reconnect")
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := checkAgents(o, set); err != nil {
		return o, err
	}
	if set["start-at"] {
		switch {
		case len(o.agents.targets) > 0:
			return o, errors.New("-start-at is for loadgens started by other means: with -agents the coordinator starts the window")
		case o.slo.Text != "":
			return o, errors.New("-start-at with -search: not supported (a search is many windows)")
		case o.Workload.Requests > 0 || o.Workload.Reconnect:
			return o, errors.New("-start-at needs the steady-state gate: not with -n or -reconnect")
		}
		if err := startAt(&o, at); err != nil {
			return o, err
		}
	}
	files := o.Workload.Proto == "file" || o.Workload.Proto == "http"
	datagrams := proto.IsDatagram(o.Workload.Proto)
	switch {
	case datagrams && o.Unix:
		return o, fmt.Errorf("-unix: %s runs over UDP (loopback by default), not a Unix domain socket", proto.UDPEcho)
	case !datagrams && set["batch"]:
		return o, fmt.Errorf("-batch is for -proto %s (with -proto %s)", proto.UDPEcho, o.Workload.Proto)
	}
	if datagrams && !set["heartbeat"] {
		o.Workload.Heartbeat = 0 // no idle connections to beat: -heartbeat given is refused
	}
	if !datagrams {
		o.Workload.Batch = 0
	}
	switch {
	case files && set["size"]:
		return o, fmt.Errorf("-size is for echo, rpc and udp-echo: a %s request asks for a name (-file NAME for file, -path /PATH for http)", o.Workload.Proto)
	case o.Workload.File != "" && o.Workload.Proto != "file":
		return o, fmt.Errorf("-file is for -proto file (with -proto %s)", o.Workload.Proto)
	case o.Workload.Path != "" && o.Workload.Proto != "http":
		return o, fmt.Errorf("-path is for -proto http (with -proto %s)", o.Workload.Proto)
	}
	if files {
		o.Workload.Size = 0
	}
	switch {
	case (o.Model == "") == (o.Workload.Addr == ""):
		return o, errors.New("give exactly one of -model NAME and -addr HOST:PORT")
	case o.Model == "" && o.Unix:
		return o, errors.New("-unix is for -model; with -addr, give unix:PATH")
	case o.Model == "" && len(o.ServerArgs) > 0:
		return o, fmt.Errorf("server arguments %q without -model", o.ServerArgs)
	case o.Workload.Conns < 1 || (!files && o.Workload.Size < 1) || o.Workload.Pipeline < 1 || o.Workload.Duration <= 0:
		return o, errors.New("-c, -size, -pipeline and -d must be positive")
	case o.ServerPID != 0 && o.Model != "":
		return o, errors.New("-server-pid is for a server loadgen did not start (-addr); with -model loadgen samples its own")
	case o.ServerPID < 0 || o.ServerPID == os.Getpid():
		return o, fmt.Errorf("-server-pid %d: want the pid of the server process", o.ServerPID)
	}
	if o.ServerPID != 0 && o.agents.serverHost == "" { // on the server's host, the sampler looks
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/stat", o.ServerPID)); err != nil {
			return o, fmt.Errorf("-server-pid %d: no such process (%v)", o.ServerPID, err)
		}
	}
	if o.Model != "" {
		// Same build as the server: refuse an unknown model before starting anything.
		if _, err := models.New(o.Model); err != nil {
			return o, err
		}
		// The server would refuse it too (exit 2), saying the same.
		if why := models.DatagramRefusal(o.Model); datagrams && why != "" {
			return o, fmt.Errorf("-model %s does not serve -proto %s: %s (models that do: %s)", o.Model, o.Workload.Proto, why, strings.Join(models.DatagramModels(), ", "))
		}
	}
	probe := o.Workload
	if probe.Addr == "" {
		probe.Addr = "127.0.0.1:1"
	}
	if o.slo.Text != "" && probe.Arrival != "" {
		probe.Rate = 1 // the steps' arrival process, checked as an open loop's
	}
	w, err := loadgen.Resolve(probe)
	if err != nil {
		return o, err
	}
	// A server started without -root serves only the standard files: another name
	// could only fail.
	if files && o.Model != "" && !hasRoot(o.ServerArgs) {
		name, flagName := w.File, "-file"
		if w.Proto == "http" {
			name, flagName = w.Path, "-path"
		}
		if !loadgen.IsStd(w.Proto, name) {
			prefix := ""
			if w.Proto == "http" {
				prefix = "/"
			}
			return o, fmt.Errorf("%s %s: the server -model starts serves the standard files only: %s%s (or give it -server-arg=-root=DIR)",
				flagName, name, prefix, strings.Join(loadgen.StdNames(), ", "+prefix))
		}
	}
	return o, nil
}

// runSearch runs a capacity search: the calibration is a closed-loop trial of
// the workload as given (its result, written to -o, is the search's, with the
// steps added), each step an open-loop trial at a rate, not written. Neither
// counts syscalls (their times are what is judged), both count switches and
// CPU. A step whose requests
// failed is judged (it fails the objective); one that could not run ends the
// search.
func runSearch(ctx context.Context, o options) (*result.Run, error) {
	cal := o.Options
	cal.Workload.Arrival, cal.Workload.Seed = "", 0
	// Timed like the steps it is the peak of: switches and CPU counted, not
	// syscalls (whose counter would slow it).
	cal.NoSyscallCounts = true
	arrival := o.Workload.Arrival
	if arrival == "" {
		arrival = loadgen.ArrivalFixed
	}
	var calRun *result.Run
	s := search.Searcher{SLO: o.slo, Arrival: arrival, Rounds: o.searchRounds, Tolerance: o.searchTol,
		Calibrate: func(ctx context.Context) (float64, error) {
			r, err := trial.Run(ctx, cal)
			calRun = r
			if err != nil {
				return 0, err
			}
			if o.Log != nil {
				fmt.Fprintf(o.Log, "loadgen: search %s: calibrated at %.0f req/s (closed loop, %d connections)\n", o.slo.Text, r.Load.Throughput, r.Config.Workload.Conns)
			}
			return r.Load.Throughput, nil
		},
		Step: func(ctx context.Context, round int, rate float64) (result.SearchStep, error) {
			st := o.Options
			st.Workload.Rate, st.Workload.Arrival = rate, arrival
			// The calibration pinned this process: each step keeps its CPUs.
			st.ServerCPUs, st.ClientCPUs = calRun.Config.ServerCPUs, calRun.Config.ClientCPUs
			st.Out, st.Log, st.NoSyscallCounts = "", nil, true
			r, err := trial.Run(ctx, st)
			if ctx.Err() != nil {
				return result.SearchStep{}, ctx.Err()
			}
			if r == nil || err != nil && !errors.Is(err, trial.ErrFailed) {
				return result.SearchStep{}, err
			}
			return o.slo.Judge(round, rate, r), nil
		},
	}
	if o.Log != nil {
		s.Log = func(st result.SearchStep) {
			verdict := "pass"
			if !st.Pass {
				verdict = "fail: " + st.Why
			}
			fmt.Fprintf(o.Log, "loadgen: search round %d: %.0f req/s offered, %.0f achieved, p%g %d µs: %s\n", st.Round, st.Rate, st.Achieved, o.slo.Percentile, st.LatencyUS, verdict)
		}
	}
	res, err := s.Run(ctx)
	if calRun == nil {
		return nil, err
	}
	calRun.Search = res
	if o.Out != "" {
		if werr := result.WriteFile(o.Out, calRun); werr != nil && err == nil {
			err = werr
		}
	}
	return calRun, err
}

// hasRoot reports whether server arguments set the server's -root.
func hasRoot(args []string) bool {
	for _, a := range args {
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if a == "root" || strings.HasPrefix(a, "root=") {
			return true
		}
	}
	return false
}

func usage(fs *flag.FlagSet) {
	fmt.Fprint(fs.Output(), `usage: loadgen (-model NAME [-unix] | -addr HOST:PORT|unix:PATH [-server-pid PID]) [-c N] [-d 10s] [flags] [-- SERVER-ARGS]
       loadgen -addr HOST:PORT -agents USER@HOST,USER@HOST[,…] [-agent-bin FILE] [flags]
       loadgen merge A.json B.json [C.json …] [-o ALL.json]   (see loadgen merge -h)

Drives a server with N connections, verifies every reply, and reports throughput,
latency percentiles (HdrHistogram), errors by kind, and (with -model, or -addr with
-server-pid) the server's CPU, memory, threads and processes sampled from /proc.

Protocols (-proto):
  echo  -size bytes of lowercase letters; the reply is them uppercased
  rpc   the same in frames: 4-byte big-endian length, then the payload
  file  one frame naming -file NAME; the reply is a frame "OK <size>", the content
        in frames of at most 64 KiB, and an empty frame (or one frame "ERR <reason>")
  http  GET -path /PATH over HTTP/1.1 keep-alive; the response by Content-Length
  udp-echo  datagrams of -size bytes (32 to 65507 over IPv4), each carrying its
        flow, sequence number and send time in a 32-byte header; the reply is
        the datagram uppercased. -c is the flows, each a UDP socket connected to
        the server; -batch N moves up to N datagrams a call (sendmmsg/recvmmsg;
        with -model the server gets the same -batch)
For file and http, -size does not apply (giving it is an error). The standard
files, which a concbench server started without -root serves, are
  `+strings.Join(loadgen.StdNames(), ", ")+`
and their replies are verified by size and CRC32C; any other file by its framing
and a size consistent with the one announced.
A wrong size or checksum is a mismatch error, an ERR frame a server_error, an
HTTP status other than 200 an http_status error (the connection is then closed).
Latency runs to the last byte of the reply. With -reconnect, http asks
"Connection: close" and the server closes after the response; echo, rpc and file
half-close after the request instead.

Closed loop by default: each connection keeps -pipeline requests outstanding and
latency is from the actual send. With -rate, open loop: sends follow a schedule
and latency is from the intended send time (coordinated omission corrected); the
uncorrected latency and the send lag are reported beside it.

udp-echo: a datagram unanswered after -timeout is lost, not an error (in closed
loop its slot is freed and the flow goes on; an open loop's flows send on their
schedule whatever is outstanding); a reply seen twice is duplicated, one older
than a reply already seen on its flow reordered, one with a wrong byte a
mismatch (an error). The counts are of the datagrams sent in the window, each
followed to its fate: when the window closes loadgen stops sending and waits
up to -timeout for the replies still owed. Every datagram is verified byte for
byte. No -reconnect, -idle, -heartbeat, -unix or unix:PATH with it.

With -model, loadgen starts the server itself, pins it and loadgen to disjoint
CPUs (default: the first half of the CPUs for the server), and passes it
-proto, -server-arg values and everything after --. For file and http the server
then serves the standard files.

With -addr and -server-pid PID, loadgen samples the process tree of PID (a
server it did not start: a C peer, nginx's master with its workers) as it would
its own, and records the CPUs PID may run on; it does not stop it.

With -agents, the load comes from loadgen agents on those hosts, started over
ssh (loadgen agent, on the host's PATH or copied with -agent-bin), each with its
share of -c, -idle, -n and -rate. Each host's clock is read over its session;
every agent connects, passes the steady-state gate and -warmup, and opens its
window at one instant the coordinator picks; their results are merged exactly
(as loadgen merge does) and printed with a line per agent and the clocks. With
-server-pid the server is sampled here over that window, or by an agent on
-server-host. -start-at TIME instead opens this loadgen's window at an instant
by the host's clock, for loadgens started by other means and merged later.

Examples:
  loadgen -model epoll-et -c 10000 -d 10s
  loadgen -model poll -proto rpc -c 50 -rate 20000 -o results/poll.json -- -work=cpu:20us
  loadgen -model fork -reconnect -c 8 -d 5s
  loadgen -addr 127.0.0.1:7000 -c 100 -pipeline 4
  loadgen -model epoll-et -unix -c 100 -d 5s      # over a Unix domain socket
  loadgen -addr unix:/tmp/concbench.sock -c 100
  loadgen -model epoll-et -proto http -path /index.html -c 100 -d 5s
  loadgen -model epoll-et -proto http -path /1m.bin -c 100 -pipeline 2
  loadgen -model epoll-et -proto file -file 1m.bin -c 10 -d 5s
  loadgen -model thread -proto file -file 16k.bin -c 50 -reconnect
  loadgen -addr 127.0.0.1:8080 -proto http -path /64k.bin -server-pid 4242 -client-cpus 1 -c 100
  loadgen -model epoll-et -proto udp-echo -c 100 -d 10s
  loadgen -model epoll-et -proto udp-echo -c 100 -rate 50000 -d 10s
  loadgen -model multireactor -proto udp-echo -c 100 -pipeline 32 -batch 32
  loadgen -model epoll-et -proto udp-echo -size 60000 -c 10 -server-arg=-batch=1
  loadgen -addr 198.18.0.1:7000 -agents root@198.18.1.2,root@198.18.2.2 -c 1000 -d 10s
  loadgen -addr 10.0.0.1:7000 -agents @hosts.txt -agent-bin bin/loadgen -ssh-identity ~/.ssh/bench -c 5000 -rate 200000 -o all.json
  loadgen -addr 10.0.0.1:7000 -c 500 -d 30s -start-at 2026-12-04T18:00:00Z -o a.json

Flags:
`)
	fs.PrintDefaults()
}

// startCPUProfile starts a CPU profile of this process into path; the function
// it returns stops it and closes the file.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen: -cpuprofile:", err)
		}
	}, nil
}

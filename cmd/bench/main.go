// Command bench runs the comparison matrix — every model under a sweep of
// concurrency, protocols, work and connection modes, repeated and interleaved —
// by driving bin/loadgen once per trial, and writes REPORT.md, CSV tables and PNG
// plots from the results.
//
//	bench                          the quick preset (what `make bench` runs)
//	bench -preset full             everything, hours
//	bench -preset http             the event loops against nginx over HTTP/1.1
//	bench -models epoll-et,poll -c 10,1000 -repeat 5 -d 5s -out results/mine
//	bench -models epoll-et,peer:cepoll -c 10,100 -repeat 2 -d 1s -out /tmp/peerrun
//	bench report -in results/quick redraw the report and plots from saved data
//
// A model named peer:NAME is a reference server (peer:cepoll, peer:nginx) that
// bench starts itself, pinned like a model's server, and drives with loadgen.
//
// A run is resumable: every finished trial is saved at once, and rerunning with
// the same -out skips them. It exits 1 on an error or interruption, 2 on a usage
// error. Failed trials are recorded in the report, not fatal. A file of the run
// directory that is damaged (cut short, not JSON, another schema or another
// trial's) is named in a warning and its trial counts as not run: the report
// leaves it out, and the next run runs it again.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"concbench/bench"
	"concbench/internal/proto"
	"concbench/models"
)

type options struct {
	spec      bench.Spec
	out       string
	plots     string
	loadgen   string
	peers     bench.PeerOptions
	calibrate bool
	report    bool          // the report subcommand: redraw only
	agents    *bench.Agents // -agents: the load from other hosts
}

func main() {
	o, err := parse(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	if len(args) > 0 && args[0] == "report" {
		fs := flag.NewFlagSet("bench report", flag.ContinueOnError)
		fs.SetOutput(stderr)
		fs.StringVar(&o.out, "in", "results/quick", "the run directory to report on")
		fs.StringVar(&o.plots, "plots", "", "where the PNGs go (default: plots/NAME for -in results/NAME, else DIR/plots)")
		fs.Usage = func() {
			fmt.Fprint(fs.Output(), "usage: bench report [-in DIR] [-plots DIR]\n\nRedraws REPORT.md, the CSV tables and the plots of a run from its saved data; runs nothing.\n\n")
			fs.PrintDefaults()
		}
		if err := fs.Parse(args[1:]); err != nil {
			return o, err
		}
		if fs.NArg() > 0 {
			return o, fmt.Errorf("unexpected arguments %q", fs.Args())
		}
		o.report = true
		o.plots = plotsDir(o.out, o.plots)
		return o, nil
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	preset := fs.String("preset", "quick", strings.Join(bench.PresetNames(), " | ")+": the matrix the other flags refine")
	modelsFlag := fs.String("models", "", "models and peers to compare, comma-separated; all is every registered model, peer:cepoll, peer:uring, peer:libevent and peer:nginx are reference servers (default: the preset's)")
	conns := fs.String("c", "", "concurrency sweep, e.g. 1,10,100,1000 (default: the preset's)")
	idles := fs.String("idle", "", "idle connections held beside each cell's busy ones, swept, e.g. 0,1000,5000,max (max: the most the descriptor limit allows, up to 100000; default: the preset's)")
	heartbeat := fs.Duration("heartbeat", 0, "the idle connections' heartbeat interval (default: loadgen's, 5s)")
	protos := fs.String("proto", "", "protocols: "+strings.Join(bench.Protocols, ",")+" (default: the preset's)")
	batches := fs.String("batch", "", fmt.Sprintf("udp-echo: datagrams per send or receive call, of loadgen and the server, swept (a group each), e.g. 1,32: 1 is sendto/recvfrom, more sendmmsg/recvmmsg, at most %d (default: the preset's, or 1)", models.MaxBatch))
	file := fs.String("file", "", "the file every file request downloads (default: 1k.bin, one of the standard test files)")
	path := fs.String("path", "", "the path every http request GETs (default: /index.html)")
	works := fs.String("work", "", "per-request work of rpc cells: none,sleep:1ms,cpu:50us (default: the preset's)")
	reconnect := fs.String("reconnect", "", "off | on | both: a new connection per request (default: the preset's)")
	repeat := fs.String("repeat", "", "repetitions of every cell: N, or auto — at least -repeat-min, then one more round at a time of every cell whose median's 95% interval is wider than ±-repeat-target, up to -repeat-max (default: the preset's; quick: auto)")
	repeatMin := fs.Int("repeat-min", 0, "with -repeat auto: the repetitions every cell gets first (default: the preset's, or 6, the fewest whose [min, max] covers 95%)")
	repeatMax := fs.Int("repeat-max", 0, "with -repeat auto: the most repetitions of a cell (default: the preset's, or 9: the fewest whose 95% interval leaves out the smallest and the largest)")
	repeatTarget := fs.Float64("repeat-target", 0, "with -repeat auto: the interval's half-width a cell converges to, relative to its median (default: the preset's, or 0.10)")
	set := fs.String("set", "", "sweep one server flag: FLAG=V1,V2,… runs every model (not the peers) at each value as MODEL@FLAG=VALUE and draws it against the value, e.g. -models procpool,prefork -set workers=1,4,16,64 (flags: "+strings.Join(bench.SetFlags, ", ")+")")
	configure := fs.String("configure", "", strings.Join(bench.Configures, " | ")+": fair sizes each cell's pools as a user would for its connections (procpool a worker per connection, threadpool threads to cover them, up to what the machine holds); defaults runs every model with its defaults (default: the preset's, fair)")
	countReps := fs.Int("count-reps", -1, "further repetitions of every cell that count syscalls by name; the timed repetitions then count only switches and CPU, since counting syscalls costs every syscall of the machine (~0.2 µs each here). 0 counts syscalls in every repetition (default: the preset's, 1)")
	loads := fs.String("load", "", "open-loop steps as fractions of each model's closed-loop peak at the same cell, e.g. 0.1,0.5,0.9,1.1 (its closed-loop cell runs first and calibrates them; default: the preset's)")
	rates := fs.String("rate", "", "open-loop steps at absolute rates, req/s, e.g. 10000,50000 (default: the preset's)")
	arrival := fs.String("arrival", "", "the open-loop steps' arrivals: fixed or exp (Poisson) (default: the preset's)")
	searchSLO := fs.String("search", "", "a latency objective, e.g. 'p99<=1ms': one more trial per model and cell finds its capacity at it (loadgen -search; default: the preset's)")
	searchRounds := fs.Int("search-rounds", 0, "with -search: bisection rounds (default: loadgen's, 3)")
	dur := fs.Duration("d", 0, "measured duration of each trial (default: the preset's)")
	warmup := fs.Duration("warmup", -1, "unmeasured warm-up of each trial (default: the preset's)")
	timeline := fs.Duration("timeline", -1, "length of the one timeline trial per model; 0 for none (default: the preset's)")
	steadyTimeout := fs.Duration("steady-timeout", -1, "bound of each trial's steady-state gate: a trial whose connections served still grow this long after its load started fails as not steady (default: the preset's; 0: loadgen's)")
	timeout := fs.Duration("timeout", -1, "how long a request may wait for its reply (loadgen -timeout): for udp-echo, after which a datagram is lost (default: the preset's; 0: loadgen's, 5s)")
	timelineStep := fs.Duration("timeline-step", -1, "width of one entry of the timeline trial's course, e.g. 100ms (default: the preset's; 0: loadgen's, 1s)")
	focus := fs.Int("focus", 0, "concurrency of the per-model plots (default: 100 if swept, else the highest)")
	fs.StringVar(&o.out, "out", "", "run directory; rerunning with the same one resumes (default: results/PRESET)")
	fs.StringVar(&o.plots, "plots", "", "where the PNGs go (default: plots/NAME for -out results/NAME, else DIR/plots)")
	fs.StringVar(&o.loadgen, "loadgen", "", "loadgen executable (default: loadgen beside bench)")
	fs.StringVar(&o.peers.Cepoll, "cepoll", "", "cepoll executable for peer:cepoll (default: cepoll beside loadgen)")
	fs.StringVar(&o.peers.Curing, "curing", "", "curing executable for peer:uring (default: curing beside loadgen)")
	fs.StringVar(&o.peers.Clibevent, "clibevent", "", "clibevent executable for peer:libevent (default: clibevent beside loadgen)")
	fs.BoolVar(&o.calibrate, "calibrate", true, "first calibrate the instrument: loadgen and the C client bin/cclient at once, taking turns of 100 ms, against peer:cepoll (echo, 100 connections, 5 rounds of about 1 s of each), its CPU and context switches per request in REPORT.md's environment; a resumed run keeps its calibration")
	fs.StringVar(&o.peers.Nginx, "nginx", "", "nginx executable for peer:nginx (default: nginx on PATH, else /usr/sbin/nginx)")
	agentFlags := addAgentFlags(fs)
	fs.Usage = func() { usage(fs) }
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	var err error
	if o.agents, err = agentFlags(); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q (did you mean `bench report`?)", fs.Args())
	}
	sp, ok := bench.Presets[*preset]
	if !ok {
		return o, fmt.Errorf("preset %q: want %s", *preset, strings.Join(bench.PresetNames(), ", "))
	}
	sp.Preset = *preset
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "models", "set", "configure", "c", "idle", "heartbeat", "proto", "batch", "file", "path", "work", "reconnect", "repeat", "count-reps", "load", "rate", "arrival", "search", "search-rounds", "d", "warmup", "timeline", "steady-timeout", "timeout", "timeline-step":
			sp.Preset = *preset + ", customised by flags"
		}
	})
	if *modelsFlag != "" {
		sp.Models = bench.ParseList(*modelsFlag)
	}
	sp.Models = bench.ExpandModels(sp.Models, models.Names())
	if *set != "" {
		flag, values, err := bench.ParseSet(*set)
		if err != nil {
			return o, err
		}
		sp.Models, sp.Set = bench.Variants(sp.Models, flag, values), flag+"="+strings.Join(values, ",")
	}
	if *conns != "" {
		cs, err := bench.ParseInts(*conns)
		if err != nil {
			return o, fmt.Errorf("-c: %w", err)
		}
		sp.Conns = cs
	}
	if *idles != "" {
		var list []int
		for _, f := range bench.ParseList(*idles) {
			if f == "max" {
				list = append(list, bench.ScaleMax)
				continue
			}
			n, err := strconv.Atoi(f)
			if err != nil {
				return o, fmt.Errorf("-idle: %q: want a number of connections or max", f)
			}
			list = append(list, n)
		}
		sp.Idles = list
	}
	if *heartbeat != 0 {
		sp.Heartbeat = *heartbeat
	}
	// max: the descriptor hard limit (loadgen and the server raise their soft
	// limits to it) less each cell's busy connections and a margin.
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err == nil && len(sp.Conns) > 0 {
		sp.ResolveIdles(bench.MaxIdle(rl.Max, slices.Max(sp.Conns), 512))
	}
	if *protos != "" {
		sp.Protos = bench.ParseList(*protos)
	}
	// A preset's batch sweep goes with udp-echo, as its file and path with
	// theirs.
	if *batches != "" {
		bs, err := bench.ParseInts(*batches)
		if err != nil {
			return o, fmt.Errorf("-batch: %w", err)
		}
		sp.Batches = bs
	} else if !slices.ContainsFunc(sp.Protos, proto.IsDatagram) {
		sp.Batches = nil
	}
	// A preset's file or path goes with its protocol: -preset http -proto echo
	// drops the path; -file and -path given without their protocol are errors.
	if *file != "" {
		sp.File = *file
	} else if !slices.Contains(sp.Protos, "file") {
		sp.File = ""
	}
	if *path != "" {
		sp.Path = *path
	} else if !slices.Contains(sp.Protos, "http") {
		sp.Path = ""
	}
	if *works != "" {
		sp.Works = bench.ParseList(*works)
	}
	if *reconnect != "" {
		sp.Reconnect = *reconnect
	}
	switch *repeat {
	case "":
	case "auto":
		if !sp.RepeatAuto {
			sp.RepeatAuto, sp.Repeat, sp.RepeatMax, sp.RepeatTarget = true, 6, 9, 0.10
		}
	default:
		n, err := strconv.Atoi(*repeat)
		if err != nil || n < 1 {
			return o, fmt.Errorf("-repeat %q: want a number of repetitions (at least 1) or auto", *repeat)
		}
		sp.Repeat, sp.RepeatAuto = n, false
	}
	if *repeatMin != 0 || *repeatMax != 0 || *repeatTarget != 0 {
		if !sp.RepeatAuto {
			return o, errors.New("-repeat-min, -repeat-max and -repeat-target go with -repeat auto")
		}
		sp.Repeat = cmp.Or(*repeatMin, sp.Repeat)
		sp.RepeatMax = cmp.Or(*repeatMax, sp.RepeatMax)
		sp.RepeatTarget = cmp.Or(*repeatTarget, sp.RepeatTarget)
	}
	if *configure != "" {
		sp.Configure = *configure
	}
	if sp.Configure == bench.ConfigureFair {
		procs, pwhy := models.ProcessCap()
		threads, twhy := models.ThreadCap()
		sp.ProcessCap, sp.ThreadCap, sp.CapsWhy = procs, threads, pwhy+"; threads: "+twhy
	}
	if *countReps >= 0 {
		sp.CountReps = *countReps
	}
	for _, l := range []struct {
		flag, val string
		into      *[]float64
	}{{"-load", *loads, &sp.Loads}, {"-rate", *rates, &sp.Rates}} {
		if l.val == "" {
			continue
		}
		vs, err := bench.ParseFloats(l.val)
		if err != nil {
			return o, fmt.Errorf("%s: %w", l.flag, err)
		}
		*l.into = vs
	}
	if *arrival != "" {
		sp.Arrival = *arrival
	}
	if *searchSLO != "" {
		sp.Search = *searchSLO
	}
	if *searchRounds != 0 {
		sp.SearchRounds = *searchRounds
	}
	if *dur != 0 {
		sp.Duration = *dur
	}
	if *warmup >= 0 {
		sp.Warmup = *warmup
	}
	if *timeline >= 0 {
		sp.Timeline = *timeline
	}
	if *steadyTimeout >= 0 {
		sp.SteadyTimeout = *steadyTimeout
	}
	if *timeout >= 0 {
		sp.Timeout = *timeout
	}
	if *timelineStep >= 0 {
		sp.TimelineStep = *timelineStep
	}
	sp.Focus = *focus
	if err := sp.Validate(models.Names()); err != nil {
		return o, err
	}
	if o.agents != nil {
		sp.Agents = o.agents.Targets
	}
	o.spec = sp
	if o.out == "" {
		o.out = filepath.Join("results", *preset)
	}
	o.plots = plotsDir(o.out, o.plots)
	return o, nil
}

// plotsDir is the default plot directory of a run directory: plots/NAME beside
// results/NAME, and DIR/plots for a run directory elsewhere (-out /tmp/run must
// not write /plots/run).
func plotsDir(out, flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	out = filepath.Clean(out)
	if filepath.Base(filepath.Dir(out)) != "results" {
		return filepath.Join(out, "plots")
	}
	return filepath.Join(filepath.Dir(filepath.Dir(out)), "plots", filepath.Base(out))
}

func usage(fs *flag.FlagSet) {
	fmt.Fprintf(fs.Output(), `usage: bench [-preset quick|full|http|scale|curve] [-models a,b|all] [-c 1,10,100] [-proto echo,rpc,file,http]
             [-file NAME] [-path /P] [-work none,sleep:1ms] [-reconnect off|on|both] [-repeat N]
             [-count-reps N] [-load 0.1,0.5,1.1] [-rate R,R] [-arrival fixed|exp]
             [-search 'p99<=1ms'] [-d 5s] [-out DIR]
       bench report [-in DIR]

Runs the comparison matrix: each trial is one bin/loadgen run (which starts the
server pinned to half the CPUs), every cell repeated, repetitions interleaved
across models. Every finished trial is saved at once under -out; rerunning with
the same -out resumes. Then writes DIR/REPORT.md, DIR/GROUP.csv and PNG plots
under plots/NAME (for -out results/NAME; else under DIR/plots). Cells a model
cannot serve are run and their failures recorded.

Reference peers run like models under the name peer:NAME: bench starts the server
itself, pinned to the CPUs a model's server gets, drives it with loadgen -addr
-server-pid (same pinning and /proc sampling), and stops it after each trial.
They are marked in the report and plots and never ranked with the models.
  peer:cepoll  echo, rpc: single-threaded C epoll server (bin/cepoll, make peers)
  peer:uring   echo, rpc: single-threaded C io_uring server on liburing (bin/curing, make peers; needs liburing-dev)
  peer:libevent echo, rpc: single-threaded C libevent server (bin/clibevent, make peers; needs libevent-dev)
  peer:nginx   http: nginx with one worker, static files (make deps installs it)
A peer that does not speak a cell's protocol skips the cell, as does one that
is not installed (with the reason); a model the kernel refuses (uring where
io_uring is disabled) too. The matrix goes on.

Presets:
  quick  every model and the C peers (cepoll, uring, libevent), echo, c =
         1,100,1000, pools sized for the connections, 6 repetitions of 1 s and
         up to 3 more for a cell not within ±10%%, a 4 s timeline per model in
         100 ms steps (what make bench runs; about 12 minutes on 2 cores in a
         calm hour, build included)
  full   every model and the C peers, echo and rpc, work none and sleep:1ms,
         reconnect both, c up to 10000, 5 repetitions of 5 s (hours)
  http   epoll-et, reactor, goroutine, multireactor and peer:nginx, http GET
         /index.html, c = 10,100, 6 repetitions of 1 s (about 2 minutes)
  curve  load–latency curves: every model and peer:cepoll, echo, c = 100, a
         closed-loop calibration, Poisson open-loop steps at 0.1 to 1.1 of each
         model's peak (3 repetitions of 1 s), and its capacity at p99 <= 1ms
         (loadgen -search, 3 rounds)
  scale  the C10K experiment: every model and peer:cepoll, 10 busy connections
         beside 0, 1000, 5000, 10000 and the most idle ones the descriptor limit
         allows, 3 repetitions of 2 s and a counted one (35 minutes here before the
         counted one was added, which adds about a quarter)

Models: %s
Peers: %s

Examples:
  bench
  bench -models epoll-et,goroutine,thread -c 10,100,1000 -repeat 5 -out results/three
  bench -models epoll-et,peer:cepoll -c 10,100 -repeat 2 -d 1s -out /tmp/peerrun
  bench -preset http -out results/http
  bench -preset full -out results/full
  bench -models epoll-et,peer:cepoll -c 100,1000 -agents root@198.18.1.2,root@198.18.2.2 -agent-host 198.18.0.1 -out results/agents
  bench report -in results/quick

Flags:
`, fmt.Sprint(models.Names()), fmt.Sprint(bench.PeerNames()))
	fs.PrintDefaults()
}

func run(ctx context.Context, o options, stderr io.Writer) error {
	store := bench.Store{Dir: o.out}
	if !o.report {
		if err := os.MkdirAll(o.out, 0o755); err != nil {
			return err
		}
	}
	// A report of a directory that does not exist fails below, saying so.
	if _, err := os.Stat(o.out); err == nil {
		unlock, err := store.Lock()
		if err != nil {
			return err
		}
		defer unlock()
	}
	if !o.report {
		lg, err := findLoadgen(o.loadgen)
		if err != nil {
			return err
		}
		r := &bench.Runner{Spec: o.spec, Store: store, Loadgen: lg, Skip: bench.DefaultSkip, Progress: stderr, Peers: o.peers, Calibrate: o.calibrate, Agents: o.agents}
		fmt.Fprintf(stderr, "bench: %d trials into %s (%d models × %d cells × %d timed + %d counted repetitions + timelines); progress below\n",
			len(o.spec.Plan()), o.out, len(o.spec.Models), len(o.spec.Groups())*len(o.spec.Conns), o.spec.Repeat, o.spec.CountReps)
		n, err := r.Run(ctx)
		if errors.Is(err, bench.ErrInterrupted) {
			return fmt.Errorf("%w; the finished trials are saved in %s: rerun the same command to resume", err, o.out)
		}
		if err != nil {
			return err
		}
		rerun := ""
		if n.Rerun > 0 {
			rerun = fmt.Sprintf(" (%d run again: their files were damaged)", n.Rerun)
		}
		fmt.Fprintf(stderr, "bench: done in %s: %d trials ok, %d failed, %d skipped%s, %d resumed from an earlier run\n",
			n.Elapsed.Round(time.Second), n.OK, n.Failed, n.Skipped, rerun, n.Resumed)
	}
	d, err := store.Load()
	if err != nil {
		return err
	}
	for _, e := range d.Damaged {
		fmt.Fprintf(stderr, "bench: warning: %v: left out, its trial counts as not run (bench with the same -out runs it again)\n", e)
	}
	files, err := bench.WriteAll(d, o.out, o.plots)
	for _, f := range files {
		fmt.Fprintln(stderr, "bench: wrote", f)
	}
	return err
}

// findLoadgen is the flag, else loadgen beside this executable.
func findLoadgen(flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	p := filepath.Join(filepath.Dir(self), "loadgen")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no loadgen beside bench (%s): build it (make build) or give -loadgen", p)
	}
	return p, nil
}

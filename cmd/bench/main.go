// Command bench runs the comparison matrix — every model under a sweep of
// concurrency, protocols, work and connection modes, repeated and interleaved —
// by driving bin/loadgen once per trial, and writes REPORT.md, CSV tables and PNG
// plots from the results.
//
//	bench                          the quick preset (what `make bench` runs)
//	bench -preset full             everything, hours
//	bench -models epoll-et,poll -c 10,1000 -repeat 5 -d 5s -out results/mine
//	bench report -in results/quick redraw the report and plots from saved data
//
// A run is resumable: every finished trial is saved at once, and rerunning with
// the same -out skips them. It exits 1 on an error or interruption, 2 on a usage
// error. Failed trials are recorded in the report, not fatal.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"concbench/bench"
	"concbench/models"
)

type options struct {
	spec    bench.Spec
	out     string
	plots   string
	loadgen string
	report  bool // the report subcommand: redraw only
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
		fs.StringVar(&o.plots, "plots", "", "where the PNGs go (default: plots/ + the run directory's name)")
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
	preset := fs.String("preset", "quick", "quick | full: the matrix the other flags refine")
	modelsFlag := fs.String("models", "all", "models to compare, comma-separated, or all")
	conns := fs.String("c", "", "concurrency sweep, e.g. 1,10,100,1000 (default: the preset's)")
	protos := fs.String("proto", "", "protocols: echo,rpc (default: the preset's)")
	works := fs.String("work", "", "per-request work of rpc cells: none,sleep:1ms,cpu:50us (default: the preset's)")
	reconnect := fs.String("reconnect", "", "off | on | both: a new connection per request (default: the preset's)")
	repeat := fs.Int("repeat", 0, "repetitions of every cell (default: the preset's)")
	dur := fs.Duration("d", 0, "measured duration of each trial (default: the preset's)")
	warmup := fs.Duration("warmup", -1, "unmeasured warm-up of each trial (default: the preset's)")
	timeline := fs.Duration("timeline", -1, "length of the one timeline trial per model; 0 for none (default: the preset's)")
	focus := fs.Int("focus", 0, "concurrency of the per-model plots (default: 100 if swept, else the highest)")
	fs.StringVar(&o.out, "out", "", "run directory; rerunning with the same one resumes (default: results/PRESET)")
	fs.StringVar(&o.plots, "plots", "", "where the PNGs go (default: plots/ + the run directory's name)")
	fs.StringVar(&o.loadgen, "loadgen", "", "loadgen executable (default: loadgen beside bench)")
	fs.Usage = func() { usage(fs) }
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q (did you mean `bench report`?)", fs.Args())
	}
	sp, ok := bench.Presets[*preset]
	if !ok {
		return o, fmt.Errorf("preset %q: want quick or full", *preset)
	}
	sp.Preset = *preset
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "models", "c", "proto", "work", "reconnect", "repeat", "d", "warmup", "timeline":
			sp.Preset = *preset + ", customised by flags"
		}
	})
	sp.Models = models.Names()
	if *modelsFlag != "all" {
		sp.Models = bench.ParseList(*modelsFlag)
	}
	if *conns != "" {
		cs, err := bench.ParseInts(*conns)
		if err != nil {
			return o, fmt.Errorf("-c: %w", err)
		}
		sp.Conns = cs
	}
	if *protos != "" {
		sp.Protos = bench.ParseList(*protos)
	}
	if *works != "" {
		sp.Works = bench.ParseList(*works)
	}
	if *reconnect != "" {
		sp.Reconnect = *reconnect
	}
	if *repeat != 0 {
		sp.Repeat = *repeat
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
	sp.Focus = *focus
	if err := sp.Validate(models.Names()); err != nil {
		return o, err
	}
	o.spec = sp
	if o.out == "" {
		o.out = filepath.Join("results", *preset)
	}
	o.plots = plotsDir(o.out, o.plots)
	return o, nil
}

// plotsDir is the default plot directory of a run directory: plots/NAME beside
// results/NAME.
func plotsDir(out, flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	return filepath.Join(filepath.Dir(filepath.Dir(filepath.Clean(out))), "plots", filepath.Base(out))
}

func usage(fs *flag.FlagSet) {
	fmt.Fprintf(fs.Output(), `usage: bench [-preset quick|full] [-models a,b|all] [-c 1,10,100] [-proto echo,rpc]
             [-work none,sleep:1ms] [-reconnect off|on|both] [-repeat N] [-d 5s] [-out DIR]
       bench report [-in DIR]

Runs the comparison matrix: each trial is one bin/loadgen run (which starts the
server pinned to half the CPUs), every cell repeated, repetitions interleaved
across models. Every finished trial is saved at once under -out; rerunning with
the same -out resumes. Then writes DIR/REPORT.md, DIR/GROUP.csv and PNG plots
under plots/NAME. Cells a model cannot serve are run and their failures recorded.

Presets:
  quick  every model, echo, c = 1,10,100,1000, 6 repetitions of 1 s, a 4 s timeline
         per model (what make bench runs; 7.5 minutes on 2 cores, build included)
  full   echo and rpc, work none and sleep:1ms, reconnect both, c up to 10000,
         5 repetitions of 5 s (hours)

Models: %s

Examples:
  bench
  bench -models epoll-et,goroutine,thread -c 10,100,1000 -repeat 5 -out results/three
  bench -preset full -out results/full
  bench report -in results/quick

Flags:
`, fmt.Sprint(models.Names()))
	fs.PrintDefaults()
}

func run(ctx context.Context, o options, stderr io.Writer) error {
	store := bench.Store{Dir: o.out}
	if !o.report {
		lg, err := findLoadgen(o.loadgen)
		if err != nil {
			return err
		}
		r := &bench.Runner{Spec: o.spec, Store: store, Loadgen: lg, Skip: bench.DefaultSkip, Progress: stderr}
		fmt.Fprintf(stderr, "bench: %d trials into %s (%d models × %d cells × %d repetitions + timelines); progress below\n",
			len(o.spec.Plan()), o.out, len(o.spec.Models), len(o.spec.Groups())*len(o.spec.Conns), o.spec.Repeat)
		n, err := r.Run(ctx)
		if err != nil {
			if errors.Is(err, bench.ErrInterrupted) {
				fmt.Fprintf(stderr, "bench: %v; finished trials are saved: rerun the same command to resume\n", err)
			}
			return err
		}
		fmt.Fprintf(stderr, "bench: done in %s: %d trials ok, %d failed, %d skipped, %d resumed from an earlier run\n",
			n.Elapsed.Round(time.Second), n.OK, n.Failed, n.Skipped, n.Resumed)
	}
	d, err := store.Load()
	if err != nil {
		return err
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

package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"concbench/bench"
	"concbench/internal/kcount"
	"concbench/models"
)

func TestParse(t *testing.T) {
	o, err := parse([]string{"-models", "epoll-et,poll", "-c", "1,10", "-repeat", "5", "-d", "1s", "-out", "results/x"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	sp := o.spec
	if !slices.Equal(sp.Models, []string{"epoll-et", "poll"}) || !slices.Equal(sp.Conns, []int{1, 10}) || sp.Repeat != 5 || sp.Duration != time.Second {
		t.Errorf("spec %+v", sp)
	}
	if quick := bench.Presets["quick"]; sp.Warmup != quick.Warmup || sp.Timeline != quick.Timeline || !slices.Equal(sp.Protos, []string{"echo"}) {
		t.Errorf("preset defaults lost: %+v", sp)
	}
	if !strings.Contains(sp.Preset, "customised") {
		t.Errorf("preset %q: want it marked customised", sp.Preset)
	}
	if o.plots != "plots/x" {
		t.Errorf("plots dir %q, want plots/x", o.plots)
	}
	for out, want := range map[string]string{"results/x": "plots/x", "/tmp/run": "/tmp/run/plots", "mine": "mine/plots", "/a/results/y/": "/a/plots/y"} {
		if got := plotsDir(out, ""); got != want {
			t.Errorf("plotsDir(%q) = %q, want %q", out, got, want)
		}
	}

	o, err = parse(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.out != "results/quick" || o.spec.Preset != "quick" || !slices.Equal(o.spec.Models, append(models.Names(), "peer:cepoll", "peer:uring", "peer:libevent")) {
		t.Errorf("defaults: out %q preset %q models %v", o.out, o.spec.Preset, o.spec.Models)
	}
	// -models all is every registered model, without peers.
	if o, err = parse([]string{"-models", "all"}, io.Discard); err != nil || !slices.Equal(o.spec.Models, models.Names()) {
		t.Errorf("-models all: %v, %v", o.spec.Models, err)
	}

	o, err = parse([]string{"-preset", "http"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if sp := o.spec; !slices.Equal(sp.Models, []string{"epoll-et", "reactor", "goroutine", "multireactor", "peer:nginx"}) ||
		!slices.Equal(sp.Protos, []string{"http"}) || sp.Path != "/index.html" || o.out != "results/http" {
		t.Errorf("-preset http: %+v, out %q", sp, o.out)
	}
	o, err = parse([]string{"-preset", "http", "-path", "/1m.bin", "-models", "epoll-et,peer:nginx,peer:cepoll", "-nginx", "/opt/nginx"}, io.Discard)
	if err != nil || o.spec.Path != "/1m.bin" || o.peers.Nginx != "/opt/nginx" || !strings.Contains(o.spec.Preset, "customised") {
		t.Errorf("-preset http -path: %+v, %v", o, err)
	}
	// A preset's path goes with its protocol.
	if o, err = parse([]string{"-preset", "http", "-proto", "echo"}, io.Discard); err != nil || o.spec.Path != "" {
		t.Errorf("-preset http -proto echo: path %q, %v", o.spec.Path, err)
	}
	if o, err = parse([]string{"-proto", "file", "-file", "64k.bin"}, io.Discard); err != nil || o.spec.File != "64k.bin" {
		t.Errorf("-proto file -file: %+v, %v", o.spec, err)
	}

	o, err = parse([]string{"report", "-in", "results/ref"}, io.Discard)
	if err != nil || !o.report || o.out != "results/ref" || o.plots != "plots/ref" {
		t.Errorf("report: %+v, %v", o, err)
	}

	for _, bad := range [][]string{
		{"-models", "nope"}, {"-preset", "huge"}, {"-c", "1,x"}, {"-proto", "echo", "-work", "sleep:1ms"},
		{"-reconnect", "sometimes"}, {"extra"}, {"report", "extra"},
		{"-models", "peer:apache"}, {"-path", "/index.html"}, {"-proto", "gopher"},
	} {
		if _, err := parse(bad, io.Discard); err == nil {
			t.Errorf("parse(%q): no error", bad)
		}
	}
	if _, err := parse([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

// fakeLoadgen is a stand-in for loadgen that writes a result of the trial's
// workload (schema 1) and exits 0, at once.
func fakeLoadgen(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "loadgen")
	script := `#!/bin/sh
model= out= conns=1 proto=echo
while [ $# -gt 0 ]; do
	case $1 in
	-model) model=$2; shift ;;
	-o) out=$2; shift ;;
	-c) conns=$2; shift ;;
	-proto) proto=$2; shift ;;
	esac
	shift
done
cat >"$out" <<END
{"schema": 1, "config": {"model": "$model", "workload": {"proto": "$proto", "conns": $conns}},
 "load": {"mode": "closed", "requests": 1000, "seconds": 1, "throughput": 1000}}
END
`
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// A second bench on a run directory in use stops at once with a clear error and
// writes nothing there; `bench report` waits its turn the same way; once the
// holder is gone the run goes ahead.
func TestBusyOutDir(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	unlock, err := bench.Store{Dir: out}.Lock() // the other bench
	if err != nil {
		t.Fatal(err)
	}
	o, err := parse([]string{"-models", "epoll-et", "-c", "2", "-repeat", "1", "-d", "100ms", "-timeline", "0",
		"-out", out, "-loadgen", fakeLoadgen(t)}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := parse([]string{"report", "-in", out}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, opts := range []options{o, rep} {
		var stderr strings.Builder
		err := run(context.Background(), opts, &stderr)
		if !errors.Is(err, bench.ErrBusy) || !strings.Contains(err.Error(), out) {
			t.Errorf("report %v: %v; want busy, naming %s", opts.report, err, out)
		}
	}
	if ents, _ := os.ReadDir(out); len(ents) != 1 {
		t.Errorf("the busy directory holds %d entries, want only the lock file", len(ents))
	}
	unlock()
	var stderr strings.Builder
	if err := run(context.Background(), o, &stderr); err != nil {
		t.Fatalf("run once the directory is free: %v\n%s", err, stderr.String())
	}
}

// `bench report` and a resumed run over damaged files: each is named with what is
// wrong, the report is still written (without those trials), a resumed run runs
// them again, and a damaged plan.json is an error naming it, not a crash.
func TestDamagedFiles(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	o, err := parse([]string{"-models", "epoll-et,poll,select", "-c", "2", "-repeat", "1", "-d", "100ms", "-timeline", "0",
		"-out", out, "-loadgen", fakeLoadgen(t)}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	if err := run(context.Background(), o, &stderr); err != nil {
		t.Fatalf("first run: %v\n%s", err, stderr.String())
	}
	store := bench.Store{Dir: out}
	plan := o.spec.Plan()
	record := store.TrialPath(plan[0]) + ".trial.json"
	res := store.TrialPath(plan[1]) + ".json"
	b, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(record, b[:len(b)/2], 0o644)
	os.WriteFile(res, []byte("not JSON at all"), 0o644)
	wants := []string{record + ": cut short", res + ": not JSON"}

	rep, err := parse([]string{"report", "-in", out}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	stderr.Reset()
	if err := run(context.Background(), rep, &stderr); err != nil {
		t.Fatalf("bench report over damaged files: %v\n%s", err, stderr.String())
	}
	md, err := os.ReadFile(filepath.Join(out, "REPORT.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range wants {
		if !strings.Contains(stderr.String(), "bench: warning: "+want) || !strings.Contains(string(md), want) {
			t.Errorf("bench report does not warn %q on stderr and in REPORT.md:\n%s", want, stderr.String())
		}
	}

	stderr.Reset()
	if err := run(context.Background(), o, &stderr); err != nil {
		t.Fatalf("resumed run: %v\n%s", err, stderr.String())
	}
	for _, want := range append(wants, fmt.Sprintf("2 trials ok, 0 failed, 0 skipped (2 run again: their files were damaged), %d resumed", len(plan)-2)) {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("the resumed run does not say %q:\n%s", want, stderr.String())
		}
	}
	if strings.Contains(stderr.String(), "warning") {
		t.Errorf("damaged files left after the resumed run:\n%s", stderr.String())
	}

	planFile := filepath.Join(out, "plan.json")
	b, _ = os.ReadFile(planFile)
	os.WriteFile(planFile, b[:len(b)/2], 0o644)
	for _, opts := range []options{rep, o} {
		err := run(context.Background(), opts, io.Discard)
		if err == nil || !strings.Contains(err.Error(), planFile+": cut short") {
			t.Errorf("report %v with a cut plan.json: %v, want an error naming it", opts.report, err)
		}
	}
}

// proc is a process seen in /proc: its start time tells it from a later process
// given the same pid.
type proc struct {
	pid   int
	start string // clock ticks after boot (stat field 22)
	argv0 string
}

func (p proc) String() string { return fmt.Sprintf("%d (%s)", p.pid, p.argv0) }

// procStat reads a process's parent, start time and state.
func procStat(pid int) (ppid int, start string, state byte, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, "", 0, false
	}
	// pid (comm) state ppid … starttime is field 22; comm may hold anything.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 20 {
		return 0, "", 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	return ppid, f[19], f[0][0], true
}

// descendants lists the live processes whose parent chain leads to root.
func descendants(root int) []proc {
	ents, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	all := map[int]proc{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, start, state, ok := procStat(pid)
		if !ok || state == 'Z' || state == 'X' {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		argv0, _, _ := bytes.Cut(cmdline, []byte{0})
		parent[pid] = ppid
		all[pid] = proc{pid, start, string(argv0)}
	}
	var out []proc
	for pid, p := range all {
		for a := parent[pid]; a > 1; a = parent[a] {
			if a == root {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// alive reports whether p still runs (a zombie has ended).
func (p proc) alive() bool {
	_, start, state, ok := procStat(p.pid)
	return ok && start == p.start && state != 'Z' && state != 'X'
}

// runningFrom lists the live processes whose executable is in dir.
func runningFrom(dir string) []proc {
	ents, _ := os.ReadDir("/proc")
	var out []proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil || filepath.Dir(exe) != dir {
			continue
		}
		if _, start, state, ok := procStat(pid); ok && state != 'Z' && state != 'X' {
			out = append(out, proc{pid, start, filepath.Base(exe)})
		}
	}
	return out
}

// buildBinaries builds bench, loadgen and the server into a temporary directory,
// and cepoll beside them when there is a C compiler ("" otherwise).
func buildBinaries(t *testing.T) (dir, cepoll string) {
	t.Helper()
	dir = t.TempDir()
	for _, c := range []string{"bench", "loadgen", "server"} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, c), "concbench/cmd/"+c).CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", c, err, out)
		}
	}
	for _, cc := range []string{os.Getenv("CC"), "cc", "gcc", "clang"} {
		if cc == "" {
			continue
		}
		if _, err := exec.LookPath(cc); err != nil {
			continue
		}
		cepoll = filepath.Join(dir, "cepoll")
		if out, err := exec.Command(cc, "-O2", "-o", cepoll, filepath.Join("..", "..", "peers", "cepoll", "cepoll.c")).CombinedOutput(); err != nil {
			t.Fatalf("%s cepoll.c: %v\n%s", cc, err, out)
		}
		return dir, cepoll
	}
	t.Log("no C compiler: peer:cepoll left out")
	return dir, ""
}

// benchRun is a bench process started by the test.
type benchRun struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   chan struct{} // closed when it has exited
}

func startBench(t *testing.T, exe string, args []string) *benchRun {
	t.Helper()
	b := &benchRun{cmd: exec.Command(exe, args...), stderr: &bytes.Buffer{}, done: make(chan struct{})}
	b.cmd.Stderr = b.stderr
	// Its own process group, as a shell gives a job: a terminal's ^C goes to the
	// whole group.
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		b.cmd.Wait()
		close(b.done)
	}()
	t.Cleanup(func() {
		select {
		case <-b.done:
		default:
			b.cmd.Process.Kill()
			<-b.done
		}
	})
	return b
}

// waitFor waits until, for every one of matches, some process under bench
// matches it, and returns bench's processes at that moment.
func (b *benchRun) waitFor(t *testing.T, what string, matches ...func(proc) bool) []proc {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		select {
		case <-b.done:
			t.Fatalf("bench exited before %s ran:\n%s", what, b.stderr.String())
		default:
		}
		ps := descendants(b.cmd.Process.Pid)
		all := true
		for _, m := range matches {
			all = all && slices.ContainsFunc(ps, m)
		}
		if all {
			return ps
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never ran", what)
	return nil
}

// wait waits (at most a minute) for bench to exit and returns its exit code.
func (b *benchRun) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-b.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("bench still running a minute on:\n%s", b.stderr.String())
	}
	return b.cmd.ProcessState.ExitCode()
}

// assertGone checks that none of ps, nor any process of the binaries in dir,
// still runs once bench has exited. A moment is allowed for a killed process to
// become a zombie.
func assertGone(t *testing.T, dir string, ps []proc) {
	t.Helper()
	var left []proc
	for deadline := time.Now().Add(time.Second); ; time.Sleep(20 * time.Millisecond) {
		left = runningFrom(dir)
		for _, p := range ps {
			if p.alive() && !slices.ContainsFunc(left, func(q proc) bool { return q.pid == p.pid }) {
				left = append(left, p)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(left) > 0 {
		t.Errorf("processes bench started outlived it: %v", left)
		for _, p := range left {
			syscall.Kill(p.pid, syscall.SIGKILL)
		}
	}
}

// SIGINT stops the matrix cleanly, end to end with the real binaries: the trial
// in flight is stopped and discarded, every process bench started (loadgen, the
// prefork server and its worker processes, the cepoll peer) is gone when bench
// exits 1 saying how to resume, finished trials stay, and the same command
// resumes, running only what is missing. The first interruption is a terminal's
// ^C (SIGINT to bench's whole process group), the second `kill -INT` of bench
// alone.
func TestInterruptResume(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and runs trials of seconds")
	}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil || set.Count() < 2 {
		t.Skip("fewer than 2 CPUs: loadgen cannot pin the server and itself apart")
	}
	bin, cepoll := buildBinaries(t)
	models := "epoll-et,prefork"
	if cepoll != "" {
		models += ",peer:cepoll"
	}
	out := filepath.Join(t.TempDir(), "run")
	args := []string{"-models", models, "-c", "2", "-repeat", "1", "-d", "3s", "-warmup", "0", "-timeline", "0", "-out", out}
	o, err := parse(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	plan := o.spec.Plan()
	store := bench.Store{Dir: out}
	exe := filepath.Join(bin, "bench")

	// interrupt starts bench, waits until match runs under it, signals it, and
	// checks how it ended and that every process it had started is gone.
	interrupt := func(name string, match func(proc) bool, signal func(pid int) error, during string) {
		t.Helper()
		b := startBench(t, exe, args)
		// A peer starts before the loadgen that drives it: wait for both.
		isLoadgen := func(p proc) bool { return strings.Contains(p.argv0, "loadgen") }
		ps := b.waitFor(t, name, match, isLoadgen)
		t.Logf("%s: bench %d started %v", name, b.cmd.Process.Pid, ps)
		for _, want := range []string{"loadgen", name} {
			if !slices.ContainsFunc(ps, func(p proc) bool { return strings.Contains(p.argv0, want) }) {
				t.Errorf("no %s among bench's processes %v", want, ps)
			}
		}
		sent := time.Now()
		if err := signal(b.cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
		code := b.wait(t)
		t.Logf("%s: bench exited %d %v after SIGINT:\n%s", name, code, time.Since(sent).Round(time.Millisecond), b.stderr.String())
		if code != 1 {
			t.Errorf("exit status %d, want 1", code)
		}
		for _, want := range []string{"interrupted during " + during + " (discarded)", "rerun the same command to resume"} {
			if !strings.Contains(b.stderr.String(), want) {
				t.Errorf("bench does not say %q", want)
			}
		}
		assertGone(t, bin, ps)
	}
	// record checks which trials are on disk.
	record := func(when string, done int) {
		t.Helper()
		for i, tr := range plan {
			rec, err := store.ReadRecord(tr)
			switch {
			case i < done && (err != nil || rec.Status != bench.StatusOK):
				t.Errorf("%s: %s: %+v, %v; want it saved, ok", when, tr.Key(), rec, err)
			case i >= done && err == nil:
				t.Errorf("%s: %s has a record (%s), want none", when, tr.Key(), rec.Status)
			}
		}
	}

	// Run 1: ^C while the prefork server's workers serve.
	interrupt("concbench-prefork", func(p proc) bool { return p.argv0 == "concbench-prefork" },
		func(pid int) error { return syscall.Kill(-pid, syscall.SIGINT) }, "prefork echo c=2 rep 1")
	record("after run 1", 1)
	first, err := store.ReadRecord(plan[0])
	if err != nil {
		t.Fatal(err)
	}
	done := 1

	// Run 2: resumes; kill -INT while bench's peer serves.
	if cepoll != "" {
		interrupt("cepoll", func(p proc) bool { return p.argv0 == cepoll },
			func(pid int) error { return syscall.Kill(pid, syscall.SIGINT) }, "peer:cepoll echo c=2 rep 1")
		record("after run 2", 2)
		done = 2
	}

	// Last run: resumes and completes, running only what is missing.
	b := startBench(t, exe, args)
	if code := b.wait(t); code != 0 {
		t.Fatalf("the resumed run exited %d:\n%s", code, b.stderr.String())
	}
	t.Logf("last run:\n%s", b.stderr.String())
	for _, want := range []string{
		fmt.Sprintf("resuming %s: %d of %d trials already done", out, done, len(plan)),
		fmt.Sprintf("%d trials ok, 0 failed, 0 skipped, %d resumed", len(plan)-done, done),
		"wrote " + filepath.Join(out, "REPORT.md"),
	} {
		if !strings.Contains(b.stderr.String(), want) {
			t.Errorf("the resumed run does not say %q", want)
		}
	}
	record("after the last run", len(plan))
	if again, err := store.ReadRecord(plan[0]); err != nil || !again.Started.Equal(first.Started) {
		t.Errorf("the first trial was run again: started %v, then %v (%v)", first.Started, again.Started, err)
	}
	// The preset's counted repetition: the timed trials counted switches but
	// not syscalls, the counted ones syscalls too, and the CSV has the
	// syscalls of every cell (where the machine can count).
	if kcount.Available() == nil {
		for _, tr := range plan {
			rec, _ := store.ReadRecord(tr)
			r, err := store.ReadResult(rec)
			if err != nil {
				t.Fatalf("%s: %v", tr.Key(), err)
			}
			k := r.Server.Kernel
			switch {
			case k == nil:
				t.Errorf("%s: server not counted: %s", tr.Key(), r.Server.KernelMissing)
			case tr.Counted != (k.SyscallsMissing == "") || k.CtxSwitches <= 0:
				t.Errorf("%s (counted %v): syscalls missing %q, %d switches", tr.Key(), tr.Counted, k.SyscallsMissing, k.CtxSwitches)
			}
		}
		csv, err := os.ReadFile(filepath.Join(out, "echo.csv"))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(csv), "not measured") {
			t.Errorf("a cell of the CSV lacks kernel counts:\n%s", csv)
		}
	}
	assertGone(t, bin, nil)
}

// A tiny load–latency curve, end to end with the real binaries: two models,
// three open-loop steps at fractions of each one's closed-loop peak, and a
// one-round capacity search (at p99 ≤ 100 ms: an objective met beside other
// packages' tests, so that there is a capacity to draw). bench plans and runs it (the steps' rates are
// the fractions of the calibrating trial's throughput), resumes a run whose
// one step is missing by running only that one, and draws the curves and the
// capacities.
func TestCurveEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and runs about 15 s of trials")
	}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil || set.Count() < 2 {
		t.Skip("fewer than 2 CPUs: loadgen cannot pin the server and itself apart")
	}
	bin, _ := buildBinaries(t)
	out := filepath.Join(t.TempDir(), "curve")
	args := []string{"-preset", "curve", "-models", "epoll-lt,poll", "-c", "10", "-load", "0.2,0.5,0.8", "-repeat", "1", "-count-reps", "0",
		"-search", "p99<=100ms", "-search-rounds", "1", "-d", "300ms", "-warmup", "100ms", "-out", out}
	exe := filepath.Join(bin, "bench")
	b := startBench(t, exe, args)
	if code := b.wait(t); code != 0 {
		t.Fatalf("bench exited %d:\n%s", code, b.stderr.String())
	}
	o, err := parse(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	store := bench.Store{Dir: out}
	plan := o.spec.Plan()
	if len(plan) != 2+6+2 {
		t.Fatalf("%d trials planned, want 2 closed-loop, 6 steps and 2 searches", len(plan))
	}
	rate := map[string]float64{}
	for _, tr := range plan {
		rec, err := store.ReadRecord(tr)
		if err != nil || rec.Status != bench.StatusOK {
			t.Fatalf("%s: %+v %v", tr.Key(), rec, err)
		}
		r, err := store.ReadResult(rec)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case !tr.Cell.Open() && !tr.Cell.Search:
			rate[tr.Cell.Model] = r.Load.Throughput
		case tr.Cell.Open():
			if want := math.Round(tr.Cell.Load * rate[tr.Cell.Model]); r.Config.Workload.Rate != want || r.Config.Workload.Arrival != "exp" {
				t.Errorf("%s: rate %v arrival %q, want %v (%g of the peak), exp", tr.Key(), r.Config.Workload.Rate, r.Config.Workload.Arrival, want, tr.Cell.Load)
			}
		case tr.Cell.Search:
			if s := r.Search; s == nil || len(s.Capacities) != 1 || len(s.Steps) < 1 || s.SLO != "p99<=100ms" {
				t.Errorf("%s: search %+v", tr.Key(), s)
			}
		}
	}
	// Resume: one step's record gone; the rerun runs it alone.
	missing := plan[4]
	if err := os.Remove(store.TrialPath(missing) + ".trial.json"); err != nil {
		t.Fatal(err)
	}
	b = startBench(t, exe, args)
	if code := b.wait(t); code != 0 {
		t.Fatalf("the resumed bench exited %d:\n%s", code, b.stderr.String())
	}
	if want := fmt.Sprintf("1 trials ok, 0 failed, 0 skipped, %d resumed", len(plan)-1); !strings.Contains(b.stderr.String(), want) {
		t.Errorf("the resumed run does not say %q:\n%s", want, b.stderr.String())
	}
	md, err := os.ReadFile(filepath.Join(out, "REPORT.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"### Load–latency curves and capacity (echo, 10 connections)", "| epoll-lt | ", "| poll | ", "capacity-echo-c10.png", "curve-p99-echo-c10.png"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("REPORT.md lacks %q", want)
		}
	}
	for _, png := range []string{"capacity-echo-c10.png", "curve-p99-echo-c10.png", "curve-p50-echo-c10.png"} {
		if fi, err := os.Stat(filepath.Join(out, "plots", png)); err != nil || fi.Size() < 1000 {
			t.Errorf("%s: %v", png, err)
		}
	}
}

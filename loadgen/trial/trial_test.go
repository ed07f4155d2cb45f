package trial

// These tests run whole trials in the test process against a real server binary:
// cmd/server, built once per test binary (serverBin). The test binary does not act
// as the server itself (as models' TestMain lets it act as a process model's
// worker): the server's main — its flags, the "listening on" line, SIGTERM and the
// grace drain — is cmd/server's package main, which a test cannot import, and a
// copy of it here would test the copy.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"concbench/internal/cpuset"
	"concbench/internal/result"
	"concbench/internal/supervise"
)

// built is cmd/server, built by the first test that needs it.
var built struct {
	once     sync.Once
	dir, bin string
	err      error
	out      []byte
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// serverBin returns the server binary and this process's CPUs; it skips in
// -short mode, on fewer than 2 CPUs (server and loadgen are pinned apart), or when
// the build fails.
func serverBin(t *testing.T) (bin string, cpus []int) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the server")
	}
	cpus, err := cpuset.Available()
	if err != nil || len(cpus) < 2 {
		t.Skip("needs 2 CPUs")
	}
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "concbench-trial-test-"); built.err != nil {
			return
		}
		built.bin = filepath.Join(built.dir, "server")
		built.out, built.err = exec.Command("go", "build", "-o", built.bin, "concbench/cmd/server").CombinedOutput()
	})
	if built.err != nil {
		t.Skipf("cannot build the server: %v\n%s", built.err, built.out)
	}
	return built.bin, cpus
}

// run runs the trial o, then pins this process back to cpus (Run pins it to the
// client CPUs) so the next run and the tests after this one see them all. It
// returns the result, the error, and the summary PrintSummary writes of it.
func run(t *testing.T, cpus []int, o Options) (*result.Run, string, error) {
	t.Helper()
	r, err := Run(context.Background(), o)
	if perr := cpuset.PinProcess(cpus); perr != nil {
		t.Fatal(perr)
	}
	var out bytes.Buffer
	if r != nil {
		PrintSummary(&out, r)
	}
	return r, out.String(), err
}

// runOK runs the trial o as run does and fails the test if it fails; the result
// is read back from o.Out when set.
func runOK(t *testing.T, cpus []int, o Options) (*result.Run, string) {
	t.Helper()
	r, out, err := run(t, cpus, o)
	if err != nil {
		t.Fatalf("%+v: Run: %v\n%s", o, err, out)
	}
	if o.Out != "" {
		if r, err = result.ReadFile(o.Out); err != nil {
			t.Fatal(err)
		}
	}
	return r, out
}

// load is a workload of conns connections for d after a warm-up.
func load(proto string, conns int, d, warmup time.Duration) result.Workload {
	return result.Workload{Proto: proto, Conns: conns, Duration: d, Warmup: warmup}
}

// A model's server on a Unix domain socket in a temporary directory: driven
// there, and nothing left behind.
func TestRunModelUnix(t *testing.T) {
	bin, cpus := serverBin(t)
	dir := t.TempDir()
	for _, w := range []result.Workload{load("echo", 10, 500*time.Millisecond, 100*time.Millisecond), {Conns: 3, Reconnect: true, Duration: 500 * time.Millisecond, Warmup: 100 * time.Millisecond}} {
		r, _ := runOK(t, cpus, Options{Model: "epoll-et", Unix: true, ServerBin: bin, Out: filepath.Join(dir, "r.json"), Workload: w})
		path, ok := strings.CutPrefix(r.Config.Workload.Addr, "unix:")
		if !ok || !slices.Contains(r.Config.ServerArgs, r.Config.Workload.Addr) {
			t.Errorf("c=%d reconnect=%v: addr %q, server args %q: want the server on unix:PATH", w.Conns, w.Reconnect, r.Config.Workload.Addr, r.Config.ServerArgs)
		}
		if r.Load.Requests == 0 || r.Load.ErrorsTotal != 0 {
			t.Errorf("c=%d reconnect=%v: requests %d, errors %v", w.Conns, w.Reconnect, r.Load.Requests, r.Load.Errors)
		}
		if r.Server == nil || r.Server.Exit == nil || !r.Server.Exit.Clean {
			t.Errorf("c=%d reconnect=%v: server exit %+v, want clean", w.Conns, w.Reconnect, r.Server)
		}
		if _, err := os.Lstat(filepath.Dir(path)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("c=%d reconnect=%v: socket directory after the run: %v, want it removed", w.Conns, w.Reconnect, err)
		}
	}
}

// A whole trial against a real server binary that it starts, pins and stops.
func TestRunModel(t *testing.T) {
	bin, cpus := serverBin(t)
	r, out := runOK(t, cpus, Options{Model: "epoll-et", ServerBin: bin, Out: filepath.Join(t.TempDir(), "r.json"),
		Workload: load("rpc", 20, time.Second, 200*time.Millisecond)})
	if r.Load.Requests == 0 || r.Load.ErrorsTotal != 0 {
		t.Errorf("requests %d, errors %v", r.Load.Requests, r.Load.Errors)
	}
	if r.Server == nil || r.Server.Exit == nil || !r.Server.Exit.Clean || len(r.Server.Samples) < 5 || r.Server.ThreadsMax < 1 || r.Server.RSSMaxBytes <= 0 {
		t.Errorf("server figures incomplete: %+v", r.Server)
	}
	if len(r.Config.ServerCPUs) == 0 || len(r.Config.ClientCPUs) == 0 || !r.Config.PinningDefault || r.Env.Kernel == "" {
		t.Errorf("config/env incomplete: %+v %+v", r.Config, r.Env)
	}
	for _, want := range []string{"connect ramp: 20/20", "req/s", "server: CPU", "client_bound=", "errors: none", "histogram: "} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

// A window decided elsewhere (WindowAt: -start-at, an agents' coordinator)
// that does not open fails the trial, saying why, instead of passing with
// nothing measured; one that opens later than the run was ready is the
// window measured.
func TestRunWindowAt(t *testing.T) {
	bin, cpus := serverBin(t)
	w := load("echo", 4, 500*time.Millisecond, 100*time.Millisecond)
	_, _, err := run(t, cpus, Options{Model: "epoll-et", ServerBin: bin, Workload: w, WindowWait: time.Second,
		WindowAt: func(time.Time) (time.Time, error) { return time.Time{}, errors.New("not ready by -start-at") }})
	if !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "no window was measured: not ready by -start-at") {
		t.Errorf("a refused window: err %v, want ErrFailed saying why", err)
	}
	var at time.Time
	r, _ := runOK(t, cpus, Options{Model: "epoll-et", ServerBin: bin, Workload: w, WindowWait: time.Second,
		WindowAt: func(ready time.Time) (time.Time, error) { at = ready.Add(300 * time.Millisecond); return at, nil }})
	if got := time.Unix(0, r.Load.WindowStartUnixNS); got.Before(at) || got.Sub(at) > 50*time.Millisecond || r.Load.Requests == 0 {
		t.Errorf("window from %v with %d requests, want from %v", got, r.Load.Requests, at)
	}
}

// Context switches over the window are per thread, never negative; with a
// process per connection that comes and goes (fork, reconnecting) the result and
// the summary say the figure is a lower bound. (Whether epoll-et's figure is
// exact depends on its Go runtime starting no thread in the window, which a
// loaded machine can make it do: the exact case is TestTreeChanged's and
// procstat's TestSwitchesDelta's.)
func TestRunModelCtxSwitches(t *testing.T) {
	bin, cpus := serverBin(t)
	dir := t.TempDir()
	tests := []struct {
		model     string
		reconnect bool
		wantExits bool
	}{
		{"epoll-et", false, false},
		{"fork", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			w := load("echo", 4, time.Second, 200*time.Millisecond)
			w.Reconnect = tt.reconnect
			r, out := runOK(t, cpus, Options{Model: tt.model, ServerBin: bin, Out: filepath.Join(dir, tt.model+".json"), Workload: w})
			s := r.Server
			if s == nil || s.VoluntaryCtxSwitches <= 0 || s.InvoluntaryCtxSwitches < 0 {
				t.Fatalf("server ctx switches %+v: want some, none negative", s)
			}
			said := strings.Contains(out, "threads came and went mid-window")
			if said != s.CtxSwitchesLowerBound || (tt.wantExits && !said) {
				t.Errorf("ctx switches a lower bound: %v (summary says so: %v), want %v\n%s", s.CtxSwitchesLowerBound, said, tt.wantExits, out)
			}
		})
	}
}

// Against a server that dies mid-run, the trial reports, writes the partial
// result, returns ErrFailed, and does not hang.
func TestRunServerDies(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go io.Copy(c, upper{c})
		}
	}()
	time.AfterFunc(300*time.Millisecond, func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	out := filepath.Join(t.TempDir(), "r.json")
	w := load("echo", 2, time.Second, 0)
	w.Addr = ln.Addr().String()
	begin := time.Now()
	r, err := Run(context.Background(), Options{Workload: w, Out: out})
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("err = %v, want ErrFailed", err)
	}
	if time.Since(begin) > 5*time.Second {
		t.Errorf("took %v", time.Since(begin))
	}
	if r.Load.Requests == 0 || r.Load.ErrorsTotal == 0 {
		t.Errorf("requests %d errors %v: want both", r.Load.Requests, r.Load.Errors)
	}
	if _, err := result.ReadFile(out); err != nil {
		t.Errorf("partial result not written: %v", err)
	}
}

// A server that exits mid-run — the trial's own (Model) or an external one
// (ServerPID) — ends the load soon after, not at the duration's end: the run
// fails, says the server exited, and keeps the partial figures.
func TestRunServerExitsEarly(t *testing.T) {
	bin, cpus := serverBin(t)
	// The server binary, killed 1.5 s after it starts.
	doomed := filepath.Join(t.TempDir(), "doomed-server")
	script := "#!/bin/sh\nexec timeout -s KILL 1.5 " + bin + " \"$@\"\n"
	if err := os.WriteFile(doomed, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	// An external server, killed 1.5 s after it starts.
	external := func(t *testing.T) Options {
		pid, addr := startExternal(t, cpus[:1], "timeout", "-s", "KILL", "1.5", bin, "-model", "epoll-et", "-proto", "echo", "-addr", "127.0.0.1:0")
		return Options{Workload: result.Workload{Addr: addr}, ServerPID: pid, ClientCPUs: cpus[1:2]}
	}
	tests := []struct {
		name string
		opts func(t *testing.T) Options
	}{
		{"started", func(*testing.T) Options { return Options{Model: "epoll-et", ServerBin: doomed} }},
		{"external", external},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.opts(t)
			w := load("echo", 4, 20*time.Second, 200*time.Millisecond)
			w.Addr = o.Workload.Addr
			o.Workload = w
			begin := time.Now()
			r, out, err := run(t, cpus, o)
			took := time.Since(begin)
			if !errors.Is(err, ErrFailed) {
				t.Fatalf("err = %v, want ErrFailed\n%s", err, out)
			}
			if took > 8*time.Second {
				t.Errorf("took %v with a duration of 20s: the load went on after the server exited", took.Round(time.Millisecond))
			}
			if r == nil || r.Load.Requests == 0 || !slices.ContainsFunc(r.Warnings, func(w string) bool { return strings.Contains(w, "exited") && strings.Contains(w, "into the run") }) {
				t.Fatalf("want partial figures and a warning that the server exited; got %+v", r)
			}
			if r.Server == nil || r.Server.Exit == nil || r.Server.Exit.Clean {
				t.Errorf("server %+v: want its exit recorded, not clean", r.Server)
			}
			t.Logf("returned after %v: %v", took.Round(time.Millisecond), err)
		})
	}
}

// Options Run refuses before it starts anything.
func TestRunRefuses(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"neither model nor address", Options{}, "exactly one of a model and an address"},
		{"both", Options{Model: "epoll-et", Workload: result.Workload{Addr: "127.0.0.1:1"}}, "exactly one of a model and an address"},
		{"a pid with a model", Options{Model: "epoll-et", ServerPID: 1}, "a server pid is for a server loadgen did not start"},
		{"no server binary", Options{Model: "epoll-et", ServerBin: filepath.Join(t.TempDir(), "server")}, "start "},
	}
	cpus, err := cpuset.Available()
	if err != nil {
		t.Fatal(err)
	}
	if len(cpus) < 2 {
		tests = tests[:3] // the last one needs the CPUs split
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _, err := run(t, cpus, tt.o)
			if r != nil || err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Run = %v, %v; want no result and an error saying %q", r, err, tt.want)
			}
		})
	}
}

// upper uppercases what it reads: a minimal echo protocol server body.
type upper struct{ r io.Reader }

func (u upper) Read(p []byte) (int, error) {
	n, err := u.r.Read(p)
	copy(p[:n], bytes.ToUpper(p[:n]))
	return n, err
}

// startExternal starts argv pinned to cpus, as a server the trial did not start
// (killed when the test ends), and returns its pid and the address from its
// "listening on" line.
func startExternal(t *testing.T, cpus []int, argv ...string) (pid int, addr string) {
	t.Helper()
	p, err := supervise.Start(exec.Command(argv[0], argv[1:]...), supervise.Options{CPUs: cpus})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	if addr, err = p.Listening(t.Context(), 10*time.Second); err != nil {
		t.Fatalf("%s: %v\n%s", argv[0], err, p.Output())
	}
	return p.PID(), addr
}

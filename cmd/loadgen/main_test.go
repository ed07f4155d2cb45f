package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
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
	"concbench/internal/procstat"
	"concbench/internal/result"
	"concbench/models"
)

func TestParseCPUs(t *testing.T) {
	tests := []struct {
		in   string
		want []int
	}{
		{"0", []int{0}},
		{"0-3,6", []int{0, 1, 2, 3, 6}},
		{"5,1-2,2", []int{1, 2, 5}},
	}
	for _, tt := range tests {
		got, err := cpuset.Parse(tt.in)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("cpuset.Parse(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if back, _ := cpuset.Parse(cpuset.Format(got)); !slices.Equal(back, tt.want) {
			t.Errorf("cpuset.Format(%v) = %q does not parse back", got, cpuset.Format(got))
		}
	}
	for _, bad := range []string{"", "a", "3-1", "-1"} {
		if _, err := cpuset.Parse(bad); err == nil {
			t.Errorf("cpuset.Parse(%q): no error", bad)
		}
	}
	s, c, err := cpuset.Split([]int{0, 1, 2, 3})
	if err != nil || !slices.Equal(s, []int{0, 1}) || !slices.Equal(c, []int{2, 3}) {
		t.Errorf("splitCPUs = %v %v %v", s, c, err)
	}
	if _, _, err := cpuset.Split([]int{0}); err == nil {
		t.Error("splitCPUs of one CPU: no error")
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parse([]string{"-model", "poll", "-server-arg=-work=sleep:1ms", "--", "-read-buf", "4096"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"-work=sleep:1ms", "-read-buf", "4096"}; !slices.Equal(o.serverArgs, want) {
		t.Errorf("server args %q, want %q", o.serverArgs, want)
	}
	_, err = parse([]string{"-model", "nope"}, io.Discard)
	if !errors.Is(err, models.ErrUnknownModel) || !strings.Contains(err.Error(), "epoll-et") {
		t.Errorf("unknown model: err = %v, want ErrUnknownModel listing the valid names", err)
	}
	for _, bad := range [][]string{{}, {"-model", "x", "-addr", "127.0.0.1:1"}, {"-addr", "127.0.0.1:1", "--", "-x"}, {"-addr", "127.0.0.1:1", "-proto", "gopher"}, {"-addr", "unix:/tmp/x.sock", "-unix"}, {"-addr", "unix:"}} {
		if _, err := parse(bad, io.Discard); err == nil {
			t.Errorf("parse(%q): no error", bad)
		}
	}
}

// TestRunModelUnix: -unix starts the server on a Unix domain socket in a
// temporary directory, drives it there, and leaves nothing behind.
func TestRunModelUnix(t *testing.T) {
	dir, bin, cpus := buildServer(t)
	for _, extra := range [][]string{{"-c", "10"}, {"-c", "3", "-reconnect"}} {
		r, _ := runCmd(t, cpus, append([]string{"-model", "epoll-et", "-unix", "-d", "500ms", "-warmup", "100ms", "-q",
			"-server-bin", bin, "-o", filepath.Join(dir, "r.json")}, extra...))
		path, ok := strings.CutPrefix(r.Config.Workload.Addr, "unix:")
		if !ok || !slices.Contains(r.Config.ServerArgs, r.Config.Workload.Addr) {
			t.Errorf("%v: addr %q, server args %q: want the server on unix:PATH", extra, r.Config.Workload.Addr, r.Config.ServerArgs)
		}
		if r.Load.Requests == 0 || r.Load.ErrorsTotal != 0 {
			t.Errorf("%v: requests %d, errors %v", extra, r.Load.Requests, r.Load.Errors)
		}
		if r.Server == nil || r.Server.Exit == nil || !r.Server.Exit.Clean {
			t.Errorf("%v: server exit %+v, want clean", extra, r.Server)
		}
		if _, err := os.Lstat(filepath.Dir(path)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%v: socket directory after the run: %v, want it removed", extra, err)
		}
	}
}

// The whole command against a real server binary that it starts, pins and stops.
func TestRunModel(t *testing.T) {
	dir, bin, cpus := buildServer(t)
	r, out := runCmd(t, cpus, []string{"-model", "epoll-et", "-proto", "rpc", "-c", "20", "-d", "1s", "-warmup", "200ms", "-q",
		"-server-bin", bin, "-o", filepath.Join(dir, "r.json")})
	if r.Load.Requests == 0 || r.Load.ErrorsTotal != 0 {
		t.Errorf("requests %d, errors %v", r.Load.Requests, r.Load.Errors)
	}
	if r.Server == nil || r.Server.Exit == nil || !r.Server.Exit.Clean || len(r.Server.Samples) < 5 || r.Server.ThreadsMax < 1 || r.Server.RSSMaxBytes <= 0 {
		t.Errorf("server figures incomplete: %+v", r.Server)
	}
	if len(r.Config.ServerCPUs) == 0 || len(r.Config.ClientCPUs) == 0 || r.Env.Kernel == "" {
		t.Errorf("config/env incomplete: %+v %+v", r.Config, r.Env)
	}
	for _, want := range []string{"connect ramp: 20/20", "req/s", "server: CPU", "client_bound=", "errors: none"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

// Context switches over the window are per thread, never negative; with a
// process per connection that comes and goes (fork, reconnecting) the result and
// the summary say the figure is a lower bound. (Whether epoll-et's figure is
// exact depends on its Go runtime starting no thread in the window, which a
// loaded machine can make it do: the exact case is TestTreeChanged's and
// procstat's TestSwitchesDelta's.)
func TestRunModelCtxSwitches(t *testing.T) {
	dir, bin, cpus := buildServer(t)
	tests := []struct {
		model     string
		extra     []string
		wantExits bool
	}{
		{"epoll-et", nil, false},
		{"fork", []string{"-reconnect"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			r, out := runCmd(t, cpus, append([]string{"-model", tt.model, "-proto", "echo", "-c", "4", "-d", "1s", "-warmup", "200ms", "-q",
				"-server-bin", bin, "-o", filepath.Join(dir, tt.model+".json")}, tt.extra...))
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

// Against a server that dies mid-run, the command reports, writes the partial
// result, returns errFailed, and does not hang.
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
	dir := t.TempDir()
	o, err := parse([]string{"-addr", ln.Addr().String(), "-c", "2", "-d", "1s", "-warmup", "0s", "-q", "-o", filepath.Join(dir, "r.json")}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	r, err := run(context.Background(), o, io.Discard)
	if !errors.Is(err, errFailed) {
		t.Fatalf("err = %v, want errFailed", err)
	}
	if time.Since(begin) > 5*time.Second {
		t.Errorf("took %v", time.Since(begin))
	}
	if r.Load.Requests == 0 || r.Load.ErrorsTotal == 0 {
		t.Errorf("requests %d errors %v: want both", r.Load.Requests, r.Load.Errors)
	}
	if _, err := result.ReadFile(filepath.Join(dir, "r.json")); err != nil {
		t.Errorf("partial result not written: %v", err)
	}
}

// A server that exits mid-run — loadgen's own (-model) or an external one
// (-server-pid) — ends the load soon after, not at -d: the run fails, says the
// server exited, and keeps the partial figures.
func TestRunServerExitsEarly(t *testing.T) {
	dir, bin, cpus := buildServer(t)
	// The server binary, killed 1.5 s after it starts.
	doomed := filepath.Join(dir, "doomed-server")
	script := "#!/bin/sh\nexec timeout -s KILL 1.5 " + bin + " \"$@\"\n"
	if err := os.WriteFile(doomed, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	// An external server, killed 1.5 s after it starts.
	external := func(t *testing.T) []string {
		cmd, addr := startExternal(t, cpus[:1], "timeout", "-s", "KILL", "1.5", bin, "-model", "epoll-et", "-proto", "echo", "-addr", "127.0.0.1:0")
		return []string{"-addr", addr, "-server-pid", fmt.Sprint(cmd.Process.Pid), "-client-cpus", fmt.Sprint(cpus[1])}
	}
	tests := []struct {
		name string
		args func(t *testing.T) []string
	}{
		{"started", func(*testing.T) []string { return []string{"-model", "epoll-et", "-server-bin", doomed} }},
		{"external", external},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parse(append([]string{"-c", "4", "-d", "20s", "-warmup", "200ms", "-q"}, tt.args(t)...), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			begin := time.Now()
			var out bytes.Buffer
			r, err := run(context.Background(), o, &out)
			took := time.Since(begin)
			if perr := cpuset.PinProcess(cpus); perr != nil {
				t.Fatal(perr)
			}
			if !errors.Is(err, errFailed) {
				t.Fatalf("err = %v, want errFailed\n%s", err, out.String())
			}
			if took > 8*time.Second {
				t.Errorf("took %v with -d 20s: the load went on after the server exited", took.Round(time.Millisecond))
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

func TestTreeChanged(t *testing.T) {
	t0 := time.Now()
	at := func(ms int, threads int, pids ...int) procstat.Tree {
		return procstat.Tree{When: t0.Add(time.Duration(ms) * time.Millisecond), Threads: threads, PIDs: pids}
	}
	end := t0.Add(time.Second)
	tests := []struct {
		name    string
		samples []procstat.Tree
		want    bool
	}{
		{"steady", []procstat.Tree{at(100, 6, 1), at(200, 6, 1), at(900, 6, 1)}, false},
		{"steady tree", []procstat.Tree{at(100, 12, 1, 2, 3), at(500, 12, 1, 2, 3)}, false},
		{"a thread more", []procstat.Tree{at(100, 6, 1), at(200, 7, 1)}, true},
		{"a process replaced", []procstat.Tree{at(100, 12, 1, 2), at(200, 12, 1, 3)}, true},
		{"changes outside the window", []procstat.Tree{at(-100, 9, 1, 5), at(100, 6, 1), at(900, 6, 1), at(1100, 2, 1)}, false},
		{"no samples", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := treeChanged(tt.samples, t0, end); got != tt.want {
				t.Errorf("treeChanged = %v, want %v", got, tt.want)
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

// startExternal starts argv pinned to cpus, as a server loadgen did not start
// (killed when the test ends), and returns it and the address from its
// "listening on" line.
func startExternal(t *testing.T, cpus []int, argv ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cpuset.StartPinned(cmd, cpus); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if err != nil || !ok {
		t.Fatalf("%s: first line %q, %v", argv[0], line, err)
	}
	return cmd, addr
}

// runCmd runs the whole command with args, then pins this process back to cpus
// (run pins it to the client CPUs) so the next run and the tests after this one
// see them all. It fails the test if run fails, and returns the result (read
// back from -o when args name one) and what the command printed.
func runCmd(t *testing.T, cpus []int, args []string) (*result.Run, string) {
	t.Helper()
	o, err := parse(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	r, err := run(context.Background(), o, &out)
	if perr := cpuset.PinProcess(cpus); perr != nil {
		t.Fatal(perr)
	}
	if err != nil {
		t.Fatalf("%q: run: %v\n%s", args, err, out.String())
	}
	if i := slices.Index(args, "-o"); i >= 0 && i+1 < len(args) {
		if r, err = result.ReadFile(args[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	return r, out.String()
}

// buildServer builds cmd/server into a temporary directory and returns it, the
// binary and this process's CPUs; it skips in -short mode, on fewer than 2 CPUs
// (server and loadgen are pinned apart), or when the build fails.
func buildServer(t *testing.T) (dir, bin string, cpus []int) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the server")
	}
	cpus, err := cpuset.Available()
	if err != nil || len(cpus) < 2 {
		t.Skip("needs 2 CPUs")
	}
	dir = t.TempDir()
	bin = filepath.Join(dir, "server")
	if out, err := exec.Command("go", "build", "-o", bin, "concbench/cmd/server").CombinedOutput(); err != nil {
		t.Skipf("cannot build the server: %v\n%s", err, out)
	}
	return dir, bin, cpus
}

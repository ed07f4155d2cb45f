package trial

import (
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"concbench/internal/proto"
	"concbench/internal/result"
)

// A model's server with file and http serves its standard files (no -root) and
// every reply verifies.
func TestRunModelFiles(t *testing.T) {
	for _, p := range []string{"file", "http"} {
		if _, err := proto.New(p, proto.Options{Root: t.TempDir()}); errors.Is(err, proto.ErrUnknown) {
			t.Skipf("the server has no %s protocol yet", p)
		}
	}
	bin, cpus := serverBin(t)
	dir := t.TempDir()
	for _, w := range []result.Workload{
		{Proto: "file", File: "64k.bin", Conns: 4, Pipeline: 2},
		{Proto: "http", Path: "/index.html", Conns: 20},
		{Proto: "http", Path: "/1m.bin", Conns: 3, Reconnect: true},
	} {
		w.Duration, w.Warmup = 500*time.Millisecond, 100*time.Millisecond
		r, out := runOK(t, cpus, Options{Model: "epoll-et", ServerBin: bin, Out: filepath.Join(dir, "r.json"), Workload: w})
		what := w.Proto + " " + w.File + w.Path
		if r.Load.Requests == 0 || r.Load.ErrorsTotal != 0 || r.Server == nil || !r.Server.Exit.Clean {
			t.Errorf("%s: requests %d, errors %v, server %+v", what, r.Load.Requests, r.Load.Errors, r.Server)
		}
		if !strings.Contains(out, "CRC32C checked") || !strings.Contains(out, "of content") {
			t.Errorf("%s: summary does not say how replies were checked:\n%s", what, out)
		}
	}
}

// A server the trial did not start (ServerPID) is sampled: its CPU (busy with
// per-request work), memory and threads; it is left running.
func TestServerPID(t *testing.T) {
	bin, cpus := serverBin(t)
	pid, addr := startExternal(t, cpus[:1], bin, "-model", "epoll-et", "-proto", "rpc", "-work", "cpu:100us", "-addr", "127.0.0.1:0")
	w := load("rpc", 4, time.Second, 200*time.Millisecond)
	w.Addr = addr
	r, out := runOK(t, cpus, Options{Workload: w, ServerPID: pid, ClientCPUs: cpus[1:2]})
	s := r.Server
	if s == nil || !s.External || s.Exit != nil || s.PID != pid {
		t.Fatalf("server %+v: want the external pid %d, not stopped", s, pid)
	}
	// Every request cost the server at least 100 µs of CPU: the sampled CPU is at
	// least throughput × 100 µs (less the 10 ms granularity of /proc's CPU ticks),
	// and at most the one CPU it is pinned to. (The machine may be shared with other
	// work, so the server's CPU is not assumed to be saturated.)
	floor := r.Load.Throughput * 100e-6
	if s.CPUCoresMean <= 0 || s.CPUCoresMean < 0.8*floor-0.03 || s.CPUCoresMean > 1.1 {
		t.Errorf("server CPU %.3f cores at %.0f req/s of 100 µs work: want at least %.3f, at most 1", s.CPUCoresMean, r.Load.Throughput, floor)
	}
	if s.RSSMaxBytes <= 0 || s.ThreadsMax < 1 || s.ProcsMax != 1 || len(s.Samples) < 8 {
		t.Errorf("server figures %+v: want memory, threads, one process, samples every 100 ms", s)
	}
	if len(r.Config.ServerCPUs) != 1 || r.Config.ServerCPUs[0] != cpus[0] {
		t.Errorf("server CPUs recorded %v, want [%d]", r.Config.ServerCPUs, cpus[0])
	}
	if !strings.Contains(out, "external") {
		t.Errorf("summary does not say the server is external:\n%s", out)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Errorf("the external server is gone after the run: %v", err)
	}
}

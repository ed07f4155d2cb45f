package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"concbench/internal/proto"
)

func TestParseFileFlags(t *testing.T) {
	self := fmt.Sprint(os.Getpid())
	tests := []struct {
		args []string
		ok   bool
		want string // in the error
	}{
		{[]string{"-addr", "127.0.0.1:1", "-proto", "file"}, true, ""},
		{[]string{"-addr", "127.0.0.1:1", "-proto", "http", "-path", "/any/thing.txt"}, true, ""},
		{[]string{"-model", "epoll-et", "-proto", "http", "-path", "/1m.bin"}, true, ""},
		{[]string{"-model", "epoll-et", "-proto", "http", "-path", "/"}, true, ""},
		{[]string{"-model", "epoll-et", "-proto", "file", "-file", "mine.txt", "-server-arg=-root=/srv"}, true, ""},
		{[]string{"-model", "epoll-et", "-proto", "file", "-file", "mine.txt", "--", "-root", "/srv"}, true, ""},
		{[]string{"-addr", "127.0.0.1:1", "-proto", "file", "-size", "64"}, false, "-size is for echo and rpc"},
		{[]string{"-addr", "127.0.0.1:1", "-proto", "http", "-size", "64"}, false, "-size is for echo and rpc"},
		{[]string{"-addr", "127.0.0.1:1", "-proto", "http", "-file", "1k.bin"}, false, "-file is for -proto file"},
		{[]string{"-addr", "127.0.0.1:1", "-path", "/x"}, false, "-path is for -proto http"},
		{[]string{"-addr", "127.0.0.1:1", "-proto", "file", "-file", "/1k.bin"}, false, "1k.bin, 16k.bin"},
		{[]string{"-addr", "127.0.0.1:1", "-proto", "http", "-path", "1k.bin"}, false, "/1k.bin, /16k.bin"},
		{[]string{"-model", "epoll-et", "-proto", "file", "-file", "2k.bin"}, false, "standard files only: index.html, 1k.bin"},
		{[]string{"-model", "epoll-et", "-proto", "http", "-path", "/2k.bin"}, false, "standard files only: /index.html, /1k.bin"},
		{[]string{"-addr", "127.0.0.1:1", "-proto", "gopher"}, false, "echo, rpc, file or http"},
		{[]string{"-addr", "127.0.0.1:1", "-server-pid", fmt.Sprint(os.Getppid())}, true, ""},
		{[]string{"-addr", "127.0.0.1:1", "-server-pid", self}, false, "want the pid of the server"},
		{[]string{"-addr", "127.0.0.1:1", "-server-pid", "999999999"}, false, "no such process"},
		{[]string{"-model", "epoll-et", "-server-pid", fmt.Sprint(os.Getppid())}, false, "-server-pid is for a server loadgen did not start"},
	}
	for _, tt := range tests {
		o, err := parse(tt.args, io.Discard)
		if (err == nil) != tt.ok || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("parse(%q): err = %v, want ok=%v %q", tt.args, err, tt.ok, tt.want)
			continue
		}
		if err == nil && (o.w.Proto == "file" || o.w.Proto == "http") && o.w.Size != 0 {
			t.Errorf("parse(%q): size %d, want 0 for %s", tt.args, o.w.Size, o.w.Proto)
		}
	}
	var usage bytes.Buffer
	parse([]string{"-h"}, &usage)
	for _, want := range []string{"-proto file -file 1m.bin", "-proto http -path /index.html", "-server-pid"} {
		if !strings.Contains(usage.String(), want) {
			t.Errorf("usage lacks %q", want)
		}
	}
}

// TestRunModelFiles: -model with file and http starts the server on its standard
// files (no -root) and every reply verifies.
func TestRunModelFiles(t *testing.T) {
	for _, p := range []string{"file", "http"} {
		if _, err := proto.New(p, proto.Options{Root: t.TempDir()}); errors.Is(err, proto.ErrUnknown) {
			t.Skipf("the server has no %s protocol yet", p)
		}
	}
	dir, bin, cpus := buildServer(t)
	for _, args := range [][]string{
		{"-proto", "file", "-file", "64k.bin", "-c", "4", "-pipeline", "2"},
		{"-proto", "http", "-path", "/index.html", "-c", "20"},
		{"-proto", "http", "-path", "/1m.bin", "-c", "3", "-reconnect"},
	} {
		r, out := runCmd(t, cpus, append([]string{"-model", "epoll-et", "-d", "500ms", "-warmup", "100ms", "-q",
			"-server-bin", bin, "-o", filepath.Join(dir, "r.json")}, args...))
		if r.Load.Requests == 0 || r.Load.ErrorsTotal != 0 || r.Server == nil || !r.Server.Exit.Clean {
			t.Errorf("%v: requests %d, errors %v, server %+v", args, r.Load.Requests, r.Load.Errors, r.Server)
		}
		if !strings.Contains(out, "CRC32C checked") || !strings.Contains(out, "of content") {
			t.Errorf("%v: summary does not say how replies were checked:\n%s", args, out)
		}
	}
}

// TestServerPID: -server-pid samples a server loadgen did not start: its CPU
// (busy with per-request work), memory and threads, and leaves it running.
func TestServerPID(t *testing.T) {
	_, bin, cpus := buildServer(t)
	cmd, addr := startExternal(t, cpus[:1], bin, "-model", "epoll-et", "-proto", "rpc", "-work", "cpu:100us", "-addr", "127.0.0.1:0")
	r, out := runCmd(t, cpus, []string{"-addr", addr, "-proto", "rpc", "-server-pid", fmt.Sprint(cmd.Process.Pid),
		"-client-cpus", fmt.Sprint(cpus[1]), "-c", "4", "-d", "1s", "-warmup", "200ms", "-q"})
	s := r.Server
	if s == nil || !s.External || s.Exit != nil || s.PID != cmd.Process.Pid {
		t.Fatalf("server %+v: want the external pid %d, not stopped", s, cmd.Process.Pid)
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
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the external server is gone after the run: %v", err)
	}
}

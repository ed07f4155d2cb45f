package trial

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"concbench/internal/kcount"
	"concbench/internal/result"
	"concbench/models"
)

// needKernel skips a test that needs kernel counts where the machine cannot
// count, saying why.
func needKernel(t *testing.T) {
	t.Helper()
	if err := kcount.Available(); err != nil {
		t.Skip("not measured: ", err)
	}
}

// near reports whether got is want within frac of it plus abs.
func near(got, want int64, frac float64, abs int64) bool {
	d := got - want
	if d < 0 {
		d = -d
	}
	return float64(d) <= frac*float64(want)+float64(abs)
}

// TestKernelCountsPerRequest: with one connection and a known number of
// requests, the server's syscalls are what its code makes per request —
// epoll-lt: one epoll_wait that finds the connection ready, one read, one write;
// the reactor: two epoll_ctl more (the switch to write interest and back);
// uring: two io_uring_enter and none of those — and
// loadgen's are its own. The counts are over the window only: the warm-up's
// requests, made before it, are not in them; and a count attributed to the
// wrong side (loadgen's writes to the server, or both) would double.
func TestKernelCountsPerRequest(t *testing.T) {
	bin, cpus := serverBin(t)
	needKernel(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		model string
		per   map[string]float64 // server syscalls per request, by name
	}{
		{"epoll-lt", map[string]float64{"read": 1, "write": 1, "epoll_pwait": 1}},
		{"reactor", map[string]float64{"read": 1, "write": 1, "epoll_ctl": 2}},
		// uring makes no read, write or epoll call: one io_uring_enter submits
		// the reply's send and the next receive and returns with the send's
		// completion, a second waits for the next request.
		{"uring", map[string]float64{"read": 0, "write": 0, "epoll_pwait": 0, "io_uring_enter": 2}},
	} {
		t.Run(tc.model, func(t *testing.T) {
			if err := models.Unavailable(tc.model); err != nil {
				t.Skip(err)
			}
			r, out := runOK(t, cpus, Options{Model: tc.model, ServerBin: bin, Out: filepath.Join(dir, tc.model+".json"),
				Workload: result.Workload{Conns: 1, Requests: 20000, Warmup: 200 * time.Millisecond, Duration: 30 * time.Second}})
			// One connection makes up to ~25k requests a second here: the 200 ms
			// warm-up takes a few thousand of the 20,000, which the window leaves out.
			n := r.Load.Requests
			if n < 2000 || n >= 20000 {
				t.Fatalf("%d requests measured: want most of the 20000, the warm-up's left out", n)
			}
			k := r.Server.Kernel
			if k == nil {
				t.Fatalf("server not counted: %s", r.Server.KernelMissing)
			}
			epollWait := k.Syscalls["epoll_wait"] + k.Syscalls["epoll_pwait"]
			for name, per := range tc.per {
				got := k.Syscalls[name]
				if name == "epoll_pwait" {
					got = epollWait
				}
				// A few syscalls more or less at the window's ends: the request in
				// flight at each, the runtime's own. A syscall the model does not
				// make at all may still come from the runtime (its netpoller's
				// epoll_pwait, a write to wake a thread), more often on a busy
				// machine: up to one per hundred requests, where the model's own
				// would be one or more per request.
				want := int64(per * float64(n))
				ok := near(got, want, 0.02, 10)
				if per == 0 {
					ok = got <= max(10, n/100)
				}
				if !ok {
					t.Errorf("server %s: %d over %d requests, want %d (%.0f per request)", name, got, n, want, per)
				}
			}
			c := r.Client.Kernel
			if c == nil {
				t.Fatalf("loadgen not counted: %s", r.Client.KernelMissing)
			}
			// loadgen sends a request each (send: sendto) and receives a reply
			// each (recv: recvfrom), or more where a reply comes in two reads.
			if !near(c.Syscalls["sendto"], n, 0.02, 10) || c.Syscalls["recvfrom"] < n-10 {
				t.Errorf("loadgen: %d sendto, %d recvfrom over %d requests: want a send each and a receive each or more", c.Syscalls["sendto"], c.Syscalls["recvfrom"], n)
			}
			if k.Voluntary <= 0 || k.UserUS+k.SystemUS <= 0 {
				t.Errorf("server: %d voluntary switches, CPU %d+%d µs: want some of each", k.Voluntary, k.UserUS, k.SystemUS)
			}
			if !strings.Contains(out, "server: ") || !strings.Contains(out, "syscalls/req") {
				t.Errorf("summary lacks the syscalls per request:\n%s", out)
			}
		})
	}
}

// TestKernelCountsChildren: fork with a connection per request starts a child
// per connection, and its tree's counts include them: an execve and a wait4 per
// connection, and clones (the parent's, and each child's runtime's threads).
func TestKernelCountsChildren(t *testing.T) {
	bin, cpus := serverBin(t)
	needKernel(t)
	r, _ := runOK(t, cpus, Options{Model: "fork", ServerBin: bin, Out: filepath.Join(t.TempDir(), "fork.json"),
		Workload: result.Workload{Conns: 2, Reconnect: true, Warmup: 200 * time.Millisecond, Duration: time.Second}})
	k, n := r.Server.Kernel, r.Load.Requests
	if k == nil {
		t.Fatalf("server not counted: %s", r.Server.KernelMissing)
	}
	if n < 20 {
		t.Fatalf("only %d connections: too few to tell", n)
	}
	// The window's ends cut a few connections in two.
	if !near(k.Syscalls["execve"], n, 0.1, 4) || !near(k.Syscalls["wait4"], n, 0.1, 4) {
		t.Errorf("%d execve and %d wait4 over %d connections: want one of each per connection", k.Syscalls["execve"], k.Syscalls["wait4"], n)
	}
	if clones := k.Syscalls["clone"] + k.Syscalls["clone3"]; clones < n {
		t.Errorf("%d clones over %d connections: want at least one per connection", clones, n)
	}
}

// TestKernelCountsUnavailable: counting turned off, or refused by the machine,
// leaves the run as it was and says why instead of showing zeros.
func TestKernelCountsUnavailable(t *testing.T) {
	bin, cpus := serverBin(t)
	w := result.Workload{Conns: 2, Warmup: 50 * time.Millisecond, Duration: 300 * time.Millisecond}
	r, out := runOK(t, cpus, Options{Model: "epoll-et", ServerBin: bin, NoKernelCounts: true, Workload: w})
	for side, missing := range map[string]string{"server": r.Server.KernelMissing, "client": r.Client.KernelMissing} {
		if !strings.Contains(missing, "not measured: disabled") {
			t.Errorf("%s: kernel missing %q, want \"not measured: disabled…\"", side, missing)
		}
	}
	if r.Server.Kernel != nil || r.Client.Kernel != nil || !strings.Contains(out, "kernel counts: not measured: disabled") {
		t.Errorf("counts %+v %+v with counting off; summary:\n%s", r.Server.Kernel, r.Client.Kernel, out)
	}

	// Switches and CPU without syscalls: counted, the syscalls said missing
	// (not zeros), and the summary says so.
	if kcount.Available() == nil {
		r, out = runOK(t, cpus, Options{Model: "epoll-et", ServerBin: bin, NoSyscallCounts: true, Workload: w})
		for side, k := range map[string]*result.Kernel{"server": r.Server.Kernel, "client": r.Client.Kernel} {
			switch {
			case k == nil:
				t.Errorf("%s: not counted with syscalls off: %s %s", side, r.Server.KernelMissing, r.Client.KernelMissing)
			case k.SyscallsMissing != SyscallsNotCounted || k.Syscalls != nil || k.SyscallsTotal != 0:
				t.Errorf("%s: syscalls %v total %d missing %q; want none, and why", side, k.Syscalls, k.SyscallsTotal, k.SyscallsMissing)
			case k.Voluntary <= 0 || k.UserUS+k.SystemUS <= 0:
				t.Errorf("%s: %d voluntary switches, CPU %d+%d µs with syscalls off: want switches and CPU counted", side, k.Voluntary, k.UserUS, k.SystemUS)
			}
		}
		if !strings.Contains(out, "server: syscalls not measured: -count-syscalls=false") {
			t.Errorf("summary does not say the syscalls were not counted:\n%s", out)
		}
	}

	denied := &kcount.UnavailableError{Cause: kcount.NoPermission, Detail: "perf_event_open refused (a test's stand-in)", Err: errors.New("permission denied")}
	defer func(f func() error) { kernelAvailable = f }(kernelAvailable)
	kernelAvailable = func() error { return denied }
	r, _ = runOK(t, cpus, Options{Model: "epoll-et", ServerBin: bin, Workload: w})
	if want := fmt.Sprintf("not measured: %v", denied); r.Server.KernelMissing != want || r.Client.KernelMissing != want || r.Load.Requests == 0 {
		t.Errorf("denied: server %q, client %q, %d requests; want %q and a run", r.Server.KernelMissing, r.Client.KernelMissing, r.Load.Requests, want)
	}
}

// TestSwitchesPerRequest: at 100 connections, neither loadgen's event loop nor a
// locked-thread model's trades its CPU with the Go runtime's monitor thread on
// every pass. Each is measured where it is the busy side — a side that waits
// for the other blocks, one switch each time, as a C loop would: loadgen
// against a plain epoll-lt over echo (the client is the bottleneck), the server
// over rpc with 20 µs of CPU work a request (the server is, by far: with 5 µs
// a CI run found the -race build of loadgen at 99% and the server at 0.91
// cores, waiting for it). There each makes well under one
// context switch per fifty requests, as a C loop does (peers/cclient 0.001 to
// 0.004 here). Before the loops made their non-blocking syscalls without the
// runtime's syscall path (internal/rawio), each made 0.06–0.09: the monitor's
// wake-ups on the measured core. Counted by the kernel, so it cannot pass by
// accident; a timing-tier test (make test runs it alone, after the others),
// since other tests' processes on the same two cores would preempt the loops.
func TestSwitchesPerRequest(t *testing.T) {
	if os.Getenv("CONCBENCH_TIMING_TESTS") == "" {
		t.Skip("a test of the machine's scheduling, run alone by make test: CONCBENCH_TIMING_TESTS=1 go test -run TestSwitchesPerRequest ./loadgen/trial/")
	}
	bin, cpus := serverBin(t)
	needKernel(t)
	const bound = 0.02
	for _, tc := range []struct {
		name, model, proto string
		args               []string
		busy               string // the side whose switches are bounded
	}{
		{"loadgen busy", "epoll-lt", "echo", nil, "loadgen"},
		{"epoll-lt busy", "epoll-lt", "rpc", []string{"-work=cpu:20us"}, "server"},
		{"select busy", "select", "rpc", []string{"-work=cpu:20us"}, "server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Up to three attempts: on a shared two-core host a neighbour can
			// take the measured core for part of a window (a CI run saw the
			// server at 0.96 cores and loadgen at 100%, the server blocking
			// whenever the slowed loadgen fell behind: 0.05 switches a request).
			// The regression this guards against (0.06–0.09 on every window) fails
			// all three; one attempt within the bound, with its premise held, passes.
			var over []string
			for attempt := 1; attempt <= 3; attempt++ {
				got, premise, msg := switchesPerRequest(t, bin, cpus, tc.model, tc.proto, tc.args, tc.busy)
				t.Logf("attempt %d: %s", attempt, msg)
				switch {
				case premise != "":
					t.Logf("attempt %d not counted: %s", attempt, premise)
				case got <= bound:
					return
				default:
					over = append(over, fmt.Sprintf("%.4f", got))
				}
			}
			if len(over) == 0 {
				t.Skipf("%s was not the busy side on any of three attempts: the host slowed the other side below it", tc.busy)
			}
			t.Errorf("%s: %s context switches per request on the attempts where it was the busy side, want under %v", tc.busy, strings.Join(over, ", "), bound)
		})
	}
}

// switchesPerRequest runs one window of TestSwitchesPerRequest's case and
// returns the busy side's context switches per request, or why the window did
// not measure what the case is about (premise, non-empty), and a line to log.
func switchesPerRequest(t *testing.T, bin string, cpus []int, model, proto string, args []string, busy string) (float64, string, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "r.json")
	r, _ := runOK(t, cpus, Options{Model: model, ServerBin: bin, ServerArgs: args, Out: out, NoSyscallCounts: true,
		Workload: result.Workload{Proto: proto, Conns: 100, Warmup: 300 * time.Millisecond, Duration: time.Second}})
	n := float64(r.Load.Requests)
	if n < 10000 {
		t.Fatalf("%v requests in the window: too few to count switches per request", n)
	}
	if r.Server.Kernel == nil || r.Client.Kernel == nil {
		t.Fatalf("no kernel counts: server %q, client %q", r.Server.KernelMissing, r.Client.KernelMissing)
	}
	s, c := r.Server.Kernel, r.Client.Kernel
	msg := fmt.Sprintf("%.0f requests, client %.0f%% busy, server %.2f cores: switches per request server %.4f (voluntary %.4f), loadgen %.4f (voluntary %.4f)",
		n, 100*r.Client.Busy, r.Server.CPUCoresMean, float64(s.CtxSwitches)/n, float64(s.Voluntary)/n, float64(c.CtxSwitches)/n, float64(c.Voluntary)/n)
	// The bound holds for the busy side only: a side that waits for the other
	// blocks once a wait. Where the host slowed the other side so much that
	// the busy one, given its work, still outpaced it (a CI-equivalent run saw
	// 40k requests in the window, client 100% busy, server 0.26 switches a
	// request), the window did not measure what the case is about.
	if busy == "server" {
		if r.Client.Busy >= 0.95 && r.Server.CPUCoresMean < 0.9 {
			return 0, fmt.Sprintf("the server was not the busy side (client %.0f%% busy, server %.2f cores)", 100*r.Client.Busy, r.Server.CPUCoresMean), msg
		}
		return float64(s.CtxSwitches) / n, "", msg
	}
	if r.Server.CPUCoresMean >= 0.95 && r.Client.Busy < 0.9 {
		return 0, fmt.Sprintf("loadgen was not the busy side (client %.0f%% busy, server %.2f cores)", 100*r.Client.Busy, r.Server.CPUCoresMean), msg
	}
	return float64(c.CtxSwitches) / n, "", msg
}

package models_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"concbench/models"
)

// TestMain lets this test binary act as a worker: the process models re-execute
// /proc/self/exe, which under go test is the test binary, not the server.
//
// Under -race a process sleeps atexit_sleep_ms (1s by default) before it exits, so
// that late races get reported; a fork child exits per connection, so children get
// no sleep (races in them are still reported, with exit status 66).
func TestMain(m *testing.M) {
	models.RunWorkerIfChild()
	if !strings.Contains(os.Getenv("GORACE"), "atexit_sleep_ms") {
		os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	}
	os.Exit(m.Run())
}

// long skips a test under -short (make test-short, the inner loop's tier): one
// that takes seconds of data or of waiting per model. make test runs it.
func long(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("long: make test runs it, -short does not")
	}
}

// parallel runs a subtest of model in parallel with its siblings (up to go test's
// -parallel at a time), except for select: its server must get descriptors below
// FD_SETSIZE in a process whose other tests may hold hundreds of them meanwhile.
// A subtest that does not call t.Parallel runs at once, before the parallel
// siblings start (they wait for the parent's function to return), so select's
// subtests run alone.
//
// Only subtests are made parallel: a parallel subtest runs beside its siblings
// only, never beside another top-level test, so the tests that change the
// process (its descriptor limit) or count its children stay alone.
func parallel(t *testing.T, model string) {
	t.Helper()
	skipUnavailable(t, model)
	if model != "select" {
		t.Parallel()
	}
}

// skipUnavailable skips a test of a model this machine cannot run (io_uring
// refused by the kernel), with the kernel's reason.
func skipUnavailable(t testing.TB, model string) {
	t.Helper()
	if err := models.Unavailable(model); err != nil {
		t.Skipf("%s: %v", model, err)
	}
}

// noLeaksAfter records the process's descriptors, goroutines and child processes
// now, and checks, once t and every subtest of it (parallel ones too) are done,
// that none is left beyond them: what a test whose subtests run in parallel checks
// instead of each subtest counting the whole process alone. A failure lists what
// is left, so that the model that left it can be told.
func noLeaksAfter(t *testing.T) {
	t.Helper()
	fds, goroutines, children := openFDs(t), runtime.NumGoroutine(), childPids(t)
	t.Cleanup(func() {
		eventuallyOr(t, fmt.Sprintf("child processes back to %v", children),
			func() bool { return slices.Equal(childPids(t), children) },
			func() string { return describeChildren(t) })
		eventuallyOr(t, fmt.Sprintf("goroutines back to %d", goroutines),
			func() bool { return runtime.NumGoroutine() <= goroutines },
			func() string {
				buf := make([]byte, 1<<20)
				return string(buf[:runtime.Stack(buf, true)])
			})
		eventuallyOr(t, fmt.Sprintf("descriptors back to %d", fds),
			func() bool { return openFDs(t) <= fds },
			func() string { return describeFDs(t) })
	})
}

// eventuallyOr is eventually with what to say besides when it times out.
func eventuallyOr(t *testing.T, what string, cond func() bool, detail func() string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; now:\n%s", what, detail())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// describeFDs lists this process's descriptors and what each refers to.
func describeFDs(t *testing.T) string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, e := range ents {
		target, _ := os.Readlink("/proc/self/fd/" + e.Name())
		fmt.Fprintf(&b, "%s -> %s\n", e.Name(), target)
	}
	return b.String()
}

// describeChildren lists this process's children and their command lines (a
// process model's worker is "concbench-ROLE": concbench-fork, …).
func describeChildren(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, pid := range childPids(t) {
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		fmt.Fprintf(&b, "%d %s\n", pid, strings.ReplaceAll(string(cmd), "\x00", " "))
	}
	return b.String()
}

// workerPids lists this process's children that are workers of role (a process
// model's name), zombies included: a parallel test's own children, told from its
// siblings' by their command line.
func workerPids(t *testing.T, role string) []int {
	t.Helper()
	var pids []int
	for _, pid := range childPids(t) {
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err == nil && strings.HasPrefix(string(cmd), "concbench-"+role+"\x00") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// cachedWorkload is workload(p, rand.New(rand.NewPCG(seed1, seed2)), total,
// maxFrame), made once per test binary for every model that asks for it (under
// -race a 64 MiB workload takes seconds), and a generator in the state the
// generation left it. The slices are shared: read them only.
func cachedWorkload(p string, seed1, seed2 uint64, total, maxFrame int) (req, want []byte, rng *rand.Rand) {
	key := workloadKey{p, seed1, seed2, total, maxFrame}
	v, _ := workloads.LoadOrStore(key, new(cachedStream))
	c := v.(*cachedStream)
	c.once.Do(func() {
		pcg := rand.NewPCG(seed1, seed2)
		c.req, c.want = workload(p, rand.New(pcg), total, maxFrame)
		c.after = *pcg
	})
	after := c.after
	return c.req, c.want, rand.New(&after)
}

type workloadKey struct {
	proto           string
	seed1, seed2    uint64
	total, maxFrame int
}

type cachedStream struct {
	once      sync.Once
	req, want []byte
	after     rand.PCG
}

var workloads sync.Map // workloadKey → *cachedStream

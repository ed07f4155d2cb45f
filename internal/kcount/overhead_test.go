package kcount

import (
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var overhead = flag.Bool("overhead", false, "run TestOverhead: 1,000,000 getppid in 4 configurations, 5 rounds (about a minute)")

// TestOverhead measures what counting costs a cheap syscall: a helper times
// 1,000,000 getppid with no counters open, with DefaultSyscalls open on its
// cgroup, with getppid itself named too, and outside the cgroup while counters
// are open (a syscall tracepoint, once enabled, sends every task's syscalls
// through the tracing path). The configurations interleave, 5 rounds; the log
// has the medians. It asserts only that the counts are right, not a speed.
//
// On the 2-vCPU VM (Linux 6.18) where it was written a getppid took 1.1-1.2 µs
// bare, +0.2 µs with DefaultSyscalls open, +0.3-0.4 µs when getppid is named
// too, and +0.1-0.25 µs for a process outside the cgroup (medians of 3 runs):
// counting costs every process.
func TestOverhead(t *testing.T) {
	if !*overhead {
		t.Skip("a measurement, not a check, and a minute long: go test -run TestOverhead -v ./internal/kcount/ -overhead")
	}
	needCounting(t)
	const n, rounds = 1000000, 5
	cg := newCgroup(t, "overhead")
	timed := func(in *Cgroup) float64 {
		c := startHelper(t, in, "getppid", strconv.Itoa(n))
		out := make([]byte, 64)
		c.out.SetReadDeadline(time.Now().Add(time.Minute))
		m, _ := c.out.Read(out)
		c.wait(t)
		v, err := strconv.ParseFloat(strings.TrimSpace(string(out[:m])), 64)
		if err != nil {
			t.Fatalf("helper said %q: %v", out[:m], err)
		}
		return v
	}
	counted := func(names []string, f func()) Snapshot {
		k, err := Open(cg, nil, names)
		if err != nil {
			t.Fatal(err)
		}
		defer k.Close()
		before := read(t, k)
		f()
		return read(t, k).Sub(before)
	}
	configs := []string{"none", "default", "default+getppid", "outside, counters open"}
	ns := make(map[string][]float64)
	for range rounds {
		ns[configs[0]] = append(ns[configs[0]], timed(cg))
		d := counted(DefaultSyscalls(), func() {
			ns[configs[1]] = append(ns[configs[1]], timed(cg))
			ns[configs[3]] = append(ns[configs[3]], timed(nil))
		})
		if d.SyscallsTotal < n {
			t.Errorf("default: total %d, want at least %d", d.SyscallsTotal, n)
		}
		d = counted(append(DefaultSyscalls(), "getppid"), func() {
			ns[configs[2]] = append(ns[configs[2]], timed(cg))
		})
		if d.Syscalls["getppid"] != n {
			t.Errorf("getppid counted %d, want %d", d.Syscalls["getppid"], n)
		}
	}
	base := median(ns[configs[0]])
	for _, c := range configs {
		t.Logf("%-24s %6.1f ns per getppid (median of %d; rounds %s), +%.1f ns", c, median(ns[c]), rounds, fmtAll(ns[c]), median(ns[c])-base)
	}
}

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	return s[len(s)/2]
}

func fmtAll(v []float64) string {
	var b strings.Builder
	for i, x := range v {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%.1f", x)
	}
	return b.String()
}

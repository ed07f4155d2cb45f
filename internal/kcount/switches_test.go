package kcount

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"concbench/internal/cpuset"
	"concbench/internal/procstat"
)

// procSwitches sums voluntary_ctxt_switches and nonvoluntary_ctxt_switches of
// /proc/PID/status over every thread of pid (the file of the process itself
// shows only its main thread's).
func procSwitches(pid int) (vol, invol int64, threads int, err error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, 0, err
	}
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, task.Name(), "status"))
		if err != nil {
			return 0, 0, 0, err
		}
		v, i, err := procstat.ParseCtxSwitches(b)
		if err != nil {
			return 0, 0, 0, err
		}
		vol, invol, threads = vol+int64(v), invol+int64(i), threads+1
	}
	return vol, invol, threads, nil
}

// quiet waits until pid's threads stop switching (the helper is blocked at its
// sync point and the runtime's threads have gone to sleep) and returns the
// switches that /proc and the counters show then, read /proc, perf, /proc
// again until the two /proc reads agree.
func quiet(t *testing.T, k *Counter, pid int) (vol, invol int64, threads int, s Snapshot) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		v, i, n, err := procSwitches(pid)
		if err != nil {
			t.Fatal(err)
		}
		s = read(t, k)
		v2, i2, _, err := procSwitches(pid)
		if err != nil {
			t.Fatal(err)
		}
		if v == v2 && i == i2 {
			time.Sleep(50 * time.Millisecond)
			if v3, i3, _, _ := procSwitches(pid); v3 == v && i3 == i {
				return v, i, n, s
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("pid %d never stopped switching", pid)
	return
}

// The voluntary/involuntary split agrees with the kernel's per-task counts
// (/proc/PID/status summed over threads, and getrusage of the reaped helper)
// for a helper that only sleeps and one that spins on a CPU shared with a
// busy loop outside the cgroup, so that it is preempted.
func TestSwitchesAgreeWithProc(t *testing.T) {
	needCounting(t)
	cpus, err := cpuset.Available()
	if err != nil {
		t.Fatal(err)
	}
	shared := strconv.Itoa(cpus[len(cpus)-1])
	for _, tc := range []struct {
		name       string
		args       []string
		competitor bool
		// the least the helper must show, so the comparison is not of noise
		minVol, minInvol int64
	}{
		{"sleeper", []string{"sleep", "200", "1000"}, false, 200, 0},
		{"preempted", []string{"spin", shared, "500"}, true, 0, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cg := newCgroup(t, "switches")
			k := openCounter(t, cg, nil, nil)
			if tc.competitor {
				startHelper(t, nil, "spin", shared, "-1")
			}
			start := read(t, k)
			c := startHelper(t, cg, tc.args[0], tc.args[1:]...)
			c.ready(t)
			pv, pi, threads, s := quiet(t, k, c.cmd.Process.Pid)
			mid := s.Sub(start)
			c.release(t)
			ru := c.wait(t).SysUsage().(*syscall.Rusage)
			end := read(t, k).Sub(start)

			t.Logf("at the sync point, %d threads: perf vol %d invol %d (total %d); /proc vol %d invol %d",
				threads, mid.Voluntary, mid.Involuntary, mid.CtxSwitches, pv, pi)
			t.Logf("after the exit: perf vol %d invol %d (total %d); getrusage vol %d invol %d",
				end.Voluntary, end.Involuntary, end.CtxSwitches, ru.Nvcsw, ru.Nivcsw)
			// Opened without syscalls: only the sched_switch program is
			// attached, and the snapshots say the syscalls were not counted.
			if len(k.b.progs) != 1 || mid.SyscallsCounted || mid.Syscalls != nil || mid.SyscallsTotal != 0 {
				t.Errorf("a counter without syscalls has %d programs attached and a window of syscalls counted=%v, %v, total %d; want 1 program and none", len(k.b.progs), mid.SyscallsCounted, mid.Syscalls, mid.SyscallsTotal)
			}
			if mid.Voluntary+mid.Involuntary != mid.CtxSwitches || end.Voluntary+end.Involuntary != end.CtxSwitches {
				t.Errorf("voluntary + involuntary != all switches: %+v, %+v", mid, end)
			}
			if pv < tc.minVol || pi < tc.minInvol {
				t.Fatalf("/proc shows vol %d invol %d, want at least %d and %d: the helper did not behave", pv, pi, tc.minVol, tc.minInvol)
			}
			near := func(what string, got, want, slack int64) {
				if got < want-slack || got > want+slack {
					t.Errorf("%s: perf %d, kernel's per-task count %d (allowed ±%d)", what, got, want, slack)
				}
			}
			near("voluntary at the sync point", mid.Voluntary, pv, switchSlack)
			near("involuntary at the sync point", mid.Involuntary, pi, switchSlack)
			// A thread's counts are folded into its process's as it dies; its
			// switches after that (its last one, voluntary, and now and then a
			// preemption on the way out) are in no per-task count.
			exited := func(what string, got, want int64) {
				if got < want || got > want+int64(threads)+switchSlack {
					t.Errorf("%s: perf %d, getrusage %d: want perf − getrusage in 0..%d (%d threads)", what, got, want, threads+switchSlack, threads)
				}
			}
			exited("voluntary after the exit", end.Voluntary, ru.Nvcsw)
			exited("involuntary after the exit", end.Involuntary, ru.Nivcsw)
		})
	}
}

// switchSlack allows the rare switch the two ways count differently: a task
// that blocks with a signal already pending (Go's preemption signal) is
// voluntary to /proc but runnable, so involuntary, to sched_switch.
const switchSlack = 2

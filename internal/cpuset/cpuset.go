// Package cpuset is CPU affinity for the processes concbench starts and samples:
// the kernel's cpulist format, the default split of the CPUs between a server and
// its load generator, pinning this process, starting a pinned child, and reading a
// process's allowed CPUs. loadgen and bench share it, so a model's server and a
// reference peer get the same CPUs.
package cpuset

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Parse parses a CPU list like "0-3,6" (the kernel's cpulist format).
func Parse(s string) ([]int, error) {
	var out []int
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("cpu list %q: bad CPU %q", s, lo)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("cpu list %q: bad range %q", s, part)
			}
		}
		for c := a; c <= b; c++ {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("cpu list %q is empty", s)
	}
	slices.Sort(out)
	return out, nil
}

// Format writes a sorted CPU list in cpulist form.
func Format(cpus []int) string {
	var b strings.Builder
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if j > i {
			fmt.Fprintf(&b, "%d-%d", cpus[i], cpus[j])
		} else {
			fmt.Fprintf(&b, "%d", cpus[i])
		}
		i = j + 1
	}
	return b.String()
}

// Split is the default pinning: the first half of the CPUs for the server,
// the second half for loadgen.
func Split(avail []int) (server, client []int, err error) {
	if len(avail) < 2 {
		return nil, nil, fmt.Errorf("only %d CPU available: cannot give server and loadgen disjoint CPUs (set -server-cpus and -client-cpus to share on purpose)", len(avail))
	}
	h := len(avail) / 2
	return avail[:h], avail[h:], nil
}

// Available lists the CPUs this process may run on.
func Available() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, os.NewSyscallError("sched_getaffinity", err)
	}
	var out []int
	for c := range 1024 {
		if set.IsSet(c) {
			out = append(out, c)
		}
	}
	return out, nil
}

func set(cpus []int) *unix.CPUSet {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	return &set
}

// PinProcess restricts every thread of this process to cpus. Threads created
// later inherit the mask of the thread that creates them, so the whole Go runtime
// stays on cpus.
func PinProcess(cpus []int) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	set := set(cpus)
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, set); err != nil && err != unix.ESRCH {
			return os.NewSyscallError("sched_setaffinity", err)
		}
	}
	return nil
}

// Allowed reads the Cpus_allowed_list of a process, to check its pinning.
func Allowed(pid int) ([]int, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return nil, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return Parse(strings.TrimSpace(v))
		}
	}
	return nil, fmt.Errorf("pid %d: no Cpus_allowed_list", pid)
}

// StartPinned starts cmd with its threads restricted to cpus (none: unchanged): it
// forks on a locked thread whose affinity is set to cpus for the moment of the
// fork, since a child inherits the mask of the thread that forks it.
func StartPinned(cmd *exec.Cmd, cpus []int) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return os.NewSyscallError("sched_getaffinity", err)
	}
	if len(cpus) > 0 {
		if err := unix.SchedSetaffinity(0, set(cpus)); err != nil {
			return os.NewSyscallError("sched_setaffinity", err)
		}
	}
	err := cmd.Start()
	if err2 := unix.SchedSetaffinity(0, &old); err2 != nil && err == nil {
		err = os.NewSyscallError("sched_setaffinity", err2)
	}
	return err
}

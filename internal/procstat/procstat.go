// Package procstat samples a process tree from /proc: a root pid and all its
// descendants (process models fork workers), summed. Parsing is pure and separate
// from the reading.
//
// CPU time is utime+stime of every live member plus cutime+cstime (the reaped
// children's time), so a short-lived child's CPU is counted once it is waited for.
// Units of /proc/PID/stat times are clock ticks of USER_HZ, 100 on Linux.
package procstat

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// UserHZ is the unit of /proc/PID/stat times (USER_HZ, fixed at 100 on Linux).
const UserHZ = 100

// Sample's errors.
var (
	// ErrGone: the root process no longer exists (or is a zombie: it has exited).
	ErrGone = errors.New("process gone")
	// ErrSampling: /proc could not be read for another reason — this process out
	// of descriptors (EMFILE), a permission — so the sample is missing; the
	// process may well be alive, and a later sample may succeed.
	ErrSampling = errors.New("sampling failed")
)

// readFile reads a /proc file; a variable so that tests can make it fail.
var readFile = os.ReadFile

// gone reports whether a read of /proc/PID failed because the process is not
// there (any more).
func gone(err error) bool { return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) }

// Stat is what concbench reads from one /proc/PID/stat line.
type Stat struct {
	PID, PPID      int
	PGRP           int // process group
	State          byte
	UTime, STime   uint64 // ticks
	CUTime, CSTime uint64 // ticks of waited-for children
	Threads        int
	RSSPages       int64
}

// ParseStat parses a /proc/PID/stat line. The command name (field 2) is in
// parentheses and may itself hold spaces and parentheses: fields are counted from
// the last ')'.
func ParseStat(b []byte) (Stat, error) {
	var s Stat
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return s, fmt.Errorf("stat %q: no command field", trunc(b))
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil {
		return s, fmt.Errorf("stat: pid: %w", err)
	}
	f := bytes.Fields(b[end+1:])
	// f[0] is field 3 (state); field n is f[n-3].
	if len(f) < 22 {
		return s, fmt.Errorf("stat %q: %d fields after the command, want at least 22", trunc(b), len(f))
	}
	s.PID, s.State = pid, f[0][0]
	var errs []error
	num := func(n int) uint64 {
		v, err := strconv.ParseUint(string(f[n-3]), 10, 64)
		errs = append(errs, err)
		return v
	}
	inum := func(n int) int64 {
		v, err := strconv.ParseInt(string(f[n-3]), 10, 64)
		errs = append(errs, err)
		return v
	}
	s.PPID, s.PGRP = int(inum(4)), int(inum(5))
	s.UTime, s.STime = num(14), num(15)
	s.CUTime, s.CSTime = uint64(inum(16)), uint64(inum(17))
	s.Threads = int(inum(20))
	s.RSSPages = inum(24)
	if err := errors.Join(errs...); err != nil {
		return s, fmt.Errorf("stat %q: %w", trunc(b), err)
	}
	return s, nil
}

// ParseCtxSwitches reads voluntary_ctxt_switches and nonvoluntary_ctxt_switches
// from a /proc/PID/task/TID/status file.
func ParseCtxSwitches(b []byte) (vol, invol uint64, err error) {
	var found int
	for line := range bytes.SplitSeq(b, []byte{'\n'}) {
		k, v, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		var dst *uint64
		switch string(k) {
		case "voluntary_ctxt_switches":
			dst = &vol
		case "nonvoluntary_ctxt_switches":
			dst = &invol
		default:
			continue
		}
		n, perr := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
		if perr != nil {
			return 0, 0, fmt.Errorf("status %s: %w", k, perr)
		}
		*dst = n
		found++
	}
	if found != 2 {
		return 0, 0, errors.New("status: context switch counts missing")
	}
	return vol, invol, nil
}

func trunc(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}

// Tree is the process tree of a root pid at one moment, summed.
type Tree struct {
	When time.Time
	PIDs []int // the root and its live descendants
	// CPU is the tree's CPU time so far: with a cgroup, the cgroup's own count
	// (cpu.stat usage_usec: exact, in µs, the processes that left it included);
	// else utime+stime+cutime+cstime summed over the processes, in 10 ms ticks.
	CPU      time.Duration
	RSSBytes int64
	Threads  int
}

// Procs is the number of processes in the tree.
func (t Tree) Procs() int { return len(t.PIDs) }

// Descendants returns root and every process descending from it, given each
// process's parent, breadth first, siblings in ascending order. Pure: the caller
// reads the parents.
func Descendants(root int, parent map[int]int) []int {
	children := map[int][]int{}
	for pid, pp := range parent {
		children[pp] = append(children[pp], pid)
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		kids := children[out[i]]
		slices.Sort(kids) // the same tree gives the same list
		out = append(out, kids...)
	}
	return out
}

// Sample reads the tree rooted at root from procfs (normally "/proc"). It returns
// an error wrapping ErrGone if root does not exist (or is a zombie: it has
// exited), and one wrapping ErrSampling if /proc could not be read (the tree is
// then unknown, not empty).
func Sample(procfs string, root int) (Tree, error) { return SampleIn(procfs, root, "") }

// SampleIn is Sample of a tree that lives in a cgroup v2 of its own (cgroup,
// its directory): the processes are those the cgroup lists, not a scan of
// every process of the machine. "" is Sample.
func SampleIn(procfs string, root int, cgroup string) (Tree, error) {
	t := Tree{When: time.Now()}
	rs, err := readStat(procfs, root)
	switch {
	case err != nil && gone(err), err == nil && rs.State == 'Z':
		return t, fmt.Errorf("pid %d: %w", root, ErrGone)
	case err != nil:
		return t, fmt.Errorf("%w: pid %d: %w", ErrSampling, root, err)
	}
	var names []string
	if cgroup != "" {
		// The tree is the cgroup's processes: one read, where a scan of /proc
		// reads a file per process of the machine (~1 ms here, every sample,
		// on the load generator's CPU).
		b, err := readFile(filepath.Join(cgroup, "cgroup.procs"))
		if err != nil {
			return t, fmt.Errorf("%w: %w", ErrSampling, err)
		}
		names = strings.Fields(string(b))
		if t.CPU, err = CgroupCPU(cgroup); err != nil {
			return t, fmt.Errorf("%w: %w", ErrSampling, err)
		}
	} else {
		ents, err := os.ReadDir(procfs)
		if err != nil {
			return t, fmt.Errorf("%w: %w", ErrSampling, err)
		}
		for _, e := range ents {
			names = append(names, e.Name())
		}
	}
	parent := map[int]int{}
	stats := map[int]Stat{root: rs}
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil || pid == root {
			continue
		}
		s, err := readStat(procfs, pid)
		if err != nil && gone(err) {
			continue // exited between the listing and the read
		}
		if err != nil {
			return t, fmt.Errorf("%w: pid %d: %w", ErrSampling, pid, err)
		}
		parent[pid] = s.PPID
		stats[pid] = s
	}
	page := int64(os.Getpagesize())
	for _, pid := range Descendants(root, parent) {
		s := stats[pid]
		t.PIDs = append(t.PIDs, pid)
		if cgroup == "" {
			t.CPU += TicksDuration(s.UTime + s.STime + s.CUTime + s.CSTime)
		}
		t.RSSBytes += s.RSSPages * page
		t.Threads += s.Threads
	}
	return t, nil
}

func readStat(procfs string, pid int) (Stat, error) {
	b, err := readFile(filepath.Join(procfs, strconv.Itoa(pid), "stat"))
	if err != nil {
		return Stat{}, err
	}
	return ParseStat(b)
}

// Switches are the context switches of one thread so far.
type Switches struct{ Vol, Invol uint64 }

// ThreadSwitches reads the context switches of every thread of pids (from
// /proc/PID/task/TID/status), by thread ID. The kernel keeps these counts per
// thread and drops them when a thread exits, so a sum over the threads alive at
// two moments is not a difference over the interval: compare with SwitchesDelta.
func ThreadSwitches(procfs string, pids []int) map[int]Switches {
	m := make(map[int]Switches)
	for _, pid := range pids {
		tasks, _ := filepath.Glob(filepath.Join(procfs, strconv.Itoa(pid), "task", "*", "status"))
		for _, f := range tasks {
			tid, err := strconv.Atoi(filepath.Base(filepath.Dir(f)))
			if err != nil {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				continue // exited between the glob and the read
			}
			if v, i, err := ParseCtxSwitches(b); err == nil {
				m[tid] = Switches{v, i}
			}
		}
	}
	return m
}

// SwitchesDelta is the context switches made between two ThreadSwitches
// readings: for a thread alive at both, the difference; for one that appeared
// since start, all of its count. Churn counts the threads seen at only one end.
// An exited thread's switches since start are lost with it, and threads born and
// gone in between are never seen: when threads come and go the figures are a
// lower bound (Churn > 0 says so for the threads these two readings saw).
func SwitchesDelta(start, end map[int]Switches) (d Switches, churn int) {
	for tid, e := range end {
		s, ok := start[tid]
		if !ok || e.Vol < s.Vol || e.Invol < s.Invol { // new (or a reused ID)
			s = Switches{}
			churn++
		}
		d.Vol += e.Vol - s.Vol
		d.Invol += e.Invol - s.Invol
	}
	for tid := range start {
		if _, ok := end[tid]; !ok {
			churn++
		}
	}
	return d, churn
}

// TicksDuration converts /proc's ticks (USER_HZ) to a duration.
func TicksDuration(ticks uint64) time.Duration { return time.Duration(ticks) * (time.Second / UserHZ) }

// CgroupCPU reads the CPU time a cgroup v2 (its directory) has used so far, from
// the usage_usec line of its cpu.stat: the kernel's exact count over every
// process that ran in it. Summing /proc's per-process ticks is no substitute for
// a large tree: with a thousand processes each running for less than a tick at
// a time, the sum of their 10 ms ticks read here lagged the cgroup's count by
// more than half.
func CgroupCPU(cgroup string) (time.Duration, error) {
	b, err := readFile(filepath.Join(cgroup, "cpu.stat"))
	if err != nil {
		return 0, err
	}
	return ParseCgroupCPU(b)
}

// ParseCgroupCPU parses a cgroup v2 cpu.stat file's usage_usec.
func ParseCgroupCPU(b []byte) (time.Duration, error) {
	for line := range strings.Lines(string(b)) {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "usage_usec ")
		if !ok {
			continue
		}
		us, err := strconv.ParseUint(v, 10, 63)
		if err != nil {
			return 0, fmt.Errorf("cpu.stat: usage_usec %q: %w", v, err)
		}
		return time.Duration(us) * time.Microsecond, nil
	}
	return 0, fmt.Errorf("cpu.stat: no usage_usec line in %q", trunc(b))
}

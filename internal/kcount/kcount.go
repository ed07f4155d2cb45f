// Package kcount counts, exactly and in the kernel, what a tree of processes
// costs the kernel over a window: syscalls by name and in total, context switches
// (voluntary, involuntary) and CPU time as user and system.
//
// The tree lives in a cgroup v2 made for it (Cgroup): a child cloned into it
// with SysProcAttr.CgroupFD, or a process moved in with Add, and every thread
// and process it makes later, including those that exit before the window ends.
// Counter loads two small BPF programs on the raw tracepoints sys_enter and
// sched_switch (bpf.go): each runs on every syscall and every switch of the
// machine, keeps going only for a task of the cgroup, and adds one to its slot
// in a per-CPU array — a slot per syscall number, one each for voluntary and
// involuntary switches. CPU time is the cgroup's cpu.stat.
//
// How exact: the syscall and switch figures are counts of every sys_enter and
// every switch away from a task of the cgroup, on every CPU, nothing else, not
// samples. cpu.stat's usage_usec is exact (the scheduler's runtime, exited tasks
// included); its user/system split is the kernel's tick-sampled ratio scaled to
// that total, as in getrusage. A switch is involuntary exactly when /proc/PID/status
// counts it so: the task was preempted or is still runnable.
//
// Limits:
//   - A window must not straddle moving processes in or out: a process moved
//     in mid-window counts from the move on.
//   - A Read of a running tree is not one instant: the CPUs' copies are read one
//     after another; windows that begin and end at quiet points are exact.
//   - While a Counter is open every syscall of every process on the machine
//     takes the kernel's syscall-tracing path and runs the program (which stops
//     at once for a task not counted): about +0.2 µs a syscall on this VM (whose
//     cheapest syscall costs 1.1 µs), the same inside the cgroup or not.
//     Opening and closing take a millisecond. A Counter opened without
//     syscalls (Open with none) attaches only the sched_switch program and
//     leaves syscalls at their bare cost; it costs a switch of the machine
//     about as much as the sys_enter program costs a syscall, and switches
//     are two orders of magnitude rarer.
//   - The switches need Linux 5.18 or later (the raw sched_switch tracepoint
//     gives prev_state since then); the syscall names are those of the build's
//     architecture (amd64, arm64).
//
// Counting needs root (or CAP_BPF and CAP_PERFMON) and a cgroup v2 mount.
// Available says cheaply whether both are there; every error that means "cannot
// count here" wraps ErrUnavailable and says why.
package kcount

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// defaultSyscalls are the syscalls every concbench result names; all others are
// in Snapshot.Other.
var defaultSyscalls = []string{
	"read", "recvfrom", "recvmsg", "readv",
	"write", "sendto", "sendmsg", "writev",
	"sendfile", "splice",
	"epoll_wait", "epoll_pwait", "epoll_pwait2", "epoll_ctl",
	"poll", "ppoll", "select", "pselect6",
	"accept", "accept4", "close",
	"futex", "clone", "clone3", "execve", "wait4",
	"nanosleep", "clock_nanosleep",
	"io_uring_enter", "sched_yield", "recvmmsg", "sendmmsg",
}

// DefaultSyscalls returns (a copy of) the names every concbench result reports.
func DefaultSyscalls() []string { return slices.Clone(defaultSyscalls) }

// Snapshot is what a Counter has counted since Open; Sub of two is a window.
type Snapshot struct {
	Syscalls      map[string]int64 `json:"syscalls"`       // by name, for the names asked for and available
	SyscallsTotal int64            `json:"syscalls_total"` // every syscall entered
	CtxSwitches   int64            `json:"ctx_switches"`   // Voluntary + Involuntary
	Voluntary     int64            `json:"voluntary"`
	Involuntary   int64            `json:"involuntary"`
	UserUS        int64            `json:"user_us"`               // cpu.stat user_usec
	SystemUS      int64            `json:"system_us"`             // cpu.stat system_usec
	UsageUS       int64            `json:"usage_us"`              // cpu.stat usage_usec: exact; User+System is scaled to it
	Unavailable   []string         `json:"unavailable,omitempty"` // names asked for that this architecture has no number for
	// SyscallsCounted is false for a Counter opened without syscalls: Syscalls
	// is nil and SyscallsTotal 0, not measured (only switches and CPU were).
	SyscallsCounted bool `json:"syscalls_counted"`
}

// Sub returns s − earlier: the counts of the window between the two Reads.
func (s Snapshot) Sub(earlier Snapshot) Snapshot {
	d := s
	d.Syscalls = nil
	if s.Syscalls != nil {
		d.Syscalls = make(map[string]int64, len(s.Syscalls))
	}
	for name, n := range s.Syscalls {
		d.Syscalls[name] = n - earlier.Syscalls[name]
	}
	d.SyscallsTotal -= earlier.SyscallsTotal
	d.CtxSwitches -= earlier.CtxSwitches
	d.Voluntary -= earlier.Voluntary
	d.Involuntary -= earlier.Involuntary
	d.UserUS -= earlier.UserUS
	d.SystemUS -= earlier.SystemUS
	d.UsageUS -= earlier.UsageUS
	d.Unavailable = slices.Clone(s.Unavailable)
	return d
}

// Other is the syscalls not named: SyscallsTotal minus the named counts.
func (s Snapshot) Other() int64 {
	n := s.SyscallsTotal
	for _, v := range s.Syscalls {
		n -= v
	}
	return n
}

// Counter counts a cgroup's kernel work from Open to Close. It is for one
// goroutine at a time.
type Counter struct {
	cgroup      string // the cgroup's directory, for cpu.stat
	b           *bpfCounter
	names       []string // the named syscalls counted
	nums        []int    // their numbers
	unavailable []string
	syscalls    bool // the sys_enter program is attached
}

// Open starts counting the cgroup's kernel work. syscalls are names
// (DefaultSyscalls, or others of syscallNumbers); one the build's architecture
// has no number for is skipped and listed in Snapshot.Unavailable. No names
// (nil) counts no syscalls at all — only switches and CPU time — and so costs
// the machine's syscalls nothing: the sys_enter program, whose attachment sends
// every syscall of every process through the tracing path, is not attached. cpus is
// unused: the programs count on every CPU (it stays for callers that pin). Errors
// that mean the machine cannot count wrap ErrUnavailable; on any error nothing is
// left loaded.
func Open(c *Cgroup, cpus []int, syscalls []string) (*Counter, error) {
	if c == nil || c.fd < 0 {
		return nil, errors.New("kcount: open: no cgroup (nil or removed)")
	}
	if err := kernelAtLeast(5, 18); err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(c.fd, &st); err != nil {
		return nil, fmt.Errorf("kcount: cgroup %s: %w", c.path, os.NewSyscallError("fstat", err))
	}
	k := &Counter{cgroup: c.path, syscalls: len(syscalls) > 0}
	for _, name := range syscalls {
		if slices.Contains(k.names, name) || slices.Contains(k.unavailable, name) {
			continue // a name twice would count twice in the named sum
		}
		nr, ok := syscallNumbers[name]
		if !ok || nr >= maxSyscall {
			k.unavailable = append(k.unavailable, name)
			continue
		}
		k.names = append(k.names, name)
		k.nums = append(k.nums, nr)
	}
	// A cgroup without cpu.stat (kernel < 4.15) cannot give CPU time: say so now.
	if _, err := k.cpuStat(); err != nil {
		return nil, err
	}
	// A cgroup v2's id, which bpf_get_current_cgroup_id gives for its tasks, is
	// its directory's inode number.
	b, err := openBPF(st.Ino, k.syscalls)
	if err != nil {
		return nil, err
	}
	k.b = b
	return k, nil
}

// release is the running kernel's release (uname -r); a variable so that a test
// can stand in an older one.
var release = func() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", os.NewSyscallError("uname", err)
	}
	return unix.ByteSliceToString(u.Release[:]), nil
}

// kernelAtLeast fails unless the running kernel is major.minor or later.
func kernelAtLeast(major, minor int) error {
	rel, err := release()
	if err != nil {
		return err
	}
	var ma, mi int
	if _, err := fmt.Sscanf(rel, "%d.%d", &ma, &mi); err != nil {
		return fmt.Errorf("kcount: kernel release %q: %w", rel, err)
	}
	if ma < major || ma == major && mi < minor {
		return unavailable(NoBPF, nil, "kernel %s is older than %d.%d, whose raw sched_switch tracepoint gives prev_state", rel, major, minor)
	}
	return nil
}

// Read returns the counts since Open: every CPU's counters summed, and the
// cgroup's cpu.stat.
func (k *Counter) Read() (Snapshot, error) {
	if k.b == nil {
		return Snapshot{}, errors.New("kcount: read: counter closed")
	}
	sum, err := k.b.read()
	if err != nil {
		return Snapshot{}, err
	}
	st, err := k.cpuStat()
	if err != nil {
		return Snapshot{}, err
	}
	s := Snapshot{
		Syscalls:        make(map[string]int64, len(k.names)),
		Voluntary:       int64(sum[slotVoluntary]),
		Involuntary:     int64(sum[slotInvoluntary]),
		UserUS:          st.User,
		SystemUS:        st.System,
		UsageUS:         st.Usage,
		Unavailable:     slices.Clone(k.unavailable),
		SyscallsCounted: k.syscalls,
	}
	s.CtxSwitches = s.Voluntary + s.Involuntary
	if !k.syscalls {
		s.Syscalls = nil
		return s, nil
	}
	for _, n := range sum[:slotOther+1] {
		s.SyscallsTotal += int64(n)
	}
	for i, name := range k.names {
		s.Syscalls[name] = int64(sum[k.nums[i]])
	}
	return s, nil
}

func (k *Counter) cpuStat() (cpuStat, error) {
	p := filepath.Join(k.cgroup, "cpu.stat")
	b, err := os.ReadFile(p)
	if err != nil {
		return cpuStat{}, fmt.Errorf("kcount: cgroup CPU time: %w", err)
	}
	st, err := parseCPUStat(b)
	if err != nil {
		return cpuStat{}, fmt.Errorf("kcount: %s: %w", p, err)
	}
	return st, nil
}

// Close detaches the programs and releases the counters. It may come before or
// after the cgroup's Remove; closing twice is not an error.
func (k *Counter) Close() error {
	if k.b == nil {
		return nil
	}
	err := k.b.close()
	k.b = nil
	return err
}

// Available says, without changing anything, whether this machine can count: a
// cgroup v2 that holds this process and that we may make a cgroup in, a kernel
// recent enough, and BPF allowed to load a raw tracepoint program (one that is
// loaded, not attached, and released at once). Its error wraps ErrUnavailable
// and says why, like Open's.
func Available() error {
	dir, err := ownCgroupDir()
	if err != nil {
		return err
	}
	if err := kernelAtLeast(5, 18); err != nil {
		return err
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.RawTracepoint, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		return bpfError("load a BPF program", err)
	}
	prog.Close()
	// Last: a reader refused BPF is better told that than told about the
	// cgroup, which it could be given write access to alone.
	if err := unix.Access(dir, unix.W_OK); err != nil {
		return unavailable(CgroupCreate, os.NewSyscallError("access", err), "cannot create a cgroup in %s", dir)
	}
	return nil
}

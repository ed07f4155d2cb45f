// Package kcount counts, exactly and in the kernel, what a tree of processes
// costs the kernel over a window: syscalls by name and in total, context switches
// (total, voluntary, involuntary) and CPU time as user and system.
//
// The tree lives in a cgroup v2 made for it (Cgroup): a child cloned into it
// with SysProcAttr.CgroupFD, or a process moved in with Add, and every thread
// and process it makes later, including those that exit before the window ends.
// Counter opens one group of perf counters per CPU on that cgroup:
// raw_syscalls:sys_enter (every syscall), syscalls:sys_enter_NAME for each
// name asked for, the software context-switch counter, and sched:sched_switch
// twice with tracepoint filters that split voluntary from involuntary switches
// the way /proc/PID/status does. CPU time is the cgroup's cpu.stat.
//
// How exact: the syscall and switch figures are the kernel's own event counts,
// not samples: every sys_enter and every switch of a task of the cgroup on the
// counted CPUs, nothing else. cpu.stat's usage_usec is exact (the scheduler's
// runtime, exited tasks included); its user/system split is the kernel's
// tick-sampled ratio scaled to that total, as in getrusage.
//
// Limits:
//   - perf's cgroup events count only while a task of the cgroup runs on one of
//     the CPUs given to Open: pass every CPU the tree may run on (nil: all
//     online CPUs).
//   - A window must not straddle moving processes in or out: a process moved
//     in mid-window counts from the move on.
//   - A Read sums CPUs one after another, so a Read taken while the tree runs
//     may split a concurrent event's CPU across the two ends; windows that begin
//     and end at quiet points (before a start, after an exit) are exact.
//   - Voluntary/involuntary: a switch is involuntary when the task was
//     preempted (prev_state is TASK_REPORT_MAX, read from the kernel's format
//     file, 0x100 on 4.14 to 6.x) or still runnable (prev_state 0). /proc counts
//     a task that went to sleep with a signal already pending as voluntary,
//     sched_switch shows it runnable: such rare switches land in Involuntary here.
//     A thread's switches after its counts were folded into its process's as
//     it died (its last one, voluntary, and now and then a preemption on the
//     way out) are counted here but are in no /proc file or getrusage: up to
//     about one or two per exited thread.
//   - syscalls:sys_enter_NAME tracepoints do not fire for 32-bit compat
//     syscalls; raw_syscalls:sys_enter counts them in the total.
//   - While any counter is open the kernel takes its syscall tracepoint path
//     on every syscall of every process on the machine, not only the cgroup's
//     (TestOverhead measures it, on a VM where a bare getppid costs 1.1-1.2 µs:
//     +0.2 µs in the cgroup, +0.3-0.4 µs for a named syscall, +0.1-0.25 µs
//     for a process outside it).
//   - Close waits for the kernel to unregister each tracepoint (an RCU grace
//     period per distinct tracepoint, ~30 ms each here: ~1 s for
//     DefaultSyscalls). Open once per measured run, not per window.
//
// Counting needs root or CAP_PERFMON (perf_event_paranoid ≤ 0 otherwise), a
// cgroup v2 mount and tracefs. Available says cheaply whether all are there;
// every error that means "cannot count here" wraps ErrUnavailable and says why.
package kcount

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unsafe"

	"concbench/internal/cpuset"

	"golang.org/x/sys/unix"
)

// defaultSyscalls are the syscalls every concbench result names; all others are
// in Snapshot.Other. sendfile64 is the tracepoint's name for sendfile on x86_64.
var defaultSyscalls = []string{
	"read", "recvfrom", "recvmsg", "readv",
	"write", "sendto", "sendmsg", "writev",
	"sendfile64", "splice",
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
	CtxSwitches   int64            `json:"ctx_switches"`   // the software counter; = Voluntary + Involuntary
	Voluntary     int64            `json:"voluntary"`
	Involuntary   int64            `json:"involuntary"`
	UserUS        int64            `json:"user_us"`               // cpu.stat user_usec
	SystemUS      int64            `json:"system_us"`             // cpu.stat system_usec
	UsageUS       int64            `json:"usage_us"`              // cpu.stat usage_usec: exact; User+System is scaled to it
	Unavailable   []string         `json:"unavailable,omitempty"` // names asked for with no tracepoint on this kernel
}

// Sub returns s − earlier: the counts of the window between the two Reads.
func (s Snapshot) Sub(earlier Snapshot) Snapshot {
	d := s
	d.Syscalls = make(map[string]int64, len(s.Syscalls))
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

// The fixed events of every per-CPU group, in group order; the named syscalls
// follow from evNamed on.
const (
	evSwitches    = iota // leader: PERF_COUNT_SW_CONTEXT_SWITCHES
	evTotal              // raw_syscalls:sys_enter
	evVoluntary          // sched:sched_switch, filtered
	evInvoluntary        // sched:sched_switch, filtered
	evNamed
)

// Counter counts a cgroup's kernel work on some CPUs from Open to Close. It is
// for one goroutine at a time.
type Counter struct {
	cgroup      string   // the cgroup's directory, for cpu.stat
	cpus        []int    // counted CPUs
	leaders     []int    // one group leader fd per CPU, in cpus order
	fds         []int    // every fd, leaders included, for Close
	names       []string // the named syscalls counted, in group order from evNamed
	unavailable []string
	buf         []byte
}

// readFormat: one read of a leader gives every counter of its group, and the
// times that show whether the group was ever multiplexed off the CPU.
const readFormat = unix.PERF_FORMAT_GROUP | unix.PERF_FORMAT_TOTAL_TIME_ENABLED | unix.PERF_FORMAT_TOTAL_TIME_RUNNING

// Open starts counting the cgroup's kernel work on cpus (nil: every online CPU;
// a caller that pins the tree passes its CPUs). syscalls are tracepoint names
// (DefaultSyscalls, or others); those the kernel has no tracepoint for are
// skipped and listed in Snapshot.Unavailable. Errors that mean the machine
// cannot count wrap ErrUnavailable; on any error nothing is left open.
func Open(c *Cgroup, cpus []int, syscalls []string) (*Counter, error) {
	if c == nil || c.fd < 0 {
		return nil, errors.New("kcount: open: no cgroup (nil or removed)")
	}
	if cpus == nil {
		var err error
		if cpus, err = onlineCPUs(); err != nil {
			return nil, err
		}
	}
	if len(cpus) == 0 {
		return nil, errors.New("kcount: open: no CPUs to count on")
	}
	root, err := findTracefs()
	if err != nil {
		return nil, err
	}
	total, err := tracepointID(root, "raw_syscalls", "sys_enter")
	if err != nil {
		return nil, unavailable(NoTracepoints, err, "raw_syscalls:sys_enter")
	}
	sw, err := tracepointID(root, "sched", "sched_switch")
	if err != nil {
		return nil, unavailable(NoTracepoints, err, "sched:sched_switch")
	}
	k := &Counter{cgroup: c.path, cpus: slices.Clone(cpus)}
	var ids []uint64
	for _, name := range syscalls {
		if slices.Contains(k.names, name) || slices.Contains(k.unavailable, name) {
			continue // a name twice would count twice in the named sum
		}
		id, err := tracepointID(root, "syscalls", "sys_enter_"+name)
		switch {
		case errors.Is(err, os.ErrNotExist):
			k.unavailable = append(k.unavailable, name)
		case err != nil:
			return nil, fmt.Errorf("kcount: syscall %s: %w", name, err)
		default:
			k.names = append(k.names, name)
			ids = append(ids, id)
		}
	}

	// Involuntary exactly when preempted or still runnable; the two filters
	// partition every switch, so Voluntary + Involuntary = CtxSwitches.
	p := preempted(root)
	filters := [2]string{
		fmt.Sprintf("prev_state != 0 && prev_state != %d", p),
		fmt.Sprintf("prev_state == 0 || prev_state == %d", p),
	}
	for _, cpu := range k.cpus {
		if err := k.openGroup(c, cpu, total, sw, filters, ids); err != nil {
			k.Close()
			return nil, err
		}
	}
	// A cgroup without cpu.stat (kernel < 4.15) cannot give CPU time: say so now.
	if _, err := k.cpuStat(); err != nil {
		k.Close()
		return nil, err
	}
	k.buf = make([]byte, 8*(3+evNamed+len(k.names)))
	for _, fd := range k.leaders {
		if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_ENABLE, 0); err != nil {
			k.Close()
			return nil, fmt.Errorf("kcount: enable counters: %w", os.NewSyscallError("ioctl", err))
		}
	}
	return k, nil
}

// openGroup opens one CPU's group: the leader disabled (Open enables all groups
// at the end), the members enabled so they follow it.
func (k *Counter) openGroup(c *Cgroup, cpu int, total, sw uint64, filters [2]string, ids []uint64) error {
	leader := -1
	open := func(typ uint32, config uint64) (int, error) {
		attr := unix.PerfEventAttr{
			Type:        typ,
			Size:        uint32(unsafe.Sizeof(unix.PerfEventAttr{})),
			Config:      config,
			Read_format: readFormat,
		}
		if leader < 0 {
			attr.Bits = unix.PerfBitDisabled
		}
		fd, err := unix.PerfEventOpen(&attr, c.fd, cpu, leader, unix.PERF_FLAG_PID_CGROUP|unix.PERF_FLAG_FD_CLOEXEC)
		if err != nil {
			return -1, perfError(err, c.path, cpu, len(k.cpus)*(evNamed+len(ids)), leader < 0)
		}
		k.fds = append(k.fds, fd)
		return fd, nil
	}
	var err error
	if leader, err = open(unix.PERF_TYPE_SOFTWARE, unix.PERF_COUNT_SW_CONTEXT_SWITCHES); err != nil {
		return err
	}
	k.leaders = append(k.leaders, leader)
	if _, err = open(unix.PERF_TYPE_TRACEPOINT, total); err != nil {
		return err
	}
	for _, f := range filters {
		fd, err := open(unix.PERF_TYPE_TRACEPOINT, sw)
		if err != nil {
			return err
		}
		if err := unix.IoctlSetString(fd, unix.PERF_EVENT_IOC_SET_FILTER, f); err != nil {
			return fmt.Errorf("kcount: sched_switch filter %q: %w", f, os.NewSyscallError("ioctl", err))
		}
	}
	for _, id := range ids {
		if _, err := open(unix.PERF_TYPE_TRACEPOINT, id); err != nil {
			return err
		}
	}
	return nil
}

// perfError explains a perf_event_open failure. Only a group leader's EINVAL
// and the like say that cgroup counting itself is unsupported: the leader is a
// plain software counter, so the cgroup is all that can be wrong with it.
func perfError(err error, cgroup string, cpu, events int, leader bool) error {
	serr := os.NewSyscallError("perf_event_open", err)
	switch err {
	case unix.EACCES, unix.EPERM:
		return unavailable(NoPermission, serr, "counting a cgroup on a CPU needs root or CAP_PERFMON (kernel.perf_event_paranoid is %s; ≤ 0 would allow it too)", paranoid())
	case unix.EMFILE, unix.ENFILE:
		return fmt.Errorf("kcount: %d perf counters need as many descriptors (raise RLIMIT_NOFILE, or count fewer CPUs or syscalls): %w", events, serr)
	case unix.ENODEV, unix.ENXIO:
		return fmt.Errorf("kcount: CPU %d cannot be counted (offline?): %w", cpu, serr)
	case unix.EBADF, unix.ENOENT, unix.EINVAL, unix.EOPNOTSUPP:
		if !leader {
			break
		}
		why := "kernel without CONFIG_CGROUP_PERF?"
		if b, rerr := os.ReadFile("/proc/self/cgroup"); rerr == nil && slices.Contains(v1Controllers(b), "perf_event") {
			why = "the perf_event controller is bound to a cgroup v1 hierarchy, so v2 cgroups cannot be counted"
		}
		return unavailable(NoCgroupPerf, serr, "perf cannot count cgroup %s (%s)", cgroup, why)
	}
	return fmt.Errorf("kcount: counter on CPU %d: %w", cpu, serr)
}

// paranoid is kernel.perf_event_paranoid's value, for the permission error.
func paranoid() string {
	b, err := os.ReadFile("/proc/sys/kernel/perf_event_paranoid")
	if err != nil {
		return "unreadable"
	}
	return strings.TrimSpace(string(b))
}

// onlineCPUs lists the CPUs online now.
func onlineCPUs() ([]int, error) {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return nil, fmt.Errorf("kcount: online CPUs: %w", err)
	}
	cpus, err := cpuset.Parse(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("kcount: online CPUs: %w", err)
	}
	return cpus, nil
}

// Read returns the counts since Open: the perf groups of every CPU summed, and
// the cgroup's cpu.stat.
func (k *Counter) Read() (Snapshot, error) {
	if k.leaders == nil {
		return Snapshot{}, errors.New("kcount: read: counter closed")
	}
	counts := make([]int64, evNamed+len(k.names))
	for i, fd := range k.leaders {
		n, err := unix.Read(fd, k.buf)
		if err != nil {
			return Snapshot{}, fmt.Errorf("kcount: read counters of CPU %d: %w", k.cpus[i], os.NewSyscallError("read", err))
		}
		// u64 nr; u64 time_enabled; u64 time_running; u64 value[nr]
		if n != len(k.buf) || binary.NativeEndian.Uint64(k.buf) != uint64(len(counts)) {
			return Snapshot{}, fmt.Errorf("kcount: counters of CPU %d: read %d bytes, want %d counters", k.cpus[i], n, len(counts))
		}
		// Software and tracepoint events are never multiplexed; if the kernel
		// says otherwise the counts are estimates, not counts.
		if en, run := binary.NativeEndian.Uint64(k.buf[8:]), binary.NativeEndian.Uint64(k.buf[16:]); en != run {
			return Snapshot{}, fmt.Errorf("kcount: counters of CPU %d ran %d of %d ns: multiplexed, not exact", k.cpus[i], run, en)
		}
		for j := range counts {
			counts[j] += int64(binary.NativeEndian.Uint64(k.buf[24+8*j:]))
		}
	}
	st, err := k.cpuStat()
	if err != nil {
		return Snapshot{}, err
	}
	s := Snapshot{
		Syscalls:      make(map[string]int64, len(k.names)),
		SyscallsTotal: counts[evTotal],
		CtxSwitches:   counts[evSwitches],
		Voluntary:     counts[evVoluntary],
		Involuntary:   counts[evInvoluntary],
		UserUS:        st.User,
		SystemUS:      st.System,
		UsageUS:       st.Usage,
		Unavailable:   slices.Clone(k.unavailable),
	}
	for j, name := range k.names {
		s.Syscalls[name] = counts[evNamed+j]
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

// Close closes every counter. It may come before or after the cgroup's Remove;
// closing twice is not an error. The last close of a tracepoint's counter waits
// for the kernel to unregister the tracepoint, one after another (about a second
// for DefaultSyscalls), unless a Holder keeps them registered.
func (k *Counter) Close() error {
	var errs []error
	for _, fd := range k.fds {
		if err := unix.Close(fd); err != nil {
			errs = append(errs, os.NewSyscallError("close", err))
		}
	}
	k.fds, k.leaders = nil, nil
	return errors.Join(errs...)
}

// Available says, without changing anything, whether this machine can count:
// tracefs and its syscall tracepoints readable, a cgroup v2 that holds this
// process and that we may make a cgroup in, and perf_event_open allowed to
// count a cgroup on a CPU (probed with a disabled counter, closed at once). Its
// error wraps ErrUnavailable and says why, like Open's.
func Available() error {
	if _, err := findTracefs(); err != nil {
		return err
	}
	dir, err := ownCgroupDir()
	if err != nil {
		return err
	}
	cpus, err := onlineCPUs()
	if err != nil {
		return err
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return unavailable(NoCgroup2, os.NewSyscallError("open", err), "cannot open cgroup %s", dir)
	}
	defer unix.Close(fd)
	attr := unix.PerfEventAttr{
		Type:   unix.PERF_TYPE_SOFTWARE,
		Size:   uint32(unsafe.Sizeof(unix.PerfEventAttr{})),
		Config: unix.PERF_COUNT_SW_CONTEXT_SWITCHES,
		Bits:   unix.PerfBitDisabled,
	}
	pfd, err := unix.PerfEventOpen(&attr, fd, cpus[0], -1, unix.PERF_FLAG_PID_CGROUP|unix.PERF_FLAG_FD_CLOEXEC)
	if err != nil {
		return perfError(err, dir, cpus[0], 1, true)
	}
	unix.Close(pfd)
	// Last: a reader refused perf is better told that than told about the
	// cgroup, which it could be given write access to alone.
	if err := unix.Access(dir, unix.W_OK); err != nil {
		return unavailable(CgroupCreate, os.NewSyscallError("access", err), "cannot create a cgroup in %s", dir)
	}
	return nil
}

// Holder keeps the tracepoints a Counter uses registered in the kernel between
// counters, so that closing a Counter is quick: the last close of a
// tracepoint's counter waits for the kernel to unregister it (~30 ms each, a
// second for DefaultSyscalls, one after another), and a run of many short
// measurements (bench's trials, each its own loadgen) would pay that every time.
// While a Holder is open the syscall tracepoint path stays on for every process
// of the machine (see the package doc for its cost), counted or not.
type Holder struct{ fds []int }

// Hold opens one disabled counter on each tracepoint that Open(…, syscalls)
// would use, on the calling process: they count nothing and keep the tracepoints
// registered until Close. Its errors are Open's.
func Hold(syscalls []string) (*Holder, error) {
	root, err := findTracefs()
	if err != nil {
		return nil, err
	}
	points := [][2]string{{"raw_syscalls", "sys_enter"}, {"sched", "sched_switch"}}
	for _, name := range syscalls {
		points = append(points, [2]string{"syscalls", "sys_enter_" + name})
	}
	h := &Holder{}
	for _, p := range points {
		id, err := tracepointID(root, p[0], p[1])
		if errors.Is(err, os.ErrNotExist) && p[0] == "syscalls" {
			continue // Open skips it too
		}
		if err != nil {
			h.Close()
			return nil, unavailable(NoTracepoints, err, "%s:%s", p[0], p[1])
		}
		attr := unix.PerfEventAttr{Type: unix.PERF_TYPE_TRACEPOINT, Size: uint32(unsafe.Sizeof(unix.PerfEventAttr{})),
			Config: id, Bits: unix.PerfBitDisabled}
		fd, err := unix.PerfEventOpen(&attr, 0, -1, -1, unix.PERF_FLAG_FD_CLOEXEC)
		if err != nil {
			h.Close()
			return nil, perfError(err, "(this process)", -1, len(points), false)
		}
		h.fds = append(h.fds, fd)
	}
	return h, nil
}

// Close lets the tracepoints go; it takes the unregistration time Hold saved the
// counters meanwhile.
func (h *Holder) Close() error {
	var errs []error
	for _, fd := range h.fds {
		if err := unix.Close(fd); err != nil {
			errs = append(errs, os.NewSyscallError("close", err))
		}
	}
	h.fds = nil
	return errors.Join(errs...)
}

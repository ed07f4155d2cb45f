package trial

// The kernel's own count of what a trial cost, per side: the server's whole tree
// (born in a cgroup v2 of its own, or a cgroup bench made for a peer) and this
// process (moved into a cgroup of its own for the trial), counted by package
// kcount over exactly the measured window.

import (
	"errors"
	"fmt"
	"os"

	"concbench/internal/kcount"
	"concbench/internal/result"
)

// kernelAvailable is kcount.Available: a variable so that a test can make the
// machine refuse.
var kernelAvailable = kcount.Available

// kernelSide is the counting of one side of the trial.
type kernelSide struct {
	cg      *kcount.Cgroup
	k       *kcount.Counter
	start   kcount.Snapshot
	started bool // start was read
	window  *kcount.Snapshot
	missing string // "not measured: …" once it is known not to be
}

// fail gives up counting the side, saying why (the first reason stands).
func (s *kernelSide) fail(format string, a ...any) {
	if s.missing == "" {
		s.missing = "not measured: " + fmt.Sprintf(format, a...)
	}
	if s.k != nil {
		s.k.Close()
		s.k = nil
	}
}

// kernelCounts is the counting of both sides.
type kernelCounts struct {
	server, client kernelSide
	moved          bool // this process moved itself into client.cg
	noSyscalls     bool // switches and CPU only (Options.NoSyscallCounts)
}

// newKernelCounts decides what can be counted and makes the cgroups: the
// server's (for a server Run starts; or bench's, given as Options.ServerCgroup)
// and this process's. It never fails the trial: a side that cannot be counted
// says why.
func newKernelCounts(o Options) *kernelCounts {
	kc := &kernelCounts{noSyscalls: o.NoSyscallCounts}
	if o.NoKernelCounts {
		kc.server.fail("disabled (-kernel-counts=false)")
		kc.client.fail("disabled (-kernel-counts=false)")
		return kc
	}
	if err := kernelAvailable(); err != nil {
		kc.server.fail("%v", err)
		kc.client.fail("%v", err)
		return kc
	}
	var err error
	switch {
	case o.Model != "":
		if kc.server.cg, err = kcount.NewCgroup("server"); err != nil {
			kc.server.fail("%v", err)
		}
	case o.ServerCgroup != "":
		if kc.server.cg, err = kcount.OpenCgroup(o.ServerCgroup); err != nil {
			kc.server.fail("%v", err)
		}
	case o.ServerPID != 0:
		kc.server.fail("the server was started elsewhere (-server-pid): give the cgroup v2 its tree is in with -server-cgroup DIR to count it")
	default:
		kc.server.fail("no server process is known (-addr without -server-pid)")
	}
	if kc.client.cg, err = kcount.NewCgroup("loadgen"); err != nil {
		kc.client.fail("%v", err)
	}
	return kc
}

// serverCgroupFD is the descriptor a server Run starts is cloned into its cgroup
// by, or -1.
func (kc *kernelCounts) serverCgroupFD() int {
	if kc.server.cg == nil || kc.server.missing != "" {
		return -1
	}
	return kc.server.cg.FD()
}

// serverCgroupDir is the directory of the cgroup the server's whole tree runs
// in, "" if none: the /proc sampler lists the tree from it. A cgroup exists
// only once the server is in it (cloned into it at start, or bench's for a
// peer), counted or not.
func (kc *kernelCounts) serverCgroupDir() string {
	if kc.server.cg == nil {
		return ""
	}
	return kc.server.cg.Path()
}

// open moves this process into its cgroup and opens the counters of both
// sides on their CPUs (nil: all). The server is running by now.
func (kc *kernelCounts) open(serverCPUs, clientCPUs []int) {
	if kc.client.cg != nil && kc.client.missing == "" {
		if err := kc.client.cg.Add(os.Getpid()); err != nil {
			kc.client.fail("%v", err)
		} else {
			kc.moved = true
		}
	}
	for _, s := range []struct {
		side *kernelSide
		cpus []int
	}{{&kc.server, serverCPUs}, {&kc.client, clientCPUs}} {
		if s.side.cg == nil || s.side.missing != "" {
			continue
		}
		names := kcount.DefaultSyscalls()
		if kc.noSyscalls {
			names = nil
		}
		k, err := kcount.Open(s.side.cg, s.cpus, names)
		if err != nil {
			s.side.fail("%v", err)
			continue
		}
		s.side.k = k
	}
}

// mark reads both sides at one end of the window.
func (kc *kernelCounts) mark(start bool) {
	for _, s := range []*kernelSide{&kc.server, &kc.client} {
		if s.k == nil {
			continue
		}
		snap, err := s.k.Read()
		switch {
		case err != nil:
			s.fail("reading the counters: %v", err)
		case start:
			s.start, s.started = snap, true
		case s.started:
			d := snap.Sub(s.start)
			s.window = &d
		}
	}
}

// closeCounters closes both sides' counters, once the window is over.
func (kc *kernelCounts) closeCounters() {
	for _, s := range []*kernelSide{&kc.server, &kc.client} {
		if s.k != nil {
			s.k.Close()
			s.k = nil
		}
	}
}

// release moves this process back and removes the cgroups; the server has
// exited by now (a server left in its cgroup is an error to report, not hide).
func (kc *kernelCounts) release() error {
	kc.closeCounters()
	var errs []error
	if kc.moved {
		if err := kc.client.cg.MoveOut(os.Getpid()); err != nil {
			errs = append(errs, err)
		}
		kc.moved = false
	}
	for _, s := range []*kernelSide{&kc.server, &kc.client} {
		if s.cg != nil {
			if err := s.cg.Remove(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// result is the side's figures over the window, or why there are none.
func (s *kernelSide) result() (*result.Kernel, string) {
	switch {
	case s.missing != "":
		return nil, s.missing
	case s.window == nil:
		return nil, "not measured: the window did not open"
	}
	w := s.window
	k := &result.Kernel{
		Syscalls: w.Syscalls, SyscallsOther: w.Other(), SyscallsTotal: w.SyscallsTotal,
		// The two sched_switch counts, which partition every switch; the software
		// counter of switches ticks at another point of the switch, and a read
		// between the two can find them one apart.
		CtxSwitches: w.Voluntary + w.Involuntary, Voluntary: w.Voluntary, Involuntary: w.Involuntary,
		UserUS: w.UserUS, SystemUS: w.SystemUS,
	}
	if !w.SyscallsCounted {
		k.Syscalls, k.SyscallsMissing = nil, SyscallsNotCounted
	}
	return k, ""
}

// SyscallsNotCounted is Kernel.SyscallsMissing of a run with -count-syscalls=false.
const SyscallsNotCounted = "not measured: -count-syscalls=false (counting syscalls costs every syscall of the machine the kernel's tracing path; switches and CPU were counted)"

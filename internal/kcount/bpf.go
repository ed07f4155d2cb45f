package kcount

// The counting itself: two small BPF programs (github.com/cilium/ebpf, written
// here in its assembler: no compiler needed) on the raw tracepoints sys_enter and
// sched_switch. Each runs on every syscall and every context switch of the
// machine, keeps going only for a task of the counted cgroup
// (bpf_get_current_cgroup_id, the task's cgroup v2), and adds one to its slot of
// a per-CPU array: one slot per syscall number, and one each for voluntary and
// involuntary switches. Reading sums the CPUs' copies.

import (
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// The slots of the counters' value: syscall numbers below maxSyscall each have
// theirs; a larger one counts in slotOther; then the switches.
const (
	maxSyscall      = 512
	slotOther       = maxSyscall
	slotVoluntary   = maxSyscall + 1
	slotInvoluntary = maxSyscall + 2
	nSlots          = maxSyscall + 3
)

// slots is one CPU's counters, the value of the array's one entry.
type slots [nSlots]uint64

// bpfCounter is a Counter's kernel side: the map and the attached programs.
type bpfCounter struct {
	m     *ebpf.Map
	progs []*ebpf.Program
	links []link.Link
}

// openBPF loads and attaches the programs counting for cgroup id cgid: the
// sched_switch one always, the sys_enter one when syscalls is set.
func openBPF(cgid uint64, syscalls bool) (*bpfCounter, error) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "concbench_kc", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: nSlots * 8, MaxEntries: 1})
	if err != nil {
		return nil, bpfError("create the counters' map", err)
	}
	b := &bpfCounter{m: m}
	type program struct {
		tracepoint string
		insns      asm.Instructions
	}
	programs := []program{{"sched_switch", schedSwitchProgram(cgid, m.FD())}}
	if syscalls {
		programs = append(programs, program{"sys_enter", sysEnterProgram(cgid, m.FD())})
	}
	for _, p := range programs {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "concbench_kc", Type: ebpf.RawTracepoint, License: "GPL", Instructions: p.insns})
		if err != nil {
			b.close()
			return nil, bpfError("load the "+p.tracepoint+" program", err)
		}
		b.progs = append(b.progs, prog)
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: p.tracepoint, Program: prog})
		if err != nil {
			b.close()
			return nil, bpfError("attach to the "+p.tracepoint+" raw tracepoint", err)
		}
		b.links = append(b.links, l)
	}
	return b, nil
}

// bpfError explains a failure to load or attach: permission, or a kernel without
// what it takes.
func bpfError(what string, err error) error {
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return unavailable(NoPermission, err, "cannot %s: BPF needs root (or CAP_BPF and CAP_PERFMON); kernel.unprivileged_bpf_disabled is %s", what, sysctl("kernel/unprivileged_bpf_disabled"))
	case errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT), errors.Is(err, unix.EOPNOTSUPP):
		return unavailable(NoBPF, err, "cannot %s (a kernel without BPF raw tracepoints?)", what)
	}
	return fmt.Errorf("kcount: %s: %w", what, err)
}

// sysctl is a /proc/sys value, for error messages.
func sysctl(name string) string {
	b, err := os.ReadFile("/proc/sys/" + name)
	if err != nil {
		return "unreadable"
	}
	return string(slices.DeleteFunc(b, func(c byte) bool { return c == '\n' }))
}

// sysEnterProgram counts a syscall of the cgroup's tasks by number. A raw
// sys_enter tracepoint's arguments are the task's registers and the number.
func sysEnterProgram(cgid uint64, mapFD int) asm.Instructions {
	return append(asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1), // the tracepoint's arguments
		asm.FnGetCurrentCgroupId.Call(),
		asm.LoadImm(asm.R1, int64(cgid), asm.DWord),
		asm.JNE.Reg(asm.R0, asm.R1, "out"),
		asm.LoadMem(asm.R7, asm.R6, 8, asm.DWord), // args[1]: the syscall's number
		// Unsigned: a negative number (an invalid syscall) is large, and other.
		asm.JLT.Imm(asm.R7, maxSyscall, "slot"),
		asm.Mov.Imm(asm.R7, slotOther),
	}, increment(mapFD, "slot")...)
}

// schedSwitchProgram counts a switch away from a task of the cgroup (the
// current task is the one switched away from), voluntary or involuntary as
// /proc/PID/status does: involuntary when it was preempted or is still runnable
// (prev_state 0, TASK_RUNNING), voluntary when it went to sleep. The raw
// tracepoint's arguments are preempt, prev, next and, since Linux 5.18,
// prev_state (checked at Open).
func schedSwitchProgram(cgid uint64, mapFD int) asm.Instructions {
	return append(asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.FnGetCurrentCgroupId.Call(),
		asm.LoadImm(asm.R1, int64(cgid), asm.DWord),
		asm.JNE.Reg(asm.R0, asm.R1, "out"),
		asm.Mov.Imm(asm.R7, slotInvoluntary),
		asm.LoadMem(asm.R1, asm.R6, 0, asm.DWord), // args[0]: preempt
		asm.JNE.Imm(asm.R1, 0, "slot"),
		asm.LoadMem(asm.R1, asm.R6, 24, asm.DWord), // args[3]: prev_state
		asm.JEq.Imm32(asm.R1, 0, "slot"),
		asm.Mov.Imm(asm.R7, slotVoluntary),
	}, increment(mapFD, "slot")...)
}

// increment adds one to slot R7 of this CPU's counters, from the instruction
// labelled at on; "out" ends the program.
func increment(mapFD int, at string) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Imm(asm.R1, 0).WithSymbol(at),
		asm.StoreMem(asm.RFP, -4, asm.R1, asm.Word), // key 0
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.LoadMapPtr(asm.R1, mapFD),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.LSh.Imm(asm.R7, 3), // a slot is 8 bytes
		asm.Add.Reg(asm.R0, asm.R7),
		// A per-CPU value is this CPU's alone, and the program runs to its end
		// without being preempted by itself: a plain add is enough.
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
		asm.Return(),
	}
}

// read sums every CPU's counters.
func (b *bpfCounter) read() (slots, error) {
	var per []slots
	if err := b.m.Lookup(uint32(0), &per); err != nil {
		return slots{}, fmt.Errorf("kcount: read the counters: %w", err)
	}
	var sum slots
	for i := range per {
		for j := range sum {
			sum[j] += per[i][j]
		}
	}
	return sum, nil
}

// close detaches the programs and releases the map.
func (b *bpfCounter) close() error {
	var errs []error
	for _, l := range b.links {
		errs = append(errs, l.Close())
	}
	for _, p := range b.progs {
		errs = append(errs, p.Close())
	}
	errs = append(errs, b.m.Close())
	b.links, b.progs = nil, nil
	return errors.Join(errs...)
}

package rawio

import "golang.org/x/sys/unix"

// sys4 makes the system call trap with four arguments (the fifth and sixth
// zero) straight from assembly (once_amd64.s) and returns the kernel's result
// register: the result, or -errno. On the hot path of a busy loop — two of
// these a request — it replaces x/sys's unix.RawSyscall6, which reaches the
// SYSCALL instruction through three calls (syscall.RawSyscall6's assembly
// entry, its Go body, internal/runtime/syscall's Syscall6): in loadgen's
// profile at 100 connections those layers took about 1% of its CPU.
//
// Pointers passed as uintptr in the argument list of a call to an assembly
// function are kept alive and unmoved for the call's length (the rule that
// covers syscall.Syscall), so callers convert in the call itself.
func sys4(trap, a1, a2, a3, a4 uintptr) uintptr

// once makes one read-like or write-like call (read, write, recvfrom, sendto:
// descriptor, buffer, length, flags; the address arguments nil) without the
// runtime's syscall path, retrying EINTR.
func once(trap uintptr, fd int, p []byte, flags uintptr) (int, error) {
	for {
		r := sys4(trap, uintptr(fd), uintptr(bufPtr(p)), uintptr(len(p)), flags)
		if r <= ^uintptr(0)-4095 { // not -errno (the kernel returns -4095..-1 for errors): the result
			return int(r), nil
		}
		if e := unix.Errno(-r); e != unix.EINTR {
			return -1, e
		}
	}
}

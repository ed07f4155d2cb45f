// Package rawio makes the syscalls that cannot block — a read or write on a
// non-blocking socket, epoll_ctl, and a readiness wait with a zero timeout —
// without the Go runtime's syscall path, so that an event loop on a locked
// thread pays what a C event loop pays for them and no more.
//
// # What the runtime's path costs
//
// unix.Read, unix.Write, unix.EpollWait and the like enter the kernel through
// syscall.Syscall, which tells the scheduler before (entersyscall) and after
// (exitsyscall) that the thread may block: its P — the right to run Go code —
// is marked in a syscall for the call's length. The runtime's monitor thread
// (sysmon) polls every P, every 20 µs while it finds work and backing off to
// 10 ms when it finds none, and takes away a P that has stayed in one syscall
// for a whole poll, to run other goroutines while the thread is in the kernel.
// With GOMAXPROCS 1 (a server pinned to one CPU) every P taken away starts
// that cycle over: sysmon goes back to 20 µs polls (a nanosleep each), and
// once every P is idle it sleeps until a thread coming back from the kernel
// wakes it (a futex wake) to reclaim a P. Each of those is a context switch on
// the CPU being measured: measured here, 0.07–0.09 switches per request for
// the locked-thread loops at 100 connections against 0.04 for the same loop in
// C, and 0.03 nanosleeps per request in their syscall profile that the C loop
// does not make.
//
// # Why skipping it is correct
//
//   - Only calls that return at once come here: a read or write on a
//     descriptor opened O_NONBLOCK (EAGAIN instead of waiting), epoll_ctl, and
//     epoll_pwait, ppoll and pselect6 with a zero timeout. While the kernel
//     does that bounded work no other goroutine can run on this P, exactly as
//     while this goroutine runs Go code; nothing waits for it longer than for
//     any other stretch of Go code.
//   - A wait that may block stays on the runtime's path (unix.EpollWait with a
//     timeout, …): a loop with nothing to do still gives its P away, so that
//     the other goroutines — the signal handler, the stats writer, timers,
//     the GC's workers — run even with GOMAXPROCS 1. The callers try a
//     zero-timeout wait here first only while the loop is busy (see Busy).
//   - Preemption: sysmon preempts a goroutine that has run for 10 ms without
//     yielding by sending its thread a signal; a call here either finishes
//     first or returns EINTR (retried here after the handler ran), and the
//     preemption takes effect in Go code right after, as it would anywhere.
//   - The GC's stop-the-world and its per-P work wait for every running
//     goroutine to reach a safe point: a call here delays that by its own
//     length, a few microseconds, as Go code does.
//   - The race detector sees nothing of the kernel's accesses either way; the
//     buffers passed are owned by the caller for the call's length, as with
//     unix.Read.
//
// The runtime itself polls its network poller the same way: its own
// epoll_wait with a zero timeout does not go through entersyscall.
package rawio

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// zero is the address passed for an empty buffer (as x/sys does): the kernel
// reads no byte of it.
var zero uintptr

func bufPtr[T any](p []T) unsafe.Pointer {
	if len(p) == 0 {
		return unsafe.Pointer(&zero)
	}
	return unsafe.Pointer(&p[0])
}

// zeroTimeout is the zero timeout of ppoll and pselect6. The kernel writes the
// time left back into it — zero into zero — so it can be shared.
var zeroTimeout unix.Timespec

// errno turns a raw syscall's error into the error x/sys would return: nil for
// 0, else the unix.Errno itself (comparable with unix.EAGAIN; errnos below 256
// box without allocating).
func errno(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// Read reads once from the non-blocking descriptor fd into p, retrying EINTR.
// It must not be given a blocking descriptor: it would hold the thread's P
// while it waits.
func Read(fd int, p []byte) (int, error) { return once(unix.SYS_READ, fd, p, 0) }

// Write writes once from p to the non-blocking descriptor fd, retrying EINTR.
// Like Read, never for a blocking descriptor.
func Write(fd int, p []byte) (int, error) { return once(unix.SYS_WRITE, fd, p, 0) }

// Recv is recv(2) (recvfrom without an address): Read for a non-blocking
// socket, and cheaper. read(2) reaches the socket through the file layer
// (vfs_read: the file position lock, the permission hook, fsnotify, the I/O
// accounting, a kiocb), recv straight through the socket layer. On this
// project's machine (Linux 6.18, loopback TCP, 64-byte messages) a round of
// send, recv, send, recv cost 4–8% less than one of write, read, write, read,
// nearly all of it recv's (peers/cclient and loadgen use Recv and Send).
func Recv(fd int, p []byte) (int, error) { return once(unix.SYS_RECVFROM, fd, p, 0) }

// Send is send(2) with MSG_NOSIGNAL: Write for a non-blocking socket, a little
// cheaper (see Recv), and a peer's reset is EPIPE with no SIGPIPE raised.
func Send(fd int, p []byte) (int, error) { return once(unix.SYS_SENDTO, fd, p, unix.MSG_NOSIGNAL) }

// EpollCtl is unix.EpollCtl: epoll_ctl never blocks.
func EpollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	return errno(e)
}

// EpollPoll is epoll_pwait with a zero timeout: the events ready now, without
// waiting. EINTR is returned, not retried (no event, go round).
func EpollPoll(epfd int, events []unix.EpollEvent) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(bufPtr(events)), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, errno(e)
	}
	return int(n), nil
}

// PollNow is ppoll with a zero timeout over fds.
func PollNow(fds []unix.PollFd) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(bufPtr(fds)), uintptr(len(fds)), uintptr(unsafe.Pointer(&zeroTimeout)), 0, 0, 0)
	if e != 0 {
		return 0, errno(e)
	}
	return int(n), nil
}

// SelectNow is pselect6 with a zero timeout over the descriptors below nfd in r
// and w (either may be nil).
func SelectNow(nfd int, r, w *unix.FdSet) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_PSELECT6, uintptr(nfd), uintptr(unsafe.Pointer(r)), uintptr(unsafe.Pointer(w)), 0, uintptr(unsafe.Pointer(&zeroTimeout)), 0)
	if e != 0 {
		return 0, errno(e)
	}
	return int(n), nil
}

// Busy is an event loop's choice, wait by wait, between trying a zero-timeout
// wait here first and going straight to the runtime's blocking wait. A loop
// that found work on its last wait is likely to find more at once: it tries
// the zero-timeout wait first, and blocks only if that finds nothing. A loop
// that had to block and woke to a single event (one client, request by
// request) would find nothing ready on its next wait: it blocks straight away,
// so that it makes the one wait a C loop makes, not two. The zero value
// blocks first.
type Busy struct{ try bool }

// saw records a wait's outcome: n events, found by a zero-timeout wait
// (polled) or by a blocking one.
func (b *Busy) saw(n int, polled bool) { b.try = n > 1 || (polled && n > 0) }

// Wait is one wait of a loop, its timeout timeoutMS (0: do not block; -1: no
// limit): poll — a zero-timeout wait made here — first when the timeout is 0
// or the loop is busy, then, if that found nothing and the timeout allows,
// block — the loop's wait through the runtime's syscall path. It records the
// outcome and returns the wait's events and error (EINTR included, for the
// caller to go round). poll and block do not outlive the call (they cost no
// allocation).
func (b *Busy) Wait(timeoutMS int, poll, block func() (int, error)) (n int, err error) {
	polled := timeoutMS == 0 || b.try
	if polled {
		n, err = poll()
	}
	if !polled || (n == 0 && err == nil && timeoutMS != 0) {
		polled = false
		n, err = block()
	}
	if err == nil {
		b.saw(n, polled)
	}
	return n, err
}

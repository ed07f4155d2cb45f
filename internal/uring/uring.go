// Package uring is a small io_uring ring layer over raw syscalls, without cgo:
// io_uring_setup, the mmap of the submission ring, the completion ring and the
// SQE array, handing out submission entries, submitting them with
// io_uring_enter, and reaping completions. It is the layer a completion-based
// model is built on; it knows nothing of sockets.
//
// The rings are shared with the kernel. The submission ring's tail and the
// completion ring's head are ours: we write them with a release store after
// the entries they publish or free. The submission ring's head and the
// completion ring's tail are the kernel's: we read them with an acquire load
// before the entries they cover. sync/atomic's loads and stores are
// sequentially consistent, which is at least that.
//
// The ring's SQ array (slot → SQE index) is filled once, as the identity:
// entries are handed out and submitted in order, so slot i always holds SQE i.
//
// A Ring is used by one goroutine; nothing in it is safe for concurrent use.
package uring

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Setup flags, feature bits, enter flags and SQ ring flags (from
// <linux/io_uring.h>; x/sys does not define them).
const (
	// SetupSQAff pins the SetupSQPoll thread to Options.SQThreadCPU.
	SetupSQAff = 1 << 2
	// SetupSQPoll: a kernel thread polls the submission ring, so submitting
	// is a store to the ring's tail and no syscall while the thread is awake;
	// it sleeps after Options.SQThreadIdle without work (Submit wakes it).
	SetupSQPoll = 1 << 1
	// SetupCoopTaskrun: the kernel does not interrupt the task to run
	// completion work; it runs when the task next enters the kernel.
	SetupCoopTaskrun = 1 << 8
	// SetupSingleIssuer: one task (thread) submits; required by
	// SetupDeferTaskrun.
	SetupSingleIssuer = 1 << 12
	// SetupDeferTaskrun: completion work runs only when the task enters to
	// get events (Poll, Wait), in a batch, never by interrupting it.
	SetupDeferTaskrun = 1 << 13

	FeatSingleMmap = 1 << 0
	FeatNoDrop     = 1 << 1
	FeatExtArg     = 1 << 8

	enterGetEvents = 1 << 0
	enterSQWakeup  = 1 << 1
	enterSQWait    = 1 << 2
	enterExtArg    = 1 << 3

	sqNeedWakeup = 1 << 0
	sqCQOverflow = 1 << 1

	offSQRing = 0
	offCQRing = 0x8000000
	offSQEs   = 0x10000000
)

// Opcodes used so far.
const (
	OpNop = 0
)

// sqringOffsets and cqringOffsets are struct io_sqring_offsets and
// io_cqring_offsets: where each field of a ring lies in its mmap.
type sqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1 uint32
	UserAddr                                                        uint64
}

type cqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Overflow, CQEs, Flags, Resv1 uint32
	UserAddr                                                        uint64
}

// params is struct io_uring_params (120 bytes).
type params struct {
	SQEntries, CQEntries, Flags, SQThreadCPU, SQThreadIdle, Features, WQFd uint32
	Resv                                                                   [3]uint32
	SQOff                                                                  sqringOffsets
	CQOff                                                                  cqringOffsets
}

// SQE is struct io_uring_sqe (64 bytes): one submission. The fields a model
// sets are named; Union1 is off/addr2, Union2 addr/splice_off_in, OpFlags the
// per-opcode flags (msg_flags, rw_flags, accept_flags, …).
type SQE struct {
	Opcode      uint8
	Flags       uint8
	IOPrio      uint16
	Fd          int32
	Off         uint64
	Addr        uint64
	Len         uint32
	OpFlags     uint32
	UserData    uint64
	BufIndex    uint16
	Personality uint16
	SpliceFdIn  int32
	Addr3       uint64
	_           uint64
}

// CQE is struct io_uring_cqe (16 bytes): one completion. Res is the
// operation's result: a count, or a negative errno.
type CQE struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

// Ring is one io_uring instance and its mapped rings.
type Ring struct {
	fd       int
	flags    uint32 // setup flags
	features uint32

	sqMem, cqMem, sqeMem []byte // cqMem is sqMem with FeatSingleMmap

	sqHead, sqTail, sqFlags, sqDropped *uint32
	sqMask, sqEntries                  uint32
	sqes                               []SQE

	cqHead, cqTail, cqOverflow *uint32
	cqMask, cqEntries          uint32
	cqes                       []CQE

	// Entries handed out by GetSQE up to local, published to the kernel (the
	// ring's tail) up to published.
	local, published uint32

	// Wait's timeout, in the heap: the kernel reads it through addresses
	// passed as integers, which a goroutine stack's move would not update.
	waitArg getEventsArg
	waitTs  unix.Timespec
}

// ErrUnavailable wraps why the kernel refused io_uring (too old: ENOSYS;
// disabled by kernel.io_uring_disabled or a seccomp filter: EPERM, EACCES).
var ErrUnavailable = errors.New("io_uring unavailable")

// Options are a ring's setup flags (SetupSQPoll, SetupDeferTaskrun, …) and,
// with SetupSQPoll, how long its kernel thread polls without work before it
// sleeps (0: the kernel's default, one second; else whole milliseconds,
// rounded up).
type Options struct {
	Flags        uint32
	SQThreadIdle time.Duration
	// SQThreadCPU is the CPU the SetupSQPoll thread is pinned to, with
	// SetupSQAff.
	SQThreadCPU uint32
}

// New sets up a ring of at least entries submission entries (a power of two;
// the completion ring gets twice as many, the kernel's default) as opt says.
func New(entries uint32, opt Options) (*Ring, error) {
	var p params
	p.Flags, p.SQThreadCPU = opt.Flags, opt.SQThreadCPU
	if opt.SQThreadIdle > 0 {
		// In whole milliseconds, rounded up: 0 would be the kernel's second.
		p.SQThreadIdle = uint32((opt.SQThreadIdle + time.Millisecond - 1) / time.Millisecond)
	}
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		err := os.NewSyscallError("io_uring_setup", errno)
		switch errno {
		case unix.ENOSYS, unix.EPERM, unix.EACCES:
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return nil, err
	}
	r := &Ring{fd: int(fd), flags: opt.Flags, features: p.Features}
	if err := r.mmap(&p); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func (r *Ring) mmap(p *params) error {
	sqSize := int(p.SQOff.Array + p.SQEntries*4)
	cqSize := int(p.CQOff.CQEs + p.CQEntries*uint32(unsafe.Sizeof(CQE{})))
	single := p.Features&FeatSingleMmap != 0
	if single {
		sqSize = max(sqSize, cqSize)
	}
	var err error
	if r.sqMem, err = unix.Mmap(r.fd, offSQRing, sqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return os.NewSyscallError("mmap SQ ring", err)
	}
	r.cqMem = r.sqMem
	if !single {
		if r.cqMem, err = unix.Mmap(r.fd, offCQRing, cqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
			r.cqMem = nil
			return os.NewSyscallError("mmap CQ ring", err)
		}
	}
	sqeSize := int(p.SQEntries) * int(unsafe.Sizeof(SQE{}))
	if r.sqeMem, err = unix.Mmap(r.fd, offSQEs, sqeSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return os.NewSyscallError("mmap SQEs", err)
	}
	u32 := func(mem []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&mem[off])) }
	r.sqHead, r.sqTail = u32(r.sqMem, p.SQOff.Head), u32(r.sqMem, p.SQOff.Tail)
	r.sqFlags, r.sqDropped = u32(r.sqMem, p.SQOff.Flags), u32(r.sqMem, p.SQOff.Dropped)
	r.sqMask, r.sqEntries = *u32(r.sqMem, p.SQOff.RingMask), *u32(r.sqMem, p.SQOff.RingEntries)
	array := unsafe.Slice(u32(r.sqMem, p.SQOff.Array), r.sqEntries)
	for i := range array {
		array[i] = uint32(i) // the identity: slot i holds SQE i
	}
	r.sqes = unsafe.Slice((*SQE)(unsafe.Pointer(&r.sqeMem[0])), r.sqEntries)
	r.cqHead, r.cqTail, r.cqOverflow = u32(r.cqMem, p.CQOff.Head), u32(r.cqMem, p.CQOff.Tail), u32(r.cqMem, p.CQOff.Overflow)
	r.cqMask, r.cqEntries = *u32(r.cqMem, p.CQOff.RingMask), *u32(r.cqMem, p.CQOff.RingEntries)
	r.cqes = unsafe.Slice((*CQE)(unsafe.Pointer(&r.cqMem[p.CQOff.CQEs])), r.cqEntries)
	r.local = atomic.LoadUint32(r.sqTail)
	r.published = r.local
	return nil
}

// Close unmaps the rings and closes the ring's descriptor; the kernel cancels
// what is still in flight.
func (r *Ring) Close() error {
	var errs []error
	unmap := func(m []byte) {
		if m != nil {
			if err := unix.Munmap(m); err != nil {
				errs = append(errs, os.NewSyscallError("munmap", err))
			}
		}
	}
	unmap(r.sqeMem)
	if r.cqMem != nil && (r.sqMem == nil || &r.cqMem[0] != &r.sqMem[0]) {
		unmap(r.cqMem) // its own mapping, without FeatSingleMmap
	}
	unmap(r.sqMem)
	r.sqeMem, r.cqMem, r.sqMem, r.sqes, r.cqes = nil, nil, nil, nil, nil
	if r.fd >= 0 {
		if err := unix.Close(r.fd); err != nil {
			errs = append(errs, os.NewSyscallError("close", err))
		}
		r.fd = -1
	}
	return errors.Join(errs...)
}

// Features are the kernel's IORING_FEAT_* bits for this ring.
func (r *Ring) Features() uint32 { return r.features }

// SQEntries and CQEntries are the rings' sizes.
func (r *Ring) SQEntries() uint32 { return r.sqEntries }
func (r *Ring) CQEntries() uint32 { return r.cqEntries }

// GetSQE hands out the next submission entry, zeroed, or nil when the
// submission ring is full (every entry handed out and not yet consumed by the
// kernel): submit, then try again.
func (r *Ring) GetSQE() *SQE {
	head := atomic.LoadUint32(r.sqHead)
	if r.local-head >= r.sqEntries {
		return nil
	}
	sqe := &r.sqes[r.local&r.sqMask]
	*sqe = SQE{}
	r.local++
	return sqe
}

// Pending is how many entries were handed out and not yet submitted.
func (r *Ring) Pending() uint32 { return r.local - r.published }

// Submit publishes the entries handed out since the last submission and
// enters the kernel to consume them, without waiting for completions. It
// returns how many the kernel consumed (with SetupSQPoll, how many were
// published: its thread consumes them).
func (r *Ring) Submit() (int, error) { return r.SubmitAndWait(0) }

// publish makes the entries handed out visible to the kernel and returns how
// many they are.
func (r *Ring) publish() uint32 {
	n := r.local - r.published
	if n > 0 {
		atomic.StoreUint32(r.sqTail, r.local)
		r.published = r.local
	}
	return n
}

// sqpoll reports whether a kernel thread consumes the submission ring.
func (r *Ring) sqpoll() bool { return r.flags&SetupSQPoll != 0 }

// enterFlags are the flags an enter needs beyond getting events: waking a
// submission thread that went to sleep.
func (r *Ring) enterFlags() uintptr {
	if r.sqpoll() && atomic.LoadUint32(r.sqFlags)&sqNeedWakeup != 0 {
		return enterSQWakeup
	}
	return 0
}

// SubmitAndWait is Submit, then waits until at least wait completions are in
// the completion ring (0: does not wait). With nothing to submit and nothing to
// wait for it makes no syscall, unless the kernel holds completions that
// overflowed the ring: then it enters to have them flushed. With SetupSQPoll
// it enters only to wait or to wake the submission thread.
func (r *Ring) SubmitAndWait(wait uint32) (int, error) {
	n := r.publish()
	flags := r.enterFlags()
	if wait > 0 || atomic.LoadUint32(r.sqFlags)&sqCQOverflow != 0 {
		flags |= enterGetEvents
	}
	if r.sqpoll() {
		if flags == 0 {
			return int(n), nil
		}
	} else if n == 0 && flags == 0 {
		return 0, nil
	}
	for {
		done, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(n), uintptr(wait), flags, 0, 0)
		switch errno {
		case 0:
			if r.sqpoll() {
				return int(n), nil
			}
			return int(done), nil
		case unix.EINTR:
			if wait == 0 {
				return 0, nil
			}
			continue
		}
		return int(done), os.NewSyscallError("io_uring_enter", errno)
	}
}

// NextSQE is GetSQE that makes room when the submission ring is full: it
// submits what is pending (with SetupSQPoll, waits for the kernel's thread
// to consume some) and tries again.
func (r *Ring) NextSQE() (*SQE, error) {
	if sqe := r.GetSQE(); sqe != nil {
		return sqe, nil
	}
	if r.sqpoll() {
		r.publish()
		if _, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), 0, 0, r.enterFlags()|enterSQWait, 0, 0); errno != 0 && errno != unix.EINTR {
			return nil, os.NewSyscallError("io_uring_enter", errno)
		}
	} else if _, err := r.Submit(); err != nil {
		return nil, err
	}
	if sqe := r.GetSQE(); sqe != nil {
		return sqe, nil
	}
	return nil, fmt.Errorf("io_uring: submission ring of %d entries still full after submitting", r.sqEntries)
}

// Poll submits what is pending and has the kernel post the completions that
// are ready, without waiting, and returns how many the completion ring holds.
// It enters the kernel with a raw syscall, outside the Go runtime's syscall
// path (see package rawio: an enter that does not wait returns at once). With
// SetupSQPoll and no thread to wake it makes no syscall: the kernel's thread
// posts completions by itself.
func (r *Ring) Poll() (int, error) {
	n := r.publish()
	flags := r.enterFlags()
	if !r.sqpoll() || atomic.LoadUint32(r.sqFlags)&sqCQOverflow != 0 {
		flags |= enterGetEvents
	}
	if flags != 0 {
		_, _, errno := unix.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(n), 0, flags, 0, 0)
		if errno != 0 && errno != unix.EINTR && errno != unix.EBUSY {
			return 0, os.NewSyscallError("io_uring_enter", errno)
		}
	}
	return r.Ready(), nil
}

// getEventsArg is struct io_uring_getevents_arg: an enter's timeout
// (IORING_ENTER_EXT_ARG).
type getEventsArg struct {
	Sigmask   uint64
	SigmaskSz uint32
	MinWait   uint32
	Ts        uint64
}

// Wait submits what is pending and blocks until at least one completion is
// in the ring or timeout has passed (a negative timeout: no limit), through
// the runtime's syscall path (the thread gives its P away while it sleeps).
// A timeout or a signal returns no error. It returns how many completions the
// ring holds. A timeout needs IORING_FEAT_EXT_ARG (kernel 5.11).
func (r *Ring) Wait(timeout time.Duration) (int, error) {
	n := r.publish()
	flags := r.enterFlags() | enterGetEvents
	argp, argsz := uintptr(0), uintptr(0)
	if timeout >= 0 {
		r.waitTs = unix.NsecToTimespec(int64(timeout))
		r.waitArg = getEventsArg{Ts: uint64(uintptr(unsafe.Pointer(&r.waitTs)))}
		flags |= enterExtArg
		argp, argsz = uintptr(unsafe.Pointer(&r.waitArg)), unsafe.Sizeof(r.waitArg)
	}
	_, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(n), 1, flags, argp, argsz)
	switch errno {
	case 0, unix.ETIME, unix.EINTR, unix.EBUSY:
		// EBUSY: completions overflowed and wait to be reaped first.
	default:
		return 0, os.NewSyscallError("io_uring_enter", errno)
	}
	return r.Ready(), nil
}

// Ready is how many completions the ring holds, not yet seen.
func (r *Ring) Ready() int { return int(atomic.LoadUint32(r.cqTail) - *r.cqHead) }

// PeekCQE returns the oldest completion not yet marked seen, or nil.
func (r *Ring) PeekCQE() *CQE {
	head := *r.cqHead // ours: only this goroutine writes it
	if head == atomic.LoadUint32(r.cqTail) {
		return nil
	}
	return &r.cqes[head&r.cqMask]
}

// CQESeen frees the completion PeekCQE returned, for the kernel to reuse.
func (r *Ring) CQESeen() { atomic.StoreUint32(r.cqHead, *r.cqHead+1) }

// Overflowed reports whether the kernel holds completions the completion ring
// had no room for (kept, with FeatNoDrop; SubmitAndWait flushes them into the
// ring as it empties), and how many it dropped outright (without FeatNoDrop).
func (r *Ring) Overflowed() (held bool, dropped uint32) {
	return atomic.LoadUint32(r.sqFlags)&sqCQOverflow != 0, atomic.LoadUint32(r.cqOverflow)
}

// Opcodes and flags of the operations a server submits (<linux/io_uring.h>).
const (
	OpPollAdd     = 6
	OpSendMsg     = 9
	OpRecvMsg     = 10
	OpAccept      = 13
	OpAsyncCancel = 14
	OpClose       = 19
	OpSend        = 26
	OpRecv        = 27
	OpSplice      = 30

	cancelAll = 1 << 0 // IORING_ASYNC_CANCEL_ALL: every match, not the first
	cancelFD  = 1 << 1 // IORING_ASYNC_CANCEL_FD: match by descriptor

	acceptMultishot = 1 << 0 // in SQE.IOPrio of an accept

	// CQEFMore, in a completion's Flags, says the operation (a multishot one)
	// goes on and will complete again.
	CQEFMore = 1 << 1
)

// The Prep functions fill an SQE from GetSQE for one operation. A buffer
// given to the kernel (PrepRecv, PrepSend) must stay referenced, and unused by
// anything else, until the operation completes: the kernel writes or reads it
// asynchronously. (Go's collector does not move heap memory, so an address
// stays valid while the buffer is alive.)

// PrepAcceptMultishot accepts connections on the listening descriptor fd
// until cancelled or an error: one completion per connection (Res is its
// descriptor, opened with flags, e.g. SOCK_NONBLOCK|SOCK_CLOEXEC), each with
// CQEFMore while the accept goes on.
func PrepAcceptMultishot(sqe *SQE, fd int, flags uint32, userData uint64) {
	sqe.Opcode, sqe.Fd, sqe.IOPrio, sqe.OpFlags, sqe.UserData = OpAccept, int32(fd), acceptMultishot, flags, userData
}

// PrepRecv receives into buf from the socket fd (msg flags in flags); Res is
// the bytes received, 0 at the end of input.
func PrepRecv(sqe *SQE, fd int, buf []byte, flags uint32, userData uint64) {
	sqe.Opcode, sqe.Fd, sqe.Addr, sqe.Len, sqe.OpFlags, sqe.UserData = OpRecv, int32(fd), uint64(uintptr(bufAddr(buf))), uint32(len(buf)), flags, userData
}

// PrepSend sends buf on the socket fd; Res is the bytes sent, which may be
// fewer than len(buf): the caller resubmits the rest.
func PrepSend(sqe *SQE, fd int, buf []byte, flags uint32, userData uint64) {
	sqe.Opcode, sqe.Fd, sqe.Addr, sqe.Len, sqe.OpFlags, sqe.UserData = OpSend, int32(fd), uint64(uintptr(bufAddr(buf))), uint32(len(buf)), flags, userData
}

// PrepClose closes the descriptor fd.
func PrepClose(sqe *SQE, fd int, userData uint64) {
	sqe.Opcode, sqe.Fd, sqe.UserData = OpClose, int32(fd), userData
}

// PrepCancel cancels the operation submitted with user data target; its own
// completion (userData) says whether it found it (0, or -ENOENT, -EALREADY),
// and the cancelled operation completes with -ECANCELED.
func PrepCancel(sqe *SQE, target, userData uint64) {
	sqe.Opcode, sqe.Fd, sqe.Addr, sqe.UserData = OpAsyncCancel, -1, target, userData
}

// PrepCancelFD cancels every operation in flight on the descriptor fd; its
// own completion's Res is how many it found (0 if none), and each of them
// completes with -ECANCELED.
func PrepCancelFD(sqe *SQE, fd int, userData uint64) {
	sqe.Opcode, sqe.Fd, sqe.OpFlags, sqe.UserData = OpAsyncCancel, int32(fd), cancelAll|cancelFD, userData
}

// PrepPollAdd completes once fd has one of events (POLLIN, …); Res is the
// events it has.
func PrepPollAdd(sqe *SQE, fd int, events uint32, userData uint64) {
	sqe.Opcode, sqe.Fd, sqe.OpFlags, sqe.UserData = OpPollAdd, int32(fd), events, userData
}

// NoOffset is a splice side without an offset: a pipe's, or a socket's.
const NoOffset = -1

// PrepSplice moves up to n bytes from fdIn at offIn to fdOut at offOut
// (either offset NoOffset, and one of the two a pipe) with splice(2)'s flags,
// without copying them through user space. Res is the bytes moved: 0 at the
// end of fdIn, possibly fewer than n.
func PrepSplice(sqe *SQE, fdIn int, offIn int64, fdOut int, offOut int64, n int, flags uint32, userData uint64) {
	sqe.Opcode, sqe.Fd, sqe.Off, sqe.Addr = OpSplice, int32(fdOut), uint64(offOut), uint64(offIn)
	sqe.Len, sqe.OpFlags, sqe.SpliceFdIn, sqe.UserData = uint32(n), flags, int32(fdIn), userData
}

func bufAddr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

// Provided buffers: a ring of buffers registered with the kernel
// (IORING_REGISTER_PBUF_RING, kernel 5.19+), from which a receive submitted
// with BufferSelect takes one when data arrives — so a connection that waits
// holds no buffer of its own. The completion names the buffer it filled
// (CQEFBuffer, its id in Flags>>16); the caller gives it back with Recycle
// once done with the bytes.
const (
	sqeBufferSelect = 1 << 5 // IOSQE_BUFFER_SELECT, in SQE.Flags
	recvMultishot   = 1 << 1 // IORING_RECV_MULTISHOT, in SQE.IOPrio of a recv

	// CQEFBuffer, in a completion's Flags, says it used a provided buffer,
	// whose id is Flags >> CQEBufferShift.
	CQEFBuffer     = 1 << 0
	CQEBufferShift = 16

	registerPbufRing   = 22
	unregisterPbufRing = 23
)

// bufRingEntry is struct io_uring_buf (16 bytes); the ring's tail is the
// first entry's last 16 bits (its resv field).
type bufRingEntry struct {
	Addr uint64
	Len  uint32
	Bid  uint16
	Resv uint16
}

// bufReg is struct io_uring_buf_reg, the argument of registering and
// unregistering a buffer ring.
type bufReg struct {
	RingAddr    uint64
	RingEntries uint32
	Bgid        uint16
	Flags       uint16
	Resv        [3]uint64
}

// registerBufRing registers (registerPbufRing) or unregisters
// (unregisterPbufRing) the buffer ring reg describes.
func (r *Ring) registerBufRing(op uintptr, reg *bufReg) error {
	if _, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), op, uintptr(unsafe.Pointer(reg)), 1, 0, 0); errno != 0 {
		name := "PBUF_RING"
		if op == unregisterPbufRing {
			name = "UNREGISTER_PBUF_RING"
		}
		return os.NewSyscallError("io_uring_register "+name, errno)
	}
	return nil
}

// BufRing is a registered ring of equal buffers, one group.
type BufRing struct {
	r       *Ring
	group   uint16
	mem     []byte // the ring of entries, page-aligned (an anonymous mapping)
	entries []bufRingEntry
	tail    *uint16
	mask    uint16
	bufs    [][]byte // buffer id → its bytes
	local   uint16   // tail as we have filled it
}

// NewBufRing registers count buffers of size bytes each (count a power of
// two, at most 32768) as buffer group group, all given to the kernel.
func (r *Ring) NewBufRing(group uint16, count, size int) (*BufRing, error) {
	if count <= 0 || count > 1<<15 || count&(count-1) != 0 {
		return nil, fmt.Errorf("buffer ring of %d entries: want a power of two up to 32768", count)
	}
	if size <= 0 {
		return nil, fmt.Errorf("buffers of %d bytes: want at least 1", size)
	}
	mem, err := unix.Mmap(-1, 0, count*int(unsafe.Sizeof(bufRingEntry{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANONYMOUS|unix.MAP_PRIVATE|unix.MAP_POPULATE)
	if err != nil {
		return nil, os.NewSyscallError("mmap buffer ring", err)
	}
	b := &BufRing{r: r, group: group, mem: mem, mask: uint16(count - 1)}
	b.entries = unsafe.Slice((*bufRingEntry)(unsafe.Pointer(&mem[0])), count)
	b.tail = &b.entries[0].Resv
	reg := bufReg{RingAddr: uint64(uintptr(unsafe.Pointer(&mem[0]))), RingEntries: uint32(count), Bgid: group}
	if err := r.registerBufRing(registerPbufRing, &reg); err != nil {
		unix.Munmap(mem)
		return nil, err
	}
	all := make([]byte, count*size)
	for id := range count {
		b.bufs = append(b.bufs, all[id*size:(id+1)*size:(id+1)*size])
		b.put(uint16(id))
	}
	b.publish()
	return b, nil
}

// put queues buffer id for the kernel; publish makes the queued ones visible.
func (b *BufRing) put(id uint16) {
	buf := b.bufs[id]
	e := &b.entries[b.local&b.mask]
	e.Addr, e.Len, e.Bid = uint64(uintptr(unsafe.Pointer(&buf[0]))), uint32(len(buf)), id
	b.local++
}

func (b *BufRing) publish() { atomicStoreUint16(b.tail, b.local) }

// Buffer is the buffer a completion with CQEFBuffer filled: its first n bytes
// (n the completion's Res).
func (b *BufRing) Buffer(cqeFlags uint32) (id uint16, buf []byte) {
	id = uint16(cqeFlags >> CQEBufferShift)
	return id, b.bufs[id]
}

// Recycle gives buffer id back to the kernel.
func (b *BufRing) Recycle(id uint16) {
	b.put(id)
	b.publish()
}

// Close unregisters the group and unmaps its ring; the buffers are garbage
// once no operation of the group is in flight.
func (b *BufRing) Close() error {
	var errs []error
	if err := b.r.registerBufRing(unregisterPbufRing, &bufReg{Bgid: b.group}); err != nil {
		errs = append(errs, err)
	}
	if b.mem != nil {
		if err := unix.Munmap(b.mem); err != nil {
			errs = append(errs, os.NewSyscallError("munmap buffer ring", err))
		}
		b.mem, b.entries, b.tail = nil, nil, nil
	}
	return errors.Join(errs...)
}

// PrepRecvMultishot receives from the socket fd into buffers of group, one
// completion per arrival (CQEFBuffer set, CQEFMore while it goes on), until
// the end of input (Res 0), an error, the group running out of buffers
// (-ENOBUFS: recycle, then submit again) or a cancel.
func PrepRecvMultishot(sqe *SQE, fd int, group uint16, userData uint64) {
	sqe.Opcode, sqe.Fd, sqe.IOPrio, sqe.Flags, sqe.BufIndex, sqe.UserData = OpRecv, int32(fd), recvMultishot, sqeBufferSelect, group, userData
}

// PrepRecvSelect receives once from the socket fd into a buffer of group
// (CQEFBuffer set in the completion), when data arrives; -ENOBUFS if the
// group has none left.
func PrepRecvSelect(sqe *SQE, fd int, group uint16, userData uint64) {
	sqe.Opcode, sqe.Fd, sqe.Flags, sqe.BufIndex, sqe.UserData = OpRecv, int32(fd), sqeBufferSelect, group, userData
}

// Datagrams: recvmsg says who sent each message, and sendmsg where it goes.
// A msghdr handed to the kernel (PrepSendMsg, PrepRecvMsg,
// PrepRecvMsgMultishot), its iovecs, its name and the bytes they point at
// must stay alive and unchanged until the operation's last completion, and be
// in the heap: the kernel keeps their addresses, which a goroutine stack's
// move would not update (a local whose address does not escape may live on
// the stack).

// PrepSendMsg sends the message msg describes — its iovecs' bytes, to its
// name, a datagram's destination — on the socket fd with msg flags in flags
// (MSG_NOSIGNAL is always added). With MSG_DONTWAIT a socket without room
// completes the send with -EAGAIN (or -ENOBUFS) at once; without it the
// kernel waits for room as a blocking sendmsg does. Res is the bytes sent.
func PrepSendMsg(sqe *SQE, fd int, msg *unix.Msghdr, flags uint32, userData uint64) {
	sqe.Opcode, sqe.Fd, sqe.Addr, sqe.Len, sqe.OpFlags, sqe.UserData = OpSendMsg, int32(fd), uint64(uintptr(unsafe.Pointer(msg))), 1, flags, userData
}

// PrepRecvMsg receives one message from the socket fd into msg's iovecs,
// when one arrives, as recvmsg(2) with flags: Res is the bytes received (with
// MSG_TRUNC in flags, a datagram's real length, which may exceed the
// iovecs), and the kernel writes back msg's Namelen (the sender's address is
// in its name) and Flags (MSG_TRUNC if the datagram did not fit).
func PrepRecvMsg(sqe *SQE, fd int, msg *unix.Msghdr, flags uint32, userData uint64) {
	sqe.Opcode, sqe.Fd, sqe.Addr, sqe.Len, sqe.OpFlags, sqe.UserData = OpRecvMsg, int32(fd), uint64(uintptr(unsafe.Pointer(msg))), 1, flags, userData
}

// PrepRecvMsgMultishot receives messages from the socket fd into buffers of
// group, one completion per message (CQEFBuffer set, CQEFMore while it goes
// on; kernel 6.0+), until an error, the group running out of buffers
// (-ENOBUFS: recycle, then submit again), a cancel, or a message with no
// payload (a datagram of 0 bytes: its completion, with its buffer, is the
// last). msg is a template read once, at submission: its Namelen and
// Controllen are the room each buffer keeps for the sender's address and the
// control data, and it has no iovec (the buffer is the payload's). Each
// buffer then holds struct io_uring_recvmsg_out, that room, and the payload:
// ParseRecvMsgOut reads it. flags are recvmsg's (MSG_TRUNC: the header's
// payload length is the datagram's real one).
func PrepRecvMsgMultishot(sqe *SQE, fd int, msg *unix.Msghdr, group uint16, flags uint32, userData uint64) {
	sqe.Opcode, sqe.Fd, sqe.Addr, sqe.Len, sqe.OpFlags, sqe.UserData = OpRecvMsg, int32(fd), uint64(uintptr(unsafe.Pointer(msg))), 1, flags, userData
	sqe.IOPrio, sqe.Flags, sqe.BufIndex = recvMultishot, sqeBufferSelect, group
}

// SizeofRecvMsgOut is the size of struct io_uring_recvmsg_out, the header at
// the start of each buffer a multishot recvmsg fills.
const SizeofRecvMsgOut = 16

// RecvMsgOut is one message a multishot recvmsg put in a provided buffer.
type RecvMsgOut struct {
	Name    []byte // the sender's address (its first bytes if it was longer than the room)
	Payload []byte // the message's bytes, or its start if Truncated
	Size    int    // its length: with MSG_TRUNC, a datagram's real length
	Flags   uint32 // recvmsg's msg_flags: MSG_TRUNC if it was larger than the room for it
}

// Truncated reports whether Payload holds only the start of the message.
func (o RecvMsgOut) Truncated() bool {
	return o.Flags&unix.MSG_TRUNC != 0 || o.Size > len(o.Payload)
}

// ParseRecvMsgOut reads the message a multishot recvmsg completion put in its
// buffer: buf is the buffer's first Res bytes, nameRoom and controlRoom the
// template's Namelen and Controllen. The kernel lays the buffer out as
// struct io_uring_recvmsg_out { namelen, controllen, payloadlen, flags
// uint32 }, nameRoom bytes for the address, controlRoom bytes for control
// data, then the payload: Res counts all of it, the payload as far as it fit.
func ParseRecvMsgOut(buf []byte, nameRoom, controlRoom int) (RecvMsgOut, error) {
	head := SizeofRecvMsgOut + nameRoom + controlRoom
	if nameRoom < 0 || controlRoom < 0 || len(buf) < head {
		return RecvMsgOut{}, fmt.Errorf("io_uring_recvmsg_out: %d bytes, want at least %d (header %d, name %d, control %d)",
			len(buf), head, SizeofRecvMsgOut, nameRoom, controlRoom)
	}
	e := binary.NativeEndian
	nameLen, payloadLen := int(e.Uint32(buf[0:])), int(e.Uint32(buf[8:]))
	o := RecvMsgOut{
		Name:    buf[SizeofRecvMsgOut : SizeofRecvMsgOut+min(nameLen, nameRoom)],
		Payload: buf[head:],
		Size:    payloadLen,
		Flags:   e.Uint32(buf[12:]),
	}
	if len(o.Payload) > payloadLen {
		o.Payload = o.Payload[:payloadLen]
	}
	return o, nil
}

// atomicStoreUint16 is a release store of a 16-bit value: sync/atomic has no
// 16-bit operations, so it stores the aligned 32-bit word holding it — the
// buffer ring's tail is the upper half of the first entry's last word, whose
// other half (the entry's bid) only we write, and only before publishing.
func atomicStoreUint16(p *uint16, v uint16) {
	off := uintptr(unsafe.Pointer(p)) & 3
	word := (*uint32)(unsafe.Add(unsafe.Pointer(p), -int(off)))
	shift := off * 8 // little-endian: the byte offset within the word
	for {
		old := atomic.LoadUint32(word)
		nw := old&^(0xffff<<shift) | uint32(v)<<shift
		if atomic.CompareAndSwapUint32(word, old, nw) {
			return
		}
	}
}

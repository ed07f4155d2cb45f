package models

// uring: one thread, one io_uring ring — completion instead of readiness. Every
// other event loop asks the kernel which descriptors are ready and then makes
// the I/O syscalls itself, one each; this one hands the I/O itself to the
// kernel through a ring shared with it (submission entries: accept, receive,
// send, splice) and collects the results from a second ring (completions),
// many operations per io_uring_enter. One multishot accept produces every
// connection. Each connection has one receive armed while it is to be read;
// the kernel completes it when bytes arrive, into a buffer it takes from a
// ring of buffers registered once (provided buffers) — so a waiting
// connection holds no buffer of its own, and the buffer goes back as soon as
// the session has the bytes — and the loop arms the next one. (A multishot
// receive would save that re-arming, but it keeps receiving until a cancel
// takes effect: with SQPOLL the kernel's thread read megabytes past the
// back-pressure bound before it did. Armed one at a time, a receive is a
// read: a back-pressured connection gets no new one, so what it takes past
// Config.HighWater is one buffer, as an event loop's is one read. Measured
// at 100 connections, single receives cost the same CPU per request as the
// multishot one and made a tenth of the io_uring_enter calls.) Replies
// go out with a send each, one in flight per connection; a send the socket
// took only part of completes with the count and the rest is submitted again.
// Files above the protocols' inline size are spliced, not read: file → a pipe
// of the connection's → the socket (IORING_OP_SPLICE, 64 KiB a step), so
// their bytes never pass through user space, as sendfile does for the other
// models. The ring's thread is locked, and -work sleep blocks it as it
// blocks any event loop.
//
// The ring is set up with IORING_SETUP_SINGLE_ISSUER|DEFER_TASKRUN: the
// kernel runs the completion work (copying received bytes, posting the
// completion) when this thread enters to collect completions, in a batch,
// and never interrupts it to do so. A pass of the loop makes one
// io_uring_enter that submits everything the last pass queued and collects
// what completed; while busy it makes it without blocking and outside the Go
// runtime's syscall path (see package rawio), and it blocks — through the
// runtime — only when nothing completed.
//
// uring-sqpoll (or -sqpoll) adds IORING_SETUP_SQPOLL: a kernel thread of the
// server polls the submission ring, so while it is awake submitting is a
// store to memory and collecting completions is a load — no syscall at all
// for a busy server — at the price of that thread's CPU, which is the
// server's (it sleeps after sqPollIdle, 2 ms, without work). It runs on the
// server's CPUs — pinned to one CPU, the ring's thread and the poller share it
// — unless -sqpoll-cpu gives it a core of its own.
//
// Where it comes from: Linux 5.1 (2019, Jens Axboe), after Windows' I/O
// completion ports and the POSIX AIO that never served sockets; multishot
// accept and receive and provided-buffer rings from 5.19–6.0. The line that
// epoll's users look to next (liburing, tokio-uring, Netty's io_uring
// transport).
//
// Strengths: syscalls per request well below one under load (none with
// SQPOLL), no per-connection read buffer, no readiness round trip before the
// I/O. Limits: one thread, so one core; a slow handler stalls every
// connection, as in any event loop; the kernel does the I/O on this thread's
// time when it enters, so the CPU moves rather than vanishes; io_uring may be
// disabled (kernel.io_uring_disabled, seccomp filters in containers): the
// model then fails at start with the reason.
//
// Contracts: back-pressure arms no receive while a connection owes
// Config.HighWater or more (bytes the kernel is still sending count), and one
// again once it owes less; Config.MaxOutput closes it; half-close, resets,
// the idle sweep and the graceful drain (Config.Grace) are evloop's rules.
// A connection is closed only once no operation of it is in flight (its
// operations are cancelled first), so its descriptor number cannot be reused
// under a completion still to come.
//
// Datagrams (udp-echo; ServeDatagrams, and dgram.go for what the models
// share): one multishot recvmsg stays armed on the socket, taking buffers
// from a ring of its own (IORING_OP_RECVMSG with IORING_RECV_MULTISHOT and
// buffer select, Linux 6.0): the kernel receives each datagram that arrives
// into a free buffer — a header, the sender's address, the payload — and
// posts a completion for it, with no submission per datagram. Each is
// answered in place in its buffer and an IORING_OP_SENDMSG to the sender's
// address queued from there; the sends a pass queued go in the next
// io_uring_enter, and a buffer goes back to the ring once its send has
// completed. Why not several single-shot recvmsg, each with a slot of its
// own, as recvmmsg fills a batch: armed together on one socket they all wait
// on it, so a datagram wakes every one, and those woken for nothing, having
// waited once already, are not armed again but retried on io_uring's worker
// threads, where on the non-blocking socket they complete with -EAGAIN (on a
// blocking one each would hold a worker). Measured on this kernel (6.18): at
// 4 closed-loop clients 32 armed receives failed so within 300–400
// datagrams, 8 within 9,000–29,000 in two runs of three; at 128 datagrams in
// flight, where they all worked, 32 of them cost the ring's thread what the
// multishot receive does (3.2–4.4 µs of CPU a datagram against 3.5–4.0) and
// one alone 5.7–6.0 µs, each besides a submission per datagram to re-arm its
// slot.
//
// Config.Batch is how many datagrams the loop answers between two
// io_uring_enter calls, and so the most replies one enter submits: at -batch
// 1 each enter submits one reply and collects what completed — one syscall a
// datagram where the readiness models make two, recvfrom and sendto; at
// -batch 32 up to 32 replies go in one enter (measured at 100 closed-loop
// flows: 1.00 enter a datagram at -batch 1, 0.18–0.57 at -batch 32, fewer
// as the load grows). It does not bound the receiving: the multishot receive
// takes whatever has arrived. With SQPOLL it is how many replies are
// published to the kernel's thread at once. The buffers are
// max(uringDgramBufs, Batch rounded up to a power of two), of
// Config.MaxDatagram bytes each and 44 more for the header and the address;
// when every one is held (its datagram not yet answered, or its reply not yet
// sent) the receive ends with -ENOBUFS, the datagrams wait in the socket, and
// it is armed again once a buffer is back.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"concbench/internal/proto"
	"concbench/internal/rawio"
	"concbench/internal/sock"
	"concbench/internal/uring"
)

func init() {
	Register("uring", "one thread, io_uring: the kernel does the I/O and posts completions; multishot accept, shared receive buffers; one core",
		func() Model { return uringModel{} })
	Register("uring-sqpoll", "uring with a kernel thread polling its submission ring (-sqpoll): no syscall while busy, that thread's CPU besides",
		func() Model { return uringModel{sqpoll: true} })
	needs("uring", uringAvailable)
	needs("uring-sqpoll", uringAvailable)
}

// DefaultRingEntries is the submission ring's size when Config.RingEntries is
// 0; the completion ring is twice as large.
const DefaultRingEntries = 4096

// MaxRingEntries is the kernel's limit on a submission ring (IORING_MAX_ENTRIES).
const MaxRingEntries = 32768

const (
	// uringBufs and uringBufSize shape the provided-buffer ring: receives of
	// every connection share them. A buffer is held only between a receive's
	// completion and the session's Feed, so this many cover the connections
	// that receive in one pass; a receive that finds none ends with ENOBUFS
	// and is armed again. min(Config.ReadBuf, uringBufSize) bytes each: the
	// pages are touched as buffers are used, so the resident cost is up to
	// their first page each for small messages.
	uringBufs    = 1024
	uringBufSize = 16 << 10
	// uringPipe is one splice step of a file: a pipe's default capacity.
	uringPipe = 64 << 10
	// uringKeepSend: a connection's send buffer that grew past this is
	// dropped once sent, so one large reply does not pin memory.
	uringKeepSend = 64 << 10
	// maxSendChunk bounds one send, as maxSendfile bounds one sendfile.
	maxSendChunk = 1 << 20
	// sqPollIdle is how long the SQPOLL thread polls without work before it
	// sleeps (a submission then wakes it with a syscall). Any load a bench
	// applies keeps it awake; kept short, an idle server (or one pausing its
	// accepts every 100 ms at the descriptor limit) does not burn a core.
	sqPollIdle = 2 * time.Millisecond
	// uringCloseWait bounds how long Serve waits, at the end, for the
	// cancelled operations to complete before it closes what is left.
	uringCloseWait = time.Second
	// uringDgramBufs is the least number of the datagram path's receive
	// buffers (a power of two): more than the ~200 small datagrams a socket's
	// default receive buffer (212992 bytes) holds, so a backlog drained in one
	// enter rarely runs short. Pages are touched as datagrams fill them: up to
	// a page each for small ones, 16 MiB at 64 KiB datagrams.
	uringDgramBufs = 256
)

// Operation kinds, in the top byte of a submission's user data; the low 32
// bits hold the connection's descriptor.
const (
	opWake         uint64 = iota + 1 // poll of the waker: the context was cancelled
	opAccept                         // the multishot accept
	opCancelAccept                   // cancelling the accept (a drain)
	opRecv                           // a connection's receive
	opSend                           // a send of bytes
	opSpliceIn                       // file → the connection's pipe
	opSpliceOut                      // the pipe → the socket
	opCancel                         // cancelling every operation of a connection

	// The datagram path's (ServeDatagrams); opWake serves it too.
	opDgramRecv   // the datagram socket's multishot recvmsg
	opDgramSend   // a reply's sendmsg; the low 32 bits hold its buffer's id
	opDgramCancel // cancelling, at the end, the socket's operations or the waker's poll
)

func userData(op uint64, fd int) uint64 { return op<<56 | uint64(uint32(fd)) }

type uringModel struct{ sqpoll bool }

var (
	_ Model          = uringModel{}
	_ DatagramServer = uringModel{}
)

// uringAvailable says whether the kernel lets this process set up the ring
// the model does: nil, or why not (see Unavailable). It asks once.
var uringAvailable = sync.OnceValue(func() error {
	r, err := uring.New(2, uring.Options{Flags: uring.SetupSingleIssuer | uring.SetupDeferTaskrun})
	if err != nil {
		if !errors.Is(err, uring.ErrUnavailable) {
			err = fmt.Errorf("%w: %w", uring.ErrUnavailable, err)
		}
		return err
	}
	return r.Close()
})

// uConn is one connection of the ring.
type uConn struct {
	fd   int
	sess proto.Session
	out  proto.Out // owed and not yet handed to the kernel

	// The write in flight, one at a time: sending is the rest of a send's
	// bytes (held here so that they stay alive while the kernel reads them),
	// piped the bytes of a file in the pipe not yet sent. sendBuf is the
	// memory sends are copied into.
	sending []byte
	sendBuf []byte
	piped   int
	writing bool
	pipe    [2]int // -1 until the connection's first file

	recvOn  bool // a receive is armed
	ops     int  // operations in flight naming fd, cancels included
	closing bool // every operation was cancelled; released once ops is 0
	dirty   bool // in the pass's list of connections to settle

	eof, dead, rdEOF, wrShut bool // as in evConn
	lastActive               time.Duration
}

// pending is what c owes: queued, and handed to the kernel but not yet sent.
func (c *uConn) pending() int64 { return c.out.Len() + int64(len(c.sending)) + int64(c.piped) }

// ringLoop is the ring's thread.
type ringLoop struct {
	loopClock
	env    *Env
	r      *uring.Ring
	bufs   *uring.BufRing
	gate   *acceptGate // the pause on EMFILE and the drain's close; it never accepts itself
	ln     int
	w      *waker
	high   int64
	maxOut int64
	busy   rawio.Busy

	scratch   proto.Out
	conns     []*uConn // indexed by fd
	dirty     []*uConn
	live      int
	accepting bool // the multishot accept is armed
	shutting  bool // Serve is ending: every connection is closed as it is settled
}

var _ drainer = (*ringLoop)(nil)

func (m uringModel) Serve(ctx context.Context, ln *sock.Listener, env *Env) error {
	// One thread submits: SINGLE_ISSUER and DEFER_TASKRUN hold the ring to the
	// thread that created it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cfg := env.Config
	r, err := m.newRing(cfg)
	if err != nil {
		return err
	}
	defer r.Close()
	bufs, err := r.NewBufRing(0, uringBufs, min(cfg.readBuf(), uringBufSize))
	if err != nil {
		return err
	}
	defer bufs.Close()
	w, err := newWaker(ctx)
	if err != nil {
		return err
	}
	defer w.close()

	u := &ringLoop{loopClock: newLoopClock(cfg), env: env, r: r, bufs: bufs, ln: ln.FD, w: w,
		gate: newAcceptGate(env, ln.FD, 0), high: int64(cfg.highWater()), maxOut: cfg.maxOutput()}
	defer u.closeAll()
	if err := u.submit(func(sqe *uring.SQE) { uring.PrepPollAdd(sqe, w.fd, unix.POLLIN, userData(opWake, 0)) }); err != nil {
		return err
	}
	if err := u.armAccept(); err != nil {
		return err
	}
	for !u.stopping(ctx, u) {
		if err := u.pass(u.gate.timeoutMS(u.timeoutMS())); err != nil {
			return err
		}
		if !u.accepting && u.gate.open(true) {
			if err := u.armAccept(); err != nil {
				return err
			}
		}
		if u.sweepDue() {
			u.sweepIdle()
			if err := u.settleDirty(); err != nil {
				return err
			}
		}
	}
	return nil
}

// newRing sets up the ring of a Serve or ServeDatagrams on this thread, which
// must be locked: SINGLE_ISSUER and DEFER_TASKRUN hold the ring to the thread
// that created it.
func (m uringModel) newRing(cfg Config) (*uring.Ring, error) {
	opt := uring.Options{Flags: uring.SetupSingleIssuer | uring.SetupDeferTaskrun}
	if m.sqpoll || cfg.SQPoll {
		// DEFER_TASKRUN needs the submitting task to run completion work; with
		// SQPOLL the kernel's thread does.
		opt = uring.Options{Flags: uring.SetupSQPoll, SQThreadIdle: sqPollIdle}
		if cfg.SQPollCPU != nil {
			opt.Flags |= uring.SetupSQAff
			opt.SQThreadCPU = uint32(*cfg.SQPollCPU)
		}
	}
	r, err := uring.New(uint32(orDefault(cfg.RingEntries, DefaultRingEntries)), opt)
	if err != nil {
		return nil, err
	}
	if r.Features()&uring.FeatExtArg == 0 {
		r.Close()
		return nil, fmt.Errorf("%w: the kernel's io_uring_enter takes no timeout (IORING_FEAT_EXT_ARG, Linux 5.11)", uring.ErrUnavailable)
	}
	return r, nil
}

// pass is one turn of the loop: submit what is queued, wait for completions
// (up to timeoutMS; -1 no limit), handle them all, then settle every
// connection they concerned (which queues the next submissions).
func (u *ringLoop) pass(timeoutMS int) error {
	_, err := u.busy.Wait(timeoutMS, u.r.Poll, func() (int, error) {
		d := time.Duration(-1)
		if timeoutMS >= 0 {
			d = time.Duration(timeoutMS) * time.Millisecond
		}
		return u.r.Wait(d)
	})
	if err != nil {
		return err
	}
	u.tick()
	// Only the completions there now: with SQPOLL the kernel's thread posts
	// more while these are handled, and a pass that took them too might not
	// end, nor settle the connections it touched.
	for range u.r.Ready() {
		cqe := u.r.PeekCQE()
		ud, res, flags := cqe.UserData, cqe.Res, cqe.Flags
		u.r.CQESeen()
		u.complete(ud, res, flags)
	}
	return u.settleDirty()
}

// submit queues one operation, prep filling its entry.
func (u *ringLoop) submit(prep func(*uring.SQE)) error {
	sqe, err := u.r.NextSQE()
	if err != nil {
		return err
	}
	prep(sqe)
	return nil
}

// submitConn queues one operation of c and counts it in flight. A failure to
// get an entry is the ring's fault, not c's: it is returned to end Serve.
func (u *ringLoop) submitConn(c *uConn, prep func(*uring.SQE)) error {
	if err := u.submit(prep); err != nil {
		return err
	}
	c.ops++
	return nil
}

func (u *ringLoop) armAccept() error {
	// Blocking sockets: the ring never blocks on them (it tries without
	// waiting, then waits for readiness itself), and a splice to a socket,
	// done by the kernel's worker threads, waits for room instead of failing.
	err := u.submit(func(sqe *uring.SQE) {
		uring.PrepAcceptMultishot(sqe, u.ln, unix.SOCK_CLOEXEC, userData(opAccept, 0))
	})
	u.accepting = err == nil
	return err
}

// complete handles one completion.
func (u *ringLoop) complete(ud uint64, res int32, flags uint32) {
	op, fd := ud>>56, int(uint32(ud))
	switch op {
	case opWake:
		// The context was cancelled: stopping sees it at the head of the pass.
		u.w.clear()
		return
	case opAccept:
		u.onAccept(res, flags)
		return
	case opCancelAccept:
		return
	}
	var c *uConn
	if fd < len(u.conns) {
		c = u.conns[fd]
	}
	if c == nil {
		// Cannot happen: a descriptor is closed only once none of its
		// operations is in flight. A buffer is given back all the same.
		u.env.Log.Printf("uring: completion %d for fd %d, which has no connection", op, fd)
		if flags&uring.CQEFBuffer != 0 {
			id, _ := u.bufs.Buffer(flags)
			u.bufs.Recycle(id)
		}
		return
	}
	c.ops--
	switch op {
	case opRecv:
		u.onRecv(c, res, flags)
	case opSend:
		u.onSend(c, res)
	case opSpliceIn:
		u.onSpliceIn(c, res)
	case opSpliceOut:
		u.onSpliceOut(c, res)
	}
	u.markDirty(c)
}

func (u *ringLoop) markDirty(c *uConn) {
	if !c.dirty {
		c.dirty = true
		u.dirty = append(u.dirty, c)
	}
}

// onAccept takes a connection from the multishot accept, or its error.
func (u *ringLoop) onAccept(res int32, flags uint32) {
	if flags&uring.CQEFMore == 0 {
		u.accepting = false // the loop arms it again unless draining or paused
	}
	if res >= 0 {
		fd := int(res)
		// Every model sets TCP_NODELAY (see sock.Accept).
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		u.addConn(fd)
		return
	}
	switch err := unix.Errno(-res); err {
	case unix.ECANCELED: // the drain cancelled it
	case unix.EINTR, unix.ECONNABORTED, unix.EAGAIN: // that connection only; the loop arms it again
	default:
		// Out of descriptors (or another error that a retry at once would
		// meet again): pause as every model does.
		u.gate.pause(os.NewSyscallError("accept4", err))
		if !sock.IsFDLimit(err) {
			u.env.Log.Printf("accept: %v", os.NewSyscallError("accept4", err))
		}
	}
}

// addConn takes ownership of a new connection; settling it arms its receive.
func (u *ringLoop) addConn(fd int) {
	for fd >= len(u.conns) {
		u.conns = append(u.conns, make([]*uConn, len(u.conns)+64)...)
	}
	c := &uConn{fd: fd, sess: u.env.Proto.NewSession(), pipe: [2]int{-1, -1}, lastActive: u.now}
	u.conns[fd] = c
	u.live++
	u.env.Stats.opened()
	u.markDirty(c)
}

// onRecv takes one arrival of bytes (or the end of the receive).
func (u *ringLoop) onRecv(c *uConn, res int32, flags uint32) {
	c.recvOn = false // settle arms it again if c is still to be read
	var data []byte
	if flags&uring.CQEFBuffer != 0 {
		id, buf := u.bufs.Buffer(flags)
		if res > 0 {
			data = buf[:res]
		}
		defer u.bufs.Recycle(id)
	}
	switch {
	case res == -int32(unix.ENOBUFS), res == -int32(unix.ECANCELED):
		// Out of shared buffers for a moment, or back-pressure, or closing.
	case res < 0:
		if !c.closing {
			u.ioError(c)
		}
	case res == 0:
		c.eof, c.rdEOF = true, true
	default:
		c.lastActive = u.now
		// A draining connection takes no request (its input is discarded),
		// nor does one whose session ended or that is being closed.
		if !u.draining && !c.eof && !c.dead && !c.closing {
			u.feed(c, data)
		}
	}
}

// feed gives the session what was received and queues its replies.
func (u *ringLoop) feed(c *uConn, data []byte) {
	ferr := c.sess.Feed(&u.scratch, data)
	// The cap applies to everything c owes in memory once the replies are made.
	if owed(&c.out)+int64(len(c.sending))+owed(&u.scratch) > u.maxOut {
		u.scratch.Reset()
		if !c.dead {
			u.env.Stats.outputCapped.Add(1)
		}
		c.dead = true
		return
	}
	c.out.MoveFrom(&u.scratch)
	if ferr != nil {
		if feedEnd(u.env.Stats, ferr) {
			c.eof = true
		} else {
			c.dead = true
		}
	}
}

// startWrite hands the next piece of c's output to the kernel: bytes with a
// send, a file range with a splice into c's pipe (onSpliceIn then splices it
// out to the socket).
func (u *ringLoop) startWrite(c *uConn) error {
	p := c.out.Head()
	switch {
	case p.Bytes != nil:
		n := min(len(p.Bytes), maxSendChunk)
		c.sendBuf = append(c.sendBuf[:0], p.Bytes[:n]...)
		c.out.Advance(n)
		c.sending = c.sendBuf
		return u.send(c, p.More && n == len(p.Bytes))
	case p.N > 0:
		if c.pipe[0] < 0 {
			if err := unix.Pipe2(c.pipe[:], unix.O_CLOEXEC); err != nil {
				c.pipe = [2]int{-1, -1}
				u.env.Log.Printf("uring: fd %d: %v", c.fd, os.NewSyscallError("pipe2", err))
				u.ioError(c)
				return nil
			}
		}
		c.writing = true
		return u.submitConn(c, func(sqe *uring.SQE) {
			uring.PrepSplice(sqe, p.FD, p.Off, c.pipe[1], uring.NoOffset, min(p.N, uringPipe), unix.SPLICE_F_MOVE, userData(opSpliceIn, c.fd))
		})
	}
	return nil
}

// send submits c.sending; more asks the kernel to hold the bytes back for what
// follows (a header before a file: MSG_MORE).
func (u *ringLoop) send(c *uConn, more bool) error {
	flags := uint32(unix.MSG_NOSIGNAL)
	if more {
		flags |= unix.MSG_MORE
	}
	c.writing = true
	return u.submitConn(c, func(sqe *uring.SQE) { uring.PrepSend(sqe, c.fd, c.sending, flags, userData(opSend, c.fd)) })
}

// wrote takes the result of a write step: n bytes left the connection, or an
// error (a cancelled one is the close's own doing).
func (u *ringLoop) wrote(c *uConn, res int32) bool {
	c.writing = false
	switch {
	case res > 0:
		c.lastActive = u.now
		return true
	case res == -int32(unix.ECANCELED) || c.closing:
	case res == 0:
		// Nothing moved: a splice from a file that ended early.
		u.env.Log.Printf("uring: fd %d: %v", c.fd, errFileShrank)
		u.ioError(c)
	default:
		u.ioError(c)
	}
	return false
}

func (u *ringLoop) onSend(c *uConn, res int32) {
	if !u.wrote(c, res) {
		c.sending = nil
		return
	}
	c.sending = c.sending[res:]
	if len(c.sending) == 0 {
		c.sending = nil
		if cap(c.sendBuf) > uringKeepSend {
			c.sendBuf = nil
		}
	}
	// The rest of a partial send goes in settle, which resubmits it.
}

func (u *ringLoop) onSpliceIn(c *uConn, res int32) {
	if u.wrote(c, res) {
		c.out.Advance(int(res))
		c.piped = int(res)
	}
}

func (u *ringLoop) onSpliceOut(c *uConn, res int32) {
	if u.wrote(c, res) {
		c.piped -= int(res)
	}
}

// continueWrite resumes c's output where the last step left it: the rest of
// a partial send, the pipe's bytes, or the next piece.
func (u *ringLoop) continueWrite(c *uConn) error {
	switch {
	case len(c.sending) > 0:
		return u.send(c, false)
	case c.piped > 0:
		c.writing = true
		return u.submitConn(c, func(sqe *uring.SQE) {
			uring.PrepSplice(sqe, c.pipe[0], uring.NoOffset, c.fd, uring.NoOffset, c.piped, unix.SPLICE_F_MOVE, userData(opSpliceOut, c.fd))
		})
	case c.out.Len() > 0:
		return u.startWrite(c)
	}
	return nil
}

// wantRead is evloop's: read while taking requests and not back-pressured;
// while draining, until the peer closes.
func (u *ringLoop) wantRead(c *uConn) bool {
	if u.draining {
		return !c.dead && !c.rdEOF
	}
	return !c.eof && !c.dead && c.pending() < u.high
}

// settleDirty settles every connection a completion (or the drain) touched.
func (u *ringLoop) settleDirty() error {
	for i, c := range u.dirty {
		u.dirty[i] = nil
		c.dirty = false
		if err := u.settle(c); err != nil {
			return err
		}
	}
	u.dirty = u.dirty[:0]
	return nil
}

// settle moves c on after its completions: released once closed and idle in
// the kernel, closed once finished, else its output and its receive brought
// in line with what it owes and wants.
func (u *ringLoop) settle(c *uConn) error {
	if c.closing {
		if c.ops == 0 {
			u.release(c)
		}
		return nil
	}
	if u.shutting {
		return u.kill(c)
	}
	if !c.writing && !c.dead {
		if err := u.continueWrite(c); err != nil {
			return err
		}
	}
	if u.finished(c) {
		return u.kill(c)
	}
	if !c.recvOn && u.wantRead(c) {
		c.recvOn = true
		return u.submitConn(c, func(sqe *uring.SQE) { uring.PrepRecvSelect(sqe, c.fd, 0, userData(opRecv, c.fd)) })
	}
	return nil
}

// finished is evloop's finished: done with, or (draining) the lingering close.
func (u *ringLoop) finished(c *uConn) bool {
	if !u.draining {
		return c.dead || (c.eof && c.pending() == 0)
	}
	done, err := lingerStep(c.fd, c.dead, c.pending() > 0, c.rdEOF, &c.wrShut)
	if err != nil {
		u.ioError(c)
	}
	return done
}

// kill closes c: every operation of it is cancelled, and it is released once
// the last of them completed (at once if none is in flight).
func (u *ringLoop) kill(c *uConn) error {
	c.closing = true
	if c.ops == 0 {
		u.release(c)
		return nil
	}
	return u.submitConn(c, func(sqe *uring.SQE) { uring.PrepCancelFD(sqe, c.fd, userData(opCancel, c.fd)) })
}

// release closes c's descriptors and forgets it; nothing of it is in flight.
func (u *ringLoop) release(c *uConn) {
	c.out.Reset()
	for _, fd := range c.pipe {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	unix.Close(c.fd)
	u.conns[c.fd] = nil
	u.live--
	u.env.Stats.done()
}

func (u *ringLoop) ioError(c *uConn) {
	if !c.dead {
		u.env.Stats.ioErrors.Add(1)
	}
	c.dead = true
}

// sweepIdle closes the connections idle for longer than the timeout.
func (u *ringLoop) sweepIdle() {
	for _, c := range u.conns {
		if c != nil && !c.closing && u.expired(c.lastActive) {
			u.env.Stats.idleClosed.Add(1)
			c.dead = true
			u.markDirty(c)
		}
	}
}

// stopAccepting cancels the multishot accept; its last completion (and any
// connection it took meanwhile) comes in a later pass.
func (u *ringLoop) stopAccepting() error {
	u.gate.close()
	if !u.accepting {
		return nil
	}
	return u.submit(func(sqe *uring.SQE) { uring.PrepCancel(sqe, userData(opAccept, 0), userData(opCancelAccept, 0)) })
}

// startDrain stops accepting and settles every connection once in draining
// mode.
func (u *ringLoop) startDrain() {
	if err := u.stopAccepting(); err != nil {
		u.env.Log.Print(err)
	}
	for _, c := range u.conns {
		if c != nil {
			u.markDirty(c)
		}
	}
	if err := u.settleDirty(); err != nil {
		u.env.Log.Print(err)
	}
}

func (u *ringLoop) drainDone() bool { return u.live == 0 }

// closeAll ends Serve: the accept and every connection's operations are
// cancelled and their completions collected (for up to uringCloseWait), so
// that every descriptor is closed with nothing of it in flight — and no
// connection is accepted into the ring once nobody reaps it, which would
// leave its descriptor open. What is left after that is closed all the same
// (closing the ring cancels it).
func (u *ringLoop) closeAll() {
	u.shutting = true
	if err := u.stopAccepting(); err != nil {
		u.env.Log.Print(err)
	}
	for _, c := range u.conns {
		if c != nil && !c.closing {
			if err := u.kill(c); err != nil {
				break
			}
		}
	}
	deadline := monoNow() + uringCloseWait
	for (u.live > 0 || u.accepting) && monoNow() < deadline {
		if err := u.pass(int((deadline - monoNow()) / time.Millisecond)); err != nil {
			break
		}
	}
	for _, c := range u.conns {
		if c != nil {
			u.release(c)
		}
	}
}

// ServeDatagrams serves udp-echo on ds from one locked thread and its ring
// (with SQPOLL for uring-sqpoll): the multishot recvmsg, the sendmsg of each
// reply and Config.Batch are the file's comment's. Replies go with
// MSG_DONTWAIT, so that the drop policy is dgram.go's: one the socket cannot
// take completes with -EAGAIN or -ENOBUFS and is counted in
// dropped_send_full — a send left to wait for room would hold its buffer,
// and once they all waited the receiving would stop for every peer, the loss
// moved to the socket's receive queue; another error is counted in
// dropped_send_error, logged once; a datagram larger than Config.MaxDatagram
// (MSG_TRUNC) is counted in dropped_oversize and never echoed. When ctx is
// cancelled it stops at once: the receive and any send in flight are
// cancelled (one cancel by descriptor), and so is the waker's poll, and their
// completions reaped before it returns, so that nothing the kernel holds an
// address of is freed under it. A datagram received meanwhile is dropped
// unread, as those still queued in the socket are; a reply whose send was
// cancelled is counted in dropped_send_error, not logged.
func (m uringModel) ServeDatagrams(ctx context.Context, ds *sock.Listener, env *Env) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r, err := m.newRing(env.Config)
	if err != nil {
		return err
	}
	defer r.Close()
	w, err := newWaker(ctx)
	if err != nil {
		return err
	}
	defer w.close()
	defer rcvbufDropsGauge(env, ds.FD)()
	u, err := newRingDgram(r, ds.FD, w, env)
	if err != nil {
		return err
	}
	defer u.close()
	return u.serve(ctx)
}

// ringDgram is the datagram loop of the ring's thread.
type ringDgram struct {
	env   *Env
	proto proto.Datagram
	r     *uring.Ring
	bufs  *uring.BufRing
	nbufs int
	fd    int
	w     *waker
	batch int
	busy  rawio.Busy

	// What the kernel reads through addresses in a submission: hdrs[id] and
	// iovs[id] are the sendmsg of the reply in buffer id, hdrs[nbufs] the
	// receive's template. Slices of a length known at run time, they are in
	// the heap, where those addresses stay valid.
	hdrs []unix.Msghdr
	iovs []unix.Iovec

	recvOn   bool // the multishot receive is armed
	wakeOn   bool // the waker's poll is armed
	held     int  // buffers the kernel filled and the loop has not given back
	sending  int  // sendmsgs submitted and not completed
	cancels  int  // cancels submitted and not completed (the end's)
	stopping bool // the end: a datagram still received is dropped unread
	logged   bool // a send error was logged (once)
}

// newRingDgram registers the receive buffers and arms the waker's poll.
func newRingDgram(r *uring.Ring, fd int, w *waker, env *Env) (*ringDgram, error) {
	batch := env.Config.batch()
	nbufs := max(uringDgramBufs, 1<<bits.Len(uint(batch-1)))
	bufs, err := r.NewBufRing(0, nbufs, uring.SizeofRecvMsgOut+unix.SizeofSockaddrInet6+env.Config.maxDatagram())
	if err != nil {
		return nil, err
	}
	u := &ringDgram{env: env, proto: env.Proto.(proto.Datagram), r: r, bufs: bufs, nbufs: nbufs, fd: fd, w: w, batch: batch,
		hdrs: make([]unix.Msghdr, nbufs+1), iovs: make([]unix.Iovec, nbufs)}
	for id := range nbufs {
		u.hdrs[id].Iov = &u.iovs[id]
		u.hdrs[id].SetIovlen(1)
	}
	// The receive's template: room in each buffer for an IPv4 or IPv6
	// sender's address, none for control data, no iovec (the buffer is it).
	u.hdrs[nbufs].Namelen = unix.SizeofSockaddrInet6
	if err := u.submit(func(sqe *uring.SQE) { uring.PrepPollAdd(sqe, w.fd, unix.POLLIN, userData(opWake, 0)) }); err != nil {
		u.bufs.Close()
		return nil, err
	}
	u.wakeOn = true
	return u, nil
}

func (u *ringDgram) submit(prep func(*uring.SQE)) error {
	sqe, err := u.r.NextSQE()
	if err != nil {
		return err
	}
	prep(sqe)
	return nil
}

// serve is the loop: the receive armed whenever it is not and a buffer is
// free, one enter — submitting the replies the last pass queued, collecting
// completions, blocking only when there are none — and up to Batch datagrams
// answered; until ctx is cancelled.
func (u *ringDgram) serve(ctx context.Context) error {
	for ctx.Err() == nil {
		if !u.recvOn && u.held < u.nbufs {
			if err := u.submit(func(sqe *uring.SQE) {
				uring.PrepRecvMsgMultishot(sqe, u.fd, &u.hdrs[u.nbufs], 0, unix.MSG_TRUNC, userData(opDgramRecv, 0))
			}); err != nil {
				return err
			}
			u.recvOn = true
		}
		if _, err := u.busy.Wait(-1, u.r.Poll, func() (int, error) { return u.r.Wait(-1) }); err != nil {
			return err
		}
		if err := u.reap(u.batch); err != nil {
			return err
		}
	}
	return nil
}

// reap handles the completions in the ring now, stopping after the one that
// brought the limit-th datagram (the rest wait for the next pass).
func (u *ringDgram) reap(limit int) error {
	got := 0
	for n := u.r.Ready(); n > 0 && got < limit; n-- {
		cqe := u.r.PeekCQE()
		ud, res, flags := cqe.UserData, cqe.Res, cqe.Flags
		u.r.CQESeen()
		switch ud >> 56 {
		case opWake:
			// The context was cancelled: serve sees it at the head of the pass.
			u.w.clear()
			u.wakeOn = false
		case opDgramRecv:
			datagram, err := u.onRecv(res, flags)
			if err != nil {
				return err
			}
			if datagram {
				got++
			}
		case opDgramSend:
			u.onSend(uint16(ud), res)
		case opDgramCancel:
			u.cancels--
		}
	}
	return nil
}

// onRecv takes one completion of the receive: a datagram in a buffer, which it
// answers in place and queues the reply of; or, without a buffer, the end of
// the receive, which the loop arms again. It reports whether a datagram came.
func (u *ringDgram) onRecv(res int32, flags uint32) (bool, error) {
	if flags&uring.CQEFMore == 0 {
		// Ended: by -ENOBUFS, a cancel, an error, or a datagram of 0 bytes
		// (which it brings, in its buffer).
		u.recvOn = false
	}
	if flags&uring.CQEFBuffer == 0 {
		switch err := unix.Errno(-res); err {
		case unix.ENOBUFS: // every buffer held: armed again once one is back
		case unix.ECANCELED, unix.EINTR:
		default:
			if u.stopping {
				return false, nil
			}
			return false, fmt.Errorf("datagram socket %d: %w", u.fd, os.NewSyscallError("recvmsg", err))
		}
		return false, nil
	}
	id, buf := u.bufs.Buffer(flags)
	u.held++
	if u.stopping || res < 0 {
		u.recycle(id)
		return false, nil
	}
	msg, err := uring.ParseRecvMsgOut(buf[:res], unix.SizeofSockaddrInet6, 0)
	if err != nil {
		u.recycle(id)
		return false, fmt.Errorf("datagram socket %d: %w", u.fd, err)
	}
	u.env.Stats.dgramIn.Add(1)
	if msg.Truncated() {
		u.env.Stats.dropOversize.Add(1)
		u.recycle(id)
		return true, nil
	}
	reply := u.proto.Reply(msg.Payload) // in place: in the buffer, held until the send completes
	h, iov := &u.hdrs[id], &u.iovs[id]
	h.Name, h.Namelen = nil, 0
	if len(msg.Name) > 0 {
		h.Name, h.Namelen = &msg.Name[0], uint32(len(msg.Name))
	}
	iov.Base = nil
	if len(reply) > 0 {
		iov.Base = &reply[0]
	}
	iov.SetLen(len(reply))
	if err := u.submit(func(sqe *uring.SQE) {
		uring.PrepSendMsg(sqe, u.fd, h, unix.MSG_DONTWAIT, userData(opDgramSend, int(id)))
	}); err != nil {
		u.recycle(id)
		return true, err
	}
	u.sending++
	return true, nil
}

// onSend takes a reply's completion: sent, or dropped and counted under its
// reason (see ServeDatagrams); its buffer goes back to the ring either way.
func (u *ringDgram) onSend(id uint16, res int32) {
	u.sending--
	u.recycle(id)
	switch err := unix.Errno(-res); {
	case res >= 0:
		u.env.Stats.dgramOut.Add(1)
	case err == unix.EAGAIN || err == unix.ENOBUFS:
		u.env.Stats.dropSendFull.Add(1)
	case err == unix.ECANCELED: // the end's cancel
		u.env.Stats.dropSendError.Add(1)
	default:
		u.env.Stats.dropSendError.Add(1)
		if !u.logged {
			u.logged = true
			u.env.Log.Printf("datagram socket %d: %v (this reply dropped; logged once, counted in dropped_send_error)", u.fd, os.NewSyscallError("sendmsg", err))
		}
	}
}

func (u *ringDgram) recycle(id uint16) {
	u.bufs.Recycle(id)
	u.held--
}

func (u *ringDgram) inFlight() bool { return u.recvOn || u.wakeOn || u.sending > 0 || u.cancels > 0 }

// close ends ServeDatagrams: every operation in flight cancelled and its
// completion reaped (for up to uringCloseWait), then the buffers unregistered.
// Past the wait, what is left is the ring's close's to cancel.
func (u *ringDgram) close() {
	u.stopping = true
	cancel := func(prep func(*uring.SQE)) {
		if err := u.submit(prep); err != nil {
			u.env.Log.Printf("uring: datagram socket %d: %v", u.fd, err)
			return
		}
		u.cancels++
	}
	if u.recvOn || u.sending > 0 {
		cancel(func(sqe *uring.SQE) { uring.PrepCancelFD(sqe, u.fd, userData(opDgramCancel, 0)) })
	}
	if u.wakeOn {
		cancel(func(sqe *uring.SQE) { uring.PrepCancel(sqe, userData(opWake, 0), userData(opDgramCancel, 0)) })
	}
	deadline := monoNow() + uringCloseWait
	for u.inFlight() && monoNow() < deadline {
		if _, err := u.r.Wait(deadline - monoNow()); err != nil {
			u.env.Log.Printf("uring: datagram socket %d: %v", u.fd, err)
			break
		}
		u.reap(math.MaxInt) // stopping: no error
	}
	if u.inFlight() {
		u.env.Log.Printf("uring: datagram socket %d: operations still in flight %v after the cancel (receive %v, %d sends, waker %v); the ring's close cancels them",
			u.fd, uringCloseWait, u.recvOn, u.sending, u.wakeOn)
	}
	if err := u.bufs.Close(); err != nil {
		u.env.Log.Printf("uring: datagram socket %d: %v", u.fd, err)
	}
}

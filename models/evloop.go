package models

import (
	"context"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"concbench/internal/proto"
	"concbench/internal/sock"
)

// This file is the machinery the single-threaded event-loop models share (select,
// poll, epoll-lt, epoll-et): the per-connection state, read → session → write with
// back-pressure and the output cap, accept with EMFILE back-off, the idle clock and
// sweep, the draining mode of a graceful shutdown (Config.Grace), and the eventfd
// that wakes a loop for shutdown. Each model keeps its own
// readiness mechanism and loop; only the work done on a ready connection is here, so
// the models differ exactly where the syscalls do.

// acceptPause is how long accepting stops after EMFILE/ENFILE: the listener stays
// readable while out of descriptors, and a level-triggered loop would spin on it.
const acceptPause = 100 * time.Millisecond

// acceptBatch bounds the accepts of one readiness pass in level-triggered loops, so a
// connection storm cannot starve the connections already being served.
const acceptBatch = 64

// maxSweepEvery caps the interval of the idle sweep: a loop sweeps its connections
// every min(IdleTimeout/4, maxSweepEvery), so one is closed at most that much later
// than its timeout.
const maxSweepEvery = time.Second

// clockStart is the epoch of monoNow, one for the process, so that times read on
// different threads (threadpool's poller and workers) compare.
var clockStart = time.Now()

// monoNow is the monotonic clock (vDSO clock_gettime, no syscall) since clockStart.
func monoNow() time.Duration { return time.Since(clockStart) }

// evConn is one connection of an event loop.
type evConn struct {
	fd   int
	sess proto.Session
	out  proto.Out // output not yet written
	eof  bool      // no more input (the peer half-closed, or the session ended): close once out drains
	dead bool      // a read/write error or protocol error: close now

	// Draining (see loop.draining): rdEOF, a read returned 0 — the peer closed its
	// end (set in every mode); wrShut, the write side was shut down once
	// everything owed was written.
	rdEOF, wrShut bool

	// Edge-triggered latches: set by an event, cleared when the syscall says EAGAIN.
	canRead, canWrite bool
	// events is the interest registered with epoll (level-triggered), to skip
	// epoll_ctl when it would not change.
	events uint32
	// idx is the position in a select/poll model's table of live connections.
	idx int
	// lastActive is when a byte was last read from or written to the connection, on
	// its loop's clock (loop.now); the idle sweep compares it with Config.IdleTimeout.
	lastActive time.Duration
}

func (c *evConn) pending() int { return int(c.out.Len()) }

// loop is the state one event-loop thread keeps: its connections indexed by fd (no
// map lookup per event), one read buffer and one reply buffer for all of them.
type loop struct {
	env     *Env
	high    int
	maxOut  int64     // Config.MaxOutput: owing more closes a connection
	buf     []byte    // one read
	scratch proto.Out // replies produced by one read, before written or queued
	conns   []*evConn // indexed by fd

	pausedUntil time.Time // accepting is paused until then (EMFILE back-off)
	loggedPause bool

	// The idle timeout (Config.IdleTimeout; 0 disables it all): now is the clock,
	// read once per wake-up (tick) rather than per event; a connection's lastActive
	// is set from it whenever bytes move; every sweepEvery the loop closes the
	// connections idle for longer than idle, and its wait never outlasts nextSweep.
	idle       time.Duration
	sweepEvery time.Duration
	nextSweep  time.Duration
	now        time.Duration

	// live counts the connections taken and not yet released (add and release;
	// the reactor keeps it with its own registration and close).
	live int

	// draining is the graceful shutdown (Config.Grace), entered with beginDrain
	// and never left: a connection's input is read and discarded instead of fed
	// to its session (no new request), its output is still written, its write
	// side is shut once nothing is owed, and it is finished once the peer closes
	// its end. The loop ends when no connection is left or at drainEnd (on the
	// loop's clock), and its wait never outlasts drainEnd.
	draining bool
	drainEnd time.Duration
}

func newLoop(env *Env) *loop {
	l := &loop{env: env, high: env.Config.highWater(), maxOut: env.Config.maxOutput(), buf: make([]byte, env.Config.readBuf())}
	l.setIdle(env.Config.IdleTimeout)
	return l
}

// setIdle sets the idle timeout d (0 disables the sweep) and schedules the first
// sweep.
func (l *loop) setIdle(d time.Duration) {
	l.idle = d
	if d <= 0 {
		return
	}
	l.sweepEvery = max(time.Millisecond, min(d/4, maxSweepEvery))
	l.now = monoNow()
	l.nextSweep = l.now + l.sweepEvery
}

// tick reads the clock; a loop calls it once per wake-up, before it handles events.
func (l *loop) tick() {
	if l.idle > 0 || l.draining {
		l.now = monoNow()
	}
}

// beginDrain enters draining mode (see loop.draining) with the deadline grace
// from now. The caller stops watching its listener and settles every connection
// once (finished, or its interest brought in line with draining): a connection
// idle in the kernel gets no event to do it.
func (l *loop) beginDrain(grace time.Duration) {
	l.draining = true
	l.now = monoNow()
	l.drainEnd = l.now + grace
}

// drainExpired reports whether the drain's deadline has passed.
func (l *loop) drainExpired() bool { return monoNow() >= l.drainEnd }

// sweepDue reports whether the idle sweep is due (as of the last tick), and if so
// schedules the next one.
func (l *loop) sweepDue() bool {
	if l.idle <= 0 || l.now < l.nextSweep {
		return false
	}
	l.nextSweep = l.now + l.sweepEvery
	return true
}

// idleExpired reports whether no byte moved on c for longer than the idle timeout.
func (l *loop) idleExpired(c *evConn) bool { return l.idle > 0 && l.now-c.lastActive > l.idle }

// closeIdle closes c for idleness and counts it.
func (l *loop) closeIdle(c *evConn) {
	l.env.Stats.idleClosed.Add(1)
	l.release(c)
}

// sweepTable closes the idle connections of a select/poll model's table of live
// connections and returns the table without them.
func (l *loop) sweepTable(clients []*evConn) []*evConn {
	return pruneTable(clients, func(c *evConn) bool {
		if !l.idleExpired(c) {
			return false
		}
		l.closeIdle(c)
		return true
	})
}

// settleTable applies finished to every connection of a select/poll model's table
// (at the start of a drain: see beginDrain) and returns the table without the ones
// it released.
func (l *loop) settleTable(clients []*evConn) []*evConn {
	return pruneTable(clients, func(c *evConn) bool {
		if !l.finished(c) {
			return false
		}
		l.release(c)
		return true
	})
}

// tablePass is what a select/poll model does before each pass over its table of
// live connections: on shutdown, stop at once (no grace) or drain — the listener
// leaves the sets, every connection is settled once in draining mode, and the loop
// ends when the table is empty or the deadline passed — and the idle sweep. It
// returns the table and whether the loop must end.
func (l *loop) tablePass(ctx context.Context, clients []*evConn) ([]*evConn, bool) {
	if ctx.Err() != nil {
		if l.env.Config.Grace <= 0 {
			return clients, true
		}
		if !l.draining {
			l.beginDrain(l.env.Config.Grace)
			clients = l.settleTable(clients)
		}
		if len(clients) == 0 || l.drainExpired() {
			return clients, true
		}
	}
	if l.sweepDue() {
		clients = l.sweepTable(clients)
	}
	return clients, false
}

// pruneTable removes from a table of live connections every one for which drop,
// which releases it, returns true.
func pruneTable(clients []*evConn, drop func(*evConn) bool) []*evConn {
	for i := 0; i < len(clients); {
		if c := clients[i]; drop(c) {
			clients = removeClient(clients, c) // clients[i] is now another connection
			continue
		}
		i++
	}
	return clients
}

// add takes ownership of a connected, non-blocking fd.
func (l *loop) add(fd int) *evConn {
	for fd >= len(l.conns) {
		l.conns = append(l.conns, make([]*evConn, len(l.conns)+64)...)
	}
	c := &evConn{fd: fd, sess: l.env.Proto.NewSession(), canWrite: true, lastActive: l.now}
	l.conns[fd] = c
	l.live++
	l.env.Stats.opened()
	return c
}

// release closes c's fd (which also removes it from any epoll set) and forgets it.
func (l *loop) release(c *evConn) {
	c.out.Reset()
	unix.Close(c.fd)
	l.conns[c.fd] = nil
	l.live--
	l.env.Stats.done()
}

// closeAll releases every connection; used at shutdown.
func (l *loop) closeAll() {
	for _, c := range l.conns {
		if c != nil {
			l.release(c)
		}
	}
}

// wantRead reports whether c is to be read: while it takes requests and is not
// back-pressured; while draining, until the peer closes (what is read is
// discarded, so back-pressure does not apply).
func (l *loop) wantRead(c *evConn) bool {
	if l.draining {
		return !c.dead && !c.rdEOF
	}
	return !c.eof && !c.dead && c.pending() < l.high
}

func (l *loop) wantWrite(c *evConn) bool { return !c.dead && c.pending() > 0 }

// finished reports whether c is done with and must be released. While draining it
// is also the drain's step: once c owes nothing its write side is shut (the peer
// reads EOF), and c is finished when the peer has closed its end too, or on an
// error.
func (l *loop) finished(c *evConn) bool {
	if l.draining {
		return l.lingerDone(c)
	}
	return c.dead || (c.eof && c.pending() == 0)
}

// lingerDone is finished while draining: the lingering close.
func (l *loop) lingerDone(c *evConn) bool {
	switch {
	case c.dead:
		return true
	case c.pending() > 0:
		return false
	case c.rdEOF:
		// The peer sends nothing more, so nothing unread can turn the close into
		// a reset: close(2) sends the FIN.
		return true
	case !c.wrShut:
		c.wrShut = true
		if err := unix.Shutdown(c.fd, unix.SHUT_WR); err != nil {
			l.ioError(c) // ENOTCONN: the peer reset
			return true
		}
	}
	return false
}

// readOnce does one read on c and feeds it to the session; replies are written at
// once where the socket takes them (most replies never touch c.out). It reports
// whether the read found nothing (EAGAIN).
func (l *loop) readOnce(c *evConn) (again bool) {
	if l.draining {
		return l.discard(c)
	}
	n, err := sock.Read(c.fd, l.buf)
	switch {
	case err == unix.EAGAIN:
		c.canRead = false
		return true
	case err != nil:
		l.ioError(c)
		return false
	case n == 0:
		c.eof, c.rdEOF = true, true
		return false
	}
	c.lastActive = l.now
	ferr := c.sess.Feed(&l.scratch, l.buf[:n])
	// The cap applies to everything c owes once the replies are made, before any
	// is written: the memory is held at this moment either way.
	if owed(&c.out)+owed(&l.scratch) > l.maxOut {
		l.scratch.Reset()
		l.capOutput(c)
		return false
	}
	l.send(c, &l.scratch)
	if ferr != nil {
		l.ended(c, ferr)
	}
	return false
}

// discard is readOnce while draining: one read, thrown away (a draining connection
// takes no request). Reading it matters all the same: input left unread when the
// connection is closed makes the kernel answer with a reset, and a client that
// writes everything before it reads would never get to read.
func (l *loop) discard(c *evConn) (again bool) {
	n, err := sock.Read(c.fd, l.buf)
	switch {
	case err == unix.EAGAIN:
		c.canRead = false
		return true
	case err != nil:
		l.ioError(c)
	case n == 0:
		c.rdEOF = true
	default:
		c.lastActive = l.now
	}
	return false
}

// capOutput marks c for closing at once because it owes more than Config.MaxOutput,
// and counts it; what it owes is dropped when it is released.
func (l *loop) capOutput(c *evConn) {
	if !c.dead {
		l.env.Stats.outputCapped.Add(1)
	}
	c.dead = true
}

// ended applies a session's Feed error to c: drain the output, then close
// (ErrClose), or close now.
func (l *loop) ended(c *evConn, err error) {
	if feedEnd(l.env.Stats, err) {
		c.eof = true
	} else {
		c.dead = true
	}
}

// send writes o to c now if nothing is queued ahead of it, and queues what the
// socket did not take (o is left empty).
func (l *loop) send(c *evConn, o *proto.Out) {
	if c.pending() == 0 && c.canWrite && o.Len() > 0 {
		l.write(c, o)
	}
	if c.dead {
		o.Reset()
		return
	}
	c.out.MoveFrom(o)
}

// flush writes queued output until it is gone or the socket is full.
func (l *loop) flush(c *evConn) { l.write(c, &c.out) }

// write writes o to c until done, EAGAIN or an error. Any byte written makes c
// active.
func (l *loop) write(c *evConn, o *proto.Out) {
	before := o.Len()
	err := writeOut(c.fd, o)
	if o.Len() < before {
		c.lastActive = l.now
	}
	switch err {
	case nil:
	case unix.EAGAIN:
		c.canWrite = false
	default:
		l.ioError(c)
	}
}

// ioError marks c for closing after a read or write error (ECONNRESET, EPIPE…):
// that connection only is lost.
func (l *loop) ioError(c *evConn) {
	if !c.dead {
		l.env.Stats.ioErrors.Add(1)
	}
	c.dead = true
}

// serviceLT is the level-triggered step for one ready connection (select, poll,
// epoll-lt): flush first, which may make room to read, then at most one read, so one
// busy connection cannot hold the loop.
func (l *loop) serviceLT(c *evConn, readable, writable bool) {
	if writable && c.pending() > 0 {
		c.canWrite = true
		l.flush(c)
	}
	if readable && l.wantRead(c) {
		l.readOnce(c)
	}
}

// etReadBudget bounds the reads of one driveET call, so one connection that keeps
// sending cannot hold an edge-triggered loop; the caller requeues it.
const etReadBudget = 16

// driveET is the edge-triggered step: an edge is reported once, so the connection
// is worked until the kernel says EAGAIN in each direction it may go, or until
// back-pressure stops reading (then canRead stays latched, and reading resumes as
// soon as a flush drains the output below the bound). It reports whether it stopped
// on its read budget with input possibly left: the caller must drive c again
// without waiting for another edge, which will not come.
func (l *loop) driveET(c *evConn) (more bool) {
	for budget := etReadBudget; !c.dead; {
		if c.pending() > 0 && c.canWrite {
			l.flush(c)
		}
		if !c.canRead || !l.wantRead(c) {
			return false
		}
		if budget == 0 {
			return true
		}
		budget--
		l.readOnce(c)
	}
	return false
}

// accept returns a new non-blocking connection, or -1 when the backlog is empty or
// descriptors ran out (then accepting pauses for acceptPause: see acceptPaused).
func (l *loop) accept(lfd int) int { return l.acceptFlags(lfd, unix.SOCK_NONBLOCK) }

// acceptFlags is accept with the accept4 flags given: 0 gives a blocking
// descriptor, for models whose threads sleep in read and write.
func (l *loop) acceptFlags(lfd, flags int) int {
	fd, err := sock.Accept(lfd, flags)
	if err == nil {
		return fd
	}
	if sock.IsFDLimit(err) {
		l.pausedUntil = time.Now().Add(acceptPause)
		l.env.Stats.acceptPauses.Add(1)
		if !l.loggedPause {
			l.loggedPause = true
			l.env.Log.Printf("accept: %v; pausing accept for %v (logged once)", err, acceptPause)
		}
	} else if err != unix.EAGAIN {
		l.env.Log.Printf("accept: %v", os.NewSyscallError("accept4", err))
	}
	return -1
}

// acceptPaused reports whether accepting is paused for lack of descriptors, and
// lifts the pause once its time is up.
func (l *loop) acceptPaused() bool {
	if l.pausedUntil.IsZero() {
		return false
	}
	if time.Now().Before(l.pausedUntil) {
		return true
	}
	l.pausedUntil = time.Time{}
	return false
}

// timeoutMS is how long the loop may block: until an accept pause ends, the next
// idle sweep is due or the drain's deadline, whichever is first; forever if none
// is pending.
func (l *loop) timeoutMS() int {
	t := -1
	if !l.pausedUntil.IsZero() && !l.draining {
		t = max(1, int(time.Until(l.pausedUntil).Milliseconds())+1)
	}
	if l.idle > 0 {
		t = untilMS(t, l.nextSweep)
	}
	if l.draining {
		t = untilMS(t, l.drainEnd)
	}
	return t
}

// untilMS is the wait t (in ms, -1 for forever) shortened to end at `at` on the
// loop clock if that comes first.
func untilMS(t int, at time.Duration) int {
	// Rounded up: waking a little late is harmless, waking early spins.
	until := at - monoNow()
	ms := int(max(0, (until+time.Millisecond-1)/time.Millisecond))
	if t < 0 || ms < t {
		return ms
	}
	return t
}

// waker is an eventfd that becomes readable when ctx is cancelled, so a loop
// blocked in select/poll/epoll_wait wakes up to shut down.
type waker struct {
	fd     int
	stop   func() bool
	mu     sync.Mutex
	closed bool
}

func newWaker(ctx context.Context) (*waker, error) {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("eventfd", err)
	}
	w := &waker{fd: fd}
	w.stop = context.AfterFunc(ctx, w.wake)
	return w, nil
}

func (w *waker) wake() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		var one = [8]byte{1}
		unix.Write(w.fd, one[:])
	}
}

// clear resets the eventfd, so that a loop that goes on after the wake-up (a
// draining loop) does not find it readable again on every wait.
func (w *waker) clear() { clearEventfd(w.fd) }

// clearEventfd reads an eventfd's counter back to zero; EAGAIN means it was zero.
func clearEventfd(fd int) {
	var b [8]byte
	sock.Read(fd, b[:])
}

func (w *waker) close() {
	w.stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	unix.Close(w.fd)
}

// sleepCtx sleeps for d or until ctx is cancelled.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

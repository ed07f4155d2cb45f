package models

import (
	"time"

	"golang.org/x/sys/unix"

	"concbench/internal/proto"
	"concbench/internal/rawio"
)

// The machinery the event-loop models share (select, poll, epoll-lt, epoll-et,
// reactor, multireactor's loops and threadpool's workers): the per-connection
// state, and the work done on a ready connection — read → session → write with
// back-pressure and the output cap, end of input, the idle sweep's close, and the
// draining mode of a graceful shutdown (Config.Grace). Each model keeps its own
// readiness mechanism and loop (select.go, poll.go, epoll.go, …), so the models
// differ exactly where the syscalls do.

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
	// its loop's clock (loopClock.now); the idle sweep compares it with
	// Config.IdleTimeout.
	lastActive time.Duration
}

func (c *evConn) pending() int { return int(c.out.Len()) }

// loop is the state one event-loop thread keeps: its clock, its connections
// indexed by fd (no map lookup per event), one read buffer and one reply buffer
// for all of them.
//
// While the clock is draining (the graceful shutdown, Config.Grace) a
// connection's input is read and discarded instead of fed to its session (no new
// request), its output is still written, its write side is shut once nothing is
// owed, and it is finished once the peer closes its end.
type loop struct {
	loopClock
	env     *Env
	high    int
	maxOut  int64     // Config.MaxOutput: owing more closes a connection
	buf     []byte    // one read
	scratch proto.Out // replies produced by one read, before written or queued
	conns   []*evConn // indexed by fd

	// live counts the connections taken and not yet released (add and release;
	// the reactor keeps it with its own registration and close).
	live int
}

func newLoop(env *Env) *loop {
	return &loop{loopClock: newLoopClock(env.Config), env: env, high: env.Config.highWater(),
		maxOut: env.Config.maxOutput(), buf: make([]byte, env.Config.readBuf())}
}

// idleExpired reports whether no byte moved on c for longer than the idle timeout.
func (l *loop) idleExpired(c *evConn) bool { return l.expired(c.lastActive) }

// closeIdle closes c for idleness and counts it.
func (l *loop) closeIdle(c *evConn) {
	l.env.Stats.idleClosed.Add(1)
	l.release(c)
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
	done, err := lingerStep(c.fd, c.dead, c.pending() > 0, c.rdEOF, &c.wrShut)
	if err != nil {
		l.ioError(c) // ENOTCONN: the peer reset
	}
	return done
}

// lingerStep is one step of a draining connection's lingering close, for
// every event loop (evloop's and uring's): it reports whether the connection
// on fd is finished — on an error (dead), or once it owes nothing and its peer
// has closed its end — and shuts its write side (once, wrShut) as soon as it
// owes nothing. A failed shutdown (the peer reset) finishes it with the error.
func lingerStep(fd int, dead, owes, rdEOF bool, wrShut *bool) (done bool, err error) {
	switch {
	case dead:
		return true, nil
	case owes:
		return false, nil
	case rdEOF:
		// The peer sends nothing more, so nothing unread can turn the close into
		// a reset: close(2) sends the FIN.
		return true, nil
	case !*wrShut:
		*wrShut = true
		if err := unix.Shutdown(fd, unix.SHUT_WR); err != nil {
			return true, err
		}
	}
	return false, nil
}

// readOnce does one read on c and feeds it to the session; replies are written at
// once where the socket takes them (most replies never touch c.out). It reports
// whether the read found nothing (EAGAIN).
func (l *loop) readOnce(c *evConn) (again bool) {
	if l.draining {
		return l.discard(c)
	}
	n, err := rawio.Read(c.fd, l.buf)
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
	n, err := rawio.Read(c.fd, l.buf)
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
	err := writeOutNB(c.fd, o)
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

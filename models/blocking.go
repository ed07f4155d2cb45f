package models

// The blocking connection server of thread, fork and procpool: one thread reads,
// feeds the session and writes the whole reply before reading again; the idle
// timeout is the kernel's (SO_RCVTIMEO, SO_SNDTIMEO); and another thread can tell
// it to drain at a graceful shutdown without a race against it.

import (
	"concbench/internal/proto"
	"concbench/internal/sock"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// blockingConn is a connection served with blocking I/O by one thread (thread,
// fork, procpool: serveBlocking), and how another thread tells it to drain
// (Config.Grace) without a race against it.
//
// Not with shutdown(SHUT_RD), though it would wake a thread blocked in read: after
// it Linux's read returns 0 as soon as the receive queue is empty, without waiting
// for the peer's FIN, so the lingering close could no longer tell when the client
// closed its end. Instead the two threads agree through one atomic word. The
// serving thread marks itself busy from the moment a read returned a request until
// its replies are written; drain marks the connection draining and, if it was not
// busy — its thread is in read, or about to be — shuts the write side itself: the
// client reads EOF at once, and the thread, whether a request or the client's close
// wakes it, sees the mark and lingers. If it was busy, the serving thread finds the
// mark when it clears its own and does the same once its replies are written. Each
// side's change is one atomic read-modify-write, so exactly one of them sees the
// other's and acts.
type blockingConn struct {
	fd    int
	state atomic.Uint32

	mu     sync.Mutex // guards closed against drain and cut, which use fd
	closed bool
}

const (
	bcBusy  = 1 << iota // feeding a request or writing its replies
	bcDrain             // draining: no more requests
	bcShut              // the write side is shut down (once: again could fail with ENOTCONN)
	bcCut               // the grace deadline passed: shut down both ways
)

func newBlockingConn(fd int) *blockingConn { return &blockingConn{fd: fd} }

// start marks the connection busy with a request just read, or reports false if it
// is draining (the request is discarded).
func (b *blockingConn) start() bool { return b.state.Or(bcBusy)&bcDrain == 0 }

// finish clears busy once the replies are written and reports whether the
// connection is draining.
func (b *blockingConn) finish() (drain bool) { return b.state.And(^uint32(bcBusy))&bcDrain != 0 }

// drain tells the connection to drain; from any thread, any number of times.
func (b *blockingConn) drain() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if old := b.state.Or(bcDrain); old&(bcBusy|bcDrain) == 0 && !b.closed {
		b.shutWrite()
	}
}

// shutWrite shuts the write side down unless that was done already. An error
// (ENOTCONN: the peer reset) is left to the serving thread's next read to meet.
func (b *blockingConn) shutWrite() {
	if b.state.Or(bcShut)&bcShut == 0 {
		unix.Shutdown(b.fd, unix.SHUT_WR)
	}
}

// cut ends the connection at the grace deadline, or at once at a shutdown without
// one: shutdown(SHUT_RDWR) wakes its thread wherever it is blocked — read returns
// 0, write EPIPE — and the errors that follow are not the peer's fault (ended).
// close(2) would not: on Linux a thread blocked in read or write keeps the open
// file alive until the call returns, and the number could be reused under it.
func (b *blockingConn) cut() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.state.Or(bcDrain | bcCut)
	if !b.closed {
		unix.Shutdown(b.fd, unix.SHUT_RDWR)
	}
}

// close closes the descriptor; the serving thread's last act on it.
func (b *blockingConn) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	unix.Close(b.fd)
}

// ended is st, unless the connection was cut: then its errors were caused by the
// cut, and it ended as it should.
func (b *blockingConn) ended(st connStatus) connStatus {
	if b.state.Load()&bcCut != 0 {
		return connOK
	}
	return st
}

// linger is the end of a draining connection, all its replies written: shut the
// write side (the client reads EOF), then read and discard until the client closes
// its end (read returns 0) — the lingering close, so that input left unread does
// not turn the close into a reset that destroys replies still in flight — or the
// cut, or SO_RCVTIMEO (the idle timeout).
func (b *blockingConn) linger(buf []byte) connStatus {
	b.shutWrite()
	for {
		n, err := sock.Read(b.fd, buf)
		switch {
		case err == unix.EAGAIN:
			return b.ended(connIdle)
		case err != nil:
			return b.ended(connIOError)
		case n == 0:
			return connOK
		}
	}
}

// drainOnSIGTERM makes a worker process (fork, procpool) drain on SIGTERM, the
// parent's signal to stop: drain is called at once, cut grace later. With grace 0
// it does nothing, and SIGTERM kills the process as it always did. stop undoes it.
func drainOnSIGTERM(grace time.Duration, drain, cut func()) (stop func()) {
	if grace <= 0 {
		return func() {}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		select {
		case <-sig:
		case <-done:
			return
		}
		drain()
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
			cut()
		case <-done:
		}
	}()
	return func() {
		signal.Stop(sig)
		close(done)
		<-exited
	}
}

// serveBlocking serves one connection on a blocking descriptor until the peer's end
// of input (everything owed is written by then, since writes are synchronous) or an
// error: read, feed the session, write all it returns. A blocked write stops the
// reading too, which is the back-pressure. buf is the read buffer.
//
// Told to drain (b.drain), it feeds no more input to the session: a request read
// meanwhile is discarded, replies being written are finished, and the connection
// lingers (b.linger) until the client closes it or b.cut.
//
// Config.IdleTimeout is SO_RCVTIMEO and SO_SNDTIMEO on the socket: a read that gets
// no byte, or a write that can send none, for that long fails with EAGAIN (on a
// blocking socket, only a timeout does), and the connection ends as connIdle. A write
// that sent part before the timeout returns the part, and writeOut's next write gets
// a fresh timeout: only time with no byte moving counts. What the blocking models owe
// after a Feed is that Feed's replies (the last ones were written in full), so the
// cap, Config.MaxOutput, is checked on them before they are written.
func serveBlocking(b *blockingConn, env *Env, buf []byte) connStatus {
	fd := b.fd
	if err := setIdleTimeout(fd, env.Config.IdleTimeout); err != nil {
		env.Log.Print(err)
		return connIOError
	}
	maxOut := env.Config.maxOutput()
	sess := env.Proto.NewSession()
	var out proto.Out
	defer out.Reset()
	for {
		n, err := sock.Read(fd, buf)
		if err == unix.EAGAIN {
			return b.ended(connIdle)
		}
		if err != nil {
			return b.ended(connIOError)
		}
		if n == 0 {
			return connOK
		}
		if !b.start() {
			return b.linger(buf) // draining: this input is not a request any more
		}
		ferr := sess.Feed(&out, buf[:n])
		if owed(&out) > maxOut {
			return connOutputCapped
		}
		// Replies of the complete requests before a protocol error are still owed.
		if err := writeOut(fd, &out); err == unix.EAGAIN {
			return b.ended(connIdle)
		} else if err != nil {
			return b.ended(connIOError)
		}
		drain := b.finish()
		switch {
		case errors.Is(ferr, proto.ErrProtocol):
			return connProtoError
		case ferr != nil:
			return connOK // the session ended it (ErrClose), its output written
		case drain:
			return b.linger(buf)
		}
	}
}

// setIdleTimeout sets SO_RCVTIMEO and SO_SNDTIMEO on the blocking socket fd to d
// (at least a microsecond, the options' resolution; 0 leaves them off).
func setIdleTimeout(fd int, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	tv := unix.NsecToTimeval(max(d, time.Microsecond).Nanoseconds())
	for _, opt := range []int{unix.SO_RCVTIMEO, unix.SO_SNDTIMEO} {
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, opt, &tv); err != nil {
			return fmt.Errorf("fd %d: %w", fd, os.NewSyscallError("setsockopt SO_RCVTIMEO/SO_SNDTIMEO", err))
		}
	}
	return nil
}

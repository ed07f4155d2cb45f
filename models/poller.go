package models

// The readiness mechanism of every epoll-based model (epoll-lt, epoll-et, reactor,
// multireactor, threadpool's poller, and the parents of fork, procpool and
// prefork): an epoll instance with its own wake-up. And the wake-up itself, which
// select, poll and thread's acceptor put in their sets too.

import (
	"context"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"concbench/internal/rawio"
	"concbench/internal/sock"
)

// epollEvents is how many events one epoll_wait may return.
const epollEvents = 256

// poller is an epoll instance whose first registration is a waker: an eventfd
// that becomes readable when the context it was opened with is cancelled (or when
// wake is called), so that a loop blocked in epoll_wait wakes up to shut down.
// Every registration's event carries the fd itself, which the loops use as an
// index into their tables (no map lookup per event).
type poller struct {
	fd     int
	w      *waker
	events []unix.EpollEvent
	busy   rawio.Busy // whether the next wait polls without blocking first
}

// openPoller creates the epoll instance and registers the waker for ctx in it;
// n bounds the events one wait returns. close releases both.
func openPoller(ctx context.Context, n int) (*poller, error) {
	w, err := newWaker(ctx)
	if err != nil {
		return nil, err
	}
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		w.close()
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	p := &poller{fd: fd, w: w, events: make([]unix.EpollEvent, n)}
	if err := p.add(w.fd, unix.EPOLLIN); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

// add registers fd for events.
func (p *poller) add(fd int, events uint32) error { return p.ctl(unix.EPOLL_CTL_ADD, fd, events) }

// mod changes fd's registered events; 0 leaves it registered but never ready.
func (p *poller) mod(fd int, events uint32) error { return p.ctl(unix.EPOLL_CTL_MOD, fd, events) }

// del removes fd's registration. Closing a descriptor removes it as well (once no
// other descriptor refers to its open file), so del is for descriptors that stay
// open: the caller's listener, a worker's socket.
func (p *poller) del(fd int) error { return p.ctl(unix.EPOLL_CTL_DEL, fd, 0) }

func (p *poller) ctl(op, fd int, events uint32) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)}
	if err := rawio.EpollCtl(p.fd, op, fd, &ev); err != nil {
		return fmt.Errorf("fd %d: %w", fd, os.NewSyscallError("epoll_ctl", err))
	}
	return nil
}

// wait blocks in epoll_wait for up to timeoutMS (-1: no limit) and returns the
// events, valid until the next wait. A signal (EINTR) returns no event and no
// error: the caller goes round its loop, as for a timeout.
//
// While the loop is busy (rawio.Busy) it first polls without blocking and
// without the runtime's syscall path (rawio.EpollPoll), and blocks — through
// the runtime, which lets the thread's P go to other goroutines meanwhile —
// only if nothing is ready: a busy loop then makes one epoll_wait per pass, as
// before, and an idle one still blocks in epoll_wait.
func (p *poller) wait(timeoutMS int) ([]unix.EpollEvent, error) {
	n, err := p.busy.Wait(timeoutMS,
		func() (int, error) { return rawio.EpollPoll(p.fd, p.events) },
		func() (int, error) { return unix.EpollWait(p.fd, p.events, timeoutMS) })
	if err == unix.EINTR {
		return nil, nil
	}
	if err != nil {
		return nil, os.NewSyscallError("epoll_wait", err)
	}
	return p.events[:n], nil
}

// isWake reports whether an event's fd is the waker's.
func (p *poller) isWake(fd int) bool { return fd == p.w.fd }

// clearWake resets the waker, so that a loop that goes on after the wake-up (a
// draining loop) does not find it readable again on every wait.
func (p *poller) clearWake() { p.w.clear() }

// close closes the epoll instance, then the waker. Registrations go with it: the
// caller's listener is left open and in no set.
func (p *poller) close() {
	unix.Close(p.fd)
	p.w.close()
}

// waker is an eventfd that becomes readable when ctx is cancelled, so a loop
// blocked in select/poll/epoll_wait wakes up to shut down; multireactor's loops are
// also woken through it for a hand-off.
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

// wake makes the eventfd readable; from any goroutine, until close.
func (w *waker) wake() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		var one = [8]byte{1}
		unix.Write(w.fd, one[:])
	}
}

// clear resets the eventfd (see poller.clearWake).
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

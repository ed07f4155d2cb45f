package models

// The epoll loop shared by epoll-lt and epoll-et (see those files for what each
// model is). The trigger mode is a parameter, not a second copy: the two differ in
// how the listener and connections are registered and in what one event obliges the
// loop to do, and nowhere else. multireactor's sub-reactors are level-triggered
// epollLoops too, fed connections by its acceptor instead of a listener.

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"concbench/internal/sock"
)

// epollEvents is how many events one epoll_wait may return.
const epollEvents = 256

type epollModel struct {
	edge bool // EPOLLET: edge-triggered
	// exclusive registers the listener with EPOLLEXCLUSIVE, so that of several
	// processes watching one shared socket only one is woken per connection
	// (prefork's workers). Edge-triggered only: the flag cannot be changed with
	// EPOLL_CTL_MOD, which the level-triggered accept pause uses.
	exclusive bool
}

var _ Model = epollModel{}

// epollLoop is one epoll instance and its connections.
type epollLoop struct {
	*loop
	epfd      int
	edge      bool
	exclusive bool
	lnFD      int
	lnOn      bool      // the listener is in the interest set (out during an accept pause: level-triggered, exclusive)
	ready     []*evConn // edge-triggered: connections that used their read budget
}

func (m epollModel) Serve(ctx context.Context, ln *sock.Listener, env *Env) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	w, epfd, release, err := newWakeEpoll(ctx)
	if err != nil {
		return err
	}
	defer release()
	el := &epollLoop{loop: newLoop(env), epfd: epfd, edge: m.edge, exclusive: m.exclusive && m.edge, lnFD: ln.FD}
	defer el.closeAll()
	// The listener is registered by this loop and must leave the set when the loop
	// ends: ln belongs to the caller, who may serve it again.
	if err := el.ctl(unix.EPOLL_CTL_ADD, ln.FD, el.listenEvents()); err != nil {
		return err
	}
	el.lnOn = true

	events := make([]unix.EpollEvent, epollEvents)
	for {
		if ctx.Err() != nil {
			if env.Config.Grace <= 0 {
				break
			}
			if !el.draining {
				el.beginDrain(env.Config.Grace)
			}
			if el.live == 0 || el.drainExpired() {
				break
			}
		}
		timeout := el.timeoutMS()
		if len(el.ready) > 0 {
			timeout = 0 // connections with input left must not wait for an edge
		}
		n, err := unix.EpollWait(epfd, events, timeout)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("epoll_wait", err)
		}
		el.tick()
		if !el.draining {
			if err := el.resumeAccept(); err != nil {
				return err
			}
		}
		for i := range events[:n] {
			ev := events[i].Events
			switch fd := int(events[i].Fd); fd {
			case w.fd:
				// Shutdown: the loop sees ctx. Cleared so that a draining loop
				// does not find it readable on every wait.
				w.clear()
			case ln.FD:
				// Out of the set once draining (beginDrain runs between waits).
				if err := el.acceptAll(); err != nil {
					return err
				}
			default:
				if c := el.conns[fd]; c != nil {
					el.handle(c, ev)
				}
			}
		}
		el.drainReady()
		if el.sweepDue() {
			el.sweepIdle()
		}
	}
	return nil
}

// newWakeEpoll starts an epoll-based loop: a waker for ctx and an epoll instance
// with the waker already registered (its event's Fd is the waker's fd). release
// closes both, epoll first; a caller defers it where anything that must run while
// the epoll instance is open (a shutdown that re-arms or deregisters) is deferred
// after it.
func newWakeEpoll(ctx context.Context) (w *waker, epfd int, release func(), err error) {
	w, err = newWaker(ctx)
	if err != nil {
		return nil, -1, nil, err
	}
	epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		w.close()
		return nil, -1, nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := epollCtl(epfd, unix.EPOLL_CTL_ADD, w.fd, unix.EPOLLIN); err != nil {
		unix.Close(epfd)
		w.close()
		return nil, -1, nil, err
	}
	return w, epfd, func() { unix.Close(epfd); w.close() }, nil
}

func (el *epollLoop) ctl(op, fd int, events uint32) error { return epollCtl(el.epfd, op, fd, events) }

// epollCtl adds, modifies or deletes fd's registration in epfd; the event's data is
// the fd itself, which the loops use as an index into their tables.
func epollCtl(epfd, op, fd int, events uint32) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)}
	if err := unix.EpollCtl(epfd, op, fd, &ev); err != nil {
		return fmt.Errorf("fd %d: %w", fd, os.NewSyscallError("epoll_ctl", err))
	}
	return nil
}

func (el *epollLoop) listenEvents() uint32 {
	switch {
	case el.exclusive:
		return unix.EPOLLIN | unix.EPOLLET | unix.EPOLLEXCLUSIVE
	case el.edge:
		return unix.EPOLLIN | unix.EPOLLET
	}
	return unix.EPOLLIN
}

// acceptAll accepts what the backlog holds: everything until EAGAIN when
// edge-triggered (the edge will not be reported again), a bounded batch when
// level-triggered (the listener stays ready, so the rest comes on the next pass).
func (el *epollLoop) acceptAll() error {
	for k := 0; el.edge || k < acceptBatch; k++ {
		fd := el.accept(el.lnFD)
		if fd < 0 {
			break
		}
		el.addConn(fd)
	}
	if el.acceptPaused() && el.lnOn {
		switch {
		case el.exclusive:
			// EPOLLEXCLUSIVE wakes one of the loops sharing the listener per new
			// connection; a loop out of descriptors would take that wake-up and
			// fail, while another loop with descriptors to spare never hears of
			// the connection. Leave the set until the pause ends (as nginx does);
			// an exclusive registration cannot be modified, only deleted and added.
			el.lnOn = false
			return el.ctl(unix.EPOLL_CTL_DEL, el.lnFD, 0)
		case !el.edge:
			// Level-triggered: a listener left in the set while out of descriptors
			// would wake every pass — the accept storm. Take it out until the
			// pause ends.
			el.lnOn = false
			return el.ctl(unix.EPOLL_CTL_MOD, el.lnFD, 0)
		}
	}
	return nil
}

// addConn takes ownership of a new connection and registers it with epoll; if that
// fails, the connection is logged and closed.
func (el *epollLoop) addConn(fd int) {
	c := el.add(fd)
	// Edge-triggered connections are registered once for both directions and
	// never modified: readiness is latched in canRead/canWrite. Level-triggered
	// ones start with read interest; handle adds EPOLLOUT only while output waits.
	c.events = unix.EPOLLIN | unix.EPOLLRDHUP
	if el.edge {
		c.events |= unix.EPOLLOUT | unix.EPOLLET
	}
	if err := el.ctl(unix.EPOLL_CTL_ADD, fd, c.events); err != nil {
		el.env.Log.Print(err)
		el.release(c)
	}
}

// beginDrain starts the graceful shutdown (Config.Grace): the listener leaves the
// set, and every connection is settled once in draining mode — an idle one has its
// write side shut now, a back-pressured one is read (and its input discarded) from
// now on; edge-triggered, a connection whose read was latched while back-pressured
// is driven now, since no edge will come for input already waiting. It returns how
// many connections that closed.
func (el *epollLoop) beginDrain(grace time.Duration) int {
	el.loop.beginDrain(grace)
	if el.lnFD >= 0 {
		if err := el.ctl(unix.EPOLL_CTL_DEL, el.lnFD, 0); err != nil {
			el.env.Log.Print(err) // closing epfd takes it out all the same
		}
		el.lnOn = false
	}
	n := 0
	for _, c := range el.conns {
		if c == nil {
			continue
		}
		if el.edge && el.driveET(c) {
			el.ready = append(el.ready, c)
		}
		el.settle(c)
		if el.conns[c.fd] != c {
			n++
		}
	}
	return n
}

// resumeAccept ends an accept pause whose time is up: level-triggered, by putting the
// listener back in the set; edge-triggered, by accepting now, since the edge that
// announced the waiting connections was consumed during the pause.
func (el *epollLoop) resumeAccept() error {
	if el.pausedUntil.IsZero() || el.acceptPaused() {
		return nil
	}
	if el.exclusive && !el.lnOn {
		el.lnOn = true
		if err := el.ctl(unix.EPOLL_CTL_ADD, el.lnFD, el.listenEvents()); err != nil {
			return err
		}
	}
	if el.edge {
		return el.acceptAll()
	}
	if el.lnOn {
		return nil
	}
	el.lnOn = true
	return el.ctl(unix.EPOLL_CTL_MOD, el.lnFD, el.listenEvents())
}

// handle serves one event on c.
func (el *epollLoop) handle(c *evConn, ev uint32) {
	// EPOLLHUP/EPOLLERR come whatever was asked for: the read or write that follows
	// meets the error or the end of input and closes the connection.
	broken := ev&(unix.EPOLLHUP|unix.EPOLLERR) != 0
	readable := ev&(unix.EPOLLIN|unix.EPOLLRDHUP) != 0 || broken
	writable := ev&unix.EPOLLOUT != 0 || broken
	if el.edge {
		c.canRead = c.canRead || readable
		c.canWrite = c.canWrite || writable
		if el.driveET(c) {
			el.ready = append(el.ready, c)
		}
	} else {
		el.serviceLT(c, readable, writable)
	}
	el.settle(c)
}

// drainReady drives again the edge-triggered connections that stopped on their read
// budget last pass.
func (el *epollLoop) drainReady() {
	batch := el.ready
	el.ready = nil
	for _, c := range batch {
		if el.conns[c.fd] != c {
			continue // closed meanwhile
		}
		if el.driveET(c) {
			el.ready = append(el.ready, c)
		}
		el.settle(c)
	}
}

// sweepIdle closes the connections idle for longer than the timeout and returns how
// many. It runs after a pass's events and ready list are done with: closing a
// descriptor takes it out of the epoll set, so no event of the next wait names it,
// and an edge-triggered connection still in the ready list is skipped there as closed.
func (el *epollLoop) sweepIdle() int {
	n := 0
	for _, c := range el.conns {
		if c != nil && el.idleExpired(c) {
			el.closeIdle(c)
			n++
		}
	}
	return n
}

// settle closes a finished connection, or (level-triggered) brings its interest in
// line with what it now waits for: read unless back-pressured or at end of input,
// write while output is queued.
func (el *epollLoop) settle(c *evConn) {
	if el.finished(c) {
		el.release(c)
		return
	}
	if el.edge {
		return
	}
	var want uint32
	if el.wantRead(c) {
		want |= unix.EPOLLIN | unix.EPOLLRDHUP
	}
	if el.wantWrite(c) {
		want |= unix.EPOLLOUT
	}
	if want != c.events {
		c.events = want
		if err := el.ctl(unix.EPOLL_CTL_MOD, c.fd, want); err != nil {
			el.env.Log.Print(err)
			c.dead = true
			el.release(c)
		}
	}
}

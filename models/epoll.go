package models

// The epoll loop shared by epoll-lt and epoll-et (see those files for what each
// model is). The trigger mode is a parameter, not a second copy: the two differ in
// how the listener and connections are registered and in what one event obliges the
// loop to do, and nowhere else. multireactor's sub-reactors are level-triggered
// epollLoops too, fed connections by its acceptor instead of a listener.

import (
	"context"
	"runtime"

	"golang.org/x/sys/unix"

	"concbench/internal/sock"
)

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
	p    *poller
	edge bool
	// gate accepts from the listener; nil for a loop fed connections by another
	// thread (multireactor's sub-reactors).
	gate  *acceptGate
	ready []*evConn // edge-triggered: connections that used their read budget
}

var _ drainer = (*epollLoop)(nil)

func (m epollModel) Serve(ctx context.Context, ln *sock.Listener, env *Env) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	p, err := openPoller(ctx, epollEvents)
	if err != nil {
		return err
	}
	// Closing the epoll instance takes the listener out of it: ln belongs to the
	// caller, who may serve it again.
	defer p.close()
	el := &epollLoop{loop: newLoop(env), p: p, edge: m.edge, gate: newAcceptGate(env, ln.FD, unix.SOCK_NONBLOCK)}
	defer el.closeAll()
	mode := lnLevel
	switch {
	case m.edge && m.exclusive:
		mode = lnExclusive
	case m.edge:
		mode = lnEdge
	}
	if err := el.gate.watch(p, mode); err != nil {
		return err
	}

	for !el.stopping(ctx, el) {
		timeout := el.gate.timeoutMS(el.timeoutMS())
		if len(el.ready) > 0 {
			timeout = 0 // connections with input left must not wait for an edge
		}
		events, err := p.wait(timeout)
		if err != nil {
			return err
		}
		el.tick()
		// An accept pause that ended puts the listener back; edge-triggered, the
		// edge that announced the waiting connections was consumed during the
		// pause, so they are accepted now.
		resumed, err := el.gate.update(true)
		if err != nil {
			return err
		}
		if resumed && el.edge {
			if err := el.acceptAll(); err != nil {
				return err
			}
		}
		for i := range events {
			switch fd := int(events[i].Fd); fd {
			case p.w.fd:
				// Shutdown: stopping sees ctx.
				p.clearWake()
			case ln.FD:
				// Out of the set once draining.
				if err := el.acceptAll(); err != nil {
					return err
				}
			default:
				if c := el.conns[fd]; c != nil {
					el.handle(c, events[i].Events)
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

// acceptAll accepts what the backlog holds: everything until EAGAIN when
// edge-triggered (the edge will not be reported again), a bounded batch when
// level-triggered (the listener stays ready, so the rest comes on the next pass).
// Out of descriptors, the gate takes the listener out of the set for the pause
// where its mode needs it.
func (el *epollLoop) acceptAll() error {
	for k := 0; el.edge || k < acceptBatch; k++ {
		fd := el.gate.accept()
		if fd < 0 {
			break
		}
		el.addConn(fd)
	}
	_, err := el.gate.update(true)
	return err
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
	if err := el.p.add(fd, c.events); err != nil {
		el.env.Log.Print(err)
		el.release(c)
	}
}

// startDrain starts the graceful shutdown (Config.Grace): the listener leaves the
// set, and every connection is settled once in draining mode (settleAll).
func (el *epollLoop) startDrain() { el.settleAll() }

// drainDone reports whether the drain is over: no connection left.
func (el *epollLoop) drainDone() bool { return el.live == 0 }

// settleAll is the start of a drain: the listener, if any, leaves the set, and
// every connection is settled once in draining mode — an idle one has its write
// side shut now, a back-pressured one is read (and its input discarded) from now
// on; edge-triggered, a connection whose read was latched while back-pressured is
// driven now, since no edge will come for input already waiting. It returns how
// many connections that closed.
func (el *epollLoop) settleAll() int {
	if el.gate != nil {
		el.gate.close()
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
		if err := el.p.mod(c.fd, want); err != nil {
			el.env.Log.Print(err)
			c.dead = true
			el.release(c)
		}
	}
}

// ServeDatagrams: the same thread and an epoll instance with the one datagram
// socket, level-triggered (one receive call per readiness) or edge-triggered
// (receive until EAGAIN); see dgram.go.
func (m epollModel) ServeDatagrams(ctx context.Context, ds *sock.Listener, env *Env) error {
	if !m.exclusive { // a prefork worker's socket is its parent's to report
		defer rcvbufDropsGauge(env, ds.FD)()
	}
	return epollDatagrams(ctx, m.edge, m.exclusive, newDgramSock(ds.FD, env))
}

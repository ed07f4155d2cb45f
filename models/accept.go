package models

// The accept gate: how every model that accepts connections itself does it (all
// but goroutine, whose runtime accepts, and prefork's parent, whose workers do).

import (
	"os"
	"time"

	"golang.org/x/sys/unix"

	"concbench/internal/sock"
)

// acceptPause is how long accepting stops after EMFILE/ENFILE (or a failed fork):
// the listener stays readable while out of descriptors, and a loop that watched it
// meanwhile would spin on it.
const acceptPause = 100 * time.Millisecond

// acceptBatch bounds the accepts of one readiness pass in level-triggered loops, so a
// connection storm cannot starve the connections already being served.
const acceptBatch = 64

// lnMode is how a listener is registered with a poller, and so how it leaves the
// interest set while the gate is closed.
type lnMode uint8

const (
	// lnLevel: EPOLLIN. While closed it stays registered with no events
	// (EPOLL_CTL_MOD): a level-triggered listener left in would wake every pass
	// while out of descriptors — the accept storm.
	lnLevel lnMode = iota
	// lnEdge: EPOLLIN|EPOLLET. It stays in the set while paused: an edge is
	// reported once, so a paused loop is not woken again for the same backlog; but
	// the edge that announced the waiting connections was consumed, so when the
	// pause ends the loop must accept at once (update reports it).
	lnEdge
	// lnExclusive: EPOLLIN|EPOLLET|EPOLLEXCLUSIVE, for several processes sharing
	// one listener (prefork). EPOLLEXCLUSIVE wakes one of them per new connection;
	// a loop out of descriptors would take that wake-up and fail while another
	// with descriptors to spare never hears of the connection. So a paused loop
	// leaves the set (as nginx does); an exclusive registration cannot be
	// modified, only deleted and added again.
	lnExclusive
)

func (m lnMode) events() uint32 {
	switch m {
	case lnEdge:
		return unix.EPOLLIN | unix.EPOLLET
	case lnExclusive:
		return unix.EPOLLIN | unix.EPOLLET | unix.EPOLLEXCLUSIVE
	}
	return unix.EPOLLIN
}

// acceptGate accepts connections from one listener for one loop thread: accept4
// with the model's flags (non-blocking connections for the event loops, blocking
// ones for the models whose threads sleep in read and write), EINTR and
// ECONNABORTED retried (sock.Accept), and on EMFILE/ENFILE a pause of acceptPause
// instead of a spin, counted in accept_pauses and logged once. It also keeps the
// listener's place in the loop's readiness set: in while the model wants
// connections (a model with a cap — fork's children, procpool's idle workers,
// thread's threads — says when it does not) and accepting is not paused; out for
// good once the model drains.
//
// A model that rebuilds its set on every pass (select, poll, thread's acceptor)
// asks open; an epoll-based one registers the listener with watch and calls
// update after every change of what it wants.
type acceptGate struct {
	env   *Env
	fd    int // the listener; it belongs to the caller of Serve
	flags int // accept4 flags

	p    *poller // nil until watch
	mode lnMode
	reg  bool // registered with p
	on   bool // registered with its events (not 0)
	shut bool // the model drains: the listener is out for good

	pausedUntil time.Time
	resumed     bool // a pause ended and no update has reported it yet
	loggedPause bool
}

// newAcceptGate is the gate of listener fd; flags are accept4's (SOCK_NONBLOCK, or
// 0 for a blocking connection).
func newAcceptGate(env *Env, fd, flags int) *acceptGate {
	return &acceptGate{env: env, fd: fd, flags: flags}
}

// watch registers the listener with p in mode, open.
func (g *acceptGate) watch(p *poller, mode lnMode) error {
	g.p, g.mode = p, mode
	if err := p.add(g.fd, mode.events()); err != nil {
		return err
	}
	g.reg, g.on = true, true
	return nil
}

// accept returns a new connection, or -1 when the backlog is empty or accepting
// failed; on EMFILE/ENFILE accepting is paused (see pause). Other errors are
// logged: they concern the connection that failed, not the listener.
func (g *acceptGate) accept() int {
	fd, err := sock.Accept(g.fd, g.flags)
	if err == nil {
		return fd
	}
	if sock.IsFDLimit(err) {
		g.pause(err)
	} else if err != unix.EAGAIN {
		g.env.Log.Printf("accept: %v", os.NewSyscallError("accept4", err))
	}
	return -1
}

// pause stops accepting for acceptPause because of err (out of descriptors, or a
// model's fork that failed for lack of processes or memory), counts it and logs
// the first one.
func (g *acceptGate) pause(err error) {
	g.pausedUntil = time.Now().Add(acceptPause)
	g.env.Stats.acceptPauses.Add(1)
	if !g.loggedPause {
		g.loggedPause = true
		g.env.Log.Printf("accept: %v; pausing accept for %v (logged once)", err, acceptPause)
	}
}

// paused reports whether accepting is paused, and lifts the pause once its time
// is up.
func (g *acceptGate) paused() bool {
	if g.pausedUntil.IsZero() {
		return false
	}
	if time.Now().Before(g.pausedUntil) {
		return true
	}
	g.pausedUntil = time.Time{}
	g.resumed = true
	return false
}

// open reports whether the loop should accept now: it wants connections, has not
// begun draining, and accepting is not paused.
func (g *acceptGate) open(want bool) bool { return want && !g.shut && !g.paused() }

// update brings the listener's registration in line with open(want): a level-
// triggered listener's events are set to 0 or back, an exclusive one leaves the
// set or joins it again, an edge-triggered one stays as it is. It reports whether
// a pause ended since the last update: an edge-triggered loop must then accept at
// once (see lnEdge).
func (g *acceptGate) update(want bool) (resumed bool, err error) {
	open := g.open(want)
	resumed, g.resumed = g.resumed && open, false
	if g.p == nil || open == g.on || g.mode == lnEdge {
		return resumed, nil
	}
	switch {
	case g.mode == lnExclusive && open:
		err = g.p.add(g.fd, g.mode.events())
		g.reg = err == nil
	case g.mode == lnExclusive:
		err = g.p.del(g.fd)
		g.reg = false
	case open:
		err = g.p.mod(g.fd, g.mode.events())
	default:
		err = g.p.mod(g.fd, 0)
	}
	if err == nil {
		g.on = open
	}
	return resumed, err
}

// close takes the listener out for good: the model drains (Config.Grace) and
// accepts nothing more. A failure is logged: closing the poller takes the
// registration out all the same.
func (g *acceptGate) close() {
	g.shut = true
	if g.p != nil && g.reg {
		if err := g.p.del(g.fd); err != nil {
			g.env.Log.Print(err)
		}
	}
	g.reg, g.on = false, false
}

// timeoutMS is the wait t (in ms, -1 for no limit) shortened to end when an
// accept pause does, so that the loop wakes to accept again.
func (g *acceptGate) timeoutMS(t int) int {
	if g.pausedUntil.IsZero() || g.shut {
		return t
	}
	ms := max(1, int(time.Until(g.pausedUntil).Milliseconds())+1)
	if t < 0 || ms < t {
		return ms
	}
	return t
}

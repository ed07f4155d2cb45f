package models

// reactor: the seed's epoll reactor (myevent_s). One thread; every descriptor —
// listener, shutdown eventfd, connections — has an event object {fd, interest,
// callback, buffers, last active}, found from the epoll event through its data (the
// fd, an index into a table of objects: no map lookup per event). epoll_wait says
// which objects are ready and the loop calls their callback; it knows nothing else.
// The callbacks follow the seed's flow: listen for read → the read callback reads and
// computes the replies → the object switches to listening for write → the write
// callback writes → once its output is flushed, back to read. The seed does the
// switch with EPOLL_CTL_DEL then EPOLL_CTL_ADD; this does it with one EPOLL_CTL_MOD,
// which is the same change in one syscall. A periodic sweep, driven by the
// epoll_wait timeout, closes connections whose last activity (a byte read or
// written) is older than Config.IdleTimeout — the seed's last_active check, which is
// also how it drops a client that missed its heartbeats. (Every event loop now
// sweeps the same way, with the clock and counters of clock.go; the sweep is this
// model's in the seed.)
//
// Where it comes from: the Reactor pattern (Schmidt, 1995); the seed's myevent_s
// server; libevent's event_base and bufferevent are its library form.
//
// Strengths: the handler of each descriptor is data, so adding a kind of descriptor
// (a timer, a pipe) is adding a callback; back-pressure for free (a connection is not
// read while it owes output); idle connections are reclaimed. Limits: one thread, so
// one core; a slow handler stalls every connection; the strict read/write alternation
// costs two epoll_ctl calls and one more epoll_wait wake-up per request than epoll-lt,
// which writes a reply at once; the sweep scans every connection. Config.HighWater
// does not apply: a connection is not read at all while it owes output, so what it
// can queue is the replies of one read (Config.ReadBuf, or one rpc frame); above
// Config.MaxOutput the connection is closed.
//
// Datagrams (udp-echo): the one socket is an event object like any other, and
// follows the same flow: its read callback reads one batch (recvfrom, or
// recvmmsg of up to Config.Batch) and computes the replies, then switches the
// object to write; its write callback sends them (sendto, or sendmmsg) and
// switches back to read. The switch costs the same two epoll_ctl calls and
// one more wake-up per batch as per request on a connection: the measured
// price of the seed's alternation.
//
// Connections closed by the idle sweep are counted in the common idle_closed. At a
// graceful shutdown (Config.Grace) every connection's callback becomes onDrain:
// flush what it owes and discard what it reads, at once rather than alternating.

import (
	"context"
	"runtime"

	"golang.org/x/sys/unix"

	"concbench/internal/rawio"
	"concbench/internal/sock"
)

func init() {
	Register("reactor", "one thread, epoll with a callback per fd (the seed's myevent_s), read/write switching, idle sweep",
		func() Model { return reactorModel{} })
}

var _ Model = reactorModel{}

type reactorModel struct{}

// rEvent is the seed's myevent_s: one descriptor, what epoll watches on it for us,
// and what to call when that happens. The connection state (session, output
// buffer, end of input, last active) is the evConn shared with the other event
// loops; the listener's and the waker's objects leave it empty.
type rEvent struct {
	evConn
	conn     bool     // a connection (not the listener or the waker)
	interest uint32   // events registered with epoll
	cb       callback // what to do when one of them fires
}

// callback handles the events got on ev. An error is fatal to the reactor; a
// connection's trouble closes the connection and returns nil.
type callback func(r *reactor, ev *rEvent, got uint32) error

type reactor struct {
	*loop // read buffer, flush, idle clock and sweep timing, counters
	p     *poller
	gate  *acceptGate
	evs   []*rEvent // indexed by fd
}

var _ drainer = (*reactor)(nil)

func (reactorModel) Serve(ctx context.Context, ln *sock.Listener, env *Env) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	p, err := openPoller(ctx, epollEvents)
	if err != nil {
		return err
	}
	// Closing the epoll instance also takes the listener out of it: ln belongs to
	// the caller.
	defer p.close()

	r := &reactor{loop: newLoop(env), p: p, gate: newAcceptGate(env, ln.FD, unix.SOCK_NONBLOCK)}
	defer r.closeConns()
	// The waker and the listener have event objects like any descriptor; the
	// poller registered the one, the gate registers the other (and takes its
	// interest away while accepting is paused).
	r.object(p.w.fd, false, unix.EPOLLIN, (*reactor).onWake)
	r.object(ln.FD, false, unix.EPOLLIN, (*reactor).onAccept)
	if err := r.gate.watch(p, lnLevel); err != nil {
		return err
	}

	for !r.stopping(ctx, r) {
		events, err := p.wait(r.gate.timeoutMS(r.timeoutMS()))
		if err != nil {
			return err
		}
		r.tick()
		if _, err := r.gate.update(true); err != nil {
			return err
		}
		for i := range events {
			got := events[i].Events
			ev := r.evs[events[i].Fd]
			// EPOLLHUP/EPOLLERR come whatever was asked for: the callback's read or
			// write meets the error or the end of input. An object gone (closed
			// earlier in this batch) or no longer interested is skipped.
			if ev == nil || got&(ev.interest|unix.EPOLLHUP|unix.EPOLLERR) == 0 {
				continue
			}
			if err := ev.cb(r, ev, got); err != nil {
				return err
			}
		}
		if r.sweepDue() {
			r.sweep()
		}
	}
	return nil
}

// object creates the event object of fd, not yet registered with epoll.
func (r *reactor) object(fd int, conn bool, interest uint32, cb callback) *rEvent {
	for fd >= len(r.evs) {
		r.evs = append(r.evs, make([]*rEvent, len(r.evs)+64)...)
	}
	ev := &rEvent{evConn: evConn{fd: fd, lastActive: r.now}, conn: conn, interest: interest, cb: cb}
	r.evs[fd] = ev
	return ev
}

// register creates the event object of fd and adds it to epoll.
func (r *reactor) register(fd int, conn bool, interest uint32, cb callback) (*rEvent, error) {
	if err := r.p.add(fd, interest); err != nil {
		return nil, err
	}
	return r.object(fd, conn, interest, cb), nil
}

func (r *reactor) setInterest(ev *rEvent, interest uint32) error {
	if interest == ev.interest {
		return nil
	}
	if err := r.p.mod(ev.fd, interest); err != nil {
		return err
	}
	ev.interest = interest
	return nil
}

// onWake is the shutdown eventfd's callback: stopping sees ctx; the eventfd is
// cleared, so that a draining reactor does not find it readable on every wait.
func (r *reactor) onWake(ev *rEvent, _ uint32) error {
	clearEventfd(ev.fd)
	return nil
}

// startDrain starts the graceful shutdown (Config.Grace): the listener leaves
// epoll and its object the table, and every connection switches to the drain
// callback (settle), an idle one having its write side shut at once.
func (r *reactor) startDrain() {
	r.gate.close()
	r.evs[r.gate.fd] = nil
	for _, ev := range r.evs {
		if ev != nil && ev.conn {
			r.settle(ev)
		}
	}
}

// drainDone reports whether the drain is over: no connection left.
func (r *reactor) drainDone() bool { return r.live == 0 }

// onAccept is the listener's callback: accept a batch, give each connection an event
// object listening for read.
func (r *reactor) onAccept(ev *rEvent, _ uint32) error {
	for range acceptBatch {
		fd := r.gate.accept()
		if fd < 0 {
			break
		}
		c, err := r.register(fd, true, unix.EPOLLIN, (*reactor).onRead)
		if err != nil {
			r.env.Log.Print(err)
			unix.Close(fd)
			continue
		}
		c.sess = r.env.Proto.NewSession()
		r.live++
		r.env.Stats.opened()
	}
	// Out of descriptors: the gate takes the listener's interest away until the
	// pause ends (a listener left readable would wake every pass).
	_, err := r.gate.update(true)
	return err
}

// onRead is a connection's callback while it listens for read: one read, fed to
// the session; the replies are queued, not written — writing is the write
// callback's job, once epoll says the socket takes it.
func (r *reactor) onRead(ev *rEvent, _ uint32) error {
	c := &ev.evConn
	n, err := rawio.Read(c.fd, r.buf)
	switch {
	case err == unix.EAGAIN:
		return nil // a stale readiness: the next epoll_wait will tell
	case err != nil:
		r.ioError(c)
	case n == 0:
		c.eof, c.rdEOF = true, true
	default:
		c.lastActive = r.now
		ferr := c.sess.Feed(&c.out, r.buf[:n])
		switch {
		case owed(&c.out) > r.maxOut:
			r.capOutput(c) // closed at once, its replies dropped
		case ferr == nil:
		case feedEnd(r.env.Stats, ferr):
			c.eof = true // the session is done: write its replies, then close
		default:
			// The replies to the complete requests before the bad one go out if
			// the socket takes them now; the bad one gets none.
			r.flush(c)
			c.dead = true
		}
	}
	r.settle(ev)
	return nil
}

// onWrite is a connection's callback while it listens for write: write what is
// queued until done or the socket is full (a byte written makes it active).
func (r *reactor) onWrite(ev *rEvent, _ uint32) error {
	r.flush(&ev.evConn)
	r.settle(ev)
	return nil
}

// onDrain is every connection's callback once the reactor drains: write what it
// owes when the socket takes it, read and discard what the client sends (no new
// request; see loop.discard), until settle shuts the write side and, once the
// client has closed, the connection.
func (r *reactor) onDrain(ev *rEvent, got uint32) error {
	c := &ev.evConn
	broken := got&(unix.EPOLLHUP|unix.EPOLLERR) != 0
	if (got&unix.EPOLLOUT != 0 || broken) && c.pending() > 0 {
		r.flush(c)
	}
	if (got&(unix.EPOLLIN|unix.EPOLLRDHUP) != 0 || broken) && r.wantRead(c) {
		r.discard(c)
	}
	r.settle(ev)
	return nil
}

// settle closes a finished connection or points it at its next callback: write
// while output is queued (so it is not read meanwhile: that is the back-pressure,
// bounded by the replies of one read), read once it is flushed. Draining, it waits
// for both at once with the drain callback: reading discards, so it cannot add to
// the output, and a client that writes before it reads must not be left blocked.
func (r *reactor) settle(ev *rEvent) {
	c := &ev.evConn
	if r.finished(c) {
		r.closeConn(ev)
		return
	}
	interest, cb := uint32(unix.EPOLLIN), (*reactor).onRead
	switch {
	case r.draining:
		interest, cb = 0, (*reactor).onDrain
		if r.wantRead(c) {
			interest |= unix.EPOLLIN | unix.EPOLLRDHUP
		}
		if r.wantWrite(c) {
			interest |= unix.EPOLLOUT
		}
	case c.pending() > 0:
		interest, cb = unix.EPOLLOUT, (*reactor).onWrite
	}
	if err := r.setInterest(ev, interest); err != nil {
		r.env.Log.Print(err)
		c.dead = true
		r.closeConn(ev)
		return
	}
	ev.cb = cb
}

// sweep closes the connections idle for longer than the timeout.
func (r *reactor) sweep() {
	for _, ev := range r.evs {
		if ev != nil && ev.conn && r.idleExpired(&ev.evConn) {
			r.closeConn(ev)
			r.env.Stats.idleClosed.Add(1)
		}
	}
}

// closeConn closes a connection's fd, which also takes it out of epoll, and drops
// its event object.
func (r *reactor) closeConn(ev *rEvent) {
	ev.out.Reset()
	unix.Close(ev.fd)
	r.evs[ev.fd] = nil
	r.live--
	r.env.Stats.done()
}

// closeConns closes every connection; used at shutdown.
func (r *reactor) closeConns() {
	for _, ev := range r.evs {
		if ev != nil && ev.conn {
			r.closeConn(ev)
		}
	}
}

// ServeDatagrams: see the file's comment.
func (reactorModel) ServeDatagrams(ctx context.Context, ds *sock.Listener, env *Env) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	p, err := openPoller(ctx, epollEvents)
	if err != nil {
		return err
	}
	defer p.close() // takes ds out of it
	defer rcvbufDropsGauge(env, ds.FD)()
	r := &reactor{loop: newLoop(env), p: p}
	r.object(p.w.fd, false, unix.EPOLLIN, (*reactor).onWake)
	d := newDgramSock(ds.FD, env)
	var onRead, onWrite callback
	onRead = func(r *reactor, ev *rEvent, _ uint32) error {
		n, err := d.recv()
		if err != nil || n == 0 {
			return err
		}
		d.answer(n)
		if d.m.Queued() == 0 {
			return nil // every one dropped: nothing to write
		}
		ev.cb = onWrite
		return r.setInterest(ev, unix.EPOLLOUT)
	}
	onWrite = func(r *reactor, ev *rEvent, _ uint32) error {
		d.flush()
		ev.cb = onRead
		return r.setInterest(ev, unix.EPOLLIN)
	}
	if _, err := r.register(ds.FD, false, unix.EPOLLIN, onRead); err != nil {
		return err
	}
	for ctx.Err() == nil {
		events, err := p.wait(-1)
		if err != nil {
			return err
		}
		for i := range events {
			ev := r.evs[events[i].Fd]
			if got := events[i].Events; ev != nil && got&(ev.interest|unix.EPOLLERR) != 0 {
				if err := ev.cb(r, ev, got); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

package models

// multireactor: one event loop per thread. A main reactor (one locked OS thread,
// its own epoll with the listener) only accepts; it hands each connection to one of
// N sub-reactors, each a locked OS thread with its own level-triggered epoll loop
// (the epoll-lt loop of epoll.go), through a per-loop queue (a mutex and a slice) and
// an eventfd that wakes the loop. From then on every read and write of that
// connection happens on its loop's thread, so connections share no state and need no
// lock. Which loop gets a connection is Config.Balance: "rr" (round-robin, also the
// zero value) or "least" (fewest live connections, counted per loop).
//
// Where it comes from: muduo's "one loop per thread" (EventLoopThreadPool), memcached
// (a listener thread dispatching to worker threads, each with its own libevent loop,
// woken through a pipe), netty's boss and worker EventLoopGroups.
//
// Strengths: uses N cores with the event-loop's costs per connection (no thread per
// connection, no lock on the data path); a connection's state is touched by one
// thread only, so it stays in that core's cache. Limits: the balance is decided at
// accept time — long-lived connections of unequal weight leave loops unevenly loaded,
// and nothing moves a connection later; a slow handler still stalls every connection
// of its loop; one acceptor thread is a (small) serial point during connection storms.
//
// Datagrams (udp-echo): there is nothing to accept, so no main reactor. Each
// of the N loops has a UDP socket of its own, all bound to one port as one
// SO_REUSEPORT group, and serves it with the level-triggered datagram loop of
// dgram.go on its own thread: the kernel's hash of each peer's address is the
// balance (Config.Balance does not apply), and one peer's datagrams always
// reach the same loop. Gauges: loopN_datagrams, the datagrams loop N read.
//
// Gauges: loopN_conns (live connections of loop N, counted from hand-off) and
// loopN_accepted (connections ever handed to loop N), for N from 0.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"concbench/internal/sock"
)

func init() {
	Register("multireactor", "an acceptor thread hands connections to N epoll loops, one per thread: all cores, no locks on I/O",
		func() Model { return multiReactorModel{} })
}

var _ Model = multiReactorModel{}

type multiReactorModel struct{}

// subReactor is one loop thread and its hand-off queue.
type subReactor struct {
	el *epollLoop // its poller's waker wakes the loop for a hand-off and at shutdown

	mu     sync.Mutex
	queue  []int // connections handed off, not yet taken by the loop
	closed bool  // the loop has stopped: hand-offs are refused

	live     atomic.Int64 // connections handed to this loop and not yet closed
	accepted atomic.Int64 // connections ever handed to this loop
}

func (multiReactorModel) Serve(ctx context.Context, ln *sock.Listener, env *Env) error {
	n := env.Config.Loops
	if n == 0 {
		n = runtime.NumCPU()
	}
	least := env.Config.Balance == BalanceLeast

	// A fault of any loop stops them all.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	subs := make([]*subReactor, 0, n)
	for range n {
		s, err := newSubReactor(ctx, env)
		if err != nil {
			for _, s := range subs {
				s.shutdown()
			}
			return err
		}
		subs = append(subs, s)
	}
	for i, s := range subs {
		env.Stats.Gauge(fmt.Sprintf("loop%d_conns", i), s.live.Load)
		env.Stats.Gauge(fmt.Sprintf("loop%d_accepted", i), s.accepted.Load)
	}

	errs := make([]error, n+1)
	var wg sync.WaitGroup
	for i, s := range subs {
		wg.Go(func() {
			if errs[i+1] = s.run(ctx); errs[i+1] != nil {
				cancel()
			}
		})
	}
	a := &acceptor{gate: newAcceptGate(env, ln.FD, unix.SOCK_NONBLOCK), subs: subs, least: least}
	errs[0] = a.run(ctx)
	cancel()
	wg.Wait()
	return errors.Join(errs...)
}

func newSubReactor(ctx context.Context, env *Env) (*subReactor, error) {
	p, err := openPoller(ctx, epollEvents)
	if err != nil {
		return nil, err
	}
	return &subReactor{el: &epollLoop{loop: newLoop(env), p: p}}, nil
}

// handOff queues fd for the loop and wakes it, or reports false if the loop has
// stopped (the caller still owns fd). Only a hand-off to an empty queue writes the
// eventfd: a non-empty queue has a wake-up pending that has not been acted on yet,
// since the loop reads the eventfd before it takes the queue.
func (s *subReactor) handOff(fd int) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	wake := len(s.queue) == 0
	s.queue = append(s.queue, fd)
	s.live.Add(1)
	s.accepted.Add(1)
	s.mu.Unlock()
	if wake {
		s.el.p.w.wake()
	}
	return true
}

// run is the loop: on its own locked thread, it serves its connections and adopts
// the ones handed to it until ctx is cancelled, then drains them (Config.Grace)
// and closes everything it holds.
func (s *subReactor) run(ctx context.Context) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer s.shutdown()
	el := s.el
	var taken []int
	for !el.stopping(ctx, s) {
		events, err := el.p.wait(el.timeoutMS())
		if err != nil {
			return err
		}
		el.tick()
		for i := range events {
			fd := int(events[i].Fd)
			if el.p.isWake(fd) {
				taken = s.adopt(taken)
				continue
			}
			if c := el.conns[fd]; c != nil {
				el.handle(c, events[i].Events)
				if el.conns[fd] != c {
					s.live.Add(-1) // handle closed it
				}
			}
		}
		if el.sweepDue() {
			s.live.Add(-int64(el.sweepIdle()))
		}
	}
	return nil
}

// startDrain settles every connection of the loop in draining mode.
func (s *subReactor) startDrain() { s.live.Add(-int64(s.el.settleAll())) }

// drainDone reports whether the loop has no connection left. live counts the
// connections queued for this loop too: those are adopted and drained like the
// others.
func (s *subReactor) drainDone() bool { return s.live.Load() == 0 }

// adopt registers the connections waiting in the queue with the loop's epoll.
func (s *subReactor) adopt(buf []int) []int {
	// Reset the eventfd before taking the queue, so that a hand-off after the take
	// makes it readable again.
	var b [8]byte
	if _, err := sock.Read(s.el.p.w.fd, b[:]); err != nil && err != unix.EAGAIN {
		s.el.env.Log.Print(os.NewSyscallError("read eventfd", err))
	}
	s.mu.Lock()
	buf = append(buf[:0], s.queue...)
	s.queue = s.queue[:0]
	s.mu.Unlock()
	for _, fd := range buf {
		s.el.addConn(fd)
		if c := s.el.conns[fd]; c != nil && s.el.draining {
			// Handed off as the server stopped: drained like the others (it
			// owes nothing, so its write side is shut at once).
			s.el.settle(c)
		}
		if s.el.conns[fd] == nil {
			s.live.Add(-1) // could not be registered, or drained at once: closed
		}
	}
	return buf
}

// shutdown refuses further hand-offs, closes the connections queued and served,
// the epoll instance and the eventfd.
func (s *subReactor) shutdown() {
	s.mu.Lock()
	s.closed = true
	rest := s.queue
	s.queue = nil
	s.mu.Unlock()
	for _, fd := range rest {
		s.el.add(fd) // counted as accepted, and closed with the others
	}
	s.el.closeAll()
	s.live.Store(0)
	s.el.p.close()
}

// acceptor is the main reactor: an epoll loop over the listener that accepts and
// hands off, and does no I/O on connections.
type acceptor struct {
	gate  *acceptGate
	subs  []*subReactor
	least bool
	next  int // round-robin cursor
}

func (a *acceptor) run(ctx context.Context) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	p, err := openPoller(ctx, 2)
	if err != nil {
		return err
	}
	// Closing the epoll instance also takes the listener out of it: ln belongs to
	// the caller.
	defer p.close()
	if err := a.gate.watch(p, lnLevel); err != nil {
		return err
	}
	for ctx.Err() == nil {
		events, err := p.wait(a.gate.timeoutMS(-1))
		if err != nil {
			return err
		}
		if _, err := a.gate.update(true); err != nil {
			return err
		}
		for i := range events {
			if int(events[i].Fd) == a.gate.fd {
				if err := a.acceptAndHandOff(); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// acceptAndHandOff accepts a bounded batch (the listener is level-triggered: the
// rest comes on the next pass) and hands each connection to a loop.
func (a *acceptor) acceptAndHandOff() error {
	for range acceptBatch {
		fd := a.gate.accept()
		if fd < 0 {
			break
		}
		if !a.pick().handOff(fd) {
			unix.Close(fd) // shutting down
		}
	}
	// Out of descriptors: the gate takes the listener's interest away until the
	// pause ends (a listener left readable would wake every pass).
	_, err := a.gate.update(true)
	return err
}

// pick chooses the loop for the next connection: the next in turn, or the one with
// the fewest live connections (the first of those on a tie).
func (a *acceptor) pick() *subReactor {
	if !a.least {
		s := a.subs[a.next]
		a.next = (a.next + 1) % len(a.subs)
		return s
	}
	best, fewest := a.subs[0], a.subs[0].live.Load()
	for _, s := range a.subs[1:] {
		if l := s.live.Load(); l < fewest {
			best, fewest = s, l
		}
	}
	return best
}

// ServeDatagrams: see the file's comment.
func (multiReactorModel) ServeDatagrams(ctx context.Context, ds *sock.Listener, env *Env) error {
	n := env.Config.Loops
	if n == 0 {
		n = runtime.NumCPU()
	}
	fds, err := reusePortGroup(ds, n)
	if err != nil {
		return err
	}
	defer sock.SetReusePort(ds.FD, false) // ds is the caller's, as it was
	defer closeFDs(fds[1:])
	defer rcvbufDropsGauge(env, fds...)()  // runs before the sockets close
	ctx, cancel := context.WithCancel(ctx) // a fault of any loop stops them all
	defer cancel()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, fd := range fds {
		d := newDgramSock(fd, env)
		env.Stats.Gauge(fmt.Sprintf("loop%d_datagrams", i), d.read.Load)
		wg.Go(func() {
			if errs[i] = epollDatagrams(ctx, false, false, d); errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

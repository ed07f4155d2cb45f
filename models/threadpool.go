package models

// threadpool: the seed's thread pool with a manager thread, made to serve many
// connections. One poller thread (locked) waits in epoll_wait on the listener and
// every connection; each connection is registered with EPOLLONESHOT, so one readiness
// event disarms it, and the poller turns the event into a task "this connection is
// ready" in a bounded ring queue (front/rear/size/capacity) guarded by a mutex with
// not-full and not-empty condition variables. When the queue is full the poller
// waits on not-full: back-pressure, no task is ever dropped. Worker threads
// (goroutines locked to their OS thread for life) wait on not-empty, take a task,
// count themselves busy, read the connection, run the session — the request's work
// (-work sleep:…) blocks the worker's thread — write the reply, and re-arm the
// descriptor with EPOLL_CTL_MOD for EPOLLIN, or for EPOLLOUT while output the socket
// would not take is queued (and not EPOLLIN while that output is above the
// high-water bound: the event models' back-pressure rule). Oneshot guarantees that
// one worker at a time touches a connection; the worker that owns it closes it.
//
// The pool is the seed's: min, max, live, busy and wait-exit counts, and a manager
// that every AdjustInterval grows the pool by tpStep threads (up to max) when at
// least tpMinWait tasks are queued, or else, when fewer than half the live threads
// are busy and more than min live, asks tpStep idle threads to exit by signalling
// not-empty: a woken idle worker that sees wait-exit > 0 decrements it and, if more
// than min live, exits — its thread with it. One departure from the seed: a worker
// only considers exiting while the queue is empty, so a signal meant for a task is
// never swallowed by a thread on its way out.
//
// Idle connections (Config.IdleTimeout) are swept by the poller between epoll_waits,
// and only those armed in epoll: one queued or being served is in a worker's hands
// (see sweepIdle). A graceful shutdown (Config.Grace) follows the same rule: the
// poller sets a flag the workers read at each task, drains the armed connections
// itself (drainPass), and the workers run until the drain ends.
//
// Where it comes from: the seed's C pool (threadpool_create/add/destroy with
// adjust_thread), itself the shape of Java's ThreadPoolExecutor; an epoll poller
// feeding a pool is the "half-sync/half-async" pattern (Schmidt, 1996), and the shape
// of MySQL's thread-pool plugin and Tomcat's NIO connector.
//
// Strengths: a blocking handler (-work sleep:…) holds only one worker, and the pool
// grows under queueing, so slow requests overlap up to max threads; a bounded number
// of threads serves any number of connections. Limits: every request crosses threads
// (poller → queue → worker: two wake-ups, a mutex and an epoll_ctl per request), so
// with cheap requests it is slower than one event loop; the manager reacts only every
// AdjustInterval; when all max threads block, the queue fills and the poller stops.
//
// Gauges: threads_live and threads_busy (workers; the poller not counted) and
// queue_len (tasks waiting).
//
// Datagrams (udp-echo): the same pool, poller and queue. The poller waits in
// epoll_wait (level-triggered) on the one socket and, per readiness, reads one
// batch — a recvfrom, or a recvmmsg of up to Config.Batch — into a batch
// buffer and queues it as a task; a worker answers the batch and sends the
// replies itself (sendto, or sendmmsg), on the same socket, and hands the
// buffer back. A full queue stops the poller as for connections, and so does
// having every batch buffer in the queue or a worker's hands (a thread's worth
// and some, within 64 MiB, allocated as needed): the socket's receive buffer
// then fills, and the kernel drops what does not fit (rcvbuf_drops). Every
// datagram crosses two threads, as every request does here.

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"concbench/internal/proto"
	"concbench/internal/rawio"
	"concbench/internal/sock"
)

func init() {
	Register("threadpool", "epoll poller feeding a bounded queue and a managed pool of threads: blocking work overlaps; a hand-off per request",
		func() Model { return threadpoolModel{} })
}

var _ Model = threadpoolModel{}

type threadpoolModel struct{}

// The seed's constants (the defaults of the pool's bounds are config.go's).
const (
	tpStep    = 10 // threads started or stopped per adjustment (DEFAULT_THREAD_VARY)
	tpMinWait = 10 // queued tasks that make the manager grow the pool (MIN_WAIT_TASK_NUM)
	// tpReadBudget bounds the reads of one task, so a connection that keeps
	// sending goes back through the queue behind the others.
	tpReadBudget = 4
)

// tpConn is one connection of the pool. mu is held by the worker serving it: oneshot
// already ensures no two workers hold one connection, but epoll is invisible to the
// race detector, so the lock makes the hand-off from one worker to the next a
// happens-before edge it can see (and costs one uncontended lock).
type tpConn struct {
	mu sync.Mutex
	evConn
	// armed: registered in epoll and armed, with no event delivered for it since,
	// so neither queued nor served — the only state in which the idle sweep may
	// close it. Guarded by mu: set by whoever arms it, cleared by the poller when an
	// event turns it into a task.
	armed bool
	// drained: handled in draining mode at least once (its interest is a draining
	// one, its write side shut if it owed nothing), by a worker or by the poller's
	// drainPass. Guarded by mu.
	drained bool
}

// tpTask is one queued readiness event, or (udp-echo) a batch of datagrams
// the poller read.
type tpTask struct {
	c  *tpConn
	ev uint32
	dg *rawio.Msgs // the datagrams, dgn of them; nil for a connection's task
	dn int
}

// tpool is the pool, its queue and its connections.
type tpool struct {
	env      *Env
	ep       *poller
	gate     *acceptGate
	acc      *loop // the poller thread's clock (idle sweep, drain) and connection rules
	min, max int
	interval time.Duration
	minWait  int
	workers  sync.WaitGroup

	managerStop context.CancelFunc
	managerDone chan struct{}

	mu                   sync.Mutex // guards the queue and the counts
	notFull, notEmpty    sync.Cond
	queue                []tpTask // a ring: size tasks from front; rear is the next free slot
	front, rear, size    int
	live, busy, waitExit int
	shutdown             bool

	connMu sync.Mutex // guards conns, the fd → connection table, and nconns
	conns  []*tpConn
	nconns int

	// draining is the graceful shutdown (Config.Grace), shared by the poller, which
	// sets it when ctx ends, and the workers, which read it at each task (see serve
	// and drainPass). Until the drain ends the workers keep running; the one that
	// releases the last connection wakes the poller through its waker to end it.
	draining atomic.Bool
	// allDrained: a drainPass found every connection drained, so none is added
	// later; otherwise the poller looks again soon (retry).
	allDrained, retry bool

	sweepBuf []*tpConn // the poller's scratch for liveConns

	// The datagram pool (ServeDatagrams): its socket, and the batch buffers
	// the workers hand back to the poller.
	dsFD int
	free chan *rawio.Msgs
}

var _ drainer = (*tpool)(nil)

func (threadpoolModel) Serve(ctx context.Context, ln *sock.Listener, env *Env) error {
	p := newTpool(env)
	p.gate = newAcceptGate(env, ln.FD, unix.SOCK_NONBLOCK)

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var err error
	if p.ep, err = openPoller(ctx, epollEvents); err != nil {
		return err
	}
	// Closing the epoll instance also takes the listener out of it: ln stays the
	// caller's, with no registration left behind.
	defer p.ep.close()
	// Deferred last so it runs first: workers are joined before the epoll instance
	// they re-arm connections with is closed.
	defer p.stop()
	if env.Config.Grace <= 0 {
		// No drain: the workers stop as soon as ctx ends (a poller waiting for
		// room in the queue gives up); draining, they run until p.stop.
		stopWake := context.AfterFunc(ctx, p.beginShutdown)
		defer stopWake()
	}
	p.start(ctx)

	if err := p.gate.watch(p.ep, lnLevel); err != nil {
		return err
	}
	acc := p.acc
	for !acc.stopping(ctx, p) {
		timeout := p.gate.timeoutMS(acc.timeoutMS()) // bounded by the drain's deadline once draining
		if p.retry {
			timeout = min(timeout, tpDrainRetryMS)
		}
		events, err := p.ep.wait(timeout)
		if err != nil {
			return err
		}
		acc.tick()
		if _, err := p.gate.update(true); err != nil {
			return err
		}
		for i := range events {
			switch fd := int(events[i].Fd); fd {
			case p.ep.w.fd:
				// Shutdown: stopping sees ctx. Cleared so that a draining poller
				// does not find it readable on every wait.
				p.ep.clearWake()
			case ln.FD:
				if err := p.acceptAll(); err != nil {
					return err
				}
			default:
				if c := p.lookup(fd); c != nil && !p.dispatch(c, events[i].Events) {
					return nil // shutting down
				}
			}
		}
		// Here, between waits and with every delivered event queued, is the one
		// place a connection may be closed by anyone but its worker (sweepIdle, and
		// drainPass at the top of the loop).
		if acc.sweepDue() {
			p.sweepIdle()
		}
	}
	return nil
}

// newTpool is a pool sized by env's configuration, its gauges published; no
// thread is started yet (start).
func newTpool(env *Env) *tpool {
	cfg := env.Config
	p := &tpool{
		env:      env,
		min:      orDefault(cfg.MinThreads, DefaultMinThreads),
		max:      orDefault(cfg.MaxThreads, DefaultMaxThreads),
		interval: orDefaultDur(cfg.AdjustInterval, DefaultAdjustInterval),
		queue:    make([]tpTask, orDefault(cfg.QueueCap, DefaultQueueCap)),
		acc:      newLoop(env),
	}
	p.minWait = min(tpMinWait, len(p.queue))
	p.notFull.L, p.notEmpty.L = &p.mu, &p.mu
	env.Stats.Gauge("threads_live", p.gauge(func() int { return p.live }))
	env.Stats.Gauge("threads_busy", p.gauge(func() int { return p.busy }))
	env.Stats.Gauge("queue_len", p.gauge(func() int { return p.size }))
	return p
}

// start starts the pool's minimum of workers and its manager, which runs
// until ctx ends or stop.
func (p *tpool) start(ctx context.Context) {
	p.mu.Lock()
	for range p.min {
		p.spawn()
	}
	p.mu.Unlock()
	mctx, cancel := context.WithCancel(ctx)
	p.managerStop, p.managerDone = cancel, make(chan struct{})
	go p.manage(mctx)
}

// startDrain begins the graceful shutdown: the listener leaves the set; workers
// see the flag at their next task, and drainPass handles the armed connections,
// as the idle sweep does.
func (p *tpool) startDrain() {
	p.gate.close()
	p.draining.Store(true)
}

// drainDone runs a drainPass until one finds every connection drained — some may
// be in a worker's hands, which re-arms one drained only if it saw the flag in
// time, so the poller looks again soon (retry) — and reports whether no
// connection is left.
func (p *tpool) drainDone() bool {
	if !p.allDrained {
		p.allDrained = p.drainPass() == 0
		p.retry = !p.allDrained
	}
	return p.connCount() == 0
}

// tpDrainRetryMS is how soon the poller looks again at connections that were in a
// worker's hands when it began draining.
const tpDrainRetryMS = 10

// liveConns is the poller's snapshot of the live connections, taken under connMu
// into its scratch slice; doneWith hands the slice back, its pointers cleared.
func (p *tpool) liveConns() []*tpConn {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	cands := p.sweepBuf[:0]
	for _, c := range p.conns {
		if c != nil {
			cands = append(cands, c)
		}
	}
	return cands
}

func (p *tpool) doneWith(cands []*tpConn) {
	clear(cands)
	p.sweepBuf = cands[:0]
}

// drainPass brings the connections not yet drained into draining mode where it is
// the poller's to do, and returns how many are left to a worker. It is the idle
// sweep's reasoning (see sweepIdle): an armed connection is in nobody's hands and
// no event of it is pending, so the poller may act on it — shut its write side if
// it owes nothing (finished, in draining mode), and re-arm it for what a draining
// connection waits for: input to discard until the peer closes, and room for what
// it still owes. One queued or served is left to its worker, which reads the flag
// at the start and at the end of its task; one whose worker read it too early to
// see it was re-armed undrained and is drained on a later pass.
func (p *tpool) drainPass() (left int) {
	acc := p.acc
	cands := p.liveConns()
	defer p.doneWith(cands)
	for _, c := range cands {
		if !c.mu.TryLock() {
			left++ // a worker serves it
			continue
		}
		if c.drained {
			c.mu.Unlock()
			continue
		}
		if !c.armed {
			c.mu.Unlock()
			left++ // queued: its worker will see the flag
			continue
		}
		c.drained = true
		ec := &c.evConn
		if !acc.finished(ec) {
			err := p.ep.mod(c.fd, drainInterest(acc, ec))
			if err == nil {
				c.mu.Unlock()
				continue
			}
			p.env.Log.Print(err)
		}
		c.armed = false
		if err := p.ep.del(c.fd); err != nil {
			p.env.Log.Print(err) // the close below takes it out of the set all the same
		}
		c.mu.Unlock()
		p.release(c)
	}
	return left
}

// drainInterest is what c is armed for next (oneshot): input while the loop wants
// to read it, room to write while it owes output.
func drainInterest(l *loop, c *evConn) uint32 {
	want := uint32(unix.EPOLLONESHOT)
	if l.wantRead(c) {
		want |= unix.EPOLLIN | unix.EPOLLRDHUP
	}
	if l.wantWrite(c) {
		want |= unix.EPOLLOUT
	}
	return want
}

// connCount is how many connections the pool holds.
func (p *tpool) connCount() int {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	return p.nconns
}

// dispatch queues the event that disarmed c (oneshot) as a task. It reports false
// if the pool is shutting down.
func (p *tpool) dispatch(c *tpConn, ev uint32) bool {
	// c is armed, so no worker holds it, except one between its re-arm and its
	// unlock (serve): the wait is that short.
	c.mu.Lock()
	c.armed = false
	c.mu.Unlock()
	return p.push(tpTask{c: c, ev: ev})
}

// sweepIdle closes the connections idle for longer than the timeout that are in
// nobody's hands. A connection is always in one of three: armed in epoll (waiting for
// an event), queued as a task, or served by a worker, which closes or re-arms it.
// Closing one queued or served would leave a task or a worker with a closed — and
// perhaps already reused — descriptor, so only armed ones are closed, and three
// things make "armed" true when acted on. The flag changes only under c.mu: set by
// the worker together with its EPOLL_CTL_MOD (serve), cleared by the poller when an
// event hands c to the queue (dispatch). The sweep runs on the poller thread, the
// only one that calls epoll_wait, between two waits and after every event of the
// last one was dispatched: no event for c can be delivered and not yet handled. And
// it deletes c from the epoll set before it lets go of c.mu, so no later wait can
// deliver one. A worker holds c.mu for its whole task, so the sweep only tries the
// lock: a connection being served (by a slow request, perhaps) is skipped, not
// waited for.
func (p *tpool) sweepIdle() {
	cands := p.liveConns()
	defer p.doneWith(cands)
	for _, c := range cands {
		if !c.mu.TryLock() {
			continue // a worker serves it: active by definition
		}
		if !c.armed || !p.acc.idleExpired(&c.evConn) {
			c.mu.Unlock()
			continue
		}
		c.armed = false
		if err := p.ep.del(c.fd); err != nil {
			p.env.Log.Print(err) // the close below takes it out of the set all the same
		}
		c.mu.Unlock()
		p.env.Stats.idleClosed.Add(1)
		p.release(c)
	}
}

func (p *tpool) gauge(f func() int) func() int64 {
	return func() int64 {
		p.mu.Lock()
		defer p.mu.Unlock()
		return int64(f())
	}
}

// acceptAll accepts a bounded batch of non-blocking connections and arms each for
// one read event.
func (p *tpool) acceptAll() error {
	for range acceptBatch {
		fd := p.gate.accept()
		if fd < 0 {
			break
		}
		// Armed from the start: the ADD below arms it, and only this thread could
		// see the flag before then.
		c := &tpConn{evConn: evConn{fd: fd, sess: p.env.Proto.NewSession(), canWrite: true, lastActive: p.acc.now}, armed: true}
		p.connMu.Lock()
		for fd >= len(p.conns) {
			p.conns = append(p.conns, make([]*tpConn, len(p.conns)+64)...)
		}
		p.conns[fd] = c
		p.nconns++
		p.connMu.Unlock()
		p.env.Stats.opened()
		if err := p.ep.add(fd, unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLONESHOT); err != nil {
			p.env.Log.Print(err)
			p.release(c)
		}
	}
	// Out of descriptors: the gate takes the listener out of the set until the
	// pause ends (a level-triggered listener left in would wake every pass).
	_, err := p.gate.update(true)
	return err
}

func (p *tpool) lookup(fd int) *tpConn {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	if fd < len(p.conns) {
		return p.conns[fd]
	}
	return nil
}

// release closes c and forgets it. It leaves the table before its descriptor is
// closed, so a new connection given the same number is never mistaken for it.
func (p *tpool) release(c *tpConn) {
	p.connMu.Lock()
	p.conns[c.fd] = nil
	p.nconns--
	last := p.nconns == 0
	p.connMu.Unlock()
	if last && p.draining.Load() {
		p.ep.w.wake() // the drain is over: the poller may be waiting for its deadline
	}
	c.out.Reset() // no worker holds c: it left the table and is not armed
	unix.Close(c.fd)
	p.env.Stats.done()
}

// push queues t, waiting while the queue is full. It reports false if the pool is
// shutting down (t is then dropped with everything else).
func (p *tpool) push(t tpTask) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.size == len(p.queue) && !p.shutdown {
		p.notFull.Wait()
	}
	if p.shutdown {
		return false
	}
	p.queue[p.rear] = t
	p.rear = (p.rear + 1) % len(p.queue)
	p.size++
	p.notEmpty.Signal()
	return true
}

// pop takes the task at the front; p.mu held, p.size > 0.
func (p *tpool) pop() tpTask {
	t := p.queue[p.front]
	p.queue[p.front] = tpTask{}
	p.front = (p.front + 1) % len(p.queue)
	p.size--
	p.notFull.Signal()
	return t
}

// spawn starts one worker; p.mu held.
func (p *tpool) spawn() {
	p.live++
	p.workers.Add(1)
	go p.worker()
}

// worker runs tasks until told to exit (an idle thread asked by the manager, or
// shutdown).
func (p *tpool) worker() {
	// Never unlocked: when the worker returns, its thread is terminated, so the
	// process's threads follow the pool's size.
	runtime.LockOSThread()
	defer p.workers.Done()
	l := newLoop(p.env) // this worker's read and reply buffers
	var logged bool     // a datagram send error was logged by this worker
	p.mu.Lock()
	for {
		for p.size == 0 && !p.shutdown {
			if p.waitExit > 0 {
				p.waitExit--
				if p.live > p.min {
					p.live--
					p.mu.Unlock()
					return
				}
			}
			p.notEmpty.Wait()
		}
		if p.shutdown {
			p.live--
			p.mu.Unlock()
			return
		}
		t := p.pop()
		p.busy++
		p.mu.Unlock()
		if t.dg != nil {
			p.answer(t, &logged)
		} else {
			p.serve(l, t)
		}
		p.mu.Lock()
		p.busy--
	}
}

// serve works one ready connection on the calling worker: flush queued output if the
// socket has room (which may lift back-pressure), read and answer what arrived, then
// close the connection or re-arm it for what it waits for now.
func (p *tpool) serve(l *loop, t tpTask) {
	c := t.c
	c.mu.Lock()
	// Draining (the flag only ever goes on): this task reads to discard, and
	// re-arms c for draining (see drainPass).
	l.draining = l.draining || p.draining.Load()
	l.tick()
	ec := &c.evConn
	// EPOLLHUP/EPOLLERR come whatever was armed: the read or write that follows meets
	// the error or the end of input and closes the connection.
	broken := t.ev&(unix.EPOLLHUP|unix.EPOLLERR) != 0
	if (t.ev&unix.EPOLLOUT != 0 || broken) && ec.pending() > 0 {
		ec.canWrite = true
		l.flush(ec)
	}
	if t.ev&(unix.EPOLLIN|unix.EPOLLRDHUP) != 0 || broken {
		for range tpReadBudget {
			if !l.wantRead(ec) || l.readOnce(ec) {
				break
			}
		}
	}
	// Draining may have begun during the task: applied before c is re-armed, so
	// that drainPass, which skips a connection it finds in a worker's hands, has
	// nothing left to do for it — or, if it began after this look, sees c armed
	// and undrained on its next pass.
	l.draining = l.draining || p.draining.Load()
	if l.draining {
		c.drained = true
	}
	if l.finished(ec) {
		c.mu.Unlock()
		p.release(c)
		return
	}
	// Not finished, so it waits for input, for room to write, or both.
	want := drainInterest(l, ec)
	// Re-armed with c.mu held, and flagged armed under it, so the idle sweep never
	// sees the flag and the registration disagree (see sweepIdle). From the MOD on,
	// the next event may hand c to another worker, which waits for the unlock.
	c.armed = true
	err := p.ep.mod(c.fd, want)
	if err != nil {
		c.armed = false // not re-armed, so no event can hand c to anyone: it is still ours
	}
	c.mu.Unlock()
	if err != nil {
		p.env.Log.Print(err)
		p.release(c)
	}
}

// manage resizes the pool every interval until ctx ends.
func (p *tpool) manage(ctx context.Context) {
	defer close(p.managerDone)
	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			p.adjust()
		}
	}
}

// adjust is one pass of the seed's manager: grow by a step when tasks queue up and
// there is room, else shrink by a step when fewer than half the threads are busy.
func (p *tpool) adjust() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shutdown {
		return
	}
	switch {
	case p.size >= p.minWait && p.live < p.max:
		p.waitExit = 0 // new threads must not take up an old request to exit
		for range min(tpStep, p.max-p.live) {
			p.spawn()
		}
	case p.busy*2 < p.live && p.live > p.min:
		p.waitExit = min(tpStep, p.live-p.min)
		for range p.waitExit {
			p.notEmpty.Signal()
		}
	}
}

// beginShutdown wakes every waiter of the queue to see shutdown: idle workers exit,
// and a poller waiting for room gives up.
func (p *tpool) beginShutdown() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.shutdown = true
	p.notEmpty.Broadcast()
	p.notFull.Broadcast()
}

// stop ends the pool: no more resizing, every worker joined (each finishes the task
// in hand), then every connection left is closed; queued tasks are dropped.
func (p *tpool) stop() {
	p.beginShutdown()
	if p.managerStop != nil {
		p.managerStop()
		<-p.managerDone
	}
	p.workers.Wait()
	for _, c := range p.conns {
		if c != nil {
			p.release(c)
		}
	}
}

// The batch buffers of the datagram pool: one per thread the pool may have
// and tpDgramBuffers more for the queue, but no more than tpDgramMemory bytes
// of them in all (a buffer is Config.Batch × Config.MaxDatagram bytes: 2 MiB
// at -batch 32 with the default 64 KiB datagrams), and at least two, so that
// the poller reads while a worker answers.
const (
	tpDgramBuffers = 16
	tpDgramMemory  = 64 << 20
)

// ServeDatagrams: see the file's comment.
func (threadpoolModel) ServeDatagrams(ctx context.Context, ds *sock.Listener, env *Env) error {
	p := newTpool(env)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var err error
	if p.ep, err = openPoller(ctx, epollEvents); err != nil {
		return err
	}
	defer p.ep.close() // takes ds out of it
	defer p.stop()     // runs first: workers joined, queued batches dropped
	// Between datagrams a server owes nothing: it stops at once.
	stopWake := context.AfterFunc(ctx, p.beginShutdown)
	defer stopWake()
	p.start(ctx)
	defer rcvbufDropsGauge(env, ds.FD)()
	if err := p.ep.add(ds.FD, unix.EPOLLIN); err != nil {
		return err
	}
	var (
		batch   = env.Config.batch()
		size    = env.Config.maxDatagram()
		free    = make(chan *rawio.Msgs, max(2, min(p.max+tpDgramBuffers, tpDgramMemory/(batch*size))))
		made    int
		pending *rawio.Msgs // taken from free, not yet filled
	)
	p.free, p.dsFD = free, ds.FD
	for ctx.Err() == nil {
		events, err := p.ep.wait(-1)
		if err != nil {
			return err
		}
		for _, e := range events {
			if int(e.Fd) != ds.FD {
				continue // the waker: ctx is checked above
			}
			if pending == nil {
				if made < cap(free) && len(free) == 0 {
					pending = rawio.NewMsgs(batch, size)
					made++
				} else {
					select { // every buffer is queued or being answered: wait for one
					case pending = <-free:
					case <-ctx.Done():
						return nil
					}
				}
			}
			n, err := pending.Recv(ds.FD)
			if err == unix.EAGAIN {
				continue
			}
			if err != nil {
				return fmt.Errorf("datagram socket %d: %w", ds.FD, os.NewSyscallError("recvmmsg", err))
			}
			env.Stats.dgramIn.Add(int64(n))
			if !p.push(tpTask{dg: pending, dn: n}) {
				return nil // shutting down
			}
			pending = nil
		}
	}
	return nil
}

// answer is a worker's datagram task: answer the batch, send the replies on
// the socket, and hand the buffer back to the poller.
func (p *tpool) answer(t tpTask, logged *bool) {
	answerInto(t.dg, t.dn, p.env.Proto.(proto.Datagram), p.env.Stats)
	sendQueued(p.dsFD, t.dg, p.env, logged)
	p.free <- t.dg
}

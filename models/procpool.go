package models

// procpool: a pool of N pre-started worker processes, each serving one connection
// at a time with blocking I/O; the parent accepts and hands each connection to an
// idle worker over a Unix socket with SCM_RIGHTS.
//
// Where it comes from: the seed's process pool (and Stevens' UNP ch. 30, "TCP
// preforked server, descriptor passing"). The parent creates N children, each with a
// socketpair, and watches the listening socket and every child's end with one epoll.
// On a connection it accepts, picks an idle child, sends it the descriptor with
// sendmsg + SCM_RIGHTS (on one byte of ordinary data: control data cannot travel
// alone), marks it busy and closes its own copy. The child blocks in recvmsg, serves
// the connection to its end, closes it and writes one byte — the connection's
// outcome: 0 ok, 1 protocol error, 2 I/O error, 3 closed idle, 4 output capped
// (connStatus, connstatus.go) — which marks it idle again. The
// received descriptor number may differ from the sent one; both name the same open
// socket. When no child is idle the parent stops watching the listener
// (EPOLL_CTL_MOD to no events) and the kernel's backlog holds the waiting clients.
//
// A worker's connection has SO_RCVTIMEO and SO_SNDTIMEO set to Config.IdleTimeout, so
// a silent client, or one that stops reading, frees its worker after that long.
//
// Go cannot fork() and keep running Go, so each worker is this binary re-executed in
// the "procpool" role (see spawn.go); the pool is started once, so that cost is paid
// at start-up, not per connection.
//
// A worker that dies (SIGKILL, crash) is noticed through its pidfd (and its socket
// reading EOF), reaped and replaced; only the connection it held is lost, counted as
// an I/O error and in the workers_lost gauge. The parent raises RLIMIT_NOFILE to the
// hard limit so its workers inherit it.
//
// Gauges: workers (live), workers_busy, workers_lost (workers that died while the
// pool ran), workers_replaced (replacements started).
//
// Strengths: isolation (a crash costs one connection), every core used, blocking
// code in the worker, a bounded and predictable memory footprint. Limits: at most N
// connections are served at once — the N+1th waits in the backlog until a worker
// frees, so idle keep-alive clients starve everyone else; one sendmsg and one status
// byte per connection through the parent, whose single thread is the accept
// bottleneck.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"concbench/internal/sock"
)

func init() {
	Register("procpool", "N pre-started worker processes, fd passed by SCM_RIGHTS: isolation; at most N connections at once",
		func() Model { return procpoolModel{} })
	registerRole("procpool", procpoolWorker)
	refuses("procpool", "the worker it was handed to was dying")
	servesConnectionsOnly("procpool", "it passes each accepted connection to a worker with SCM_RIGHTS: UDP has no connection to pass, and one socket carries every peer")
}

var _ Model = procpoolModel{}

type procpoolModel struct{}

// respawnRetry is how soon a failed worker start is tried again.
const respawnRetry = 100 * time.Millisecond

// poolWorker is the parent's record of one worker: the seed's {pid, pipe fd, busy}.
type poolWorker struct {
	proc *proc
	ctl  int  // the parent's end of the socketpair, non-blocking
	busy bool // holds a connection
	gone bool // its socket failed or read EOF: it is exiting, awaiting its pidfd
}

type pool struct {
	env  *Env
	p    *poller
	gate *acceptGate // closed while no worker is idle

	byFD    map[int]*poolWorker // the ctl socket and the pidfd of each live worker
	workers map[*poolWorker]struct{}
	idle    []*poolWorker // a stack: the most recently freed worker is reused first
	missing int           // workers to start again (a start failed)
	retryAt time.Time
	stopped bool

	live, busy, replaced, lost atomic.Int64 // gauges
}

func (procpoolModel) Serve(ctx context.Context, ln *sock.Listener, env *Env) error {
	// One locked thread: the loop's, and the thread every worker is forked from, so
	// the workers' parent-death signal is tied to a thread that outlives them.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := raiseNofile(); err != nil {
		env.Log.Printf("procpool: %v (workers keep the current limit)", err)
	}
	n := env.Config.Workers
	if n <= 0 {
		n = runtime.NumCPU()
	}
	ep, err := openPoller(ctx, epollEvents)
	if err != nil {
		return err
	}
	defer ep.close()
	// The connections are blocking: the worker does blocking I/O, and the parent
	// never reads or writes them.
	p := &pool{env: env, p: ep, gate: newAcceptGate(env, ln.FD, 0), byFD: map[int]*poolWorker{}, workers: map[*poolWorker]struct{}{}}
	defer p.shutdown() // before the poller is closed: deferred calls run last-in first-out
	env.Stats.Gauge("workers", p.live.Load)
	env.Stats.Gauge("workers_busy", p.busy.Load)
	env.Stats.Gauge("workers_replaced", p.replaced.Load)
	env.Stats.Gauge("workers_lost", p.lost.Load)

	for range n {
		if err := p.start(); err != nil {
			return fmt.Errorf("procpool: starting %d workers: %w", n, err)
		}
	}
	if err := p.gate.watch(ep, lnLevel); err != nil {
		return err
	}

	for ctx.Err() == nil {
		events, err := ep.wait(p.timeoutMS())
		if err != nil {
			return err
		}
		for i := range events {
			switch fd := int(events[i].Fd); fd {
			case ep.w.fd:
				// Shutdown: the loop condition sees ctx.
			case ln.FD:
				p.acceptSome()
			default:
				// Events for a descriptor closed earlier in this batch (and perhaps
				// reused by a replacement) are harmless: the read finds EAGAIN, the
				// reap finds the child still running.
				if wk := p.byFD[fd]; wk != nil {
					if fd == wk.ctl {
						p.readStatus(wk)
					} else {
						p.exited(wk)
					}
				}
			}
		}
		p.refill()
		// The listener is watched exactly while a worker is idle (and accepting is
		// not paused): with none idle, a readable listener would wake the loop for
		// nothing, and the kernel's backlog is where waiting connections belong.
		if _, err := p.gate.update(len(p.idle) > 0); err != nil {
			return err
		}
	}
	return nil
}

// start forks one worker and makes it idle: it blocks in recvmsg as soon as it
// runs, and a descriptor sent earlier waits in its socket.
func (p *pool) start() error {
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socketpair", err)
	}
	pr, err := spawn("procpool", p.env.Config, "", sp[1])
	unix.Close(sp[1]) // the worker's end lives in the worker only
	if err != nil {
		unix.Close(sp[0])
		return err
	}
	wk := &poolWorker{proc: pr, ctl: sp[0]}
	p.workers[wk] = struct{}{}
	p.byFD[pr.pidfd] = wk
	p.live.Add(1)
	// Watch the pidfd first: from here on a failure is handled by the worker's exit.
	if err := p.p.add(pr.pidfd, unix.EPOLLIN); err != nil {
		pr.signal(unix.SIGKILL)
		p.forget(wk)
		pr.reap(true)
		unix.Close(sp[0])
		return err
	}
	if err := unix.SetNonblock(sp[0], true); err != nil {
		p.env.Log.Print(os.NewSyscallError("fcntl O_NONBLOCK", err))
		wk.gone = true
		pr.signal(unix.SIGKILL)
		return nil
	}
	p.byFD[sp[0]] = wk
	if err := p.p.add(sp[0], unix.EPOLLIN|unix.EPOLLRDHUP); err != nil {
		p.env.Log.Print(err)
		wk.gone = true
		pr.signal(unix.SIGKILL)
		return nil
	}
	p.idle = append(p.idle, wk)
	return nil
}

// forget drops a reaped worker from every table.
func (p *pool) forget(wk *poolWorker) {
	delete(p.workers, wk)
	if p.byFD[wk.ctl] == wk {
		delete(p.byFD, wk.ctl)
	}
	for fd, w := range p.byFD {
		if w == wk {
			delete(p.byFD, fd)
		}
	}
	p.dropIdle(wk)
	p.live.Add(-1)
}

func (p *pool) dropIdle(wk *poolWorker) {
	for i, w := range p.idle {
		if w == wk {
			p.idle = append(p.idle[:i], p.idle[i+1:]...)
			return
		}
	}
}

// acceptSome accepts while a worker is idle and hands each connection over.
func (p *pool) acceptSome() {
	for p.gate.open(len(p.idle) > 0) {
		fd := p.gate.accept()
		if fd < 0 {
			return
		}
		wk := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		err := sendFD(wk.ctl, fd)
		unix.Close(fd) // the worker holds its own reference now (or none: it is lost)
		if err != nil {
			// The worker is dying (EPIPE, ECONNRESET); its pidfd will say so. This
			// connection was accepted and closed at once.
			p.env.Log.Printf("procpool: handing a connection to worker %d: %v", wk.proc.pid, err)
			p.env.Stats.refused.Add(1)
			wk.gone = true
			continue
		}
		wk.busy = true
		p.busy.Add(1)
		p.env.Stats.opened()
	}
}

// sendFD sends fd over the worker's socket with SCM_RIGHTS, riding on one byte of
// ordinary data. The worker has at most one descriptor in flight, so its socket
// buffer is never full; EAGAIN would be a broken worker and is returned as such.
func sendFD(ctl, fd int) error {
	rights := unix.UnixRights(fd)
	for {
		err := unix.Sendmsg(ctl, []byte{'F'}, rights, nil, unix.MSG_NOSIGNAL)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("sendmsg", err)
		}
		return nil
	}
}

// readStatus reads the bytes a worker wrote: one per connection it finished, the
// connection's outcome. End of input means the worker is exiting.
func (p *pool) readStatus(wk *poolWorker) {
	var b [16]byte
	for {
		n, err := sock.Read(wk.ctl, b[:])
		if err == unix.EAGAIN {
			return
		}
		if err != nil || n == 0 {
			if !wk.gone {
				wk.gone = true
				p.dropIdle(wk)
				// Stop watching the socket (it would stay readable); the pidfd tells
				// when the worker is gone for good.
				if err := p.p.del(wk.ctl); err != nil {
					p.env.Log.Print(err)
				}
			}
			return
		}
		for _, s := range b[:n] {
			if !wk.busy {
				p.env.Log.Printf("procpool: worker %d sent a status while idle", wk.proc.pid)
				continue
			}
			connStatus(s).count(p.env.Stats)
			wk.busy = false
			p.busy.Add(-1)
			if !wk.gone {
				p.idle = append(p.idle, wk)
			}
		}
	}
}

// exited handles a worker's pidfd becoming readable: reap it, account for the
// connection it held, replace it.
func (p *pool) exited(wk *poolWorker) {
	ws, ok := wk.proc.reap(false)
	if !ok {
		return
	}
	p.closeWorker(wk)
	if p.stopped {
		return
	}
	p.env.Log.Printf("procpool: worker %d %s; starting a replacement", wk.proc.pid, describeExit(ws))
	p.lost.Add(1)
	p.missing++
	p.refill()
}

// closeWorker settles a reaped worker: statuses still in its socket are read, a
// connection it still held is counted closed (an I/O error unless the pool is
// stopping), and its socket is closed.
func (p *pool) closeWorker(wk *poolWorker) {
	if wk.busy {
		p.readStatus(wk) // it may have finished and written before it died
	}
	if wk.busy {
		if !p.stopped {
			p.env.Stats.ioErrors.Add(1)
		}
		p.env.Stats.done()
		wk.busy = false
		p.busy.Add(-1)
	}
	p.forget(wk)
	unix.Close(wk.ctl) // also leaves the epoll set
}

// refill starts the workers still missing, unless a start failed less than
// respawnRetry ago.
func (p *pool) refill() {
	if p.missing == 0 || p.stopped || time.Now().Before(p.retryAt) {
		return
	}
	for p.missing > 0 {
		if err := p.start(); err != nil {
			p.env.Log.Printf("procpool: starting a worker: %v; retrying in %v", err, respawnRetry)
			p.retryAt = time.Now().Add(respawnRetry)
			return
		}
		p.missing--
		p.replaced.Add(1)
	}
}

// timeoutMS is how long the loop may block: until an accept pause ends or a failed
// worker start is due again, else without limit.
func (p *pool) timeoutMS() int {
	t := -1
	if p.missing > 0 {
		t = max(1, int(time.Until(p.retryAt).Milliseconds())+1)
	}
	return p.gate.timeoutMS(t)
}

// shutdown stops the pool: accepting stops (the loop has ended), every worker gets
// SIGTERM, and all are reaped, their sockets closed. With Config.Grace 0 a worker
// dies of it (one blocked in a connection's read or write too), closing the
// connection; otherwise a worker drains the connection it holds and exits once it
// is closed (procpoolWorker), and the ones still running at the grace deadline plus
// childMargin are killed.
func (p *pool) shutdown() {
	p.stopped = true
	byProc := make(map[*proc]*poolWorker, len(p.workers))
	procs := make([]*proc, 0, len(p.workers))
	for wk := range p.workers {
		byProc[wk.proc] = wk
		procs = append(procs, wk.proc)
	}
	terminate(p.env.Log, procs, stopWait(p.env.Config.Grace), func(pr *proc, ws unix.WaitStatus) {
		p.closeWorker(byProc[pr])
	})
}

// procpoolWorker is the worker process: receive a connection, serve it to its end,
// close it, report its outcome (which says "free"), and again, until the parent
// closes its end of the socket or signals.
//
// With Config.Grace, SIGTERM (the parent stopping) makes it drain: the connection
// it serves drains (blockingConn) and is cut at the grace deadline, and its socket
// to the parent is shut for reading, which wakes an idle worker's recvmsg. recvmsg
// still returns a connection already sent (it is drained at once: it owes nothing),
// then end of input, on which the worker exits.
func procpoolWorker(env *Env, _ string) int {
	const ctl = firstFD
	buf := make([]byte, env.Config.readBuf())
	var (
		mu            sync.Mutex // guards the three below against the SIGTERM goroutine
		cur           *blockingConn
		draining, cut bool
	)
	stop := drainOnSIGTERM(env.Config.Grace, func() {
		mu.Lock()
		defer mu.Unlock()
		draining = true
		if cur != nil {
			cur.drain()
		}
		unix.Shutdown(ctl, unix.SHUT_RD)
	}, func() {
		mu.Lock()
		defer mu.Unlock()
		cut = true
		if cur != nil {
			cur.cut()
		}
	})
	defer stop()
	for {
		fd, err := recvFD(ctl)
		if errors.Is(err, io.EOF) {
			return exitOK
		}
		if err != nil {
			env.Log.Print(err)
			return exitSetup
		}
		b := newBlockingConn(fd)
		mu.Lock()
		cur = b
		if draining {
			b.drain()
		}
		if cut {
			b.cut()
		}
		mu.Unlock()
		st := serveBlocking(b, env, buf)
		mu.Lock()
		cur = nil
		mu.Unlock()
		b.close()
		if _, err := sock.Write(ctl, []byte{byte(st)}); err != nil { // one byte: all or nothing
			env.Log.Printf("reporting to the parent: %v", os.NewSyscallError("write", err))
			return exitSetup
		}
	}
}

// recvFD blocks until the parent sends a descriptor, and returns it. It returns
// io.EOF when the parent closed its end. The descriptor is received close-on-exec.
func recvFD(ctl int) (int, error) {
	var b [1]byte
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		n, oobn, flags, _, err := unix.Recvmsg(ctl, b[:], oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, os.NewSyscallError("recvmsg", err)
		}
		if n == 0 && oobn == 0 {
			return -1, io.EOF
		}
		var fds []int
		if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for i := range msgs {
				if rights, err := unix.ParseUnixRights(&msgs[i]); err == nil {
					fds = append(fds, rights...)
				}
			}
		}
		if flags&unix.MSG_CTRUNC != 0 || len(fds) != 1 {
			for _, fd := range fds {
				unix.Close(fd)
			}
			return -1, fmt.Errorf("recvmsg: want one descriptor, got %d (control data truncated: %v)",
				len(fds), flags&unix.MSG_CTRUNC != 0)
		}
		return fds[0], nil
	}
}

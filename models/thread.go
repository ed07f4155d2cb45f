package models

// thread: thread-per-connection, as in the seed's notes: one OS thread per accepted
// connection doing blocking read and write on a blocking descriptor, the thread
// exiting with its connection. Here an acceptor thread (locked, waiting with poll(2)
// on the non-blocking listener and a shutdown eventfd) accept4s each connection
// without SOCK_NONBLOCK, so its descriptor blocks, and starts one goroutine per
// connection that calls runtime.LockOSThread and never unlocks: it owns an OS thread
// for its whole life, every unix.Read and unix.Write parks that thread in the kernel,
// and when the goroutine returns the runtime terminates the thread with it. The idle
// timeout is the kernel's too: SO_RCVTIMEO and SO_SNDTIMEO on the socket (blocking.go's
// serveBlocking, shared with fork and procpool). At a graceful shutdown
// (Config.Grace) the acceptor tells each connection to drain through its
// blockingConn (blocking.go), waits for the threads up to the deadline, and then wakes
// what is left with shutdown(SHUT_RDWR).
//
// Where it comes from: the classic Unix server after fork (pthreads, 1995; Apache's
// worker MPM, Java's java.io servers before NIO): the C10K paper's "one thread per
// client" baseline.
//
// Strengths: the simplest code (read, compute, write, repeat); a blocking handler
// (-work sleep:…) stalls only its own connection; blocking writes give back-pressure
// for free (a thread stuck in write does not read); the kernel schedules threads on
// every core (in Go: a thread returning from a syscall needs one of GOMAXPROCS Ps to
// run Go code, so "every core" means GOMAXPROCS of them).
// Limits: a thread per connection costs a kernel task (task_struct and a 16 KiB
// kernel stack), a scheduler entity and a pid, plus here a Go M with its g0 stack
// (16 KiB from the Go heap in a pure-Go build; when cgo is linked in — the default
// here, since package net is, and always under -race — a pthread stack of
// RLIMIT_STACK, 8 MiB of address space of which only touched pages are resident, and
// two mappings counted against vm.max_map_count), a goroutine stack (≥ 8 KiB) and a
// ReadBuf-sized read buffer: 10,000 idle echo connections held 10,007 threads and
// 248 MB RSS on the reference machine, about 25 KiB each. Many threads mean context
// switches and cache misses on every wake-up. And one cost is Go's own: a thread's
// exit unlinks its M from the runtime's list of all Ms by walking that list under
// the scheduler lock, so n connections closing at once cost O(n²) — 10,000 took
// about 6 s there, the rate rising as the count fell.
//
// The ceiling. Go crashes a program that uses more threads than debug.SetMaxThreads
// allows (10,000 by default) and also crashes when clone(2) fails, so Serve raises
// the Go limit to the kernel's and refuses to start more connection threads than a
// safe share of it: the ceiling is the lowest of kernel.pid_max (every thread takes
// a pid; 32,768 on the reference machine, shared with every other task),
// kernel.threads-max (192,731 there; sized by the kernel to RAM), RLIMIT_NPROC and
// the pids cgroup's pids.max where set; connection threads are capped at 7/8 of it, leaving
// room for the runtime's own threads and the rest of the system. At the cap the
// acceptor stops accepting (the backlog queues, counted in accept_pauses) until a
// connection thread exits. Under -race the race detector's limit of 8128 live
// goroutines comes first.
//
// Gauge: threads_live, the connection threads alive (the acceptor not counted).

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"concbench/internal/sock"
)

func init() {
	Register("thread", "an OS thread per connection, blocking read/write: simplest code, all cores; a thread and a pid per connection",
		func() Model { return threadModel{} })
	servesConnectionsOnly("thread", "a thread per connection: UDP has no connection to give a thread, and one socket carries every peer")
}

var _ Model = threadModel{}

type threadModel struct{}

// threadServer is the acceptor's view of the connection threads: enough to count
// them, drain and wake them at shutdown and wait for them to exit.
type threadServer struct {
	env   *Env
	limit int64 // most connection threads at once
	// freed is an eventfd written when a thread exits at the limit, to resume
	// accepting, and, while draining, when any thread exits.
	freed int

	loggedLimit bool // acceptor only

	live     atomic.Int64
	draining atomic.Bool
	wg       sync.WaitGroup

	// mu guards conns: the connections whose thread has not finished yet, which
	// drain and stop reach from the acceptor (each blockingConn guards its own
	// descriptor against its close).
	mu    sync.Mutex
	conns map[*blockingConn]struct{}
}

func (threadModel) Serve(ctx context.Context, ln *sock.Listener, env *Env) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	ceiling, from := threadCeiling()
	// Process-wide and only ever raised: lowering it again could crash another
	// server in the same process. The kernel's limits are the real ones.
	if prev := debug.SetMaxThreads(ceiling); prev > ceiling {
		debug.SetMaxThreads(prev)
	}
	ts := &threadServer{env: env, limit: int64(ceiling - ceiling/8), conns: map[*blockingConn]struct{}{}}
	env.Log.Printf("thread: connection threads capped at %d, 7/8 of the ceiling %d (%s)", ts.limit, ceiling, from)
	env.Stats.Gauge("threads_live", ts.live.Load)

	w, err := newWaker(ctx)
	if err != nil {
		return err
	}
	defer w.close()
	ts.freed, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return os.NewSyscallError("eventfd", err)
	}
	defer unix.Close(ts.freed)
	// Deferred after the descriptors above, so it runs before they are closed: every
	// connection thread is gone before the eventfd it may write is.
	defer ts.stop()

	gate := newAcceptGate(env, ln.FD, 0)
	const (
		pWake = iota
		pFreed
		pListen
	)
	pfds := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}, {Fd: int32(ts.freed), Events: unix.POLLIN}, {}}
	for ctx.Err() == nil {
		// A negative fd is skipped by poll: the listener leaves the set while paused
		// for lack of descriptors or at the thread cap (then the freed eventfd says
		// when a thread exits).
		pfds[pListen] = unix.PollFd{Fd: int32(ln.FD), Events: unix.POLLIN}
		if !gate.open(ts.live.Load() < ts.limit) {
			pfds[pListen].Fd = -1
		}
		n, err := unix.Poll(pfds, gate.timeoutMS(-1))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("poll", err)
		}
		if n == 0 {
			continue
		}
		if pfds[pFreed].Revents&unix.POLLIN != 0 {
			clearEventfd(ts.freed) // EAGAIN means another read did
		}
		if pfds[pListen].Revents != 0 && ctx.Err() == nil {
			ts.acceptSome(gate)
		}
	}
	if env.Config.Grace > 0 {
		ts.drain(env.Config.Grace)
	}
	return nil // the deferred stop cuts what is left
}

// acceptSome accepts up to acceptBatch connections, each on a thread of its own,
// stopping early at an empty backlog, out of descriptors, or at the thread cap.
func (ts *threadServer) acceptSome(gate *acceptGate) {
	for range acceptBatch {
		// The gate's accept4 has no SOCK_NONBLOCK: the connection's descriptor
		// blocks (it does not inherit the listener's O_NONBLOCK), so its thread
		// sleeps in read and write.
		fd := gate.accept()
		if fd < 0 {
			return
		}
		b := newBlockingConn(fd)
		ts.mu.Lock()
		ts.conns[b] = struct{}{}
		ts.mu.Unlock()
		ts.live.Add(1)
		ts.env.Stats.opened()
		ts.wg.Add(1)
		go ts.connThread(b)
		// Only accepting raises the count, so this is where the cap is reached.
		if ts.live.Load() >= ts.limit {
			ts.env.Stats.acceptPauses.Add(1)
			if !ts.loggedLimit {
				ts.loggedLimit = true
				ts.env.Log.Printf("thread: %d connection threads live, the cap; accepting paused until one exits (logged once)", ts.limit)
			}
			return
		}
	}
}

// connThread serves one connection on an OS thread of its own and exits with it.
func (ts *threadServer) connThread(b *blockingConn) {
	// Never unlocked: when this goroutine returns, the runtime terminates the thread
	// instead of returning it to its pool. That is the model: the thread lives and
	// dies with the connection.
	runtime.LockOSThread()
	defer ts.wg.Done()

	// blocking.go's serveBlocking: read, feed, write the whole reply before reading
	// again; SO_RCVTIMEO and SO_SNDTIMEO for the idle timeout; drain when told.
	serveBlocking(b, ts.env, make([]byte, ts.env.Config.readBuf())).countEnd(ts.env.Stats)

	ts.mu.Lock()
	delete(ts.conns, b)
	ts.mu.Unlock()
	b.close()
	ts.env.Stats.done()
	if ts.live.Add(-1) == ts.limit-1 || ts.draining.Load() {
		// This exit brought the count below the limit: wake a paused acceptor; or
		// the acceptor waits for the drained threads to exit.
		one := [8]byte{1}
		unix.Write(ts.freed, one[:])
	}
}

// drain is the graceful shutdown (Config.Grace): every connection is told to drain
// (blockingConn: one waiting for a request has its write side shut at once, one
// busy finishes its replies first; both then linger until the client closes), and
// the acceptor waits until every connection thread has exited, or grace has
// passed. stop cuts what is left.
func (ts *threadServer) drain(grace time.Duration) {
	ts.draining.Store(true)
	ts.mu.Lock()
	for b := range ts.conns {
		b.drain()
	}
	ts.mu.Unlock()
	deadline := time.Now().Add(grace)
	pfd := []unix.PollFd{{Fd: int32(ts.freed), Events: unix.POLLIN}}
	for ts.live.Load() > 0 {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		if _, err := unix.Poll(pfd, int(left.Milliseconds())+1); err != nil && err != unix.EINTR {
			ts.env.Log.Printf("thread: drain: %v", os.NewSyscallError("poll", err))
			return
		}
		clearEventfd(ts.freed) // EAGAIN if the poll timed out
	}
}

// stop cuts every connection (blockingConn.cut: shutdown(SHUT_RDWR), which wakes a
// thread blocked in read or write; the errors that follow are not counted) and
// waits until every connection thread has exited; each closes its own descriptor.
func (ts *threadServer) stop() {
	ts.mu.Lock()
	for b := range ts.conns {
		b.cut()
	}
	ts.mu.Unlock()
	ts.wg.Wait()
}

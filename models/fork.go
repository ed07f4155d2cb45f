package models

// fork: one process per connection. The parent accepts; for each connection it
// starts a child that serves that connection alone, with blocking I/O, and exits
// when it closes; the parent reaps it.
//
// Where it comes from: the seed's `while(1) { accept(); fork(); }` server, the
// original Unix shape (inetd, early Apache, sshd today): the child closes the
// listener and serves; the parent closes the connection and reaps children with
// waitpid(…, WNOHANG) when they exit.
//
// Go cannot fork() and keep running Go code, so the child is this binary
// re-executed in the "fork" role with the connection as its descriptor 3 (see
// spawn.go); it inherits nothing else, so there is no listener to close. Go's
// ForkExec clones with CLONE_VFORK|CLONE_VM — no page tables are copied — so what
// this model measures per connection is clone + exec + a Go runtime start-up in the
// child (a few milliseconds), not the copy-on-write fork() of a C server (tens of
// microseconds), and a child costs a whole Go process's memory. The parent learns of
// each exit through the child's pidfd in its epoll set and reaps that pid only;
// the child's exit status is the connection's outcome (0 ok, 3 protocol error,
// 4 I/O error, 6 closed idle, 7 output capped: connstatus.go), which the parent counts.
//
// Config.MaxProcs caps live children; 0 sizes the cap to the machine at start-up:
// MemAvailable / forkChildMem, and at most kernel.pid_max / forkChildThreads since
// every thread takes a pid. At the cap the parent stops watching the
// listener and the kernel's backlog holds the connections that arrive.
//
// Gauges: children_live, max_procs, spawned.
//
// Strengths: complete isolation, the simplest code in the child, every core used.
// Limits: the most expensive connection set-up of all models; memory and pids per
// connection, so concurrency is bounded by MaxProcs; the parent's one thread forks
// every child, which caps the connection rate.

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"concbench/internal/sock"
)

func init() {
	Register("fork", "a process per connection (re-exec'd, not CoW fork): isolation; costliest set-up, bounded by -max-procs",
		func() Model { return forkModel{} })
	registerRole("fork", forkChild)
	refuses("fork", "its child could not be started (out of processes or memory)")
	servesConnectionsOnly("fork", "a process per connection: UDP has no connection to give a process, and one socket carries every peer")
}

var _ Model = forkModel{}

type forkModel struct{}

// forkChildMem is the memory one child is budgeted when MaxProcs is 0: a Go process
// serving one connection has an RSS of about 5 MiB (a PSS of about 1.3 MiB, the
// binary's pages being shared), plus room for its 64 KiB read buffer and replies
// under load.
const forkChildMem = 10 << 20

// forkChildThreads is the threads (each a pid) budgeted per child: a Go process
// serving one connection runs about 7 (measured with GOMAXPROCS=2).
const forkChildThreads = 8

// forkDefaultMaxProcs is the cap when MemAvailable cannot be read.
const forkDefaultMaxProcs = 1024

type forker struct {
	env      *Env
	p        *poller
	gate     *acceptGate // paused for lack of descriptors or processes; closed at the cap
	maxProcs int
	children map[int]*proc // by pidfd
	stopped  bool

	// held is a connection accepted when spawning its child then failed for lack
	// of descriptors (the pidfd, the exec's pipe): it waits for the pause to end
	// and is served first, instead of being closed unserved. -1 if none.
	held int

	live, spawned atomic.Int64 // gauges
}

func (forkModel) Serve(ctx context.Context, ln *sock.Listener, env *Env) error {
	// The loop's locked thread forks every child, so their parent-death signal is
	// tied to a thread that outlives them (spawn.go).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	p, err := openPoller(ctx, epollEvents)
	if err != nil {
		return err
	}
	defer p.close()
	// A blocking connection: the child does blocking I/O.
	f := &forker{env: env, p: p, gate: newAcceptGate(env, ln.FD, 0), maxProcs: forkMaxProcs(env), children: map[int]*proc{}, held: -1}
	defer f.shutdown()
	maxProcs := int64(f.maxProcs)
	env.Stats.Gauge("children_live", f.live.Load)
	env.Stats.Gauge("max_procs", func() int64 { return maxProcs })
	env.Stats.Gauge("spawned", f.spawned.Load)

	if err := f.gate.watch(p, lnLevel); err != nil {
		return err
	}
	for ctx.Err() == nil {
		events, err := p.wait(f.gate.timeoutMS(-1))
		if err != nil {
			return err
		}
		// Reap before accepting: each exit makes room under the cap.
		for i := range events {
			if pr := f.children[int(events[i].Fd)]; pr != nil {
				f.exited(pr)
			}
		}
		accepted := false
		for i := range events {
			if int(events[i].Fd) == ln.FD {
				f.acceptSome()
				accepted = true
			}
		}
		if f.held >= 0 && !accepted {
			f.acceptSome() // the held connection's pause may be over
		}
		// The listener is watched only while a child may be started: below the
		// cap and not paused.
		if _, err := f.gate.update(f.belowCap()); err != nil {
			return err
		}
	}
	return nil
}

// belowCap reports whether another child may be started.
func (f *forker) belowCap() bool { return len(f.children) < f.maxProcs }

// forkMaxProcs is Config.MaxProcs, or the cap sized to the machine's memory
// (ProcessCap).
func forkMaxProcs(env *Env) int {
	if env.Config.MaxProcs > 0 {
		return env.Config.MaxProcs
	}
	n, why := ProcessCap()
	env.Log.Printf("fork: at most %d live children: %s", n, why)
	return n
}

// ProcessCap is how many Go processes serving a connection each (fork's
// children, procpool's workers) this machine holds at once as it stands now:
// MemAvailable / forkChildMem, and at most kernel.pid_max / forkChildThreads since
// every thread takes a pid; why says which limit set it. bench sizes procpool's
// pool by it.
func ProcessCap() (n int, why string) {
	avail, err := memAvailable()
	if err != nil {
		return forkDefaultMaxProcs, fmt.Sprintf("%v; the default cap", err)
	}
	n = max(1, int(avail/forkChildMem))
	why = fmt.Sprintf("MemAvailable %d MiB / %d MiB a process", avail>>20, forkChildMem>>20)
	if b, err := os.ReadFile("/proc/sys/kernel/pid_max"); err == nil {
		if pidMax, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pidMax/forkChildThreads < n {
			n = max(1, pidMax/forkChildThreads)
			why = fmt.Sprintf("kernel.pid_max %d / %d threads a process", pidMax, forkChildThreads)
		}
	}
	return n, why
}

// ThreadCap is the most threads a process can have as the kernel's limits read
// now, and which limits those were (threadCeiling); bench bounds threadpool by it.
func ThreadCap() (int, string) { return threadCeiling() }

// acceptSome accepts and forks a child per connection while under the cap, at
// most acceptBatch per pass so that exits are reaped between batches.
func (f *forker) acceptSome() {
	for k := 0; k < acceptBatch && f.gate.open(f.belowCap()); k++ {
		fd := f.held
		f.held = -1
		if fd < 0 {
			if fd = f.gate.accept(); fd < 0 {
				return
			}
		}
		pr, err := spawn("fork", f.env.Config, "", fd)
		if err != nil && sock.IsFDLimit(err) {
			// Out of descriptors (the pidfd, the exec's pipe): keep the
			// connection and retry after the pause.
			f.held = fd
			f.gate.pause(err)
			return
		}
		unix.Close(fd) // the child has its own reference
		if err != nil {
			// Out of processes or memory (EAGAIN, ENOMEM): this connection is
			// closed unserved, and accepting pauses as it does for descriptors.
			f.env.Stats.refused.Add(1)
			f.gate.pause(err)
			return
		}
		if err := f.p.add(pr.pidfd, unix.EPOLLIN); err != nil {
			// Without its pidfd watched the child could not be reaped in time.
			f.env.Log.Print(err)
			pr.signal(unix.SIGKILL)
			pr.reap(true)
			f.env.Stats.refused.Add(1)
			continue
		}
		f.children[pr.pidfd] = pr
		f.live.Add(1)
		f.spawned.Add(1)
		f.env.Stats.opened()
	}
}

// exited reaps a child whose pidfd became readable and counts its connection.
func (f *forker) exited(pr *proc) {
	pidfd := pr.pidfd
	ws, ok := pr.reap(false) // closes the pidfd, which leaves the epoll set
	if !ok {
		return
	}
	delete(f.children, pidfd)
	f.live.Add(-1)
	f.count(pr, ws)
}

// count adds a reaped child's connection to the stats by its exit status.
func (f *forker) count(pr *proc, ws unix.WaitStatus) {
	st, ok := connOK, false
	if ws.Exited() {
		st, ok = exitStatus(ws.ExitStatus())
	}
	switch {
	case ok:
	case f.stopped && ws.Signaled():
		// Stopped at shutdown: a connection closed, not an error.
	default:
		f.env.Log.Printf("fork: child %d %s", pr.pid, describeExit(ws))
		st = connIOError
	}
	st.count(f.env.Stats)
}

// shutdown sends SIGTERM to every live child and reaps them all. With Config.Grace
// 0 a child dies of it (a child blocked in its connection's read or write too),
// closing its connection; otherwise the child drains its connection (forkChild)
// and exits once it is closed, and the ones still running at the grace deadline
// plus childMargin are killed.
func (f *forker) shutdown() {
	f.stopped = true
	if f.held >= 0 {
		unix.Close(f.held)
		f.held = -1
	}
	procs := make([]*proc, 0, len(f.children))
	for _, pr := range f.children {
		procs = append(procs, pr)
	}
	terminate(f.env.Log, procs, stopWait(f.env.Config.Grace), func(pr *proc, ws unix.WaitStatus) {
		f.live.Add(-1)
		f.count(pr, ws)
	})
	clear(f.children)
}

// forkChild is the child process: serve the connection on descriptor 3 to its end
// and exit with its outcome. With Config.Grace, SIGTERM (the parent stopping) makes
// it drain the connection and cut it at the grace deadline.
func forkChild(env *Env, _ string) int {
	b := newBlockingConn(firstFD)
	stop := drainOnSIGTERM(env.Config.Grace, b.drain, b.cut)
	st := serveBlocking(b, env, make([]byte, env.Config.readBuf()))
	stop()
	b.close()
	return st.exitCode()
}

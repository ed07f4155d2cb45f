package models

// prefork: N worker processes, each running its own single-threaded edge-triggered
// epoll loop (the epoll-et model) over the listening socket; the kernel decides which
// worker accepts each connection. The parent only starts, watches and replaces
// workers: it never touches a connection.
//
// Where it comes from: nginx (master + worker_processes, one event loop each), and
// before it the preforked Apache. Accept distribution, Config.Accept:
//
//   - "exclusive" (the default): every worker watches the one inherited listening
//     socket, registered with EPOLLEXCLUSIVE (Linux 4.5), so a new connection wakes
//     one waiting worker instead of all of them (the thundering herd) — nginx's
//     accept_mutex off + EPOLLEXCLUSIVE. The kernel wakes the worker that waited
//     last, so a lightly loaded server skews towards few workers.
//   - "reuseport": one SO_REUSEPORT socket per worker bound to the same address; the
//     kernel hashes each connection's 4-tuple to one socket — nginx's `listen …
//     reuseport`. Even spread, but a slow worker keeps its share. The caller's
//     listener was bound without SO_REUSEPORT, and every socket of a group must have
//     it, so Serve sets it on that listener (Linux allows setting it after bind: the
//     kernel checks the flag when the next socket binds) and gives that socket to
//     worker 0; the parent creates, binds and holds the other N-1, so a worker's
//     death does not drop its socket's backlog. Serve clears the flag again before
//     returning.
//
// Datagrams (udp-echo): the same parent, workers and choice. Exclusive: every
// worker's loop watches the one inherited UDP socket with EPOLLEXCLUSIVE, and
// a datagram wakes one of them (the others' reads, if they come, find EAGAIN);
// reuseport: a UDP socket per worker in one SO_REUSEPORT group, the kernel
// hashing each peer to one socket, so one peer's datagrams always reach the
// same worker. Each worker is epoll-et's datagram loop (see dgram.go). The
// parent holds every socket, so a worker's death loses only the datagrams in
// its hands, and publishes rcvbuf_drops over them.
//
// Go cannot fork() and keep running Go, so each worker is this binary re-executed
// in the "prefork" role (see spawn.go), its listening socket inherited as
// descriptor 3. Workers keep their counters in shared memory, as nginx's
// stub_status does: the parent creates a memfd with one Stats slot per worker, each
// worker maps it and its loop counts straight into its slot; the parent adds the
// slots up into its own Stats (every 2 ms, at every snapshot via a gauge, and
// exactly at shutdown). A worker that dies is reaped through its pidfd and replaced
// with a fresh slot; the connections it held are lost and counted as I/O errors.
//
// Gauges: workers (live), workers_replaced, and for each worker slot I
// workerI_accepted — the kernel's accept distribution (workerI_datagrams, the
// datagrams read, for udp-echo) — and workerI_pid (0 while the slot is empty),
// so a sampler can read each worker's /proc figures.
//
// Strengths: every core used with no locks between workers; a worker's crash costs
// only its connections; the shape of the fastest real servers. Limits: load spread
// is the kernel's choice (skew under exclusive, hash collisions under reuseport);
// work in one worker stalls all of its connections, as in any event loop; no state
// is shared between connections of different workers.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"concbench/internal/proto"
	"concbench/internal/sock"
)

func init() {
	Register("prefork", "N worker processes, an epoll-et loop each on a shared listener (nginx): all cores; kernel decides the spread",
		func() Model { return preforkModel{} })
	registerRole("prefork", preforkWorker)
}

var _ Model = preforkModel{}

type preforkModel struct{}

// statsSlot is the size of one worker's slot in the shared counters (stats.go's
// counters); a multiple of the cache line, so workers never share one.
const statsSlot = 128

type preforkWorkerRec struct {
	slot int
	proc *proc
}

type prefork struct {
	env   *Env
	p     *poller
	lns   []int // the listening socket of each worker slot
	mem   []byte
	memfd int

	byPidfd map[int]*preforkWorkerRec
	missing []int // slots whose worker must be started again
	retryAt time.Time
	stopped bool

	// mu guards the shared memory's mapping and the fold of a dead worker's slot
	// into retired against the sums read from other goroutines.
	mu       sync.Mutex
	retired  Counts  // counters of workers gone
	accepted []int64 // per slot: connections accepted by workers gone
	dgrams   []int64 // per slot: datagrams read by workers gone

	live, replaced atomic.Int64   // gauges
	pids           []atomic.Int64 // per slot: the live worker's pid, 0 if none
}

func (preforkModel) Serve(ctx context.Context, ln *sock.Listener, env *Env) error {
	return servePrefork(ctx, ln, env, false)
}

// ServeDatagrams: the same parent and workers over a datagram socket; see the
// file's comment.
func (preforkModel) ServeDatagrams(ctx context.Context, ds *sock.Listener, env *Env) error {
	return servePrefork(ctx, ds, env, true)
}

// servePrefork is Serve over a listener, or over a datagram socket.
func servePrefork(ctx context.Context, ln *sock.Listener, env *Env, datagrams bool) error {
	// The loop's locked thread forks every worker (spawn.go: parent-death signal).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	reuseport := env.Config.Accept == AcceptReuseport
	if err := raiseNofile(); err != nil {
		env.Log.Printf("prefork: %v (workers keep the current limit)", err)
	}
	n := env.Config.Workers
	if n <= 0 {
		n = runtime.NumCPU()
	}
	pf := &prefork{env: env, memfd: -1, byPidfd: map[int]*preforkWorkerRec{}, accepted: make([]int64, n), dgrams: make([]int64, n), pids: make([]atomic.Int64, n)}
	defer pf.release()

	pf.lns = make([]int, n)
	for i := range pf.lns {
		pf.lns[i] = ln.FD
	}
	// Validate refuses it for a unix: Config.Addr; ln is what is served.
	if reuseport && sock.IsUnix(ln.Addr) {
		return fmt.Errorf("prefork: -accept %s on %s: %w (use -accept %s)", AcceptReuseport, ln.Addr, sock.ErrReusePortUnix, AcceptExclusive)
	}
	if reuseport {
		if err := sock.SetReusePort(ln.FD, true); err != nil {
			return err
		}
		defer sock.SetReusePort(ln.FD, false)
		for i := 1; i < n; i++ {
			fd, err := reuseportListener(ln.Addr, datagrams)
			if err != nil {
				return fmt.Errorf("prefork: %w", err)
			}
			pf.lns[i] = fd
		}
	}
	if datagrams {
		// Deferred after release, so it runs before the sockets close.
		socks := pf.lns[:1] // exclusive: every slot serves the one socket
		if reuseport {
			socks = pf.lns
		}
		defer rcvbufDropsGauge(env, socks...)()
	}
	if err := pf.mapStats(n); err != nil {
		return err
	}

	var err error
	if pf.p, err = openPoller(ctx, 16); err != nil {
		return err
	}
	defer pf.p.close()

	// Counters: the workers' slots are summed into env.Stats at every snapshot, and
	// once more after the last worker is reaped.
	env.Stats.OnSnapshot(pf.sync)
	defer pf.sync()
	defer pf.shutdown()
	env.Stats.Gauge("workers", pf.live.Load)
	env.Stats.Gauge("workers_replaced", pf.replaced.Load)
	for i := range n {
		if datagrams {
			env.Stats.Gauge(fmt.Sprintf("worker%d_datagrams", i), func() int64 { return pf.workerDatagrams(i) })
		} else {
			env.Stats.Gauge(fmt.Sprintf("worker%d_accepted", i), func() int64 { return pf.workerAccepted(i) })
		}
		env.Stats.Gauge(fmt.Sprintf("worker%d_pid", i), pf.pids[i].Load)
	}

	for i := range n {
		if err := pf.start(i); err != nil {
			return fmt.Errorf("prefork: starting %d workers: %w", n, err)
		}
	}
	for ctx.Err() == nil {
		events, err := pf.p.wait(pf.timeoutMS())
		if err != nil {
			return err
		}
		for i := range events {
			if wk := pf.byPidfd[int(events[i].Fd)]; wk != nil {
				pf.exited(wk)
			}
		}
		pf.refill()
	}
	return nil
}

// mapStats creates the shared counters: a memfd of n slots, mapped shared.
func (pf *prefork) mapStats(n int) error {
	fd, err := unix.MemfdCreate("concbench-prefork-stats", unix.MFD_CLOEXEC)
	if err != nil {
		return os.NewSyscallError("memfd_create", err)
	}
	pf.memfd = fd
	if err := unix.Ftruncate(fd, int64(n*statsSlot)); err != nil {
		return os.NewSyscallError("ftruncate", err)
	}
	pf.mem, err = unix.Mmap(fd, 0, n*statsSlot, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return os.NewSyscallError("mmap", err)
	}
	return nil
}

// A slot holds the counters as they are (atomics only, no pointer): this fails
// to compile if they outgrow it.
var _ [statsSlot - unsafe.Sizeof(counters{})]byte

// sharedCounters are the counters in slot i of shared memory. A zeroed slot is a
// valid set of counters, all 0.
func sharedCounters(mem []byte, i int) (*counters, error) {
	off := i * statsSlot
	if i < 0 || off+statsSlot > len(mem) {
		return nil, fmt.Errorf("stats slot %d outside %d bytes of shared memory", i, len(mem))
	}
	return (*counters)(unsafe.Pointer(&mem[off])), nil
}

func (pf *prefork) slot(i int) *counters {
	c, _ := sharedCounters(pf.mem, i) // i < n by construction
	return c
}

// start forks the worker of slot i on its listening socket and its stats slot.
func (pf *prefork) start(i int) error {
	pr, err := spawn("prefork", pf.env.Config, strconv.Itoa(i), pf.lns[i], pf.memfd)
	if err != nil {
		return err
	}
	if err := pf.p.add(pr.pidfd, unix.EPOLLIN); err != nil {
		pr.signal(unix.SIGKILL)
		pr.reap(true)
		return err
	}
	pf.byPidfd[pr.pidfd] = &preforkWorkerRec{slot: i, proc: pr}
	pf.pids[i].Store(int64(pr.pid))
	pf.live.Add(1)
	return nil
}

// exited reaps a worker, folds its counters into the retired ones (its open
// connections were closed by its death: lost, unless the server is stopping) and
// schedules its replacement.
func (pf *prefork) exited(wk *preforkWorkerRec) {
	pidfd := wk.proc.pidfd
	ws, ok := wk.proc.reap(false)
	if !ok {
		return
	}
	delete(pf.byPidfd, pidfd)
	pf.pids[wk.slot].Store(0)
	pf.live.Add(-1)
	pf.retire(wk.slot, true) // the loop runs until shutdown, which reaps on its own
	pf.env.Log.Printf("prefork: worker %d (slot %d) %s; starting a replacement", wk.proc.pid, wk.slot, describeExit(ws))
	if ws.Exited() && ws.ExitStatus() == exitSetup {
		// It could not start; do not spin forking it again.
		pf.retryAt = time.Now().Add(respawnRetry)
	}
	pf.missing = append(pf.missing, wk.slot)
}

// retire adds a dead worker's slot to the retired counters and zeroes it for the
// next worker of that slot. Its connections still open died with it.
func (pf *prefork) retire(i int, lost bool) {
	pf.mu.Lock()
	defer pf.mu.Unlock()
	s := pf.slot(i)
	c := s.load()
	// Its connections still open are closed now; with the worker's death, they
	// are lost.
	c.Closed += c.Active
	if lost {
		c.IOErrors += c.Active
	}
	c.Active = 0
	pf.retired.add(c)
	pf.accepted[i] += c.Accepted
	pf.dgrams[i] += c.DatagramsIn
	s.store(Counts{})
}

// refill starts the workers of the slots left empty, unless a start failed less
// than respawnRetry ago.
func (pf *prefork) refill() {
	if len(pf.missing) == 0 || pf.stopped || time.Now().Before(pf.retryAt) {
		return
	}
	for len(pf.missing) > 0 {
		if err := pf.start(pf.missing[0]); err != nil {
			pf.env.Log.Printf("prefork: starting a worker: %v; retrying in %v", err, respawnRetry)
			pf.retryAt = time.Now().Add(respawnRetry)
			return
		}
		pf.missing = pf.missing[1:]
		pf.replaced.Add(1)
	}
}

func (pf *prefork) timeoutMS() int {
	if len(pf.missing) == 0 {
		return -1
	}
	return max(1, int(time.Until(pf.retryAt).Milliseconds())+1)
}

// workerAccepted is the connections accepted by the workers of slot i so far.
func (pf *prefork) workerAccepted(i int) int64 {
	pf.mu.Lock()
	defer pf.mu.Unlock()
	n := pf.accepted[i]
	if pf.mem != nil {
		n += pf.slot(i).accepted.Load()
	}
	return n
}

// workerDatagrams is the datagrams read by the workers of slot i so far.
func (pf *prefork) workerDatagrams(i int) int64 {
	pf.mu.Lock()
	defer pf.mu.Unlock()
	n := pf.dgrams[i]
	if pf.mem != nil {
		n += pf.slot(i).dgramIn.Load()
	}
	return n
}

// sync sets the parent's counters to the retired ones plus every live slot.
func (pf *prefork) sync() {
	pf.mu.Lock()
	defer pf.mu.Unlock()
	if pf.mem == nil {
		return // released: the last sync is done
	}
	sum := pf.retired
	for i := range len(pf.mem) / statsSlot {
		sum.add(pf.slot(i).load())
	}
	pf.env.Stats.store(sum)
}

// shutdown sends SIGTERM to every worker — each stops accepting, drains its
// connections for Config.Grace (closes them at once without one) and exits — and
// reaps them all, killing the ones still running at the grace deadline plus
// childMargin.
func (pf *prefork) shutdown() {
	pf.stopped = true
	procs := make([]*proc, 0, len(pf.byPidfd))
	slots := map[*proc]int{}
	for _, wk := range pf.byPidfd {
		procs = append(procs, wk.proc)
		slots[wk.proc] = wk.slot
	}
	terminate(pf.env.Log, procs, stopWait(pf.env.Config.Grace), func(pr *proc, ws unix.WaitStatus) {
		pf.live.Add(-1)
		pf.pids[slots[pr]].Store(0)
		if !(ws.Exited() && ws.ExitStatus() == exitOK) {
			pf.env.Log.Printf("prefork: worker %d %s at shutdown", pr.pid, describeExit(ws))
		}
		pf.retire(slots[pr], false)
	})
	clear(pf.byPidfd)
}

// release closes the listening sockets Serve created and the shared counters (after
// the last sync).
func (pf *prefork) release() {
	for i, fd := range pf.lns {
		if i > 0 && fd != pf.lns[0] {
			unix.Close(fd)
		}
	}
	pf.mu.Lock()
	defer pf.mu.Unlock()
	if pf.mem != nil {
		unix.Munmap(pf.mem)
		pf.mem = nil
	}
	if pf.memfd >= 0 {
		unix.Close(pf.memfd)
	}
}

// reuseportListener binds a new listening socket (a UDP socket if datagrams) to
// addr (HOST:PORT, already bound by a socket with SO_REUSEPORT) with
// SO_REUSEPORT, joining its group.
func reuseportListener(addr string, datagrams bool) (int, error) {
	listen := sock.ListenReusePort
	if datagrams {
		listen = func(addr string) (*sock.Listener, error) { return sock.ListenUDP(addr, true, true) }
	}
	ln, err := listen(addr)
	if err != nil {
		return -1, fmt.Errorf("reuseport listener: %w", err)
	}
	return ln.FD, nil
}

// preforkWorker is a worker process: an edge-triggered epoll loop on the inherited
// listening socket (descriptor 3), counting into its shared stats slot
// (descriptor 4, slot number in arg), until SIGTERM.
func preforkWorker(env *Env, arg string) int {
	const lnFD, memFD = firstFD, firstFD + 1
	slot, err := strconv.Atoi(arg)
	if err != nil {
		env.Log.Printf("slot %q: %v", arg, err)
		return exitSetup
	}
	var st unix.Stat_t
	if err := unix.Fstat(memFD, &st); err != nil {
		env.Log.Print(os.NewSyscallError("fstat", err))
		return exitSetup
	}
	mem, err := unix.Mmap(memFD, 0, int(st.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		env.Log.Print(os.NewSyscallError("mmap", err))
		return exitSetup
	}
	unix.Close(memFD) // the mapping stays
	c, err := sharedCounters(mem, slot)
	if err != nil {
		env.Log.Print(err)
		return exitSetup
	}
	// The loop counts into the shared slot; the Stats around it (its gauges)
	// are this process's own.
	env.Stats = newStats(c)
	sa, err := unix.Getsockname(lnFD)
	if err != nil {
		env.Log.Print(os.NewSyscallError("getsockname", err))
		return exitSetup
	}
	ln := &sock.Listener{FD: lnFD, Addr: sock.SockaddrString(sa)}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	// Reuseport: this worker's socket is its own. Exclusive: all share one socket,
	// and EPOLLEXCLUSIVE wakes one of them per connection (per datagram).
	m := epollModel{edge: true, exclusive: env.Config.Accept != AcceptReuseport}
	if proto.IsDatagram(env.Config.Proto) {
		err = m.ServeDatagrams(ctx, ln, env)
	} else {
		err = m.Serve(ctx, ln, env)
	}
	if err != nil {
		env.Log.Print(err)
		if errors.Is(err, unix.EINVAL) {
			return exitSetup
		}
		return exitIOError
	}
	return exitOK
}

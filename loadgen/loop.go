package loadgen

// The event loop: one locked OS thread with its epoll instance, a timerfd and its
// connections. It ramps the connections up, then sends (closed loop, open-loop
// schedule or a connection per request), reads, hands what it read to the reply
// checks (check.go), times out connects and requests, and reconnects after a
// failure. What it measured goes to its loopStats (record.go). udp-echo's flows
// are connections of the loop too, with their own sending, receiving and expiry
// (flows.go).

import (
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/sys/unix"

	"concbench/internal/rawio"
	"concbench/loadgen/dgram"
)

// readBufFiles is the read buffer of a loop for file and http, whose replies run
// to megabytes: larger reads mean fewer system calls per reply.
const readBufFiles = 256 << 10

// sweepEvery is how often a loop checks timeouts, retries backoffs and the stop flag.
const sweepEvery = 20 * time.Millisecond

// timerToken marks the timerfd's epoll events (connection events carry the index).
const timerToken = -1

// connState is where a connection is in its life.
type connState uint8

const (
	stDown       connState = iota // no socket; reconnect at retryAt (0: when told to)
	stConnecting                  // non-blocking connect in progress
	stOpen                        // connected
)

// slot is one request on the wire: when it was meant to go and when it went.
type slot struct{ intended, sent int64 }

// conn is one connection of a loop. Its fields are only touched by its loop.
type conn struct {
	fd        int
	idx       int32 // index in the loop's conns (the epoll token)
	gid       int   // global index over all loops: the open-loop phase and request quota
	state     connState
	tried     bool  // the first connect attempt resolved (the ramp counts these)
	connStart int64 // when the current connect began
	retryAt   int64 // stDown: when to connect again; 0 means not scheduled

	ring       []slot // requests outstanding, oldest at head; cap is the pipeline depth
	head, n    int
	wseq, rseq int  // the next request to write and reply to read, as indexes into the profile's rotation (0..rot-1)
	woff       int  // bytes of request wseq written so far (a partial write)
	roff       int  // bytes of reply rseq verified so far
	bad        bool // reply rseq has a payload mismatch

	quota int64 // requests this connection may still send; -1 means unlimited

	// Open loop: the k-th send of connection gid is meant for phase + k·period
	// (fixed), or an exponential gap after the (k-1)-th (exp). freeAt: when
	// the connection last became able to send again (a reply came back); a
	// send due before then was parked, waiting for it.
	k       int64
	due     int64
	heapPos int32 // position in the loop's dueHeap, -1 when not in it
	freeAt  int64

	// Reconnect mode: the intended start of the cycle, and whether its reply is in.
	cycleIntended int64
	cycleDone     bool

	// served: a request completed on this connection since the load started (the
	// steady-state gate counts these); lastDone: when its last one did.
	served   bool
	lastDone int64

	// idle: one of Workload.Idle's connections, which sends a heartbeat on a
	// schedule (due, k) instead of load; lost: an idle connection that failed,
	// not reopened.
	idle bool
	lost bool

	// A datagram flow (udp-echo; flows.go): its account of its datagrams,
	// which replaces the ring, the sequence numbers and the partial reads and
	// writes above; the deadline of its oldest datagram outstanding and its
	// position in the loop's expiry heap (-1: not in it); full: its socket's
	// send buffer was full, nothing is sent until it is writable; finished: a
	// limited run's flow with its quota sent and nothing outstanding;
	// dropsAt: its socket's drop count when the window opened.
	flow     *dgram.Flow
	expAt    int64
	expPos   int32
	full     bool
	finished bool
	dropsAt  int64
}

// loop is one event loop: an OS thread with its epoll instance and connections.
type loop struct {
	sh     *shared
	cpu    int // -1: not pinned
	epfd   int
	tfd    int // timerfd: wakes epoll_wait at the next deadline with ns precision
	armed  int64
	conns  []conn
	events []unix.EpollEvent
	busy   rawio.Busy // whether the next wait polls without blocking first
	buf    []byte
	files  []fileReply // proto file: the reply parser of conns[i]
	https  []httpReply // proto http: the reply parser of conns[i]
	heap   dueHeap
	exp    dueHeap    // udp-echo: the flows with datagrams outstanding, by their oldest's deadline
	tx     *txBatch   // udp-echo: the datagrams queued for one flow's socket
	rx     *rxBatch   // udp-echo: the replies read from one flow's socket
	rng    *rand.Rand // open loop, exp: the gaps
	pipe   int
	sa     unix.Sockaddr // this loop's copy: unix.Connect writes into it

	loading      bool  // load phase (not the ramp)
	t0, warmEnd  int64 // load start and measured window start
	end          int64
	nextSweep    int64
	rampNext     int // next connection for the ramp to connect
	rampInFlight int
	rampMax      int
	resolved     int // connections whose first attempt resolved
	filling      bool
	limited      bool
	active       int // connections with quota left or requests outstanding (limited runs)
	open         int // connections established and not closed

	// served counts the connections that completed a request since the load
	// started; pubServed publishes it to the coordinator (the gate), which reads it
	// from another goroutine.
	served    int
	pubServed atomic.Int64
	pubOpen   atomic.Int64 // open, for the gate
	// pubRefused counts the udp-echo datagrams refused (ICMP port
	// unreachable), for the gate.
	pubRefused atomic.Int64
	// priming is this loop's copy of sh.priming, read once per pass: while it is
	// set a connection that has been served sends nothing more.
	priming bool

	// sec is the timeline entry second last found, secFrom and secTo the
	// times it covers (a cache: not measured, not merged).
	sec            int
	secFrom, secTo int64

	st loopStats
}

// newLoop makes the loop for the connections gids (global indexes), with rampMax
// connects in flight during the ramp, quota(gid) requests per connection (-1:
// unlimited) and a timeline of seconds entries. Everything the request cycle
// uses is allocated here.
func newLoop(sh *shared, cpu int, gids []int, rampMax int, quota func(gid int) int64, seconds int) (*loop, error) {
	l := &loop{sh: sh, cpu: cpu, pipe: sh.cfg.Pipeline, rampMax: max(1, rampMax), epfd: -1, tfd: -1}
	// Each loop draws its exponential gaps from a stream of its own: the
	// workload's seed, and the loop's first connection.
	l.rng = rand.New(rand.NewPCG(sh.cfg.Seed, uint64(gids[0])))
	switch sa := sh.sa.(type) {
	case *unix.SockaddrInet4:
		cp := *sa
		l.sa = &cp
	case *unix.SockaddrInet6:
		cp := *sa
		l.sa = &cp
	case *unix.SockaddrUnix:
		cp := *sa
		l.sa = &cp
	}
	var err error
	if l.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if l.tfd, err = unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC); err != nil {
		l.close()
		return nil, os.NewSyscallError("timerfd_create", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: timerToken}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, l.tfd, &ev); err != nil {
		l.close()
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	l.conns = make([]conn, len(gids))
	var slots []slot
	if !sh.dgram { // a flow's datagrams are in its dgram.Flow
		slots = make([]slot, len(gids)*l.pipe)
	}
	for i, g := range gids {
		c := &l.conns[i]
		c.fd, c.idx, c.gid, c.heapPos, c.expPos = -1, int32(i), g, -1, -1
		if sh.dgram {
			c.flow = dgram.NewFlow(uint32(g), sh.cfg.Timeout)
			c.flow.ExpectSize(sh.cfg.Size)
		} else {
			c.ring = slots[i*l.pipe : (i+1)*l.pipe : (i+1)*l.pipe]
		}
		if c.idle = g >= sh.cfg.Conns; c.idle {
			c.quota = -1 // heartbeats until the end, whatever the active quota
			continue
		}
		c.quota = quota(g)
		if c.quota >= 0 {
			l.limited = true
		}
		if c.quota != 0 {
			l.active++
		}
	}
	l.heap = dueHeap{idx: make([]int32, 0, len(gids)), conns: l.conns}
	l.events = make([]unix.EpollEvent, min(len(gids)+1, 512))
	switch sh.kind {
	case kDgram:
		// A receive slot is one byte longer than a reply should be, so that a
		// longer one shows as such.
		l.exp = dueHeap{idx: make([]int32, 0, len(gids)), conns: l.conns, expiry: true}
		l.tx = newTxBatch(sh.cfg.Batch)
		l.rx = newRxBatch(sh.cfg.Batch, sh.cfg.Size+1)
	case kFile:
		l.files = make([]fileReply, len(gids))
		l.buf = make([]byte, readBufFiles)
	case kHTTP:
		l.https = make([]httpReply, len(gids))
		l.buf = make([]byte, readBufFiles)
	default:
		l.buf = make([]byte, 64<<10)
	}
	l.st.latency = hdr.New(histMin, histMax, histDigits)
	l.st.hbLatency = hdr.New(histMin, histMax, histDigits)
	l.st.connect = hdr.New(histMin, histMax, histDigits)
	if sh.open {
		l.st.uncorrected = hdr.New(histMin, histMax, histDigits)
		l.st.sendLag = hdr.New(histMin, histMax, histDigits)
	}
	l.st.secReqs = make([]int64, seconds)
	l.st.secErrs = make([]int64, seconds)
	l.st.secHist = make([]*hdr.Histogram, seconds)
	for i := range l.st.secHist {
		l.st.secHist[i] = hdr.New(histMin, histMax, secDigits)
	}
	return l, nil
}

// now is the time in ns since the run's clock base, the loop's only clock.
func (l *loop) now() int64 { return int64(time.Since(l.sh.base)) }

// close releases every descriptor the loop holds and counts what was in flight.
func (l *loop) close() {
	for i := range l.conns {
		c := &l.conns[i]
		if c.flow != nil {
			l.st.inFlightAtEnd += int64(c.flow.Outstanding())
		}
		if c.fd >= 0 {
			l.st.inFlightAtEnd += int64(c.n)
			unix.Close(c.fd)
			c.fd = -1
		}
	}
	if l.tfd >= 0 {
		unix.Close(l.tfd)
	}
	if l.epfd >= 0 {
		unix.Close(l.epfd)
	}
}

// run is the loop's life: pin, ramp, report, wait for the start, load, stop. The
// start channel delivers the load start time (0: do not load). A loop that loaded
// says so on stopped and keeps its connections until release is closed.
func (l *loop) run(rampDone chan<- struct{}, start <-chan int64, stopped chan<- struct{}, release <-chan struct{}) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer l.close()
	if l.cpu >= 0 {
		var set unix.CPUSet
		set.Set(l.cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			l.st.pinErr = os.NewSyscallError("sched_setaffinity", err)
		}
	}
	// Timer slack (50 µs by default) would delay every timerfd wake-up: pacing
	// precision is the point of the timer, so ask for 1 ns.
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)

	if !l.sh.cfg.Reconnect {
		l.rampFill(l.now())
		for l.resolved < len(l.conns) && !l.sh.stop.Load() {
			l.poll(l.now())
		}
	}
	l.st.rampEnd = l.now()
	l.st.established, l.st.idleEstablished = l.open, l.st.idleOpen
	rampDone <- struct{}{}
	t0 := <-start
	if t0 == 0 {
		return
	}
	l.t0 = t0
	l.priming = l.sh.priming.Load()
	if ws := l.sh.window.Load(); ws != 0 {
		l.openWindow(ws) // it opened with the load
	} else {
		// The window opens when the coordinator says (sh.window): until then
		// nothing is measured, and the load lasts at most the warm-up or the
		// gate's bound, the wait for a coordinated start, and the window.
		l.warmEnd = math.MaxInt64
		wait := time.Duration(0)
		if l.sh.cfg.WindowAt != nil {
			wait = l.sh.cfg.WindowWait
		}
		l.end = t0 + int64(max(l.sh.cfg.Warmup, l.sh.cfg.SteadyTimeout)+wait+l.sh.cfg.Duration)
	}
	l.begin()
	for !l.sh.stop.Load() {
		if l.priming && !l.sh.priming.Load() {
			l.primed()
		}
		if l.warmEnd == math.MaxInt64 {
			if ws := l.sh.window.Load(); ws != 0 {
				l.openWindow(ws)
			}
		}
		now := l.now()
		if now >= l.end || (l.limited && l.active == 0) {
			break
		}
		l.poll(now)
	}
	l.st.stopped = min(l.now(), l.end)
	l.st.openAtEnd = l.open
	for i := range l.conns {
		if c := &l.conns[i]; !c.idle && c.lastDone < l.warmEnd {
			l.st.idleInWindow++
		}
	}
	windowed := l.warmEnd != math.MaxInt64
	if l.sh.dgram && windowed {
		l.measureFlows(false)
	}
	stopped <- struct{}{}
	<-release
	if l.sh.dgram && windowed {
		// The window's end is marked: the datagrams sent in it are followed
		// to their fates now, sending nothing (flows.go).
		l.drain()
		l.countDrops()
	}
}

// primed ends the priming: the connections served go on sending (those waiting
// for their first reply still wait).
func (l *loop) primed() {
	l.priming = false
	now := l.now()
	for i := range l.conns {
		l.wake(&l.conns[i], now)
	}
}

// openWindow starts the measured window at ws: replies from then on are
// measured, and the load lasts Duration more.
func (l *loop) openWindow(ws int64) {
	l.warmEnd, l.end = ws, ws+int64(l.sh.cfg.Duration)
	l.st.openAtStart = l.open
	if l.sh.dgram {
		l.measureFlows(true)
	}
}

// rampFill starts initial connects while fewer than rampMax are in flight.
func (l *loop) rampFill(now int64) {
	// A connect that fails at once resolves inside connect and calls back here:
	// the outer call carries on instead of recursing once per connection.
	if l.filling {
		return
	}
	l.filling = true
	defer func() { l.filling = false }()
	for l.rampNext < len(l.conns) && l.rampInFlight < l.rampMax {
		c := &l.conns[l.rampNext]
		l.rampNext++
		l.rampInFlight++
		l.connect(c, now)
	}
}

// begin starts the load: closed loop fills every open connection's pipeline; open
// loop schedules every connection's first send; reconnect mode starts cycles.
func (l *loop) begin() {
	l.loading = true
	now := l.now()
	for i := range l.conns {
		c := &l.conns[i]
		if !c.tried && !l.sh.cfg.Reconnect { // the ramp was cut short: connect now
			c.retryAt = now
		}
		if c.idle {
			if l.sh.cfg.Heartbeat > 0 {
				c.due = l.heartbeatDue(c, 0)
				l.heap.push(int32(i))
			}
			continue
		}
		if l.sh.open {
			c.due = l.firstDue(c)
			l.heap.push(int32(i))
			continue
		}
		l.wake(c, now)
	}
}

// schedule is the intended time of the k-th send of connection gid: connections
// are spread evenly over one period so their sends do not bunch.
func (l *loop) schedule(gid int, k int64) int64 {
	return l.t0 + int64((float64(gid)*l.sh.phaseNS)+float64(k)*l.sh.periodNS)
}

// heartbeatDue is when idle connection c's k-th heartbeat is due: the idle
// connections' first ones spread evenly over the first interval, so they never
// arrive together.
func (l *loop) heartbeatDue(c *conn, k int64) int64 {
	hb := l.sh.cfg.Heartbeat
	i := int64(c.gid - l.sh.cfg.Conns)
	return l.t0 + int64(hb)*i/int64(l.sh.cfg.Idle) + k*int64(hb)
}

// heartbeat is idle connection c's due heartbeat: sent if its last one was
// answered, else missed (counted in the window). It reports whether c stays on
// the schedule.
func (l *loop) heartbeat(c *conn, now int64) bool {
	if c.state != stOpen {
		return false // lost: it stays down
	}
	due := c.due
	c.k++
	c.due = l.heartbeatDue(c, c.k)
	if c.n > 0 || c.woff > 0 {
		if now >= l.warmEnd {
			l.st.hbMissed++
		}
		return true
	}
	if now >= l.warmEnd {
		l.st.hbSent++
	}
	l.send(c, due, now)
	return c.state == stOpen
}

// poll is one pass, starting at now (its caller's clock reading): fire due
// sends, sweep if it is time, wait for readiness (or the next deadline),
// handle what is ready.
func (l *loop) poll(now int64) {
	l.fireDue(now)
	if l.sh.dgram {
		l.expireDue(now)
	}
	if now >= l.nextSweep {
		l.sweep(now)
		l.nextSweep = now + int64(sweepEvery)
	}
	next := l.nextSweep
	if l.loading && l.end < next {
		next = l.end
	}
	if ci, ok := l.heap.top(); ok && l.conns[ci].due < next {
		next = l.conns[ci].due
	}
	if ci, ok := l.exp.top(); ok && l.conns[ci].expAt < next {
		next = l.conns[ci].expAt
	}
	timeout := -1
	if next <= now {
		timeout = 0
	} else if next != l.armed {
		l.arm(next - now)
		l.armed = next
	}
	// Busy, poll first without blocking and without the runtime's syscall path
	// (rawio: the descriptors are non-blocking); block, through the runtime,
	// only if nothing is ready. See rawio for why that keeps this loop's thread
	// from trading its P with the runtime's monitor on every pass.
	n, err := l.busy.Wait(timeout,
		func() (int, error) { return rawio.EpollPoll(l.epfd, l.events) },
		func() (int, error) { return unix.EpollWait(l.epfd, l.events, timeout) })
	if err != nil { // EINTR: go round again
		return
	}
	for i := range n {
		ev := &l.events[i]
		if ev.Fd == timerToken {
			l.armed = 0
			continue
		}
		l.handle(&l.conns[ev.Fd], ev.Events)
	}
}

// arm sets the timerfd to fire once, d nanoseconds from now.
func (l *loop) arm(d int64) {
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(max(d, 1))}
	_ = unix.TimerfdSettime(l.tfd, 0, &spec, nil)
}

// fireDue sends every open-loop request whose intended time has come.
func (l *loop) fireDue(now int64) {
	for {
		ci, ok := l.heap.popDue(now)
		if !ok {
			return
		}
		c := &l.conns[ci]
		if c.idle {
			if l.heartbeat(c, now) {
				l.heap.push(ci)
			}
			continue
		}
		if !l.canSend(c) {
			continue // parked: wake puts it back when it can send
		}
		if l.sh.dgram {
			l.fireFlow(c, now)
		} else {
			l.sendDue(c, now)
		}
		if l.canSend(c) {
			l.heap.push(ci)
		}
	}
}

// canSend reports whether c can start a request now: in reconnect mode, start a
// cycle; otherwise put one more request on the wire.
func (l *loop) canSend(c *conn) bool {
	if !l.loading || c.quota == 0 || (l.priming && c.served) {
		return false
	}
	if l.sh.cfg.Reconnect {
		return c.state == stDown && c.retryAt == 0
	}
	if l.sh.dgram {
		// Open loop: on the schedule, whatever is outstanding.
		return c.state == stOpen && !c.full && (l.sh.open || c.flow.Outstanding() < l.pipe)
	}
	return c.state == stOpen && c.n < l.pipe && c.woff == 0
}

// sendDue starts c's scheduled request (open loop) and advances its schedule.
func (l *loop) sendDue(c *conn, now int64) {
	intended := c.due
	c.k++
	c.due = l.nextDue(c, intended)
	l.noteSend(c, intended, now)
	if l.sh.cfg.Reconnect {
		c.cycleIntended = intended
		l.connect(c, now)
		return
	}
	l.send(c, intended, now)
}

// wake is called when c may be able to send again. Closed loop sends at once, as
// much as the pipeline allows; open loop puts c back on the schedule.
func (l *loop) wake(c *conn, now int64) {
	if c.idle {
		return // heartbeats go on their schedule
	}
	if l.sh.open {
		if c.heapPos < 0 && l.canSend(c) {
			c.freeAt = now
			l.heap.push(c.idx)
		}
		return
	}
	if l.sh.dgram {
		l.wakeFlow(c, now)
		return
	}
	for l.canSend(c) {
		if l.sh.cfg.Reconnect {
			c.cycleIntended = now
			l.connect(c, now)
			return
		}
		l.send(c, now, now)
	}
}

// connect starts a non-blocking connect on c.
func (l *loop) connect(c *conn, now int64) {
	c.retryAt = 0
	c.connStart = now
	typ, events := unix.SOCK_STREAM, uint32(unix.EPOLLIN|unix.EPOLLOUT|unix.EPOLLRDHUP|unix.EPOLLET)
	if l.sh.dgram {
		typ, events = unix.SOCK_DGRAM, flowEvents
	}
	fd, err := unix.Socket(l.sh.family, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		l.connectFailed(c, connectErrorKind(err), now)
		return
	}
	switch {
	case l.sh.dgram:
		l.openFlow(fd)
	case l.sh.family != unix.AF_UNIX:
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	}
	if len(l.sh.src) > 0 {
		if err := bindSource(fd, l.sh.src[c.gid%len(l.sh.src)]); err != nil {
			unix.Close(fd)
			l.connectFailed(c, connectErrorKind(err), now)
			return
		}
	}
	c.fd = fd
	// Registered once, edge-triggered, for the connection's life: the connect's
	// completion is an EPOLLOUT edge, replies are EPOLLIN edges. (A flow's
	// connect completes at once: it only names the peer; its socket is
	// level-triggered, see flows.go.)
	ev := unix.EpollEvent{Events: events, Fd: c.idx}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.connectFailed(c, ErrConnectOther, now)
		return
	}
	c.state = stConnecting
	err = unix.Connect(fd, l.sa)
	switch err {
	case nil:
		l.established(c, now)
	case unix.EINPROGRESS, unix.EINTR:
	default:
		l.connectFailed(c, connectErrorKind(err), now)
	}
}

// connectDone resolves a connect in progress once epoll reports the socket.
func (l *loop) connectDone(c *conn) {
	now := l.now()
	soerr, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err == nil && soerr != 0 {
		err = unix.Errno(soerr)
	}
	if err != nil {
		l.connectFailed(c, connectErrorKind(err), now)
		return
	}
	l.established(c, now)
}

// resolveFirst counts c's first connect attempt as resolved (either way), once;
// during the ramp it frees a place for the next connect.
func (l *loop) resolveFirst(c *conn, now int64) {
	if !c.tried {
		c.tried = true
		l.resolved++
		if !l.loading {
			l.rampInFlight--
			l.rampFill(now)
		}
	}
}

// established records c's connect time and, while loading, starts sending on it:
// a reconnect cycle's request, measured from the cycle's start, or as much as
// the pipeline allows.
func (l *loop) established(c *conn, now int64) {
	c.state = stOpen
	if c.idle {
		l.st.idleOpen++
	} else {
		l.open++
		l.pubOpen.Store(int64(l.open))
	}
	l.st.connect.RecordValue(clampUS(now - c.connStart))
	l.resolveFirst(c, now)
	if !l.loading {
		return
	}
	if l.sh.cfg.Reconnect {
		l.send(c, c.cycleIntended, c.connStart)
		return
	}
	l.wake(c, now)
}

// connectFailed counts a failed connect like any failure and resolves the attempt.
func (l *loop) connectFailed(c *conn, kind ErrorKind, now int64) {
	l.fail(c, kind, now)
	l.resolveFirst(c, now)
}

// send puts request wseq on the wire (or as much of it as fits), recording when it
// was meant to go and when it went. A partial write finishes on EPOLLOUT.
func (l *loop) send(c *conn, intended, sent int64) {
	i := c.head + c.n
	if i >= len(c.ring) {
		i -= len(c.ring)
	}
	c.ring[i] = slot{intended: intended, sent: sent}
	c.n++
	if c.quota > 0 {
		c.quota--
	}
	l.flush(c)
}

// flush writes the rest of request wseq. It returns false if c failed.
func (l *loop) flush(c *conn) bool {
	p := l.prof(c)
	req := p.reqs[c.wseq]
	for c.woff < len(req) {
		n, err := rawio.Send(c.fd, req[c.woff:]) // EINTR retried inside
		switch {
		case err == unix.EAGAIN:
			return true // the EPOLLOUT edge resumes
		case err != nil:
			l.fail(c, ioErrorKind(err), l.now())
			return false
		}
		c.woff += n
	}
	c.woff = 0
	if c.wseq++; c.wseq == p.rot {
		c.wseq = 0
	}
	if l.sh.halfShut {
		// Reconnect mode: the half-close tells the server there is no more to come:
		// it replies and closes, and its close ends the cycle.
		_ = unix.Shutdown(c.fd, unix.SHUT_WR)
	}
	return true
}

// handle processes one epoll event of c.
func (l *loop) handle(c *conn, events uint32) {
	switch c.state {
	case stConnecting:
		l.connectDone(c)
		return
	case stDown:
		return // a stale event of a socket closed earlier in this batch
	}
	if l.sh.dgram {
		l.handleFlow(c, events)
		return
	}
	// EPOLLOUT first: finishing a partial request write lets the reads below be
	// followed by the next send in the same pass.
	if events&unix.EPOLLOUT != 0 && c.woff > 0 {
		if !l.flush(c) {
			return
		}
	}
	var at int64
	if events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		// With the peer's FIN or an error pending, read on to the EOF or the error:
		// a short read would return the last data without reporting either.
		var ok bool
		if at, ok = l.readAll(c, events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) == 0); !ok {
			return
		}
	}
	if c.state == stOpen && !l.sh.cfg.Reconnect {
		// The clock read that timed the last reply read times the sends it
		// frees: one reading a request instead of two. A request is stamped
		// before it is written, by the time its reply check took (a fraction
		// of a microsecond): its latency is overstated by that, never
		// understated.
		if at == 0 {
			at = l.now()
		}
		l.wake(c, at)
	}
}

// readAll reads until the socket is drained (a short read counts as drained when
// shortDone), verifying and completing replies. It returns when its last read
// returned data (0: none did), and false if c was closed.
func (l *loop) readAll(c *conn, shortDone bool) (at int64, ok bool) {
	for {
		n, err := rawio.Recv(c.fd, l.buf) // EINTR retried inside
		switch {
		case err == unix.EAGAIN:
			return at, true
		case err != nil:
			l.fail(c, ioErrorKind(err), l.now())
			return at, false
		case n == 0:
			l.eof(c)
			return at, false
		}
		at = l.now()
		if !c.served && !c.idle && l.loading {
			l.markServed(c)
		}
		if !l.consume(c, l.buf[:n], at) {
			return at, false
		}
		if shortDone && n < len(l.buf) {
			// A short read drained the socket; data arriving later is a new edge.
			return at, true
		}
	}
}

// markServed notes that the server answered on c since the load started — any
// reply, even an error reply: the server holds the connection (the gate counts
// these).
func (l *loop) markServed(c *conn) {
	c.served = true
	l.served++
	l.pubServed.Store(int64(l.served))
}

// fail counts one error, closes c and schedules its reconnect after the backoff.
// The requests it had outstanding are lost with it.
func (l *loop) fail(c *conn, kind ErrorKind, now int64) {
	if c.idle {
		// An idle connection lost is an error of its own, and stays lost: the
		// server closed or reset a connection it was holding.
		l.st.idleErrors[kind]++
		l.closeConn(c)
		c.lost, c.retryAt = true, 0
		return
	}
	l.countError(kind, now)
	if l.limited && c.n > 0 && c.quota == 0 {
		l.active--
	}
	l.closeConn(c)
	c.retryAt = now + int64(l.sh.cfg.Backoff)
}

// prof is what c sends and expects: the active load's, or heartbeats.
func (l *loop) prof(c *conn) *profile {
	if c.idle {
		return &l.sh.hb
	}
	return &l.sh.act
}

// closeConn closes c's socket and forgets its requests.
func (l *loop) closeConn(c *conn) {
	if c.state == stOpen && c.idle {
		l.st.idleOpen--
	} else if c.state == stOpen {
		l.open--
		l.pubOpen.Store(int64(l.open))
	}
	if c.fd >= 0 {
		unix.Close(c.fd) // closing also removes it from the epoll set
		c.fd = -1
	}
	c.state = stDown
	c.head, c.n, c.woff, c.roff, c.bad, c.cycleDone, c.full = 0, 0, 0, 0, false, false, false
	// The requests written and not answered are lost with the connection: the
	// next reply answers the next request (before this, a connection that
	// failed with requests outstanding checked every later reply against the
	// wrong payload and counted each a mismatch).
	c.rseq = c.wseq
	// A new connection's first reply starts afresh.
	switch l.sh.kind {
	case kFile:
		l.files[c.idx] = fileReply{}
	case kHTTP:
		l.https[c.idx] = httpReply{}
	}
}

// sweep runs every sweepEvery: it times out connects and requests and reconnects
// connections whose backoff is over.
func (l *loop) sweep(now int64) {
	timeout, connTimeout := int64(l.sh.cfg.Timeout), int64(l.sh.cfg.ConnectTimeout)
	for i := range l.conns {
		c := &l.conns[i]
		switch c.state {
		case stConnecting:
			if now-c.connStart > connTimeout {
				l.connectFailed(c, ErrConnectTimeout, now)
			}
		case stOpen:
			// Priming, a connection waits for its first reply as long as the gate
			// lets it: the server may take seconds to hold it (a process to start).
			// An idle connection's unanswered heartbeat is a miss, not a timeout.
			if c.n > 0 && now-c.ring[c.head].sent > timeout && !(l.priming && !c.served) && !c.idle {
				l.fail(c, ErrTimeout, now)
			} else if c.cycleDone && now-c.connStart > timeout {
				// Reconnect mode: the reply came but the server's close, which
				// ends the cycle, did not.
				l.fail(c, ErrTimeout, now)
			}
		case stDown:
			if !l.loading || c.retryAt == 0 || c.retryAt > now || c.quota == 0 {
				continue
			}
			if l.sh.cfg.Reconnect {
				c.retryAt = 0
				l.wake(c, now)
			} else {
				l.connect(c, now)
			}
		}
	}
}

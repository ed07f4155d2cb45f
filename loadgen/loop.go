package loadgen

import (
	"bytes"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/sys/unix"

	"concbench/internal/proto"
)

// Histogram geometry: 1 µs to 60 s at 3 significant digits; the per-second
// histograms of the timeline use 2 digits to stay small.
const (
	histMin    = 1
	histMax    = 60_000_000
	histDigits = 3
	secDigits  = 2
)

// readBufFiles is the read buffer of a loop for file and http, whose replies run
// to megabytes: larger reads mean fewer system calls per reply.
const readBufFiles = 256 << 10

// sweepEvery is how often a loop checks timeouts, retries backoffs and the stop flag.
const sweepEvery = 20 * time.Millisecond

// timerToken marks the timerfd's epoll events (connection events carry the index).
const timerToken = -1

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
	wseq, rseq uint64 // sequence numbers of the next request to write and reply to read
	woff       int    // bytes of request wseq written so far (a partial write)
	roff       int    // bytes of reply rseq verified so far
	bad        bool   // reply rseq has a payload mismatch

	quota int64 // requests this connection may still send; -1 means unlimited

	// Open loop: the k-th send of connection gid is meant for phase + k·period.
	k       int64
	due     int64
	heapPos int32 // position in the loop's dueHeap, -1 when not in it

	// Reconnect mode: the intended start of the cycle, and whether its reply is in.
	cycleIntended int64
	cycleDone     bool
}

// protoKind is how a protocol's replies are verified.
type protoKind uint8

const (
	kEcho protoKind = iota // compared with a precomputed reply
	kRPC                   // compared with a precomputed reply, frame header first
	kFile                  // parsed by a fileReply
	kHTTP                  // parsed by an httpReply
)

// shared is what every loop of a run reads: the workload, precomputed requests and
// replies, the clock base and the stop flag.
type shared struct {
	cfg      Config
	sa       unix.Sockaddr
	family   int
	kind     protoKind
	reqs     [][]byte // request for sequence s is reqs[s % rot]
	reps     [][]byte // its expected reply (echo, rpc)
	rot      uint64
	expect   expect // what file and http replies must carry
	halfShut bool   // reconnect mode: half-close after the request
	base     time.Time
	stop     atomic.Bool
	open     bool    // open loop
	periodNS float64 // open loop: conns/rate in ns, the schedule's step per connection
	phaseNS  float64 // open loop: 1/rate in ns, the step between consecutive connections
}

// newShared precomputes the requests and expected replies. Payloads are lowercase
// letters rotating through 26 patterns (fewer for huge sizes), so the reply to one
// request differs from the reply to the next.
func newShared(cfg Config, base time.Time) (*shared, error) {
	family, sa, err := resolveAddr(cfg.Addr)
	if err != nil {
		return nil, err
	}
	s := &shared{cfg: cfg, base: base, family: family, sa: sa, halfShut: cfg.Reconnect}
	if cfg.Rate > 0 {
		s.open = true
		s.periodNS = float64(cfg.Conns) / cfg.Rate * 1e9
		s.phaseNS = 1e9 / cfg.Rate
	}
	switch cfg.Proto {
	case "file":
		s.kind, s.rot = kFile, 1
		s.reqs = [][]byte{proto.AppendFrame(nil, []byte(cfg.File))}
		s.expect = expectFor("file", cfg.File)
		return s, nil
	case "http":
		s.kind, s.rot = kHTTP, 1
		s.reqs = [][]byte{httpRequest(cfg.Path, cfg.Addr, cfg.Reconnect)}
		s.expect = expectFor("http", cfg.Path)
		s.halfShut = false // "Connection: close" instead
		return s, nil
	case "rpc":
		s.kind = kRPC
	}
	s.rot = 26
	if cfg.Size > 1<<16 {
		s.rot = 1
	}
	lower := make([]byte, cfg.Size+int(s.rot))
	for i := range lower {
		lower[i] = 'a' + byte(i%26)
	}
	for r := range int(s.rot) {
		payload := lower[r : r+cfg.Size]
		if s.kind == kRPC {
			s.reqs = append(s.reqs, proto.AppendFrame(nil, payload))
			s.reps = append(s.reps, proto.AppendFrame(nil, proto.AppendUpper(nil, payload)))
		} else {
			s.reqs = append(s.reqs, append([]byte(nil), payload...))
			s.reps = append(s.reps, proto.AppendUpper(nil, payload))
		}
	}
	return s, nil
}

// httpRequest is the GET every http request sends. Host is the address as given
// (localhost for a Unix domain socket); in reconnect mode it asks the server to
// close after the response.
func httpRequest(path, addr string, reconnect bool) []byte {
	host := addr
	if strings.HasPrefix(addr, "unix:") {
		host = "localhost"
	}
	req := "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: concbench-loadgen\r\n"
	if reconnect {
		req += "Connection: close\r\n"
	}
	return []byte(req + "\r\n")
}

// loopStats is what one loop measured.
type loopStats struct {
	latency, uncorrected, sendLag, connect *hdr.Histogram
	secReqs, secErrs                       []int64
	secHist                                []*hdr.Histogram
	errors                                 [numErrorKinds]int64
	requests                               int64 // correct replies in the measured window
	rampEnd                                int64 // when the last initial connect resolved
	established                            int   // open connections when the ramp ended
	inFlightAtEnd                          int64
	pinErr                                 error // pinning the loop's thread failed
	stopped                                int64 // when the loop stopped loading
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
	buf    []byte
	files  []fileReply // proto file: the reply parser of conns[i]
	https  []httpReply // proto http: the reply parser of conns[i]
	heap   dueHeap
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

	st loopStats
}

func newLoop(sh *shared, cpu int, gids []int, rampMax int, quota func(gid int) int64, seconds int) (*loop, error) {
	l := &loop{sh: sh, cpu: cpu, pipe: sh.cfg.Pipeline, rampMax: max(1, rampMax), epfd: -1, tfd: -1}
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
	slots := make([]slot, len(gids)*l.pipe)
	for i, g := range gids {
		c := &l.conns[i]
		c.fd, c.idx, c.gid, c.heapPos = -1, int32(i), g, -1
		c.ring = slots[i*l.pipe : (i+1)*l.pipe : (i+1)*l.pipe]
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
	l.buf = make([]byte, 64<<10)
	switch sh.kind {
	case kFile:
		l.files = make([]fileReply, len(gids))
		l.buf = make([]byte, readBufFiles)
	case kHTTP:
		l.https = make([]httpReply, len(gids))
		l.buf = make([]byte, readBufFiles)
	}
	l.st.latency = hdr.New(histMin, histMax, histDigits)
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

func (l *loop) now() int64 { return int64(time.Since(l.sh.base)) }

// close releases every descriptor the loop holds and counts what was in flight.
func (l *loop) close() {
	for i := range l.conns {
		c := &l.conns[i]
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
			l.poll()
		}
	}
	l.st.rampEnd = l.now()
	for i := range l.conns {
		if l.conns[i].state == stOpen {
			l.st.established++
		}
	}
	rampDone <- struct{}{}
	t0 := <-start
	if t0 == 0 {
		return
	}
	l.t0, l.warmEnd = t0, t0+int64(l.sh.cfg.Warmup)
	l.end = l.warmEnd + int64(l.sh.cfg.Duration)
	l.begin()
	for !l.sh.stop.Load() {
		if l.now() >= l.end || (l.limited && l.active == 0) {
			break
		}
		l.poll()
	}
	l.st.stopped = min(l.now(), l.end)
	stopped <- struct{}{}
	<-release
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
		if l.sh.open {
			c.due = l.schedule(c.gid, 0)
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

// poll is one pass: fire due sends, sweep if it is time, wait for readiness (or
// the next deadline), handle what is ready.
func (l *loop) poll() {
	now := l.now()
	l.fireDue(now)
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
	timeout := -1
	if next <= now {
		timeout = 0
	} else if next != l.armed {
		l.arm(next - now)
		l.armed = next
	}
	n, err := unix.EpollWait(l.epfd, l.events, timeout)
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
		ci, ok := l.heap.top()
		if !ok || l.conns[ci].due > now {
			return
		}
		l.heap.pop()
		c := &l.conns[ci]
		if !l.canSend(c) {
			continue // parked: wake puts it back when it can send
		}
		l.sendDue(c, now)
		if l.canSend(c) {
			l.heap.push(ci)
		}
	}
}

// canSend reports whether c can start a request now: in reconnect mode, start a
// cycle; otherwise put one more request on the wire.
func (l *loop) canSend(c *conn) bool {
	if !l.loading || c.quota == 0 {
		return false
	}
	if l.sh.cfg.Reconnect {
		return c.state == stDown && c.retryAt == 0
	}
	return c.state == stOpen && c.n < l.pipe && c.woff == 0
}

// sendDue starts c's scheduled request (open loop) and advances its schedule.
func (l *loop) sendDue(c *conn, now int64) {
	intended := c.due
	c.k++
	c.due = l.schedule(c.gid, c.k)
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
	if l.sh.open {
		if c.heapPos < 0 && l.canSend(c) {
			l.heap.push(c.idx)
		}
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
	fd, err := unix.Socket(l.sh.family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		l.connectFailed(c, connectErrorKind(err), now)
		return
	}
	if l.sh.family != unix.AF_UNIX {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	}
	c.fd = fd
	// Registered once, edge-triggered, for the connection's life: the connect's
	// completion is an EPOLLOUT edge, replies are EPOLLIN edges.
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: c.idx}
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

func (l *loop) established(c *conn, now int64) {
	c.state = stOpen
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
	req := l.sh.reqs[c.wseq%l.sh.rot]
	for c.woff < len(req) {
		n, err := unix.Write(c.fd, req[c.woff:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return true // the EPOLLOUT edge resumes
		case err != nil:
			l.fail(c, ioErrorKind(err), l.now())
			return false
		}
		c.woff += n
	}
	c.woff = 0
	c.wseq++
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
	// EPOLLOUT first: finishing a partial request write lets the reads below be
	// followed by the next send in the same pass.
	if events&unix.EPOLLOUT != 0 && c.woff > 0 {
		if !l.flush(c) {
			return
		}
	}
	if events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		// With the peer's FIN or an error pending, read on to the EOF or the error:
		// a short read would return the last data without reporting either.
		if !l.readAll(c, events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) == 0) {
			return
		}
	}
	if c.state == stOpen && !l.sh.cfg.Reconnect {
		l.wake(c, l.now())
	}
}

// readAll reads until the socket is drained (a short read counts as drained when
// shortDone), verifying and completing replies. It returns false if c was closed.
func (l *loop) readAll(c *conn, shortDone bool) bool {
	for {
		n, err := unix.Read(c.fd, l.buf)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return true
		case err != nil:
			l.fail(c, ioErrorKind(err), l.now())
			return false
		case n == 0:
			l.eof(c)
			return false
		}
		if !l.consume(c, l.buf[:n], l.now()) {
			return false
		}
		if shortDone && n < len(l.buf) {
			// A short read drained the socket; data arriving later is a new edge.
			return true
		}
	}
}

// consume verifies p against the expected replies, completing each one it ends.
// It returns false if c was closed.
func (l *loop) consume(c *conn, p []byte, now int64) bool {
	if l.sh.kind >= kFile {
		return l.parse(c, p, now)
	}
	for len(p) > 0 {
		if c.n == 0 || c.cycleDone {
			l.fail(c, ErrUnexpected, now)
			return false
		}
		want := l.sh.reps[c.rseq%l.sh.rot]
		k := min(len(want)-c.roff, len(p))
		if l.sh.kind == kRPC && c.roff < proto.HeaderLen {
			h := min(proto.HeaderLen-c.roff, k)
			if !bytes.Equal(want[c.roff:c.roff+h], p[:h]) {
				l.fail(c, ErrBadFrame, now)
				return false
			}
		}
		if !bytes.Equal(want[c.roff:c.roff+k], p[:k]) {
			c.bad = true
		}
		c.roff += k
		p = p[k:]
		if c.roff == len(want) {
			l.complete(c, now)
		}
	}
	return true
}

// parse feeds p to c's reply parser (file, http), completing each reply it ends.
// It returns false if c was closed.
func (l *loop) parse(c *conn, p []byte, now int64) bool {
	for len(p) > 0 {
		if c.n == 0 || c.cycleDone {
			l.fail(c, ErrUnexpected, now)
			return false
		}
		var (
			n       int
			v       verdict
			closing bool
		)
		if l.sh.kind == kFile {
			n, v = l.files[c.idx].feed(p, &l.sh.expect)
		} else {
			r := &l.https[c.idx]
			n, v = r.feed(p, &l.sh.expect)
			closing = r.closing
		}
		p = p[n:]
		switch v {
		case vMore:
		case vOK, vWrong:
			c.bad = v == vWrong
			l.complete(c, now)
			if closing && !l.sh.cfg.Reconnect {
				l.serverClosing(c, now)
				return false
			}
		case vBadFrame:
			l.fail(c, ErrBadFrame, now)
			return false
		case vServerError:
			l.fail(c, ErrServerError, now)
			return false
		case vHTTPStatus:
			l.fail(c, ErrHTTPStatus, now)
			return false
		}
	}
	return true
}

// serverClosing handles an http response that announced the server's close
// ("Connection: close"; a server's keep-alive request limit, say). Requests
// pipelined behind it are lost: that is an eof error. Otherwise it is no error:
// close and connect again at once.
func (l *loop) serverClosing(c *conn, now int64) {
	if c.n > 0 {
		l.fail(c, ErrEOF, now)
		return
	}
	l.closeConn(c)
	if l.loading && c.quota != 0 {
		l.connect(c, now)
	} else {
		c.retryAt = now
	}
}

// complete ends the reply at the head of c's ring.
func (l *loop) complete(c *conn, now int64) {
	s := c.ring[c.head]
	c.head++
	if c.head == len(c.ring) {
		c.head = 0
	}
	c.n--
	c.rseq++
	c.roff = 0
	if c.bad {
		c.bad = false
		l.countError(ErrMismatch, now)
	} else {
		l.record(s, now)
	}
	if l.limited && c.quota == 0 && c.n == 0 {
		l.active--
	}
	if l.sh.cfg.Reconnect {
		c.cycleDone = true // the server's close ends the cycle
	}
}

// record adds one correct reply to the histograms and the timeline.
func (l *loop) record(s slot, now int64) {
	if !l.loading {
		return
	}
	lat := clampUS(now - s.intended)
	sec := l.second(now)
	l.st.secReqs[sec]++
	l.st.secHist[sec].RecordValue(lat)
	if now < l.warmEnd {
		return
	}
	l.st.requests++
	l.st.latency.RecordValue(lat)
	if l.sh.open {
		l.st.uncorrected.RecordValue(clampUS(now - s.sent))
		l.st.sendLag.RecordValue(clampUS(s.sent - s.intended))
	}
}

func (l *loop) second(now int64) int {
	sec := int((now - l.t0) / int64(time.Second))
	return min(max(sec, 0), len(l.st.secReqs)-1)
}

// eof handles the server's close of c.
func (l *loop) eof(c *conn) {
	now := l.now()
	if l.sh.cfg.Reconnect && c.cycleDone {
		l.closeConn(c)
		c.retryAt = 0
		l.wake(c, now)
		return
	}
	if c.n > 0 {
		l.fail(c, ErrEOF, now)
	} else {
		l.fail(c, ErrClosedIdle, now)
	}
}

func (l *loop) countError(kind ErrorKind, now int64) {
	l.st.errors[kind]++
	if l.loading {
		l.st.secErrs[l.second(now)]++
	}
}

// fail counts one error, closes c and schedules its reconnect after the backoff.
// The requests it had outstanding are lost with it.
func (l *loop) fail(c *conn, kind ErrorKind, now int64) {
	l.countError(kind, now)
	if l.limited && c.n > 0 && c.quota == 0 {
		l.active--
	}
	l.closeConn(c)
	c.retryAt = now + int64(l.sh.cfg.Backoff)
}

// closeConn closes c's socket and forgets its requests.
func (l *loop) closeConn(c *conn) {
	if c.fd >= 0 {
		unix.Close(c.fd) // closing also removes it from the epoll set
		c.fd = -1
	}
	c.state = stDown
	c.head, c.n, c.woff, c.roff, c.bad, c.cycleDone = 0, 0, 0, 0, false, false
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
			if c.n > 0 && now-c.ring[c.head].sent > timeout {
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

// clampUS converts ns to µs within the histograms' range.
func clampUS(ns int64) int64 {
	return min(max(ns/1000, 0), histMax)
}

package models

// Worker processes: how the process models (fork, procpool, prefork) start children.
//
// Go cannot fork() and keep running Go code in the child: the runtime's other
// threads do not survive fork, so the child could only exec. A "child" here is
// therefore this same binary re-executed — syscall.ForkExec of /proc/self/exe — in
// a worker role named in its environment, with the Config as JSON next to it and the
// descriptors it needs as inherited files (ProcAttr.Files: fd 3, 4, …). The program's
// main (and the models' TestMain) calls RunWorkerIfChild first thing; in such a
// child it runs the role and exits instead of the program. Every process model's
// figures therefore include an exec and a Go runtime start-up per child, which a C
// server's copy-on-write fork() does not pay; the report says so.
//
// Each child is started with PR_SET_PDEATHSIG = SIGKILL, so a parent that dies never
// leaves orphans serving a port. The kernel sends that signal when the *thread* that
// forked exits (go.dev/issue/27505), so the models fork only from their loop thread,
// locked with runtime.LockOSThread for the whole of Serve, which outlives every
// child it starts: all are reaped before Serve returns. (ForkExec also checks,
// after setting the signal, that the parent did not die in between.)
//
// Children are watched through pidfds (clone's CLONE_PIDFD, via SysProcAttr.PidFD),
// not SIGCHLD as in the seed. A pidfd belongs to one child, becomes readable when it
// exits and sits in the same epoll set as the sockets; waitpid on that one pid reaps
// it. SIGCHLD is process-wide, shared with anything else in the process that starts
// processes (os/exec, the other models in a test binary), coalesces, and would need
// a scan of every live pid per signal plus a goroutine to turn it into a wake-up.

import (
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"concbench/internal/proto"
	"concbench/internal/sock"
)

// The environment a re-executed child finds its role and configuration in.
const (
	envRole   = "CONCBENCH_WORKER_ROLE"   // role name; its presence makes a process a worker
	envConfig = "CONCBENCH_WORKER_CONFIG" // Config as JSON
	envArg    = "CONCBENCH_WORKER_ARG"    // role-specific argument
)

// firstFD is the descriptor number of a child's first inherited file (after
// stdin, stdout, stderr).
const firstFD = 3

// Exit statuses of a worker process. 1 and 2 are left to the Go runtime (fatal
// errors, panics) and 66 to the race detector, so a crash is not read as a result.
const (
	exitOK           = 0
	exitProtoError   = 3 // the connection was closed for malformed input
	exitIOError      = 4 // the connection was closed by a read or write error
	exitSetup        = 5 // the worker could not start: bad role, config or descriptors
	exitIdle         = 6 // the connection was closed for idleness (Config.IdleTimeout)
	exitOutputCapped = 7 // the connection was closed for owing too much (Config.MaxOutput)
)

// connStatus is how one connection served by a worker ended. It is also the byte a
// procpool worker writes to say it is free again.
type connStatus byte

const (
	connOK connStatus = iota
	connProtoError
	connIOError
	connIdle         // no byte read or written for Config.IdleTimeout
	connOutputCapped // one Feed's replies above Config.MaxOutput
)

func (s connStatus) exitCode() int {
	switch s {
	case connProtoError:
		return exitProtoError
	case connIOError:
		return exitIOError
	case connIdle:
		return exitIdle
	case connOutputCapped:
		return exitOutputCapped
	}
	return exitOK
}

// exitStatus is the connStatus a fork child's exit code stands for, and false for a
// code that is none (a crash, a setup failure).
func exitStatus(code int) (connStatus, bool) {
	switch code {
	case exitOK:
		return connOK, true
	case exitProtoError:
		return connProtoError, true
	case exitIOError:
		return connIOError, true
	case exitIdle:
		return connIdle, true
	case exitOutputCapped:
		return connOutputCapped, true
	}
	return connOK, false
}

// countEnd adds a finished connection's outcome to st, without closing it there.
func (s connStatus) countEnd(st *Stats) {
	switch s {
	case connProtoError:
		st.protoErrors.Add(1)
	case connIOError:
		st.ioErrors.Add(1)
	case connIdle:
		st.idleClosed.Add(1)
	case connOutputCapped:
		st.outputCapped.Add(1)
	}
}

// count adds a finished connection's outcome to st and counts it closed (it was
// counted as opened when it was handed to the worker).
func (s connStatus) count(st *Stats) {
	s.countEnd(st)
	st.done()
}

// workerRoles maps a role name to what a child of that role runs; each process
// model adds its own in init. A role returns the process's exit status.
var workerRoles = map[string]func(env *Env, arg string) int{}

func registerRole(name string, run func(env *Env, arg string) int) {
	workerRoles[name] = run
}

// RunWorkerIfChild returns at once in an ordinary process. In a child started by a
// process model it runs the child's role and exits the process with the role's
// status; it never returns. Call it first thing in main (and in TestMain), before
// flags are parsed or signals are handled.
func RunWorkerIfChild() {
	role, ok := os.LookupEnv(envRole)
	if !ok {
		return
	}
	os.Exit(runWorker(role, os.Getenv(envConfig), os.Getenv(envArg)))
}

func runWorker(role, cfgJSON, arg string) int {
	logger := log.New(os.Stderr, fmt.Sprintf("%s worker %d: ", role, os.Getpid()), log.LstdFlags)
	run, ok := workerRoles[role]
	if !ok {
		logger.Printf("unknown worker role %q", role)
		return exitSetup
	}
	var cfg Config
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		logger.Printf("config: %v", err)
		return exitSetup
	}
	env, err := NewEnv(cfg, logger)
	if err != nil {
		logger.Print(err)
		return exitSetup
	}
	// SIGINT from a terminal reaches the whole process group; the parent decides
	// when its children stop (it sends SIGTERM), so they ignore it.
	signal.Ignore(syscall.SIGINT)
	return run(env, arg)
}

// proc is a live child process.
type proc struct {
	pid   int
	pidfd int // readable once the child has exited
}

// spawn starts this binary again as a worker of the given role. files become the
// child's descriptors 3, 4, …; the caller keeps (and must close) its own copies.
// spawn must be called from the caller's locked loop thread (see PR_SET_PDEATHSIG
// above).
func spawn(role string, cfg Config, arg string, files ...int) (*proc, error) {
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	env := make([]string, 0, len(os.Environ())+3)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CONCBENCH_WORKER_") {
			env = append(env, kv)
		}
	}
	env = append(env, envRole+"="+role, envConfig+"="+string(cfgJSON), envArg+"="+arg)
	fds := []uintptr{0, 1, 2}
	for _, fd := range files {
		fds = append(fds, uintptr(fd))
	}
	pidfd := -1
	attr := &syscall.ProcAttr{
		Env:   env,
		Files: fds,
		Sys:   &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, PidFD: &pidfd},
	}
	// ForkExec retries EINTR itself; EAGAIN/ENOMEM (out of processes or memory) is
	// the caller's to handle.
	pid, err := syscall.ForkExec("/proc/self/exe", []string{"concbench-" + role}, attr)
	if err != nil {
		return nil, os.NewSyscallError("fork/exec", err)
	}
	if pidfd < 0 {
		// Kernel without CLONE_PIDFD (before 5.2): we cannot watch the child.
		unix.Kill(pid, unix.SIGKILL)
		wait4(pid, 0)
		return nil, errors.New("fork/exec: kernel gave no pidfd (Linux 5.3 or later needed)")
	}
	return &proc{pid: pid, pidfd: pidfd}, nil
}

// signal sends sig to the child; through the pidfd, so a recycled pid is never
// hit. A child that has exited already (and waits to be reaped) is not an error.
func (p *proc) signal(sig unix.Signal) error {
	if err := unix.PidfdSendSignal(p.pidfd, sig, nil, 0); err != nil && err != unix.ESRCH {
		return fmt.Errorf("child %d: %w", p.pid, os.NewSyscallError("pidfd_send_signal", err))
	}
	return nil
}

// reap collects the child's exit status and closes its pidfd. With block false it
// reports ok=false if the child is still running (a spurious pidfd wake-up).
func (p *proc) reap(block bool) (ws unix.WaitStatus, ok bool) {
	opt := unix.WNOHANG
	if block {
		opt = 0
	}
	ws, pid, err := wait4(p.pid, opt)
	if err == nil && pid == 0 {
		return ws, false
	}
	unix.Close(p.pidfd)
	p.pidfd = -1
	return ws, true
}

func wait4(pid, options int) (unix.WaitStatus, int, error) {
	var ws unix.WaitStatus
	for {
		got, err := unix.Wait4(pid, &ws, options, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return ws, got, os.NewSyscallError("wait4", err)
		}
		return ws, got, nil
	}
}

// stopGrace is how long children have to exit after SIGTERM at shutdown before
// they are killed, when Config.Grace is 0 (they do not drain: SIGTERM kills them).
const stopGrace = 5 * time.Second

// childMargin is how much longer than Config.Grace a parent waits for its draining
// children after SIGTERM before it kills them: a child ends what is left of its
// connections at the grace deadline itself (measured from its SIGTERM), and needs
// the margin to exit.
const childMargin = time.Second

// stopWait is how long terminate waits for children to exit after SIGTERM.
func stopWait(grace time.Duration) time.Duration {
	if grace > 0 {
		return grace + childMargin
	}
	return stopGrace
}

// terminate stops children at shutdown: SIGTERM to each, a wait of up to wait for
// all of them, SIGKILL to the rest; every one is reaped (no zombie is left), and
// exited is called with each child's status, in the order they exit.
func terminate(logger *log.Logger, children []*proc, wait time.Duration, exited func(p *proc, ws unix.WaitStatus)) {
	for _, p := range children {
		if err := p.signal(unix.SIGTERM); err != nil {
			logger.Print(err)
		}
	}
	deadline := time.Now().Add(wait)
	live := append([]*proc(nil), children...)
	pfds := make([]unix.PollFd, 0, len(live))
	for len(live) > 0 {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		pfds = pfds[:0]
		for _, p := range live {
			pfds = append(pfds, unix.PollFd{Fd: int32(p.pidfd), Events: unix.POLLIN})
		}
		if _, err := unix.Poll(pfds, int(left.Milliseconds())+1); err != nil && err != unix.EINTR {
			logger.Printf("terminate: %v", os.NewSyscallError("poll", err))
			break
		}
		still := live[:0]
		for i, p := range live {
			if pfds[i].Revents != 0 {
				if ws, ok := p.reap(false); ok {
					exited(p, ws)
					continue
				}
			}
			still = append(still, p)
		}
		live = still
	}
	for _, p := range live {
		logger.Printf("child %d still running %v after SIGTERM: killing it", p.pid, wait)
		if err := p.signal(unix.SIGKILL); err != nil {
			logger.Print(err)
		}
		ws, _ := p.reap(true)
		exited(p, ws)
	}
}

// blockingConn is a connection served with blocking I/O by one thread (thread,
// fork, procpool: serveBlocking), and how another thread tells it to drain
// (Config.Grace) without a race against it.
//
// Not with shutdown(SHUT_RD), though it would wake a thread blocked in read: after
// it Linux's read returns 0 as soon as the receive queue is empty, without waiting
// for the peer's FIN, so the lingering close could no longer tell when the client
// closed its end. Instead the two threads agree through one atomic word. The
// serving thread marks itself busy from the moment a read returned a request until
// its replies are written; drain marks the connection draining and, if it was not
// busy — its thread is in read, or about to be — shuts the write side itself: the
// client reads EOF at once, and the thread, whether a request or the client's close
// wakes it, sees the mark and lingers. If it was busy, the serving thread finds the
// mark when it clears its own and does the same once its replies are written. Each
// side's change is one atomic read-modify-write, so exactly one of them sees the
// other's and acts.
type blockingConn struct {
	fd    int
	state atomic.Uint32

	mu     sync.Mutex // guards closed against drain and cut, which use fd
	closed bool
}

const (
	bcBusy  = 1 << iota // feeding a request or writing its replies
	bcDrain             // draining: no more requests
	bcShut              // the write side is shut down (once: again could fail with ENOTCONN)
	bcCut               // the grace deadline passed: shut down both ways
)

func newBlockingConn(fd int) *blockingConn { return &blockingConn{fd: fd} }

// start marks the connection busy with a request just read, or reports false if it
// is draining (the request is discarded).
func (b *blockingConn) start() bool { return b.state.Or(bcBusy)&bcDrain == 0 }

// finish clears busy once the replies are written and reports whether the
// connection is draining.
func (b *blockingConn) finish() (drain bool) { return b.state.And(^uint32(bcBusy))&bcDrain != 0 }

// drain tells the connection to drain; from any thread, any number of times.
func (b *blockingConn) drain() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if old := b.state.Or(bcDrain); old&(bcBusy|bcDrain) == 0 && !b.closed {
		b.shutWrite()
	}
}

// shutWrite shuts the write side down unless that was done already. An error
// (ENOTCONN: the peer reset) is left to the serving thread's next read to meet.
func (b *blockingConn) shutWrite() {
	if b.state.Or(bcShut)&bcShut == 0 {
		unix.Shutdown(b.fd, unix.SHUT_WR)
	}
}

// cut ends the connection at the grace deadline, or at once at a shutdown without
// one: shutdown(SHUT_RDWR) wakes its thread wherever it is blocked — read returns
// 0, write EPIPE — and the errors that follow are not the peer's fault (ended).
// close(2) would not: on Linux a thread blocked in read or write keeps the open
// file alive until the call returns, and the number could be reused under it.
func (b *blockingConn) cut() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.state.Or(bcDrain | bcCut)
	if !b.closed {
		unix.Shutdown(b.fd, unix.SHUT_RDWR)
	}
}

// close closes the descriptor; the serving thread's last act on it.
func (b *blockingConn) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	unix.Close(b.fd)
}

// ended is st, unless the connection was cut: then its errors were caused by the
// cut, and it ended as it should.
func (b *blockingConn) ended(st connStatus) connStatus {
	if b.state.Load()&bcCut != 0 {
		return connOK
	}
	return st
}

// linger is the end of a draining connection, all its replies written: shut the
// write side (the client reads EOF), then read and discard until the client closes
// its end (read returns 0) — the lingering close, so that input left unread does
// not turn the close into a reset that destroys replies still in flight — or the
// cut, or SO_RCVTIMEO (the idle timeout).
func (b *blockingConn) linger(buf []byte) connStatus {
	b.shutWrite()
	for {
		n, err := sock.Read(b.fd, buf)
		switch {
		case err == unix.EAGAIN:
			return b.ended(connIdle)
		case err != nil:
			return b.ended(connIOError)
		case n == 0:
			return connOK
		}
	}
}

// drainOnSIGTERM makes a worker process (fork, procpool) drain on SIGTERM, the
// parent's signal to stop: drain is called at once, cut grace later. With grace 0
// it does nothing, and SIGTERM kills the process as it always did. stop undoes it.
func drainOnSIGTERM(grace time.Duration, drain, cut func()) (stop func()) {
	if grace <= 0 {
		return func() {}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		select {
		case <-sig:
		case <-done:
			return
		}
		drain()
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
			cut()
		case <-done:
		}
	}()
	return func() {
		signal.Stop(sig)
		close(done)
		<-exited
	}
}

// serveBlocking serves one connection on a blocking descriptor until the peer's end
// of input (everything owed is written by then, since writes are synchronous) or an
// error: read, feed the session, write all it returns. A blocked write stops the
// reading too, which is the back-pressure. buf is the read buffer.
//
// Told to drain (b.drain), it feeds no more input to the session: a request read
// meanwhile is discarded, replies being written are finished, and the connection
// lingers (b.linger) until the client closes it or b.cut.
//
// Config.IdleTimeout is SO_RCVTIMEO and SO_SNDTIMEO on the socket: a read that gets
// no byte, or a write that can send none, for that long fails with EAGAIN (on a
// blocking socket, only a timeout does), and the connection ends as connIdle. A write
// that sent part before the timeout returns the part, and writeOut's next write gets
// a fresh timeout: only time with no byte moving counts. What the blocking models owe
// after a Feed is that Feed's replies (the last ones were written in full), so the
// cap, Config.MaxOutput, is checked on them before they are written.
func serveBlocking(b *blockingConn, env *Env, buf []byte) connStatus {
	fd := b.fd
	if err := setIdleTimeout(fd, env.Config.IdleTimeout); err != nil {
		env.Log.Print(err)
		return connIOError
	}
	maxOut := env.Config.maxOutput()
	sess := env.Proto.NewSession()
	var out proto.Out
	defer out.Reset()
	for {
		n, err := sock.Read(fd, buf)
		if err == unix.EAGAIN {
			return b.ended(connIdle)
		}
		if err != nil {
			return b.ended(connIOError)
		}
		if n == 0 {
			return connOK
		}
		if !b.start() {
			return b.linger(buf) // draining: this input is not a request any more
		}
		ferr := sess.Feed(&out, buf[:n])
		if owed(&out) > maxOut {
			return connOutputCapped
		}
		// Replies of the complete requests before a protocol error are still owed.
		if err := writeOut(fd, &out); err == unix.EAGAIN {
			return b.ended(connIdle)
		} else if err != nil {
			return b.ended(connIOError)
		}
		drain := b.finish()
		switch {
		case errors.Is(ferr, proto.ErrProtocol):
			return connProtoError
		case ferr != nil:
			return connOK // the session ended it (ErrClose), its output written
		case drain:
			return b.linger(buf)
		}
	}
}

// setIdleTimeout sets SO_RCVTIMEO and SO_SNDTIMEO on the blocking socket fd to d
// (at least a microsecond, the options' resolution; 0 leaves them off).
func setIdleTimeout(fd int, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	tv := unix.NsecToTimeval(max(d, time.Microsecond).Nanoseconds())
	for _, opt := range []int{unix.SO_RCVTIMEO, unix.SO_SNDTIMEO} {
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, opt, &tv); err != nil {
			return fmt.Errorf("fd %d: %w", fd, os.NewSyscallError("setsockopt SO_RCVTIMEO/SO_SNDTIMEO", err))
		}
	}
	return nil
}

// memAvailable reads MemAvailable from /proc/meminfo, in bytes.
func memAvailable() (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	return parseMemAvailable(string(b))
}

// parseMemAvailable finds "MemAvailable: N kB" in the text of /proc/meminfo.
func parseMemAvailable(meminfo string) (int64, error) {
	for _, line := range strings.Split(meminfo, "\n") {
		rest, ok := strings.CutPrefix(line, "MemAvailable:")
		if !ok {
			continue
		}
		var kb int64
		if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err != nil {
			return 0, fmt.Errorf("meminfo: %q: %w", line, err)
		}
		return kb << 10, nil
	}
	return 0, errors.New("meminfo: no MemAvailable line")
}

// raiseNofile raises this process's soft RLIMIT_NOFILE to its hard limit. It goes
// through package syscall, which then lets children inherit the raised limit
// (otherwise ForkExec restores the limit the process started with).
func raiseNofile() error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return os.NewSyscallError("getrlimit", err)
	}
	if lim.Cur >= lim.Max {
		return nil
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return os.NewSyscallError("setrlimit", err)
	}
	return nil
}

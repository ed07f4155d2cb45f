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
	"syscall"
	"time"

	"golang.org/x/sys/unix"
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

// describeExit says how a child ended, for logs.
func describeExit(ws unix.WaitStatus) string {
	switch {
	case ws.Signaled():
		return fmt.Sprintf("was killed by %v", ws.Signal())
	case ws.Exited():
		return fmt.Sprintf("exited with status %d", ws.ExitStatus())
	}
	return fmt.Sprintf("ended (wait status %#x)", uint32(ws))
}

// Package supervise runs the processes concbench starts beside itself and must
// stop in order: loadgen's model server and bench's reference peers. It holds one
// way to start a command pinned to CPUs (optionally leading a process group of its
// own), keep its output (a bounded tail, and the first stdout line, where a
// concbench server announces its address), wait until it listens, stop it with
// grace (SIGTERM, a wait, then SIGKILL of it or of its whole group) and report how
// it ended as a result.Exit; and KillGroup, which sweeps whatever is left of a
// process group (bench's runner uses it on loadgen's group too).
package supervise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"concbench/internal/cpuset"
	"concbench/internal/result"
)

// Errors of FirstLine, wrapped with what is known.
var (
	// ErrExited: the process exited before its first line.
	ErrExited = errors.New("exited before its first line")
	// ErrSilent: the process printed no line in time.
	ErrSilent = errors.New("printed no line")
)

// lineSettle is how long FirstLine waits, after the process exited, for a line
// it wrote before.
const lineSettle = 100 * time.Millisecond

// Options say how Start runs a command. The zero value leaves the CPU mask as it
// is, keeps the process in this process's group and keeps its output in the tail
// only.
type Options struct {
	// CPUs pins the process, and every thread and process it creates, to these
	// CPUs from its first instruction; nil leaves this process's mask.
	CPUs []int
	// Group makes the process lead a process group of its own, which Stop and Kill
	// signal as a whole and Stop sweeps after the leader exited; SIGKILL is its
	// parent-death signal. Without Group, whatever the process starts is its own to
	// stop (a concbench server stops its workers).
	Group bool
	// Output receives the process's stderr and its stdout after the first line (the
	// address line, which the caller reports itself), as they come; nil keeps them
	// in the tail only.
	Output io.Writer
	// EarlyExit is Stop's Exit.Error for a process that had exited before Stop was
	// called; "" means "exited before it was stopped".
	EarlyExit string
}

// Process is a command Start started. Its methods may be called from any
// goroutine.
type Process struct {
	cmd     *exec.Cmd
	opts    Options
	out     *output
	outDone chan struct{} // closed when every writer of its output is gone
	exited  chan struct{} // closed once Wait returned
	err     error         // Wait's error, valid once exited is closed
}

// Start starts cmd as Options say. cmd's Stdout and Stderr must be unset: the
// Process reads both.
//
// Pinning: a child inherits the CPU mask of the thread that forks it, so the fork
// happens on a locked thread whose mask is set to the CPUs for the moment of the
// fork (cpuset.StartPinned); no taskset or wrapper is needed.
func Start(cmd *exec.Cmd, o Options) (*Process, error) {
	if cmd.Stdout != nil || cmd.Stderr != nil {
		return nil, fmt.Errorf("start %s: Stdout and Stderr are the supervisor's", cmd.Path)
	}
	p := &Process{cmd: cmd, opts: o, out: newOutput(o.Output), outDone: make(chan struct{}), exited: make(chan struct{})}
	// Pipes of our own rather than io.Writers: exec would make Wait wait for the
	// copy, that is for every process holding the pipe (a worker the leader left
	// behind), while here Wait returns when the leader exits.
	var pipes [2][2]*os.File // [stdout, stderr][read, write]
	for i := range pipes {
		r, w, err := os.Pipe()
		if err != nil {
			closeAll(pipes[:i])
			return nil, err
		}
		pipes[i] = [2]*os.File{r, w}
	}
	cmd.Stdout, cmd.Stderr = pipes[0][1], pipes[1][1]
	if o.Group {
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		// Its own group also keeps a terminal's ^C, sent to this process's group,
		// away from it: the supervisor stops it, in its order. The parent-death
		// signal fires when the thread that forked exits, not the process: the
		// thread StartPinned forks on is unlocked again and stays in the runtime's
		// pool for the life of this process.
		cmd.SysProcAttr.Setpgid, cmd.SysProcAttr.Pdeathsig = true, unix.SIGKILL
	}
	err := cpuset.StartPinned(cmd, o.CPUs)
	pipes[0][1].Close()
	pipes[1][1].Close()
	if err != nil {
		pipes[0][0].Close()
		pipes[1][0].Close()
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	var copies sync.WaitGroup
	for i, w := range []io.Writer{writerFunc(p.out.stdout), writerFunc(p.out.stderr)} {
		copies.Go(func() {
			io.Copy(w, pipes[i][0])
			pipes[i][0].Close()
			if i == 0 {
				p.out.stdoutEnded()
			}
		})
	}
	go func() {
		copies.Wait()
		close(p.outDone)
	}()
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func closeAll(pipes [][2]*os.File) {
	for _, p := range pipes {
		p[0].Close()
		p[1].Close()
	}
}

// PID is the process's pid (its group's id with Options.Group).
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Exited is closed once the process has exited and been waited for.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Alive reports whether the process has not exited.
func (p *Process) Alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Exit is how the process ended, as far as its exit status says (never Clean
// without a Stop); nil while it runs.
func (p *Process) Exit() *result.Exit {
	if p.Alive() {
		return nil
	}
	e := result.ExitOf(p.err)
	e.Clean = false
	return e
}

// Output is the tail of what the process wrote to stdout and stderr (the last
// TailMax bytes).
func (p *Process) Output() string { return p.out.tail.String() }

// FirstLine waits for the first line of the process's stdout, without its line
// end and surrounding space. It fails with ErrExited if the process exits first,
// ErrSilent after timeout, or ctx's error.
func (p *Process) FirstLine(ctx context.Context, timeout time.Duration) (string, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.out.lineDone:
		if line, ok := p.out.firstLine(); ok {
			return line, nil
		}
		// stdout ended without a line: the exit says why, once it is known.
		select {
		case <-p.exited:
		case <-timer.C:
			return "", fmt.Errorf("%w within %v (its stdout is closed)", ErrSilent, timeout)
		case <-ctx.Done():
			return "", ctx.Err()
		}
	case <-p.exited:
		// A line written just before the exit is in the pipe, a moment from being
		// copied; not longer, as a child may hold the pipe open and never write.
		select {
		case <-p.out.lineDone:
			if line, ok := p.out.firstLine(); ok {
				return line, nil
			}
		case <-time.After(lineSettle):
		}
	case <-timer.C:
		return "", fmt.Errorf("%w within %v", ErrSilent, timeout)
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return "", fmt.Errorf("%w (%s)", ErrExited, Describe(p.Exit()))
}

// Listening waits for the first line of a concbench server (or of a peer that
// speaks as one): "listening on HOST:PORT", and returns HOST:PORT (or
// unix:PATH). Its errors say what happened instead: the exit, the silence, a
// first line of another form, or ctx's error.
func (p *Process) Listening(ctx context.Context, timeout time.Duration) (string, error) {
	line, err := p.FirstLine(ctx, timeout)
	switch {
	case errors.Is(err, ErrExited):
		return "", fmt.Errorf("exited before listening (%s)", Describe(p.Exit()))
	case errors.Is(err, ErrSilent):
		return "", fmt.Errorf("did not print its address within %v", timeout)
	case err != nil:
		return "", err
	}
	addr, ok := strings.CutPrefix(line, "listening on ")
	if !ok {
		return "", fmt.Errorf("its first line %q is not \"listening on HOST:PORT\"", line)
	}
	return addr, nil
}

// WaitAccept waits until addr accepts a TCP connection, the process exits, ctx
// ends or timeout passes, for a server that cannot say when it listens (nginx).
func (p *Process) WaitAccept(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if !p.Alive() {
			return fmt.Errorf("exited before accepting connections (%s)", Describe(p.Exit()))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not accepting connections on %s after %v: %v", addr, timeout, err)
		}
		// A refused connect returns at once: a short pause between attempts, cut
		// short by the exit or ctx.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.exited:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stop ends the process: SIGTERM, then past grace SIGKILL (to its whole group
// with Options.Group); with a group, anything of it still alive after the leader
// exited is killed too. The exit is clean only if the process exited 0 after
// SIGTERM, in time, leaving nothing of its group behind. Stop waits (up to 1 s)
// for the output of the group to end, so Output holds its last words.
//
// Called once the process has exited by itself — a second Stop included — it
// returns that exit, not clean, with Options.EarlyExit as its error.
func (p *Process) Stop(grace time.Duration) *result.Exit {
	var e *result.Exit
	if !p.Alive() {
		e = p.Exit()
		e.Error = p.opts.EarlyExit
		if e.Error == "" {
			e.Error = "exited before it was stopped"
		}
	} else if err := unix.Kill(p.PID(), unix.SIGTERM); err != nil {
		p.Kill()
		e = &result.Exit{Code: -1, Error: "SIGTERM: " + os.NewSyscallError("kill", err).Error()}
	} else {
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case <-p.exited:
			e = result.ExitOf(p.err)
			if !e.Clean {
				e.Error = "unclean exit after SIGTERM"
			}
		case <-timer.C:
			p.Kill()
			what := "killed"
			if p.opts.Group {
				what = "its process group was killed"
			}
			e = &result.Exit{Code: -1, Signal: "killed", Error: fmt.Sprintf("still running %v after SIGTERM: %s", grace, what)}
		}
	}
	if p.opts.Group && KillGroup(p.PID()) {
		e.Clean = false
		e.Error = strings.TrimPrefix(e.Error+"; processes of its group outlived it and were killed", "; ")
	}
	// The pipes are at their end once what is in them is read and their last
	// holder is gone.
	select {
	case <-p.outDone:
	case <-time.After(time.Second):
	}
	return e
}

// Kill SIGKILLs the process (its whole group with Options.Group) and waits until
// it has exited.
func (p *Process) Kill() {
	if p.opts.Group {
		KillGroup(p.PID())
	} else {
		p.cmd.Process.Kill()
	}
	<-p.exited
}

// Describe says how a process ended, as Go's exec says it: "exit status 3",
// "signal: killed", or the error that stood for its status.
func Describe(e *result.Exit) string {
	switch {
	case e.Signal != "":
		return "signal: " + e.Signal
	case e.Error != "":
		return e.Error
	}
	return fmt.Sprintf("exit status %d", e.Code)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

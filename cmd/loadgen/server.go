package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"concbench/internal/cpuset"
	"concbench/internal/result"
)

// serverProc is a server binary loadgen started.
type serverProc struct {
	cmd    *exec.Cmd
	addr   string
	exited chan struct{} // closed when the process has been waited for
	err    error         // Wait's error, valid once exited is closed
}

// findServer locates the server binary: the flag, else `server` beside this executable.
func findServer(flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	p := filepath.Join(filepath.Dir(self), "server")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no server binary beside loadgen (%s): build it (make build) or give -server-bin", p)
	}
	return p, nil
}

// startServer starts bin with args pinned to cpus and waits for its
// "listening on HOST:PORT" line.
//
// Pinning: a child inherits the CPU mask of the thread that forks it, so the fork
// happens on a locked thread whose mask is set to the server's CPUs for the moment
// of the fork. The server is pinned from its first instruction, with every thread
// and process it creates; no taskset or wrapper is needed.
func startServer(bin string, args []string, cpus []int, wait time.Duration) (*serverProc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cpuset.StartPinned(cmd, cpus); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	s := &serverProc{cmd: cmd, exited: make(chan struct{})}
	lines := make(chan string, 1)
	go func() {
		r := bufio.NewReader(out)
		line, _ := r.ReadString('\n')
		lines <- line
		io.Copy(os.Stderr, r) // keep draining so the server never blocks on stdout
	}()
	go func() {
		s.err = cmd.Wait()
		close(s.exited)
	}()
	select {
	case line := <-lines:
		addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
		if !ok {
			s.kill()
			return nil, fmt.Errorf("server's first line %q is not \"listening on HOST:PORT\"", strings.TrimSpace(line))
		}
		s.addr = addr
		return s, nil
	case <-time.After(wait):
		s.kill()
		return nil, fmt.Errorf("server did not print its address within %v", wait)
	}
}

func (s *serverProc) pid() int { return s.cmd.Process.Pid }

// alive reports whether the server has not exited.
func (s *serverProc) alive() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

func (s *serverProc) kill() {
	s.cmd.Process.Kill()
	<-s.exited
}

// stop sends SIGTERM and waits up to grace for a clean exit (status 0); past the
// grace the server is killed and the exit is not clean.
func (s *serverProc) stop(grace time.Duration) *result.Exit {
	if !s.alive() {
		e := result.ExitOf(s.err)
		e.Clean = false
		e.Error = "the server exited before loadgen stopped it"
		return e
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return &result.Exit{Code: -1, Error: "SIGTERM: " + err.Error()}
	}
	select {
	case <-s.exited:
		e := result.ExitOf(s.err)
		if !e.Clean {
			e.Error = "unclean exit after SIGTERM"
		}
		return e
	case <-time.After(grace):
		s.kill()
		return &result.Exit{Code: -1, Signal: "killed", Error: fmt.Sprintf("still running %v after SIGTERM: killed", grace)}
	}
}

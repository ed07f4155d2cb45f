package trial

// The server of a trial: the one Run starts for a model, through package
// supervise, and the watch that ends the load when a server (started or
// external) exits mid-run.

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"concbench/internal/supervise"
)

// findServer locates the server binary: the one given, else `server` beside this
// executable.
func findServer(bin string) (string, error) {
	if bin != "" {
		return bin, nil
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
// "listening on HOST:PORT" line; on error nothing of it is left running. The
// server stays in this process's group: bench, which leads that group, sweeps it
// (and the server's workers) if this process fails to stop them.
func startServer(ctx context.Context, bin string, args []string, cpus []int, log io.Writer, cgroupFD int) (*supervise.Process, string, error) {
	cmd := exec.Command(bin, args...)
	if cgroupFD >= 0 {
		// Born in the cgroup its kernel counts are read from, with every thread
		// and process it will make (clone3 CLONE_INTO_CGROUP).
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgroupFD}
	}
	srv, err := supervise.Start(cmd, supervise.Options{
		CPUs: cpus, Output: log, EarlyExit: "the server exited before loadgen stopped it"})
	if err != nil {
		return nil, "", err
	}
	addr, err := srv.Listening(ctx, serverGrace)
	if err != nil {
		// Stop also waits for the server's last words: a refusal says why.
		exit := srv.Stop(0)
		err = fmt.Errorf("starting the server: %w", err)
		if said := lastLine(srv.Output()); said != "" {
			err = fmt.Errorf("%w; it said: %s", err, said)
		}
		if exit.Code == 2 {
			// A concbench server exits 2 on what it refuses before serving (a
			// usage error, a model that does not serve the protocol, a kernel
			// that refuses io_uring): no retry would do better.
			err = fmt.Errorf("%w: %w", ErrImpossible, err)
		}
		return nil, "", err
	}
	return srv, addr, nil
}

// lastLine is the last line of out that is not blank, trimmed.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// watchServer watches the server loadgen started (srv) or the external server
// pid, from now until ctx is done, and calls stop if it exits meanwhile. died, to
// be called once ctx is done, waits for the watch to end and says whether the
// server exited during it, and when.
func watchServer(ctx context.Context, srv *supervise.Process, pid int, stop func()) (since time.Time, died func() (bool, time.Time)) {
	since = time.Now()
	var (
		exited bool
		at     time.Time
	)
	done := make(chan struct{})
	record := func() { exited, at = true, time.Now(); stop() }
	switch {
	case srv != nil:
		go func() {
			defer close(done)
			select {
			case <-srv.Exited():
				record()
			case <-ctx.Done():
			}
		}()
	case pid != 0:
		pidfd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			close(done) // cannot watch it: the sampler still notices it gone
			break
		}
		go func() {
			defer close(done)
			defer unix.Close(pidfd)
			fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
			for ctx.Err() == nil {
				if n, err := unix.Poll(fds, 100); err == nil && n > 0 {
					record()
					return
				}
			}
		}()
	default:
		close(done)
	}
	return since, func() (bool, time.Time) {
		<-done
		return exited, at
	}
}

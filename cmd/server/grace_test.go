package main

// The graceful shutdown of the server binary (-grace): on SIGTERM it drains its
// connections, exits 0 by the deadline, and leaves no worker process behind.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"concbench/internal/procstat"
	"concbench/internal/proto"
	"concbench/models"
)

// TestGraceSIGTERM runs every model with -grace 2s and two rpc clients that wrote
// more requests than the server would read without them reading replies, so that
// it owes them output: one reads after the SIGTERM, the other never reads and
// never closes. The first must get every reply owed — whole frames, a prefix of
// the expected stream — then EOF, not a reset; the server must exit 0 at the
// deadline (the second client holds it that long), not much later; and a process
// model must leave none of its children behind, running or unreaped: this test
// process makes itself the child subreaper, so what the server leaves at its exit
// becomes this process's child (an unreaped child as a zombie) and is found.
// Under -short it runs a subset of the models (see below).
func TestGraceSIGTERM(t *testing.T) {
	const grace = 2 * time.Second
	bin := build(t)
	req, want := graceStream(24 << 20)
	// Not parallel with other tests: subreap is process-wide, and a subreaper
	// would collect the orphans of other tests' servers. The models run in
	// parallel with each other, each with its own server and clients.
	subreap(t)
	names := models.Names()
	if testing.Short() {
		// -short: one model of each kind — the net baseline, an event loop, a
		// thread per connection — and every process model, whose children are
		// this binary re-executed and must not be left behind: one round of
		// serverSlots. The drain itself is checked for every model in process
		// by the models package (TestGraceOwed, TestGraceDeadline); what this
		// test adds for the others is main's SIGTERM handling, the same code.
		names = []string{"goroutine", "epoll-et", "thread", "fork", "procpool", "prefork"}
	}
	for _, model := range names {
		t.Run(model, func(t *testing.T) {
			parallelServer(t)
			args := []string{"-proto", "rpc", "-grace", grace.String()}
			if model == "procpool" || model == "prefork" {
				args = append(args, "-workers", "2")
			}
			srv := startBinary(t, bin, model, args...)
			var kids []int // the server's children while it served
			defer func() { leftBehind(t, srv, kids) }()

			owing, stuck := graceFlood(t, srv.addr, req), graceFlood(t, srv.addr, req)
			sent := owing.sent
			kids = graceChildren(t, srv.cmd.Process.Pid)
			if processModel(model) && len(kids) == 0 {
				t.Fatalf("no child process of the server %d while serving", srv.cmd.Process.Pid)
			}

			// t0 is read before the signal is sent, so that a stall of this test
			// between the two (the race detector, parallel servers on two cores)
			// cannot make the server look early: the server's deadline starts when
			// it sees the signal, never before t0.
			t0 := time.Now()
			if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			owing.c.SetReadDeadline(time.Now().Add(grace + 5*time.Second))
			// Errorf, not Fatalf, until the server has exited: how it exits and
			// what it leaves behind are checked whatever the client got.
			got, err := io.ReadAll(owing.c)
			switch {
			case err != nil:
				t.Errorf("read after SIGTERM: %v after %d bytes; want every owed reply, then EOF", err, len(got))
			case len(got) > sent || !bytes.Equal(got, want[:len(got)]):
				t.Errorf("the %d bytes of replies to %d bytes of requests are not a prefix of the expected replies", len(got), sent)
			case len(got) == 0 || graceFrameEnd(want, len(got)) != len(got):
				t.Errorf("got %d bytes of replies, the frame in progress ending at %d: want whole frames, at least one", len(got), graceFrameEnd(want, len(got)))
			}
			owing.c.Close()

			const late = 3 * time.Second // the process models' parent waits grace + 1s before SIGKILL
			exited, err := srv.wait(grace + late + 5*time.Second)
			if !exited {
				t.Fatalf("still running %v after SIGTERM", time.Since(t0).Round(time.Millisecond))
			}
			after := time.Since(t0)
			if err != nil {
				t.Errorf("after SIGTERM: %v, want exit 0", err)
			}
			if after < grace-200*time.Millisecond || after > grace+late {
				t.Errorf("exited %v after SIGTERM, want at the %v deadline (a client held it open), at most %v later", after.Round(time.Millisecond), grace, late)
			}
			t.Logf("the client got %d KiB of replies to %d KiB of requests; the server exited (%v) %v after SIGTERM; %d child processes before",
				len(got)>>10, sent>>10, err, after.Round(time.Millisecond), len(kids))
			stuck.c.Close()
		})
	}
}

func processModel(model string) bool {
	return model == "fork" || model == "procpool" || model == "prefork"
}

// graceClient is a client connection that wrote requests without reading.
type graceClient struct {
	c    net.Conn
	sent int
}

// graceFlood dials addr and writes req until the server stops reading it (writes
// stall for 1s: back-pressure), without reading.
func graceFlood(t *testing.T, addr string, req []byte) graceClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetWriteDeadline(time.Now().Add(time.Second))
	n, err := c.Write(req)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write: %d bytes, %v; want the server to stop reading (back-pressure)", n, err)
	}
	return graceClient{c, n}
}

// graceStream is an rpc request stream of random frames up to 64 KiB, about total
// bytes, and the replies to it.
func graceStream(total int) (req, want []byte) {
	rng := rand.New(rand.NewPCG(51, 52))
	for len(req) < total {
		p := make([]byte, rng.IntN(64<<10+1))
		for i := 0; i < len(p); i += 8 {
			x := rng.Uint64()
			for j := i; j < min(i+8, len(p)); j++ {
				p[j] = ' ' + byte(x%95) // printable ASCII: upper-casing maps a-z only
				x >>= 8
			}
		}
		req = proto.AppendFrame(req, p)
		want = proto.AppendFrame(want, bytes.ToUpper(p))
	}
	return req, want
}

// graceFrameEnd is the offset of the end of the rpc frame that contains offset n
// (n itself at a frame boundary).
func graceFrameEnd(stream []byte, n int) int {
	off := 0
	for off < n {
		off += proto.HeaderLen + int(binary.BigEndian.Uint32(stream[off:]))
	}
	return off
}

// graceChildren lists the children of pid.
func graceChildren(t *testing.T, pid int) []int {
	t.Helper()
	paths, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var kids []int
	for _, p := range paths {
		child, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil {
			continue
		}
		if st, err := graceStat(child); err == nil && st.PPID == pid {
			kids = append(kids, child)
		}
	}
	return kids
}

func graceStat(pid int) (procstat.Stat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procstat.Stat{}, err
	}
	return procstat.ParseStat(b)
}

// TestGraceStuckChild: a process model's child that does not end by itself when
// told to (here it is stopped with SIGSTOP, so SIGTERM cannot reach it) is killed
// by its parent once grace + 1 s has passed, and reaped; the server still exits 0
// by then and leaves no process behind.
func TestGraceStuckChild(t *testing.T) {
	const grace = time.Second
	bin := build(t)
	subreap(t) // so not parallel with other tests: see TestGraceSIGTERM
	for _, model := range []string{"fork", "procpool", "prefork"} {
		t.Run(model, func(t *testing.T) {
			parallelServer(t)
			srv := startBinary(t, bin, model, "-proto", "rpc", "-grace", grace.String())
			var kids []int
			defer func() { leftBehind(t, srv, kids) }()
			// One round trip: the connection is in a child's hands.
			c, err := net.DialTimeout("tcp", srv.addr, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(proto.AppendFrame(nil, []byte("ping"))); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, make([]byte, proto.HeaderLen+4)); err != nil {
				t.Fatal(err)
			}
			kids = graceChildren(t, srv.cmd.Process.Pid)
			if len(kids) == 0 {
				t.Fatalf("no child process of the server %d while serving", srv.cmd.Process.Pid)
			}
			for _, pid := range kids {
				if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
					t.Fatal(err)
				}
			}
			t0 := time.Now() // before the signal, as in TestGraceSIGTERM
			if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			exited, err := srv.wait(grace + 10*time.Second)
			if !exited {
				t.Fatalf("still running %v after SIGTERM, its children stopped", time.Since(t0).Round(time.Millisecond))
			}
			after := time.Since(t0)
			if err != nil {
				t.Errorf("after SIGTERM: %v, want exit 0", err)
			}
			// The parent gives its children grace + 1 s, then kills them.
			if after < grace+time.Second-200*time.Millisecond || after > grace+time.Second+3*time.Second {
				t.Errorf("exited %v after SIGTERM, want just after grace + 1 s (%v)", after.Round(time.Millisecond), grace+time.Second)
			}
			if !strings.Contains(srv.log(), "after SIGTERM: killing it") {
				t.Errorf("the server does not say it killed its stuck child:\n%s", srv.log())
			}
			t.Logf("%d stopped children; the server exited (%v) %v after SIGTERM", len(kids), err, after.Round(time.Millisecond))
		})
	}
}

// subreap makes this test process the child subreaper until the test ends: what
// a server leaves behind at its exit becomes this process's child.
func subreap(t *testing.T) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(os.NewSyscallError("prctl PR_SET_CHILD_SUBREAPER", err))
	}
	t.Cleanup(func() { unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })
}

// leftBehind ends srv if it still runs, then kills and reaps whichever of kids (the
// server's children while it served) is now this process's child (see subreap):
// an error if the server had exited by itself (killed here, its children die of
// their parent-death signal and are only reaped).
func leftBehind(t *testing.T, srv *binServer, kids []int) {
	t.Helper()
	exitedSelf := srv.exited
	srv.kill()
	for _, pid := range kids {
		st, err := graceStat(pid)
		if err != nil || st.PPID != os.Getpid() {
			continue // gone
		}
		syscall.Kill(pid, syscall.SIGKILL)
		var ws unix.WaitStatus
		unix.Wait4(pid, &ws, 0, nil)
		if exitedSelf {
			t.Errorf("child %d of the server left behind (state %c)", pid, st.State)
		}
	}
}

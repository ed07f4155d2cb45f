package models

// goroutine: Go's net package, one goroutine per connection, blocking-style code —
// the baseline a Go programmer would write (net/http's shape). Under the hood the
// runtime's netpoller multiplexes every socket onto one edge-triggered epoll and
// parks goroutines, and GOMAXPROCS threads run them.
//
// Where it comes from: Go (2009); the same idea as Erlang processes and Java's
// virtual threads: write thread-per-connection code, pay event-loop prices.
//
// Strengths: simple code; uses every core; a blocking handler (-work sleep:…)
// parks only its own goroutine. Limits: a goroutine stack (≥ 8 KiB) and a read
// buffer per connection; scheduler and GC overheads that a hand-written loop avoids.
//
// Config.IdleTimeout is net.Conn's deadlines, as a Go server sets them: a read
// deadline before each Read, a write deadline before each write call; one that
// passes closes the connection (counted in idle_closed). A write call covers a whole
// reply, so a reply trickling out for longer than the timeout counts as idle too.

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"concbench/internal/proto"
	"concbench/internal/sock"
)

func init() {
	Register("goroutine", "Go net package, goroutine per connection: simple, all cores; runtime overheads",
		func() Model { return goroutineModel{} })
}

var _ Model = goroutineModel{}

type goroutineModel struct{}

func (goroutineModel) Serve(ctx context.Context, ln *sock.Listener, env *Env) error {
	// net.FileListener takes its own duplicate of the descriptor; ours is closed
	// right after, and closing the net.Listener closes the duplicate only.
	dup, err := unix.FcntlInt(uintptr(ln.FD), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("fcntl F_DUPFD_CLOEXEC", err)
	}
	f := os.NewFile(uintptr(dup), "listener")
	nl, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return err
	}
	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		wg    sync.WaitGroup
	)
	stop := context.AfterFunc(ctx, func() {
		nl.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	defer stop()
	defer wg.Wait()
	for {
		c, err := nl.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// The runtime already retries EINTR/ECONNABORTED and backs off nothing
			// for EMFILE, so do it here as net/http does.
			if sock.IsFDLimit(err) {
				env.Stats.acceptPauses.Add(1)
				sleepCtx(ctx, acceptPause)
				continue
			}
			nl.Close()
			return err
		}
		mu.Lock()
		if ctx.Err() != nil { // shutdown raced with this accept
			mu.Unlock()
			c.Close()
			continue
		}
		conns[c] = struct{}{}
		mu.Unlock()
		env.Stats.opened()
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveConn(c, env)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			c.Close()
			env.Stats.done()
		}()
	}
}

// serveConn reads, feeds the session, writes what it returns, until end of input
// (then everything owed is already written, since writes are synchronous) or an
// error. A blocked write blocks the reading too: back-pressure for free. A read or
// write that sees no byte move for Config.IdleTimeout ends the connection, and so do
// replies above Config.MaxOutput.
func serveConn(c net.Conn, env *Env) {
	sess := env.Proto.NewSession()
	buf := make([]byte, env.Config.readBuf())
	idle, maxOut := env.Config.IdleTimeout, env.Config.maxOutput()
	var out proto.Out
	defer out.Reset()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		env.Log.Print(err)
		return
	}
	for {
		if idle > 0 {
			c.SetReadDeadline(time.Now().Add(idle))
		}
		n, err := c.Read(buf)
		if n > 0 {
			ferr := sess.Feed(&out, buf[:n])
			if owed(&out) > maxOut {
				env.Stats.outputCapped.Add(1)
				return
			}
			if werr := writeOutConn(c, rc, &out, idle); werr != nil {
				if errors.Is(werr, os.ErrDeadlineExceeded) {
					env.Stats.idleClosed.Add(1)
				} else {
					env.Stats.ioErrors.Add(1)
				}
				return
			}
			if ferr != nil {
				feedEnd(env.Stats, ferr) // its output is written either way
				return
			}
		}
		if err != nil {
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded):
				env.Stats.idleClosed.Add(1)
			case !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed):
				env.Stats.ioErrors.Add(1)
			}
			return
		}
	}
}

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
// A graceful shutdown (Config.Grace) is a flag and a read deadline of now, which
// wakes a goroutine blocked in Read; it then closes its write side (CloseWrite) and
// reads to discard until its client closes or the drain's deadline (lingerConn).
//
// Datagrams (udp-echo): what a Go programmer writes — a net.UDPConn over the
// socket, and one goroutine per P (GOMAXPROCS) reading from it and answering
// each datagram itself (ReadMsgUDPAddrPort, WriteToUDPAddrPort). There is no
// connection to give a goroutine, and a goroutine per datagram would cost a
// spawn per request for nothing: the readers are the concurrency. With
// Config.Batch above 1 they read and write through golang.org/x/net's
// ipv4/ipv6 PacketConn (ReadBatch, WriteBatch: recvmmsg and sendmmsg through
// the runtime's netpoller). A reply the socket cannot take now parks its
// goroutine until the socket is writable (the net package's write path):
// unlike the loops, which would stop every peer, a parked reader costs the
// others nothing. Closing the UDPConn wakes the readers to stop.

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

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
	g := &gServer{conns: map[*gConn]struct{}{}}
	// Closing the listener wakes Accept: that is how Serve learns of ctx.
	stop := context.AfterFunc(ctx, func() { nl.Close() })
	defer stop()
	for {
		c, err := nl.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			// The runtime already retries EINTR/ECONNABORTED and backs off nothing
			// for EMFILE, so do it here as net/http does.
			if sock.IsFDLimit(err) {
				env.Stats.acceptPauses.Add(1)
				sleepCtx(ctx, acceptPause)
				continue
			}
			nl.Close()
			g.closeAll()
			g.wg.Wait()
			return err
		}
		gc := &gConn{Conn: c}
		g.mu.Lock()
		g.conns[gc] = struct{}{}
		g.mu.Unlock()
		env.Stats.opened()
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			serveConn(gc, env)
			g.mu.Lock()
			delete(g.conns, gc)
			g.mu.Unlock()
			gc.Close()
			env.Stats.done()
		}()
	}
	// Accepting has stopped; every connection accepted is in g.conns.
	if grace := env.Config.Grace; grace > 0 {
		g.drain(grace)
	}
	g.closeAll()
	g.wg.Wait()
	return nil
}

// gServer is Serve's view of its connections.
type gServer struct {
	mu    sync.Mutex // guards conns
	conns map[*gConn]struct{}
	wg    sync.WaitGroup
}

// gConn is one connection and its drain state.
type gConn struct {
	net.Conn
	draining atomic.Bool
	end      time.Time // the drain's deadline; written before draining is set
}

// drain is the graceful shutdown (Config.Grace): every connection is marked
// draining and its read deadline set to now, which wakes a goroutine blocked in
// Read; one writing replies finishes them first. Each goroutine then lingers
// (serveConn) until its client closes or the deadline. drain returns when every
// goroutine has, or at the deadline.
func (g *gServer) drain(grace time.Duration) {
	end := time.Now().Add(grace)
	g.mu.Lock()
	for c := range g.conns {
		c.end = end
		c.draining.Store(true)
		c.SetReadDeadline(time.Now())
	}
	g.mu.Unlock()
	done := make(chan struct{})
	go func() {
		g.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(time.Until(end))
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// closeAll closes every connection left, which ends its goroutine's Read or Write
// with net.ErrClosed.
func (g *gServer) closeAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for c := range g.conns {
		c.Close()
	}
}

// serveConn reads, feeds the session, writes what it returns, until end of input
// (then everything owed is already written, since writes are synchronous) or an
// error. A blocked write blocks the reading too: back-pressure for free. A read or
// write that sees no byte move for Config.IdleTimeout ends the connection, and so do
// replies above Config.MaxOutput. Once the connection is draining it takes no more
// requests (what a read returns then is discarded) and lingers (lingerConn).
func serveConn(g *gConn, env *Env) {
	c := g.Conn
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
		// Checked after the deadline is set and again after the read: drain sets
		// the flag before the deadline that wakes the read, so a read that the
		// first check lets start is woken.
		if g.draining.Load() {
			lingerConn(g, buf, env)
			return
		}
		n, err := c.Read(buf)
		if g.draining.Load() {
			lingerConn(g, buf, env)
			return
		}
		if n > 0 {
			ferr := sess.Feed(&out, buf[:n])
			if owed(&out) > maxOut {
				env.Stats.outputCapped.Add(1)
				return
			}
			if werr := writeOutConn(c, rc, &out, idle); werr != nil {
				switch {
				case errors.Is(werr, os.ErrDeadlineExceeded):
					env.Stats.idleClosed.Add(1)
				case !errors.Is(werr, net.ErrClosed): // closed by Serve at shutdown
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

// lingerConn ends a draining connection, everything owed written: shut the write
// side (the client reads EOF), then read and discard until the client closes its
// end — the lingering close, so that input left unread does not turn the close into
// a reset that destroys replies still in flight — or the drain's deadline (the read
// deadline) or the idle timeout passes, or Serve closes the connection.
func lingerConn(g *gConn, buf []byte, env *Env) {
	c, idle := g.Conn, env.Config.IdleTimeout
	if hc, ok := c.(interface{ CloseWrite() error }); ok {
		hc.CloseWrite() // an error (the peer reset) is the next read's to meet
	}
	for {
		d := g.end
		if idle > 0 && time.Now().Add(idle).Before(d) {
			d = time.Now().Add(idle)
		}
		c.SetReadDeadline(d)
		if _, err := c.Read(buf); err != nil {
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded):
				if time.Now().Before(g.end) {
					env.Stats.idleClosed.Add(1)
				}
			case !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed):
				env.Stats.ioErrors.Add(1)
			}
			return
		}
	}
}

// sleepCtx sleeps for d or until ctx is cancelled.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// ServeDatagrams: see the file's comment.
func (goroutineModel) ServeDatagrams(ctx context.Context, ds *sock.Listener, env *Env) error {
	// net.FilePacketConn takes its own duplicate, as FileListener does.
	dup, err := unix.FcntlInt(uintptr(ds.FD), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("fcntl F_DUPFD_CLOEXEC", err)
	}
	f := os.NewFile(uintptr(dup), "datagrams")
	pc, err := net.FilePacketConn(f)
	f.Close()
	if err != nil {
		return err
	}
	uc := pc.(*net.UDPConn)
	defer uc.Close()
	defer rcvbufDropsGauge(env, ds.FD)()
	stop := context.AfterFunc(ctx, func() { uc.Close() })
	defer stop()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		first  error
		logged atomic.Bool
	)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			g := gDgram{uc: uc, env: env, proto: env.Proto.(proto.Datagram), logged: &logged}
			var err error
			if env.Config.batch() > 1 {
				err = g.serveBatches()
			} else {
				err = g.serve()
			}
			if err != nil && ctx.Err() == nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
				uc.Close() // stop the other readers: the socket failed
			}
		})
	}
	wg.Wait()
	return first
}

// gDgram is one reader goroutine of ServeDatagrams.
type gDgram struct {
	uc     *net.UDPConn
	env    *Env
	proto  proto.Datagram
	logged *atomic.Bool
}

// serve reads and answers one datagram a call until the socket is closed.
func (g gDgram) serve() error {
	buf := make([]byte, g.env.Config.maxDatagram())
	st := g.env.Stats
	for {
		n, _, flags, from, err := g.uc.ReadMsgUDPAddrPort(buf, nil)
		if err != nil {
			return err
		}
		st.dgramIn.Add(1)
		if flags&unix.MSG_TRUNC != 0 {
			st.dropOversize.Add(1)
			continue
		}
		if _, err := g.uc.WriteToUDPAddrPort(g.proto.Reply(buf[:n]), from); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			g.sendError(err, 1)
			continue
		}
		st.dgramOut.Add(1)
	}
}

// batchConn is x/net's ipv4.PacketConn or ipv6.PacketConn (their Message is
// one type).
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// serveBatches reads up to Config.Batch datagrams a call and writes their
// replies in as few calls, until the socket is closed.
func (g gDgram) serveBatches() error {
	var bc batchConn = ipv4.NewPacketConn(g.uc)
	if a, ok := g.uc.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() == nil {
		bc = ipv6.NewPacketConn(g.uc)
	}
	batch, size := g.env.Config.batch(), g.env.Config.maxDatagram()
	in := make([]ipv4.Message, batch)
	out := make([]ipv4.Message, batch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, size)}
		out[i].Buffers = make([][]byte, 1)
	}
	st := g.env.Stats
	for {
		n, err := bc.ReadBatch(in, 0)
		if err != nil {
			return err
		}
		st.dgramIn.Add(int64(n))
		k := 0
		for _, m := range in[:n] {
			if m.Flags&unix.MSG_TRUNC != 0 {
				st.dropOversize.Add(1)
				continue
			}
			out[k].Buffers[0] = g.proto.Reply(m.Buffers[0][:m.N])
			out[k].Addr = m.Addr
			k++
		}
		for sent := 0; sent < k; {
			w, err := bc.WriteBatch(out[sent:k], 0)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return err
				}
				g.sendError(err, 1) // the first not sent: drop it, send the rest
				w = 1
			} else {
				st.dgramOut.Add(int64(w))
			}
			sent += w
		}
	}
}

// sendError counts n replies dropped for err, logging the first such error.
func (g gDgram) sendError(err error, n int) {
	g.env.Stats.dropSendError.Add(int64(n))
	if g.logged.CompareAndSwap(false, true) {
		g.env.Log.Printf("goroutine: datagram reply: %v (dropped; logged once, counted in dropped_send_error)", err)
	}
}

package models_test

// The idle timeout and the output cap, over every registered model: a connection
// with no byte moving for Config.IdleTimeout is closed and counted in idle_closed,
// whether it is silent or stopped reading its replies, while one that keeps talking
// stays; a connection owing more than Config.MaxOutput is closed and counted in
// output_capped, and its neighbours do not notice.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"concbench/internal/proto"
	"concbench/models"
)

// readResult is how a read on a connection the server should close ended.
type readResult struct {
	n     int
	err   error
	after time.Duration // since the connection was dialled
}

// awaitClose reads one byte from c in the background; the result arrives once the
// server closes c (or the read deadline set by dial passes).
func awaitClose(c net.Conn, dialed time.Time) <-chan readResult {
	done := make(chan readResult, 1)
	go func() {
		n, err := c.Read(make([]byte, 1))
		done <- readResult{n, err, time.Since(dialed)}
	}()
	return done
}

// floodResult is how a client that writes without ever reading was stopped.
type floodResult struct {
	sent int
	err  error
}

// flood writes frame to c over and over, never reading, until a write fails.
func flood(c net.Conn, frame []byte) <-chan floodResult {
	done := make(chan floodResult, 1)
	go func() {
		sent := 0
		for {
			n, err := c.Write(frame)
			sent += n
			if err != nil {
				done <- floodResult{sent, err}
				return
			}
		}
	}()
	return done
}

// TestIdleTimeout: with IdleTimeout 300ms, for each model: a silent connection is
// closed between 300ms and 2s after it was dialled, while one that sends a small rpc
// request every 100ms for 1.5s stays open and gets every reply, and so does one whose
// request trickles in a byte every 100ms meanwhile (reads alone keep a connection
// active: until the request is complete there is nothing to write); then a client that
// sends large frames without ever reading is closed once back-pressure stops the
// server reading it and its replies stop moving, before its output reached the
// default cap (none is capped). idle_closed counts exactly the two.
func TestIdleTimeout(t *testing.T) {
	long(t)
	const (
		idle     = 300 * time.Millisecond
		maxClose = 2 * time.Second
		every    = 100 * time.Millisecond
		talkFor  = 1500 * time.Millisecond
	)
	for _, model := range models.Names() {
		t.Run(model, func(t *testing.T) {
			parallel(t, model)
			s := start(t, model, "rpc", func(c *models.Config) { c.IdleTimeout = idle })
			rng := rand.New(rand.NewPCG(31, 32))
			warmUp(t, s, rng, 2)

			dialed := time.Now() // before the dial: the server cannot start its clock earlier
			silent := s.dial(t)
			defer silent.Close()
			silentClosed := awaitClose(silent, dialed)

			// A request trickling in a byte every 100ms: only reads keep it open.
			trickler := s.dial(t)
			defer trickler.Close()
			trickled := trickle(trickler, rng, every, talkFor)

			active := s.dial(t)
			defer active.Close()
			// The client's own longest silence, from a reply to its next request: a
			// machine so loaded that it exceeds the timeout makes a close legitimate.
			var stalled time.Duration
			last := time.Now()
			trips := 0
			for t0 := time.Now(); time.Since(t0) < talkFor; trips++ {
				req, want := request("rpc", rng, 1+rng.IntN(100))
				stalled = max(stalled, time.Since(last))
				if err := tryRoundTrip(active, req, want); err != nil {
					if stalled > idle*9/10 {
						t.Skipf("round trip %d: %v; inconclusive: the client itself was silent for %v", trips, err, stalled)
					}
					t.Fatalf("round trip %d on the active connection: %v (the client's longest silence was %v)", trips, err, stalled)
				}
				last = time.Now()
				time.Sleep(every)
			}
			// The client closes the active connection before it falls silent.
			active.Close()
			if tr := <-trickled; tr.err != nil {
				if tr.stalled > idle*9/10 {
					t.Skipf("trickled request: %v; inconclusive: the client itself was silent for %v", tr.err, tr.stalled)
				}
				t.Fatalf("trickled request: %v (the client's longest silence was %v)", tr.err, tr.stalled)
			}
			trickler.Close()

			var r readResult
			select {
			case r = <-silentClosed:
			case <-time.After(ioTimeout):
				t.Fatal("the silent connection is still open")
			}
			if r.n != 0 || r.err == nil || errors.Is(r.err, os.ErrDeadlineExceeded) {
				t.Fatalf("read on the silent connection: n=%d err=%v, want the server to close it", r.n, r.err)
			}
			if r.after < idle || r.after > maxClose {
				t.Errorf("silent connection closed %v after it was dialled, want between %v and %v", r.after, idle, maxClose)
			}
			eventually(t, "the silent connection's closure counted", func() bool { return s.env.Stats.Snapshot().IdleClosed == 1 })

			big, _ := request("rpc", rng, 128<<10)
			flooder := s.dial(t)
			defer flooder.Close()
			var f floodResult
			select {
			case f = <-flood(flooder, big):
			case <-time.After(ioTimeout):
				t.Fatal("the client that never reads is still being read")
			}
			if errors.Is(f.err, os.ErrDeadlineExceeded) {
				t.Fatalf("the client that never reads was not closed: its writes stalled after %d KiB until the deadline", f.sent>>10)
			}
			t.Logf("silent connection closed after %v; %d round trips on the active one; the flood stopped after %d KiB (%v)",
				r.after.Round(time.Millisecond), trips, f.sent>>10, f.err)

			eventually(t, "two idle closures counted, no connection left", func() bool {
				st := s.env.Stats.Snapshot()
				return st.IdleClosed == 2 && st.Active == 0
			})
			if st := s.env.Stats.Snapshot(); st.OutputCapped != 0 || st.IOErrors != 0 {
				t.Errorf("stats %+v, want no connection output-capped and no I/O error", st)
			}
		})
	}
}

// trickleResult is how a trickled request ended, and the client's own longest
// silence meanwhile.
type trickleResult struct {
	err     error
	stalled time.Duration
}

// trickle sends one rpc request a byte every interval for about d, then the rest of
// it at once, and reads its reply: for d the server reads bytes but has nothing to
// write.
func trickle(c net.Conn, rng *rand.Rand, every, d time.Duration) <-chan trickleResult {
	req, want := request("rpc", rng, 100)
	done := make(chan trickleResult, 1)
	go func() {
		var stalled time.Duration
		last, sent := time.Now(), 0
		for t0 := time.Now(); time.Since(t0) < d && sent < len(req)-1; sent++ {
			time.Sleep(every)
			stalled = max(stalled, time.Since(last))
			if _, err := c.Write(req[sent : sent+1]); err != nil {
				done <- trickleResult{fmt.Errorf("byte %d: %w", sent, err), stalled}
				return
			}
			last = time.Now()
		}
		err := tryRoundTrip(c, req[sent:], want)
		if err != nil {
			err = fmt.Errorf("after %d bytes trickled: %w", sent, err)
		}
		done <- trickleResult{err, stalled}
	}()
	return done
}

// TestIdleWriteProgress: bytes written count as activity as much as bytes read. A
// client with a small receive buffer sends 20 MiB of rpc requests at once
// (HighWater and MaxOutput well above it, so back-pressure never stops the reads),
// and reads the replies at 10 MiB/s, 512 KiB every 50ms. With IdleTimeout 600ms, a
// server that dated activity from its last read would close the connection while it
// still owed megabytes beyond what the socket buffers hold. (Checked by making the
// event loops' writes not count: epoll-et and multireactor, which read until
// EAGAIN, then fail; the level-triggered loops read once a wake-up, so their reads
// go on until late in the stream and keep the connection active by themselves.) (The timeout leaves room for the server's send buffer: it
// autotunes to 4 MiB here, and the socket reports writable again only once a third
// of it has drained, ~140ms at this rate — with 300ms, one 200ms stall of the client
// beside the parallel tests made a correct server time out.)
func TestIdleWriteProgress(t *testing.T) {
	long(t)
	const (
		idle  = 600 * time.Millisecond
		chunk = 512 << 10
		every = 50 * time.Millisecond
	)
	for _, model := range models.Names() {
		t.Run(model, func(t *testing.T) {
			parallel(t, model)
			s := start(t, model, "rpc", func(c *models.Config) {
				c.IdleTimeout = idle
				c.HighWater = 32 << 20
				c.MaxOutput = 64 << 20
			})
			req, want := progressStream()
			c := dialSmallRcvBuf(t, s.addr)
			defer c.Close()
			werr := make(chan error, 1)
			go func() {
				_, err := c.Write(req)
				werr <- err
			}()
			got := make([]byte, len(want))
			var stalled time.Duration
			last := time.Now()
			for off := 0; off < len(got); {
				n, err := io.ReadFull(c, got[off:min(off+chunk, len(got))])
				off += n
				if err != nil {
					if stalled > idle*9/10 {
						t.Skipf("read after %d of %d bytes: %v; inconclusive: the client itself was silent for %v", off, len(got), err, stalled)
					}
					st := s.env.Stats.Snapshot()
					t.Fatalf("read after %d of %d bytes: %v (the client's longest silence was %v, this read waited %v; server: %d idle-closed, %d I/O errors, %d output-capped)",
						off, len(got), err, stalled, time.Since(last), st.IdleClosed, st.IOErrors, st.OutputCapped)
				}
				time.Sleep(every)
				stalled = max(stalled, time.Since(last))
				last = time.Now()
			}
			if err := <-werr; err != nil {
				t.Fatalf("write: %v", err)
			}
			// Every reply arrived. (The server may have closed the connection by now:
			// its last write went into the socket buffers well before the client
			// read it, and the client made no request since.)
			checkEqual(t, got, want)
		})
	}
}

// progressFrames is how many frames TestIdleWriteProgress sends.
const progressFrames = 20

// progressStream is TestIdleWriteProgress's requests (frames of the largest rpc
// payload) and their replies, made once for every model.
var progressStream = sync.OnceValues(func() (req, want []byte) {
	rng := rand.New(rand.NewPCG(37, 38))
	for range progressFrames {
		r, w := request("rpc", rng, proto.DefaultMaxFrame)
		req, want = append(req, r...), append(want, w...)
	}
	return req, want
})

// dialSmallRcvBuf dials addr with a 64 KiB receive buffer set before the connect, so
// the kernel neither starts with nor autotunes to a large window: what the client
// has not read stays with the server.
func dialSmallRcvBuf(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: ioTimeout, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 64<<10)
		}); err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	c.SetDeadline(time.Now().Add(ioTimeout))
	return c
}

// warmUp makes a round trip on each of n connections open at once, then closes them,
// so that the first connections of a test do not wait for a process model's workers
// to start (race-enabled test binaries, slow to start on a loaded machine).
func warmUp(t *testing.T, s *server, rng *rand.Rand, n int) {
	t.Helper()
	for range n {
		c := s.dial(t)
		defer c.Close()
		req, want := request("rpc", rng, 10)
		roundTrip(t, c, req, want)
	}
}

// tryRoundTrip is roundTrip returning its error.
func tryRoundTrip(c net.Conn, req, want []byte) error {
	if _, err := c.Write(req); err != nil {
		return err
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("reply differs from the expected %d bytes", len(want))
	}
	return nil
}

// TestOutputCap: with MaxOutput 64 KiB (and back-pressure only at 1 MiB, so the cap
// comes first), a connection whose replies exceed the cap is closed without them and
// counted in output_capped, while a neighbour's round trips go on unaffected. Two
// ways to exceed it: one reply above the cap (every model), and replies piling up
// behind a client that never reads (the models that queue output and keep reading
// until the high-water mark; see queuesOutput).
func TestOutputCap(t *testing.T) {
	const maxOut = 64 << 10
	capped := func(c *models.Config) {
		c.MaxOutput = maxOut
		c.HighWater = 1 << 20
		c.ReadBuf = 16 << 10 // one read's replies stay below the cap
	}
	for _, model := range models.Names() {
		t.Run(model+"/one reply above the cap", func(t *testing.T) {
			parallel(t, model)
			s := start(t, model, "rpc", capped)
			rng := rand.New(rand.NewPCG(33, 34))
			neighbour := s.dial(t)
			defer neighbour.Close()
			req, want := request("rpc", rng, 1<<10)
			roundTrip(t, neighbour, req, want)

			c := s.dial(t)
			defer c.Close()
			big, _ := request("rpc", rng, 100<<10)
			if _, err := c.Write(big); err != nil {
				t.Fatal(err)
			}
			expectClosed(t, c)
			eventually(t, "the capped connection counted and closed", func() bool {
				st := s.env.Stats.Snapshot()
				return st.OutputCapped == 1 && st.Closed == 1
			})

			roundTrip(t, neighbour, req, want)
			if st := s.env.Stats.Snapshot(); st.Active != 1 || st.Closed != 1 || st.OutputCapped != 1 || st.IOErrors != 0 {
				t.Errorf("stats %+v, want 1 active, 1 closed, 1 output-capped, no I/O error", st)
			}
		})
		if !queuesOutput(model) {
			continue
		}
		t.Run(model+"/replies piling up", func(t *testing.T) {
			parallel(t, model)
			s := start(t, model, "rpc", capped)
			rng := rand.New(rand.NewPCG(35, 36))
			neighbour := s.dial(t)
			defer neighbour.Close()

			c := s.dial(t)
			defer c.Close()
			frame, _ := request("rpc", rng, 10<<10)
			flooded := flood(c, frame)
			for t0 := time.Now(); s.env.Stats.Snapshot().OutputCapped == 0; {
				if time.Since(t0) > ioTimeout/2 {
					t.Fatal("a client that never reads was not capped")
				}
				req, want := request("rpc", rng, 1+rng.IntN(2000))
				roundTrip(t, neighbour, req, want)
			}
			var f floodResult
			select {
			case f = <-flooded:
			case <-time.After(ioTimeout):
				t.Fatal("the capped client's writes still go through")
			}
			if errors.Is(f.err, os.ErrDeadlineExceeded) {
				t.Fatalf("the capped client was not closed: its writes stalled after %d KiB until the deadline", f.sent>>10)
			}
			t.Logf("capped after the client sent %d KiB (%v)", f.sent>>10, f.err)

			req, want := request("rpc", rng, 3000)
			roundTrip(t, neighbour, req, want)
			eventually(t, "the capped connection closed", func() bool { return s.env.Stats.Snapshot().Closed == 1 })
			if st := s.env.Stats.Snapshot(); st.Active != 1 || st.OutputCapped != 1 || st.IdleClosed != 0 || st.IOErrors != 0 {
				t.Errorf("stats %+v, want 1 active, 1 output-capped, none idle-closed, no I/O error", st)
			}
		})
	}
}

// queuesOutput reports whether a model queues replies the socket would not take and
// keeps reading until the high-water mark, so that a client that never reads makes
// its owed output grow. The blocking models (thread, fork, procpool, goroutine) wait
// in write instead, owing one read's replies at most; so does reactor, which does not
// read a connection at all while it owes output.
func queuesOutput(model string) bool {
	switch model {
	case "thread", "fork", "procpool", "goroutine", "reactor":
		return false
	}
	return true
}

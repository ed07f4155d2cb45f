package models_test

// The graceful shutdown (Config.Grace), over every registered model: on cancel a
// model stops accepting, every connection takes no new request but writes what it
// owes, then shuts its write side, and is closed when the client closes its end or
// at the grace deadline; Serve returns nil once no connection is left, and leaves
// nothing behind.

import (
	"context"
	"errors"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"concbench/internal/sock"
	"concbench/models"
)

const testGrace = 3 * time.Second

// graceStream is a 24 MiB rpc request stream of frames up to 64 KiB and its
// replies: more than a client's and a server's socket buffers and the server's
// back-pressure bound hold. Made once: under -race that takes seconds.
var graceStream = sync.OnceValues(func() (req, want []byte) {
	return workload("rpc", rand.New(rand.NewPCG(43, 44)), 24<<20, 64<<10)
})

// graceServer is one model serving for one test, cancelled by the test itself so
// that it can watch the drain: cancel, then wait for Serve with returned.
type graceServer struct {
	addr      string
	env       *models.Env
	cancel    func() // records when it was called
	cancelled time.Time
	done      chan error // Serve's result
	closeLn   func()     // closes the listener, once
}

// startGrace starts model with rpc and Config.Grace = testGrace (plus mutate).
// Cleanup cancels it if the test did not, and waits for Serve.
func startGrace(t *testing.T, model string, mutate func(*models.Config)) *graceServer {
	t.Helper()
	cfg := models.Config{Model: model, Proto: "rpc", Addr: "127.0.0.1:0", Grace: testGrace}
	processLimits(model, &cfg)
	if mutate != nil {
		mutate(&cfg)
	}
	env, err := models.NewEnv(cfg, log.New(new(syncBuffer), "", 0))
	if err != nil {
		t.Fatal(err)
	}
	m, err := models.New(model)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := sock.Listen(cfg.Addr, false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	gs := &graceServer{addr: ln.Addr, env: env, done: make(chan error, 1), closeLn: sync.OnceFunc(func() { ln.Close() })}
	go func() { gs.done <- m.Serve(ctx, ln, env) }()
	gs.cancel = func() {
		if gs.cancelled.IsZero() {
			gs.cancelled = time.Now()
		}
		cancel()
	}
	t.Cleanup(func() {
		gs.cancel()
		select {
		case <-gs.done:
		case <-time.After(testGrace + 10*time.Second):
			t.Errorf("Serve did not return within %v of cancel", testGrace+10*time.Second)
		}
		gs.closeLn()
	})
	return gs
}

// returned waits up to within for Serve to return, expects nil, and returns how long
// after the cancel it returned. The result is read once: done is then empty.
func (gs *graceServer) returned(t *testing.T, within time.Duration) time.Duration {
	t.Helper()
	select {
	case err := <-gs.done:
		after := time.Since(gs.cancelled)
		if err != nil {
			t.Fatalf("Serve returned %v after cancel, want nil", err)
		}
		gs.done <- nil // for Cleanup
		return after
	case <-time.After(within):
		t.Fatalf("Serve still running %v after cancel", time.Since(gs.cancelled).Round(time.Millisecond))
		return 0
	}
}

func (gs *graceServer) dial(t *testing.T) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", gs.addr, ioTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", gs.addr, err)
	}
	c.SetDeadline(time.Now().Add(ioTimeout))
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// TestGraceIdle: an idle connection gets EOF promptly after cancel; then it
// lingers — a request the client sends is discarded (no reply, no reset: the
// client can write again), and Serve waits for the client's close; a connection
// made after the cancel is not served; and once the client closes, Serve returns
// well before the grace deadline.
func TestGraceIdle(t *testing.T) {
	for _, model := range models.Names() {
		t.Run(model, func(t *testing.T) {
			parallel(t, model)
			gs := startGrace(t, model, nil)
			rng := rand.New(rand.NewPCG(41, 42))
			c := gs.dial(t)
			req, want := request("rpc", rng, 100)
			roundTrip(t, c, req, want) // served: the process models' child is up
			eventually(t, "1 active connection", func() bool { return gs.env.Stats.Snapshot().Active == 1 })

			gs.cancel()
			c.SetReadDeadline(time.Now().Add(testGrace / 2))
			n, err := c.Read(make([]byte, 1))
			if n != 0 || err != io.EOF {
				t.Fatalf("read on an idle connection after cancel: n=%d err=%v, want EOF within %v", n, err, testGrace/2)
			}
			eofAfter := time.Since(gs.cancelled)

			// Lingering: the server still reads (and discards) what comes, so
			// the client's writes meet neither a closed socket's reset (the
			// second write would fail) nor a reply.
			for i := range 2 {
				if _, err := c.Write(req); err != nil {
					t.Fatalf("write %d after EOF: %v; want the server to read and discard it until the client closes", i+1, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
			select {
			case err := <-gs.done:
				gs.done <- err // for Cleanup
				t.Fatalf("Serve returned (%v) %v after cancel, before its client closed: want it to linger until then",
					err, time.Since(gs.cancelled).Round(time.Millisecond))
			default:
			}
			if st := gs.env.Stats.Snapshot(); st.Active != 1 {
				t.Fatalf("stats %+v while the client keeps its end open, want 1 active", st)
			}

			// Accepting stopped: the kernel may still complete a handshake (the
			// listener is the caller's and stays open), but nothing serves it. (A
			// prefork worker that has not handled its SIGTERM yet may still accept
			// it, and drain it at once: EOF, no reply.)
			late, err := net.DialTimeout("tcp", gs.addr, ioTimeout)
			if err == nil {
				late.Write(req)
				late.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				n, err := late.Read(make([]byte, 1))
				late.Close()
				if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) && err != io.EOF {
					t.Fatalf("a connection made after cancel: read n=%d err=%v, want no reply", n, err)
				}
			}

			c.Close()
			after := gs.returned(t, testGrace+5*time.Second)
			if after > testGrace-time.Second {
				t.Fatalf("Serve returned %v after cancel, its client having closed after %v: want well before the %v deadline",
					after.Round(time.Millisecond), eofAfter.Round(time.Millisecond), testGrace)
			}
			if st := gs.env.Stats.Snapshot(); st.Active != 0 || st.IOErrors != 0 {
				t.Errorf("stats %+v, want 0 active, no I/O error", st)
			}
			t.Logf("EOF %v after cancel; Serve returned after %v", eofAfter.Round(time.Millisecond), after.Round(time.Millisecond))
		})
	}
}

// TestGraceOwed: a client writes a large rpc request stream without reading, so the
// server owes it MiBs (HighWater is raised to 2 MiB, so the models that queue owe at
// least that) and stops reading it; then cancel; then the client reads. It must get
// every reply owed — a prefix of the expected replies that ends at a frame boundary,
// no longer than what it sent — then EOF, not a reset. Once it closes, Serve returns
// before the deadline.
func TestGraceOwed(t *testing.T) {
	long(t)
	const high = 2 << 20
	for _, model := range models.Names() {
		t.Run(model, func(t *testing.T) {
			parallel(t, model)
			gs := startGrace(t, model, func(c *models.Config) {
				c.HighWater = high
				c.MaxOutput = 4 * high
			})
			c := gs.dial(t)
			req, want := graceStream()
			c.SetWriteDeadline(time.Now().Add(time.Second))
			sent, err := c.Write(req)
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("write: %d bytes, %v; want the server to stop reading (back-pressure)", sent, err)
			}
			c.SetWriteDeadline(time.Time{})

			gs.cancel()
			c.SetReadDeadline(time.Now().Add(ioTimeout))
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("read after cancel: %v after %d bytes; want every owed reply, then EOF", err, len(got))
			}
			checkEqual(t, got, want[:len(got)])
			if end := frameEnd(want, len(got)); end != len(got) {
				t.Fatalf("got %d bytes of replies: the frame in progress ends at %d, want whole frames only", len(got), end)
			}
			if len(got) > sent {
				t.Fatalf("got %d bytes of replies to %d bytes of requests", len(got), sent)
			}
			minOwed := 1
			if queuesOutput(model) {
				minOwed = high
			}
			if len(got) < minOwed {
				t.Fatalf("got %d bytes of replies, want at least %d: the server owed that much", len(got), minOwed)
			}

			c.Close()
			after := gs.returned(t, testGrace+5*time.Second)
			if after > testGrace-500*time.Millisecond {
				t.Fatalf("Serve returned %v after cancel, its client having closed: want before the %v deadline", after.Round(time.Millisecond), testGrace)
			}
			if st := gs.env.Stats.Snapshot(); st.Active != 0 || st.IOErrors != 0 {
				t.Errorf("stats %+v, want 0 active, no I/O error", st)
			}
			t.Logf("sent %d KiB of requests; got %d KiB of replies and EOF; Serve returned after %v", sent>>10, len(got)>>10, after.Round(time.Millisecond))
		})
	}
}

// TestGraceDeadline: clients that never close — one owing replies it never reads,
// one idle that got its EOF — keep the server draining until the deadline, not
// much longer: then everything is closed, Serve returns nil, and no descriptor,
// goroutine or process is left.
func TestGraceDeadline(t *testing.T) {
	long(t)
	if pids := childPids(t); len(pids) != 0 {
		t.Fatalf("children before the test: %v", pids)
	}
	// The descriptors, goroutines and processes of every model, which drain in
	// parallel, are counted once all are done.
	noLeaksAfter(t)
	for _, model := range models.Names() {
		t.Run(model, func(t *testing.T) {
			parallel(t, model)
			gs := startGrace(t, model, nil)
			rng := rand.New(rand.NewPCG(45, 46))
			idle := gs.dial(t)
			req, want := request("rpc", rng, 100)
			roundTrip(t, idle, req, want)
			stuck := gs.dial(t)
			big, _ := graceStream()
			stuck.SetWriteDeadline(time.Now().Add(time.Second))
			if n, err := stuck.Write(big); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("write: %d bytes, %v; want the server to stop reading (back-pressure)", n, err)
			}
			eventually(t, "2 active connections", func() bool { return gs.env.Stats.Snapshot().Active == 2 })

			gs.cancel()
			idle.SetReadDeadline(time.Now().Add(testGrace / 2))
			if n, err := idle.Read(make([]byte, 1)); n != 0 || err != io.EOF {
				t.Fatalf("read on the idle connection after cancel: n=%d err=%v, want EOF", n, err)
			}
			after := gs.returned(t, testGrace+5*time.Second)
			const late = 2 * time.Second // the process models' childMargin is 1s
			if after < testGrace-100*time.Millisecond || after > testGrace+late {
				t.Fatalf("Serve returned %v after cancel, want at the %v deadline (at most %v later)", after.Round(time.Millisecond), testGrace, late)
			}
			if pids := workerPids(t, model); len(pids) != 0 {
				t.Fatalf("children left after Serve returned (zombies included): %v", pids)
			}
			if st := gs.env.Stats.Snapshot(); st.Active != 0 || st.Closed != 2 {
				t.Errorf("stats %+v, want 0 active, 2 closed", st)
			}
			idle.Close()
			stuck.Close()
			gs.closeLn()
			t.Logf("Serve returned %v after cancel", after.Round(time.Millisecond))
		})
	}
}

package models_test

// The conformance suite: every registered model × every protocol must pass every
// case here. A model that cannot (select beyond FD_SETSIZE) has its exception stated
// in the case, not skipped silently.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"concbench/internal/proto"
	"concbench/internal/sock"
	"concbench/models"
)

const ioTimeout = 20 * time.Second

// server is one model serving on its own port for one test.
type server struct {
	addr string
	env  *models.Env
	logs *syncBuffer
	// stop cancels, checks that Serve returned nil within 10s and closes the
	// listener; it returns how long Serve took to return after the cancel.
	// Idempotent.
	stop func() time.Duration
}

// start serves protoName with model on a loopback listener of its own.
func start(t testing.TB, model, protoName string, mutate func(*models.Config)) *server {
	t.Helper()
	return serveOn(t, model, protoName, mutate, sock.Listen, func(m models.Model, ctx context.Context, ln *sock.Listener, env *models.Env) error {
		return m.Serve(ctx, ln, env)
	})
}

// serveOn is start and startDgram: the listener made by listen, served by
// serve.
func serveOn(t testing.TB, model, protoName string, mutate func(*models.Config),
	listen func(addr string, allowRemote bool) (*sock.Listener, error),
	serve func(m models.Model, ctx context.Context, ln *sock.Listener, env *models.Env) error) *server {
	t.Helper()
	skipUnavailable(t, model)
	cfg := models.Config{Model: model, Proto: protoName, Addr: "127.0.0.1:0"}
	processLimits(model, &cfg)
	if mutate != nil {
		mutate(&cfg)
	}
	logs := new(syncBuffer)
	env, err := models.NewEnv(cfg, log.New(logs, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	m, err := models.New(model)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := listen(cfg.Addr, false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(m, ctx, ln, env) }()
	var (
		once sync.Once
		took time.Duration
	)
	s := &server{addr: ln.Addr, env: env, logs: logs}
	s.stop = func() time.Duration {
		once.Do(func() {
			at := time.Now()
			cancel()
			select {
			case err := <-done:
				took = time.Since(at)
				if err != nil {
					t.Errorf("Serve returned %v after cancel, want nil", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("Serve did not return within 10s of cancel")
			}
			ln.Close()
		})
		return took
	}
	t.Cleanup(func() { s.stop() })
	return s
}

func (s *server) dial(t *testing.T) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.addr, ioTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", s.addr, err)
	}
	c.SetDeadline(time.Now().Add(ioTimeout))
	return c.(*net.TCPConn)
}

// workload returns a request stream for the protocol and the exact reply stream a
// correct server sends for it: for echo, total random bytes; for rpc, frames of
// random sizes up to maxFrame (including empty ones) adding up to about total bytes.
func workload(protoName string, rng *rand.Rand, total, maxFrame int) (req, want []byte) {
	if protoName == "echo" {
		req = randBytes(rng, total)
		return req, upper(req)
	}
	for len(req) < total {
		p := randBytes(rng, rng.IntN(maxFrame+1))
		req = proto.AppendFrame(req, p)
		want = proto.AppendFrame(want, upper(p))
	}
	return req, want
}

// request is one request of exactly size payload bytes and its reply.
func request(protoName string, rng *rand.Rand, size int) (req, want []byte) {
	p := randBytes(rng, size)
	if protoName == "echo" {
		return p, upper(p)
	}
	return proto.AppendFrame(nil, p), proto.AppendFrame(nil, upper(p))
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n+7)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
	}
	return b[:n]
}

// upper is the reply mapping written independently of the server's code.
func upper(p []byte) []byte {
	out := make([]byte, len(p))
	for i, c := range p {
		if c >= 'a' && c <= 'z' {
			c -= 32
		}
		out[i] = c
	}
	return out
}

func roundTrip(t *testing.T, c net.Conn, req, want []byte) {
	t.Helper()
	if _, err := c.Write(req); err != nil {
		t.Fatalf("write %d bytes: %v", len(req), err)
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read %d bytes: %v", len(want), err)
	}
	checkEqual(t, got, want)
}

func checkEqual(t *testing.T, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	t.Fatalf("reply differs at byte %d of %d (got %d bytes)", i, len(want), len(got))
}

// streamBoth writes req from one goroutine while reading the reply concurrently,
// then half-closes and expects EOF right after the last byte of want.
func streamBoth(t *testing.T, c halfCloser, rng *rand.Rand, req, want []byte) {
	t.Helper()
	werr := make(chan error, 1)
	chunks := splitRandom(rng, req, 1<<17)
	go func() {
		for _, ch := range chunks {
			if _, err := c.Write(ch); err != nil {
				werr <- err
				return
			}
		}
		werr <- c.CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read after %d of %d bytes: %v", len(got), len(want), err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	checkEqual(t, got, want)
}

// halfCloser is a stream connection that can shut down its write side
// (*net.TCPConn, *net.UnixConn).
type halfCloser interface {
	net.Conn
	CloseWrite() error
}

// splitRandom cuts b into pieces of random sizes up to max.
func splitRandom(rng *rand.Rand, b []byte, max int) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n := min(len(b), 1+rng.IntN(max))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// expectClosed checks that the server closes c without sending anything.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(ioTimeout))
	n, err := c.Read(make([]byte, 1))
	if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on a connection the server should close: n=%d err=%v", n, err)
	}
}

// expectEOF reads until the server closes c; the close must come before the deadline.
func expectEOF(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(ioTimeout))
	_, err := io.Copy(io.Discard, c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("server did not close the connection: %v", err)
	}
}

func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// maxConns is how many simultaneous connections a model can hold in this test
// process. select cannot watch a descriptor numbered FD_SETSIZE (1024) or above, and
// here the clients' descriptors share the process's table with the server's, so it
// gets what fits below 1024: about half.
//
// The process models hold one process per connection, and here each process is this
// race-enabled test binary re-executed: fork is capped at testForkMaxProcs live
// children and procpool has testPoolWorkers workers (see processLimits), so those are
// their simultaneous connections.
func maxConns(t testing.TB, model string) int {
	const want = 1000
	switch model {
	case "fork":
		return testForkMaxProcs
	case "procpool":
		return testPoolWorkers
	}
	if model != "select" {
		return want
	}
	const margin = 32 // descriptors the runtime, the test and the server may open meanwhile
	return (unix.FD_SETSIZE - openFDs(t) - margin) / 2
}

// Limits of the process models in this test process, where every child is the
// race-enabled test binary re-executed, about 21 MiB RSS each (5 MiB for the server
// binary without -race): 1000 of them would need 21 GiB.
const (
	testForkMaxProcs = 64 // fork's cap on live children (Config.MaxProcs)
	testPoolWorkers  = 8  // procpool's workers; the cases need 3 connections at once
)

// processLimits applies those limits to cfg; a test's own mutate may override them.
func processLimits(model string, cfg *models.Config) {
	switch model {
	case "fork":
		cfg.MaxProcs = testForkMaxProcs
	case "procpool":
		cfg.Workers = testPoolWorkers
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type conformanceCase struct {
	name string
	run  func(t *testing.T, model, protoName string)
}

var conformance = []conformanceCase{
	{"round trips 1B-64KiB", testRoundTrips},
	{"8MiB concurrent write and read", testStream},
	{"half-close", testHalfClose},
	{"back-pressure", testBackPressure},
	{"many simultaneous connections", testManyConns},
	{"client reset mid-request", testReset},
	{"oversize frame", testOversize},
	{"graceful shutdown", testShutdown},
}

// streamProtos are the protocols whose replies the suite's workloads predict from
// the requests alone (echo, rpc); file and http have a suite of their own.
var streamProtos = []string{"echo", "rpc"}

func TestConformance(t *testing.T) {
	if len(models.Names()) == 0 {
		t.Fatal("no models registered")
	}
	for _, model := range models.Names() {
		for _, p := range streamProtos {
			for _, tc := range conformance {
				t.Run(model+"/"+p+"/"+tc.name, func(t *testing.T) {
					// The shutdown case counts the whole process's goroutines and
					// descriptors: it runs alone.
					if tc.name != "graceful shutdown" {
						parallel(t, model)
					}
					tc.run(t, model, p)
				})
			}
		}
	}
}

func testRoundTrips(t *testing.T, model, p string) {
	s := start(t, model, p, nil)
	c := s.dial(t)
	defer c.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{1, 2, 7, 100, 1000, 4096, 10000, 65535, 65536}
	if p == "rpc" {
		sizes = append([]int{0}, sizes...)
	}
	for _, size := range sizes {
		req, want := request(p, rng, size)
		roundTrip(t, c, req, want)
	}
	// Many requests in one write, answered in order.
	var req, want []byte
	for i := range 50 {
		r, w := request(p, rng, i*37)
		req, want = append(req, r...), append(want, w...)
	}
	roundTrip(t, c, req, want)
}

func testStream(t *testing.T, model, p string) {
	long(t)
	s := start(t, model, p, nil)
	c := s.dial(t)
	defer c.Close()
	req, want, rng := cachedWorkload(p, 3, 4, 8<<20, 64<<10)
	streamBoth(t, c, rng, req, want)
}

func testHalfClose(t *testing.T, model, p string) {
	s := start(t, model, p, nil)
	rng := rand.New(rand.NewPCG(5, 6))
	// Small (all in one read) and larger than the back-pressure bound, so the
	// server still owes output when it sees the FIN.
	for _, size := range []int{5, 600 << 10} {
		c := s.dial(t)
		req, want := workload(p, rng, size, 32<<10)
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("size %d: read after half-close: %v (got %d of %d bytes)", size, err, len(got), len(want))
		}
		checkEqual(t, got, want)
		c.Close()
	}
	eventually(t, "server to close both connections", func() bool { return s.env.Stats.Snapshot().Closed == 2 })
}

// testBackPressure: a client that sends without reading must be stopped by the
// server not reading (its output is bounded), not buffered without limit; and once
// it reads, every byte comes back.
func testBackPressure(t *testing.T, model, p string) {
	long(t)
	s := start(t, model, p, nil)
	c := s.dial(t)
	defer c.Close()
	const limit = 64 << 20 // socket buffers on both sides plus the server's bound, with room
	req, want, rng := cachedWorkload(p, 7, 8, limit+1, 64<<10)
	c.SetWriteDeadline(time.Now().Add(time.Second))
	n, err := c.Write(req[:limit+1])
	if err == nil {
		t.Fatalf("wrote %d bytes without the client reading: the server buffers without bound", n)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write: %v", err)
	}
	t.Logf("writes stalled after %d KiB", n>>10)
	c.SetDeadline(time.Now().Add(ioTimeout))
	// Finish the frame in flight so the reply stream is well defined, then read all.
	sent := n
	if p == "rpc" {
		sent = frameEnd(req, n)
	}
	// An rpc reply frame has the size of its request frame, so the replies owed for
	// req[:sent] are want[:sent] in both protocols.
	streamBoth(t, c, rng, req[n:sent], want[:sent])
}

// frameEnd is the offset of the end of the rpc frame that contains offset n.
func frameEnd(stream []byte, n int) int {
	off := 0
	for off < n {
		off += proto.HeaderLen + int(binary.BigEndian.Uint32(stream[off:]))
	}
	return off
}

func testManyConns(t *testing.T, model, p string) {
	long(t)
	s := start(t, model, p, nil)
	n := maxConns(t, model)
	conns := make([]*net.TCPConn, n)
	for i := range conns {
		conns[i] = s.dial(t)
		defer conns[i].Close()
	}
	// Every connection sends before any reads: all n are in flight at once.
	rng := rand.New(rand.NewPCG(9, 10))
	wants := make([][]byte, n)
	for i, c := range conns {
		req, want := request(p, rng, 1+rng.IntN(200))
		wants[i] = want
		if _, err := c.Write(req); err != nil {
			t.Fatalf("conn %d: %v", i, err)
		}
	}
	for i, c := range conns {
		got := make([]byte, len(wants[i]))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("conn %d of %d: %v", i, n, err)
		}
		checkEqual(t, got, wants[i])
	}
	if st := s.env.Stats.Snapshot(); st.Active != int64(n) || st.Refused != 0 {
		t.Fatalf("stats %+v, want %d active, 0 refused", st, n)
	}
	t.Logf("%d simultaneous connections", n)
}

// testReset: clients that reset (RST) mid-request, one with input half-read and one
// with output queued, cost only their own connection.
func testReset(t *testing.T, model, p string) {
	s := start(t, model, p, nil)
	rng := rand.New(rand.NewPCG(11, 12))
	bystander := s.dial(t)
	defer bystander.Close()

	partial := s.dial(t) // half a request, then RST
	req, _ := request(p, rng, 1000)
	partial.Write(req[:len(req)/2])

	flood := s.dial(t) // replies queued in the server, then RST
	big, _, _ := cachedWorkload(p, 11, 12, 4<<20, 64<<10)
	flood.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	flood.Write(big)

	time.Sleep(50 * time.Millisecond)
	for _, c := range []*net.TCPConn{partial, flood} {
		c.SetLinger(0) // close sends RST
		c.Close()
	}
	eventually(t, "server to close the reset connections", func() bool { return s.env.Stats.Snapshot().Active == 1 })
	req, want := request(p, rng, 3000)
	roundTrip(t, bystander, req, want)
	fresh := s.dial(t)
	defer fresh.Close()
	roundTrip(t, fresh, req, want)
}

func testOversize(t *testing.T, model, p string) {
	if p != "rpc" {
		return // echo has no frames: there is nothing oversize to send
	}
	const maxFrame = 64 << 10
	s := start(t, model, p, func(c *models.Config) { c.MaxFrame = maxFrame })
	rng := rand.New(rand.NewPCG(13, 14))
	good := s.dial(t)
	defer good.Close()
	req, want := request(p, rng, maxFrame) // exactly the maximum is allowed
	roundTrip(t, good, req, want)

	bad := s.dial(t)
	defer bad.Close()
	hdr := binary.BigEndian.AppendUint32(nil, maxFrame+1)
	if _, err := bad.Write(append(hdr, "abc"...)); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, bad)
	eventually(t, "protocol error to be counted", func() bool { return s.env.Stats.Snapshot().ProtoErrors == 1 })
	roundTrip(t, good, req, want)
}

// testShutdown: cancelling Serve with connections in every state closes them all and
// leaves no goroutine and no descriptor behind.
func testShutdown(t *testing.T, model, p string) {
	fds, goroutines := openFDs(t), runtime.NumGoroutine()
	s := start(t, model, p, nil)
	rng := rand.New(rand.NewPCG(15, 16))
	idle := s.dial(t)
	mid := s.dial(t)
	req, _ := request(p, rng, 5000)
	mid.Write(req[:100])
	busy := s.dial(t)
	r2, w2 := request(p, rng, 10)
	roundTrip(t, busy, r2, w2)
	eventually(t, "3 active connections", func() bool { return s.env.Stats.Snapshot().Active == 3 })

	s.stop()
	for _, c := range []*net.TCPConn{idle, mid, busy} {
		expectEOF(t, c) // echo's mid may get its 100 bytes back first
		c.Close()
	}
	if st := s.env.Stats.Snapshot(); st.Active != 0 || st.Closed != 3 {
		t.Fatalf("after shutdown: %+v, want 0 active, 3 closed", st)
	}
	eventually(t, fmt.Sprintf("goroutines back to %d", goroutines), func() bool { return runtime.NumGoroutine() <= goroutines })
	eventually(t, fmt.Sprintf("descriptors back to %d", fds), func() bool { return openFDs(t) <= fds })
}

// TestSelectRefusesPastFDSetSize: a connection whose descriptor is 1024 or above is
// closed at once, counted and logged once; the server keeps serving the rest.
func TestSelectRefusesPastFDSetSize(t *testing.T) {
	s := start(t, "select", "echo", nil)
	ok := s.dial(t)
	defer ok.Close()
	// A reply means the loop runs, its own descriptors (the wake-up one) taken:
	// a connect alone completes in the kernel's backlog, maybe before Serve has
	// set up, and its wake-up descriptor would then land above FD_SETSIZE.
	roundTrip(t, ok, []byte("first"), []byte("FIRST"))

	// Occupy every descriptor below FD_SETSIZE, so the next accept gets one above.
	var fillers []int
	defer func() {
		for _, fd := range fillers {
			unix.Close(fd)
		}
	}()
	for {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		fillers = append(fillers, fd)
		if fd >= unix.FD_SETSIZE+8 {
			break
		}
	}
	for range 2 {
		c := s.dial(t)
		expectClosed(t, c)
		c.Close()
	}
	eventually(t, "2 refusals counted", func() bool { return s.env.Stats.Snapshot().Refused == 2 })
	if n := strings.Count(s.logs.String(), "FD_SETSIZE"); n != 1 {
		t.Errorf("refusal logged %d times, want once; log:\n%s", n, s.logs)
	}
	roundTrip(t, ok, []byte("still here"), []byte("STILL HERE"))

	for _, fd := range fillers {
		unix.Close(fd)
	}
	fillers = nil
	c := s.dial(t)
	defer c.Close()
	roundTrip(t, c, []byte("below again"), []byte("BELOW AGAIN"))
}

func TestUnknownModel(t *testing.T) {
	_, err := models.New("threads-of-gold")
	if !errors.Is(err, models.ErrUnknownModel) {
		t.Fatalf("err = %v, want ErrUnknownModel", err)
	}
	for _, n := range models.Names() {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("error %q does not list %q", err, n)
		}
	}
}

// TestUnixSocketRoundTrip: every model serves on a Unix domain socket as on TCP —
// round trips and a half-close — and the socket file is gone once the listener
// is closed. prefork's reuseport mode refuses a Unix socket at start.
func TestUnixSocketRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, model := range models.Names() {
		for _, p := range streamProtos {
			t.Run(model+"/"+p, func(t *testing.T) {
				parallel(t, model)
				path := dir + "/" + model + "-" + p + ".sock"
				s := start(t, model, p, func(c *models.Config) { c.Addr = "unix:" + path })
				if s.addr != "unix:"+path {
					t.Fatalf("listener address %q, want unix:%s", s.addr, path)
				}
				rng := rand.New(rand.NewPCG(7, 8))
				c := dialUnix(t, path)
				sizes := []int{1, 64 << 10}
				if p == "rpc" {
					sizes = append([]int{0}, sizes...)
				}
				for _, size := range sizes {
					req, want := request(p, rng, size)
					roundTrip(t, c, req, want)
				}
				req, want := workload(p, rng, 100<<10, 16<<10)
				roundTrip(t, c, req, want)
				// Half-close while reading concurrently (Unix socket buffers are
				// smaller than loopback TCP's: a client that writes 300 KiB before
				// reading would stall against the server's back-pressure):
				// everything owed arrives, then EOF.
				req, want = workload(p, rng, 300<<10, 32<<10)
				streamBoth(t, c, rng, req, want)
				c.Close()
				eventually(t, "server to close the connection", func() bool { return s.env.Stats.Snapshot().Closed == 1 })
				s.stop()
				if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("socket file after stop: %v, want it removed", err)
				}
			})
		}
	}
	t.Run("prefork/reuseport refused", func(t *testing.T) {
		path := dir + "/reuseport.sock"
		ln, err := sock.Listen("unix:"+path, false)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		env, err := models.NewEnv(models.Config{Model: "prefork", Proto: "echo", Accept: models.AcceptReuseport, Workers: 2}, nil)
		if err != nil {
			t.Fatal(err)
		}
		m, err := models.New("prefork")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Serve(ctx, ln, env); !errors.Is(err, sock.ErrReusePortUnix) {
			t.Fatalf("prefork reuseport on %s: Serve = %v, want %v", ln.Addr, err, sock.ErrReusePortUnix)
		}
	})
}

func dialUnix(t *testing.T, path string) *net.UnixConn {
	t.Helper()
	c, err := net.DialTimeout("unix", path, ioTimeout)
	if err != nil {
		t.Fatalf("dial unix %s: %v", path, err)
	}
	c.SetDeadline(time.Now().Add(ioTimeout))
	t.Cleanup(func() { c.Close() })
	return c.(*net.UnixConn)
}

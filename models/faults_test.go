package models_test

// Fault tests: clients that misbehave on purpose (slow drip-feeders, resets and
// half-closes at every point of a request) and worker processes killed mid-request.
// Each says what the model must do and, where a model's design makes it do otherwise
// (procpool's bounded pool), asserts that property instead and says why.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"concbench/internal/proto"
	"concbench/models"
)

// faultWait polls cond every 5ms for up to d.
func faultWait(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// dripper writes one more byte of an rpc request that announces 1000 payload bytes
// to each of its connections every 100ms, so the request never completes.
type dripper struct {
	conns []*net.TCPConn
	stop  chan struct{}
	once  sync.Once
	done  chan struct{}
	sent  int   // bytes per connection so far; read after halt
	err   error // the first write error; read after halt
}

func startDripper(conns []*net.TCPConn) *dripper {
	d := &dripper{conns: conns, stop: make(chan struct{}), done: make(chan struct{})}
	req := binary.BigEndian.AppendUint32(nil, 1000)
	req = append(req, make([]byte, 1000)...)
	go func() {
		defer close(d.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for d.sent < len(req)-1 {
			for i, c := range d.conns {
				if _, err := c.Write(req[d.sent : d.sent+1]); err != nil {
					d.err = fmt.Errorf("slow client %d, byte %d: %w", i, d.sent, err)
					return
				}
			}
			d.sent++
			select {
			case <-d.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return d
}

// halt stops the dripping and waits for it; idempotent.
func (d *dripper) halt() {
	d.once.Do(func() { close(d.stop) })
	<-d.done
}

// slowClients dials n connections and waits until the server holds them all (for
// fork: until their children are started).
func slowClients(t *testing.T, s *server, n int) []*net.TCPConn {
	t.Helper()
	conns := make([]*net.TCPConn, n)
	for i := range conns {
		conns[i] = s.dial(t)
		t.Cleanup(func() { conns[i].Close() })
	}
	faultWait(t, 60*time.Second, fmt.Sprintf("%d connections active", n), func() bool {
		return s.env.Stats.Snapshot().Active == int64(n)
	})
	return conns
}

// Bounds of a normal client's round trips among slow clients. A model stalled by
// them would not answer at all (no slow request ever completes) or only as their
// bytes trickle in (every 100ms); a loaded test machine delays some round trips by
// a second or more, but not most of them.
const (
	slowTripMax    = 5 * time.Second
	slowTripMedian = 250 * time.Millisecond
)

// TestSlowClients: slowloris. About 200 clients each drip one byte of an rpc
// request every 100ms and never complete it; meanwhile a normal client does 20 rpc
// round trips, 100ms apart: each must be answered (within slowTripMax) and most of
// them at once (the median under slowTripMedian). A model that multiplexes (event
// loops, goroutines, threads, processes per connection) serves it whatever the slow
// ones do, and drops none of them. How many slow clients: select gets what fits
// below FD_SETSIZE in this process and fork its test cap on children (maxConns),
// less one for the normal client.
//
// procpool is the exception by design (TestSlowClientsHoldProcpool).
func TestSlowClients(t *testing.T) {
	long(t)
	for _, model := range models.Names() {
		if model == "procpool" {
			continue
		}
		t.Run(model, func(t *testing.T) {
			parallel(t, model)
			s := start(t, model, "rpc", nil)
			n := min(200, maxConns(t, model)-1)
			drip := startDripper(slowClients(t, s, n))
			defer drip.halt()

			c := s.dial(t)
			defer c.Close()
			rng := rand.New(rand.NewPCG(21, 22))
			req, want := request("rpc", rng, 100)
			roundTrip(t, c, req, want) // connection set-up (fork: a child) not timed
			var times []time.Duration
			for i := range 20 {
				req, want := request("rpc", rng, 100+i)
				t0 := time.Now()
				c.SetDeadline(t0.Add(slowTripMax))
				roundTrip(t, c, req, want)
				times = append(times, time.Since(t0))
				time.Sleep(100 * time.Millisecond)
			}
			slices.Sort(times)
			if median := times[len(times)/2]; median > slowTripMedian {
				t.Errorf("round trips with %d slow clients: median %v, want < %v (all: %v)", n, median, slowTripMedian, times)
			}
			drip.halt()
			if drip.err != nil {
				t.Fatalf("the server dropped a slow client: %v", drip.err)
			}
			if st := s.env.Stats.Snapshot(); st.Active != int64(n)+1 || st.Closed != 0 {
				t.Fatalf("stats %+v, want %d active (the slow clients and the normal one), none closed", st, n+1)
			}
			t.Logf("%d slow clients, %d bytes each: 20 round trips, median %v, slowest %v", n, drip.sent, times[len(times)/2], times[len(times)-1])
		})
	}
}

// TestSlowClientsHoldProcpool: procpool serves one connection per worker with
// blocking I/O, so slow clients as many as its workers hold them all and a normal
// client gets no reply at all — the model's property, not a bug to hide. Once the
// slow clients go away it is served.
func TestSlowClientsHoldProcpool(t *testing.T) {
	const workers, slow = 4, 6
	s := start(t, "procpool", "rpc", func(c *models.Config) { c.Workers = workers })
	conns := make([]*net.TCPConn, slow)
	for i := range conns {
		conns[i] = s.dial(t)
		defer conns[i].Close()
	}
	eventually(t, "every worker held by a slow client", func() bool { return procGauge(s, "workers_busy") == workers })
	drip := startDripper(conns)
	defer drip.halt()

	c := s.dial(t)
	defer c.Close()
	req, want := request("rpc", rand.New(rand.NewPCG(23, 24)), 100)
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	expectNoReply(t, c, time.Second)
	drip.halt()
	if drip.err != nil {
		t.Fatal(drip.err)
	}
	for _, sc := range conns {
		sc.Close()
	}
	t0 := time.Now()
	got := make([]byte, len(want))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("after the slow clients left: %v", err)
	}
	checkEqual(t, got, want)
	t.Logf("served %v after the slow clients closed", time.Since(t0).Round(time.Millisecond))
}

// A cut point: how much of a request stream a client sends before it resets or
// half-closes, and the replies a correct server owes for it.
type cutPoint struct {
	name string
	// send writes the client's part and returns the bytes of reply owed for the
	// complete requests in what went out.
	send func(t *testing.T, c *net.TCPConn, rng *rand.Rand) (owed []byte)
	// large: the server owes megabytes. After a half-close the client waits for
	// an event model to read the end of input before it reads any reply, so the
	// server sees the end while it still owes them (see awaitServerRead).
	large bool
}

// sendAll writes b and returns its reply.
func sendAll(b, reply []byte) func(*testing.T, *net.TCPConn, *rand.Rand) []byte {
	return func(t *testing.T, c *net.TCPConn, _ *rand.Rand) []byte {
		t.Helper()
		if _, err := c.Write(b); err != nil {
			t.Fatalf("write %d bytes: %v", len(b), err)
		}
		return reply
	}
}

// sendLarge writes req (8 MiB) without reading. A model that reads while it owes
// output (its HighWater is raised above 8 MiB: see testCuts) takes all of it; the
// others stop reading once a reply's write blocks, so the write is given up after
// 200ms. It returns the replies owed for the complete requests that went.
func sendLarge(p string, req, want []byte) func(*testing.T, *net.TCPConn, *rand.Rand) []byte {
	return func(t *testing.T, c *net.TCPConn, _ *rand.Rand) []byte {
		t.Helper()
		c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := c.Write(req)
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("write: %v", err)
		}
		c.SetWriteDeadline(time.Now().Add(ioTimeout))
		if p == "echo" {
			return want[:n]
		}
		const frame = proto.HeaderLen + proto.DefaultMaxFrame
		return want[:n/frame*frame] // the replies of the complete frames
	}
}

// bigStreams caches the 8 MiB request stream of each protocol and its replies (for
// rpc, 8 frames of 1 MiB, the default maximum), made once for every model.
var bigStreams struct {
	sync.Mutex
	req, want map[string][]byte
}

func bigStream(p string) (req, want []byte) {
	bigStreams.Lock()
	defer bigStreams.Unlock()
	if bigStreams.req == nil {
		bigStreams.req, bigStreams.want = map[string][]byte{}, map[string][]byte{}
	}
	if req, ok := bigStreams.req[p]; ok {
		return req, bigStreams.want[p]
	}
	rng := rand.New(rand.NewPCG(33, 34))
	if p == "echo" {
		req, want = request(p, rng, 8<<20)
	} else {
		for range 8 {
			r, w := request(p, rng, proto.DefaultMaxFrame)
			req, want = append(req, r...), append(want, w...)
		}
	}
	bigStreams.req[p], bigStreams.want[p] = req, want
	return req, want
}

// cutPoints are the cuts of a protocol's requests, the last one the 8 MiB stream.
func cutPoints(p string, rng *rand.Rand) []cutPoint {
	req, reply := request(p, rng, 1000)
	big, bigReply := bigStream(p)
	if p == "echo" {
		return []cutPoint{
			{"before any byte", sendAll(nil, nil), false},
			{"after 1000 bytes, reply unread", sendAll(req, reply), false},
			{"8MiB reply owed", sendLarge(p, big, bigReply), true},
		}
	}
	return []cutPoint{
		{"before any byte", sendAll(nil, nil), false},
		{"inside the header", sendAll(req[:2], nil), false},
		{"after the header", sendAll(req[:proto.HeaderLen], nil), false},
		{"inside the payload", sendAll(req[:proto.HeaderLen+500], nil), false},
		{"after a full request, reply unread", sendAll(req, reply), false},
		{"8MiB of replies owed", sendLarge(p, big, bigReply), true},
	}
}

// readsWhileOwing are the models that keep reading a connection that owes output
// (up to Config.HighWater), so they can read a half-close while they owe
// megabytes, and must then write them before they close. The blocking models
// write a reply before they read again, and reactor reads no connection that owes
// output.
var readsWhileOwing = map[string]bool{
	"select": true, "poll": true, "epoll-lt": true, "epoll-et": true,
	"multireactor": true, "threadpool": true, "prefork": true,
}

// awaitServerRead waits until the server's end of c has received c's FIN and its
// program has read every byte before it (/proc/net/tcp: CLOSE_WAIT, or LAST_ACK
// once closed, with an empty receive queue; or gone), then 20ms for the read that
// returns the end of input. It gives up after 5s, which only weakens the check.
func awaitServerRead(t *testing.T, c net.Conn) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		state, rx, ok := serverSocket(t, c)
		if !ok || rx == 0 && (state == tcpCloseWait || state == tcpLastAck) {
			time.Sleep(20 * time.Millisecond)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("the server did not read to the end of input within 5s")
}

// TCP states of /proc/net/tcp (include/net/tcp_states.h).
const (
	tcpCloseWait = 0x08
	tcpLastAck   = 0x09
)

// serverSocket finds the server's end of the loopback connection c in
// /proc/net/tcp and returns its state and its receive queue (bytes unread).
func serverSocket(t *testing.T, c net.Conn) (state int, rx int64, ok bool) {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	hexPort := func(a net.Addr) string { return fmt.Sprintf(":%04X", a.(*net.TCPAddr).Port) }
	local, remote := hexPort(c.RemoteAddr()), hexPort(c.LocalAddr())
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 5 || !strings.HasSuffix(f[1], local) || !strings.HasSuffix(f[2], remote) {
			continue
		}
		_, rxHex, _ := strings.Cut(f[4], ":")
		st, err1 := strconv.ParseInt(f[3], 16, 32)
		rx, err2 := strconv.ParseInt(rxHex, 16, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("/proc/net/tcp: %q", line)
		}
		return int(st), rx, true
	}
	return 0, 0, false
}

// pacedRoundTrips does a round trip on c every 10ms until stop is closed or one
// fails; wait returns the failure.
func pacedRoundTrips(c net.Conn, req, want []byte, stop <-chan struct{}) (trips *atomic.Int64, wait func() error) {
	trips = new(atomic.Int64)
	var err error
	var wg sync.WaitGroup
	wg.Go(func() {
		got := make([]byte, len(want))
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			c.SetDeadline(time.Now().Add(ioTimeout))
			if _, err = c.Write(req); err != nil {
				return
			}
			if _, err = io.ReadFull(c, got); err != nil {
				return
			}
			if string(got) != string(want) {
				err = fmt.Errorf("reply %q, want %q", got, want)
				return
			}
			trips.Add(1)
		}
	})
	return trips, func() error { wg.Wait(); return err }
}

// TestCutsAtEveryPoint: a client resets (RST: SO_LINGER 0, then close) or
// half-closes (shutdown SHUT_WR) at every point of a request: before any byte,
// inside an rpc header, after it, inside the payload, after a full request whose
// reply it has not read, and while the server owes it megabytes it is not reading.
// One server per model and protocol takes every cut in turn, while a long-lived
// bystander connection keeps round-tripping. For each cut the server must close that
// connection only, and count it:
//
//   - RST: one I/O error (the read or write meets ECONNRESET or EPIPE), no protocol
//     error.
//   - Half-close: a clean close. The client reads every reply owed for the complete
//     requests it sent, then end of stream; no I/O error, no protocol error — also
//     when the half-close cuts an rpc frame short. That request was abandoned by its
//     client, not malformed: nothing it sent breaks the framing, the session has no
//     way to be told of the end of input (proto.Session has only Feed), and nothing
//     is owed for it. What the client did get is exactly what it asked for.
//
// And the server must not crash (Serve returns nil at stop; no worker process dies
// or exits abnormally) nor leak a descriptor.
func TestCutsAtEveryPoint(t *testing.T) {
	long(t)
	noLeaksAfter(t)
	for _, model := range models.Names() {
		for _, p := range streamProtos {
			t.Run(model+"/"+p, func(t *testing.T) {
				parallel(t, model)
				testCuts(t, model, p)
			})
		}
	}
}

func testCuts(t *testing.T, model, p string) {
	// The back-pressure bound (and the cap on output owed) is raised above the
	// 8 MiB cut, so that the models that read while they owe output (see
	// readsWhileOwing) read all of it and hold its replies themselves when the cut
	// comes: an RST meets a write with megabytes queued, and a half-close is read
	// while they are owed. (With the default bound, 256 KiB, most of the stream
	// would wait unread in socket buffers; the conformance suite covers that bound.)
	// The others are in a blocked write of a reply whatever the bound.
	s := start(t, model, p, func(c *models.Config) { c.HighWater, c.MaxOutput = 16<<20, 32<<20 })
	rng := rand.New(rand.NewPCG(25, 26))

	by := s.dial(t)
	byReq, byWant := request(p, rng, 64)
	roundTrip(t, by, byReq, byWant)
	stop := make(chan struct{})
	trips, byWait := pacedRoundTrips(by, byReq, byWant, stop)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
			byWait()
		}
	}()

	cuts := 0
	for _, cut := range cutPoints(p, rng) {
		for _, rst := range []bool{true, false} {
			how := "half-close"
			if rst {
				how = "RST"
			}
			before := s.env.Stats.Snapshot()
			c := s.dial(t)
			faultWait(t, 10*time.Second, "the connection to be accepted", func() bool {
				return s.env.Stats.Snapshot().Accepted == before.Accepted+1
			})
			owed := cut.send(t, c, rng)
			if rst {
				c.SetLinger(0)
				c.Close()
			} else {
				if err := c.CloseWrite(); err != nil {
					t.Fatal(err)
				}
				if cut.large && readsWhileOwing[model] {
					awaitServerRead(t, c)
				}
				got, err := io.ReadAll(c)
				c.Close()
				if err != nil {
					t.Fatalf("%s, %s: read after %d of %d bytes owed: %v", cut.name, how, len(got), len(owed), err)
				}
				if len(got) != len(owed) {
					t.Fatalf("%s, %s: got %d bytes then end of stream, want the %d owed", cut.name, how, len(got), len(owed))
				}
				checkEqual(t, got, owed)
			}
			var st models.StatsSnapshot
			faultWait(t, 10*time.Second, fmt.Sprintf("%s, %s: the server to close the connection", cut.name, how), func() bool {
				st = s.env.Stats.Snapshot()
				return st.Closed == before.Closed+1 && st.Active == 1
			})
			wantIO := before.IOErrors
			if rst {
				wantIO++
			}
			if st.IOErrors != wantIO || st.ProtoErrors != before.ProtoErrors {
				t.Errorf("%s, %s: %d I/O errors and %d protocol errors counted, want %d and 0",
					cut.name, how, st.IOErrors-before.IOErrors, st.ProtoErrors-before.ProtoErrors, wantIO-before.IOErrors)
			}
			cuts++
		}
	}
	close(stop)
	if err := byWait(); err != nil {
		t.Fatalf("bystander after %d round trips: %v", trips.Load(), err)
	}
	by.SetDeadline(time.Now().Add(ioTimeout))
	roundTrip(t, by, byReq, byWant)
	t.Logf("%d cuts; the bystander did %d round trips meanwhile", cuts, trips.Load())
	faultNoCrash(t, s, model)
	by.Close()
	s.stop()
}

// faultNoCrash checks that no worker process of a process model died or exited
// abnormally, and that nothing panicked.
func faultNoCrash(t *testing.T, s *server, model string) {
	t.Helper()
	logs := s.logs.String()
	if strings.Contains(logs, "panic") {
		t.Errorf("log mentions a panic:\n%s", logs)
	}
	switch model {
	case "fork":
		// fork logs a child's exit only when it is not one of its statuses.
		if strings.Contains(logs, "fork: child") {
			t.Errorf("a fork child exited abnormally:\n%s", logs)
		}
	case "procpool":
		if g := procGauge(s, "workers_lost"); g != 0 {
			t.Errorf("workers_lost = %d, want 0; log:\n%s", g, logs)
		}
	case "prefork":
		if g := procGauge(s, "workers_replaced"); g != 0 {
			t.Errorf("workers_replaced = %d, want 0; log:\n%s", g, logs)
		}
	}
}

// newChild waits for a child of this process not in known to appear, and returns it.
func newChild(t *testing.T, known []int) int {
	t.Helper()
	var pid int
	eventually(t, "a new child process", func() bool {
		for _, p := range childPids(t) {
			if !slices.Contains(known, p) {
				pid = p
				return true
			}
		}
		return false
	})
	return pid
}

// halfFrame writes the header and half the payload of a 1000-byte rpc request.
func halfFrame(t *testing.T, c net.Conn, rng *rand.Rand) (rest, reply []byte) {
	t.Helper()
	req, want := request("rpc", rng, 1000)
	if _, err := c.Write(req[:500]); err != nil {
		t.Fatal(err)
	}
	return req[500:], want
}

// expectGone checks that the server ends c (end of stream or reset) without a reply.
func expectGone(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(ioTimeout))
	n, err := c.Read(make([]byte, 1))
	if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on the connection of a killed process: n=%d err=%v, want end of stream or reset", n, err)
	}
}

// TestForkChildKilled: SIGKILL to the child serving a connection mid-request ends
// that connection (end of stream or reset), the parent reaps the child (no zombie),
// counts the connection as an I/O error and logs the signal; another connection's
// child is untouched and new connections are served.
func TestForkChildKilled(t *testing.T) {
	if pids := childPids(t); len(pids) != 0 {
		t.Fatalf("children before the test: %v", pids)
	}
	s := start(t, "fork", "rpc", nil)
	rng := rand.New(rand.NewPCG(27, 28))
	other := s.dial(t)
	defer other.Close()
	req, want := request("rpc", rng, 10)
	roundTrip(t, other, req, want)
	otherPid := newChild(t, nil)

	victim := s.dial(t)
	defer victim.Close()
	roundTrip(t, victim, req, want)
	pid := newChild(t, []int{otherPid})
	halfFrame(t, victim, rng)
	otherRest, otherReply := halfFrame(t, other, rng) // a request in flight on the survivor too

	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	expectGone(t, victim)
	eventually(t, "the killed child reaped", func() bool { return !slices.Contains(childPids(t), pid) })
	eventually(t, "the lost connection counted", func() bool {
		st := s.env.Stats.Snapshot()
		return st.Closed == 1 && st.Active == 1 && procGauge(s, "children_live") == 1
	})
	if st := s.env.Stats.Snapshot(); st.IOErrors != 1 || st.ProtoErrors != 0 {
		t.Errorf("stats %+v, want the killed child's connection counted as 1 I/O error", st)
	}
	if logs := s.logs.String(); !strings.Contains(logs, fmt.Sprintf("child %d was killed by killed", pid)) {
		t.Errorf("the child's death is not logged:\n%s", logs)
	}
	roundTrip(t, other, otherRest, otherReply)
	fresh := s.dial(t)
	defer fresh.Close()
	roundTrip(t, fresh, req, want)
	if pids := childPids(t); len(pids) != 2 || !slices.Contains(pids, otherPid) {
		t.Fatalf("children %v, want the survivor %d and the fresh connection's", pids, otherPid)
	}
}

// TestPreforkWorkerKilled: SIGKILL to a prefork worker holding a connection
// mid-request, while another worker holds a connection with a request in flight.
// prefork's designed behaviour (prefork.go): the parent reaps the worker through its
// pidfd (no zombie), counts every connection it held as closed with an I/O error,
// and starts a replacement in its slot, which serves that slot's listening socket.
// The other worker's connection is untouched. (TestPreforkHeals kills a worker under
// load; this adds the mid-request cut, the reaping and the exact accounting.)
//
// Accept mode reuseport: the kernel hashes each connection to one worker's socket,
// so a few connections land on both workers whatever the scheduling; exclusive mode
// may give every sequential connection to one worker.
func TestPreforkWorkerKilled(t *testing.T) {
	const workers = 2
	s := start(t, "prefork", "rpc", func(c *models.Config) { c.Workers = workers; c.Accept = models.AcceptReuseport })
	rng := rand.New(rand.NewPCG(29, 30))
	req, want := request("rpc", rng, 10)
	accepted := func(slot int) int64 { return procGauge(s, fmt.Sprintf("worker%d_accepted", slot)) }

	// Connections until each worker holds at least one; slotOf records whose.
	var conns []*net.TCPConn
	slotOf := map[*net.TCPConn]int{}
	held := make([]int, workers)
	for held[0] == 0 || held[1] == 0 {
		if len(conns) == 64 {
			t.Fatalf("64 connections, held %v: reuseport does not spread", held)
		}
		before := []int64{accepted(0), accepted(1)}
		c := s.dial(t)
		defer c.Close()
		roundTrip(t, c, req, want)
		for slot := range workers {
			if accepted(slot) > before[slot] {
				slotOf[c] = slot
				held[slot]++
			}
		}
		conns = append(conns, c)
	}
	const victimSlot = 0
	pid := int(procGauge(s, "worker0_pid"))
	var survivors []*net.TCPConn
	var rests, replies [][]byte
	for _, c := range conns {
		// A request cut in half on every connection, the victim's and the survivor's.
		rest, reply := halfFrame(t, c, rng)
		if slotOf[c] != victimSlot {
			survivors = append(survivors, c)
			rests, replies = append(rests, rest), append(replies, reply)
		}
	}
	base := s.env.Stats.Snapshot()
	t.Logf("killing worker %d (slot %d) holding %d connections; %d on the other", pid, victimSlot, held[victimSlot], held[1])
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for _, c := range conns {
		if slotOf[c] == victimSlot {
			expectGone(t, c)
		}
	}
	eventually(t, "a replacement worker", func() bool {
		return procGauge(s, "workers_replaced") == 1 && procGauge(s, "workers") == workers &&
			procGauge(s, "worker0_pid") != int64(pid) && procGauge(s, "worker0_pid") != 0
	})
	if slices.Contains(childPids(t), pid) {
		t.Fatalf("killed worker %d not reaped", pid)
	}
	lost := int64(held[victimSlot])
	if st := s.env.Stats.Snapshot(); st.IOErrors != base.IOErrors+lost || st.Closed != base.Closed+lost ||
		st.Active != int64(held[1]) || st.ProtoErrors != 0 {
		t.Fatalf("stats %+v (before the kill %+v), want %d more I/O errors and closed, %d active", st, base, lost, held[1])
	}
	for i, c := range survivors {
		roundTrip(t, c, rests[i], replies[i])
	}
	// The replacement serves the slot's socket: dial until a connection lands there.
	for k := 0; ; k++ {
		if k == 64 {
			t.Fatal("64 fresh connections, none served by the replacement worker")
		}
		before := accepted(victimSlot)
		c := s.dial(t)
		roundTrip(t, c, req, want)
		c.Close()
		if accepted(victimSlot) > before {
			break
		}
	}
}

// TestProcpoolIdleWorkerKilled: SIGKILL to an idle procpool worker costs no
// connection: it is reaped and replaced, counted in workers_lost, and no I/O error
// is counted (TestProcpoolHeals covers a busy worker).
func TestProcpoolIdleWorkerKilled(t *testing.T) {
	const workers = 2
	s := start(t, "procpool", "rpc", func(c *models.Config) { c.Workers = workers })
	eventually(t, "the workers started", func() bool { return len(childPids(t)) == workers })
	c := s.dial(t)
	defer c.Close()
	req, want := request("rpc", rand.New(rand.NewPCG(31, 32)), 10)
	roundTrip(t, c, req, want)
	c.Close()
	eventually(t, "the connection closed", func() bool { return procGauge(s, "workers_busy") == 0 })
	pid := childPids(t)[0]
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a replacement worker", func() bool {
		return procGauge(s, "workers_replaced") == 1 && procGauge(s, "workers") == workers
	})
	if slices.Contains(childPids(t), pid) {
		t.Fatalf("killed worker %d not reaped", pid)
	}
	if st := s.env.Stats.Snapshot(); st.IOErrors != 0 || st.Closed != 1 || st.Active != 0 || st.Gauges["workers_lost"] != 1 {
		t.Fatalf("stats %+v, want no I/O error, 1 closed, workers_lost 1", st)
	}
	for range workers + 1 {
		c := s.dial(t)
		roundTrip(t, c, req, want)
		c.Close()
	}
}

package models_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"concbench/internal/proto"
	"concbench/internal/sock"
	"concbench/models"
)

// The datagram conformance suite: every model that serves udp-echo, at -batch
// 1 (recvfrom/sendto) and 32 (recvmmsg/sendmmsg).

// wantDatagramModels are the models that serve the datagram protocols: a
// model that stopped serving them, or one added without a decision, fails
// TestDatagramModels.
var wantDatagramModels = []string{"epoll-et", "epoll-lt", "goroutine", "multireactor", "poll", "prefork", "reactor", "select", "threadpool", "uring", "uring-sqpoll"}

// startDgram serves udp-echo with model on a loopback UDP socket of its own.
func startDgram(t testing.TB, model string, mutate func(*models.Config)) *server {
	t.Helper()
	return serveOn(t, model, proto.UDPEcho, mutate, func(addr string, allowRemote bool) (*sock.Listener, error) {
		return sock.ListenUDP(addr, allowRemote, false)
	}, func(m models.Model, ctx context.Context, ds *sock.Listener, env *models.Env) error {
		return m.(models.DatagramServer).ServeDatagrams(ctx, ds, env)
	})
}

// dialUDP is a flow: a UDP socket connected to the server.
func (s *server) dialUDP(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.Dial("udp", s.addr)
	if err != nil {
		t.Fatalf("dial udp %s: %v", s.addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.UDPConn)
}

// datagram is a request of n bytes: a sequence number in its first 8 bytes
// (if it has room), then random bytes with lower-case letters among them.
func datagram(rng *rand.Rand, seq uint64, n int) []byte {
	b := randBytes(rng, n)
	if n >= 8 {
		// Digits only, so that the server's upper-casing leaves it as sent.
		copy(b, fmt.Sprintf("%08d", seq%1e8))
	}
	return b
}

// exchange sends req on c and waits up to wait for its reply, resending up to
// tries times: a datagram may be lost, even on loopback, when a receive
// buffer is full. It fails the test on a reply that is not req's.
func exchange(t *testing.T, c *net.UDPConn, req []byte, wait time.Duration, tries int) bool {
	t.Helper()
	want := upper(req)
	buf := make([]byte, 65536)
	for range tries {
		if _, err := c.Write(req); err != nil {
			t.Fatalf("send %d bytes: %v", len(req), err)
		}
		c.SetReadDeadline(time.Now().Add(wait))
		for {
			n, err := c.Read(buf)
			if err != nil {
				break // timed out: send again
			}
			if bytes.Equal(buf[:n], want) {
				return true
			}
			if n >= 8 && len(req) >= 8 && !bytes.Equal(buf[:8], req[:8]) {
				continue // the late reply to an earlier resend or request
			}
			t.Fatalf("reply of %d bytes to a request of %d: not the request upper-cased", n, len(req))
		}
	}
	return false
}

type dgramCase struct {
	name string
	run  func(t *testing.T, model string, batch int)
}

var dgramConformance = []dgramCase{
	{"sizes 1B to the maximum", testDgramSizes},
	{"many flows", testDgramFlows},
	{"burst beyond the socket buffer", testDgramBurst},
	{"oversize datagram", testDgramOversize},
	{"shutdown", testDgramShutdown},
}

func TestDatagramConformance(t *testing.T) {
	for _, model := range models.DatagramModels() {
		for _, batch := range []int{1, 32} {
			for _, tc := range dgramConformance {
				t.Run(fmt.Sprintf("%s/batch=%d/%s", model, batch, tc.name), func(t *testing.T) {
					if tc.name != "shutdown" { // it counts the whole process: alone
						parallel(t, model)
					}
					tc.run(t, model, batch)
				})
			}
		}
	}
}

// TestDatagramModels: which models serve udp-echo is a decision per model;
// those that do not refuse it before they start, saying why.
func TestDatagramModels(t *testing.T) {
	if got := models.DatagramModels(); !slices.Equal(got, wantDatagramModels) {
		t.Errorf("models serving udp-echo: %v, want %v", got, wantDatagramModels)
	}
	for _, model := range models.Names() {
		err := models.Config{Model: model, Proto: proto.UDPEcho, Addr: "127.0.0.1:0"}.Validate()
		if slices.Contains(wantDatagramModels, model) {
			if err != nil {
				t.Errorf("%s: %v", model, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "does not serve -proto udp-echo") || !strings.Contains(err.Error(), "connection") {
			t.Errorf("%s with udp-echo: %v; want a refusal that says why", model, err)
		}
	}
	for _, tc := range []struct {
		cfg  models.Config
		want string
	}{
		{models.Config{Model: "epoll-et", Proto: "echo", Batch: 4}, "-batch and -max-datagram apply to the datagram protocols"},
		{models.Config{Model: "epoll-et", Proto: "rpc", MaxDatagram: 100}, "-batch and -max-datagram apply to the datagram protocols"},
		{models.Config{Model: "epoll-et", Proto: proto.UDPEcho, Batch: models.MaxBatch + 1}, "the most datagrams one recvmmsg moves"},
		{models.Config{Model: "epoll-et", Proto: proto.UDPEcho, MaxDatagram: proto.MaxDatagramIPv6 + 1}, "the largest UDP payload"},
		{models.Config{Model: "epoll-et", Proto: proto.UDPEcho, Addr: "unix:/tmp/x.sock"}, "not a Unix domain socket"},
	} {
		if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error saying %q", tc.cfg, err, tc.want)
		}
	}
}

func testDgramSizes(t *testing.T, model string, batch int) {
	s := startDgram(t, model, func(c *models.Config) { c.Batch = batch })
	c := s.dialUDP(t)
	rng := rand.New(rand.NewPCG(1, uint64(batch)))
	for i, n := range []int{1, 2, 7, 8, 100, 1472, 9000, 65000, proto.MaxDatagramIPv4} {
		if !exchange(t, c, datagram(rng, uint64(i), n), 500*time.Millisecond, 5) {
			t.Fatalf("no reply to a datagram of %d bytes in 5 tries", n)
		}
	}
	// A reply can reach its flow before the server has counted it.
	eventually(t, "every datagram counted in and out, none oversize", func() bool {
		st := s.env.Stats.Snapshot()
		return st.DroppedOversize == 0 && st.DatagramsOut >= 9 && st.DatagramsIn >= st.DatagramsOut
	})
}

// testDgramFlows: many peers at once, each its own socket: every reply goes
// back to the flow that sent the request.
func testDgramFlows(t *testing.T, model string, batch int) {
	long(t)
	s := startDgram(t, model, func(c *models.Config) { c.Batch = batch })
	const flows, each = 200, 20
	conns := make([]*net.UDPConn, flows)
	for i := range conns {
		conns[i] = s.dialUDP(t)
	}
	var wg sync.WaitGroup
	errs := make(chan string, flows)
	for i, c := range conns {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 2))
			buf := make([]byte, 2048)
			for k := range each {
				req := datagram(rng, uint64(k), 64+rng.IntN(512))
				binary.BigEndian.PutUint32(req[8:], uint32(i)) // the flow, to tell a misrouted reply
				want := upper(req)
				got := false
				for try := 0; try < 10 && !got; try++ {
					c.Write(req)
					c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
					for {
						n, err := c.Read(buf)
						if err != nil {
							break
						}
						if bytes.Equal(buf[:n], want) {
							got = true
							break
						}
						if n >= 12 && binary.BigEndian.Uint32(buf[8:]) != uint32(i) {
							errs <- fmt.Sprintf("flow %d got flow %d's reply", i, binary.BigEndian.Uint32(buf[8:]))
							return
						}
					}
				}
				if !got {
					errs <- fmt.Sprintf("flow %d: no reply to its request %d in 10 tries", i, k)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	// A reply can reach its flow before the server has counted it.
	eventually(t, fmt.Sprintf("at least %d replies counted", flows*each), func() bool { return s.env.Stats.Snapshot().DatagramsOut >= flows*each })
}

// testDgramBurst: one peer sends far more than the server's receive buffer
// holds, without waiting. Every datagram is accounted for — read by the
// server or dropped by the kernel at its socket (rcvbuf_drops) — every one
// read is answered or counted dropped, and every reply that arrives is the
// exact echo of one request, at most once.
func testDgramBurst(t *testing.T, model string, batch int) {
	s := startDgram(t, model, func(c *models.Config) { c.Batch = batch })
	c := s.dialUDP(t)
	c.SetReadBuffer(4 << 20)
	const n, size = 20000, 1000
	rng := rand.New(rand.NewPCG(3, uint64(batch)))
	body := randBytes(rng, size)
	got := make([]bool, n)
	var replies, bad int
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		buf := make([]byte, 2048)
		want := upper(body)
		for {
			c.SetReadDeadline(time.Now().Add(time.Second))
			m, err := c.Read(buf)
			if err != nil {
				return
			}
			// The first 8 bytes are the sequence number in decimal digits,
			// which upper-casing leaves as they are.
			seq, err := strconv.Atoi(string(buf[:8]))
			if m != size || err != nil || seq < 0 || seq >= n || got[seq] || !bytes.Equal(buf[8:m], want[8:]) {
				bad++
				continue
			}
			got[seq] = true
			replies++
		}
	}()
	req := slices.Clone(body)
	for i := range n {
		copy(req, fmt.Sprintf("%08d", i))
		if _, err := c.Write(req); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	var st models.StatsSnapshot
	eventuallyOr(t, fmt.Sprintf("%d datagrams read or dropped at the server's socket", n), func() bool {
		st = s.env.Stats.Snapshot()
		return st.DatagramsIn+st.Gauges["rcvbuf_drops"] >= n
	}, func() string { return fmt.Sprintf("%+v", st) })
	<-readerDone
	st = s.env.Stats.Snapshot()
	in, drops := st.DatagramsIn, st.Gauges["rcvbuf_drops"]
	answered := st.DatagramsOut + st.DroppedSendFull + st.DroppedSendError + st.DroppedOversize
	t.Logf("%d sent: server read %d, kernel dropped %d at its socket; %d replies sent, %d dropped full, %d send errors; %d replies came back", n, in, drops, st.DatagramsOut, st.DroppedSendFull, st.DroppedSendError, replies)
	if in+drops != n {
		t.Errorf("server read %d and its socket dropped %d: %d, want exactly the %d sent", in, drops, in+drops, n)
	}
	if answered != in {
		t.Errorf("%d read, %d answered or dropped: want every datagram read accounted for", in, answered)
	}
	if bad != 0 {
		t.Errorf("%d replies were not the echo of a request, or came twice", bad)
	}
	if int64(replies) > st.DatagramsOut || replies == 0 {
		t.Errorf("%d replies came back of %d sent", replies, st.DatagramsOut)
	}
}

func testDgramOversize(t *testing.T, model string, batch int) {
	s := startDgram(t, model, func(c *models.Config) { c.Batch = batch; c.MaxDatagram = 1000 })
	c := s.dialUDP(t)
	rng := rand.New(rand.NewPCG(4, uint64(batch)))
	big := datagram(rng, 1, 1001)
	if _, err := c.Write(big); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the oversize datagram counted", func() bool { return s.env.Stats.Snapshot().DroppedOversize == 1 })
	// Not echoed, not even in part: the next reply is the next request's.
	if !exchange(t, c, datagram(rng, 2, 1000), 500*time.Millisecond, 5) {
		t.Fatal("no reply to a datagram of -max-datagram bytes")
	}
	if st := s.env.Stats.Snapshot(); st.DroppedOversize != 1 {
		t.Errorf("%d dropped oversize, want 1", st.DroppedOversize)
	}
}

// testDgramShutdown: a server cancelled with peers sending leaves no
// descriptor, goroutine or process behind.
func testDgramShutdown(t *testing.T, model string, batch int) {
	fds, goroutines, children := openFDs(t), runtime.NumGoroutine(), childPids(t)
	s := startDgram(t, model, func(c *models.Config) { c.Batch = batch })
	c := s.dialUDP(t)
	rng := rand.New(rand.NewPCG(5, uint64(batch)))
	if !exchange(t, c, datagram(rng, 1, 100), 500*time.Millisecond, 5) {
		t.Fatal("no reply")
	}
	stopSending := make(chan struct{})
	sent := make(chan struct{})
	go func() { // a peer still sending while the server stops
		defer close(sent)
		for {
			select {
			case <-stopSending:
				return
			default:
				c.Write(datagram(rng, 2, 100))
				time.Sleep(100 * time.Microsecond)
			}
		}
	}()
	time.Sleep(20 * time.Millisecond)
	s.stop()
	close(stopSending)
	<-sent
	c.Close()
	eventually(t, fmt.Sprintf("child processes back to %v", children), func() bool { return slices.Equal(childPids(t), children) })
	eventually(t, fmt.Sprintf("goroutines back to %d", goroutines), func() bool { return runtime.NumGoroutine() <= goroutines })
	eventually(t, fmt.Sprintf("descriptors back to %d", fds), func() bool { return openFDs(t) <= fds })
}

// skipNoIPv6 skips a test on a machine without an IPv6 loopback.
func skipNoIPv6(t *testing.T) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM, 0)
	if err == nil {
		err = unix.Bind(fd, &unix.SockaddrInet6{Addr: [16]byte{15: 1}})
		unix.Close(fd)
	}
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
}

// TestDatagramIPv6: udp-echo over IPv6 loopback, where the machine has it.
func TestDatagramIPv6(t *testing.T) {
	skipNoIPv6(t)
	for _, model := range []string{"epoll-et", "goroutine"} {
		t.Run(model, func(t *testing.T) {
			s := startDgram(t, model, func(c *models.Config) { c.Addr = "[::1]:0" })
			if !strings.HasPrefix(s.addr, "[::1]:") {
				t.Fatalf("bound %s, want [::1]:PORT", s.addr)
			}
			c := s.dialUDP(t)
			rng := rand.New(rand.NewPCG(6, 6))
			for i, n := range []int{1, 1000, proto.MaxDatagramIPv4} {
				if !exchange(t, c, datagram(rng, uint64(i), n), 500*time.Millisecond, 5) {
					t.Fatalf("no reply to %d bytes over IPv6", n)
				}
			}
		})
	}
}

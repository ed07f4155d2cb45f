package models_test

// The uring models' datagram path (ServeDatagrams): echo of every size, the
// oversize drop, many peers, and shutdown with operations in flight. The
// shared datagram conformance suite runs over every datagram model besides.

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"concbench/internal/proto"
	"concbench/models"
)

var uringDgramModels = []string{"uring", "uring-sqpoll"}

// startUringDgram is startDgram on addr (an IPv6 one skipped where the
// machine has no IPv6 loopback).
func startUringDgram(t *testing.T, model, addr string, mutate func(*models.Config)) *server {
	t.Helper()
	if strings.HasPrefix(addr, "[") {
		skipNoIPv6(t)
	}
	return startDgram(t, model, func(cfg *models.Config) {
		cfg.Addr = addr
		if mutate != nil {
			mutate(cfg)
		}
	})
}

// uringReadDatagram reads one datagram from c within d: its bytes, or nil and
// false if none came.
func uringReadDatagram(t *testing.T, c *net.UDPConn, d time.Duration) ([]byte, bool) {
	t.Helper()
	buf := make([]byte, proto.MaxDatagramIPv6+1)
	c.SetReadDeadline(time.Now().Add(d))
	n, err := c.Read(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, false
	}
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return buf[:n], true
}

// uringLetters is n random bytes, most of them ASCII letters of either case (the
// ones udp-echo changes or keeps), some of them anything.
func uringLetters(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		switch rng.IntN(4) {
		case 0:
			b[i] = byte(rng.UintN(256))
		case 1:
			b[i] = 'A' + byte(rng.IntN(26))
		default:
			b[i] = 'a' + byte(rng.IntN(26))
		}
	}
	return b
}

// uringCounted waits until the server has received in datagrams and answered or
// dropped every one of them, then checks how: out sent, oversize dropped.
func uringCounted(t *testing.T, s *server, in, out, oversize int64) {
	t.Helper()
	var c models.Counts
	deadline := time.Now().Add(10 * time.Second)
	for {
		c = s.env.Stats.Snapshot().Counts
		if c.DatagramsIn >= in && c.DatagramsOut+c.DroppedOversize+c.DroppedSendFull+c.DroppedSendError >= c.DatagramsIn || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if c.DatagramsIn != in || c.DatagramsOut != out || c.DroppedOversize != oversize || c.DroppedSendFull != 0 || c.DroppedSendError != 0 {
		t.Errorf("counts: in %d, out %d, oversize %d, send full %d, send error %d; want in %d, out %d, oversize %d, no send drop",
			c.DatagramsIn, c.DatagramsOut, c.DroppedOversize, c.DroppedSendFull, c.DroppedSendError, in, out, oversize)
	}
}

// Each datagram comes back to its sender with a–z uppercased and its length
// kept, from 0 bytes (which ends the multishot receive: the model arms it
// again) to 65507 (IPv4's largest), one at a time and in a burst of 32 sent
// before any reply is read; with -batch 1 and 32, over IPv4 and IPv6.
func TestUringDatagramEcho(t *testing.T) {
	for _, model := range uringDgramModels {
		for _, c := range []struct {
			addr  string
			batch int
		}{{"127.0.0.1:0", 1}, {"127.0.0.1:0", 32}, {"[::1]:0", 8}} {
			t.Run(fmt.Sprintf("%s/%s/batch=%d", model, c.addr, c.batch), func(t *testing.T) {
				skipUnavailable(t, model)
				t.Parallel()
				s := startUringDgram(t, model, c.addr, func(cfg *models.Config) { cfg.Batch = c.batch })
				cl := s.dialUDP(t)
				rng := rand.New(rand.NewPCG(19, uint64(c.batch)))
				sizes := []int{0, 1, 1000, proto.MaxDatagramIPv4}
				for _, n := range sizes {
					req := uringLetters(rng, n)
					if _, err := cl.Write(req); err != nil {
						t.Fatalf("send %d bytes: %v", n, err)
					}
					got, ok := uringReadDatagram(t, cl, ioTimeout)
					if !ok {
						t.Fatalf("no reply to a datagram of %d bytes", n)
					}
					if !bytes.Equal(got, upper(req)) {
						t.Fatalf("reply to %d bytes: %d bytes, not the request uppercased", n, len(got))
					}
				}
				const burst = 32
				want := map[string]bool{}
				for i := range burst {
					req := append([]byte(fmt.Sprintf("datagram %d of the burst: ", i)), uringLetters(rng, rng.IntN(1000))...)
					want[string(upper(req))] = true
					if _, err := cl.Write(req); err != nil {
						t.Fatal(err)
					}
				}
				for i := range burst {
					got, ok := uringReadDatagram(t, cl, ioTimeout)
					if !ok {
						t.Fatalf("%d replies to a burst of %d (rcvbuf drops %d)", i, burst, s.env.Stats.Snapshot().Gauges["rcvbuf_drops"])
					}
					if !want[string(got)] {
						t.Fatalf("reply %d of the burst: %.40q…, not one of the requests uppercased, or twice", i, got)
					}
					delete(want, string(got))
				}
				n := int64(len(sizes) + burst)
				uringCounted(t, s, n, n, 0)
			})
		}
	}
}

// With -max-datagram 1000, datagrams of 1001, 5000 and 65507 bytes are
// dropped whole and counted in dropped_oversize, never echoed in part; one of
// exactly 1000 bytes, and the ones after, are answered.
func TestUringDatagramOversize(t *testing.T) {
	for _, model := range uringDgramModels {
		t.Run(model, func(t *testing.T) {
			skipUnavailable(t, model)
			t.Parallel()
			s := startUringDgram(t, model, "127.0.0.1:0", func(cfg *models.Config) { cfg.MaxDatagram = 1000 })
			cl := s.dialUDP(t)
			rng := rand.New(rand.NewPCG(19, 1000))
			var want [][]byte
			for _, n := range []int{1001, 5000, proto.MaxDatagramIPv4, 1000, 7} {
				req := uringLetters(rng, n)
				if n <= 1000 {
					want = append(want, upper(req))
				}
				if _, err := cl.Write(req); err != nil {
					t.Fatalf("send %d bytes: %v", n, err)
				}
			}
			for i, w := range want {
				got, ok := uringReadDatagram(t, cl, ioTimeout)
				if !ok {
					t.Fatalf("reply %d: none", i)
				}
				if !bytes.Equal(got, w) {
					t.Fatalf("reply %d: %d bytes, want the %d-byte request uppercased", i, len(got), len(w))
				}
			}
			if got, ok := uringReadDatagram(t, cl, 200*time.Millisecond); ok {
				t.Fatalf("a reply of %d bytes after the two expected: an oversize datagram echoed", len(got))
			}
			uringCounted(t, s, 5, 2, 3)
		})
	}
}

// 128 peers, each its own socket and so its own address, 16 round trips each
// at once: every reply reaches the peer that sent its request, right.
func TestUringDatagramManyPeers(t *testing.T) {
	const peers, trips = 128, 16
	for _, model := range uringDgramModels {
		t.Run(model, func(t *testing.T) {
			skipUnavailable(t, model)
			t.Parallel()
			s := startUringDgram(t, model, "127.0.0.1:0", func(cfg *models.Config) { cfg.Batch = 16 })
			conns := make([]*net.UDPConn, peers)
			for i := range conns {
				conns[i] = s.dialUDP(t)
			}
			errs := make(chan error, peers)
			var wg sync.WaitGroup
			for p, c := range conns {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(p), 19))
					buf := make([]byte, 2048)
					for i := range trips {
						req := append([]byte(fmt.Sprintf("peer %d trip %d ", p, i)), uringLetters(rng, rng.IntN(500))...)
						if _, err := c.Write(req); err != nil {
							errs <- fmt.Errorf("peer %d: %w", p, err)
							return
						}
						c.SetReadDeadline(time.Now().Add(ioTimeout))
						n, err := c.Read(buf)
						if err != nil {
							errs <- fmt.Errorf("peer %d, trip %d: %w", p, i, err)
							return
						}
						if !bytes.Equal(buf[:n], upper(req)) {
							errs <- fmt.Errorf("peer %d, trip %d: %.40q…, want %.40q…", p, i, buf[:n], upper(req))
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("%v (rcvbuf drops %d)", err, s.env.Stats.Snapshot().Gauges["rcvbuf_drops"])
			}
			uringCounted(t, s, peers*trips, peers*trips, 0)
		})
	}
}

// Cancelled while idle (its receive armed and waiting: only a cancel ends it)
// or while peers flood it (sends in flight, completions waiting to be
// reaped), the server returns at once, having cancelled and reaped every
// operation (it logs if any was still in flight after its wait), with every
// datagram it took counted once, as sent or dropped; and after three such
// runs the process holds no more descriptors (the ring's, the waker's) nor
// goroutines than before.
func TestUringDatagramShutdown(t *testing.T) {
	for _, model := range uringDgramModels {
		t.Run(model, func(t *testing.T) {
			skipUnavailable(t, model)
			fds, goroutines := openFDs(t), runtime.NumGoroutine()
			for run := range 3 {
				uringDgramShutdownRun(t, model, run)
			}
			eventually(t, fmt.Sprintf("goroutines back to %d", goroutines), func() bool { return runtime.NumGoroutine() <= goroutines })
			eventuallyOr(t, fmt.Sprintf("descriptors back to %d", fds), func() bool { return openFDs(t) <= fds },
				func() string { return describeFDs(t) })
		})
	}
}

func uringDgramShutdownRun(t *testing.T, model string, run int) {
	s := startUringDgram(t, model, "127.0.0.1:0", func(cfg *models.Config) { cfg.Batch = 4 * (run + 1) })
	var (
		stop  atomic.Bool
		wg    sync.WaitGroup
		conns []*net.UDPConn
	)
	flooders := 4
	if run == 0 {
		flooders = 0 // idle: three round trips, then nothing
	}
	for f := range flooders {
		c, err := net.Dial("udp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c.(*net.UDPConn))
		wg.Go(func() { // sends as fast as it can; a refused send (the server gone) is ignored
			req := bytes.Repeat([]byte(fmt.Sprintf("flood %d ", f)), 100)
			for !stop.Load() {
				c.Write(req)
			}
		})
		wg.Go(func() { // reads the replies, so that the client's buffer does not fill
			buf := make([]byte, 2048)
			for !stop.Load() {
				c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
				c.Read(buf)
			}
		})
	}
	if run == 0 {
		c := s.dialUDP(t)
		conns = append(conns, c) // closed below, before the descriptors are counted
		for i := range 3 {
			req := []byte(fmt.Sprintf("idle %d", i))
			if _, err := c.Write(req); err != nil {
				t.Fatal(err)
			}
			if got, ok := uringReadDatagram(t, c, ioTimeout); !ok || !bytes.Equal(got, upper(req)) {
				t.Fatalf("run %d, round trip %d: %q, %v", run, i, got, ok)
			}
		}
		time.Sleep(20 * time.Millisecond) // the last send's completion reaped: the receive alone in flight
	} else {
		eventually(t, "the flood to reach the server", func() bool { return s.env.Stats.Snapshot().DatagramsIn > 1000 })
	}
	took := s.stop()
	stop.Store(true)
	wg.Wait()
	for _, c := range conns {
		c.Close()
	}
	if took > time.Second {
		t.Errorf("run %d: ServeDatagrams returned %v after the cancel, want at once", run, took)
	}
	if l := s.logs.String(); strings.Contains(l, "in flight") {
		t.Errorf("run %d: operations left in flight at the end:\n%s", run, l)
	}
	c := s.env.Stats.Snapshot().Counts
	if answered := c.DatagramsOut + c.DroppedOversize + c.DroppedSendFull + c.DroppedSendError; answered != c.DatagramsIn || c.DroppedOversize != 0 {
		t.Errorf("run %d: %d datagrams in, %d out, %d oversize, %d send full, %d send error: want each one in counted once, none oversize",
			run, c.DatagramsIn, c.DatagramsOut, c.DroppedOversize, c.DroppedSendFull, c.DroppedSendError)
	}
	t.Logf("run %d (batch %d, flood %v): %d datagrams in, %d out, %d send full, %d send error (cancelled); returned %v after the cancel",
		run, 4*(run+1), run > 0, c.DatagramsIn, c.DatagramsOut, c.DroppedSendFull, c.DroppedSendError, took)
}

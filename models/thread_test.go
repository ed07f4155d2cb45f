package models_test

// Tests specific to the thread and threadpool models: that threads really follow
// connections (thread) and load (threadpool), that blocking work overlaps, and that
// the threadpool's bounded queue applies back-pressure without losing a request.

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"concbench/internal/proto"
	"concbench/models"
)

// osThreads is the process's thread count as the kernel sees it.
func osThreads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("Threads:")); ok {
			n, err := strconv.Atoi(string(bytes.TrimSpace(v)))
			if err != nil {
				t.Fatalf("Threads line %q: %v", line, err)
			}
			return n
		}
	}
	t.Fatal("no Threads: line in /proc/self/status")
	return 0
}

func gauge(s *server, name string) int64 { return s.env.Stats.Snapshot().Gauges[name] }

// TestThreadOSThreadPerConnection: each live connection holds an OS thread of its
// own, and the thread exits when the connection closes.
func TestThreadOSThreadPerConnection(t *testing.T) {
	const n = 200
	before := osThreads(t)
	s := start(t, "thread", "echo", nil)
	conns := make([]*net.TCPConn, n)
	for i := range conns {
		conns[i] = s.dial(t)
		defer conns[i].Close()
		// A reply proves the connection's thread is running and now blocked in read.
		msg := fmt.Appendf(nil, "conn %d", i)
		roundTrip(t, conns[i], msg, upper(msg))
	}
	if got := gauge(s, "threads_live"); got != n {
		t.Fatalf("threads_live = %d with %d connections open", got, n)
	}
	during := osThreads(t)
	// Threads the runtime had idle before may be taken by connections, so allow a
	// little less than one new thread per connection.
	if during-before < n*9/10 {
		t.Fatalf("OS threads %d → %d with %d connections open, want about %d more", before, during, n, n)
	}
	t.Logf("OS threads: %d before, %d with %d connections", before, during, n)

	for _, c := range conns {
		c.Close()
	}
	eventually(t, "threads_live back to 0", func() bool { return gauge(s, "threads_live") == 0 })
	deadline := time.Now().Add(5 * time.Second)
	for osThreads(t) > before+n/10 {
		if time.Now().After(deadline) {
			t.Fatalf("OS threads still %d 5s after closing %d connections (%d before)", osThreads(t), n, before)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("OS threads after closing: %d", osThreads(t))
	if st := s.env.Stats.Snapshot(); st.Active != 0 || st.Closed != n || st.IOErrors != 0 {
		t.Fatalf("stats %+v, want 0 active, %d closed, no I/O errors", st, n)
	}
}

// rpcLoad runs conns clients, each sending one small rpc request and waiting for its
// reply in a loop for d (closed loop), and returns how many replies came back right.
func rpcLoad(t *testing.T, s *server, conns int, d time.Duration) int64 {
	t.Helper()
	var done atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for i := range conns {
		c := s.dial(t)
		wg.Go(func() {
			defer c.Close()
			rng := rand.New(rand.NewPCG(uint64(i), 99))
			for time.Now().Before(deadline) {
				req, want := request("rpc", rng, 1+rng.IntN(64))
				if _, err := c.Write(req); err != nil {
					t.Errorf("conn %d: write: %v", i, err)
					return
				}
				got := make([]byte, len(want))
				if _, err := io.ReadFull(c, got); err != nil {
					t.Errorf("conn %d: read: %v", i, err)
					return
				}
				if !bytes.Equal(got, want) {
					t.Errorf("conn %d: reply %q, want %q", i, got, want)
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	return done.Load()
}

// TestThreadBlockingWorkOverlaps: with a request that sleeps 10ms, one event loop
// serves about 100 requests a second whatever the number of connections, while a
// thread per connection, or a pool that grows to the load, sleeps on many threads at
// once.
func TestThreadBlockingWorkOverlaps(t *testing.T) {
	const (
		conns = 32
		dur   = 1500 * time.Millisecond
	)
	work := proto.Work{Kind: proto.WorkSleep, D: 10 * time.Millisecond}
	cfg := func(c *models.Config) {
		c.Work = work
		c.MinThreads, c.MaxThreads = 2, 64
		c.AdjustInterval = 100 * time.Millisecond
	}
	baseline := rpcLoad(t, start(t, "epoll-lt", "rpc", cfg), conns, dur)
	t.Logf("epoll-lt: %d requests in %v (%.0f/s)", baseline, dur, float64(baseline)/dur.Seconds())
	if baseline == 0 {
		t.Fatal("epoll-lt served no request")
	}
	for _, tc := range []struct {
		model    string
		minRatio float64
	}{
		{"threadpool", 3},
		{"thread", 3},
	} {
		t.Run(tc.model, func(t *testing.T) {
			s := start(t, tc.model, "rpc", cfg)
			got := rpcLoad(t, s, conns, dur)
			ratio := float64(got) / float64(baseline)
			t.Logf("%s: %d requests in %v (%.0f/s), %.1fx epoll-lt", tc.model, got, dur, float64(got)/dur.Seconds(), ratio)
			if ratio <= tc.minRatio {
				t.Fatalf("%s served %d requests, epoll-lt %d: ratio %.1f, want > %.0f", tc.model, got, baseline, ratio, tc.minRatio)
			}
		})
	}
}

// TestThreadpoolResizes: the manager grows the pool while tasks queue up, and once
// the load stops shrinks it back to its minimum, and the OS threads go with it.
func TestThreadpoolResizes(t *testing.T) {
	const (
		minThreads = 2
		maxThreads = 30
		conns      = 40
	)
	s := start(t, "threadpool", "rpc", func(c *models.Config) {
		c.Work = proto.Work{Kind: proto.WorkSleep, D: 20 * time.Millisecond}
		c.MinThreads, c.MaxThreads = minThreads, maxThreads
		c.AdjustInterval = 50 * time.Millisecond
	})
	eventually(t, "the pool to start its minimum", func() bool { return gauge(s, "threads_live") == minThreads })

	var peakLive, peakQueue, peakBusy, peakOS atomic.Int64
	watchDone := make(chan struct{})
	stopWatch := make(chan struct{})
	go func() {
		defer close(watchDone)
		for {
			g := s.env.Stats.Snapshot().Gauges
			for _, x := range []struct {
				peak *atomic.Int64
				v    int64
			}{{&peakLive, g["threads_live"]}, {&peakQueue, g["queue_len"]}, {&peakBusy, g["threads_busy"]}} {
				if x.v > x.peak.Load() {
					x.peak.Store(x.v)
				}
			}
			if n := int64(osThreads(t)); n > peakOS.Load() {
				peakOS.Store(n)
			}
			select {
			case <-stopWatch:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	served := rpcLoad(t, s, conns, time.Second)
	close(stopWatch)
	<-watchDone
	t.Logf("load: %d requests; peaks: threads_live %d, threads_busy %d, queue_len %d, OS threads %d",
		served, peakLive.Load(), peakBusy.Load(), peakQueue.Load(), peakOS.Load())
	if peakQueue.Load() < 10 {
		t.Errorf("queue_len peaked at %d with %d connections and %d threads, want a queue (>= 10)", peakQueue.Load(), conns, minThreads)
	}
	if peakLive.Load() < minThreads+20 {
		t.Fatalf("threads_live peaked at %d, want it grown by at least two steps of 10 from %d", peakLive.Load(), minThreads)
	}
	if peakLive.Load() > maxThreads {
		t.Fatalf("threads_live peaked at %d, above max %d", peakLive.Load(), maxThreads)
	}

	eventually(t, "threads_live to shrink back to the minimum", func() bool { return gauge(s, "threads_live") == minThreads })
	grown := int(peakLive.Load()) - minThreads
	eventually(t, "OS threads to follow the pool down", func() bool { return int(peakOS.Load())-osThreads(t) >= grown/2 })
	t.Logf("after the load: threads_live %d, OS threads %d", gauge(s, "threads_live"), osThreads(t))
}

// TestThreadpoolQueueBackPressure: a queue far smaller than the number of ready
// connections makes the poller wait for room; no task is dropped, so every request
// of every connection is answered.
func TestThreadpoolQueueBackPressure(t *testing.T) {
	tests := []struct {
		name               string
		queueCap, min, max int
	}{
		{"queue of 1, one thread", 1, 1, 1},
		{"queue of 4, two threads", 4, 2, 2},
		{"queue of 16, 1 to 8 threads", 16, 1, 8},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, "threadpool", "rpc", func(c *models.Config) {
				c.Work = proto.Work{Kind: proto.WorkSleep, D: time.Millisecond}
				c.QueueCap, c.MinThreads, c.MaxThreads = tc.queueCap, tc.min, tc.max
				c.AdjustInterval = 20 * time.Millisecond
			})
			const conns, perConn = 64, 3
			rng := rand.New(rand.NewPCG(21, 22))
			cs := make([]*net.TCPConn, conns)
			wants := make([][]byte, conns)
			for i := range cs {
				cs[i] = s.dial(t)
				defer cs[i].Close()
			}
			// Every connection sends all its requests before any reply is read, so
			// far more connections are ready than the queue holds.
			for i, c := range cs {
				var req []byte
				for range perConn {
					r, w := request("rpc", rng, rng.IntN(100))
					req, wants[i] = append(req, r...), append(wants[i], w...)
				}
				if _, err := c.Write(req); err != nil {
					t.Fatalf("conn %d: %v", i, err)
				}
			}
			for i, c := range cs {
				got := make([]byte, len(wants[i]))
				if _, err := io.ReadFull(c, got); err != nil {
					t.Fatalf("conn %d: %v", i, err)
				}
				checkEqual(t, got, wants[i])
			}
			if live := gauge(s, "threads_live"); live < int64(tc.min) || live > int64(tc.max) {
				t.Fatalf("threads_live = %d, want within [%d, %d]", live, tc.min, tc.max)
			}
			if q := gauge(s, "queue_len"); q > int64(tc.queueCap) {
				t.Fatalf("queue_len = %d above its capacity %d", q, tc.queueCap)
			}
		})
	}
}

// TestThreadShutdownWakesBlockedThreads: Serve returns promptly even while a
// connection's thread sleeps in write(2) against a peer that stopped reading and
// another's sleeps in read(2) — close(2) would wake neither; shutdown(2) must.
func TestThreadShutdownWakesBlockedThreads(t *testing.T) {
	for _, model := range []string{"thread", "threadpool"} {
		t.Run(model, func(t *testing.T) {
			s := start(t, model, "echo", nil)
			reader := s.dial(t) // its thread blocks in read
			defer reader.Close()
			roundTrip(t, reader, []byte("x"), []byte("X"))
			writer := s.dial(t) // its thread blocks in write: this client never reads
			defer writer.Close()
			writer.SetWriteDeadline(time.Now().Add(time.Second))
			n, err := writer.Write(make([]byte, 64<<20))
			if err == nil {
				t.Fatalf("wrote %d bytes without reading a reply", n)
			}
			begin := time.Now()
			s.stop() // fails the test if Serve does not return nil within 10s
			if d := time.Since(begin); d > 2*time.Second {
				t.Errorf("Serve took %v to return with a thread blocked in write", d)
			}
			if st := s.env.Stats.Snapshot(); st.Active != 0 || st.Closed != 2 {
				t.Fatalf("after shutdown: %+v, want 0 active, 2 closed", st)
			}
			expectEOF(t, reader)
		})
	}
}

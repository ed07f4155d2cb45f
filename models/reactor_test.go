package models_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"concbench/models"
)

// TestReactorIdleSweep: a connection silent for longer than IdleTimeout is closed by
// the server, while one that makes a round trip every 50ms stays open and working;
// the idle_closed counter counts exactly the one closure.
func TestReactorIdleSweep(t *testing.T) {
	const idle = 300 * time.Millisecond
	s := start(t, "reactor", "echo", func(c *models.Config) { c.IdleTimeout = idle })
	quiet := s.dial(t)
	defer quiet.Close()
	dialed := time.Now()
	active := s.dial(t)
	defer active.Close()

	type readResult struct {
		n     int
		err   error
		after time.Duration
	}
	closed := make(chan readResult, 1)
	go func() {
		n, err := quiet.Read(make([]byte, 1))
		closed <- readResult{n, err, time.Since(dialed)}
	}()

	rng := rand.New(rand.NewPCG(21, 22))
	trips := 0
	for time.Since(dialed) < 4*idle {
		req, want := request("echo", rng, 1+rng.IntN(100))
		roundTrip(t, active, req, want)
		trips++
		time.Sleep(50 * time.Millisecond)
	}
	var r readResult
	select {
	case r = <-closed:
	case <-time.After(ioTimeout):
		t.Fatal("the quiet connection is still open")
	}
	if r.n != 0 || r.err == nil || errors.Is(r.err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on the quiet connection: n=%d err=%v, want the server to close it", r.n, r.err)
	}
	if r.after < idle {
		t.Errorf("quiet connection closed %v after it was opened, before the %v timeout", r.after, idle)
	}
	t.Logf("quiet connection closed after %v; %d round trips on the active one", r.after, trips)

	req, want := request("echo", rng, 1000)
	roundTrip(t, active, req, want)
	st := s.env.Stats.Snapshot()
	if got := st.IdleClosed; got != 1 {
		t.Errorf("idle_closed = %d, want 1", got)
	}
	if st.Active != 1 || st.Closed != 1 {
		t.Errorf("stats %+v, want 1 active and 1 closed", st)
	}
}

// TestReactorNoIdleTimeout: with IdleTimeout 0 nothing is swept.
func TestReactorNoIdleTimeout(t *testing.T) {
	s := start(t, "reactor", "echo", nil)
	c := s.dial(t)
	defer c.Close()
	time.Sleep(300 * time.Millisecond)
	roundTrip(t, c, []byte("still here"), []byte("STILL HERE"))
	if got := s.env.Stats.Snapshot().IdleClosed; got != 0 {
		t.Errorf("idle_closed = %d, want 0", got)
	}
}

// loopGauges reads loopN_accepted and loopN_conns for loops 0..n-1.
func loopGauges(t *testing.T, s *server, n int) (accepted, conns []int64) {
	t.Helper()
	g := s.env.Stats.Snapshot().Gauges
	for i := range n {
		a, ok1 := g[fmt.Sprintf("loop%d_accepted", i)]
		c, ok2 := g[fmt.Sprintf("loop%d_conns", i)]
		if !ok1 || !ok2 {
			t.Fatalf("gauges of loop %d missing: %v", i, g)
		}
		accepted, conns = append(accepted, a), append(conns, c)
	}
	return accepted, conns
}

// dialTracked dials and tells which loop the connection was handed to: the one whose
// loopN_accepted moved.
func dialTracked(t *testing.T, s *server, loops int) (*net.TCPConn, int) {
	t.Helper()
	before, _ := loopGauges(t, s, loops)
	c := s.dial(t)
	var after []int64
	eventually(t, "the hand-off", func() bool {
		after, _ = loopGauges(t, s, loops)
		return !slices.Equal(after, before)
	})
	loop := -1
	for i := range after {
		switch d := after[i] - before[i]; {
		case d == 1 && loop < 0:
			loop = i
		case d != 0:
			t.Fatalf("accepted went from %v to %v on one dial", before, after)
		}
	}
	return c, loop
}

// startMulti starts multireactor with 2 loops and the given balance, and waits for
// Serve to publish its gauges.
func startMulti(t *testing.T, balance string) *server {
	t.Helper()
	s := start(t, "multireactor", "echo", func(c *models.Config) { c.Loops = 2; c.Balance = balance })
	eventually(t, "the loops' gauges", func() bool {
		g := s.env.Stats.Snapshot().Gauges
		_, ok := g["loop1_accepted"]
		return ok
	})
	return s
}

func TestMultiReactorRoundRobin(t *testing.T) {
	s := startMulti(t, "rr")
	rng := rand.New(rand.NewPCG(23, 24))
	var conns []*net.TCPConn
	for i := range 10 {
		c, loop := dialTracked(t, s, 2)
		defer c.Close()
		if loop != i%2 {
			t.Errorf("connection %d went to loop %d, want %d", i, loop, i%2)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		req, want := request("echo", rng, 1+rng.IntN(5000))
		roundTrip(t, c, req, want)
	}
	accepted, live := loopGauges(t, s, 2)
	if !slices.Equal(accepted, []int64{5, 5}) || !slices.Equal(live, []int64{5, 5}) {
		t.Fatalf("accepted %v, live %v; want 5/5 and 5/5", accepted, live)
	}
	for _, c := range conns {
		c.Close()
	}
	eventually(t, "both loops to close their connections", func() bool {
		_, live := loopGauges(t, s, 2)
		return slices.Equal(live, []int64{0, 0})
	})
	if st := s.env.Stats.Snapshot(); st.Accepted != 10 || st.Closed != 10 {
		t.Fatalf("stats %+v, want 10 accepted and closed", st)
	}
}

func TestMultiReactorLeast(t *testing.T) {
	s := startMulti(t, "least")
	rng := rand.New(rand.NewPCG(25, 26))
	onLoop := map[int][]*net.TCPConn{}
	var order []int
	for range 4 {
		c, loop := dialTracked(t, s, 2)
		defer c.Close()
		onLoop[loop] = append(onLoop[loop], c)
		order = append(order, loop)
	}
	// Ties go to the first loop: 0, then 1 (fewer), then 0, then 1.
	if !slices.Equal(order, []int{0, 1, 0, 1}) {
		t.Fatalf("loops of the first 4 connections %v, want [0 1 0 1]", order)
	}
	for _, c := range onLoop[0] {
		c.Close()
	}
	eventually(t, "loop 0 to close its connections", func() bool {
		_, live := loopGauges(t, s, 2)
		return slices.Equal(live, []int64{0, 2})
	})
	for i := range 2 {
		c, loop := dialTracked(t, s, 2)
		defer c.Close()
		if loop != 0 {
			t.Fatalf("connection %d after loop 0 emptied went to loop %d, want 0", i, loop)
		}
		onLoop[0] = append(onLoop[0], c)
	}
	for _, c := range append(onLoop[0][2:], onLoop[1]...) {
		req, want := request("echo", rng, 1+rng.IntN(5000))
		roundTrip(t, c, req, want)
	}
	accepted, live := loopGauges(t, s, 2)
	if !slices.Equal(accepted, []int64{4, 2}) || !slices.Equal(live, []int64{2, 2}) {
		t.Fatalf("accepted %v, live %v; want [4 2] and [2 2]", accepted, live)
	}
}

// TestMultiReactorBadBalance: an unknown balance policy is refused before any
// server starts (Config.Validate, through NewEnv).
func TestMultiReactorBadBalance(t *testing.T) {
	_, err := models.NewEnv(models.Config{Model: "multireactor", Proto: "echo", Balance: "random"}, nil)
	if !errors.Is(err, models.ErrConfig) || !strings.Contains(err.Error(), "rr, least") {
		t.Fatalf("NewEnv with balance \"random\" = %v, want an error wrapping ErrConfig naming rr, least", err)
	}
}

// TestReactorsBackOffOnEMFILE: when accept4 fails for lack of descriptors, reactor
// and multireactor's acceptor pause accepting instead of spinning on the readable
// listener, keep serving their connections, and accept the waiting one once
// descriptors are free again. The descriptor limit is lowered for the duration (the
// package's tests do not run in parallel) and restored.
func TestReactorsBackOffOnEMFILE(t *testing.T) {
	for _, model := range []string{"reactor", "multireactor"} {
		t.Run(model, func(t *testing.T) {
			s := start(t, model, "echo", nil)
			ok := s.dial(t)
			defer ok.Close()
			roundTrip(t, ok, []byte("before"), []byte("BEFORE"))

			var old unix.Rlimit
			if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
				t.Fatal(err)
			}
			low := old
			low.Cur = uint64(openFDs(t) + 16)
			if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
				t.Fatal(err)
			}
			var fillers []int
			release := func() {
				for _, fd := range fillers {
					unix.Close(fd)
				}
				fillers = nil
				if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
					t.Error(err)
				}
			}
			defer release()
			for {
				fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
				if err == unix.EMFILE {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				fillers = append(fillers, fd)
			}
			// Free one descriptor for the client's socket: the server has none left
			// for its end.
			unix.Close(fillers[len(fillers)-1])
			fillers = fillers[:len(fillers)-1]
			waiting := s.dial(t)
			defer waiting.Close()
			t0 := time.Now()
			eventually(t, "an accept pause", func() bool { return s.env.Stats.Snapshot().AcceptPauses > 0 })
			roundTrip(t, ok, []byte("during"), []byte("DURING"))
			time.Sleep(500 * time.Millisecond)
			pauses, elapsed := s.env.Stats.Snapshot().AcceptPauses, time.Since(t0)
			// One failed accept per 100ms pause, give or take the edges: a loop that
			// spun on the readable listener would count thousands.
			if limit := int64(elapsed/(100*time.Millisecond)) + 2; pauses > limit {
				t.Errorf("%d accept pauses in %v, want at most %d: accepting is not backing off", pauses, elapsed, limit)
			}
			release()
			roundTrip(t, waiting, []byte("after"), []byte("AFTER"))
			if st := s.env.Stats.Snapshot(); st.Active != 2 {
				t.Errorf("stats %+v, want 2 active", st)
			}
			t.Logf("%d accept pauses in %v", pauses, elapsed)
		})
	}
}

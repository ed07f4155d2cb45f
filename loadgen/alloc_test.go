package loadgen

import (
	"net"
	"testing"
	"time"

	"concbench/internal/result"
)

// cycleLoop is one loop with one closed-loop connection to an uppercasing server
// whose own path does not allocate, loading, ready for cycle. Uppercasing every
// byte serves rpc too: a frame header of a small length has no byte in a–z.
func cycleLoop(tb testing.TB, w result.Workload) (*loop, func()) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			for i, b := range buf[:n] {
				if b-'a' < 26 {
					buf[i] = b - ('a' - 'A')
				}
			}
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
	}()
	w.Addr = ln.Addr().String()
	w, err = Resolve(w)
	if err != nil {
		tb.Fatal(err)
	}
	sh, err := newShared(Config{Workload: w}, time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	l, err := newLoop(sh, -1, []int{0}, 1, func(int) int64 { return -1 }, 1)
	if err != nil {
		tb.Fatal(err)
	}
	l.rampFill(l.now())
	for l.resolved < 1 {
		l.poll()
	}
	if l.conns[0].state != stOpen {
		tb.Fatalf("connect failed: %v", l.st.errors)
	}
	l.t0 = l.now()
	l.warmEnd, l.end = l.t0, l.t0+int64(time.Hour)
	l.begin()
	return l, func() { l.close(); ln.Close() }
}

// cycle runs the loop until one more reply has completed.
func (l *loop) cycle() {
	want := l.st.requests + 1
	for l.st.requests < want {
		l.poll()
	}
}

// BenchmarkRequestCycle is one request cycle of the engine: write, epoll_wait,
// read, verify, record, next write. It must report 0 allocs/op.
func BenchmarkRequestCycle(b *testing.B) {
	for _, p := range []string{"echo", "rpc"} {
		b.Run(p, func(b *testing.B) {
			l, done := cycleLoop(b, result.Workload{Proto: p, Size: 64})
			defer done()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				l.cycle()
			}
			b.StopTimer()
			if l.st.errors != [numErrorKinds]int64{} {
				b.Fatalf("errors: %v", l.st.errors)
			}
		})
	}
}

// TestRequestCycleAllocs holds the hot path to zero allocations, pipelined too.
func TestRequestCycleAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation allocates")
	}
	for _, pipe := range []int{1, 4} {
		l, done := cycleLoop(t, result.Workload{Proto: "rpc", Size: 64, Pipeline: pipe})
		if a := testing.AllocsPerRun(2000, l.cycle); a != 0 {
			t.Errorf("pipeline %d: %v allocs per request cycle, want 0", pipe, a)
		}
		done()
	}
}

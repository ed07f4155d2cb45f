package loadgen

import (
	"net"
	"testing"
	"time"

	"concbench/internal/proto"
	"concbench/internal/result"
	"concbench/internal/testfiles"
)

// cycleLoop is one loop with one closed-loop connection to a server whose own path
// does not allocate, loading, ready for cycle. For echo and rpc the server
// uppercases every byte (which serves rpc too: a frame header of a small length
// has no byte in a–z); for file and http it answers every request, whose length it
// knows, with a precomputed correct reply.
func cycleLoop(tb testing.TB, w result.Workload) (*loop, func()) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var reqLen int
	var reply []byte
	switch w.Proto {
	case "file":
		b, _ := testfiles.Content(w.File)
		reqLen, reply = len(proto.AppendFrame(nil, []byte(w.File))), fileReplyBytes(len(b), b, 64<<10)
	case "http":
		b, _ := testfiles.Content(w.Path[1:])
		reqLen, reply = len(httpRequest(w.Path, ln.Addr().String(), false)), httpReplyBytes(b, "Content-Type: text/html")
	}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64<<10)
		pending := 0 // request bytes received and not answered (file, http)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if reply != nil {
				for pending += n; pending >= reqLen; pending -= reqLen {
					if _, err := c.Write(reply); err != nil {
						return
					}
				}
				continue
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
		l.poll(l.now())
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
		l.poll(l.now())
	}
}

// BenchmarkRequestCycle is one request cycle of the engine: write, epoll_wait,
// read, verify, record, next write. It must report 0 allocs/op.
func BenchmarkRequestCycle(b *testing.B) {
	for _, w := range cycleWorkloads {
		b.Run(cycleName(w), func(b *testing.B) {
			l, done := cycleLoop(b, w)
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

// cycleWorkloads are the request cycles measured: each protocol, and files whose
// replies take one read and many.
var cycleWorkloads = []result.Workload{
	{Proto: "echo", Size: 64},
	{Proto: "rpc", Size: 64},
	{Proto: "file", File: "1k.bin"},
	{Proto: "file", File: "1m.bin"},
	{Proto: "http", Path: "/index.html"},
	{Proto: "http", Path: "/64k.bin"},
}

func cycleName(w result.Workload) string {
	switch w.Proto {
	case "file":
		return "file-" + w.File
	case "http":
		return "http-" + w.Path[1:]
	}
	return w.Proto
}

// TestRequestCycleAllocs holds the hot path to zero allocations for every
// protocol, pipelined too. Not parallel: AllocsPerRun counts the allocations of
// the whole process.
func TestRequestCycleAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation allocates")
	}
	for _, w := range cycleWorkloads {
		for _, pipe := range []int{1, 4} {
			w.Pipeline = pipe
			l, done := cycleLoop(t, w)
			runs := 2000
			if w.File == "1m.bin" {
				runs = 100
			}
			if a := testing.AllocsPerRun(runs, l.cycle); a != 0 {
				t.Errorf("%s pipeline %d: %v allocs per request cycle, want 0", cycleName(w), pipe, a)
			}
			if l.st.errors != [numErrorKinds]int64{} {
				t.Errorf("%s pipeline %d: errors %v", cycleName(w), pipe, l.st.errors)
			}
			done()
		}
	}
}

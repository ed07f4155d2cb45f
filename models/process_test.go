package models_test

// Tests of the process models (fork, procpool, prefork) beyond the conformance
// suite: what a bounded pool does with one connection too many, clean shutdown with
// no process left behind, healing after a worker is killed, and prefork's accept
// distribution. Children are this test binary re-executed (see main_test.go).

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"concbench/models"
)

// parsePPID reads the parent pid from the text of /proc/PID/stat. The command name
// (field 2) is in parentheses and may itself hold spaces and parentheses, so the
// fields are counted from the last ')'.
func parsePPID(stat string) (int, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat %q: no ')'", stat)
	}
	f := strings.Fields(stat[i+1:]) // state, ppid, …
	if len(f) < 2 {
		return 0, fmt.Errorf("stat %q: too few fields", stat)
	}
	return strconv.Atoi(f[1])
}

func TestParsePPID(t *testing.T) {
	tests := []struct {
		stat string
		want int
	}{
		{"1234 (concbench-fork) S 77 1234 1234 0 -1 4194560", 77},
		{"99 (a) b) (c) Z 5 99 99 0", 5},
	}
	for _, tt := range tests {
		got, err := parsePPID(tt.stat)
		if err != nil || got != tt.want {
			t.Errorf("parsePPID(%q) = %d, %v; want %d", tt.stat, got, err, tt.want)
		}
	}
	if _, err := parsePPID("no parenthesis 1 2"); err == nil {
		t.Error("parsePPID accepted a line without ')'")
	}
}

// childPids lists the processes whose parent is this test process, zombies included.
func childPids(t *testing.T) []int {
	t.Helper()
	paths, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // exited meanwhile
		}
		ppid, err := parsePPID(string(b))
		if err != nil {
			t.Fatal(err)
		}
		if ppid == os.Getpid() {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids
}

func procGauge(s *server, name string) int64 { return s.env.Stats.Snapshot().Gauges[name] }

// expectNoReply checks that nothing comes back on c within d.
func expectNoReply(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	n, err := c.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read within %v: n=%d err=%v, want no reply yet", d, n, err)
	}
	c.SetReadDeadline(time.Now().Add(ioTimeout))
}

// TestOneTooMany: procpool with N workers and fork capped at N children serve N
// connections at once; the N+1th waits in the backlog (no reply within 300ms) and is
// served as soon as one of the N closes.
func TestOneTooMany(t *testing.T) {
	const n = 2
	for _, tc := range []struct {
		model, gauge string
		cfg          func(*models.Config)
	}{
		{"procpool", "workers_busy", func(c *models.Config) { c.Workers = n }},
		{"fork", "children_live", func(c *models.Config) { c.MaxProcs = n }},
	} {
		t.Run(tc.model, func(t *testing.T) {
			s := start(t, tc.model, "echo", tc.cfg)
			var conns []*net.TCPConn
			for i := range n {
				c := s.dial(t)
				defer c.Close()
				roundTrip(t, c, []byte("conn "+strconv.Itoa(i)), []byte("CONN "+strconv.Itoa(i)))
				conns = append(conns, c)
			}
			if g := procGauge(s, tc.gauge); g != n {
				t.Fatalf("%s = %d with %d connections served, want %d", tc.gauge, g, n, n)
			}
			extra := s.dial(t)
			defer extra.Close()
			if _, err := extra.Write([]byte("waiting")); err != nil {
				t.Fatal(err)
			}
			expectNoReply(t, extra, 300*time.Millisecond)
			if st := s.env.Stats.Snapshot(); st.Active != n {
				t.Fatalf("stats %+v while one connection waits, want %d active", st, n)
			}
			conns[0].Close()
			got := make([]byte, len("WAITING"))
			if _, err := io.ReadFull(extra, got); err != nil || string(got) != "WAITING" {
				t.Fatalf("after a slot freed: got %q, %v; want WAITING", got, err)
			}
			roundTrip(t, conns[1], []byte("still"), []byte("STILL"))
		})
	}
}

// TestStopLeavesNoProcess: cancelling Serve with idle, mid-request and busy
// connections terminates and reaps every child — none left, not even a zombie.
func TestStopLeavesNoProcess(t *testing.T) {
	for _, tc := range []struct {
		name, model string
		cfg         func(*models.Config)
		procs       int // children expected while serving 3 connections
	}{
		{"fork", "fork", nil, 3},
		{"procpool", "procpool", func(c *models.Config) { c.Workers = 3 }, 3},
		{"prefork-exclusive", "prefork", func(c *models.Config) { c.Workers = 2 }, 2},
		{"prefork-reuseport", "prefork", func(c *models.Config) { c.Workers = 2; c.Accept = "reuseport" }, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if pids := childPids(t); len(pids) != 0 {
				t.Fatalf("children before the test: %v", pids)
			}
			s := start(t, tc.model, "rpc", tc.cfg)
			idle, mid, busy := s.dial(t), s.dial(t), s.dial(t)
			defer idle.Close()
			defer mid.Close()
			defer busy.Close()
			mid.Write([]byte{0, 0, 1}) // a header cut short
			req := []byte("\x00\x00\x00\x02ok")
			roundTrip(t, busy, req, []byte("\x00\x00\x00\x02OK"))
			eventually(t, "3 active connections", func() bool { return s.env.Stats.Snapshot().Active == 3 })
			if pids := childPids(t); len(pids) != tc.procs {
				t.Fatalf("children while serving: %v, want %d", pids, tc.procs)
			}
			s.stop()
			if pids := childPids(t); len(pids) != 0 {
				t.Fatalf("children left after Serve returned: %v", pids)
			}
			for _, c := range []net.Conn{idle, mid, busy} {
				expectEOF(t, c)
			}
			if st := s.env.Stats.Snapshot(); st.Active != 0 || st.Closed != 3 || st.IOErrors != 0 {
				t.Fatalf("after stop: %+v, want 0 active, 3 closed, no I/O errors", st)
			}
		})
	}
}

// loadConn does round trips on c until stop is closed or one fails, counting them.
type loadConn struct {
	c     net.Conn
	trips atomic.Int64
	err   error
}

func (l *loadConn) run(stop <-chan struct{}) {
	req := []byte("load load load load")
	want := []byte("LOAD LOAD LOAD LOAD")
	got := make([]byte, len(want))
	for {
		select {
		case <-stop:
			return
		default:
		}
		if _, err := l.c.Write(req); err != nil {
			l.err = err
			return
		}
		if _, err := io.ReadFull(l.c, got); err != nil {
			l.err = err
			return
		}
		if string(got) != string(want) {
			l.err = fmt.Errorf("reply %q, want %q", got, want)
			return
		}
		l.trips.Add(1)
	}
}

// underLoad starts round trips on every connection and returns a function that
// stops them and returns them.
func underLoad(conns []net.Conn) (stop func() []*loadConn) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	ls := make([]*loadConn, len(conns))
	for i, c := range conns {
		ls[i] = &loadConn{c: c}
		wg.Go(func() { ls[i].run(done) })
	}
	return func() []*loadConn {
		close(done)
		wg.Wait()
		return ls
	}
}

// TestProcpoolHeals: SIGKILL to one busy worker under load costs exactly the
// connection it held (counted as an I/O error); the others keep going, the worker
// is replaced, and the pool serves new connections with all its workers.
func TestProcpoolHeals(t *testing.T) {
	const n = 3
	s := start(t, "procpool", "echo", func(c *models.Config) { c.Workers = n })
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i] = s.dial(t)
		defer conns[i].Close()
	}
	stop := underLoad(conns)
	eventually(t, "every worker busy", func() bool { return procGauge(s, "workers_busy") == n })
	pids := childPids(t)
	if len(pids) != n {
		t.Fatalf("workers %v, want %d", pids, n)
	}
	victim := pids[0]
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a replacement worker", func() bool { return procGauge(s, "workers_replaced") == 1 && procGauge(s, "workers") == n })
	time.Sleep(100 * time.Millisecond) // the survivors keep working meanwhile
	failed, before := 0, make([]int64, n)
	ls := stop()
	for i, l := range ls {
		before[i] = l.trips.Load()
		if l.err != nil {
			failed++
			t.Logf("connection %d ended after %d round trips: %v", i, before[i], l.err)
		}
	}
	if failed != 1 {
		t.Fatalf("%d connections failed after killing one worker, want exactly 1", failed)
	}
	for i, l := range ls {
		if l.err == nil {
			req, want := []byte("after"), []byte("AFTER")
			roundTrip(t, conns[i], req, want)
		}
	}
	st := s.env.Stats.Snapshot()
	if st.IOErrors != 1 || st.Gauges["workers_lost"] != 1 {
		t.Fatalf("stats %+v, want 1 I/O error and workers_lost 1", st)
	}
	if slices.Contains(childPids(t), victim) {
		t.Fatalf("killed worker %d not reaped", victim)
	}
	// The lost connection freed its slot: a new one is served by the replacement.
	fresh := s.dial(t)
	defer fresh.Close()
	roundTrip(t, fresh, []byte("fresh"), []byte("FRESH"))
	t.Logf("stats after healing: %+v", st)
}

// TestPreforkHeals: SIGKILL to one prefork worker under load costs the connections
// that worker held, no other; it is replaced and new connections are served.
func TestPreforkHeals(t *testing.T) {
	for _, mode := range []string{"exclusive", "reuseport"} {
		t.Run(mode, func(t *testing.T) {
			const n, nconns = 2, 20
			s := start(t, "prefork", "echo", func(c *models.Config) { c.Workers = n; c.Accept = mode })
			conns := make([]net.Conn, nconns)
			for i := range conns {
				conns[i] = s.dial(t)
				defer conns[i].Close()
				roundTrip(t, conns[i], []byte("x"), []byte("X"))
			}
			stop := underLoad(conns)
			eventually(t, "all connections active", func() bool { return s.env.Stats.Snapshot().Active == nconns })
			// Kill the worker holding the most connections (no connection has
			// closed, so accepted = held).
			snap := s.env.Stats.Snapshot()
			slot := 0
			for i := range n {
				if snap.Gauges[fmt.Sprintf("worker%d_accepted", i)] > snap.Gauges[fmt.Sprintf("worker%d_accepted", slot)] {
					slot = i
				}
			}
			held := snap.Gauges[fmt.Sprintf("worker%d_accepted", slot)]
			pid := snap.Gauges[fmt.Sprintf("worker%d_pid", slot)]
			t.Logf("killing worker %d (slot %d), holding %d of %d connections", pid, slot, held, nconns)
			if err := syscall.Kill(int(pid), syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			eventually(t, "a replacement worker", func() bool {
				return procGauge(s, "workers_replaced") == 1 && procGauge(s, "workers") == n &&
					procGauge(s, fmt.Sprintf("worker%d_pid", slot)) != pid
			})
			time.Sleep(100 * time.Millisecond)
			failed := 0
			for _, l := range stop() {
				if l.err != nil {
					failed++
				}
			}
			if int64(failed) != held {
				t.Fatalf("%d connections failed, want the %d the killed worker held", failed, held)
			}
			eventually(t, "the lost connections counted", func() bool {
				st := s.env.Stats.Snapshot()
				return st.IOErrors == held && st.Active == nconns-held
			})
			for range 4 {
				c := s.dial(t)
				roundTrip(t, c, []byte("fresh"), []byte("FRESH"))
				c.Close()
			}
		})
	}
}

// TestPreforkSpread logs how the kernel spreads 1000 connections over 4 prefork
// workers in each accept mode; every connection must be counted once, and under
// reuseport (a hash of the 4-tuple) every worker must get some.
func TestPreforkSpread(t *testing.T) {
	const workers, nconns = 4, 1000
	for _, mode := range []string{"exclusive", "reuseport"} {
		t.Run(mode, func(t *testing.T) {
			s := start(t, "prefork", "echo", func(c *models.Config) { c.Workers = workers; c.Accept = mode })
			// Wait for every worker to be in its loop, so none is late to the race.
			c := s.dial(t)
			roundTrip(t, c, []byte("warm"), []byte("WARM"))
			c.Close()
			eventually(t, "warm-up connection closed", func() bool { return s.env.Stats.Snapshot().Closed == 1 })
			time.Sleep(200 * time.Millisecond)
			base := s.env.Stats.Snapshot()
			for range nconns {
				c := s.dial(t)
				roundTrip(t, c, []byte("a"), []byte("A"))
				c.Close()
			}
			eventually(t, "every connection counted", func() bool { return s.env.Stats.Snapshot().Closed == nconns+1 })
			st := s.env.Stats.Snapshot()
			var counts []int64
			var sum int64
			for i := range workers {
				name := fmt.Sprintf("worker%d_accepted", i)
				k := st.Gauges[name] - base.Gauges[name]
				counts = append(counts, k)
				sum += k
				if mode == "reuseport" && k == 0 {
					t.Errorf("worker %d got no connection under reuseport", i)
				}
			}
			if sum != nconns {
				t.Fatalf("per-worker counts %v add up to %d, want %d", counts, sum, nconns)
			}
			t.Logf("accept=%s: %d sequential connections over %d workers: %v", mode, nconns, workers, counts)
		})
	}
}

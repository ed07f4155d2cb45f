package procstat

import (
	"errors"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	line := "4242 (my (weird) cmd) S 17 4240 4241 0 -1 4194560 650 0 0 0 123 45 6 7 20 0 9 0 1000 2000000 512 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	s, err := ParseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	want := Stat{PID: 4242, PPID: 17, PGRP: 4240, State: 'S', UTime: 123, STime: 45, CUTime: 6, CSTime: 7, Threads: 9, RSSPages: 512}
	if s != want {
		t.Fatalf("got %+v\nwant %+v", s, want)
	}
	for _, bad := range []string{"", "12 no parens", "12 (x) S 1 2 3", "x (y) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22"} {
		if _, err := ParseStat([]byte(bad)); err == nil {
			t.Errorf("ParseStat(%q): no error", bad)
		}
	}
}

func TestParseCtxSwitches(t *testing.T) {
	in := "Name:\tx\nThreads:\t1\nvoluntary_ctxt_switches:\t150\nnonvoluntary_ctxt_switches:\t7\n"
	v, i, err := ParseCtxSwitches([]byte(in))
	if err != nil || v != 150 || i != 7 {
		t.Fatalf("got %d, %d, %v; want 150, 7, nil", v, i, err)
	}
	if _, _, err := ParseCtxSwitches([]byte("Name:\tx\n")); err == nil {
		t.Fatal("missing counts: no error")
	}
}

func TestParseCgroupCPU(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"usage_usec 1500042\nuser_usec 500000\nsystem_usec 1000042\nnr_periods 0\n", 1500042 * time.Microsecond, true},
		{"user_usec 1\nusage_usec 7", 7 * time.Microsecond, true}, // no final newline, not first
		{"user_usec 1\nsystem_usec 2\n", 0, false},
		{"usage_usec -3\n", 0, false},
		{"usage_usec lots\n", 0, false},
		{"", 0, false},
	} {
		got, err := ParseCgroupCPU([]byte(tc.in))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseCgroupCPU(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestDescendants(t *testing.T) {
	parent := map[int]int{3: 1, 2: 1, 7: 2, 4: 2, 5: 99, 6: 4}
	got := Descendants(1, parent) // breadth first, siblings in order
	if want := []int{1, 2, 3, 4, 7, 6}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// A shell with two sleeping children and a busy loop: the tree has 4 processes
// (the shell, two sleeps, one subshell) and burns CPU.
func TestSampleRealTree(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 5 & sleep 5 & (while :; do :; done) & wait")
	if err := cmd.Start(); err != nil {
		t.Skip("no sh:", err)
	}
	defer func() {
		// Kill the whole group of descendants we can see, then the shell.
		if tr, err := Sample("/proc", cmd.Process.Pid); err == nil {
			for _, pid := range tr.PIDs[1:] {
				p, _ := os.FindProcess(pid)
				p.Kill()
			}
		}
		cmd.Process.Kill()
		cmd.Wait()
	}()
	var first, last Tree
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		tr, err := Sample("/proc", cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		if first.PIDs == nil && tr.Procs() == 4 {
			first = tr
		}
		if first.PIDs != nil && tr.When.Sub(first.When) > 500*time.Millisecond {
			last = tr
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if first.PIDs == nil || last.PIDs == nil {
		t.Fatalf("never saw the 4-process tree for long enough (last %+v)", last)
	}
	if last.Threads < 4 || last.RSSBytes <= 0 {
		t.Errorf("threads %d, rss %d: want at least one thread each and some memory", last.Threads, last.RSSBytes)
	}
	cores := (last.CPU - first.CPU).Seconds() / last.When.Sub(first.When).Seconds()
	if cores < 0.1 {
		t.Errorf("tree used %.2f cores while a busy loop ran", cores)
	}
	var vol uint64
	for _, sw := range ThreadSwitches("/proc", last.PIDs) {
		vol += sw.Vol
	}
	if vol == 0 {
		t.Errorf("no voluntary context switches in a tree of sleeping processes")
	}
}

func TestSampleGone(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip(err)
	}
	if _, err := Sample("/proc", cmd.Process.Pid); !errors.Is(err, ErrGone) {
		t.Fatalf("err = %v, want ErrGone", err)
	}
}

func TestSampler(t *testing.T) {
	s := Start("/proc", os.Getpid(), 10*time.Millisecond)
	// Wait for a sample taken after the first (the first is taken at once), not
	// for a time that a busy machine may not give the sampler: with the one Stop
	// takes, that makes at least 3.
	var first time.Time
	if !waitUntil(func() bool {
		tr, ok := s.Latest()
		if ok && first.IsZero() {
			first = tr.When
		}
		return ok && tr.When != first
	}) {
		t.Fatal("no second sample within 10s")
	}
	samples, err := s.Stop()
	if err != nil || len(samples) < 3 {
		t.Fatalf("%d samples, err %v", len(samples), err)
	}
}

func TestSwitchesDelta(t *testing.T) {
	tests := []struct {
		name       string
		start, end map[int]Switches
		want       Switches
		churn      int
	}{
		{"same threads", map[int]Switches{1: {10, 2}, 2: {5, 5}}, map[int]Switches{1: {15, 3}, 2: {5, 9}}, Switches{5, 5}, 0},
		{"a thread born", map[int]Switches{1: {10, 2}}, map[int]Switches{1: {12, 2}, 7: {4, 1}}, Switches{6, 1}, 1},
		{"a thread exited", map[int]Switches{1: {10, 2}, 2: {100, 100}}, map[int]Switches{1: {12, 2}}, Switches{2, 0}, 1},
		{"an ID reused", map[int]Switches{3: {100, 100}}, map[int]Switches{3: {4, 1}}, Switches{4, 1}, 1},
		{"nothing", nil, nil, Switches{}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, churn := SwitchesDelta(tt.start, tt.end)
			if got != tt.want || churn != tt.churn {
				t.Errorf("SwitchesDelta = %+v, churn %d; want %+v, %d", got, churn, tt.want, tt.churn)
			}
		})
	}
}

// A thread that exits mid-interval must not make the delta negative or drop the
// switches of the threads that stayed: the sum-of-alive-threads reading did both.
func TestThreadSwitchesThreadExits(t *testing.T) {
	// The child reads its end of a pipe (fd 3): it exits when this test closes
	// the other end, once the start is read, not after a time.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	cmd := exec.Command("sh", "-c", "read x <&3 & wait; exec sleep 30")
	cmd.ExtraFiles = []*os.File{r}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close() // the shell and its child have their copies
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	pid := cmd.Process.Pid
	// tree waits (up to 10 s) until the shell's tree has procs processes.
	tree := func(procs int) []int {
		var tr Tree
		if !waitUntil(func() bool {
			var err error
			if tr, err = Sample("/proc", pid); err != nil {
				t.Fatal(err)
			}
			return tr.Procs() == procs
		}) {
			t.Fatalf("the shell's tree has %d processes, want %d", tr.Procs(), procs)
		}
		return tr.PIDs
	}
	start := ThreadSwitches("/proc", tree(2)) // the shell and its child
	w.Close()                                 // the child's read ends: it exits
	// The child exited and was reaped: the shell woke from wait. It may have
	// blocked in wait before start was read, so its voluntary switch since is
	// certain only once it has blocked again, in the exec'd sleep: wait (up to
	// 10 s) for the delta to show one, not merely for the child to be gone.
	var end map[int]Switches
	var d Switches
	var churn int
	waitUntil(func() bool {
		end = ThreadSwitches("/proc", tree(1))
		d, churn = SwitchesDelta(start, end)
		return d.Vol >= 1
	})
	if len(start) != 2 || churn != 1 {
		t.Errorf("start %v, end %v: churn %d, want the child's thread gone", start, end, churn)
	}
	if d.Vol < 1 {
		t.Errorf("delta %+v: the shell woke from wait at least once", d)
	}
}

// waitUntil polls cond every 10 ms until it holds or 10 s have passed, and
// reports whether it held.
func waitUntil(cond func() bool) bool {
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

package trial

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"concbench/internal/result"
)

// TestRunForkSteady: fork with more connections than it may start children for
// (-max-procs) is measured holding the children it can, marked as a ceiling with
// its count — never figures over connections it did not hold; and within its cap,
// the window opens only once every child exists, so the tree in the window has a
// process per connection.
func TestRunForkSteady(t *testing.T) {
	bin, cpus := serverBin(t)
	dir := t.TempDir()
	t.Run("above its cap: ceiling", func(t *testing.T) {
		const conns, cap = 12, 4
		r, out := runOK(t, cpus, Options{Model: "fork", ServerBin: bin, Out: filepath.Join(dir, "cap.json"),
			ServerArgs: []string{"-max-procs", "4"},
			Workload:   result.Workload{Conns: conns, Duration: 500 * time.Millisecond, Warmup: 10 * time.Millisecond, SteadySettle: 500 * time.Millisecond}})
		st := r.Load.Steady
		if st == nil || st.State != result.SteadyCeiling || st.ServedAtStart != cap || st.IdleInWindow != conns-cap {
			t.Fatalf("steady %+v, want a ceiling of %d with %d idle in the window", st, cap, conns-cap)
		}
		if !strings.Contains(out, "CEILING: the server served 4 of 12") {
			t.Errorf("summary does not name the ceiling:\n%s", out)
		}
		if r.Server.ProcsMax != cap+1 {
			t.Errorf("processes in the window %d, want the parent and %d children", r.Server.ProcsMax, cap)
		}
	})
	t.Run("within its cap: every child first", func(t *testing.T) {
		const conns = 16
		r, _ := runOK(t, cpus, Options{Model: "fork", ServerBin: bin, Out: filepath.Join(dir, "ok.json"),
			Workload: result.Workload{Conns: conns, Duration: 500 * time.Millisecond, Warmup: 10 * time.Millisecond}})
		st := r.Load.Steady
		if st == nil || st.State != result.SteadyOK || st.ServedAtStart != conns || st.IdleInWindow != 0 {
			t.Fatalf("steady %+v, want every one of %d served", st, conns)
		}
		// Every sample of the window saw the parent and one child per connection.
		for _, s := range r.Server.Samples {
			if s.T >= st.WaitSeconds && s.T <= st.WaitSeconds+r.Load.Seconds && s.Procs != conns+1 {
				t.Errorf("sample at %.2fs in the window: %d processes, want %d", s.T, s.Procs, conns+1)
			}
		}
	})
}

// TestRunSelectRefused: select refuses descriptors past FD_SETSIZE; loadgen says
// so beside its own errors, from the server's counters, with the reason.
func TestRunSelectRefused(t *testing.T) {
	bin, cpus := serverBin(t)
	r, out, err := run(t, cpus, Options{Model: "select", ServerBin: bin, Out: filepath.Join(t.TempDir(), "s.json"),
		Workload: result.Workload{Conns: 1100, Duration: 300 * time.Millisecond, Warmup: 10 * time.Millisecond, SteadySettle: 300 * time.Millisecond}})
	if err == nil || r == nil {
		t.Fatalf("Run = %v, want the run to fail (the refused connections are errors)", err)
	}
	c := r.Server.Counters
	if c == nil || c.Refused == 0 || !strings.Contains(r.Server.RefusedWhy, "FD_SETSIZE") {
		t.Fatalf("server counters %+v, refused why %q: want refusals with select's reason", c, r.Server.RefusedWhy)
	}
	if !strings.Contains(out, "SERVER REFUSED") || !strings.Contains(out, "FD_SETSIZE") {
		t.Errorf("summary does not say the server refused and why:\n%s", out)
	}
}

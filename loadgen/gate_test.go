package loadgen

import (
	"strings"
	"testing"
	"time"

	"concbench/internal/result"
)

// TestSteadyGate: the measured window opens only once every connection has been
// answered (a slow-accepting server makes the gate wait), or once the number
// answered stops growing (a server that holds only some: a ceiling, named with
// its count), and a run that gets to neither in time fails "not steady" with no
// window. Not parallel: it times the server's pace.
func TestSteadyGate(t *testing.T) {
	const conns = 8
	t.Run("slow accept: waits", func(t *testing.T) {
		const every = 80 * time.Millisecond
		s := startServer(t, &testServer{proto: "echo", size: 16, acceptEvery: every})
		o := run(t, result.Workload{Addr: s.addr(), Size: 16, Conns: conns, Duration: 300 * time.Millisecond})
		st := o.Load.Steady
		if st == nil || st.State != result.SteadyOK {
			t.Fatalf("steady %+v, want state %q", st, result.SteadyOK)
		}
		// The last connection is accepted (conns-1)×every after the first.
		if min := (conns - 1) * every; st.WaitSeconds < min.Seconds() {
			t.Errorf("window opened %.3fs into the load, before the last accept (%v)", st.WaitSeconds, min)
		}
		if st.ServedAtStart != conns || st.OpenAtStart != conns || st.IdleInWindow != 0 || o.Load.Requests == 0 || o.Load.ErrorsTotal != 0 {
			t.Errorf("steady %+v, %d requests, errors %v: want all %d served, open and busy in the window", st, o.Load.Requests, o.Load.Errors, conns)
		}
	})
	t.Run("holds 3: ceiling", func(t *testing.T) {
		s := startServer(t, &testServer{proto: "echo", size: 16, hold: 3})
		o := run(t, result.Workload{Addr: s.addr(), Size: 16, Conns: conns, Duration: 300 * time.Millisecond, SteadySettle: 300 * time.Millisecond})
		st := o.Load.Steady
		if st == nil || st.State != result.SteadyCeiling || st.ServedAtStart != 3 {
			t.Fatalf("steady %+v, want a ceiling of 3", st)
		}
		if st.IdleInWindow != conns-3 || st.OpenAtStart != conns || o.Load.Requests == 0 {
			t.Errorf("steady %+v, %d requests: want %d idle in the window, %d open", st, o.Load.Requests, conns-3, conns)
		}
		if !strings.Contains(strings.Join(o.Warnings, "\n"), "ceiling: the server served only 3 of 8") {
			t.Errorf("warnings %q do not name the ceiling", o.Warnings)
		}
	})
	t.Run("too slow: not steady", func(t *testing.T) {
		s := startServer(t, &testServer{proto: "echo", size: 16, acceptEvery: 300 * time.Millisecond})
		o := run(t, result.Workload{Addr: s.addr(), Size: 16, Conns: conns, Duration: 300 * time.Millisecond,
			SteadyTimeout: time.Second, SteadySettle: 2 * time.Second})
		st := o.Load.Steady
		if st == nil || st.State != result.SteadyNot || st.ServedAtStart < 2 || st.ServedAtStart >= conns {
			t.Fatalf("steady %+v, want not steady with 2 to %d served", st, conns-1)
		}
		if o.Load.Requests != 0 || o.Load.Seconds != 0 || o.Load.ErrorsTotal != 0 {
			t.Errorf("%d requests in %.2fs, errors %v: want no window and no error (a first reply waits as long as the gate)", o.Load.Requests, o.Load.Seconds, o.Load.Errors)
		}
	})
	t.Run("request count: no gate", func(t *testing.T) {
		s := startServer(t, &testServer{proto: "echo", size: 16})
		o := run(t, result.Workload{Addr: s.addr(), Size: 16, Conns: conns, Requests: 200, Duration: 5 * time.Second})
		if st := o.Load.Steady; st == nil || st.State != result.SteadyOff || o.Load.Requests != 200 {
			t.Errorf("steady %+v, %d requests: want the gate off and every one of 200 measured", st, o.Load.Requests)
		}
	})
}

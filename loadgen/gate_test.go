package loadgen

import (
	"context"
	"errors"
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

// TestWindowAt: a coordinated run (Config.WindowAt, as a loadgen agent's) opens
// its window at the instant the coordinator gives, later than it was ready, the
// load going on meanwhile; a refusal, or an instant past WindowWait, ends it
// without a window, saying why.
func TestWindowAt(t *testing.T) {
	t.Parallel()
	s := startServer(t, &testServer{proto: "echo", size: 16})
	w := result.Workload{Addr: s.addr(), Size: 16, Conns: 4, Duration: 300 * time.Millisecond}
	const later = 400 * time.Millisecond
	cases := []struct {
		name   string
		at     func(ready time.Time) (time.Time, error)
		window bool
		why    string
	}{
		{"later", func(ready time.Time) (time.Time, error) { return ready.Add(later), nil }, true, ""},
		{"refused", func(time.Time) (time.Time, error) { return time.Time{}, errors.New("coordinator gone") }, false, "coordinator gone"},
		{"past the bound", func(ready time.Time) (time.Time, error) { return ready.Add(time.Hour), nil }, false, "past its bound"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var ready, at time.Time
			cfg := Config{Workload: w, WindowWait: 5 * time.Second, WindowAt: func(r time.Time) (time.Time, error) {
				ready = r
				a, err := tc.at(r)
				at = a
				return a, err
			}}
			o, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if ready.IsZero() {
				t.Fatal("WindowAt was not called")
			}
			ld := o.Load
			if !tc.window {
				if ld.WindowStartUnixNS != 0 || ld.Requests != 0 || !strings.Contains(strings.Join(o.Warnings, "\n"), tc.why) {
					t.Errorf("window from %d, %d requests, warnings %q: want no window and a warning with %q", ld.WindowStartUnixNS, ld.Requests, o.Warnings, tc.why)
				}
				return
			}
			late := time.Duration(ld.WindowStartUnixNS - at.UnixNano())
			if late < 0 || late > 50*time.Millisecond {
				t.Errorf("window opened %v after the instant given, want within [0, 50ms]", late)
			}
			if ld.Requests == 0 || ld.ErrorsTotal != 0 || ld.Seconds < w.Duration.Seconds()*0.9 {
				t.Errorf("%d requests in %.3fs, errors %v: want a whole window", ld.Requests, ld.Seconds, ld.Errors)
			}
			// The load went on while waiting: the timeline has replies before
			// the window.
			var before int64
			for _, s := range ld.Timeline {
				if s.Warmup {
					before += s.Requests
				}
			}
			if before == 0 {
				t.Errorf("no request before the window in the timeline %+v: the load did not go on while waiting", ld.Timeline)
			}
		})
	}
}

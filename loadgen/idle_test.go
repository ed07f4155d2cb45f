package loadgen

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"concbench/internal/result"
)

// TestIdleConnections: idle connections are held beside the active load and each
// sends a heartbeat on schedule, answered and counted over the window; a server
// that stops answering them yields misses, not a hang nor an error; one that
// closes them yields lost connections of their own kind, not reopened.
func TestIdleConnections(t *testing.T) {
	const active, idle, hb = 2, 20, 100 * time.Millisecond
	const d = time.Second
	// The test server takes requests of one size: the active load's is the
	// heartbeat's.
	w := result.Workload{Size: HeartbeatSize, Conns: active, Idle: idle, Heartbeat: hb, Duration: d, Loops: 1}
	t.Run("answered", func(t *testing.T) {
		s := startServer(t, &testServer{proto: "echo", size: HeartbeatSize})
		w := w
		w.Addr = s.addr()
		o := run(t, w)
		id := o.Load.Idle
		if id == nil || id.Established != idle || id.OpenAtEnd != idle || id.ErrorsTotal != 0 {
			t.Fatalf("idle %+v: want %d held throughout, no error", id, idle)
		}
		// Each sends d/hb heartbeats in the window, give or take the one at each end.
		if want := int64(idle) * int64(d/hb); id.Sent < want-2*idle || id.Sent > want+2*idle {
			t.Errorf("%d heartbeats sent in %v, want about %d (%d connections every %v)", id.Sent, d, want, idle, hb)
		}
		if id.Answered < id.Sent-idle || id.Answered > id.Sent || id.Missed != 0 || id.Latency.Count != id.Answered {
			t.Errorf("idle %+v: want every heartbeat answered (the last ones may be in flight), none missed", id)
		}
		if o.Load.Requests == 0 || o.Load.ErrorsTotal != 0 || o.Load.Steady.ServedAtStart != active {
			t.Errorf("active load: %d requests, errors %v, steady %+v: want the %d active connections served as without idle ones", o.Load.Requests, o.Load.Errors, o.Load.Steady, active)
		}
	})
	t.Run("unanswered: missed", func(t *testing.T) {
		s := startServer(t, &testServer{proto: "echo", size: HeartbeatSize, hold: active}) // the idle ones are held, unread
		w := w
		w.Addr = s.addr()
		o := run(t, w)
		id := o.Load.Idle
		if id == nil || id.Answered != 0 || id.Missed < int64(idle)*int64(d/hb)/2 || id.ErrorsTotal != 0 || id.OpenAtEnd != idle {
			t.Errorf("idle %+v: want heartbeats missed, none answered, no error, every connection still open", id)
		}
	})
	t.Run("closed by the server: lost", func(t *testing.T) {
		s := startServer(t, &testServer{proto: "echo", size: HeartbeatSize, hold: active, drop: true})
		w := w
		w.Addr = s.addr()
		o := run(t, w)
		id := o.Load.Idle
		// The server's close of a connection with nothing asked is closed_idle;
		// with a heartbeat out, eof (or reset).
		if id == nil || id.ErrorsTotal != idle || id.Errors["closed_idle"]+id.Errors["eof"]+id.Errors["reset"] != idle || id.OpenAtEnd != 0 {
			t.Fatalf("idle %+v: want all %d lost to the server's close, none reopened", id, idle)
		}
		if !strings.Contains(strings.Join(o.Warnings, "\n"), "idle connections were lost") || o.Load.ErrorsTotal != 0 {
			t.Errorf("warnings %q, active errors %v: want the loss named, apart from the active load", o.Warnings, o.Load.Errors)
		}
	})
}

// TestSourceAddresses: connections are spread over the source addresses given,
// each bound before its connect (the server sees them come from there).
func TestSourceAddresses(t *testing.T) {
	s := startServer(t, &testServer{proto: "echo", size: 16})
	src := []string{"127.0.0.2-127.0.0.4"}
	o := run(t, result.Workload{Addr: s.addr(), Size: 16, Conns: 12, Src: src, Duration: 200 * time.Millisecond})
	if o.Load.ErrorsTotal != 0 || o.Load.Requests == 0 {
		t.Fatalf("errors %v, %d requests", o.Load.Errors, o.Load.Requests)
	}
	seen := map[string]int{}
	s.remotesMu.Lock()
	for _, r := range s.remotes {
		ap, err := netip.ParseAddrPort(r)
		if err != nil {
			t.Fatal(err)
		}
		seen[ap.Addr().String()]++
	}
	s.remotesMu.Unlock()
	want := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}
	got := slices.Sorted(func(yield func(string) bool) {
		for a := range seen {
			if !yield(a) {
				return
			}
		}
	})
	if !slices.Equal(got, want) || seen["127.0.0.2"] != 4 {
		t.Errorf("connections came from %v, want 4 from each of %v", seen, want)
	}
}

func TestExpandRange(t *testing.T) {
	tests := []struct {
		in   string
		want int // addresses; -1: an error
	}{
		{"127.0.0.2", 1},
		{"127.0.0.2-127.0.0.250", 249},
		{"10.0.0.255-10.0.1.1", 3},
		{"::1-::3", 3},
		{"127.0.0.5-127.0.0.2", -1},
		{"127.0.0.1-::1", -1},
		{"nope", -1},
		{"10.0.0.0-10.255.255.255", -1}, // more than maxSources
	}
	for _, tt := range tests {
		got, err := expandRange(tt.in)
		if (err != nil) != (tt.want < 0) || (err == nil && len(got) != tt.want) {
			t.Errorf("expandRange(%q) = %d addresses, %v; want %d", tt.in, len(got), err, tt.want)
		}
	}
	if got := autoSources(60000, 28232); len(got) != 1 || got[0] != "127.0.0.1-127.0.0.3" {
		t.Errorf("autoSources(60000, 28232) = %q, want 127.0.0.1-127.0.0.3", got)
	}
	if got := autoSources(1000, 28232); got != nil {
		t.Errorf("autoSources(1000, 28232) = %q, want none", got)
	}
}

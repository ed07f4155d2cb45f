package trial

import (
	"errors"
	"strings"
	"testing"

	"concbench/internal/result"
)

// TestCheckDescriptors: a load that cannot have a descriptor per connection is
// refused before anything starts, saying how many it needs, the limit, and what
// to do; one that fits is not.
func TestCheckDescriptors(t *testing.T) {
	tests := []struct {
		w     result.Workload
		limit uint64
		ok    bool
	}{
		{result.Workload{Conns: 10000}, 20000, true},
		{result.Workload{Conns: 10, Idle: 19000}, 20000, true},
		{result.Workload{Conns: 40000}, 20000, false},
		{result.Workload{Conns: 10, Idle: 19900}, 20000, false},
	}
	for _, tt := range tests {
		err := checkDescriptors(tt.w, 336, tt.limit)
		if (err == nil) != tt.ok {
			t.Errorf("c=%d idle=%d limit %d: %v, want ok=%v", tt.w.Conns, tt.w.Idle, tt.limit, err, tt.ok)
		}
		if err != nil && (!errors.Is(err, ErrImpossible) || !strings.Contains(err.Error(), "20000") || !strings.Contains(err.Error(), "split the connections")) {
			t.Errorf("c=%d: %v: want ErrImpossible naming the limit and what to do", tt.w.Conns, err)
		}
	}
}

// TestRunRefusesTooManyConnections: past the descriptor limit the trial starts
// no server and no connection.
func TestRunRefusesTooManyConnections(t *testing.T) {
	bin, cpus := serverBin(t)
	r, _, err := run(t, cpus, Options{Model: "epoll-et", ServerBin: bin, Workload: result.Workload{Conns: 1 << 22}})
	if !errors.Is(err, ErrImpossible) || r != nil {
		t.Fatalf("Run with 4M connections = %v, %v: want ErrImpossible and no result", r, err)
	}
}

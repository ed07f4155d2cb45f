package trial

import (
	"testing"
	"time"

	"concbench/internal/procstat"
)

func TestTreeChanged(t *testing.T) {
	t0 := time.Now()
	at := func(ms int, threads int, pids ...int) procstat.Tree {
		return procstat.Tree{When: t0.Add(time.Duration(ms) * time.Millisecond), Threads: threads, PIDs: pids}
	}
	end := t0.Add(time.Second)
	tests := []struct {
		name    string
		samples []procstat.Tree
		want    bool
	}{
		{"steady", []procstat.Tree{at(100, 6, 1), at(200, 6, 1), at(900, 6, 1)}, false},
		{"steady tree", []procstat.Tree{at(100, 12, 1, 2, 3), at(500, 12, 1, 2, 3)}, false},
		{"a thread more", []procstat.Tree{at(100, 6, 1), at(200, 7, 1)}, true},
		{"a process replaced", []procstat.Tree{at(100, 12, 1, 2), at(200, 12, 1, 3)}, true},
		{"changes outside the window", []procstat.Tree{at(-100, 9, 1, 5), at(100, 6, 1), at(900, 6, 1), at(1100, 2, 1)}, false},
		{"no samples", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := treeChanged(tt.samples, t0, end); got != tt.want {
				t.Errorf("treeChanged = %v, want %v", got, tt.want)
			}
		})
	}
}

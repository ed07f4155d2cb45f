package trial

import (
	"strings"
	"testing"
	"time"

	"concbench/internal/hostnoise"
)

// hostFigures on literal snapshots: shares of steal, lost ticks and foreign
// work, and the disturbed verdict.
func TestHostFigures(t *testing.T) {
	snap := func(cpu0, cpu1 hostnoise.CPUTimes) hostnoise.Snapshot {
		return hostnoise.Snapshot{CPU: map[int]hostnoise.CPUTimes{0: cpu0, 1: cpu1},
			IRQ: map[int]uint64{0: 0, 1: 0}, SoftIRQ: map[int]uint64{0: 0, 1: 0}}
	}
	start := snap(hostnoise.CPUTimes{User: 1000, System: 1000, Idle: 5000}, hostnoise.CPUTimes{User: 1000, System: 1000, Idle: 5000})
	for _, tt := range []struct {
		name                 string
		cpu0, cpu1           hostnoise.CPUTimes // deltas over a 1 s window
		own                  float64            // server + loadgen CPU seconds
		steal, lost, foreign float64
		why                  string
	}{
		{"quiet: every busy tick is the trial's", hostnoise.CPUTimes{User: 60, System: 30, Idle: 10}, hostnoise.CPUTimes{User: 50, System: 40, Idle: 10}, 1.8, 0, 0, 0, ""},
		{"foreign work on the server CPU", hostnoise.CPUTimes{User: 80, System: 20}, hostnoise.CPUTimes{User: 50, System: 40, Idle: 10}, 1.5, 0, 0, 0.2, "foreign work on the measured CPUs 20%"},
		{"steal", hostnoise.CPUTimes{User: 60, System: 20, Steal: 20}, hostnoise.CPUTimes{User: 50, System: 40, Idle: 10}, 1.7, 0.1, 0, 0, "steal 10%"},
		{"lost ticks are recorded, not judged", hostnoise.CPUTimes{User: 30, System: 20, Idle: 30}, hostnoise.CPUTimes{User: 30, System: 20, Idle: 40}, 1.0, 0, 0.15, 0, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			add := func(a, d hostnoise.CPUTimes) hostnoise.CPUTimes {
				return hostnoise.CPUTimes{User: a.User + d.User, System: a.System + d.System, Idle: a.Idle + d.Idle, Steal: a.Steal + d.Steal}
			}
			end := snap(add(start.CPU[0], tt.cpu0), add(start.CPU[1], tt.cpu1))
			h, err := hostFigures(start, end, time.Second, []int{0}, []int{1}, tt.own)
			if err != nil {
				t.Fatal(err)
			}
			near := func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }
			if !near(h.StealShare, tt.steal) || !near(h.LostShare, tt.lost) || !near(h.ForeignShare, tt.foreign) {
				t.Errorf("steal %v lost %v foreign %v, want %v %v %v", h.StealShare, h.LostShare, h.ForeignShare, tt.steal, tt.lost, tt.foreign)
			}
			if h.Disturbed != (tt.why != "") || !strings.Contains(h.Why, tt.why) {
				t.Errorf("disturbed %v (%q), want %q", h.Disturbed, h.Why, tt.why)
			}
			if len(h.CPUs) != 2 || h.CPUs[0].Role != "server" || h.CPUs[1].Role != "client" {
				t.Errorf("CPUs %+v", h.CPUs)
			}
		})
	}
	if _, err := hostFigures(start, snap(hostnoise.CPUTimes{}, hostnoise.CPUTimes{}), time.Second, []int{0}, []int{1}, 0); err == nil {
		t.Error("counters going backwards gave figures")
	}
}

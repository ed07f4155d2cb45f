package bench

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCalibrationLine(t *testing.T) {
	rounds := func(lg, cc []float64) []CalibrationRound {
		var out []CalibrationRound
		for i := range lg {
			out = append(out, CalibrationRound{Client: "cclient", Requests: 1000, Seconds: 1, CPUUSPerReq: cc[i], SwitchesPerReq: 0.001},
				CalibrationRound{Client: "loadgen", Requests: 1000, Seconds: 1, CPUUSPerReq: lg[i], SwitchesPerReq: -1})
		}
		return out
	}
	for _, tc := range []struct {
		name string
		c    *Calibration
		want []string
		not  []string
	}{
		{"none", nil, []string{"not calibrated (the run predates"}, nil},
		{"missing", &Calibration{Missing: "no C client at bin/cclient"}, []string{"not calibrated: no C client at bin/cclient"}, nil},
		{"close", &Calibration{Proto: "echo", Conns: 100, Size: 64, Rounds: rounds([]float64{7.6, 7.0, 9.0}, []float64{6.8, 6.0, 7.0})},
			// medians 7.6 and 6.8: ratio 1.12; loadgen's switches not measured
			[]string{"spends 7.60 µs", "the C client 6.80 (ratio 1.12)", "3 interleaved rounds", "echo 64 B, 100 connections"}, []string{"WARNING", "context switches"}},
		{"paired", &Calibration{Proto: "echo", Conns: 100, Size: 64, SliceMS: 100, Rounds: rounds([]float64{6.6, 6.0, 6.3}, []float64{6.0, 5.0, 6.3})},
			// the rounds' own ratios 1.10, 1.20, 1.00: their median, not the medians' 6.3/6.0
			[]string{"(ratio 1.10)", "3 rounds, the two clients at once taking turns of 100 ms", "1.00–1.20"}, []string{"WARNING", "interleaved", "ratio 1.05"}},
		{"costly", &Calibration{Proto: "echo", Conns: 100, Size: 64, Rounds: rounds([]float64{9, 9.2}, []float64{7, 7})},
			[]string{"(ratio 1.30)", "WARNING: loadgen costs more than 1.2×"}, nil},
		{"one client only", &Calibration{Rounds: []CalibrationRound{{Client: "cclient", CPUUSPerReq: 6}}},
			[]string{"not calibrated: no round measured both clients"}, nil},
	} {
		got := tc.c.Line()
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q lacks %q", tc.name, got, w)
			}
		}
		for _, w := range tc.not {
			if strings.Contains(got, w) {
				t.Errorf("%s: %q has %q", tc.name, got, w)
			}
		}
	}
}

// A run directory's calibration is read back as written; none is nil, a
// damaged one an error; and a run without a C client beside loadgen records
// why it is not calibrated instead of failing the run.
func TestCalibrationFile(t *testing.T) {
	dir := t.TempDir()
	if c, err := ReadCalibration(dir); c != nil || err != nil {
		t.Fatalf("no file: %v, %v; want nil, nil", c, err)
	}
	r := &Runner{Store: Store{Dir: dir}, Loadgen: filepath.Join(dir, "loadgen"), Spec: Spec{Size: 64, Duration: time.Second}}
	if err := r.calibrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	c, err := ReadCalibration(dir)
	if err != nil || c == nil || !strings.Contains(c.Missing, "no C client at") || len(c.Rounds) != 0 {
		t.Fatalf("calibration without cclient: %+v, %v; want it missing, saying why", c, err)
	}
	// A second run (a resumed one) keeps the calibration it has.
	keep := &Calibration{Proto: "echo", Conns: 100, Size: 64, Rounds: []CalibrationRound{{Client: "loadgen", CPUUSPerReq: 7}, {Client: "cclient", CPUUSPerReq: 6}}}
	if err := writeJSONAtomic(filepath.Join(dir, CalibrationFile), keep); err != nil {
		t.Fatal(err)
	}
	if err := r.calibrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if c, _ := ReadCalibration(dir); c == nil || len(c.Rounds) != 2 {
		t.Fatalf("after a resume: %+v, want the calibration kept", c)
	}
	if err := os.WriteFile(filepath.Join(dir, CalibrationFile), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadCalibration(dir); err == nil {
		t.Fatal("a damaged calibration.json: no error")
	}
}

// takeTurns runs its commands one at a time — never two at once — until one
// exits, then lets the rest run on to their ends, none left stopped.
func TestTakeTurns(t *testing.T) {
	loop := func(n int) *exec.Cmd {
		return exec.Command("sh", "-c", fmt.Sprintf("n=0; while [ $n -lt %d ]; do n=$((n+1)); done", n))
	}
	cmds := []*exec.Cmd{loop(1_000_000), loop(100_000)}
	for _, c := range cmds {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	state := func(c *exec.Cmd) byte {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.Process.Pid))
		if err != nil {
			return 'X' // gone
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		return f[0][0]
	}
	done := make(chan []error)
	go func() { done <- takeTurns(cmds, 20*time.Millisecond) }()
	var both, stopped, samples int
	var stoppedEach [2]int
	deadline := time.After(time.Minute)
	for {
		select {
		case <-deadline:
			t.Fatal("takeTurns did not return: a command left stopped?")
		case errs := <-done:
			for i, err := range errs {
				if err != nil {
					t.Errorf("command %d: %v", i, err)
				}
			}
			// Each was stopped in turn, and most of the time one of them was:
			// two run at once only as one exits or around a switch (a signal
			// takes effect when its target next runs, later on a loaded
			// machine).
			if stoppedEach[0] == 0 || stoppedEach[1] == 0 || both >= stopped {
				t.Errorf("%d samples: one stopped in %d (the first in %d, the second in %d), both running in %d; want turns",
					samples, stopped, stoppedEach[0], stoppedEach[1], both)
			}
			return
		case <-time.After(3 * time.Millisecond):
		}
		a, b := state(cmds[0]), state(cmds[1])
		if a == 'X' || b == 'X' || a == 'Z' || b == 'Z' {
			continue
		}
		samples++
		switch {
		case a == 'T':
			stopped++
			stoppedEach[0]++
		case b == 'T':
			stopped++
			stoppedEach[1]++
		default:
			both++
		}
	}
}

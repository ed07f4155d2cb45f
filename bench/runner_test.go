package bench

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"concbench/internal/result"
)

func TestClassify(t *testing.T) {
	withErrors := &result.Run{Load: result.Load{ErrorsTotal: 2}}
	unclean := &result.Run{Server: &result.Server{Exit: &result.Exit{Code: -1, Signal: "killed"}}}
	tests := []struct {
		name     string
		code     int
		timedOut bool
		runErr   error
		res      *result.Run
		status   string
		failure  string
	}{
		{"ok", 0, false, nil, &result.Run{}, StatusOK, ""},
		{"usage", 2, false, errors.New("exit status 2"), nil, StatusFailed, FailUsage},
		{"no result", 1, false, errors.New("exit status 1"), nil, StatusFailed, FailNoResult},
		{"errors", 1, false, errors.New("exit status 1"), withErrors, StatusFailed, FailErrors},
		{"server exit", 1, false, errors.New("exit status 1"), unclean, StatusFailed, FailServerExit},
		{"timeout wins", 0, true, nil, &result.Run{}, StatusFailed, FailTimeout},
	}
	for _, tt := range tests {
		s, f := classify(tt.code, tt.timedOut, tt.runErr, tt.res)
		if s != tt.status || f != tt.failure {
			t.Errorf("%s: %s/%s, want %s/%s", tt.name, s, f, tt.status, tt.failure)
		}
	}
}

// progress is a Progress writer that calls a hook on each line.
type progress struct {
	mu    sync.Mutex
	lines []string
	hook  func(n int)
}

func (p *progress) Write(b []byte) (int, error) {
	p.mu.Lock()
	p.lines = append(p.lines, strings.TrimSpace(string(b)))
	n := len(p.lines)
	p.mu.Unlock()
	if p.hook != nil {
		p.hook(n)
	}
	return len(b), nil
}

// The runner against the real loadgen and server: a failure is recorded, an
// interruption discards only the trial in flight, and a rerun resumes.
func TestRunnerResume(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs loadgen and the server")
	}
	bin := t.TempDir()
	for _, c := range []string{"loadgen", "server"} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, c), "concbench/cmd/"+c).CombinedOutput(); err != nil {
			t.Skipf("cannot build %s: %v\n%s", c, err, out)
		}
	}
	dir := t.TempDir()
	sp := Spec{Models: []string{"nosuch", "epoll-et"}, Conns: []int{2}, Protos: []string{"echo"}, Works: []string{"none"},
		Reconnect: "off", Repeat: 2, Duration: 400 * time.Millisecond, Size: 16}
	plan := sp.Plan()
	store := Store{Dir: dir}

	// Run 1: interrupted 150 ms into the second trial (epoll-et rep 1).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr := &progress{hook: func(n int) {
		if n == 1 {
			time.AfterFunc(150*time.Millisecond, cancel)
		}
	}}
	r := &Runner{Spec: sp, Store: store, Loadgen: filepath.Join(bin, "loadgen"), Progress: pr}
	_, err := r.Run(ctx)
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("run 1: err = %v, want ErrInterrupted", err)
	}
	if !store.Done(plan[0]) || store.Done(plan[1]) {
		t.Fatalf("after the interruption: done %v %v, want the first trial only", store.Done(plan[0]), store.Done(plan[1]))
	}
	if _, err := os.Stat(store.TrialPath(plan[1]) + ".json"); err == nil {
		t.Error("the interrupted trial's result was kept")
	}
	rec, err := store.ReadRecord(plan[0])
	if err != nil || rec.Status != StatusFailed || rec.Failure != FailUsage || !strings.Contains(rec.Reason, "unknown model") {
		t.Errorf("nosuch's record: %+v, %v; want failed/usage with loadgen's reason", rec, err)
	}

	// Run 2: resumes, runs the three trials left.
	pr = &progress{}
	r.Progress = pr
	n, err := r.Run(context.Background())
	if err != nil {
		t.Fatalf("run 2: %v", err)
	}
	if n.Planned != 4 || n.Resumed != 1 || n.OK != 2 || n.Failed != 1 {
		t.Errorf("run 2 counts %+v, want 4 planned, 1 resumed, 2 ok, 1 failed", n)
	}
	if len(pr.lines) != 4 || !strings.Contains(pr.lines[0], "resuming") || !strings.Contains(pr.lines[3], "[4/4]") ||
		!strings.Contains(pr.lines[3], "left") || !strings.Contains(pr.lines[3], "req/s") {
		t.Errorf("progress lines:\n%s", strings.Join(pr.lines, "\n"))
	}
	d, err := store.Load()
	if err != nil {
		t.Fatal(err)
	}
	s := Summarise(d)
	et := s.Cell(Group{Proto: "echo", Work: "none"}, "epoll-et", 2)
	if et.Measured != 2 || et.Merged != 2 || et.Throughput.Median <= 0 || et.Latency.Count == 0 {
		t.Errorf("epoll-et summary: %+v", et)
	}
	files, err := WriteAll(d, dir, filepath.Join(dir, "plots"))
	if err != nil {
		t.Fatalf("WriteAll: %v (%q)", err, files)
	}
	md, err := os.ReadFile(filepath.Join(dir, "REPORT.md"))
	if err != nil || !strings.Contains(string(md), "nosuch echo c=2: rep 1 failed (usage)") {
		t.Errorf("REPORT.md lacks nosuch's failure: %v", err)
	}

	// Run 3: a different trial length cannot share the directory.
	sp.Duration = time.Second
	r3 := &Runner{Spec: sp, Store: store, Loadgen: r.Loadgen}
	if _, err := r3.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "measured differently") {
		t.Errorf("run 3 with another duration: err = %v", err)
	}
}

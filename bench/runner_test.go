package bench

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"concbench/internal/result"
)

func TestClassify(t *testing.T) {
	withErrors := &result.Run{Load: result.Load{ErrorsTotal: 2}}
	unclean := &result.Run{Server: &result.Server{Exit: &result.Exit{Code: -1, Signal: "killed"}}}
	unsteady := &result.Run{Load: result.Load{Steady: &result.Steady{State: result.SteadyNot}}}
	idleLost := &result.Run{Load: result.Load{Idle: &result.Idle{Conns: 5000, ErrorsTotal: 3, Errors: map[string]int64{"eof": 3}}}}
	unsteadyErrors := &result.Run{Load: result.Load{ErrorsTotal: 2, Steady: &result.Steady{State: result.SteadyNot}}}
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
		{"idle connections lost", 1, false, errors.New("exit status 1"), idleLost, StatusFailed, FailErrors},
		{"not steady", 1, false, errors.New("exit status 1"), unsteady, StatusFailed, FailNotSteady},
		{"errors say more than not steady", 1, false, errors.New("exit status 1"), unsteadyErrors, StatusFailed, FailErrors},
	}
	for _, tt := range tests {
		s, f := classify(tt.code, tt.timedOut, tt.runErr, tt.res)
		if s != tt.status || f != tt.failure {
			t.Errorf("%s: %s/%s, want %s/%s", tt.name, s, f, tt.status, tt.failure)
		}
	}
	if got := failureReason(TrialRecord{Failure: FailErrors}, nil, idleLost); got != "idle connections lost: eof 3 (3 of 5000)" {
		t.Errorf("idle connections lost: reason %q", got)
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
	bin := buildTools(t)
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
	// The gate opened every window with both connections served.
	if et.Gated != 2 || et.HeldAtStart != 2 || et.Apart() != "" {
		t.Errorf("epoll-et gate: gated %d, held %v, apart %q", et.Gated, et.HeldAtStart, et.Apart())
	}
	// Each result names its histogram by a file beside it, where it is.
	for k, res := range d.Results {
		rec := d.Records[k]
		if hg := filepath.Join(dir, filepath.Dir(rec.Result), res.HistogramFile); res.HistogramFile == "" || filepath.Base(res.HistogramFile) != res.HistogramFile {
			t.Errorf("%s: histogram_file %q: want a file name", k, res.HistogramFile)
		} else if _, err := os.Stat(hg); err != nil {
			t.Errorf("%s: histogram_file: %v", k, err)
		}
	}
	files, err := WriteAll(d, dir, filepath.Join(dir, "plots"))
	if err != nil {
		t.Fatalf("WriteAll: %v (%q)", err, files)
	}
	for _, f := range files { // a report is for anyone to read
		if fi, err := os.Stat(f); err != nil {
			t.Error(err)
		} else if fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %v, want 0644", f, fi.Mode().Perm())
		}
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

// fakeLoadgenScript stands in for loadgen: it acts by its -model argument, and
// writes a result (schema 1, the trial's workload) for any model not named here.
//
//	fail   says why on stderr and exits 1, writing nothing (a server that exits at once)
//	hang   never ends (sleep, which a SIGINT ends)
//	trunc  writes half a result and exits 1
//	leak   leaves a process behind, holding its stderr, and succeeds
const fakeLoadgenScript = `#!/bin/sh
model= out= conns=1 proto=echo reconnect=false rate=0
while [ $# -gt 0 ]; do
	case $1 in
	-model) model=$2; shift ;;
	-o) out=$2; shift ;;
	-c) conns=$2; shift ;;
	-proto) proto=$2; shift ;;
	-reconnect) reconnect=true ;;
	-rate) rate=$2; shift ;;
	esac
	shift
done
case $model in
fail)
	echo "loadgen: starting the server: exited before listening (exit status 3)" >&2
	exit 1 ;;
hang)
	exec sleep 30 ;;
trunc)
	printf '{"schema": 1, "config": {"model": "trunc", "workl' >"$out"
	exit 1 ;;
leak)
	sleep 30 &
	echo $! >"$out.pid" ;;
unsteady)
	cat >"$out" <<END
{"schema": 2, "config": {"model": "$model", "workload": {"proto": "$proto", "conns": $conns}},
 "load": {"mode": "closed", "steady": {"state": "not steady", "wait_seconds": 0.1, "timeout_seconds": 0.1, "served_at_start": 1}},
 "server": {"exit": {"code": 0, "clean": true}}}
END
	exit 1 ;;
esac
# The repetition, from the output's name (rep3.json): noisy alternates between
# 600 and 1400 req/s, disturbed's first repetition was disturbed (and fast).
rep=$(basename "$out" .json); rep=${rep#rep}
tput=1000 host='{}'
case $model in
noisy) [ $((rep % 2)) = 1 ] && tput=600 || tput=1400 ;;
disturbed) [ "$rep" = 1 ] && tput=5000 host='{"disturbed": true, "why": "foreign work on the measured CPUs 30% of the window", "foreign_share": 0.3}' ;;
esac
cat >"$out" <<END
{"schema": 4, "config": {"model": "$model", "workload": {"proto": "$proto", "conns": $conns, "reconnect": $reconnect, "rate": $rate}},
 "load": {"mode": "closed", "requests": $tput, "seconds": 1, "throughput": $tput}, "host": $host}
END
`

// fakeLoadgen writes fakeLoadgenScript into a temporary directory.
func fakeLoadgen(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "loadgen")
	if err := os.WriteFile(p, []byte(fakeLoadgenScript), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// A failing cell is recorded as failed with its reason, and the matrix goes on:
// loadgen failing with a message, hanging past the trial's limit (stopped, not
// waited for), writing half a result, leaving a process behind (killed at once,
// not waited for); the last cell still runs and succeeds.
func TestRunnerFailuresGoOn(t *testing.T) {
	sp := Spec{Models: []string{"fail", "hang", "trunc", "leak", "unsteady", "ok"}, Conns: []int{2}, Protos: []string{"echo"}, Works: []string{"none"},
		Reconnect: "off", Repeat: 1, Duration: 100 * time.Millisecond, Size: 16, SteadyTimeout: 100 * time.Millisecond}
	store := Store{Dir: t.TempDir()}
	pr := &progress{}
	r := &Runner{Spec: sp, Store: store, Loadgen: fakeLoadgen(t), Slack: 400 * time.Millisecond, Progress: pr}
	start := time.Now()
	n, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 15*time.Second {
		t.Errorf("the run took %v: the hung loadgen was not stopped at its limit (0.6 s), or the leaky one's process was waited for", el)
	}
	if n.OK != 1 || n.Failed != 5 {
		t.Errorf("counts %+v, want 1 ok and 5 failed", n)
	}
	want := map[string]struct{ status, failure, reason string }{
		"fail":     {StatusFailed, FailNoResult, "loadgen: starting the server: exited before listening (exit status 3)"},
		"hang":     {StatusFailed, FailTimeout, "loadgen did not finish in time and was stopped"},
		"trunc":    {StatusFailed, FailNoResult, "unreadable result: " + filepath.Join(store.Dir, "trials", "echo", "c2", "trunc", "rep1.json") + ": cut short"},
		"leak":     {StatusFailed, FailServerExit, "processes of loadgen's group (its server, the server's workers) outlived loadgen and were killed"},
		"unsteady": {StatusFailed, FailNotSteady, "not steady: 1 of 2 connections served 0.1s after the load started, still growing at the 0.1s bound (no window measured)"},
		"ok":       {StatusOK, "", ""},
	}
	for _, tr := range sp.Plan() {
		rec, err := store.ReadRecord(tr)
		if err != nil {
			t.Errorf("%s: %v", tr.Key(), err)
			continue
		}
		w := want[tr.Cell.Model]
		if rec.Status != w.status || rec.Failure != w.failure || !strings.HasPrefix(rec.Reason, w.reason) {
			t.Errorf("%s: %s/%s %q, want %s/%s %q…", tr.Key(), rec.Status, rec.Failure, rec.Reason, w.status, w.failure, w.reason)
		}
		if (rec.Result != "") != (rec.Status == StatusOK || tr.Cell.Model == "leak" || tr.Cell.Model == "unsteady") {
			t.Errorf("%s: result %q with status %s", tr.Key(), rec.Result, rec.Status)
		}
	}
	// The process the leaky loadgen left (its pid is beside its scratch output).
	b, err := os.ReadFile(store.TmpPath(sp.Plan()[3]) + ".json.pid")
	if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); err != nil || pid == 0 {
		t.Errorf("the leaky loadgen left no pid: %q, %v", b, err)
	} else if !gone(pid) {
		t.Errorf("the process %d it left is still running", pid)
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if len(pr.lines) != 6 || !strings.Contains(pr.lines[0], "FAILED (no_result): loadgen: starting the server") {
		t.Errorf("progress:\n%s", strings.Join(pr.lines, "\n"))
	}
}

// Open-loop steps at fractions of the peak take their rate from the model's
// closed-loop cell (1000 req/s from the fake loadgen: 0.5 is 500 req/s), on
// every repetition; a model whose closed-loop cell failed has no peak, and its
// steps fail saying so while the matrix goes on.
func TestRunnerCalibratesSteps(t *testing.T) {
	sp := Spec{Models: []string{"ok", "fail"}, Conns: []int{2}, Protos: []string{"echo"}, Works: []string{"none"},
		Reconnect: "off", Repeat: 2, Duration: 100 * time.Millisecond, Size: 16, Loads: []float64{0.5}, Rates: []float64{300}}
	store := Store{Dir: t.TempDir()}
	r := &Runner{Spec: sp, Store: store, Loadgen: fakeLoadgen(t), Slack: time.Second}
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, tr := range sp.Plan() {
		rec, err := store.ReadRecord(tr)
		if err != nil {
			t.Fatalf("%s: %v", tr.Key(), err)
		}
		switch {
		case tr.Cell.Model == "fail" && tr.Cell.Load > 0:
			if rec.Failure != FailNoCalibration || !strings.Contains(rec.Reason, "no closed-loop calibration") {
				t.Errorf("%s: %s/%s %q, want no_calibration", tr.Key(), rec.Status, rec.Failure, rec.Reason)
			}
		case tr.Cell.Model == "ok" && tr.Cell.Open():
			res, err := store.ReadResult(rec)
			want := map[bool]float64{true: 500, false: 300}[tr.Cell.Load > 0]
			if err != nil || res.Config.Workload.Rate != want {
				t.Errorf("%s: rate %v (%v), want %v", tr.Key(), res.Config.Workload.Rate, err, want)
			}
		}
	}
	d, err := store.Load()
	if err != nil {
		t.Fatal(err)
	}
	s := Summarise(d)
	if cs := s.Cells[(Cell{Model: "ok", Proto: "echo", Work: "none", Conns: 2, Load: 0.5}).Key()]; cs.Offered != 500 || cs.Measured != 2 {
		t.Errorf("ok at 0.5× its peak: offered %v over %d trials, want 500 over 2", cs.Offered, cs.Measured)
	}
}

// socketCount is the number of sockets process pid holds.
func socketCount(pid int) int {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	ents, _ := os.ReadDir(dir)
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// killServing SIGKILLs the first process running exe once it holds sockets
// sockets (its listener and every connection of the load: the trial is under
// way), and sends its pid; it gives up at ctx's end.
func killServing(ctx context.Context, exe string, sockets int) <-chan int {
	killed := make(chan int, 1)
	go func() {
		defer close(killed)
		for ctx.Err() == nil {
			for _, pid := range running(exe) {
				if socketCount(pid) >= sockets && syscall.Kill(pid, syscall.SIGKILL) == nil {
					killed <- pid
					return
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return killed
}

// A server that dies mid-trial — a model's server (loadgen started it) or a
// peer (bench did) — fails its trial with loadgen's reason, which says the
// server exited before it was stopped; the matrix goes on to a good repetition.
func TestRunnerServerKilled(t *testing.T) {
	bin := buildTools(t)
	testCPUs(t)
	for _, tc := range []struct{ model, exe, died string }{
		{"epoll-et", filepath.Join(bin, "server"), "server: the server exited before loadgen stopped it (signal: killed)"},
		{"peer:cepoll", "", "peer:cepoll: the peer exited before bench stopped it (signal: killed)"},
	} {
		t.Run(tc.model, func(t *testing.T) {
			var peers PeerOptions
			if IsPeer(tc.model) {
				peers.Cepoll = buildCepoll(t)
				tc.exe = peers.Cepoll
			}
			sp := Spec{Models: []string{tc.model}, Conns: []int{2}, Protos: []string{"echo"}, Works: []string{"none"},
				Reconnect: "off", Repeat: 2, Duration: 1500 * time.Millisecond, Size: 16}
			store := Store{Dir: t.TempDir()}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			killed := killServing(ctx, tc.exe, 1+2)
			r := &Runner{Spec: sp, Store: store, Loadgen: filepath.Join(bin, "loadgen"), Peers: peers}
			n, err := r.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			pid, ok := <-killed
			if !ok {
				t.Fatal("the server was never seen serving, nor killed")
			}
			plan := sp.Plan()
			rec, err := store.ReadRecord(plan[0])
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("killed pid %d; rep 1: %s (%s): %s", pid, rec.Status, rec.Failure, rec.Reason)
			if rec.Status != StatusFailed || !strings.Contains(rec.Reason, tc.died) || rec.ExitCode != 1 {
				t.Errorf("rep 1: %s (%s) exit %d, reason %q; want failed, loadgen exit 1, and the reason to say %q",
					rec.Status, rec.Failure, rec.ExitCode, rec.Reason, tc.died)
			}
			if rec.Failure == FailErrors && rec.Result == "" {
				t.Errorf("rep 1 failed with errors but kept no (partial) result")
			}
			if rec2, err := store.ReadRecord(plan[1]); err != nil || rec2.Status != StatusOK || n.OK != 1 || n.Failed != 1 {
				t.Errorf("rep 2: %+v, %v; counts %+v: want the matrix to go on, rep 2 ok", rec2, err, n)
			}
		})
	}
}

// Adaptive repetitions: a cell whose repetitions agree stops at the planned
// six; one that alternates 600/1400 req/s never converges and stops at the cap;
// one whose first repetition was disturbed gets one more, and its figures leave
// the disturbed one out; a failing cell gets none. The added trials are in the plan, and a second run
// over the same directory adds none.
func TestRunnerAdaptive(t *testing.T) {
	sp := Spec{Models: []string{"steady", "noisy", "disturbed", "fail"}, Conns: []int{2}, Protos: []string{"echo"}, Works: []string{"none"},
		Reconnect: "off", Repeat: 6, RepeatAuto: true, RepeatMax: 9, RepeatTarget: 0.1, Duration: 100 * time.Millisecond, Size: 16}
	store := Store{Dir: t.TempDir()}
	r := &Runner{Spec: sp, Store: store, Loadgen: fakeLoadgen(t), Slack: time.Second}
	n, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n.OK != 6+9+7 || n.Failed != 6 || n.Planned != 28 {
		t.Errorf("counts %+v, want 28 planned, 22 ok (6 + 9 + 7) and the 6 planned of the failing cell failed, no more", n)
	}
	d, err := store.Load()
	if err != nil {
		t.Fatal(err)
	}
	s := Summarise(d)
	g := Group{Proto: "echo", Work: "none"}
	for _, tt := range []struct {
		model     string
		n         int
		converged bool
		disturbed int
	}{{"steady", 6, true, 0}, {"noisy", 9, false, 0}, {"disturbed", 6, true, 1}} {
		cs := s.Cell(g, tt.model, 2)
		if cs.Throughput.N != tt.n || sp.Converged(cs) != tt.converged || cs.Disturbed != tt.disturbed {
			t.Errorf("%s: %d repetitions in the figures, converged %v, %d disturbed; want %d, %v, %d", tt.model, cs.Throughput.N, sp.Converged(cs), cs.Disturbed, tt.n, tt.converged, tt.disturbed)
		}
	}
	if cs := s.Cell(g, "disturbed", 2); cs.Throughput.Median != 1000 {
		t.Errorf("disturbed: median %v, want 1000 (the disturbed 5000 left out)", cs.Throughput.Median)
	}
	if got := repeatOutcome(s); !strings.Contains(got, "2 of 3 closed-loop cells converged to ±10%; 22 timed repetitions in all") || !strings.Contains(got, "never converged: noisy c=2") {
		t.Errorf("outcome %q", got)
	}
	n, err = r.Run(context.Background())
	if err != nil || n.Resumed != 28 || n.OK+n.Failed != 0 {
		t.Errorf("second run: %+v, %v; want all 28 resumed and none run", n, err)
	}
}

package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"concbench/internal/cpuset"
	"concbench/internal/proto"
	"concbench/internal/result"
	"concbench/internal/supervise"
	"concbench/loadgen"
	"concbench/models"
)

// ErrInterrupted is returned by Runner.Run when its context was cancelled: the
// trial in flight was discarded, every finished one is saved.
var ErrInterrupted = errors.New("interrupted")

// Runner runs a Spec's trials, each by starting loadgen, and saves them in Store.
type Runner struct {
	Spec    Spec
	Store   Store
	Loadgen string // the loadgen executable; it finds the server beside itself
	// Skip says why a cell is not run ("" runs it). Nil runs everything.
	Skip func(Cell) string
	// Progress receives one line per trial; nil discards.
	Progress io.Writer
	// Slack is added to a trial's planned length before it is stopped as hung;
	// 0 means 30 s (plus 1 s per 500 connections for the ramp).
	Slack time.Duration
	// Peers says how reference servers (models named peer:NAME) are found and
	// run; the zero value finds cepoll beside Loadgen and nginx on PATH.
	Peers PeerOptions
	// Calibrate runs the instrument's calibration (calibrate.go) before the
	// trials, unless the run directory holds one already.
	Calibrate bool
	// Agents, if set, runs every trial's load from loadgen agents on other
	// hosts (agents.go).
	Agents *Agents
}

// Counts are what a Run did.
type Counts struct {
	Planned, Resumed, OK, Failed, Skipped int
	// Rerun counts the trials run again because a file of theirs was damaged
	// (see DamagedError); they are also in OK, Failed or Skipped.
	Rerun   int
	Elapsed time.Duration
}

// Run runs every planned trial that is not done yet (Store.Check), in plan
// order, writing each one's files as soon as it ends. A trial with a damaged
// file is run again, the file named in Progress. It returns ErrInterrupted
// (wrapped) when ctx is cancelled; rerunning with the same Store resumes.
func (r *Runner) Run(ctx context.Context) (Counts, error) {
	var n Counts
	start := time.Now()
	if err := r.Store.CleanTmp(); err != nil {
		return n, err
	}
	plan := Plan{Spec: r.Spec, Started: start}
	old, err := r.Store.ReadPlan()
	var damaged *DamagedError
	switch {
	case err == nil:
		if why := r.Spec.SameMeasurement(old.Spec); why != "" {
			return n, fmt.Errorf("%s holds trials measured differently (%s): use another -out, or remove it", r.Store.Dir, why)
		}
		plan.Started = old.Started
		// A fair pool's cap is the machine's when the run was planned: the
		// resumed trials keep it, so that every trial of a cell runs alike.
		r.Spec.ProcessCap, r.Spec.ThreadCap, r.Spec.CapsWhy = old.Spec.ProcessCap, old.Spec.ThreadCap, old.Spec.CapsWhy
		plan.Spec = r.Spec
		plan.Extra = old.Extra // the adaptive repetitions already added
	case errors.As(err, &damaged):
		return n, fmt.Errorf("%w: nothing says how the trials in %s were measured: use another -out, or remove the file to resume them as they are", err, r.Store.Dir)
	case !errors.Is(err, fs.ErrNotExist):
		return n, err
	}
	if err := r.Store.WritePlan(plan); err != nil {
		return n, err
	}
	if r.Calibrate {
		if err := r.calibrate(ctx); err != nil {
			return n, err
		}
	}
	trials := plan.Trials()
	n.Planned = len(trials)
	var todo []Trial
	rerun := map[Trial]bool{}
	for _, t := range trials {
		done, err := r.Store.Check(t)
		switch {
		case errors.As(err, &damaged):
			r.logf("bench: %v: the trial counts as not run and runs again", damaged)
			rerun[t] = true
		case err != nil:
			return n, err
		}
		if done {
			n.Resumed++
		} else {
			todo = append(todo, t)
		}
	}
	if n.Resumed > 0 {
		r.logf("bench: resuming %s: %d of %d trials already done", r.Store.Dir, n.Resumed, n.Planned)
	}
	var ran, plannedRan time.Duration // time spent in trials that ran, and their planned length
	var runs int
	done := n.Resumed
	for {
		for i, t := range todo {
			if ctx.Err() != nil {
				n.Elapsed = time.Since(start)
				return n, fmt.Errorf("%w after %d of %d trials", ErrInterrupted, done, n.Planned)
			}
			var rec TrialRecord
			if why := r.skip(t.Cell); why != "" {
				rec = TrialRecord{Trial: t, Status: StatusSkipped, Reason: why, ExitCode: -1, Started: time.Now()}
			} else {
				var err error
				rec, err = r.runTrial(ctx, t)
				if err != nil {
					n.Elapsed = time.Since(start)
					return n, err
				}
				ran += time.Duration(rec.Seconds * float64(time.Second))
				plannedRan += r.Spec.TrialDuration(t.Cell)
				runs++
			}
			if err := r.Store.WriteRecord(rec); err != nil {
				return n, err
			}
			if rerun[t] {
				n.Rerun++
			}
			switch rec.Status {
			case StatusOK:
				n.OK++
			case StatusFailed:
				n.Failed++
			default:
				n.Skipped++
			}
			done++
			left := todo[i+1:]
			r.logf("bench: [%d/%d] %s elapsed, ~%s left | %s %s: %s",
				done, n.Planned, round(time.Since(start)), round(r.estimate(left, ran, plannedRan, runs)), t.Cell, t.Label(), rec.headline())
		}
		// Adaptive repetitions: one more round of the cells not yet converged,
		// recorded in the plan before it runs.
		more, err := r.moreReps(plan)
		if err != nil || len(more) == 0 {
			n.Elapsed = time.Since(start)
			return n, err
		}
		plan.Extra = append(plan.Extra, more...)
		if err := r.Store.WritePlan(plan); err != nil {
			return n, err
		}
		n.Planned += len(more)
		todo = more
		r.logf("bench: adaptive repetitions: %d cells not yet within ±%.0f%%, one more repetition each", len(more), 100*r.Spec.RepeatTarget)
	}
}

// moreReps is the next round of adaptive repetitions (Spec.MoreReps) from what
// the store holds now.
func (r *Runner) moreReps(plan Plan) ([]Trial, error) {
	if !r.Spec.RepeatAuto {
		return nil, nil
	}
	d, err := r.Store.Load()
	if err != nil {
		return nil, err
	}
	d.Plan = plan
	return r.Spec.MoreReps(Summarise(d), plan.Trials()), nil
}

func (r *Runner) skip(c Cell) string {
	if why := PeerSkip(c); why != "" {
		return why
	}
	// A peer that is not installed (its library missing, not built) would fail
	// every trial the same way: its cells are skipped, saying so.
	if def, ok := lookupPeer(c.Model); ok {
		if _, err := def.find(r.Peers, r.Loadgen); errors.Is(err, ErrPeerNotInstalled) {
			return c.Model + ": " + err.Error()
		}
	}
	if r.Skip == nil {
		return ""
	}
	return r.Skip(c)
}

// estimate is the time the trials left will take: their planned length plus the
// mean overhead (start-up, ramp, stop) of the trials run so far, which took ran
// against plannedRan planned.
func (r *Runner) estimate(left []Trial, ran, plannedRan time.Duration, runs int) time.Duration {
	var planned time.Duration
	for _, t := range left {
		planned += r.Spec.TrialDuration(t.Cell)
	}
	if runs == 0 {
		return planned
	}
	over := (ran - plannedRan) / time.Duration(runs)
	return planned + time.Duration(len(left))*max(over, 0)
}

func (r *Runner) logf(format string, a ...any) {
	if r.Progress != nil {
		fmt.Fprintf(r.Progress, format+"\n", a...)
	}
}

// Args are loadgen's arguments for a trial of a model, writing its result to out
// (FILE.json): loadgen starts the model's server itself.
func (s Spec) Args(c Cell, out string) []string {
	args := append([]string{"-model", BaseModel(c.Model)}, s.loadArgs(c, out)...)
	for _, a := range s.serverArgs(c) {
		args = append(args, "-server-arg="+a)
	}
	return args
}

// serverArgs are the server's arguments for cell c beyond its model, protocol
// and address: its per-request work, the cell's configuration and its
// variant's setting.
func (s Spec) serverArgs(c Cell) []string {
	var args []string
	if c.Work != "" && c.Work != "none" {
		args = append(args, "-work="+c.Work)
	}
	args = append(args, s.CellConfig(c)...)
	if flag, value, ok := variantSetting(c.Model); ok {
		args = append(args, "-"+flag+"="+value)
	}
	return args
}

// PeerArgs are loadgen's arguments for a trial of a reference peer bench started:
// its address and pid (loadgen samples its process tree from /proc), the cgroup
// it runs in ("" for none: loadgen counts the kernel's work of the tree in it)
// and the CPU sets, which loadgen applies to itself and records.
func (s Spec) PeerArgs(c Cell, out, addr string, pid int, cgroup string, serverCPUs, clientCPUs []int) []string {
	args := []string{"-addr", addr, "-server-pid", strconv.Itoa(pid)}
	if cgroup != "" {
		args = append(args, "-server-cgroup", cgroup)
	}
	args = append(args, "-server-cpus", cpuset.Format(serverCPUs), "-client-cpus", cpuset.Format(clientCPUs))
	return append(args, s.loadArgs(c, out)...)
}

// trialArgs are a trial's arguments beyond its workload's: what it counts, and
// an open-loop step's rate (a fraction of its model's peak resolved from the
// closed-loop cell's record) or a search's objective.
func (r *Runner) trialArgs(t Trial) ([]string, error) {
	args := r.Spec.CountArgs(t)
	c, sp := t.Cell, r.Spec
	arrival := func() []string {
		if sp.Arrival == "" {
			return nil
		}
		return []string{"-arrival", sp.Arrival}
	}
	switch {
	case c.Search:
		args = append(args, "-search", sp.Search)
		if sp.SearchRounds > 0 {
			args = append(args, "-search-rounds", strconv.Itoa(sp.SearchRounds))
		}
		if sp.SearchTol > 0 {
			args = append(args, "-search-tol", strconv.FormatFloat(sp.SearchTol, 'g', -1, 64))
		}
		args = append(args, arrival()...)
	case c.Load > 0:
		peak, err := r.Calibration(c)
		if err != nil {
			return nil, err
		}
		args = append(append(args, "-rate", strconv.FormatFloat(math.Round(c.Load*peak), 'f', -1, 64)), arrival()...)
	case c.Rate > 0:
		args = append(append(args, "-rate", strconv.FormatFloat(c.Rate, 'f', -1, 64)), arrival()...)
	}
	return args, nil
}

// Calibration is the closed-loop throughput an open-loop step of c is a
// fraction of: that of the first repetition of c's closed-loop cell that
// completed (ok) with a throughput. The same on every repetition and on a
// resumed run.
func (r *Runner) Calibration(c Cell) (float64, error) {
	cal := c.Calibration()
	for rep := 1; rep <= r.Spec.Repeat; rep++ {
		rec, err := r.Store.ReadRecord(Trial{Cell: cal, Rep: rep})
		if err != nil || rec.Status != StatusOK || rec.Result == "" {
			continue
		}
		res, err := r.Store.ReadResult(rec)
		if err == nil && res.Load.Throughput > 0 {
			return res.Load.Throughput, nil
		}
	}
	return 0, fmt.Errorf("no closed-loop calibration: no trial of %s completed with a throughput to take %g of", cal, c.Load)
}

// CountArgs are loadgen's arguments for what a trial counts: a timed trial of a
// spec with counted repetitions counts switches and CPU but not syscalls
// (their counter would cost every syscall it times); the counted ones, and
// every trial of a spec without them, count everything.
func (s Spec) CountArgs(t Trial) []string {
	if s.CountReps > 0 && !t.Counted {
		return []string{"-count-syscalls=false"}
	}
	return nil
}

// steadyBound is how much longer than planned a trial's gate may hold it: the
// spec's SteadyTimeout, or loadgen's default.
func (s Spec) steadyBound() time.Duration {
	if s.SteadyTimeout > 0 {
		return s.SteadyTimeout
	}
	return loadgen.DefaultSteadyTimeout
}

// loadArgs are the workload's arguments, common to models and peers.
func (s Spec) loadArgs(c Cell, out string) []string {
	d := s.Duration
	if c.Timeline {
		d = s.Timeline
	}
	args := []string{"-proto", c.Proto, "-c", strconv.Itoa(c.Conns), "-d", d.String(), "-warmup", s.Warmup.String()}
	if s.SteadyTimeout > 0 {
		args = append(args, "-steady-timeout", s.SteadyTimeout.String())
	}
	if s.Timeout > 0 {
		args = append(args, "-timeout", s.Timeout.String())
	}
	if c.Timeline && s.TimelineStep > 0 {
		args = append(args, "-timeline-step", s.TimelineStep.String())
	}
	if c.Idle > 0 {
		args = append(args, "-idle", strconv.Itoa(c.Idle))
		if s.Heartbeat > 0 {
			args = append(args, "-heartbeat", s.Heartbeat.String())
		}
	}
	switch c.Proto {
	case "file":
		if s.File != "" {
			args = append(args, "-file", s.File)
		}
	case "http":
		if s.Path != "" {
			args = append(args, "-path", s.Path)
		}
	default: // a file or http request is a name: it has no payload size
		args = append(args, "-size", strconv.Itoa(s.Size))
	}
	args = append(args, "-q", "-o", out)
	if c.Reconnect {
		args = append(args, "-reconnect")
	}
	if c.Batch > 0 {
		args = append(args, "-batch", strconv.Itoa(c.Batch))
	}
	return args
}

// runTrial runs one trial and adopts its output. The error is non-nil only when
// the trial cannot be recorded: ctx was cancelled (the trial is discarded) or the
// files could not be moved.
func (r *Runner) runTrial(ctx context.Context, t Trial) (TrialRecord, error) {
	if IsPeer(t.Cell.Model) || r.Agents != nil {
		return r.runPeerTrial(ctx, t)
	}
	extra, err := r.trialArgs(t)
	if err != nil {
		return TrialRecord{Trial: t, Started: time.Now(), ExitCode: -1, Status: StatusFailed, Failure: FailNoCalibration, Reason: err.Error()}, nil
	}
	return r.runLoadgen(ctx, t, append(r.Spec.Args(t.Cell, r.Store.TmpPath(t)+".json"), extra...))
}

// runPeerTrial starts the cell's peer, runs loadgen against it, and stops it —
// also when loadgen fails or ctx is cancelled. A peer that cannot be started
// (not installed, or it never accepted) fails the trial with the reason.
func (r *Runner) runPeerTrial(ctx context.Context, t Trial) (rec TrialRecord, err error) {
	started := time.Now()
	failed := func(run *PeerRun, why error) (TrialRecord, error) {
		if ctx.Err() != nil {
			return TrialRecord{}, fmt.Errorf("%w during %s %s (discarded)", ErrInterrupted, t.Cell, t.Label())
		}
		return TrialRecord{Trial: t, Started: started, ExitCode: -1, Seconds: time.Since(started).Seconds(), Peer: run,
			Status: StatusFailed, Failure: FailPeer, Reason: t.Cell.Model + ": " + why.Error()}, nil
	}
	serverCPUs, clientCPUs, err := r.Peers.peerCPUs()
	if err != nil {
		return failed(nil, err)
	}
	p, run, err := r.startPeer(ctx, t, serverCPUs)
	if err != nil {
		return failed(run, err)
	}
	defer func() {
		if run.Exit == nil { // not stopped below: a panic on the way
			run.Exit = p.Stop(r.grace())
		}
		run.removeCgroup()
	}()
	extra, err := r.trialArgs(t)
	if err != nil {
		run.Exit = p.Stop(r.grace())
		return TrialRecord{Trial: t, Started: started, ExitCode: -1, Seconds: time.Since(started).Seconds(), Peer: run,
			Status: StatusFailed, Failure: FailNoCalibration, Reason: err.Error()}, nil
	}
	args := append(r.Spec.PeerArgs(t.Cell, r.Store.TmpPath(t)+".json", run.Addr, run.PID, run.Cgroup, serverCPUs, clientCPUs), extra...)
	if r.Agents != nil {
		args = append(append(args, "-agents="+r.Agents.Targets), r.Agents.Args...)
	}
	rec, err = r.runLoadgen(ctx, t, args)
	run.Exit = p.Stop(r.grace())
	rec.Started, rec.Peer = started, run
	rec.Seconds = time.Since(started).Seconds()
	if err != nil {
		return rec, err
	}
	switch {
	case run.Exit.Clean:
	case rec.Status == StatusOK:
		rec.Status, rec.Failure, rec.Reason = StatusFailed, FailServerExit, t.Cell.Model+": "+run.Exit.Error
	default: // loadgen's reason first; the peer's end often explains it
		rec.Reason += "; " + t.Cell.Model + ": " + exitString(run.Exit)
	}
	if rec.Status != StatusOK {
		run.Output = p.Output()
	}
	return rec, nil
}

// runLoadgen runs loadgen with args for one trial and adopts its output.
func (r *Runner) runLoadgen(ctx context.Context, t Trial, args []string) (TrialRecord, error) {
	rec := TrialRecord{Trial: t, Started: time.Now(), ExitCode: -1}
	if err := os.MkdirAll(filepath.Dir(r.Store.TmpPath(t)), 0o755); err != nil {
		return rec, err
	}
	slack := r.Slack
	if slack == 0 {
		slack = 30 * time.Second
	}
	limit := r.Spec.TrialDuration(t.Cell) + r.Spec.steadyBound() + slack + time.Duration((t.Cell.Conns+t.Cell.Idle)/500)*time.Second
	if r.Agents != nil {
		// ssh, the copies, and the agents' ramps, up to -agent-wait apart.
		limit += r.Agents.wait() + time.Minute
	}
	if t.Cell.Search {
		// A calibration and every step of every round, each a trial of its own.
		limit += time.Duration(r.Spec.SearchSteps()) * (r.Spec.TrialDuration(t.Cell) + 10*time.Second)
	}
	tctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(tctx, r.Loadgen, args...)
	// SIGINT lets loadgen stop its server cleanly; a loadgen that does not exit in
	// 20 s more is killed.
	cmd.Cancel = func() error {
		if ctx.Err() != nil {
			r.logf("bench: interrupted: stopping the trial in flight, %s %s", t.Cell, t.Label())
		}
		return cmd.Process.Signal(syscall.SIGINT)
	}
	cmd.WaitDelay = 20 * time.Second
	// loadgen leads a process group of its own, which its server and the server's
	// workers join: whatever of it outlives loadgen is found and killed below. It
	// also keeps a terminal's ^C, sent to bench's group, to bench, which stops
	// loadgen, which stops its server, in that order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// stderr is a pipe of our own rather than an io.Writer: exec would make Wait
	// wait for every holder of the pipe — the server and its workers inherit it —
	// so a server left behind would hold up the kill below. stdout (loadgen's
	// summary; the result is the file) goes to /dev/null.
	pr, pw, err := os.Pipe()
	if err != nil {
		return rec, err
	}
	defer pr.Close()
	var stderr supervise.Tail
	copied := make(chan struct{})
	go func() {
		io.Copy(&stderr, pr)
		close(copied)
	}()
	cmd.Stderr = pw
	err = cmd.Start()
	pw.Close()
	if err == nil {
		err = cmd.Wait()
	}
	rec.Seconds = time.Since(rec.Started).Seconds()
	timedOut := tctx.Err() != nil // before the waits below can pass the limit
	// loadgen waits for its server and the server for its workers: a live member
	// of the group is a leak (or was left by a loadgen killed past WaitDelay), and
	// must not run on into the next trial.
	leaked := cmd.Process != nil && supervise.KillGroup(cmd.Process.Pid)
	select { // the pipe is at its end once the group is gone and it is read
	case <-copied:
	case <-time.After(time.Second):
	}
	if ctx.Err() != nil {
		return rec, fmt.Errorf("%w during %s %s (discarded)", ErrInterrupted, t.Cell, t.Label())
	}
	if cmd.ProcessState != nil {
		rec.ExitCode = cmd.ProcessState.ExitCode()
	}
	path, aerr := r.Store.Adopt(t)
	if aerr != nil {
		return rec, aerr
	}
	rec.Result = path
	var res *result.Run
	unreadable := false
	if path != "" {
		// Read as a resumed run will, so that a trial recorded here is never
		// found damaged later.
		if res, aerr = r.Store.ReadResult(rec); aerr != nil {
			rec.Result, res, unreadable = "", nil, true
			rec.Reason = "unreadable result: " + aerr.Error()
		}
	}
	rec.Status, rec.Failure = classify(rec.ExitCode, timedOut, err, res)
	if rec.Status == StatusOK && unreadable {
		rec.Status, rec.Failure = StatusFailed, FailNoResult
	}
	if rec.Status != StatusOK {
		rec.Stderr = stderr.String()
		if rec.Reason == "" {
			rec.Reason = failureReason(rec, err, res)
		}
	}
	if leaked {
		const leak = "processes of loadgen's group (its server, the server's workers) outlived loadgen and were killed"
		if rec.Status == StatusOK {
			rec.Status, rec.Failure, rec.Reason, rec.Stderr = StatusFailed, FailServerExit, leak, stderr.String()
		} else {
			rec.Reason += "; " + leak
		}
	}
	if res != nil {
		rec.Headline = Headline(res)
	}
	return rec, nil
}

// classify turns loadgen's exit into a status and failure kind. loadgen exits 0
// on success, 1 when the run failed (its result, if written, says why) and 2 on
// a usage error.
func classify(code int, timedOut bool, runErr error, res *result.Run) (status, failure string) {
	switch {
	case timedOut:
		return StatusFailed, FailTimeout
	case runErr == nil && code == 0:
		return StatusOK, ""
	case code == 2:
		return StatusFailed, FailUsage
	case res == nil:
		return StatusFailed, FailNoResult
	case res.Load.ErrorsTotal > 0, res.Load.Idle != nil && res.Load.Idle.ErrorsTotal > 0:
		return StatusFailed, FailErrors
	case res.Server != nil && res.Server.Exit != nil && !res.Server.Exit.Clean:
		return StatusFailed, FailServerExit
	case res.Load.Steady != nil && res.Load.Steady.State == result.SteadyNot:
		return StatusFailed, FailNotSteady
	}
	return StatusFailed, FailNoResult
}

func failureReason(rec TrialRecord, runErr error, res *result.Run) string {
	switch rec.Failure {
	case FailErrors:
		why := ErrorsString(res.Load.Errors)
		if id := res.Load.Idle; id != nil && id.ErrorsTotal > 0 {
			if why != "" {
				why += "; "
			}
			why += fmt.Sprintf("idle connections lost: %s (%d of %d)", ErrorsString(id.Errors), id.ErrorsTotal, id.Conns)
		}
		// A server that died mid-run explains the errors: say both.
		if e := res.Server; e != nil && e.Exit != nil && !e.Exit.Clean {
			return why + "; server: " + exitString(e.Exit)
		}
		return why
	case FailServerExit:
		// As with errors above: the server died, possibly before any request
		// failed (loadgen stops the load as soon as its server exits).
		return "server: " + exitString(res.Server.Exit)
	case FailTimeout:
		return "loadgen did not finish in time and was stopped"
	case FailNotSteady:
		st := res.Load.Steady
		return fmt.Sprintf("not steady: %d of %d connections served %.1fs after the load started, still growing at the %gs bound (no window measured)",
			st.ServedAtStart, res.Config.Workload.Conns, st.WaitSeconds, st.TimeoutSeconds)
	}
	if last := lastLine(rec.Stderr); last != "" {
		return last
	}
	if runErr != nil {
		return runErr.Error()
	}
	return "loadgen failed"
}

// Headline is a result's one-line summary: throughput, p99, errors, flags.
func Headline(r *result.Run) string {
	s := fmt.Sprintf("%s req/s, p99 %s", Num(r.Load.Throughput), Micros(float64(r.Load.Latency.P99US)))
	if r.Load.ErrorsTotal > 0 {
		s += ", errors " + ErrorsString(r.Load.Errors)
	}
	if r.ClientBound {
		s += ", CLIENT-BOUND"
	}
	return s
}

func (rec TrialRecord) headline() string {
	switch rec.Status {
	case StatusSkipped:
		return "skipped: " + rec.Reason
	case StatusFailed:
		s := "FAILED (" + rec.Failure + "): " + rec.Reason
		if rec.Headline != "" {
			s += " | " + rec.Headline
		}
		return s
	}
	return rec.Headline
}

// exitString is a server's unclean exit for a reason: what went wrong and how it
// ended, "the server exited before loadgen stopped it (signal: killed)".
func exitString(e *result.Exit) string {
	how := supervise.Describe(&result.Exit{Code: e.Code, Signal: e.Signal})
	switch {
	case e.Error == "":
		return how
	case e.Code == -1 && e.Signal == "": // status unknown (a server loadgen did not start)
		return e.Error
	}
	return e.Error + " (" + how + ")"
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func round(d time.Duration) time.Duration { return d.Round(time.Second) }

// DefaultSkip skips cells this machine cannot run at all: more connections
// (busy and idle) than the descriptor limit allows. More connections than one
// source address's ephemeral ports is not such a cell: loadgen spreads them over
// more loopback addresses itself. Cells a model cannot run (select past
// FD_SETSIZE, a pool smaller than the concurrency) are run, and their failures
// recorded. Skipped with the reason, because every trial would fail the same
// way: a model this machine cannot run (the kernel refuses io_uring), and a
// datagram cell of a model or peer that serves connections only (fork,
// thread, procpool; the C peers and nginx), which refuses udp-echo at start.
func DefaultSkip(c Cell) string {
	if !IsPeer(c.Model) {
		if err := models.Unavailable(BaseModel(c.Model)); err != nil {
			return err.Error()
		}
	}
	if proto.IsDatagram(c.Proto) {
		if IsPeer(c.Model) {
			return fmt.Sprintf("%s serves TCP only, not %s", c.Model, c.Proto)
		}
		if why := models.DatagramRefusal(BaseModel(c.Model)); why != "" {
			return fmt.Sprintf("-model %s does not serve %s: %s", BaseModel(c.Model), c.Proto, why)
		}
	}
	n := c.Conns + c.Idle
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil && uint64(n)+256 > rl.Max && os.Geteuid() != 0 {
		return fmt.Sprintf("%d connections need more descriptors than the hard limit %d (ulimit -Hn)", n, rl.Max)
	}
	return ""
}

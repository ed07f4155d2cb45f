package bench

// The instrument's calibration: at the start of a run, loadgen and a minimal C
// client (peers/cclient) drive the same reference server (peer:cepoll) with the
// same load, taking turns of 100 ms (calibrationRound), and bench records what
// each spent per request. A load generator can drive a server to its limit only if it spends
// less per request than the server does: the ratio says how much of the
// instrument's cost is loadgen's own beyond the floor a C client sets, and so
// how far a "client-bound" figure is from what the server could do.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/montanaflynn/stats"
	"golang.org/x/sys/unix"

	"concbench/internal/result"
)

// CalibrationFile is the calibration's record in a run directory.
const CalibrationFile = "calibration.json"

// The calibration's load: echo of 64-byte requests over 100 connections,
// closed loop, about 1 s of each client's own measured after 300 ms of its own,
// CalibrationRounds rounds.
const (
	calibrationConns  = 100
	calibrationWarmup = 300 * time.Millisecond
	CalibrationRounds = 5
	// CalibrationWarn is the ratio above which bench warns that loadgen costs
	// too much beside the C client for its client-bound figures to be close to
	// what a leaner client would see.
	CalibrationWarn = 1.2
)

// CalibrationRound is one client's run in the calibration.
type CalibrationRound struct {
	Client   string  `json:"client"` // "loadgen" or "cclient"
	Requests int64   `json:"requests"`
	Seconds  float64 `json:"seconds"`
	// CPUUSPerReq is the client's CPU time (user+system, getrusage over the
	// measured window) per request.
	CPUUSPerReq float64 `json:"cpu_us_per_req"`
	// SwitchesPerReq is the client's context switches per request: cclient's
	// from getrusage, loadgen's from the kernel's counts over its cgroup;
	// negative when not measured.
	SwitchesPerReq float64 `json:"switches_per_req"`
}

// Calibration is what the calibration measured, or why it did not.
type Calibration struct {
	Proto   string             `json:"proto"`
	Conns   int                `json:"conns"`
	Size    int                `json:"size"`
	Started time.Time          `json:"started"`
	Rounds  []CalibrationRound `json:"rounds,omitempty"`
	// SliceMS: in each round the two clients ran at once, taking turns of
	// SliceMS milliseconds (calibrationRound); 0 in a calibration of before
	// that, whose rounds ran one client after the other.
	SliceMS int64 `json:"slice_ms,omitempty"`
	// Missing says why there is no calibration (cclient or cepoll not built, a
	// client failed); "" when there is.
	Missing string `json:"missing,omitempty"`
}

// medianOf is the median over a client's rounds of f, those where f is
// measured (not negative); -1 when there is none.
func (c *Calibration) medianOf(client string, f func(CalibrationRound) float64) float64 {
	var v []float64
	for _, r := range c.Rounds {
		if r.Client == client && f(r) >= 0 {
			v = append(v, f(r))
		}
	}
	med, err := stats.Median(v)
	if err != nil { // none measured
		return -1
	}
	return med
}

// CPU is the median CPU per request (µs) of loadgen and of cclient, and their
// ratio; ok is false without both. The ratio of a calibration whose clients
// took turns is the median of its rounds' own ratios (each of two clients
// measured over the same seconds); of one before that, the medians' ratio.
func (c *Calibration) CPU() (loadgen, cclient, ratio float64, ok bool) {
	cpu := func(r CalibrationRound) float64 { return r.CPUUSPerReq }
	loadgen, cclient = c.medianOf("loadgen", cpu), c.medianOf("cclient", cpu)
	if loadgen <= 0 || cclient <= 0 {
		return loadgen, cclient, 0, false
	}
	if rs := c.ratios(); c.SliceMS > 0 && len(rs) > 0 {
		ratio, _ = stats.Median(rs)
		return loadgen, cclient, ratio, true
	}
	return loadgen, cclient, loadgen / cclient, true
}

// ratios are the rounds' own ratios, loadgen's CPU per request over cclient's:
// a round is a cclient entry and the loadgen entry after it.
func (c *Calibration) ratios() []float64 {
	var rs []float64
	for i := 0; i+1 < len(c.Rounds); i++ {
		cc, lg := c.Rounds[i], c.Rounds[i+1]
		if cc.Client == "cclient" && lg.Client == "loadgen" && cc.CPUUSPerReq > 0 && lg.CPUUSPerReq > 0 {
			rs = append(rs, lg.CPUUSPerReq/cc.CPUUSPerReq)
			i++
		}
	}
	return rs
}

// Switches is the median context switches per request of loadgen and of
// cclient, -1 for one not measured.
func (c *Calibration) Switches() (loadgen, cclient float64) {
	sw := func(r CalibrationRound) float64 { return r.SwitchesPerReq }
	return c.medianOf("loadgen", sw), c.medianOf("cclient", sw)
}

// Line is the calibration in one sentence, for the report and bench's log.
func (c *Calibration) Line() string {
	if c == nil {
		return "not calibrated (the run predates the calibration)"
	}
	if c.Missing != "" {
		return "not calibrated: " + c.Missing
	}
	lg, cc, ratio, ok := c.CPU()
	if !ok {
		return "not calibrated: no round measured both clients"
	}
	s := fmt.Sprintf("the instrument spends %.2f µs of CPU a request, the C client %.2f (ratio %.2f)", lg, cc, ratio)
	if swl, swc := c.Switches(); swl >= 0 && swc >= 0 {
		s += fmt.Sprintf("; context switches a request %.3f and %.3f", swl, swc)
	}
	rounds := 0
	for _, r := range c.Rounds {
		if r.Client == "loadgen" {
			rounds++
		}
	}
	how := "interleaved rounds each"
	if rs := c.ratios(); c.SliceMS > 0 && len(rs) > 0 {
		how = fmt.Sprintf("rounds, the two clients at once taking turns of %d ms (a change of the host's speed falls on both alike; the ratio is the median of the rounds', %.2f–%.2f),",
			c.SliceMS, slices.Min(rs), slices.Max(rs))
	}
	s += fmt.Sprintf(" — medians of %d %s against peer:cepoll, %s %d B, %d connections, closed loop",
		rounds, how, c.Proto, c.Size, c.Conns)
	if ratio > CalibrationWarn {
		s += fmt.Sprintf(". WARNING: loadgen costs more than %.1f× the C client: its client-bound figures are further below the servers' limits than a leaner client's would be", CalibrationWarn)
	}
	return s
}

// ReadCalibration reads a run directory's calibration; nil, nil when it has
// none.
func ReadCalibration(dir string) (*Calibration, error) {
	b, err := os.ReadFile(filepath.Join(dir, CalibrationFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var c Calibration
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", CalibrationFile, err)
	}
	return &c, nil
}

// calibrate runs the calibration into the run directory, unless it holds one
// already (a resumed run keeps its own). A calibration that cannot run is
// recorded as missing, with the reason; the matrix goes on either way.
func (r *Runner) calibrate(ctx context.Context) error {
	if c, err := ReadCalibration(r.Store.Dir); err != nil || c != nil {
		return err
	}
	c := r.measureCalibration(ctx)
	if ctx.Err() != nil {
		return nil // interrupted: a resumed run calibrates again
	}
	r.logf("bench: calibration: %s", c.Line())
	return writeJSONAtomic(filepath.Join(r.Store.Dir, CalibrationFile), c)
}

func (r *Runner) measureCalibration(ctx context.Context) *Calibration {
	c := &Calibration{Proto: "echo", Conns: calibrationConns, Size: r.Spec.Size, Started: time.Now()}
	if c.Size <= 0 {
		c.Size = 64
	}
	cclient := filepath.Join(filepath.Dir(r.Loadgen), "cclient")
	if _, err := os.Stat(cclient); err != nil {
		c.Missing = fmt.Sprintf("no C client at %s (make build builds it): %v", cclient, err)
		return c
	}
	serverCPUs, clientCPUs, err := r.Peers.peerCPUs()
	if err != nil {
		c.Missing = err.Error()
		return c
	}
	cell := Cell{Model: PeerPrefix + "cepoll", Proto: c.Proto, Work: "none", Conns: c.Conns}
	p, run, err := r.startPeer(ctx, Trial{Cell: cell}, serverCPUs)
	if err != nil {
		c.Missing = "peer:cepoll: " + err.Error()
		return c
	}
	defer func() {
		p.Stop(r.grace())
		run.removeCgroup()
	}()
	dir, err := os.MkdirTemp("", "concbench-calibration-")
	if err != nil {
		c.Missing = err.Error()
		return c
	}
	defer os.RemoveAll(dir)
	for i := range CalibrationRounds {
		cc, lg, err := r.calibrationRound(ctx, cclient, filepath.Join(dir, fmt.Sprintf("loadgen%d.json", i)), c, cell, run, serverCPUs, clientCPUs)
		if err != nil {
			return c.failed(fmt.Sprintf("round %d: %v", i+1, err))
		}
		c.Rounds = append(c.Rounds, cc, lg)
	}
	c.SliceMS = calibrationSlice.Milliseconds()
	return c
}

// failed marks c as not calibrated, why, dropping the rounds it had.
func (c *Calibration) failed(why string) *Calibration {
	c.Missing, c.Rounds = why, nil
	return c
}

// calibrationSlice is how long each client runs while the other is stopped in
// a calibration round.
const calibrationSlice = 100 * time.Millisecond

// calibrationRound runs cclient and loadgen at once against the peer, on the
// same client CPU, taking turns: one is stopped (SIGSTOP) while the other runs,
// switching every calibrationSlice. Run one after the other, the two would
// meet different hosts — this machine's speed moves by tens of percent within
// seconds, and their ratio moved with it (0.69–1.85 over five back-to-back
// rounds in one hour); taking turns, a change of speed falls on both alike
// (1.06–1.09 over three rounds in the same hour). Each measures over a window twice the
// calibration's, so that each runs about one of it; CPU time and requests
// accrue only while a client runs, so its CPU per request is its own. Whichever
// ends first leaves the other to finish alone.
func (r *Runner) calibrationRound(ctx context.Context, cclient, out string, c *Calibration, cell Cell, run *PeerRun, serverCPUs, clientCPUs []int) (cc, lg CalibrationRound, err error) {
	d := 2 * r.calibrationDuration()
	warm := 2 * calibrationWarmup
	tctx, cancel := context.WithTimeout(ctx, d+time.Minute)
	defer cancel()

	ccArgs := []string{"-addr", run.Addr, "-proto", c.Proto, "-c", strconv.Itoa(c.Conns), "-size", strconv.Itoa(c.Size),
		"-d", strconv.FormatFloat(d.Seconds(), 'f', -1, 64), "-warmup", strconv.FormatFloat(warm.Seconds(), 'f', -1, 64)}
	if len(clientCPUs) > 0 {
		ccArgs = append(ccArgs, "-cpu", strconv.Itoa(clientCPUs[0]))
	}
	spec := r.Spec
	spec.Duration, spec.Warmup, spec.Size, spec.Timeline = d, warm, c.Size, 0
	lgArgs := append(spec.PeerArgs(cell, out, run.Addr, run.PID, run.Cgroup, serverCPUs, clientCPUs), "-count-syscalls=false")

	var ccOut, ccErr, lgOut bytes.Buffer
	cmds := []*exec.Cmd{exec.CommandContext(tctx, cclient, ccArgs...), exec.CommandContext(tctx, r.Loadgen, lgArgs...)}
	cmds[0].Stdout, cmds[0].Stderr = &ccOut, &ccErr
	cmds[1].Stdout, cmds[1].Stderr = &lgOut, &lgOut
	for i, cmd := range cmds {
		if err := cmd.Start(); err != nil {
			for _, started := range cmds[:i] {
				started.Process.Kill()
				started.Wait()
			}
			return cc, lg, err
		}
	}
	errs := takeTurns(cmds, calibrationSlice)
	if errs[0] != nil {
		return cc, lg, fmt.Errorf("cclient: %w: %s", errs[0], lastLine(ccErr.String()))
	}
	if errs[1] != nil {
		return cc, lg, fmt.Errorf("loadgen: %w: %s", errs[1], lastLine(lgOut.String()))
	}
	if cc, err = cclientRound(ccOut.Bytes()); err != nil {
		return cc, lg, fmt.Errorf("cclient: %w", err)
	}
	if lg, err = loadgenRound(out); err != nil {
		return cc, lg, fmt.Errorf("loadgen: %w", err)
	}
	return cc, lg, nil
}

// takeTurns lets the started commands run one at a time, each for slice while
// the others are stopped, until one exits; then every one left runs on to its
// end. It returns their Wait errors, and leaves none stopped.
func takeTurns(cmds []*exec.Cmd, slice time.Duration) []error {
	errs := make([]error, len(cmds))
	exited := make(chan int, len(cmds))
	for i, cmd := range cmds {
		go func() {
			errs[i] = cmd.Wait()
			exited <- i
		}()
	}
	// Through the os.Process (a pidfd where the kernel has them): a process
	// already waited for is not signalled, and a reused pid never is.
	signal := func(i int, sig os.Signal) {
		_ = cmds[i].Process.Signal(sig) // "process already finished": it has just exited
	}
	tick := time.NewTicker(slice)
	defer tick.Stop()
	left, turn := len(cmds), 0
	for left == len(cmds) {
		for i := range cmds {
			if i != turn {
				signal(i, unix.SIGSTOP)
			}
		}
		signal(turn, unix.SIGCONT)
		select {
		case <-exited:
			left--
		case <-tick.C:
			turn = (turn + 1) % len(cmds)
		}
	}
	for i := range cmds {
		signal(i, unix.SIGCONT)
	}
	for ; left > 0; left-- {
		<-exited
	}
	return errs
}

// cclientRound reads cclient's report.
func cclientRound(out []byte) (CalibrationRound, error) {
	rd := CalibrationRound{Client: "cclient"}
	var o struct {
		Requests               int64
		Seconds                float64
		UserUS                 float64 `json:"user_us"`
		SystemUS               float64 `json:"system_us"`
		Voluntary, Involuntary float64
	}
	if err := json.Unmarshal(out, &o); err != nil {
		return rd, fmt.Errorf("its output %q: %w", out, err)
	}
	if o.Requests <= 0 {
		return rd, errors.New("no request completed")
	}
	n := float64(o.Requests)
	rd.Requests, rd.Seconds = o.Requests, o.Seconds
	rd.CPUUSPerReq = (o.UserUS + o.SystemUS) / n
	rd.SwitchesPerReq = (o.Voluntary + o.Involuntary) / n
	return rd, nil
}

// loadgenRound reads loadgen's result: its CPU over the window (getrusage) and
// its switches (the kernel's counts of its cgroup), per request.
func loadgenRound(path string) (CalibrationRound, error) {
	rd := CalibrationRound{Client: "loadgen", SwitchesPerReq: -1}
	res, err := result.ReadFile(path)
	if err != nil {
		return rd, err
	}
	if res.Load.Requests <= 0 {
		return rd, errors.New("no request completed")
	}
	n := float64(res.Load.Requests)
	rd.Requests, rd.Seconds = res.Load.Requests, res.Load.Seconds
	rd.CPUUSPerReq = res.Client.CPUSeconds * 1e6 / n
	if k := res.Client.Kernel; k != nil {
		rd.SwitchesPerReq = float64(k.CtxSwitches) / n
	}
	return rd, nil
}

// calibrationDuration is each calibration round's measured window: the spec's
// trial duration, at most 1 s (the calibration costs the run 6 of them).
func (r *Runner) calibrationDuration() time.Duration {
	d := r.Spec.Duration
	if d <= 0 || d > time.Second {
		d = time.Second
	}
	return d
}

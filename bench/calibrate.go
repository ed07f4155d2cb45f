package bench

// The instrument's calibration: at the start of a run, loadgen and a minimal C
// client (peers/cclient) in turn drive the same reference server (peer:cepoll)
// with the same load, interleaved, and bench records what each spent per
// request. A load generator can drive a server to its limit only if it spends
// less per request than the server does: the ratio says how much of the
// instrument's cost is loadgen's own beyond the floor a C client sets, and so
// how far a "client-bound" figure is from what the server could do.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/montanaflynn/stats"

	"concbench/internal/result"
)

// CalibrationFile is the calibration's record in a run directory.
const CalibrationFile = "calibration.json"

// The calibration's load: echo of 64-byte requests over 100 connections,
// closed loop, 1 s measured after 300 ms, CalibrationRounds times each client.
const (
	calibrationConns  = 100
	CalibrationRounds = 3
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
// ratio; ok is false without both.
func (c *Calibration) CPU() (loadgen, cclient, ratio float64, ok bool) {
	cpu := func(r CalibrationRound) float64 { return r.CPUUSPerReq }
	loadgen, cclient = c.medianOf("loadgen", cpu), c.medianOf("cclient", cpu)
	if loadgen <= 0 || cclient <= 0 {
		return loadgen, cclient, 0, false
	}
	return loadgen, cclient, loadgen / cclient, true
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
	s += fmt.Sprintf(" — medians of %d interleaved rounds each against peer:cepoll, %s %d B, %d connections, closed loop",
		rounds, c.Proto, c.Size, c.Conns)
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
		cc, err := r.runCclient(ctx, cclient, run.Addr, c, clientCPUs)
		if err != nil {
			return c.failed(fmt.Sprintf("cclient, round %d: %v", i+1, err))
		}
		lg, err := r.runCalibrationLoadgen(ctx, filepath.Join(dir, fmt.Sprintf("loadgen%d.json", i)), cell, c.Size, run, serverCPUs, clientCPUs)
		if err != nil {
			return c.failed(fmt.Sprintf("loadgen, round %d: %v", i+1, err))
		}
		c.Rounds = append(c.Rounds, cc, lg)
	}
	return c
}

// failed marks c as not calibrated, why, dropping the rounds it had.
func (c *Calibration) failed(why string) *Calibration {
	c.Missing, c.Rounds = why, nil
	return c
}

// runCclient runs the C client once against addr on the first client CPU.
func (r *Runner) runCclient(ctx context.Context, bin, addr string, c *Calibration, clientCPUs []int) (CalibrationRound, error) {
	rd := CalibrationRound{Client: "cclient"}
	args := []string{"-addr", addr, "-proto", c.Proto, "-c", strconv.Itoa(c.Conns), "-size", strconv.Itoa(c.Size),
		"-d", strconv.FormatFloat(r.calibrationDuration().Seconds(), 'f', -1, 64), "-warmup", "0.3"}
	if len(clientCPUs) > 0 {
		args = append(args, "-cpu", strconv.Itoa(clientCPUs[0]))
	}
	tctx, cancel := context.WithTimeout(ctx, r.calibrationDuration()+30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(tctx, bin, args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, lastLine(string(ee.Stderr)))
		}
		return rd, err
	}
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

// runCalibrationLoadgen runs loadgen once against the calibration's peer, as
// bench runs a timed trial of a peer (no syscall counting).
func (r *Runner) runCalibrationLoadgen(ctx context.Context, out string, cell Cell, size int, run *PeerRun, serverCPUs, clientCPUs []int) (CalibrationRound, error) {
	rd := CalibrationRound{Client: "loadgen", SwitchesPerReq: -1}
	spec := r.Spec
	spec.Duration, spec.Warmup, spec.Size, spec.Timeline = r.calibrationDuration(), 300*time.Millisecond, size, 0
	args := append(spec.PeerArgs(cell, out, run.Addr, run.PID, run.Cgroup, serverCPUs, clientCPUs), "-count-syscalls=false")
	tctx, cancel := context.WithTimeout(ctx, r.calibrationDuration()+time.Minute)
	defer cancel()
	if b, err := exec.CommandContext(tctx, r.Loadgen, args...).CombinedOutput(); err != nil {
		return rd, fmt.Errorf("%w: %s", err, lastLine(string(b)))
	}
	res, err := result.ReadFile(out)
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

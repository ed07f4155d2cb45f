package loadgen

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"concbench/internal/result"
)

// Outcome is what a run measured: the client-side figures in the result schema,
// the merged latency histogram (for the .hgrm file) and warnings.
type Outcome struct {
	Load result.Load
	// Workload is the workload as run, defaults filled in.
	Workload result.Workload
	// Latency is the merged latency histogram in µs (corrected in open loop).
	Latency *hdr.Histogram
	// Warnings say what the figures cannot be trusted for (a loop not pinned, a rate
	// not reached, a ramp that did not reach its target).
	Warnings []string
	// LoadStart is when load started (the ramp was over).
	LoadStart time.Time
}

// Run runs cfg's workload against cfg.Addr until Warmup+Duration has passed, the
// request count is reached, or ctx is cancelled (then the figures are partial). It
// returns an error only if the run could not start; errors of the load itself
// (refused connects, resets, wrong replies…) are counted in Outcome.Load.Errors.
func Run(ctx context.Context, cfg Config) (*Outcome, error) {
	w, err := Resolve(cfg.Workload)
	if err != nil {
		return nil, err
	}
	cfg.Workload = w
	base := time.Now()
	sh, err := newShared(cfg, base)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	seconds := max(1, int(math.Ceil((w.Warmup + w.Duration).Seconds())))
	quota := func(gid int) int64 {
		if w.Requests == 0 {
			return -1
		}
		q := w.Requests / int64(w.Conns)
		if int64(gid) < w.Requests%int64(w.Conns) {
			q++
		}
		return q
	}
	rampMax := (w.ConnectInFlight + w.Loops - 1) / w.Loops
	loops := make([]*loop, 0, w.Loops)
	for i := range w.Loops {
		var gids []int
		for g := i; g < w.Conns; g += w.Loops {
			gids = append(gids, g)
		}
		cpu := -1
		if len(w.CPUs) > 0 {
			cpu = w.CPUs[i%len(w.CPUs)]
		}
		l, err := newLoop(sh, cpu, gids, rampMax, quota, seconds)
		if err != nil {
			for _, l := range loops {
				l.close()
			}
			return nil, err
		}
		loops = append(loops, l)
	}

	rampDone := make(chan struct{}, len(loops))
	start := make(chan int64, len(loops))
	// Loops that loaded say they stopped, then keep their connections open until
	// release: the end of the window is marked while the server still holds every
	// connection (a process or thread per connection is still there to be read).
	stopped := make(chan struct{}, len(loops))
	release := make(chan struct{})
	var wg sync.WaitGroup
	for _, l := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.run(rampDone, start, stopped, release)
		}()
	}
	finished := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			sh.stop.Store(true)
		case <-finished:
		}
	}()
	for range loops {
		<-rampDone
	}
	t0 := int64(time.Since(base))
	if sh.stop.Load() {
		t0 = 0 // cancelled during the ramp: do not load
	}
	loadStart := base.Add(time.Duration(t0))
	if t0 != 0 && cfg.OnLoad != nil {
		cfg.OnLoad(loadStart)
	}
	for range loops {
		start <- t0
	}
	if t0 != 0 {
		allStopped := make(chan struct{})
		go func() {
			for range loops {
				<-stopped
			}
			close(allStopped)
		}()
		measuring := false
		if cfg.OnMeasure != nil {
			select {
			case <-time.After(time.Until(loadStart.Add(w.Warmup))):
				cfg.OnMeasure(true, time.Now())
				measuring = true
			case <-allStopped:
			}
		}
		<-allStopped
		if measuring {
			cfg.OnMeasure(false, time.Now())
		}
	}
	close(release)
	wg.Wait()
	close(finished)
	return merge(sh, loops, t0, loadStart), nil
}

// merge adds up the loops' figures.
func merge(sh *shared, loops []*loop, t0 int64, loadStart time.Time) *Outcome {
	w := sh.cfg.Workload
	o := &Outcome{Workload: w, LoadStart: loadStart}
	lat := hdr.New(histMin, histMax, histDigits)
	conn := hdr.New(histMin, histMax, histDigits)
	var uncorr, lag *hdr.Histogram
	if sh.open {
		uncorr = hdr.New(histMin, histMax, histDigits)
		lag = hdr.New(histMin, histMax, histDigits)
	}
	var errs [numErrorKinds]int64
	var rampEnd, stopped int64
	ld := &o.Load
	ld.Connect.Target = w.Conns
	nsec := len(loops[0].st.secReqs)
	ld.Timeline = make([]result.Second, nsec)
	secHist := make([]*hdr.Histogram, nsec)
	for i := range secHist {
		secHist[i] = hdr.New(histMin, histMax, secDigits)
	}
	for i, l := range loops {
		st := &l.st
		lat.Merge(st.latency)
		conn.Merge(st.connect)
		if sh.open {
			uncorr.Merge(st.uncorrected)
			lag.Merge(st.sendLag)
		}
		for k, n := range st.errors {
			errs[k] += n
		}
		ld.Requests += st.requests
		ld.InFlightAtEnd += st.inFlightAtEnd
		ld.Connect.Established += st.established
		rampEnd = max(rampEnd, st.rampEnd)
		stopped = max(stopped, st.stopped)
		for s := range nsec {
			ld.Timeline[s].Requests += st.secReqs[s]
			ld.Timeline[s].Errors += st.secErrs[s]
			secHist[s].Merge(st.secHist[s])
		}
		if st.pinErr != nil {
			o.Warnings = append(o.Warnings, fmt.Sprintf("loop %d not pinned to CPU %d: %v", i, l.cpu, st.pinErr))
		}
	}
	ld.Mode = "closed"
	ld.Latency = Percentiles(lat)
	if sh.open {
		ld.Mode = "open"
		ld.TargetRate = w.Rate
		u, g := Percentiles(uncorr), Percentiles(lag)
		ld.Uncorrected, ld.SendLag = &u, &g
	}
	ld.Connect.Latency = Percentiles(conn)
	ld.Connect.RampSeconds = time.Duration(rampEnd).Seconds()
	ld.Errors = map[string]int64{}
	for k, n := range errs {
		if n > 0 {
			ld.Errors[ErrorKind(k).String()] = n
			ld.ErrorsTotal += n
		}
	}
	if t0 != 0 {
		warmEnd := t0 + int64(w.Warmup)
		ld.Seconds = max(0, time.Duration(stopped-warmEnd).Seconds())
		used := min(nsec, int(math.Ceil(time.Duration(stopped-t0).Seconds())))
		ld.Timeline = ld.Timeline[:max(used, 0)]
		for s := range ld.Timeline {
			ld.Timeline[s].T = s
			ld.Timeline[s].Warmup = time.Duration(s)*time.Second < w.Warmup
			ld.Timeline[s].P99US = secHist[s].ValueAtQuantile(99)
		}
	} else {
		ld.Timeline = nil
	}
	if ld.Seconds > 0 {
		ld.Throughput = float64(ld.Requests) / ld.Seconds
	}
	if sh.open && ld.Throughput < 0.98*w.Rate {
		ld.RateShortfall = true
		o.Warnings = append(o.Warnings, fmt.Sprintf("achieved %.0f req/s, short of the %.0f req/s asked for: the latencies include the queue that built up", ld.Throughput, w.Rate))
	}
	if !w.Reconnect && ld.Connect.Established < w.Conns {
		o.Warnings = append(o.Warnings, fmt.Sprintf("only %d of %d connections were established when the ramp ended", ld.Connect.Established, w.Conns))
	}
	if sh.kind >= kFile && !sh.expect.std {
		o.Warnings = append(o.Warnings, fmt.Sprintf("%s is not a standard file: replies were checked for framing and a size consistent with the one announced, not for content", target(w)))
	}
	o.Latency = lat
	return o
}

// target is what a file or http workload asks for.
func target(w result.Workload) string {
	if w.Proto == "file" {
		return w.File
	}
	return w.Path
}

// Percentiles summarises a histogram of µs values.
func Percentiles(h *hdr.Histogram) result.Percentiles {
	if h.TotalCount() == 0 {
		return result.Percentiles{}
	}
	return result.Percentiles{
		Count:   h.TotalCount(),
		MinUS:   h.Min(),
		MeanUS:  h.Mean(),
		P50US:   h.ValueAtQuantile(50),
		P90US:   h.ValueAtQuantile(90),
		P99US:   h.ValueAtQuantile(99),
		P999US:  h.ValueAtQuantile(99.9),
		P9999US: h.ValueAtQuantile(99.99),
		MaxUS:   h.Max(),
	}
}

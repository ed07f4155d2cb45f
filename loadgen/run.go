package loadgen

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
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
	// WindowErr is why no window was measured when Config.WindowAt had a say
	// (it refused, chose too late an instant, or the load stopped first).
	WindowErr error
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
	// The timeline covers the longest the load may last: the warm-up (or the
	// gate's bound, which is longer) and the window.
	span := w.Warmup + w.Duration
	if sh.gate {
		span = max(w.Warmup, w.SteadyTimeout) + w.Duration
	}
	if cfg.WindowAt != nil {
		span += cfg.WindowWait
	}
	seconds := max(1, int(math.Ceil(float64(span)/float64(w.TimelineStep))))
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
		for g := i; g < w.Conns+w.Idle; g += w.Loops {
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
	// The window's start is marked (OnMeasure: the trial's counters read) before
	// the loops measure from it: right now when it opens with the load, else by
	// the coordinator below, which then publishes it (sh.window).
	var opened time.Time // when the window opened; zero if it did not
	if t0 != 0 && !sh.gate && w.Warmup == 0 && cfg.WindowAt == nil {
		opened = markWindow(cfg, sh, loadStart)
	}
	for range loops {
		start <- t0
	}
	steady := result.Steady{State: result.SteadyOff}
	if t0 != 0 {
		allStopped := make(chan struct{})
		go func() {
			for range loops {
				<-stopped
			}
			close(allStopped)
		}()
		switch {
		case sh.gate:
			if opened, steady = gate(cfg, sh, loops, loadStart, allStopped); opened.IsZero() {
				sh.stop.Store(true) // not steady: the run ends without a window
			}
		case opened.IsZero():
			select {
			case <-time.After(time.Until(loadStart.Add(w.Warmup))):
				if opened = openWindow(cfg, sh, allStopped); opened.IsZero() {
					sh.stop.Store(true)
				}
			case <-allStopped:
			}
		}
		<-allStopped
		if !opened.IsZero() && cfg.OnMeasure != nil {
			cfg.OnMeasure(false, time.Now())
		}
	}
	close(release)
	wg.Wait()
	close(finished)
	return merge(sh, loops, t0, loadStart, steady), nil
}

// markWindow opens the measured window: OnMeasure marks its start, then the
// loops are told (sh.window) to measure from then on — in that order, so that
// the counters the mark reads cover every request measured (and the load, still
// running, adds only what runs during the publication, not during the mark). at
// is the window's start if it is already known (the load's), else now.
func markWindow(cfg Config, sh *shared, at time.Time) time.Time {
	if cfg.OnMeasure != nil {
		mark := at
		if mark.IsZero() {
			mark = time.Now()
		}
		cfg.OnMeasure(true, mark)
	}
	if at.IsZero() {
		at = time.Now()
	}
	sh.window.Store(int64(at.Sub(sh.base)))
	return at
}

// openWindow opens the measured window now, or, with cfg.WindowAt, at the
// instant it returns, the load going on meanwhile. It returns the zero time
// when the window did not open: WindowAt failed or chose an instant past
// WindowWait (sh.windowErr says which), or the loops stopped while it waited.
func openWindow(cfg Config, sh *shared, allStopped <-chan struct{}) time.Time {
	if cfg.WindowAt == nil {
		return markWindow(cfg, sh, time.Time{})
	}
	ready := time.Now()
	type answer struct {
		at  time.Time
		err error
	}
	// WindowAt blocks (on the coordinator, over ssh): in a goroutine of its
	// own, so that loops that stop meanwhile end the wait.
	ch := make(chan answer, 1)
	go func() {
		at, err := cfg.WindowAt(ready)
		ch <- answer{at, err}
	}()
	var a answer
	select {
	case a = <-ch:
	case <-allStopped:
		sh.windowErr = errors.New("the load stopped while waiting for the window's start")
		return time.Time{}
	}
	switch {
	case a.err != nil:
		sh.windowErr = a.err
		return time.Time{}
	case a.at.After(ready.Add(cfg.WindowWait)):
		sh.windowErr = fmt.Errorf("the window's start came %v after this run was ready, past its bound of %v", a.at.Sub(ready).Round(time.Millisecond), cfg.WindowWait)
		return time.Time{}
	}
	t := time.NewTimer(time.Until(a.at))
	defer t.Stop()
	select {
	case <-t.C:
	case <-allStopped:
		sh.windowErr = errors.New("the load stopped before the window's start")
		return time.Time{}
	}
	return markWindow(cfg, sh, time.Time{})
}

// gateEvery is how often the gate looks at the connections served.
const gateEvery = 10 * time.Millisecond

// gate is the steady-state gate: it decides when the measured window opens, so
// that a server is measured holding its connections, not while it still starts a
// process or a thread for each. The window opens once the warm-up has passed and
// every connection has completed a request since the load started; or, if the
// number served stops growing for SteadySettle (the server holds no more: a
// pool's size, a cap), once the warm-up has passed, as a ceiling. If neither
// happens within SteadyTimeout of the load's start, it returns a zero time: not
// steady. Loops that stop meanwhile (a cancelled run, a dead server) end the wait
// without a window. It publishes the window's start to the loops (sh.window).
func gate(cfg Config, sh *shared, loops []*loop, loadStart time.Time, allStopped <-chan struct{}) (time.Time, result.Steady) {
	w := sh.cfg.Workload
	st := result.Steady{SettleSeconds: w.SteadySettle.Seconds(), TimeoutSeconds: w.SteadyTimeout.Seconds()}
	tick := time.NewTicker(gateEvery)
	defer tick.Stop()
	// Closed loop primes first, then warms up: see Run. Open loop's schedule is
	// the load whatever the gate says; its warm-up runs from the load's start.
	priming := sh.priming.Load()
	warmFrom := loadStart
	last, grew := -1, loadStart
	for {
		now := time.Now()
		if st.State == "" {
			served, open, refused := 0, 0, 0
			for _, l := range loops {
				served += int(l.pubServed.Load())
				open += int(l.pubOpen.Load())
				refused += int(l.pubRefused.Load())
			}
			if served > last {
				last, grew = served, now
			}
			st.ServedAtStart, st.WaitSeconds = served, now.Sub(loadStart).Seconds()
			switch {
			case served >= w.Conns:
				st.State = result.SteadyOK
			case served > 0 && now.Sub(grew) >= w.SteadySettle:
				st.State = result.SteadyCeiling
			case now.Sub(loadStart) >= w.SteadyTimeout,
				// Nothing answered and nothing is open: the server cannot be
				// reached (connects refused, or every connection dropped). A
				// flow is open from the start (a UDP connect only names the
				// peer): nothing answered and datagrams refused (ICMP port
				// unreachable) say it.
				served == 0 && (open == 0 || sh.dgram && refused > 0) && now.Sub(loadStart) >= w.SteadySettle:
				st.State = result.SteadyNot
				return time.Time{}, st
			}
			if st.State != "" && priming {
				sh.priming.Store(false)
				warmFrom = now
			}
		}
		if st.State != "" && now.Sub(warmFrom) >= w.Warmup {
			opened := openWindow(cfg, sh, allStopped)
			if !opened.IsZero() {
				st.WaitSeconds = opened.Sub(loadStart).Seconds()
			}
			return opened, st
		}
		select {
		case <-allStopped:
			if st.State == "" {
				st.State = result.SteadyNot
			}
			return time.Time{}, st
		case <-tick.C:
		}
	}
}

// merge adds up the loops' figures.
func merge(sh *shared, loops []*loop, t0 int64, loadStart time.Time, steady result.Steady) *Outcome {
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
	var sends [][]int64
	for i, l := range loops {
		st := &l.st
		lat.Merge(st.latency)
		conn.Merge(st.connect)
		if sh.open {
			uncorr.Merge(st.uncorrected)
			lag.Merge(st.sendLag)
			ld.ScheduledSends += st.scheduled
			ld.ParkedSends += st.parked
			sends = append(sends, st.sendTimes)
		}
		for k, n := range st.errors {
			errs[k] += n
		}
		ld.Requests += st.requests
		ld.InFlightAtEnd += st.inFlightAtEnd
		steady.OpenAtStart += st.openAtStart
		steady.OpenAtEnd += st.openAtEnd
		steady.IdleInWindow += st.idleInWindow
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
	// Every histogram goes into the result too, so that runs of several load
	// generators can be merged exactly (loadgen merge).
	ld.LatencyHist, ld.Connect.LatencyHist = encodeHist(lat), encodeHist(conn)
	if sh.open {
		ld.UncorrectedHist, ld.SendLagHist = encodeHist(uncorr), encodeHist(lag)
	}
	ld.Connect.RampSeconds = time.Duration(rampEnd).Seconds()
	ld.Errors = map[string]int64{}
	for k, n := range errs {
		if n > 0 {
			ld.Errors[ErrorKind(k).String()] = n
			ld.ErrorsTotal += n
		}
	}
	ld.TimelineStepSeconds = w.TimelineStep.Seconds()
	if t0 != 0 {
		warmEnd := sh.window.Load() // 0 when the window never opened
		// The timeline's origin and the window on the wall clock: sh.base
		// carries both clocks, and the offsets are the monotonic one's.
		ld.LoadStartUnixNS = loadStart.UnixNano()
		if warmEnd != 0 {
			ld.Seconds = max(0, time.Duration(stopped-warmEnd).Seconds())
			ld.WindowStartUnixNS = sh.base.Add(time.Duration(warmEnd)).UnixNano()
			ld.WindowEndUnixNS = sh.base.Add(time.Duration(max(stopped, warmEnd))).UnixNano()
		}
		step := int64(w.TimelineStep)
		used := min(nsec, int((stopped-t0+step-1)/step))
		ld.Timeline = ld.Timeline[:max(used, 0)]
		for s := range ld.Timeline {
			ld.Timeline[s].T = s
			ld.Timeline[s].Warmup = warmEnd == 0 || t0+int64(s)*step < warmEnd
			ld.Timeline[s].P99US = secHist[s].ValueAtQuantile(99)
			ld.Timeline[s].P50US = secHist[s].ValueAtQuantile(50)
		}
		ld.Steady = &steady
	} else {
		ld.Timeline = nil
	}
	if ld.Seconds > 0 {
		ld.Throughput = float64(ld.Requests) / ld.Seconds
	}
	if o.WindowErr = sh.windowErr; o.WindowErr != nil {
		o.Warnings = append(o.Warnings, "no window was measured: "+sh.windowErr.Error())
	}
	if sh.dgram && sh.window.Load() != 0 {
		ld.Datagrams = mergeDatagrams(loops)
		if d := ld.Datagrams; d.Lost > 0 {
			o.Warnings = append(o.Warnings, fmt.Sprintf("%d of the %d datagrams sent in the window were lost (%.3f%%): unanswered after %v",
				d.Lost, d.Sent, 100*d.LossRate, w.Timeout))
		}
		if d := ld.Datagrams; d.ClientDropped > 0 {
			o.Warnings = append(o.Warnings, fmt.Sprintf("loadgen's own sockets dropped %d replies, their receive buffers full: they count as lost, but the client lost them", d.ClientDropped))
		}
	}
	if sh.open && t0 != 0 {
		openLoopChecks(o, sends)
	}
	switch steady.State {
	case result.SteadyCeiling:
		o.Warnings = append(o.Warnings, fmt.Sprintf("ceiling: the server served only %d of %d connections (the number stopped growing for %v); the rest waited unserved, and the figures are of %d connections",
			steady.ServedAtStart, w.Conns, w.SteadySettle, steady.ServedAtStart))
	case result.SteadyNot:
		o.Warnings = append(o.Warnings, fmt.Sprintf("not steady: %d of %d connections had been served %.1fs into the load (still growing at the %v bound): no window was measured",
			steady.ServedAtStart, w.Conns, steady.WaitSeconds, w.SteadyTimeout))
	}
	if steady.IdleInWindow > 0 && steady.State == result.SteadyOK {
		o.Warnings = append(o.Warnings, fmt.Sprintf("%d of %d connections completed no request in the window", steady.IdleInWindow, w.Conns))
	}
	if !w.Reconnect && ld.Connect.Established < w.Conns {
		o.Warnings = append(o.Warnings, fmt.Sprintf("only %d of %d connections were established when the ramp ended", ld.Connect.Established, w.Conns))
	}
	if sh.kind >= kFile && !sh.act.expect.std {
		o.Warnings = append(o.Warnings, fmt.Sprintf("%s is not a standard file: replies were checked for framing and a size consistent with the one announced, not for content", target(w)))
	}
	if w.Idle > 0 {
		ld.Idle = mergeIdle(w, loops)
		if id := ld.Idle; id.ErrorsTotal > 0 {
			o.Warnings = append(o.Warnings, fmt.Sprintf("%d of %d idle connections were lost (%s): the server closed or reset connections it held", id.ErrorsTotal, w.Idle, errorsString(id.Errors)))
		}
	}
	o.Latency = lat
	return o
}

// mergeIdle adds up the loops' idle connections.
func mergeIdle(w result.Workload, loops []*loop) *result.Idle {
	id := &result.Idle{Conns: w.Idle, HeartbeatSeconds: w.Heartbeat.Seconds(), Errors: map[string]int64{}}
	hb := hdr.New(histMin, histMax, histDigits)
	for _, l := range loops {
		st := &l.st
		id.Established += st.idleEstablished
		id.OpenAtEnd += st.idleOpen
		id.Sent += st.hbSent
		id.Answered += st.hbAnswered
		id.Late += st.hbLate
		id.Missed += st.hbMissed
		hb.Merge(st.hbLatency)
		for k, n := range st.idleErrors {
			if n > 0 {
				id.Errors[ErrorKind(k).String()] += n
				id.ErrorsTotal += n
			}
		}
	}
	id.Latency = Percentiles(hb)
	if enc, err := hb.Encode(hdr.V2CompressedEncodingCookieBase); err == nil && hb.TotalCount() > 0 {
		id.LatencyHist = string(enc)
	}
	if len(id.Errors) == 0 {
		id.Errors = nil
	}
	return id
}

// encodeHist is h in the result's encoding (HdrHistogram V2 compressed,
// base64); "" if it cannot be encoded, which a reader takes as absent.
func encodeHist(h *hdr.Histogram) string {
	enc, err := h.Encode(hdr.V2CompressedEncodingCookieBase)
	if err != nil {
		return ""
	}
	return string(enc)
}

// errorsString is "eof 3, reset 1", kinds sorted.
func errorsString(errs map[string]int64) string {
	parts := make([]string, 0, len(errs))
	for _, k := range slices.Sorted(maps.Keys(errs)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, errs[k]))
	}
	return strings.Join(parts, ", ")
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

// openLoopChecks gates an open-loop run: the achieved rate (Load.RateShortfall
// at 2% short, Load.UnderRate at 10% with its cause), how the sends were
// spaced (Load.Arrival) and whether the latency kept rising through the window
// (Load.Stationarity), each a warning when it fails.
//
// For udp-echo the rate achieved is of the datagrams sent: a datagram the
// server did not answer is loss (Load.Datagrams), not a rate the client fell
// short of.
func openLoopChecks(o *Outcome, sends [][]int64) {
	w, ld := o.Workload, &o.Load
	warn := func(format string, a ...any) { o.Warnings = append(o.Warnings, fmt.Sprintf(format, a...)) }
	achieved, done, what := ld.Throughput, float64(ld.Requests), "req/s"
	if d := ld.Datagrams; d != nil && ld.Seconds > 0 {
		achieved, done, what = float64(d.Sent)/ld.Seconds, float64(d.Sent), "datagrams/s sent"
	}
	if achieved < 0.98*w.Rate {
		ld.RateShortfall = true
		warn("achieved %.0f %s, short of the %.0f req/s asked for: the latencies include the queue that built up", achieved, what, w.Rate)
	}
	// Under rate: more than 10% short, and short by more than the arrivals'
	// own variation — a Poisson count of mean N has a standard deviation of √N,
	// so a short step of a few hundred requests can miss 10% by chance alone:
	// the shortfall must also exceed 3√N.
	if want := w.Rate * ld.Seconds; achieved < 0.9*w.Rate && want-done > 3*math.Sqrt(want) {
		ld.UnderRate = true
		parked := 0.0
		if ld.ScheduledSends > 0 {
			parked = float64(ld.ParkedSends) / float64(ld.ScheduledSends)
		}
		switch st := ld.Steady; {
		case ld.Datagrams != nil:
			// A flow's sends wait for nothing but its socket's send buffer.
			ld.UnderRateCause = fmt.Sprintf("client: the sends went out late (send lag p50 %d µs); %.0f%% found their socket's send buffer full", ld.SendLag.P50US, 100*parked)
		case st != nil && st.State == result.SteadyCeiling:
			ld.UnderRateCause = fmt.Sprintf("server: it served only %d of %d connections (a ceiling); the others' sends waited for replies that never came", st.ServedAtStart, w.Conns)
		case parked >= 0.1:
			ld.UnderRateCause = fmt.Sprintf("server: %.0f%% of the sends found their connection still waiting for its previous reply", 100*parked)
		default:
			ld.UnderRateCause = fmt.Sprintf("client: %.0f%% of the sends waited for a reply, yet the sends went out late (send lag p50 %d µs)", 100*parked, ld.SendLag.P50US)
		}
		warn("under rate: %.0f %s achieved, more than 10%% below the %.0f asked for — %s", achieved, what, w.Rate, ld.UnderRateCause)
	}
	// The loop's resolution: a send goes out in the pass that finds it due,
	// typically this late; two due closer than about twice that share a pass.
	res := 20e3
	if ld.SendLag != nil {
		res = max(res, 2*float64(ld.SendLag.P50US)*1e3)
	}
	ld.Arrival = fitArrival(w.Arrival, sends, res)
	if a := ld.Arrival; a != nil && a.Distorted {
		warn("arrivals distorted: the send gaps above the loop's resolution (%.0f µs) do not fit the exponential (Anderson–Darling %.2f > %.3f, %d gaps): the server did not see a Poisson process", a.ResolutionUS, a.AD, result.ADCritical, a.Sample)
	}
	ld.Stationarity = stationarity(ld.Timeline, ld.TimelineStepSeconds)
	if st := ld.Stationarity; st.Unstable {
		warn("unstable: the latency kept rising through the window (median %.0f µs in its first third, %.0f µs in its last; Mann–Whitney p = %.3f): a queue was growing, the offered load is above what the server serves or a backlog was not worked off", st.FirstP50US, st.LastP50US, st.P)
	}
}

// Package merge adds up the results of several load generators that drove one
// server at the same time — agents on several hosts, each holding its share of
// the connections and of the open-loop rate — into the one result a single
// client holding all their connections would have measured (loadgen merge).
//
// What is summed, what is recomputed and what is left out is result.Merge's
// doc. In short: counts are summed; histograms are merged (HdrHistogram's
// Merge, exact) and every percentile is read from the merge, never averaged;
// the timelines are summed entry by entry once aligned on the absolute time of
// each agent's load start (result.Load.LoadStartUnixNS); the merged window is
// the agents' common overlap. Merge refuses what cannot be merged exactly:
// fewer than two results, results of different configurations (naming the
// field), windows overlapping by less than result.MinOverlap of the shortest,
// results older than schema 6 (which do not say when their window was), a
// capacity search's result and an already merged one.
package merge

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"concbench/internal/result"
	"concbench/loadgen"
)

// MinSchema is the oldest result schema Merge takes: the first to record when
// its load and window started (result.Load.LoadStartUnixNS, WindowStartUnixNS)
// and every histogram it reports percentiles of.
const MinSchema = 6

// Errors a merge is refused with; each is wrapped with the inputs and the
// field or figure concerned.
var (
	// ErrInput: an input is not a result Merge can take (unreadable, not a
	// loadgen result, of another schema, a search's, no window).
	ErrInput = errors.New("not a mergeable result")
	// ErrTooFew: fewer than two inputs.
	ErrTooFew = errors.New("a merge needs at least two results")
	// ErrConfig: the inputs were not of one configuration.
	ErrConfig = errors.New("results of different configurations")
	// ErrWindow: the inputs' windows do not overlap enough to be one run's.
	ErrWindow = errors.New("windows do not overlap")
)

// Input is one result to merge and the name it is reported under (its file).
type Input struct {
	Name string
	Run  *result.Run
}

// Read reads the results at paths, each named by its path, refusing any that
// is not a loadgen result of schema MinSchema to result.SchemaVersion.
func Read(paths []string) ([]Input, error) {
	in := make([]Input, 0, len(paths))
	for _, p := range paths {
		r, err := readOne(p)
		if err != nil {
			return nil, err
		}
		in = append(in, Input{Name: p, Run: r})
	}
	return in, nil
}

func readOne(path string) (*result.Run, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInput, err)
	}
	var r result.Run
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: %s is not a loadgen result (JSON written by loadgen -o): %v", ErrInput, path, err)
	}
	switch {
	case r.Schema == 0:
		return nil, fmt.Errorf("%w: %s is not a loadgen result (it has no schema)", ErrInput, path)
	case r.Schema > result.SchemaVersion:
		return nil, fmt.Errorf("%w: %s is of schema %d, newer than this build's %d", ErrInput, path, r.Schema, result.SchemaVersion)
	case r.Schema < MinSchema:
		return nil, fmt.Errorf("%w: %s is of schema %d: results before schema %d do not record when their window was, nor all their histograms; run it again with this build", ErrInput, path, r.Schema, MinSchema)
	}
	return &r, nil
}

// Merge merges in (at least two results of one configuration whose windows
// overlap by at least result.MinOverlap of the shortest) into one result, with
// its Merge figures set. It does not modify the inputs.
func Merge(in []Input) (*result.Run, error) {
	switch len(in) {
	case 0:
		return nil, fmt.Errorf("%w: none given", ErrTooFew)
	case 1:
		return nil, fmt.Errorf("%w: only %s given (one result is already its own merge)", ErrTooFew, in[0].Name)
	}
	for i, x := range in {
		if err := mergeable(x); err != nil {
			return nil, err
		}
		// One run given twice would be counted twice.
		for _, y := range in[:i] {
			ly, lx := y.Run.Load, x.Run.Load
			switch {
			case y.Name == x.Name:
				return nil, fmt.Errorf("%w: %s is given twice", ErrInput, x.Name)
			case ly.LoadStartUnixNS == lx.LoadStartUnixNS && ly.WindowStartUnixNS == lx.WindowStartUnixNS && ly.Requests == lx.Requests:
				return nil, fmt.Errorf("%w: %s and %s are one run's result (the same load start, window and requests)", ErrInput, y.Name, x.Name)
			}
		}
	}
	if err := sameConfig(in); err != nil {
		return nil, err
	}
	win, err := overlap(in)
	if err != nil {
		return nil, err
	}
	m := &merger{in: in, win: win}
	return m.merge()
}

// mergeable refuses an input that is not one run's result with a window.
func mergeable(x Input) error {
	r := x.Run
	switch {
	case r.Schema < MinSchema || r.Schema > result.SchemaVersion:
		return fmt.Errorf("%w: %s is of schema %d; merge takes %d to %d", ErrInput, x.Name, r.Schema, MinSchema, result.SchemaVersion)
	case r.Search != nil:
		return fmt.Errorf("%w: %s is a capacity search's (-search): its steps are not one window's", ErrInput, x.Name)
	case r.Merge != nil:
		return fmt.Errorf("%w: %s is already a merge of %d results: merge the agents' own results", ErrInput, x.Name, len(r.Merge.Inputs))
	case r.Load.WindowStartUnixNS == 0 || r.Load.Seconds <= 0 || r.Load.WindowEndUnixNS <= r.Load.WindowStartUnixNS:
		return fmt.Errorf("%w: %s measured no window (its run failed before one opened)", ErrInput, x.Name)
	case r.Load.LoadStartUnixNS == 0:
		return fmt.Errorf("%w: %s does not say when its load started", ErrInput, x.Name)
	}
	return nil
}

// Workload fields that are each agent's share (summed or listed), not part of
// the configuration every agent must share.
var shares = map[string]bool{
	"conns": true, "idle": true, "rate": true, "seed": true, "loops": true, "cpus": true,
	"connect_in_flight": true, "requests": true, "src": true,
}

// sameConfig says in which field an input's configuration differs from the
// others': the workload but for each agent's shares, the mode (closed or open
// loop), and what each knows of the server. Some fields are known to some
// inputs only, and compared among those: the server's model, binary,
// arguments and CPUs (a result that drove -addr does not know them) and the
// heartbeat (of agents holding idle connections; loadgen's -heartbeat has a
// default).
func sameConfig(in []Input) error {
	differ := func(a, b Input, field string, va, vb any) error {
		return fmt.Errorf("%w: %s and %s differ in %s (%v and %v)", ErrConfig, a.Name, b.Name, field, va, vb)
	}
	ref := in[0]
	wt := reflect.TypeFor[result.Workload]()
	for _, x := range in[1:] {
		if ma, mb := ref.Run.Load.Mode, x.Run.Load.Mode; ma != mb {
			return differ(ref, x, "mode (closed or open loop)", ma, mb)
		}
		wa, wb := reflect.ValueOf(ref.Run.Config.Workload), reflect.ValueOf(x.Run.Config.Workload)
		for i := range wt.NumField() {
			name := jsonName(wt.Field(i))
			if shares[name] || name == "heartbeat_ns" {
				continue
			}
			if fa, fb := wa.Field(i).Interface(), wb.Field(i).Interface(); !reflect.DeepEqual(fa, fb) {
				return differ(ref, x, "workload."+name, show(fa), show(fb))
			}
		}
	}
	for _, f := range []struct {
		name string
		get  func(*result.Run) any // nil when the input does not know it
	}{
		{"model", func(r *result.Run) any { return nonzero(r.Config.Model) }},
		{"server_bin", func(r *result.Run) any { return nonzero(r.Config.ServerBin) }},
		{"server_args", func(r *result.Run) any { return nonempty(r.Config.ServerArgs) }},
		{"server_cpus", func(r *result.Run) any { return nonempty(r.Config.ServerCPUs) }},
		{"workload.heartbeat_ns", func(r *result.Run) any {
			if r.Config.Workload.Idle == 0 {
				return nil
			}
			return r.Config.Workload.Heartbeat
		}},
	} {
		var known *Input
		for i, x := range in {
			v := f.get(x.Run)
			switch {
			case v == nil:
			case known == nil:
				known = &in[i]
			default:
				if kv := f.get(known.Run); !reflect.DeepEqual(kv, v) {
					return differ(*known, x, f.name, show(kv), show(v))
				}
			}
		}
	}
	return nil
}

// nonzero is s, or nil if it is "".
func nonzero(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// nonempty is s, or nil if it is empty.
func nonempty[T any](s []T) any {
	if len(s) == 0 {
		return nil
	}
	return s
}

// jsonName is a struct field's JSON name.
func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "" {
		return f.Name
	}
	return name
}

// show is a value as an error quotes it: strings quoted, so that "" is seen.
func show(v any) any {
	if s, ok := v.(string); ok {
		return fmt.Sprintf("%q", s)
	}
	return v
}

// window is the agents' common window, on the agents' clocks (as they
// recorded it: the offsets between their clocks are not known here).
type window struct {
	start, end int64   // unix ns
	overlap    float64 // (end − start) / the shortest agent's window
}

// overlap is the inputs' common window, refused when shorter than
// result.MinOverlap of the shortest.
func overlap(in []Input) (window, error) {
	var w window
	shortest := int64(math.MaxInt64)
	short := ""
	for i, x := range in {
		ld := x.Run.Load
		if i == 0 || ld.WindowStartUnixNS > w.start {
			w.start = ld.WindowStartUnixNS
		}
		if i == 0 || ld.WindowEndUnixNS < w.end {
			w.end = ld.WindowEndUnixNS
		}
		if n := ld.WindowEndUnixNS - ld.WindowStartUnixNS; n < shortest {
			shortest, short = n, x.Name
		}
	}
	w.overlap = max(0, float64(w.end-w.start)/float64(shortest))
	if w.overlap < result.MinOverlap {
		var b strings.Builder
		for _, x := range in {
			fmt.Fprintf(&b, "; %s from %s to %s", x.Name, clock(x.Run.Load.WindowStartUnixNS), clock(x.Run.Load.WindowEndUnixNS))
		}
		common := "none"
		if w.end > w.start {
			common = time.Duration(w.end - w.start).Round(time.Millisecond).String()
		}
		return w, fmt.Errorf("%w by %.0f%% of the shortest (%s's, %v; common: %s), at least %.0f%% is one run%s",
			ErrWindow, 100*w.overlap, short, time.Duration(shortest).Round(time.Millisecond), common, 100*result.MinOverlap, b.String())
	}
	return w, nil
}

// clock is a unix-ns instant as a UTC time of day, to the millisecond.
func clock(ns int64) string {
	return time.Unix(0, ns).UTC().Format("2006-01-02 15:04:05.000")
}

// merger builds the merged result.
type merger struct {
	in  []Input
	win window
	out *result.Run
	// origin is the merged timeline's: the latest agent's load start.
	origin int64
}

func (m *merger) merge() (*result.Run, error) {
	first := m.in[0].Run
	out := &result.Run{Schema: result.SchemaVersion, Started: first.Started, Config: first.Config}
	m.out = out
	out.Merge = &result.Merge{Overlap: m.win.overlap}
	for _, x := range m.in {
		if x.Run.Started.Before(out.Started) {
			out.Started = x.Run.Started
		}
		m.origin = max(m.origin, x.Run.Load.LoadStartUnixNS)
	}
	m.config()
	if err := m.load(); err != nil {
		return nil, err
	}
	m.timeline()
	if err := m.server(); err != nil {
		return nil, err
	}
	m.client()
	m.env()
	m.inputs()
	m.warnings()
	return out, nil
}

// config: the shares summed, the agents' own pinning and sources listed.
func (m *merger) config() {
	c := &m.out.Config
	w := &c.Workload
	w.Conns, w.Idle, w.Rate, w.Seed, w.Loops, w.ConnectInFlight, w.Requests = 0, 0, 0, 0, 0, 0, 0
	w.CPUs, w.Src = nil, nil
	c.ClientCPUs, c.PinningDefault = nil, false
	for _, x := range m.in {
		xc := x.Run.Config
		xw := xc.Workload
		w.Conns += xw.Conns
		if w.Idle == 0 && xw.Idle > 0 {
			w.Heartbeat = xw.Heartbeat // the one of agents holding idle connections
		}
		w.Idle += xw.Idle
		w.Rate += xw.Rate
		w.Loops += xw.Loops
		w.ConnectInFlight += xw.ConnectInFlight
		w.Requests += xw.Requests
		for _, s := range xw.Src {
			if !slices.Contains(w.Src, s) {
				w.Src = append(w.Src, s)
			}
		}
		// What one input knows of the server, another that drove -addr does
		// not (sameConfig: the known ones agree).
		if c.Model == "" {
			c.Model, c.ServerBin, c.ServerArgs = xc.Model, xc.ServerBin, xc.ServerArgs
		}
		if len(c.ServerCPUs) == 0 {
			c.ServerCPUs = xc.ServerCPUs
		}
	}
}

// load merges the client-side figures but for the timeline.
func (m *merger) load() error {
	ld := &m.out.Load
	first := m.in[0].Run.Load
	*ld = result.Load{Mode: first.Mode, TimelineStepSeconds: first.TimelineStepSeconds, Errors: map[string]int64{}}
	ld.LoadStartUnixNS, ld.WindowStartUnixNS, ld.WindowEndUnixNS = m.origin, m.win.start, m.win.end
	ld.Seconds = time.Duration(m.win.end - m.win.start).Seconds()
	open := ld.Mode == "open"
	var (
		steady   *result.Steady
		idle     *result.Idle
		dgrams   *result.Datagrams
		want     float64 // the open loop's sends due over the agents' windows
		sentRate float64 // the datagrams sent a second, over the agents' windows
	)
	for _, x := range m.in {
		xl := x.Run.Load
		ld.Requests += xl.Requests
		ld.Throughput += xl.Throughput
		ld.TargetRate += xl.TargetRate
		ld.ScheduledSends += xl.ScheduledSends
		ld.ParkedSends += xl.ParkedSends
		ld.ErrorsTotal += xl.ErrorsTotal
		ld.InFlightAtEnd += xl.InFlightAtEnd
		for k, n := range xl.Errors {
			ld.Errors[k] += n
		}
		want += xl.TargetRate * xl.Seconds
		cn := &ld.Connect
		cn.Target += xl.Connect.Target
		cn.Established += xl.Connect.Established
		cn.RampSeconds = max(cn.RampSeconds, xl.Connect.RampSeconds)
		if s := xl.Steady; s != nil {
			if steady == nil {
				steady = &result.Steady{State: s.State, SettleSeconds: s.SettleSeconds, TimeoutSeconds: s.TimeoutSeconds}
			}
			// A ceiling anywhere is the merged run's: some connections waited.
			if s.State == result.SteadyCeiling {
				steady.State = s.State
			}
			steady.ServedAtStart += s.ServedAtStart
			steady.OpenAtStart += s.OpenAtStart
			steady.OpenAtEnd += s.OpenAtEnd
			steady.IdleInWindow += s.IdleInWindow
		}
		if id := xl.Idle; id != nil {
			if idle == nil {
				idle = &result.Idle{HeartbeatSeconds: id.HeartbeatSeconds, Errors: map[string]int64{}}
			}
			idle.Conns += id.Conns
			idle.Established += id.Established
			idle.OpenAtEnd += id.OpenAtEnd
			idle.Sent += id.Sent
			idle.Answered += id.Answered
			idle.Late += id.Late
			idle.Missed += id.Missed
			idle.ErrorsTotal += id.ErrorsTotal
			for k, n := range id.Errors {
				idle.Errors[k] += n
			}
		}
		if d := xl.Datagrams; d != nil {
			if dgrams == nil {
				dgrams = &result.Datagrams{}
			}
			dgrams.Add(*d) // the loss rate recomputed over the sum
			sentRate += float64(d.Sent) / xl.Seconds
		}
	}
	if len(ld.Errors) == 0 {
		ld.Errors = nil
	}
	if steady != nil {
		steady.WaitSeconds = time.Duration(m.win.start - m.origin).Seconds()
		ld.Steady = steady
	}

	// The histograms, and every percentile from them.
	lat, err := m.hist("latency", func(l *result.Load) (string, int64) { return l.LatencyHist, l.Latency.Count })
	if err != nil {
		return err
	}
	ld.Latency, ld.LatencyHist = pct(lat), encode(lat)
	conn, err := m.hist("connect latency", func(l *result.Load) (string, int64) { return l.Connect.LatencyHist, l.Connect.Latency.Count })
	if err != nil {
		return err
	}
	ld.Connect.Latency, ld.Connect.LatencyHist = pct(conn), encode(conn)
	if open {
		unc, err := m.hist("uncorrected latency", func(l *result.Load) (string, int64) { return l.UncorrectedHist, count(l.Uncorrected) })
		if err != nil {
			return err
		}
		lag, err := m.hist("send lag", func(l *result.Load) (string, int64) { return l.SendLagHist, count(l.SendLag) })
		if err != nil {
			return err
		}
		u, g := pct(unc), pct(lag)
		ld.Uncorrected, ld.UncorrectedHist = &u, encode(unc)
		ld.SendLag, ld.SendLagHist = &g, encode(lag)
	}
	if idle != nil {
		hb, err := m.hist("heartbeat latency", func(l *result.Load) (string, int64) {
			if l.Idle == nil {
				return "", 0
			}
			return l.Idle.LatencyHist, l.Idle.Latency.Count
		})
		if err != nil {
			return err
		}
		idle.Latency, idle.LatencyHist = pct(hb), encode(hb)
		if hb != nil && hb.TotalCount() == 0 {
			idle.LatencyHist = "" // as loadgen writes it: none without heartbeats
		}
		if len(idle.Errors) == 0 {
			idle.Errors = nil
		}
		ld.Idle = idle
	}
	if dgrams != nil {
		ld.Datagrams = dgrams
	}
	if open {
		m.openLoop(want, sentRate)
	}
	return nil
}

// openLoop recomputes the achieved-rate gate from the merged figures, as
// loadgen's own (a shortfall of 2%; under rate at 10% short and beyond a
// Poisson count's 3√N), its cause from the agents'. The arrival fit and the
// stationarity test are each agent's (MergeInput): the gaps and the entries'
// percentiles they are computed from are not in the results.
func (m *merger) openLoop(want, sentRate float64) {
	ld := &m.out.Load
	achieved, done := ld.Throughput, float64(ld.Requests)
	if d := ld.Datagrams; d != nil {
		achieved, done = sentRate, float64(d.Sent)
	}
	ld.RateShortfall = achieved < 0.98*ld.TargetRate
	if achieved >= 0.9*ld.TargetRate || want-done <= 3*math.Sqrt(want) {
		return
	}
	ld.UnderRate = true
	var causes []string
	for _, x := range m.in {
		switch {
		case x.Run.ClientBound:
			causes = append(causes, fmt.Sprintf("client: %s's CPUs were %.0f%% busy (client-bound)", x.Name, 100*x.Run.Client.Busy))
		case x.Run.Load.UnderRate:
			causes = append(causes, fmt.Sprintf("%s: %s", x.Name, x.Run.Load.UnderRateCause))
		}
	}
	if len(causes) == 0 {
		causes = append(causes, "no agent was under rate by itself: the shortfall is spread over them")
	}
	ld.UnderRateCause = strings.Join(causes, "; ")
}

// hist merges one histogram of every input, checking that each input's
// histogram holds the values its figures count. nil when no input has one and
// none counted a value.
func (m *merger) hist(what string, get func(*result.Load) (string, int64)) (*hdr.Histogram, error) {
	var sum *hdr.Histogram
	for _, x := range m.in {
		enc, n := get(&x.Run.Load)
		if enc == "" {
			if n > 0 {
				return nil, fmt.Errorf("%w: %s has no %s histogram for its %d values: it cannot be merged exactly", ErrInput, x.Name, what, n)
			}
			continue
		}
		h, err := hdr.Decode([]byte(enc))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: its %s histogram: %v", ErrInput, x.Name, what, err)
		}
		if h.TotalCount() != n {
			return nil, fmt.Errorf("%w: %s: its %s histogram holds %d values, its percentiles count %d", ErrInput, x.Name, what, h.TotalCount(), n)
		}
		if sum == nil {
			sum = hdr.New(h.LowestTrackableValue(), h.HighestTrackableValue(), int(h.SignificantFigures()))
		} else if h.LowestTrackableValue() != sum.LowestTrackableValue() || h.HighestTrackableValue() != sum.HighestTrackableValue() || h.SignificantFigures() != sum.SignificantFigures() {
			return nil, fmt.Errorf("%w: %s: its %s histogram's range or precision (%d to %d, %d digits) is not the others' (%d to %d, %d digits)",
				ErrInput, x.Name, what, h.LowestTrackableValue(), h.HighestTrackableValue(), h.SignificantFigures(),
				sum.LowestTrackableValue(), sum.HighestTrackableValue(), sum.SignificantFigures())
		}
		if dropped := sum.Merge(h); dropped > 0 {
			return nil, fmt.Errorf("%w: %s: %d values of its %s histogram could not be merged", ErrInput, x.Name, dropped, what)
		}
	}
	return sum, nil
}

func pct(h *hdr.Histogram) result.Percentiles {
	if h == nil {
		return result.Percentiles{}
	}
	return loadgen.Percentiles(h)
}

func encode(h *hdr.Histogram) string {
	if h == nil {
		return ""
	}
	enc, err := h.Encode(hdr.V2CompressedEncodingCookieBase)
	if err != nil {
		return ""
	}
	return string(enc)
}

func count(p *result.Percentiles) int64 {
	if p == nil {
		return 0
	}
	return p.Count
}

// step is a result's timeline step.
func step(r *result.Run) time.Duration {
	if s := r.Config.Workload.TimelineStep; s > 0 {
		return s
	}
	if s := r.Load.TimelineStepSeconds; s > 0 {
		return time.Duration(math.Round(s * 1e9))
	}
	return loadgen.DefaultTimelineStep
}

// timeline sums the agents' timelines entry by entry, aligned on the absolute
// time of their load starts: the merged origin is the latest agent's, and
// each agent's entries are shifted by the whole number of steps nearest to its
// start's distance from it (the remainder, at most half a step, is
// Merge.TimelineSkewNS). The merged timeline covers the entries every agent
// has. An entry is warm-up if it is any agent's.
func (m *merger) timeline() {
	ld := &m.out.Load
	st := int64(step(m.in[0].Run))
	shift := make([]int, len(m.in))
	n := math.MaxInt
	for i, x := range m.in {
		d := m.origin - x.Run.Load.LoadStartUnixNS // ≥ 0
		k := (d + st/2) / st
		shift[i] = int(k)
		skew := d - k*st
		if skew < 0 {
			skew = -skew
		}
		m.out.Merge.TimelineSkewNS = max(m.out.Merge.TimelineSkewNS, skew)
		n = min(n, len(x.Run.Load.Timeline)-int(k))
	}
	ld.Timeline = make([]result.Second, max(n, 0))
	for j := range ld.Timeline {
		e := &ld.Timeline[j]
		e.T = j
		for i, x := range m.in {
			s := x.Run.Load.Timeline[j+shift[i]]
			e.Requests += s.Requests
			e.Errors += s.Errors
			e.Warmup = e.Warmup || s.Warmup
		}
	}
}

// server keeps the server's figures of the input that sampled it. Several that
// each started their own server drove different servers: refused. Several
// that sampled one external server conflict: none is kept, and the merge says
// so.
func (m *merger) server() error {
	var from []Input
	for _, x := range m.in {
		if x.Run.Server != nil {
			from = append(from, x)
		}
	}
	var started []string
	for _, x := range from {
		if !x.Run.Server.External {
			started = append(started, x.Name)
		}
	}
	switch {
	case len(started) > 1:
		return fmt.Errorf("%w: %s each started a server of their own (-model): they did not drive one server", ErrConfig, strings.Join(started, " and "))
	case len(from) == 0:
		return nil
	case len(from) > 1:
		names := make([]string, len(from))
		for i, x := range from {
			names[i] = fmt.Sprintf("%s (pid %d)", x.Name, x.Run.Server.PID)
		}
		m.out.Merge.ServerConflict = fmt.Sprintf("%s each sampled the server: their figures are of their own windows and samplers, and none is kept", strings.Join(names, ", "))
		return nil
	}
	x := from[0]
	// The samples' times are from the merged timeline's origin.
	m.out.Server = x.Run.Server.Rebased(x.Run.Load.LoadStartUnixNS, m.origin)
	m.out.Merge.ServerFrom = x.Name
	return nil
}

// client sums the agents' CPUs and CPU time (Busy is then the fleet's mean:
// each agent's is in Inputs), and their kernel counts where every agent has
// them. ClientBound is set when any agent was.
func (m *merger) client() {
	c := &m.out.Client
	var kernel *result.Kernel
	missing := ""
	for i, x := range m.in {
		xc := x.Run.Client
		c.CPUs += xc.CPUs
		c.CPUSeconds += xc.CPUSeconds
		c.CPUCores += xc.CPUCores
		m.out.ClientBound = m.out.ClientBound || x.Run.ClientBound
		switch k := xc.Kernel; {
		case k == nil:
			if missing == "" {
				missing = fmt.Sprintf("%s on %s", cmpOr(xc.KernelMissing, "not measured"), x.Name)
			}
		case i == 0:
			kk := *k
			kk.Syscalls = maps.Clone(k.Syscalls)
			kernel = &kk
		case kernel != nil:
			addKernel(kernel, k)
		}
	}
	if c.CPUs > 0 {
		c.Busy = c.CPUCores / float64(c.CPUs)
	}
	if missing != "" {
		kernel = nil
		c.KernelMissing = missing
	}
	c.Kernel = kernel
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// addKernel adds b's counts to a; a side whose syscalls were not counted
// leaves the sum without them.
func addKernel(a, b *result.Kernel) {
	if a.SyscallsMissing == "" && b.SyscallsMissing != "" {
		a.SyscallsMissing = b.SyscallsMissing
	}
	if a.SyscallsMissing != "" {
		a.Syscalls, a.SyscallsOther, a.SyscallsTotal = nil, 0, 0
	} else {
		if a.Syscalls == nil {
			a.Syscalls = map[string]int64{}
		}
		for name, n := range b.Syscalls {
			a.Syscalls[name] += n
		}
		a.SyscallsOther += b.SyscallsOther
		a.SyscallsTotal += b.SyscallsTotal
	}
	a.CtxSwitches += b.CtxSwitches
	a.Voluntary += b.Voluntary
	a.Involuntary += b.Involuntary
	a.UserUS += b.UserUS
	a.SystemUS += b.SystemUS
}

// env keeps the environment the agents share: a field in which they differ is
// left at its zero value and named in Merge.EnvDiffers (a sysctl, left out of
// Sysctls).
func (m *merger) env() {
	e := m.in[0].Run.Env
	ev := reflect.ValueOf(&e).Elem()
	var differs []string
	for i := range ev.NumField() {
		f := ev.Type().Field(i)
		if f.Name == "Sysctls" {
			continue
		}
		for _, x := range m.in[1:] {
			if !reflect.DeepEqual(ev.Field(i).Interface(), reflect.ValueOf(x.Run.Env).Field(i).Interface()) {
				ev.Field(i).SetZero()
				differs = append(differs, jsonName(f))
				break
			}
		}
	}
	e.Sysctls = maps.Clone(e.Sysctls)
	for k, v := range e.Sysctls {
		for _, x := range m.in[1:] {
			if w, ok := x.Run.Env.Sysctls[k]; !ok || w != v {
				delete(e.Sysctls, k)
				differs = append(differs, "sysctls."+k)
				break
			}
		}
	}
	for _, x := range m.in[1:] {
		for k := range x.Run.Env.Sysctls {
			if _, ok := m.in[0].Run.Env.Sysctls[k]; !ok && !slices.Contains(differs, "sysctls."+k) {
				differs = append(differs, "sysctls."+k)
			}
		}
	}
	m.out.Env = e
	m.out.Merge.EnvDiffers = differs
}

// inputs lists each agent's share and verdicts.
func (m *merger) inputs() {
	for _, x := range m.in {
		r := x.Run
		ld := r.Load
		mi := result.MergeInput{
			Name: x.Name, Host: r.Env.Hostname,
			Conns: r.Config.Workload.Conns, Idle: r.Config.Workload.Idle, Rate: r.Config.Workload.Rate, Seed: r.Config.Workload.Seed,
			Requests: ld.Requests, Seconds: ld.Seconds, Throughput: ld.Throughput, Errors: ld.ErrorsTotal,
			P50US: ld.Latency.P50US, P99US: ld.Latency.P99US,
			LoadStartUnixNS: ld.LoadStartUnixNS, WindowStartUnixNS: ld.WindowStartUnixNS, WindowEndUnixNS: ld.WindowEndUnixNS,
			ClientBound: r.ClientBound, ClientBusy: r.Client.Busy, ClientCPUs: r.Config.ClientCPUs,
			UnderRate: ld.UnderRate,
			Unstable:  ld.Stationarity != nil && ld.Stationarity.Unstable,
			Distorted: ld.Arrival != nil && ld.Arrival.Distorted,
			Disturbed: r.Host != nil && r.Host.Disturbed,
			Server:    m.out.Merge.ServerFrom == x.Name,
			Env:       r.Env,
		}
		m.out.Merge.Inputs = append(m.out.Merge.Inputs, mi)
	}
}

// warnings: the merge's own, then each agent's, prefixed with its name.
func (m *merger) warnings() {
	out := m.out
	warn := func(format string, a ...any) { out.Warnings = append(out.Warnings, fmt.Sprintf(format, a...)) }
	for _, x := range m.in {
		if x.Run.ClientBound {
			warn("%s (host %s) was client-bound (its CPUs %.0f%% busy): it is the bottleneck, and the merged throughput is partly the client's limit, not the server's", x.Name, x.Run.Env.Hostname, 100*x.Run.Client.Busy)
		}
	}
	if c := out.Merge.ServerConflict; c != "" {
		warn("server figures conflict: %s", c)
	}
	if ld := out.Load; ld.UnderRate {
		warn("under rate: more than 10%% below the %.0f req/s asked for — %s", ld.TargetRate, ld.UnderRateCause)
	}
	for _, x := range m.in {
		for _, w := range x.Run.Warnings {
			warn("%s: %s", x.Name, w)
		}
	}
}

// Write writes the merged result r as JSON to path and its latency histogram
// beside it (FILE.hgrm, in milliseconds, as loadgen -o does), which r then
// names.
func Write(path string, r *result.Run) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if r.Load.LatencyHist != "" {
		h, err := hdr.Decode([]byte(r.Load.LatencyHist))
		if err != nil {
			return err
		}
		hgrm := strings.TrimSuffix(path, ".json") + ".hgrm"
		f, err := os.Create(hgrm)
		if err != nil {
			return err
		}
		if _, err := h.PercentilesPrint(f, 5, 1000); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		r.HistogramFile = filepath.Base(hgrm)
	}
	return result.WriteFile(path, r)
}

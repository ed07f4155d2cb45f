package loadgen

// The open loop's arrivals and the checks on a window measured with them: the
// schedule of each connection (evenly spaced, or a Poisson process), how the
// sends actually went out (their gaps against the exponential), and whether the
// window's latency kept rising (a queue growing: the offered load is above what
// the server serves).

import (
	"math"
	"slices"

	"github.com/montanaflynn/stats"
	"gonum.org/v1/gonum/stat"
	"gonum.org/v1/gonum/stat/distuv"

	"concbench/internal/rankstat"
	"concbench/internal/result"
)

// Arrival processes (Workload.Arrival).
const (
	ArrivalFixed = "fixed"
	ArrivalExp   = "exp"
)

// sendSample is how many sends of the window each loop keeps the time of, for
// the arrival fit: enough for the Anderson–Darling test to see a distortion of
// a few percent, few enough to cost nothing.
const sendSample = 4096

// firstDue is when connection c's first open-loop send is due: fixed, its
// phase in the first period; exp, one exponential gap after the load starts.
func (l *loop) firstDue(c *conn) int64 {
	if l.sh.exp {
		return l.t0 + l.expGap()
	}
	return l.schedule(c.gid, 0)
}

// nextDue is when c's next send is due, its k-th (c.k) having been due at prev.
// Fixed sends keep their exact grid (no drift however late one went out);
// exponential gaps follow each other from the intended times, never from the
// late sends, so a slow reply does not thin the process.
func (l *loop) nextDue(c *conn, prev int64) int64 {
	if l.sh.exp {
		return prev + l.expGap()
	}
	return l.schedule(c.gid, c.k)
}

// expGap is an exponential gap with the connection's mean period, ns (at
// least 1: two sends of one connection are never due at the same instant).
func (l *loop) expGap() int64 {
	return max(1, int64(l.rng.ExpFloat64()*l.sh.periodNS))
}

// noteSend keeps the time of one scheduled send in the window (the first
// sendSample of them) and counts it, and whether it was parked: due before
// its connection was free to send.
func (l *loop) noteSend(c *conn, intended, now int64) {
	if now < l.warmEnd {
		return
	}
	l.st.scheduled++
	if c.freeAt > intended {
		l.st.parked++
	}
	if len(l.st.sendTimes) < sendSample {
		l.st.sendTimes = append(l.st.sendTimes, now)
	}
}

// fitArrival describes the gaps between the sends each loop kept: each loop's
// gaps divided by their mean (a loop sends its own share of the rate) and
// pooled. res is the loop's time resolution, ns: sends due within it of each
// other go out in one pass, so gaps below it say nothing of the process. An
// exponential is memoryless: the gaps above res, less res, are exponential
// with the same mean, and the Anderson–Darling test is of those; the share of
// gaps below res is reported beside the share an exponential would have.
// nil when fewer than 20 gaps were seen.
func fitArrival(process string, perLoop [][]int64, res float64) *result.ArrivalFit {
	var norm []float64
	var sumMean, sumRes float64
	loops := 0
	for _, ts := range perLoop {
		if len(ts) < 3 {
			continue
		}
		gaps := make([]float64, 0, len(ts)-1)
		for i := 1; i < len(ts); i++ {
			gaps = append(gaps, float64(ts[i]-ts[i-1]))
		}
		m := stat.Mean(gaps, nil)
		if m <= 0 {
			continue
		}
		for _, g := range gaps {
			norm = append(norm, g/m)
		}
		sumMean += m
		sumRes += min(res/m, 0.5)
		loops++
	}
	if len(norm) < 20 {
		return nil
	}
	f := &result.ArrivalFit{Process: process, Sample: len(norm), MeanGapUS: sumMean / float64(loops) / 1e3}
	mean, sd := stat.MeanStdDev(norm, nil)
	f.CV = sd / mean
	if process != ArrivalExp {
		return f
	}
	r := sumRes / float64(loops) // the resolution in units of the mean gap
	f.ResolutionUS = r * f.MeanGapUS
	var above []float64
	for _, g := range norm {
		if g > r {
			above = append(above, g-r)
		}
	}
	f.Below = 1 - float64(len(above))/float64(len(norm))
	f.BelowExpected = 1 - math.Exp(-r)
	if len(above) >= 20 {
		f.AD = andersonDarlingExp(above)
		f.Distorted = f.AD > result.ADCritical
	}
	return f
}

// andersonDarlingExp is the Anderson–Darling statistic of x against the
// exponential distribution with x's mean, with Stephens' modification for an
// estimated mean, A²(1 + 0.6/n). A gap of zero (two sends in one pass of the
// loop) lies at the distribution's edge and weighs as a certain misfit.
func andersonDarlingExp(x []float64) float64 {
	n := len(x)
	s := slices.Sorted(slices.Values(x))
	exp := distuv.Exponential{Rate: 1 / stat.Mean(s, nil)}
	const eps = 1e-12
	cdf := func(v float64) float64 { return min(max(exp.CDF(v), eps), 1-eps) }
	var sum float64
	for i := range n {
		sum += float64(2*i+1) * (math.Log(cdf(s[i])) + math.Log(1-cdf(s[n-1-i])))
	}
	a2 := -float64(n) - sum/float64(n)
	return a2 * (1 + 0.6/float64(n))
}

// minStationaritySteps is the fewest window entries the trend test is run on.
const minStationaritySteps = 6

// stationarity runs the trend test (result.Stationarity) on the window's
// timeline entries: those not in the warm-up that completed replies, the last
// (partial) one left out.
func stationarity(tl []result.Second, stepSeconds float64) *result.Stationarity {
	var y []float64
	for i, s := range tl {
		if s.Warmup || s.Requests == 0 || i == len(tl)-1 {
			continue
		}
		y = append(y, float64(s.P50US))
	}
	st := &result.Stationarity{Steps: len(y), StepSeconds: stepSeconds}
	if len(y) < minStationaritySteps {
		return st
	}
	st.Tested = true
	third := len(y) / 3
	first, last := y[:third], y[len(y)-third:]
	st.FirstP50US, _ = stats.Median(first)
	st.LastP50US, _ = stats.Median(last)
	_, st.P = rankstat.MannWhitney(last, first)
	// The growth: µs of latency gained per second of the window, between
	// the thirds' centres. A queue the offered load outruns by a tenth grows
	// by a tenth of a second each second, whatever it started at (a backlog
	// from the warm-up makes the 2× test blind to it).
	span := float64(len(y)-third) * stepSeconds
	st.GrowthPerSec = (st.LastP50US - st.FirstP50US) / 1e6 / span
	st.Unstable = st.P < 0.05 && (st.LastP50US >= 2*st.FirstP50US || st.GrowthPerSec >= 0.1)
	return st
}

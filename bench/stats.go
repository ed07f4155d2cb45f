package bench

import (
	"math"
	"slices"

	"github.com/montanaflynn/stats"

	"concbench/internal/rankstat"
)

// CI is a median with a distribution-free confidence interval.
type CI struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	Lo     float64 `json:"lo"`
	Hi     float64 `json:"hi"`
	// Level is the interval's actual coverage. The interval is the narrowest pair
	// of order statistics [x(k), x(n+1-k)] whose coverage reaches the level asked
	// for; with too few values to reach it (95% needs n ≥ 6) it is [min, max] and
	// Level says what that covers: 75% at n=3, 87.5% at n=4, 93.75% at n=5.
	Level float64 `json:"level"`
}

// RelWidth is the interval's width relative to the median (0 when undefined).
func (c CI) RelWidth() float64 {
	if c.Median == 0 || c.N == 0 {
		return 0
	}
	return (c.Hi - c.Lo) / math.Abs(c.Median)
}

// MedianCI is the median of xs with an order-statistic confidence interval at
// level conf (e.g. 0.95). The median is montanaflynn/stats's. The coverage of
// [x(k), x(n+1-k)] is P(k ≤ B ≤ n-k) for B ~ Binomial(n, ½): the chance that the
// true median lies between the k-th smallest and k-th largest value, whatever
// the distribution. NaN values are ignored.
func MedianCI(xs []float64, conf float64) CI {
	v := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	n := len(v)
	if n == 0 {
		return CI{Median: math.NaN(), Lo: math.NaN(), Hi: math.NaN()}
	}
	slices.Sort(v)
	med, _ := stats.Median(v)
	c := CI{N: n, Median: med, Lo: v[0], Hi: v[n-1], Level: coverage(n, 1)}
	for k := 2; k <= n/2; k++ {
		lv := coverage(n, k)
		if lv < conf {
			break
		}
		c.Lo, c.Hi, c.Level = v[k-1], v[n-k], lv
	}
	return c
}

// coverage is P(k ≤ B ≤ n-k), B ~ Binomial(n, ½): the coverage of the
// order-statistic interval [x(k), x(n+1-k)] for the median.
func coverage(n, k int) float64 {
	if n < 2 || k < 1 || 2*k > n {
		return 0
	}
	tail := 0.0
	for i := 0; i < k; i++ {
		tail += binom(n, i)
	}
	return 1 - 2*tail/math.Pow(2, float64(n))
}

func binom(n, k int) float64 {
	r := 1.0
	for i := 1; i <= k; i++ {
		r = r * float64(n-k+i) / float64(i)
	}
	return r
}

// Verdicts of a comparison.
const (
	// Significant: the Mann–Whitney test rejects "same distribution" at 5%.
	Significant = "significant"
	// Consistent: every repetition of one beat every repetition of the other, but
	// there are too few repetitions for that to be significant at 5%
	// (3 against 3 gives p = 0.10 at best).
	Consistent = "consistent"
	// Noise: the samples overlap: the difference is within the noise.
	Noise = "noise"
)

// Comparison says how a compares with b.
type Comparison struct {
	// Ratio is median(a)/median(b).
	Ratio float64 `json:"ratio"`
	// P is the two-sided Mann–Whitney p-value.
	P       float64 `json:"p"`
	Verdict string  `json:"verdict"`
}

// Compare compares two samples (of throughput, say) by their medians and says
// whether the difference is significant, consistent but unproven, or noise.
func Compare(a, b []float64) Comparison {
	ma, _ := stats.Median(a)
	mb, _ := stats.Median(b)
	c := Comparison{Ratio: math.NaN(), P: 1, Verdict: Noise}
	if mb != 0 {
		c.Ratio = ma / mb
	}
	if len(a) == 0 || len(b) == 0 {
		return c
	}
	_, c.P = rankstat.MannWhitney(a, b)
	amin, _ := stats.Min(a)
	amax, _ := stats.Max(a)
	bmin, _ := stats.Min(b)
	bmax, _ := stats.Max(b)
	separated := amin > bmax || bmin > amax
	switch {
	case c.P < 0.05:
		c.Verdict = Significant
	case separated:
		c.Verdict = Consistent
	}
	return c
}

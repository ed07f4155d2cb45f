package bench

import (
	"math"
	"slices"

	"github.com/montanaflynn/stats"
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

// MannWhitney is the two-sided Mann–Whitney U test of a against b: U counts the
// pairs where a's value exceeds b's (ties count ½), and p is the chance of a U at
// least as far from its mean if both samples came from one distribution. For
// n1+n2 ≤ 20 p is exact (every split of the pooled midranks is enumerated, which
// handles ties); above that it uses the normal approximation with tie correction.
// p is 1 when either sample is empty.
func MannWhitney(a, b []float64) (u, p float64) {
	n1, n2 := len(a), len(b)
	if n1 == 0 || n2 == 0 {
		return 0, 1
	}
	ranks := midranks(append(slices.Clone(a), b...))
	r1 := 0.0
	for i := range n1 {
		r1 += ranks[i]
	}
	u = r1 - float64(n1*(n1+1))/2
	mean := float64(n1*n2) / 2
	dev := math.Abs(u - mean)
	const eps = 1e-9
	if n1+n2 <= 20 {
		// Exact: the share of splits of the pooled ranks whose U is as extreme.
		var total, extreme float64
		var walk func(start, left int, sum float64)
		walk = func(start, left int, sum float64) {
			if left == 0 {
				total++
				if math.Abs(sum-float64(n1*(n1+1))/2-mean) >= dev-eps {
					extreme++
				}
				return
			}
			for i := start; i <= len(ranks)-left; i++ {
				walk(i+1, left-1, sum+ranks[i])
			}
		}
		walk(0, n1, 0)
		return u, extreme / total
	}
	n := float64(n1 + n2)
	tie := 0.0
	sorted := slices.Clone(ranks)
	slices.Sort(sorted)
	for i := 0; i < len(sorted); {
		j := i
		for j < len(sorted) && sorted[j] == sorted[i] {
			j++
		}
		t := float64(j - i)
		tie += t*t*t - t
		i = j
	}
	sigma := math.Sqrt(float64(n1*n2) / 12 * ((n + 1) - tie/(n*(n-1))))
	if sigma == 0 {
		return u, 1
	}
	z := (dev - 0.5) / sigma // continuity correction
	if z < 0 {
		z = 0
	}
	return u, math.Erfc(z / math.Sqrt2)
}

// midranks ranks xs from 1, giving tied values the mean of their ranks.
func midranks(xs []float64) []float64 {
	idx := make([]int, len(xs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(i, j int) int {
		switch {
		case xs[i] < xs[j]:
			return -1
		case xs[i] > xs[j]:
			return 1
		}
		return 0
	})
	r := make([]float64, len(xs))
	for i := 0; i < len(idx); {
		j := i
		for j < len(idx) && xs[idx[j]] == xs[idx[i]] {
			j++
		}
		mid := float64(i+j+1) / 2 // mean of ranks i+1 … j
		for k := i; k < j; k++ {
			r[idx[k]] = mid
		}
		i = j
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
	_, c.P = MannWhitney(a, b)
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

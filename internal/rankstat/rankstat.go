// Package rankstat holds the rank test concbench's verdicts rest on, shared by
// bench (is one model's throughput apart from another's?) and loadgen (is the
// end of an open-loop window slower than its start?).
package rankstat

import (
	"math"
	"slices"
)

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

package bench

import (
	"slices"
	"testing"

	"gonum.org/v1/plot"
)

// A log axis spanning less than about a decade gets its 2× and 5× ticks
// labelled, so that it shows at least two values; one spanning decades keeps
// only the powers of ten.
func TestHumanLogTicks(t *testing.T) {
	labels := func(lo, hi float64) []string {
		var out []string
		for _, tk := range (humanTicks{plot.LogTicks{Prec: -1}, false}).Ticks(lo, hi) {
			if tk.Label != "" && tk.Value >= lo && tk.Value <= hi { // the plot clips the rest
				out = append(out, tk.Label)
			}
		}
		return out
	}
	for _, tc := range []struct {
		lo, hi float64
		want   []string
	}{
		{1010, 19488, []string{"2k", "5k", "10k"}},
		{10, 19488, []string{"10", "100", "1k", "10k"}},
	} {
		if got := labels(tc.lo, tc.hi); !slices.Equal(got, tc.want) {
			t.Errorf("%g to %g: labels %v, want %v", tc.lo, tc.hi, got, tc.want)
		}
	}
}

package rankstat

import (
	"math"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9*math.Max(1, math.Abs(b)) }

func TestMannWhitney(t *testing.T) {
	tests := []struct {
		a, b []float64
		u, p float64
	}{
		// Complete separation, 3 against 3: 2 of the C(6,3)=20 splits are as extreme.
		{[]float64{4, 5, 6}, []float64{1, 2, 3}, 9, 0.1},
		{[]float64{1, 2, 3}, []float64{4, 5, 6}, 0, 0.1},
		// 4 against 4 separated: 2/70.
		{[]float64{5, 6, 7, 8}, []float64{1, 2, 3, 4}, 16, 2.0 / 70},
		// Interleaved: U at its mean, p = 1.
		{[]float64{1, 4, 5, 8}, []float64{2, 3, 6, 7}, 8, 1},
		// Ties count ½: a = {1, 2}, b = {2, 3}: pairs (1<2, 1<3, 2=2, 2<3) → U = 0.5.
		// Midranks 1, 2.5, 2.5, 4; splits of two: sums 3.5 3.5 5 5 6.5 6.5 → U 0.5 0.5 2 2 3.5 3.5;
		// |U-2| ≥ 1.5 for 4 of 6.
		{[]float64{1, 2}, []float64{2, 3}, 0.5, 4.0 / 6},
	}
	for _, tt := range tests {
		u, p := MannWhitney(tt.a, tt.b)
		if !near(u, tt.u) || !near(p, tt.p) {
			t.Errorf("MannWhitney(%v, %v) = U %g p %g; want U %g p %g", tt.a, tt.b, u, p, tt.u, tt.p)
		}
	}
	// Normal approximation (n1+n2 > 20): 11 against 11 fully separated. The exact
	// p is 2/C(22,11) ≈ 2.9e-6; the approximation must agree it is tiny.
	var a, b []float64
	for i := range 11 {
		a = append(a, float64(100+i))
		b = append(b, float64(i))
	}
	if u, p := MannWhitney(a, b); u != 121 || p > 1e-4 {
		t.Errorf("separated 11 vs 11: U %g p %g; want U 121, p < 1e-4", u, p)
	}
	if u, p := MannWhitney(a, a); u != 60.5 || p < 0.99 {
		t.Errorf("identical 11 vs 11: U %g p %g; want U 60.5, p ≈ 1", u, p)
	}
	if _, p := MannWhitney(nil, a); p != 1 {
		t.Errorf("empty sample: p %g, want 1", p)
	}
}

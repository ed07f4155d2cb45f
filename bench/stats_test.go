package bench

import (
	"math"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9*math.Max(1, math.Abs(b)) }

func TestMedianCI(t *testing.T) {
	tests := []struct {
		in                 []float64
		med, lo, hi, level float64
	}{
		// Too few for 95%: [min, max] with its true coverage 1 - 2/2^n.
		{[]float64{30, 10, 20}, 20, 10, 30, 0.75},
		{[]float64{4, 1, 3, 2}, 2.5, 1, 4, 0.875},
		{[]float64{5, 1, 4, 2, 3}, 3, 1, 5, 0.9375},
		// n=6: [x(1), x(6)] covers 1 - 2/64.
		{[]float64{6, 5, 4, 3, 2, 1}, 3.5, 1, 6, 1 - 2.0/64},
		// n=10: [x(2), x(9)] covers 1 - 2·11/1024 = 0.978515625 ≥ 95%, [x(3), x(8)] only 0.890625.
		{[]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 5.5, 2, 9, 1 - 22.0/1024},
		// NaN is ignored.
		{[]float64{math.NaN(), 7}, 7, 7, 7, 0},
	}
	for _, tt := range tests {
		got := MedianCI(tt.in, 0.95)
		if !near(got.Median, tt.med) || got.Lo != tt.lo || got.Hi != tt.hi || !near(got.Level, tt.level) {
			t.Errorf("MedianCI(%v) = %+v; want median %g [%g, %g] at %g", tt.in, got, tt.med, tt.lo, tt.hi, tt.level)
		}
	}
	if got := MedianCI(nil, 0.95); got.N != 0 || !math.IsNaN(got.Median) {
		t.Errorf("MedianCI(nil) = %+v", got)
	}
	if w := (CI{N: 3, Median: 100, Lo: 90, Hi: 120}).RelWidth(); !near(w, 0.3) {
		t.Errorf("RelWidth = %g, want 0.3", w)
	}
}

func TestCompare(t *testing.T) {
	tests := []struct {
		name    string
		a, b    []float64
		verdict string
		ratio   float64
	}{
		{"3 vs 3 separated", []float64{110, 120, 130}, []float64{100, 101, 102}, Consistent, 120.0 / 101},
		{"4 vs 4 separated", []float64{110, 120, 130, 140}, []float64{100, 101, 102, 103}, Significant, 125.0 / 101.5},
		{"overlapping", []float64{100, 120, 140}, []float64{110, 115, 130}, Noise, 120.0 / 115},
		{"one empty", []float64{1}, nil, Noise, math.NaN()},
	}
	for _, tt := range tests {
		c := Compare(tt.a, tt.b)
		if c.Verdict != tt.verdict || !(near(c.Ratio, tt.ratio) || math.IsNaN(tt.ratio) && math.IsNaN(c.Ratio)) {
			t.Errorf("%s: %+v; want %s, ratio %g", tt.name, c, tt.verdict, tt.ratio)
		}
	}
}

func TestFormat(t *testing.T) {
	tests := []struct{ got, want string }{
		{Num(987), "987"}, {Num(45123), "45.1k"}, {Num(60000), "60k"}, {Num(1234567), "1.23M"}, {Num(1), "1"}, {Num(0.5), "0.5"},
		{Micros(87), "87µs"}, {Micros(1250), "1.25ms"}, {Micros(2_100_000), "2.1s"},
		{Pct(1.234), "+23%"}, {Pct(0.5), "-50%"}, {MiB(3 << 20), "3 MiB"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

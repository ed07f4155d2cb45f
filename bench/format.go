package bench

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Num formats a rate for people: 3 significant digits, k and M suffixes
// ("987", "45.1k", "1.23M").
func Num(x float64) string {
	switch a := math.Abs(x); {
	case math.IsNaN(x):
		return "–"
	case a >= 1e6:
		return sig3(x/1e6) + "M"
	case a >= 1e3:
		return sig3(x/1e3) + "k"
	}
	return sig3(x)
}

// sig3 formats with 3 significant digits, no exponent, no trailing zeros
// after the point ("60", "1.5", "0.25").
func sig3(x float64) string {
	a := math.Abs(x)
	var s string
	switch {
	case a == 0:
		return "0"
	case a >= 100:
		s = strconv.FormatFloat(x, 'f', 0, 64)
	case a >= 10:
		s = strconv.FormatFloat(x, 'f', 1, 64)
	case a >= 1:
		s = strconv.FormatFloat(x, 'f', 2, 64)
	default:
		s = strconv.FormatFloat(x, 'g', 3, 64)
	}
	if strings.Contains(s, ".") && !strings.Contains(s, "e") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// Micros formats a duration given in µs: "87µs", "1.25ms", "2.10s".
func Micros(us float64) string {
	switch {
	case math.IsNaN(us):
		return "–"
	case us >= 1e6:
		return sig3(us/1e6) + "s"
	case us >= 1e3:
		return sig3(us/1e3) + "ms"
	}
	return sig3(us) + "µs"
}

// MiB formats bytes in MiB.
func MiB(b int64) string { return sig3(float64(b)/(1<<20)) + " MiB" }

// Pct formats a ratio as a signed percentage difference: 1.234 → "+23%".
func Pct(ratio float64) string {
	if math.IsNaN(ratio) || math.IsInf(ratio, 0) {
		return "–"
	}
	return fmt.Sprintf("%+.0f%%", (ratio-1)*100)
}

// Percent formats a fraction as a percentage with 3 significant digits
// ("0%", "0.0123%", "12.5%"; below 0.001%, "<0.001%").
func Percent(f float64) string {
	switch p := 100 * f; {
	case math.IsNaN(f):
		return "–"
	case p > 0 && p < 0.001:
		return "<0.001%"
	default:
		return sig3(p) + "%"
	}
}

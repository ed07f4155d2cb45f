package bench

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Model variants: a model run with one server flag at one value, named
// MODEL@FLAG=VALUE ("procpool@workers=16"). bench -set FLAG=V1,V2,… turns each
// model of the matrix into one variant per value, so that a pool's figures can
// be drawn against its size (SetFigure: "-set workers=1,4,16,64"). Everywhere
// else a variant is a model of its own: its rows, its cells, its rank; it runs
// its base model with the flag added, and takes its base model's family and
// colour.

// variantSep separates a model from its setting in a variant's name.
const variantSep = "@"

// SetFlags are the server flags -set may sweep: the sizes and policies of the
// models' pools and loops, and the buffers.
var SetFlags = []string{"workers", "max-threads", "min-threads", "queue-cap", "adjust-interval", "loops", "balance", "accept", "max-procs", "read-buf", "high-water"}

// BaseModel is the model a name runs: "procpool" for "procpool@workers=16",
// the name itself for a plain model or a peer.
func BaseModel(m string) string {
	base, _, _ := strings.Cut(m, variantSep)
	return base
}

// variantSetting is a variant's flag and value ("workers", "16"); ok is false
// for a plain model.
func variantSetting(m string) (flag, value string, ok bool) {
	_, v, ok := strings.Cut(m, variantSep)
	if !ok {
		return "", "", false
	}
	flag, value, _ = strings.Cut(v, "=")
	return flag, value, true
}

// ParseSet parses -set's "FLAG=V1,V2,…".
func ParseSet(s string) (flag string, values []string, err error) {
	flag, list, ok := strings.Cut(s, "=")
	flag = strings.TrimPrefix(strings.TrimSpace(flag), "-")
	if !ok || flag == "" {
		return "", nil, fmt.Errorf("-set %q: want FLAG=V1,V2,… (e.g. workers=1,4,16,64)", s)
	}
	if !slices.Contains(SetFlags, flag) {
		return "", nil, fmt.Errorf("-set %q: %s is not a server flag bench sweeps (valid: %s)", s, flag, strings.Join(SetFlags, ", "))
	}
	for _, v := range ParseList(list) {
		if strings.ContainsAny(v, "@=/ ") {
			return "", nil, fmt.Errorf("-set %q: value %q", s, v)
		}
		if !slices.Contains(values, v) {
			values = append(values, v)
		}
	}
	if len(values) == 0 {
		return "", nil, fmt.Errorf("-set %q: no values", s)
	}
	return flag, values, nil
}

// Variants replaces each model (not the peers) by one variant per value of
// flag, in the order given.
func Variants(models []string, flag string, values []string) []string {
	var out []string
	for _, m := range models {
		if IsPeer(m) {
			out = append(out, m)
			continue
		}
		for _, v := range values {
			out = append(out, BaseModel(m)+variantSep+flag+"="+v)
		}
	}
	return out
}

// SetFigure: with a -set sweep, each base model's median throughput against
// the value of the flag, a panel per concurrency (numeric values on a log axis
// when they span a decade, else in their order).
func SetFigure(s *Summary, g Group) (Figure, bool) {
	flag, _, ok := strings.Cut(s.Spec.Set, "=")
	if !ok {
		return Figure{}, false
	}
	var bases, values []string
	for _, m := range s.Spec.Models {
		if f, v, ok := variantSetting(m); ok && f == flag {
			if b := BaseModel(m); !slices.Contains(bases, b) {
				bases = append(bases, b)
			}
			if !slices.Contains(values, v) {
				values = append(values, v)
			}
		}
	}
	if len(bases) == 0 {
		return Figure{}, false
	}
	nums := make([]float64, len(values))
	numeric := true
	for i, v := range values {
		n, err := strconv.ParseFloat(v, 64)
		numeric = numeric && err == nil && n > 0
		nums[i] = n
	}
	f := Figure{Name: "set-" + g.Key(), Title: fmt.Sprintf("Throughput against -%s (%s)", flag, g.String()), Cols: smallMultipleCols(len(s.Spec.Conns)), ShareY: true,
		Caption: fmt.Sprintf("Each model run at every value of -%s (-set): its median throughput over the repetitions against the value, a panel per concurrency, whiskers the median's interval. A hollow point is a cell whose server did not serve all its connections in the window (a pool smaller than the connections, say).", flag)}
	for _, c := range s.Spec.Conns {
		pn := Panel{Title: fmt.Sprintf("-%s sweep, %s", flag, connsTitle(c)), XLabel: "-" + flag, YLabel: "requests/s (median)"}
		if numeric {
			lo, hi := slices.Min(nums), slices.Max(nums)
			pn.LogX = hi/lo >= 10
			if !pn.LogX {
				pn.HumanX = true
			}
		} else {
			for i, v := range values {
				pn.XTicks = append(pn.XTicks, Tick{Value: float64(i + 1), Label: v})
			}
		}
		for _, b := range bases {
			ser := Series{Name: b, Model: b}
			for i, v := range values {
				cs := s.Cell(g, b+variantSep+flag+"="+v, c)
				if cs.Throughput.N == 0 || !(cs.Throughput.Median > 0) {
					continue
				}
				x := float64(i + 1)
				if numeric {
					x = nums[i]
				}
				ser.Points = append(ser.Points, Point{X: x, Y: cs.Throughput.Median, Lo: cs.Throughput.Lo, Hi: cs.Throughput.Hi,
					ClientBound: cs.ClientBound > 0, Apart: cs.Apart() != ""})
			}
			slices.SortFunc(ser.Points, func(a, b Point) int { return cmp.Compare(a.X, b.X) })
			pn.Series = append(pn.Series, ser)
		}
		f.Panels = append(f.Panels, pn)
	}
	return f, true
}

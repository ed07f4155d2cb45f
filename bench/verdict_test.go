package bench

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"concbench/models"
)

// The verdict's ranking and tie logic on literal rankings.
func TestVerdictOf(t *testing.T) {
	num := func(v float64) string { return Num(v) }
	for _, tt := range []struct {
		name   string
		rs     []ranking
		higher bool
		answer string
		margin string
	}{
		{"tied with the leader", []ranking{
			{model: "a", value: 100, reps: []float64{100, 90, 110}},
			{model: "b", value: 98, reps: []float64{98, 95, 105}},
			{model: "c", value: 50, reps: []float64{50, 49, 51}},
		}, true, "**a** ≈ b", "within the noise of b (+2%, p = "},
		{"clear lead, too few for significance", []ranking{
			{model: "a", value: 100, reps: []float64{100, 101, 102}},
			{model: "b", value: 80, reps: []float64{80, 81, 79}},
		}, true, "**a**", "+25% over b in every repetition, too few for significance (p = 0.1)"},
		{"significant", []ranking{
			{model: "a", value: 100, reps: []float64{100, 101, 102, 103, 99, 100}},
			{model: "b", value: 80, reps: []float64{80, 81, 79, 82, 78, 80}},
		}, true, "**a**", "+25% over b, significant (p = 0.0"},
		{"lower is better", []ranking{
			{model: "cheap", value: 10, reps: []float64{10, 10.1, 9.9}},
			{model: "dear", value: 20, reps: []float64{20, 21, 19}},
		}, false, "**cheap**", "50% lower than dear in every repetition"},
		{"one model", []ranking{{model: "a", value: 1, reps: []float64{1}}}, true, "**a**", "the only model measured"},
		{"a wider spread further down overlaps", []ranking{
			{model: "a", value: 100, reps: []float64{100, 101, 102}},
			{model: "b", value: 90, reps: []float64{90, 91, 89}},
			{model: "c", value: 80, reps: []float64{80, 30, 130}},
		}, true, "**a** ≈ c", "the models after ≈ overlap it"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			row, ok := verdictOf("q", tt.rs, num, tt.higher, "#x")
			if !ok {
				t.Fatal("no row")
			}
			if row.Answer != tt.answer || !strings.Contains(row.Margin, tt.margin) {
				t.Errorf("answer %q margin %q, want %q and a margin with %q", row.Answer, row.Margin, tt.answer, tt.margin)
			}
		})
	}
	if _, ok := verdictOf("q", nil, num, true, ""); ok {
		t.Error("a row from no ranking")
	}
}

func TestAnchor(t *testing.T) {
	for in, want := range map[string]string{
		"Throughput by concurrency (echo)":             "#throughput-by-concurrency-echo",
		"Server CPU per request (rpc, work sleep:1ms)": "#server-cpu-per-request-rpc-work-sleep1ms",
		"Idle connections: the C10K experiment (echo)": "#idle-connections-the-c10k-experiment-echo",
	} {
		if got := Anchor(in); got != want {
			t.Errorf("Anchor(%q) = %q, want %q", in, got, want)
		}
	}
}

// rankedBars sorts best first, puts cells apart last, and marks the best
// model and those within the noise of it (never a peer).
func TestRankedBars(t *testing.T) {
	s := Summarise(fixture(t))
	g := Group{Proto: "echo", Work: "none"}
	bars := ThroughputFigure(s, g).Panels[0].HBars
	var names []string
	for _, b := range bars {
		names = append(names, b.Name)
		if b.Peer && b.Tied {
			t.Errorf("peer %s marked tied", b.Name)
		}
	}
	if len(bars) < 3 || bars[0].Model != "peer:cepoll" || bars[1].Model != "fast" || !bars[1].Tied || bars[2].Model != "twin" || !bars[2].Tied {
		t.Errorf("c=1 rows %q: want peer:cepoll (fastest), then fast and twin tied", names)
	}
	for i := 1; i < len(bars); i++ {
		if !bars[i-1].Apart && !bars[i].Apart && bars[i].Value > bars[i-1].Value {
			t.Errorf("rows not sorted by value: %q", names)
		}
		if bars[i-1].Apart && !bars[i].Apart {
			t.Errorf("a cell apart before a comparable one: %q", names)
		}
	}
	cpu := CPUFigure(s, g).Panels[0].HBars
	for i := 1; i < len(cpu); i++ {
		if !cpu[i].Apart && !cpu[i-1].Apart && cpu[i].Value < cpu[i-1].Value {
			t.Errorf("CPU rows not cheapest first at %d", i)
		}
	}
}

// The palette is keyed by name: a model's look does not depend on which other
// models ran or in what order, and every registered model has a place in a
// family (not the fallback).
func TestPalette(t *testing.T) {
	names := models.Names()
	all := map[string]Look{}
	for _, m := range names {
		all[m] = LookOf(m)
		if FamilyOf(m) == FamilyOther {
			t.Errorf("model %s has no family in familyModels (palette.go)", m)
		}
	}
	sub := slices.Clone(names[len(names)/2:])
	slices.Reverse(sub)
	for _, m := range sub {
		if !reflect.DeepEqual(LookOf(m), all[m]) {
			t.Errorf("%s looks different in a subset", m)
		}
	}
	// Within a family, no two models share a colour.
	seen := map[string]string{}
	for _, m := range append(names, "peer:cepoll", "peer:nginx") {
		lk := LookOf(m)
		key := lk.Family + string([]byte{lk.Color.R, lk.Color.G, lk.Color.B})
		if other, dup := seen[key]; dup {
			t.Errorf("%s and %s share a colour", m, other)
		}
		seen[key] = m
	}
	if LookOf("peer:other").Family != FamilyReference || !reflect.DeepEqual(LookOf("newmodel"), LookOf("newmodel")) {
		t.Error("unknown names: a peer is a reference, a model's look is stable")
	}
}

// splitByFamily gives a panel per family with a figure, each with the peers.
func TestSplitByFamily(t *testing.T) {
	p := Panel{Title: "t"}
	for _, m := range []string{"epoll-et", "thread", "fork", "peer:cepoll", "select"} {
		p.Series = append(p.Series, Series{Name: m, Points: []Point{{X: 1, Y: 1}}})
	}
	p.Series = append(p.Series, Series{Name: "procpool"}) // no figure
	ps := splitByFamily(p, "s")
	var got []string
	for _, q := range ps {
		var ss []string
		for _, s := range q.Series {
			ss = append(ss, s.Name)
		}
		got = append(got, q.Title+": "+strings.Join(ss, ","))
	}
	want := []string{"s — event loops: epoll-et,select,peer:cepoll", "s — threads and pools: thread,peer:cepoll", "s — processes: fork,procpool,peer:cepoll"}
	if !slices.Equal(got, want) {
		t.Errorf("panels %q, want %q", got, want)
	}
}

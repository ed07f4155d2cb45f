package bench

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"concbench/models"
)

func TestParseSet(t *testing.T) {
	for _, tt := range []struct {
		in     string
		flag   string
		values []string
		err    string
	}{
		{"workers=1,4,16,64", "workers", []string{"1", "4", "16", "64"}, ""},
		{"-max-threads=8, 64,8", "max-threads", []string{"8", "64"}, ""},
		{"balance=rr,least", "balance", []string{"rr", "least"}, ""},
		{"workers", "", nil, "want FLAG=V1,V2"},
		{"color=red", "", nil, "not a server flag bench sweeps (valid: workers,"},
		{"workers=", "", nil, "no values"},
		{"workers=1@2", "", nil, `value "1@2"`},
	} {
		flag, values, err := ParseSet(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseSet(%q) = %v, want an error with %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || flag != tt.flag || !slices.Equal(values, tt.values) {
			t.Errorf("ParseSet(%q) = %q %q %v", tt.in, flag, values, err)
		}
	}
}

// A variant runs its base model with its flag, which wins over the fair
// configuration's; it keeps its base model's family and colour.
func TestVariants(t *testing.T) {
	ms := Variants([]string{"procpool", "prefork", "peer:cepoll"}, "workers", []string{"1", "16"})
	if want := []string{"procpool@workers=1", "procpool@workers=16", "prefork@workers=1", "prefork@workers=16", "peer:cepoll"}; !slices.Equal(ms, want) {
		t.Fatalf("Variants = %q, want %q", ms, want)
	}
	sp := Spec{Configure: ConfigureFair, Models: ms}
	args := sp.Args(Cell{Model: "procpool@workers=16", Proto: "echo", Conns: 100}, "o.json")
	if !slices.Contains(args, "procpool") || !slices.Contains(args, "-server-arg=-workers=16") || slices.Contains(args, "-server-arg=-workers=100") {
		t.Errorf("Args %q: want -model procpool with -workers=16 only", args)
	}
	if got := sp.CellConfig(Cell{Model: "threadpool@workers=4", Conns: 100}); !slices.Equal(got, []string{"-max-threads=100"}) {
		t.Errorf("a variant of another flag keeps the fair setting: %q", got)
	}
	lk, base := LookOf("procpool@workers=16"), LookOf("procpool")
	if lk.Color != base.Color || lk.Family != FamilyProcesses || FamilyOf("procpool@workers=16") != FamilyProcesses {
		t.Errorf("variant look %+v, base %+v", lk, base)
	}
	if reflect.DeepEqual(LookOf("procpool@workers=1"), LookOf("procpool@workers=16")) && reflect.DeepEqual(LookOf("procpool@workers=1"), LookOf("procpool@workers=4")) {
		t.Error("the variants of one model all look alike")
	}
	sp = Presets["quick"]
	sp.Models = append(ms, "epoll-et@colour=red", "peer:cepoll@workers=2", "nosuch@workers=2")
	err := sp.Validate(models.Names())
	for _, want := range []string{`"epoll-et@colour=red": want MODEL@FLAG=VALUE`, `"peer:cepoll@workers=2": a reference peer takes no -set`, `unknown model "nosuch"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v, want %q", err, want)
		}
	}
}

// SetFigure draws each base model against the swept value, a panel per
// concurrency, and nothing without a sweep.
func TestSetFigure(t *testing.T) {
	sp := Spec{Models: Variants([]string{"fast", "slow"}, "workers", []string{"1", "4", "16"}), Conns: []int{1, 100}, Protos: []string{"echo"}, Works: []string{"none"},
		Reconnect: "off", Repeat: 3, Duration: 2e9, Warmup: 5e8, Size: 64, Set: "workers=1,4,16"}
	s := Summarise(fixtureOf(t, sp))
	f, ok := SetFigure(s, Group{Proto: "echo", Work: "none"})
	if !ok || len(f.Panels) != 2 || len(f.Panels[0].Series) != 2 || !f.Panels[0].LogX {
		t.Fatalf("figure %+v", f)
	}
	for _, ser := range f.Panels[1].Series {
		var xs []float64
		for _, p := range ser.Points {
			xs = append(xs, p.X)
		}
		if !slices.Equal(xs, []float64{1, 4, 16}) {
			t.Errorf("%s: x %v, want 1 4 16", ser.Name, xs)
		}
	}
	renderLong(t, f, "set")
	sp.Set = ""
	if _, ok := SetFigure(Summarise(fixtureOf(t, sp)), Group{Proto: "echo", Work: "none"}); ok {
		t.Error("a figure without a sweep")
	}
}

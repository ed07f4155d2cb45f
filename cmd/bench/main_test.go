package main

import (
	"errors"
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"concbench/bench"
	"concbench/models"
)

func TestParse(t *testing.T) {
	o, err := parse([]string{"-models", "epoll-et,poll", "-c", "1,10", "-repeat", "5", "-d", "1s", "-out", "results/x"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	sp := o.spec
	if !slices.Equal(sp.Models, []string{"epoll-et", "poll"}) || !slices.Equal(sp.Conns, []int{1, 10}) || sp.Repeat != 5 || sp.Duration != time.Second {
		t.Errorf("spec %+v", sp)
	}
	if quick := bench.Presets["quick"]; sp.Warmup != quick.Warmup || sp.Timeline != quick.Timeline || !slices.Equal(sp.Protos, []string{"echo"}) {
		t.Errorf("preset defaults lost: %+v", sp)
	}
	if !strings.Contains(sp.Preset, "customised") {
		t.Errorf("preset %q: want it marked customised", sp.Preset)
	}
	if o.plots != "plots/x" {
		t.Errorf("plots dir %q, want plots/x", o.plots)
	}

	o, err = parse(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.out != "results/quick" || o.spec.Preset != "quick" || !slices.Equal(o.spec.Models, models.Names()) {
		t.Errorf("defaults: out %q preset %q models %v", o.out, o.spec.Preset, o.spec.Models)
	}

	o, err = parse([]string{"report", "-in", "results/ref"}, io.Discard)
	if err != nil || !o.report || o.out != "results/ref" || o.plots != "plots/ref" {
		t.Errorf("report: %+v, %v", o, err)
	}

	for _, bad := range [][]string{
		{"-models", "nope"}, {"-preset", "huge"}, {"-c", "1,x"}, {"-proto", "echo", "-work", "sleep:1ms"},
		{"-reconnect", "sometimes"}, {"extra"}, {"report", "extra"},
	} {
		if _, err := parse(bad, io.Discard); err == nil {
			t.Errorf("parse(%q): no error", bad)
		}
	}
	if _, err := parse([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

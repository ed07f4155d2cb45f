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
	for out, want := range map[string]string{"results/x": "plots/x", "/tmp/run": "/tmp/run/plots", "mine": "mine/plots", "/a/results/y/": "/a/plots/y"} {
		if got := plotsDir(out, ""); got != want {
			t.Errorf("plotsDir(%q) = %q, want %q", out, got, want)
		}
	}

	o, err = parse(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.out != "results/quick" || o.spec.Preset != "quick" || !slices.Equal(o.spec.Models, append(models.Names(), "peer:cepoll")) {
		t.Errorf("defaults: out %q preset %q models %v", o.out, o.spec.Preset, o.spec.Models)
	}
	// -models all is every registered model, without peers.
	if o, err = parse([]string{"-models", "all"}, io.Discard); err != nil || !slices.Equal(o.spec.Models, models.Names()) {
		t.Errorf("-models all: %v, %v", o.spec.Models, err)
	}

	o, err = parse([]string{"-preset", "http"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if sp := o.spec; !slices.Equal(sp.Models, []string{"epoll-et", "reactor", "goroutine", "multireactor", "peer:nginx"}) ||
		!slices.Equal(sp.Protos, []string{"http"}) || sp.Path != "/index.html" || o.out != "results/http" {
		t.Errorf("-preset http: %+v, out %q", sp, o.out)
	}
	o, err = parse([]string{"-preset", "http", "-path", "/1m.bin", "-models", "epoll-et,peer:nginx,peer:cepoll", "-nginx", "/opt/nginx"}, io.Discard)
	if err != nil || o.spec.Path != "/1m.bin" || o.peers.Nginx != "/opt/nginx" || !strings.Contains(o.spec.Preset, "customised") {
		t.Errorf("-preset http -path: %+v, %v", o, err)
	}
	// A preset's path goes with its protocol.
	if o, err = parse([]string{"-preset", "http", "-proto", "echo"}, io.Discard); err != nil || o.spec.Path != "" {
		t.Errorf("-preset http -proto echo: path %q, %v", o.spec.Path, err)
	}
	if o, err = parse([]string{"-proto", "file", "-file", "64k.bin"}, io.Discard); err != nil || o.spec.File != "64k.bin" {
		t.Errorf("-proto file -file: %+v, %v", o.spec, err)
	}

	o, err = parse([]string{"report", "-in", "results/ref"}, io.Discard)
	if err != nil || !o.report || o.out != "results/ref" || o.plots != "plots/ref" {
		t.Errorf("report: %+v, %v", o, err)
	}

	for _, bad := range [][]string{
		{"-models", "nope"}, {"-preset", "huge"}, {"-c", "1,x"}, {"-proto", "echo", "-work", "sleep:1ms"},
		{"-reconnect", "sometimes"}, {"extra"}, {"report", "extra"},
		{"-models", "peer:apache"}, {"-path", "/index.html"}, {"-proto", "gopher"},
	} {
		if _, err := parse(bad, io.Discard); err == nil {
			t.Errorf("parse(%q): no error", bad)
		}
	}
	if _, err := parse([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

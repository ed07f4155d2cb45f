package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"concbench/internal/cpuset"
	"concbench/loadgen"
	"concbench/models"
)

func TestParseCPUs(t *testing.T) {
	tests := []struct {
		in   string
		want []int
	}{
		{"0", []int{0}},
		{"0-3,6", []int{0, 1, 2, 3, 6}},
		{"5,1-2,2", []int{1, 2, 5}},
	}
	for _, tt := range tests {
		got, err := cpuset.Parse(tt.in)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("cpuset.Parse(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if back, _ := cpuset.Parse(cpuset.Format(got)); !slices.Equal(back, tt.want) {
			t.Errorf("cpuset.Format(%v) = %q does not parse back", got, cpuset.Format(got))
		}
	}
	for _, bad := range []string{"", "a", "3-1", "-1"} {
		if _, err := cpuset.Parse(bad); err == nil {
			t.Errorf("cpuset.Parse(%q): no error", bad)
		}
	}
	s, c, err := cpuset.Split([]int{0, 1, 2, 3})
	if err != nil || !slices.Equal(s, []int{0, 1}) || !slices.Equal(c, []int{2, 3}) {
		t.Errorf("splitCPUs = %v %v %v", s, c, err)
	}
	if _, _, err := cpuset.Split([]int{0}); err == nil {
		t.Error("splitCPUs of one CPU: no error")
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parse([]string{"-model", "poll", "-server-arg=-work=sleep:1ms", "--", "-read-buf", "4096"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"-work=sleep:1ms", "-read-buf", "4096"}; !slices.Equal(o.ServerArgs, want) {
		t.Errorf("server args %q, want %q", o.ServerArgs, want)
	}
	o, err = parse([]string{"-model", "poll", "-server-cpus", "0", "-client-cpus", "1-2"}, io.Discard)
	if err != nil || !slices.Equal(o.ServerCPUs, []int{0}) || !slices.Equal(o.ClientCPUs, []int{1, 2}) {
		t.Errorf("CPU lists: server %v, client %v, %v; want [0], [1 2]", o.ServerCPUs, o.ClientCPUs, err)
	}
	_, err = parse([]string{"-model", "nope"}, io.Discard)
	if !errors.Is(err, models.ErrUnknownModel) || !strings.Contains(err.Error(), "epoll-et") {
		t.Errorf("unknown model: err = %v, want ErrUnknownModel listing the valid names", err)
	}
	for _, bad := range [][]string{{}, {"-model", "x", "-addr", "127.0.0.1:1"}, {"-addr", "127.0.0.1:1", "--", "-x"}, {"-addr", "127.0.0.1:1", "-proto", "gopher"}, {"-addr", "unix:/tmp/x.sock", "-unix"}, {"-addr", "unix:"}, {"-model", "poll", "-server-cpus", "a"}, {"-model", "poll", "-client-cpus", "3-1"}} {
		if _, err := parse(bad, io.Discard); err == nil {
			t.Errorf("parse(%q): no error", bad)
		}
	}
	// A bad rate names the flag and says what a rate is, not just "parse error".
	for _, bad := range []string{"abc", "-5", "NaN"} {
		_, err := parse([]string{"-model", "poll", "-rate", bad}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "-rate") || !strings.Contains(err.Error(), "requests per second") {
			t.Errorf("-rate %s: err = %v, want one naming -rate and what it is", bad, err)
		}
	}
	if o, err := parse([]string{"-model", "poll", "-rate", "2.5e4"}, io.Discard); err != nil || o.Workload.Rate != 25000 {
		t.Errorf("-rate 2.5e4: rate %v, %v; want 25000", o.Workload.Rate, err)
	}
}

// An open loop's timeline has 20 entries by default, so that its window can be
// tested for stationarity; a closed loop's keeps seconds; -timeline-step wins.
func TestTimelineStepDefault(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want time.Duration
	}{
		{[]string{"-model", "poll", "-rate", "1000", "-d", "2s"}, 100 * time.Millisecond},
		{[]string{"-model", "poll", "-d", "2s"}, time.Second},
		{[]string{"-model", "poll", "-rate", "1000", "-d", "2s", "-timeline-step", "250ms"}, 250 * time.Millisecond},
	} {
		o, err := parse(tc.args, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		w := o.Workload
		w.Addr = "127.0.0.1:1"
		r, err := loadgen.Resolve(w)
		if err != nil || r.TimelineStep != tc.want {
			t.Errorf("%q: timeline step %v (%v), want %v", tc.args, r.TimelineStep, err, tc.want)
		}
	}
}

// TestCPUProfile: -cpuprofile writes a gzipped pprof profile when stopped, and a
// file that cannot be created is refused before anything runs.
func TestCPUProfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu.pprof")
	o, err := parse([]string{"-addr", "127.0.0.1:1", "-cpuprofile", path}, io.Discard)
	if err != nil || o.cpuProfile != path {
		t.Fatalf("parse: %v, cpuProfile %q", err, o.cpuProfile)
	}
	stop, err := startCPUProfile(o.cpuProfile)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Fatalf("profile: %d bytes, %v; want a gzipped pprof profile", len(b), err)
	}
	if _, err := startCPUProfile(filepath.Join(t.TempDir(), "no", "such", "dir")); err == nil || !strings.Contains(err.Error(), "-cpuprofile") {
		t.Fatalf("a file that cannot be created: %v, want an error naming -cpuprofile", err)
	}
}

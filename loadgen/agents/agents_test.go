package agents

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"concbench/internal/result"
	"concbench/models"
	"concbench/models/modeltest"
)

// The test binary is the agent too: a fake ssh (fakeSSH) runs `TESTBIN agent`.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "agent" {
		os.Exit(Serve(context.Background(), os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestSplit(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		w     result.Workload
		n     int
		conns []int
		rates []float64
		reqs  []int64
		idle  []int
		err   string
	}{
		{name: "even", w: result.Workload{Conns: 10}, n: 2, conns: []int{5, 5}},
		{name: "remainder first", w: result.Workload{Conns: 10, Idle: 5}, n: 3, conns: []int{4, 3, 3}, idle: []int{2, 2, 1}},
		{name: "rate by connections", w: result.Workload{Conns: 10, Rate: 1000}, n: 3, conns: []int{4, 3, 3}, rates: []float64{400, 300, 300}},
		{name: "requests sum exactly", w: result.Workload{Conns: 3, Requests: 10}, n: 2, conns: []int{2, 1}, reqs: []int64{6, 4}},
		{name: "too few connections", w: result.Workload{Conns: 2}, n: 3, err: "each needs at least one"},
		{name: "too few requests", w: result.Workload{Conns: 4, Requests: 3}, n: 2, err: "each connection needs at least one"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Split(tc.w, tc.n)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var conns, idle []int
			var rates []float64
			var reqs []int64
			for _, s := range got {
				conns, idle, rates, reqs = append(conns, s.Conns), append(idle, s.Idle), append(rates, s.Rate), append(reqs, s.Requests)
			}
			if !slices.Equal(conns, tc.conns) {
				t.Errorf("conns %v, want %v", conns, tc.conns)
			}
			if tc.idle != nil && !slices.Equal(idle, tc.idle) {
				t.Errorf("idle %v, want %v", idle, tc.idle)
			}
			if tc.rates != nil {
				sum := 0.0
				for i, r := range rates {
					sum += r
					if math.Abs(r-tc.rates[i]) > 1e-9 {
						t.Errorf("rates %v, want %v", rates, tc.rates)
					}
				}
				if math.Abs(sum-tc.w.Rate) > 1e-9 {
					t.Errorf("rates sum to %g, want %g", sum, tc.w.Rate)
				}
			}
			if tc.reqs != nil && !slices.Equal(reqs, tc.reqs) {
				t.Errorf("requests %v, want %v", reqs, tc.reqs)
			}
		})
	}
	t.Run("exp seeds distinct", func(t *testing.T) {
		got, err := Split(result.Workload{Conns: 4, Rate: 100, Arrival: "exp"}, 4)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[uint64]bool{}
		for _, s := range got {
			if s.Seed == 0 || seen[s.Seed] {
				t.Fatalf("seeds %+v: want each agent its own, none 0", got)
			}
			seen[s.Seed] = true
		}
	})
}

func TestSSHCommand(t *testing.T) {
	t.Parallel()
	s := SSH{Port: 2222, Identity: "/k/id", ConfigFile: "/dev/null", Options: []string{"UserKnownHostsFile=/k/kh", "BatchMode=no"}}
	got := s.command("root@198.18.1.2", "/tmp/l g", "agent", "-remove-self")
	want := []string{"ssh", "-F", "/dev/null", "-p", "2222", "-i", "/k/id",
		"-o", "UserKnownHostsFile=/k/kh", "-o", "BatchMode=no", // the user's first: ssh takes the first value
		"-o", "BatchMode=yes", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
		"-T", "root@198.18.1.2", "--", "'/tmp/l g' agent -remove-self"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ssh command\n got %q\nwant %q", got, want)
	}
	cp := s.copyCommand("bin/loadgen", "root@2001:db8::1", "/tmp/x")
	if cp[0] != "scp" || !slices.Contains(cp, "-P") || slices.Contains(cp, "-p") || cp[len(cp)-1] != "root@[2001:db8::1]:/tmp/x" {
		t.Errorf("scp command %q: want scp, -P for the port, the IPv6 host in brackets", cp)
	}
	for _, bad := range []string{"", "root@", "-oProxyCommand=x", "a b"} {
		if ValidTarget(bad) == nil {
			t.Errorf("target %q accepted", bad)
		}
	}
}

// fakeSSH writes an ssh stand-in into dir: it skips ssh's options up to "--",
// records its pid in dir/TARGET.pid and becomes the remote command (this test
// binary as the agent), run here.
func fakeSSH(t *testing.T) (ssh, dir string) {
	dir = t.TempDir()
	ssh = filepath.Join(dir, "ssh")
	script := `#!/bin/sh
while [ $# -gt 0 ] && [ "$1" != "--" ]; do target="$1"; shift; done
shift
echo $$ > "` + dir + `/$target.pid"
eval exec "$*"
`
	if err := os.WriteFile(ssh, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return ssh, dir
}

// syncLog collects a run's progress lines; wait returns once a line holds s.
type syncLog struct {
	mu    sync.Mutex
	b     strings.Builder
	lines chan string
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	select {
	case l.lines <- string(p):
	default:
	}
	return len(p), nil
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runOK runs the coordinator with o, logging to a syncLog, and fails the test
// with that log when the run fails.
func runOK(t *testing.T, o Options) *Outcome {
	t.Helper()
	log := &syncLog{lines: make(chan string, 1)}
	o.Log = log
	out, err := Run(context.Background(), o)
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	return out
}

// TestRunFakeSSH: two agents (this binary, through an ssh stand-in) against
// one in-process server: the merge is every agent's sum, the latency
// histogram the exact merge of theirs, the clocks are read and the windows
// start at one instant; an agent killed mid-window fails the run by name,
// the other's result kept.
func TestRunFakeSSH(t *testing.T) {
	addr := modeltest.Serve(t, models.Config{Model: "epoll-et", Proto: "echo"})
	ssh, dir := fakeSSH(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	base := Options{
		Targets:        []string{"a", "b"},
		SSH:            SSH{Program: ssh},
		Remote:         exe,
		Workload:       result.Workload{Addr: addr, Conns: 5, Size: 64, Duration: time.Second, Warmup: 200 * time.Millisecond},
		NoKernelCounts: true,
	}
	t.Run("merged", func(t *testing.T) {
		o := base
		// The server is this process (and the agents its children): the
		// coordinator samples it over the common window.
		o.ServerPID = os.Getpid()
		out := runOK(t, o)
		m := out.Merged
		if m == nil || m.Merge == nil || !m.Merge.Coordinated {
			t.Fatalf("merged %+v: want a coordinated merge", m)
		}
		var sum int64
		h := hdr.New(1, 60_000_000, 3)
		for i, a := range out.Agents {
			if a.Result == nil || a.Err != nil || a.RTT <= 0 {
				t.Fatalf("agent %s: result %v, err %v, rtt %v", a.Name, a.Result != nil, a.Err, a.RTT)
			}
			sum += a.Result.Load.Requests
			ah, err := hdr.Decode([]byte(a.Result.Load.LatencyHist))
			if err != nil {
				t.Fatal(err)
			}
			h.Merge(ah)
			in := m.Merge.Inputs[i]
			if in.ClockRTTNS != int64(a.RTT) || in.ClockOffsetNS != int64(a.Offset) || in.Conns != a.Share.Conns {
				t.Errorf("merge input %d %+v: want agent %s's clock (%v, %v) and share %d", i, in, a.Name, a.Offset, a.RTT, a.Share.Conns)
			}
			// One host, one clock: the offset is within the round trip.
			if a.Offset > a.RTT || -a.Offset > a.RTT {
				t.Errorf("agent %s: offset %v beyond its round trip %v on one host", a.Name, a.Offset, a.RTT)
			}
		}
		if m.Load.Requests != sum || sum == 0 || m.Config.Workload.Conns != 5 || m.Load.ErrorsTotal != 0 {
			t.Errorf("merged %d requests of %d connections, errors %v; agents' sum %d of 5", m.Load.Requests, m.Config.Workload.Conns, m.Load.Errors, sum)
		}
		mh, err := hdr.Decode([]byte(m.Load.LatencyHist))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(mh.Export().Counts, h.Export().Counts) {
			t.Error("the merged latency histogram is not the merge of the agents'")
		}
		// One instant: the windows' starts, on one clock, within a few ms.
		s0, s1 := m.Merge.Inputs[0].WindowStartUnixNS, m.Merge.Inputs[1].WindowStartUnixNS
		if d := time.Duration(s0 - s1).Abs(); d > 20*time.Millisecond {
			t.Errorf("windows started %v apart, want one instant", d)
		}
		if m.Merge.Overlap < result.MinOverlap {
			t.Errorf("overlap %.3f", m.Merge.Overlap)
		}
		if s := m.Server; s == nil || !s.External || len(s.Samples) == 0 || s.CPUCoresMean <= 0 || !strings.Contains(m.Merge.ServerFrom, "coordinator") {
			t.Errorf("server figures %+v from %q: want the coordinator's samples of pid %d", s, m.Merge.ServerFrom, o.ServerPID)
		}
	})
	t.Run("agent killed", func(t *testing.T) {
		log := &syncLog{lines: make(chan string, 64)}
		o := base
		o.Log = log
		o.Workload.Duration = 3 * time.Second
		go func() {
			for l := range log.lines {
				if strings.Contains(l, "the window starts") {
					time.Sleep(time.Second)
					b, _ := os.ReadFile(filepath.Join(dir, "b.pid"))
					pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
					if pid > 0 {
						syscall.Kill(pid, syscall.SIGKILL)
					}
					return
				}
			}
		}()
		out, err := Run(context.Background(), o)
		if !errors.Is(err, ErrAgent) || !strings.Contains(err.Error(), "b:") || strings.Contains(err.Error(), "a:") {
			t.Fatalf("err %v: want ErrAgent naming b alone\n%s", err, log)
		}
		if out == nil || out.Merged != nil {
			t.Fatalf("outcome %+v: want the agents' parts and no merged result", out)
		}
		a, b := out.Agents[0], out.Agents[1]
		if a.Err != nil || a.Result == nil || a.Result.Load.Requests == 0 || a.Result.Load.Seconds < 2.5 {
			t.Errorf("agent a: err %v, result %v: want its whole window kept", a.Err, a.Result != nil)
		}
		if b.Err == nil || b.Result != nil {
			t.Errorf("agent b: err %v, result %v: want it failed without a result", b.Err, b.Result != nil)
		}
		fmt.Fprintln(os.Stderr, "killed agent's error:", b.Err)
	})
}

package agents

// The agents over real ssh, on network-namespace hosts of the test's own
// (internal/netnstest: a namespace per host, joined to this one by a veth pair,
// each running sshd with a throwaway host key; addresses from 198.18.0.0/15).

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"concbench/internal/netnstest"
	"concbench/internal/result"
	"concbench/models"
	"concbench/models/modeltest"
)

// buildLoadgen builds cmd/loadgen into a temporary directory (once per test
// binary): the agents' executable.
var buildLoadgen = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "concbench-agents-test-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "loadgen")
	out, err := exec.Command("go", "build", "-o", bin, "concbench/cmd/loadgen").CombinedOutput()
	if err != nil {
		return "", errors.New(string(out))
	}
	return bin, nil
})

// sshOf turns the topology's ssh arguments into an SSH.
func sshOf(t *testing.T, args []string) SSH {
	var s SSH
	for i := 0; i+1 < len(args); i += 2 {
		switch args[i] {
		case "-i":
			s.Identity = args[i+1]
		case "-F":
			s.ConfigFile = args[i+1]
		case "-o":
			s.Options = append(s.Options, args[i+1])
		default:
			t.Fatalf("ssh argument %q not understood", args[i])
		}
	}
	return s
}

// TestAgentsOverSSH: 2 agents (the binary copied with scp) and 3 agents (found
// at a path on the hosts) against a real server: the merged request count is
// the agents' sum, the merged histogram the exact merge of theirs, every clock
// offset recorded (and, one machine's clock, within its round trip); then an
// agent killed mid-window fails the run naming it, the others' results kept.
func TestAgentsOverSSH(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds loadgen and makes network-namespace hosts")
	}
	tp := netnstest.Up(t, 3)
	bin, err := buildLoadgen()
	if err != nil {
		t.Fatalf("building loadgen: %v", err)
	}
	addr := modeltest.ServeServer(t, &models.Server{AllowRemote: true, Config: models.Config{Model: "epoll-et", Proto: "echo", Addr: tp.ServerAddr + ":0"}})
	ssh := sshOf(t, tp.SSHArgs)
	targets := func(n int) []string {
		var ts []string
		for _, h := range tp.Hosts[:n] {
			ts = append(ts, h.Target)
		}
		return ts
	}
	base := Options{SSH: ssh, Workload: result.Workload{Addr: addr, Conns: 30, Size: 64, Duration: 2 * time.Second, Warmup: 300 * time.Millisecond}}
	for _, tc := range []struct {
		name string
		n    int
		copy bool
	}{{"2 agents, copied", 2, true}, {"3 agents, on the hosts", 3, false}} {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			o.Targets = targets(tc.n)
			if tc.copy {
				o.Copy = bin
			} else {
				o.Remote = bin // the hosts share this machine's files
			}
			out := runOK(t, o)
			m := out.Merged
			var sum int64
			h := hdr.New(1, 60_000_000, 3)
			for i, a := range out.Agents {
				r := a.Result
				sum += r.Load.Requests
				ah, err := hdr.Decode([]byte(r.Load.LatencyHist))
				if err != nil {
					t.Fatal(err)
				}
				h.Merge(ah)
				in := m.Merge.Inputs[i]
				if in.ClockRTTNS <= 0 || in.ClockOffsetNS != int64(a.Offset) || r.Load.ErrorsTotal != 0 {
					t.Errorf("agent %s: clock %v ±%v recorded as %d ±%d, errors %v", a.Name, a.Offset, a.RTT/2, in.ClockOffsetNS, in.ClockRTTNS/2, r.Load.Errors)
				}
				if a.Offset.Abs() > a.RTT {
					t.Errorf("agent %s: offset %v beyond its round trip %v, on one machine's clock", a.Name, a.Offset, a.RTT)
				}
				t.Logf("agent %s: %d conns, %d requests, %.0f req/s, p99 %dµs, clock offset %v (rtt %v)", a.Name, a.Share.Conns, r.Load.Requests, r.Load.Throughput, r.Load.Latency.P99US, a.Offset, a.RTT)
			}
			if m.Load.Requests != sum || sum == 0 || m.Load.ErrorsTotal != 0 || m.Config.Workload.Conns != 30 {
				t.Errorf("merged %d requests, %d errors, %d conns; the agents' sum %d", m.Load.Requests, m.Load.ErrorsTotal, m.Config.Workload.Conns, sum)
			}
			mh, err := hdr.Decode([]byte(m.Load.LatencyHist))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(mh.Export().Counts, h.Export().Counts) {
				t.Error("the merged latency histogram is not the merge of the agents'")
			}
			if !m.Merge.Coordinated || m.Merge.Overlap < result.MinOverlap {
				t.Errorf("merge %+v: want coordinated, overlapping", m.Merge)
			}
			t.Logf("merged: %d requests, %.0f req/s, p99 %dµs, overlap %.4f", m.Load.Requests, m.Load.Throughput, m.Load.Latency.P99US, m.Merge.Overlap)
		})
	}
	t.Run("server sampled on its host", func(t *testing.T) {
		// The server is this test process; host 3 reaches it through /proc
		// (the namespaces share this machine's processes), as a sampler on
		// the server's own host does.
		o := base
		o.Targets, o.Remote = targets(2), bin
		o.ServerPID, o.ServerHost = os.Getpid(), tp.Hosts[2].Target
		out := runOK(t, o)
		m := out.Merged
		if len(out.Agents) != 3 || !out.Agents[2].Sampler || len(m.Merge.Inputs) != 2 {
			t.Fatalf("%d agents (the last a sampler: %v), %d merged: want 2 loading and the sampler", len(out.Agents), out.Agents[len(out.Agents)-1].Sampler, len(m.Merge.Inputs))
		}
		s := m.Server
		if s == nil || s.PID != os.Getpid() || len(s.Samples) == 0 || s.CPUCoresMean <= 0 || m.Merge.ServerFrom != "server "+tp.Hosts[2].Target || m.Merge.ServerClockRTTNS <= 0 {
			t.Fatalf("server %+v from %q (clock rtt %d): want the sampler's figures of pid %d", s, m.Merge.ServerFrom, m.Merge.ServerClockRTTNS, os.Getpid())
		}
		// The samples are on the merged timeline: the window's among them.
		in := 0
		for _, x := range s.Samples {
			if x.T >= 0.3 && x.T <= m.Load.Seconds+0.3 {
				in++
			}
		}
		if in < 5 {
			t.Errorf("%d of %d samples within the load: their times %v", in, len(s.Samples), s.Samples)
		}
	})
	t.Run("agent killed", func(t *testing.T) {
		o := base
		o.Targets, o.Remote = targets(2), bin
		o.Workload.Duration = 4 * time.Second
		log := &syncLog{lines: make(chan string, 64)}
		o.Log = log
		victim := tp.Hosts[1]
		killed := make(chan string, 1)
		go func() {
			for l := range log.lines {
				if strings.Contains(l, "the window starts") {
					time.Sleep(1500 * time.Millisecond)
					killed <- killIn(victim.Name)
					return
				}
			}
		}()
		out, err := Run(context.Background(), o)
		t.Logf("killed in %s: %s", victim.Name, <-killed)
		if !errors.Is(err, ErrAgent) || !strings.Contains(err.Error(), victim.Target) || strings.Contains(err.Error(), tp.Hosts[0].Target+":") {
			t.Fatalf("err %v: want ErrAgent naming %s alone\n%s", err, victim.Target, log)
		}
		a, b := out.Agents[0], out.Agents[1]
		if a.Err != nil || a.Result == nil || a.Result.Load.Requests == 0 || a.Result.Load.Seconds < 3.5 {
			t.Errorf("agent %s: err %v: want its whole window kept", a.Name, a.Err)
		}
		if b.Err == nil || b.Result != nil || out.Merged != nil {
			t.Errorf("agent %s: err %v, result %v, merged %v: want it failed, no merge", b.Name, b.Err, b.Result != nil, out.Merged != nil)
		}
		t.Logf("the run's error: %v", err)
	})
}

// killIn SIGKILLs the loadgen processes in network namespace ns (ip netns
// pids: the host's processes; sshd there is left alone) and says which.
func killIn(ns string) string {
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return err.Error()
	}
	var killed []string
	for _, f := range strings.Fields(string(out)) {
		pid, _ := strconv.Atoi(f)
		comm, _ := os.ReadFile("/proc/" + f + "/comm")
		if pid > 0 && strings.TrimSpace(string(comm)) == "loadgen" {
			if p, err := os.FindProcess(pid); err == nil && p.Kill() == nil {
				killed = append(killed, f)
			}
		}
	}
	return "pids " + strings.Join(killed, ",")
}

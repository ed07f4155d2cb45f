package main

import (
	"context"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"concbench/bench"
	"concbench/internal/netnstest"
)

// TestAgentFlagsBench: bench's multi-host flags go to loadgen as given, and
// are refused without -agents or without an address of this host.
func TestAgentFlagsBench(t *testing.T) {
	o, err := parse([]string{"-models", "epoll-et", "-agents", "a,b", "-agent-host", "198.18.0.1", "-ssh-opt", "BatchMode=yes", "-ssh-opt", "X=y", "-agent-wait", "30s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"-ssh-opt=BatchMode=yes", "-ssh-opt=X=y", "-agent-wait=30s"}
	if a := o.agents; a == nil || a.Host != "198.18.0.1" || a.Targets != "a,b" || a.Wait != 30*time.Second || strings.Join(a.Args, " ") != strings.Join(want, " ") {
		t.Errorf("agents %+v, want host 198.18.0.1, targets a,b, wait 30s, args %q", a, want)
	}
	// The plan records them: a run directory holds one kind of run.
	if o.spec.Agents != "a,b" {
		t.Errorf("spec agents %q, want a,b", o.spec.Agents)
	}
	single, err := parse([]string{"-models", "epoll-et"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if why := single.spec.SameMeasurement(o.spec); !strings.Contains(why, "agents") {
		t.Errorf("resuming an agents run without them: %q, want it refused", why)
	}
	for _, tc := range []struct{ args, err string }{
		{"-agents a,b", "-agent-host"},
		{"-agents a,b -agent-host nothost", "-agent-host"},
		{"-ssh-port 22", "are for -agents"},
		{"-agent-host 198.18.0.1", "are for -agents"},
	} {
		_, err := parse(append([]string{"-models", "epoll-et"}, strings.Fields(tc.args)...), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: err %v, want %q", tc.args, err, tc.err)
		}
	}
}

// TestBenchAgents: a matrix whose load comes from two agents on
// network-namespace hosts over ssh: bench starts the model's server (and the
// peer) on the hosts' side, every trial is ok, and each result is the merge of
// the two agents' with the server sampled beside it and named.
func TestBenchAgents(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and makes network-namespace hosts")
	}
	tp := netnstest.Up(t, 2)
	bin, cepoll := buildBinaries(t)
	models := "epoll-et"
	if cepoll != "" {
		models += ",peer:cepoll"
	}
	out := filepath.Join(t.TempDir(), "run")
	args := []string{"-models", models, "-c", "4", "-repeat", "1", "-count-reps", "0", "-d", "1s", "-warmup", "300ms", "-timeline", "0",
		"-calibrate=false", "-out", out, "-agent-host", tp.ServerAddr, "-agent-path", filepath.Join(bin, "loadgen"),
		"-agents", tp.Hosts[0].Target + "," + tp.Hosts[1].Target}
	for i := 0; i+1 < len(tp.SSHArgs); i += 2 {
		flag := map[string]string{"-F": "-ssh-config", "-i": "-ssh-identity", "-o": "-ssh-opt"}[tp.SSHArgs[i]]
		if flag == "" {
			t.Fatalf("ssh argument %q has no bench flag", tp.SSHArgs[i])
		}
		args = append(args, flag, tp.SSHArgs[i+1])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "bench"), args...)
	outb, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, outb)
	}
	o, err := parse(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	store := bench.Store{Dir: out}
	for _, tr := range o.spec.Plan() {
		rec, err := store.ReadRecord(tr)
		if err != nil || rec.Status != bench.StatusOK {
			t.Fatalf("%s: %+v, %v\n%s", tr.Key(), rec, err, outb)
		}
		r, err := store.ReadResult(rec)
		if err != nil {
			t.Fatal(err)
		}
		mg := r.Merge
		if mg == nil || !mg.Coordinated || len(mg.Inputs) != 2 || r.Server == nil || mg.ServerFrom != "the coordinator" || r.Load.Requests == 0 {
			t.Errorf("%s: merge %+v, server %v, %d requests: want two agents' coordinated merge, the server sampled by the coordinator", tr.Key(), mg, r.Server != nil, r.Load.Requests)
			continue
		}
		if !bench.IsPeer(tr.Cell.Model) && r.Config.Model != tr.Cell.Model {
			t.Errorf("%s: the result names model %q", tr.Key(), r.Config.Model)
		}
		t.Logf("%s: %.0f req/s from %s (%d) and %s (%d)", tr.Key(), r.Load.Throughput, mg.Inputs[0].Name, mg.Inputs[0].Requests, mg.Inputs[1].Name, mg.Inputs[1].Requests)
	}
}

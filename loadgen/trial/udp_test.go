package trial

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"concbench/internal/cpuset"
	"concbench/internal/proto"
	"concbench/internal/result"
	"concbench/loadgen/dgram/dgramtest"
)

// A trial against dgramtest's faulty server (-addr): the result written and
// the summary printed give exactly what the server did to each flow's 1000
// datagrams — 100 lost, 10 duplicated, 1 reordered, 1 mismatched (an error:
// the run fails) — and the loss is a warning, not an error.
func TestRunUDPFaulty(t *testing.T) {
	cpus, err := cpuset.Available()
	if err != nil {
		t.Fatal(err)
	}
	const flows, perFlow = 4, 1000
	out := filepath.Join(t.TempDir(), "r.json")
	w := result.Workload{Addr: dgramtest.Start(t), Proto: proto.UDPEcho, Conns: flows, Pipeline: 32, Requests: flows * perFlow,
		Timeout: 300 * time.Millisecond, Duration: time.Minute}
	r, summary, err := run(t, cpus, Options{Workload: w, Out: out, NoKernelCounts: true})
	if !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), fmt.Sprintf("%d errors", flows)) {
		t.Fatalf("err = %v, want ErrFailed for the %d mismatches\n%s", err, flows, summary)
	}
	if r, err = result.ReadFile(out); err != nil {
		t.Fatal(err)
	}
	want := dgramtest.Want(flows, perFlow)
	wantD := result.Datagrams{Sent: int64(want.Sent), Answered: int64(want.Answered), Lost: int64(want.Lost), Duplicated: int64(want.Duplicated),
		Reordered: int64(want.Reordered), Mismatched: int64(want.Mismatched), LossRate: 0.1}
	if d := r.Load.Datagrams; d == nil || *d != wantD {
		t.Errorf("JSON datagrams %+v\nwant           %+v", d, wantD)
	}
	if r.Schema != result.SchemaVersion || r.Config.Workload.Batch != 1 || r.Load.Errors["mismatch"] != flows {
		t.Errorf("schema %d, batch %d, errors %v", r.Schema, r.Config.Workload.Batch, r.Load.Errors)
	}
	for _, line := range []string{
		"udp-echo 64 B datagrams, batch 1, 4 flows × pipeline 32",
		"flows: 4/4 UDP sockets connected to the server",
		"datagrams sent in the window: 4000; answered 3596, lost 400 (loss rate 10.000%, unanswered after 300ms), late 0, duplicated 40, reordered 4, mismatched 4",
		"ERRORS: 4 (mismatch 4)",
	} {
		if !strings.Contains(summary, line) {
			t.Errorf("summary lacks %q:\n%s", line, summary)
		}
	}
	if !slices.ContainsFunc(r.Warnings, func(s string) bool {
		return strings.Contains(s, "400 of the 4000 datagrams sent in the window were lost")
	}) {
		t.Errorf("warnings %q do not give the loss", r.Warnings)
	}
}

// A model's server serving udp-echo, started by the trial with loadgen's
// -batch (a -server-arg given after it wins): every datagram answered, and
// the server's own datagram counters in the summary.
func TestRunModelUDP(t *testing.T) {
	bin, cpus := serverBin(t)
	w := result.Workload{Proto: proto.UDPEcho, Conns: 10, Pipeline: 4, Batch: 4, Duration: 500 * time.Millisecond, Warmup: 100 * time.Millisecond}
	r, summary := runOK(t, cpus, Options{Model: "epoll-et", ServerBin: bin, Workload: w, ServerArgs: []string{"-batch=8"}, NoKernelCounts: true})
	args := strings.Join(r.Config.ServerArgs, " ")
	if !strings.Contains(args, "-proto udp-echo -addr 127.0.0.1:0 -batch 4 -batch=8") {
		t.Errorf("server args %q: want loadgen's -batch 4, then the one given", args)
	}
	if d := r.Load.Datagrams; d == nil || d.Sent == 0 || d.Answered != d.Sent || d.Lost != 0 || d.Duplicated != 0 || d.Mismatched != 0 {
		t.Errorf("datagrams %+v: want every one answered once", d)
	}
	for _, line := range []string{"flows: 10/10 UDP sockets", "server counters: datagrams in ", "server exit: clean"} {
		if !strings.Contains(summary, line) {
			t.Errorf("summary lacks %q:\n%s", line, summary)
		}
	}
}

// A model that does not serve udp-echo: its server refuses at start (exit 2)
// and the trial says why, at once, as a trial impossible here.
func TestRunModelUDPRefused(t *testing.T) {
	bin, cpus := serverBin(t)
	begin := time.Now()
	r, _, err := run(t, cpus, Options{Model: "fork", ServerBin: bin, Workload: result.Workload{Proto: proto.UDPEcho, Conns: 2, Duration: time.Second}})
	if r != nil || !errors.Is(err, ErrImpossible) || !strings.Contains(err.Error(), "-model fork does not serve -proto udp-echo") {
		t.Errorf("Run = %v, %v; want no result and ErrImpossible quoting the server's refusal", r, err)
	}
	if took := time.Since(begin); took > 5*time.Second {
		t.Errorf("took %v", took)
	}
}

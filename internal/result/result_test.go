package result

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestWriteReadRoundTrip(t *testing.T) {
	p := Percentiles{Count: 3, MinUS: 1, MeanUS: 2.5, P50US: 2, P90US: 3, P99US: 3, P999US: 3, P9999US: 3, MaxUS: 3}
	in := &Run{
		Schema:  SchemaVersion,
		Started: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		Config:  Config{Workload: Workload{Addr: "127.0.0.1:1", Proto: "rpc", Conns: 2, Duration: time.Second}, Model: "poll", ServerCPUs: []int{0}, ClientCPUs: []int{1}},
		Load: Load{Mode: "open", Requests: 3, Seconds: 1, Throughput: 3, Latency: p, Uncorrected: &p, SendLag: &p,
			Errors: map[string]int64{"reset": 1}, ErrorsTotal: 1, Timeline: []Second{{T: 0, Requests: 3, P99US: 3}}},
		Server:      &Server{PID: 9, Samples: []ProcSample{{T: 0.1, CPUCores: 0.5}}, Exit: &Exit{Clean: true}},
		ClientBound: true,
	}
	path := filepath.Join(t.TempDir(), "r.json")
	if err := WriteFile(path, in); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), `"datagrams"`) || strings.Contains(string(b), `"batch"`) {
		t.Errorf("a stream workload's JSON has a datagram account or a batch:\n%s", b)
	}
	// udp-echo's: the workload's batch and the account of the datagrams.
	in.Config.Workload.Proto, in.Config.Workload.Batch = "udp-echo", 32
	in.Load.Datagrams = &Datagrams{Sent: 1000, Answered: 899, Lost: 100, Late: 2, Duplicated: 10, Reordered: 1, Mismatched: 1, LossRate: 0.1, ClientDropped: 3}
	if err := WriteFile(path, in); err != nil {
		t.Fatal(err)
	}
	// Schema 6: the window placed in time, every histogram, a merge's inputs.
	in.Load.LoadStartUnixNS, in.Load.WindowStartUnixNS, in.Load.WindowEndUnixNS = 1_700_000_000_000_000_000, 1_700_000_000_300_000_000, 1_700_000_001_300_000_000
	in.Load.UncorrectedHist, in.Load.SendLagHist, in.Load.Connect.LatencyHist = "HISTU", "HISTL", "HISTC"
	in.Merge = &Merge{Inputs: []MergeInput{{Name: "a.json", Host: "h1", Conns: 2, Requests: 3, ClientBound: true, Env: Env{Hostname: "h1"}}},
		Overlap: 0.99, TimelineSkewNS: 1000, ServerFrom: "a.json", EnvDiffers: []string{"hostname"}}
	if err := WriteFile(path, in); err != nil {
		t.Fatal(err)
	}
	out, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip differs:\n got %+v\nwant %+v", out, in)
	}
	b, _ = os.ReadFile(path)
	for _, key := range []string{`"p99_9_us"`, `"client_bound": true`, `"duration_ns": 1000000000`, `"batch": 32`, `"loss_rate": 0.1`, `"reordered": 1`, `"client_dropped": 3`,
		`"window_start_unix_ns": 1700000000300000000`, `"send_lag_hist": "HISTL"`, `"timeline_skew_ns": 1000`, `"server_from": "a.json"`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("JSON lacks %s", key)
		}
	}
}

func TestReadFileRefusesOtherSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.json")
	if err := os.WriteFile(path, []byte(`{"schema": 999}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(path); err == nil {
		t.Fatal("schema 999 accepted")
	}
}

// TestDatagramsAdd: two accounts summed count by count, the loss rate
// recomputed over the sum (not averaged), and an empty sum's rate 0.
func TestDatagramsAdd(t *testing.T) {
	var d Datagrams
	d.Add(Datagrams{})
	if d != (Datagrams{}) {
		t.Fatalf("the sum of nothing: %+v", d)
	}
	d.Add(Datagrams{Sent: 100, Answered: 90, Lost: 10, Late: 1, Duplicated: 2, Reordered: 3, Mismatched: 0, LossRate: 0.1, ClientDropped: 4})
	d.Add(Datagrams{Sent: 300, Answered: 299, Lost: 1, Mismatched: 1, LossRate: 1.0 / 300})
	want := Datagrams{Sent: 400, Answered: 389, Lost: 11, Late: 1, Duplicated: 2, Reordered: 3, Mismatched: 1, LossRate: 11.0 / 400, ClientDropped: 4}
	if d != want {
		t.Errorf("sum %+v, want %+v", d, want)
	}
}

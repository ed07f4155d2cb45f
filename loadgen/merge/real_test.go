package merge_test

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"concbench/internal/proto"
	"concbench/internal/result"
	"concbench/loadgen"
	"concbench/loadgen/merge"
	"concbench/models"
	"concbench/models/modeltest"
)

// serve starts model serving protoName in this process and returns its address.
func serve(t *testing.T, model, protoName string) string {
	t.Helper()
	return modeltest.Serve(t, models.Config{Model: model, Proto: protoName})
}

// runs runs the workloads at the same time, each as a load generator of its
// own would, and returns their results as loadgen -o writes them (but for the
// trial's figures: server, client CPU, host).
func runs(t *testing.T, ws ...result.Workload) []*result.Run {
	t.Helper()
	out := make([]*result.Run, len(ws))
	errs := make([]error, len(ws))
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), w.Warmup+w.Duration+20*time.Second)
			defer cancel()
			o, err := loadgen.Run(ctx, loadgen.Config{Workload: w})
			if err != nil {
				errs[i] = err
				return
			}
			host, _ := os.Hostname()
			out[i] = &result.Run{Schema: result.SchemaVersion, Started: o.LoadStart, Config: result.Config{Workload: o.Workload},
				Env: result.Env{Hostname: host}, Load: o.Load}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// Two real load generators against one real server (epoll-et) at the same
// time, over TCP and over UDP: the merge's counts are their sums, its
// histograms theirs added bucket by bucket, its timeline their aligned sum.
// Not parallel: the runs share this process's CPUs with the server.
func TestMergeRealRuns(t *testing.T) {
	for _, p := range []string{"echo", proto.UDPEcho} {
		t.Run(p, func(t *testing.T) {
			addr := serve(t, "epoll-et", p)
			w := result.Workload{Addr: addr, Proto: p, Duration: 2 * time.Second, Warmup: 100 * time.Millisecond, Loops: 1,
				TimelineStep: 100 * time.Millisecond, Pipeline: 2}
			wa, wb := w, w
			wa.Conns, wb.Conns = 3, 5
			rs := runs(t, wa, wb)
			in := []merge.Input{{Name: "a.json", Run: rs[0]}, {Name: "b.json", Run: rs[1]}}
			r, err := merge.Merge(in)
			if err != nil {
				t.Fatal(err)
			}
			a, b := rs[0].Load, rs[1].Load
			if a.Requests == 0 || b.Requests == 0 || a.ErrorsTotal+b.ErrorsTotal != 0 {
				t.Fatalf("runs: %d and %d requests, %d errors; want requests and no error", a.Requests, b.Requests, a.ErrorsTotal+b.ErrorsTotal)
			}
			ld := r.Load
			if ld.Requests != a.Requests+b.Requests || ld.Connect.Target != 8 || r.Config.Workload.Conns != 8 ||
				ld.InFlightAtEnd != a.InFlightAtEnd+b.InFlightAtEnd || ld.Throughput != a.Throughput+b.Throughput {
				t.Errorf("merged requests %d, conns %d, in flight %d, throughput %.1f; want %d, 8, %d, %.1f",
					ld.Requests, r.Config.Workload.Conns, ld.InFlightAtEnd, ld.Throughput, a.Requests+b.Requests, a.InFlightAtEnd+b.InFlightAtEnd, a.Throughput+b.Throughput)
			}
			// Bucket by bucket: the merged histogram's count at every value
			// is the sum of the two runs'.
			for _, h := range []struct {
				what        string
				got, ea, eb string
				pct         result.Percentiles
			}{
				{"latency", ld.LatencyHist, a.LatencyHist, b.LatencyHist, ld.Latency},
				{"connect", ld.Connect.LatencyHist, a.Connect.LatencyHist, b.Connect.LatencyHist, ld.Connect.Latency},
			} {
				g, ha, hb := decode(t, h.got), decode(t, h.ea), decode(t, h.eb)
				counts := func(h *hdr.Histogram) map[int64]int64 {
					m := map[int64]int64{}
					for _, bar := range h.Distribution() {
						if bar.Count != 0 {
							m[bar.From] = bar.Count
						}
					}
					return m
				}
				cg, ca, cb := counts(g), counts(ha), counts(hb)
				for v := range ca {
					if _, ok := cg[v]; !ok {
						t.Fatalf("%s: the merge has no value at %d µs, a has %d", h.what, v, ca[v])
					}
				}
				for v := range cb {
					if _, ok := cg[v]; !ok {
						t.Fatalf("%s: the merge has no value at %d µs, b has %d", h.what, v, cb[v])
					}
				}
				for v, n := range cg {
					if n != ca[v]+cb[v] {
						t.Fatalf("%s: %d values at %d µs, want %d + %d", h.what, n, v, ca[v], cb[v])
					}
				}
				if h.pct != loadgen.Percentiles(g) || h.pct.Count != ha.TotalCount()+hb.TotalCount() {
					t.Errorf("%s: percentiles %+v, not the merged histogram's", h.what, h.pct)
				}
			}
			// The timeline: each run's entries shifted by the steps nearest
			// to its load start's distance from the later one's.
			st := int64(100 * time.Millisecond)
			origin := max(a.LoadStartUnixNS, b.LoadStartUnixNS)
			ka, kb := int((origin-a.LoadStartUnixNS+st/2)/st), int((origin-b.LoadStartUnixNS+st/2)/st)
			n := min(len(a.Timeline)-ka, len(b.Timeline)-kb)
			if n < 15 || len(ld.Timeline) != n {
				t.Fatalf("merged timeline of %d entries; want %d, at least 15", len(ld.Timeline), n)
			}
			for j, e := range ld.Timeline {
				if want := a.Timeline[j+ka].Requests + b.Timeline[j+kb].Requests; e.Requests != want {
					t.Errorf("entry %d: %d requests, want %d", j, e.Requests, want)
				}
			}
			if r.Merge.Overlap < result.MinOverlap || ld.Seconds > min(a.Seconds, b.Seconds) {
				t.Errorf("overlap %.3f, common window %.3f s of %.3f and %.3f", r.Merge.Overlap, ld.Seconds, a.Seconds, b.Seconds)
			}
			if p == proto.UDPEcho {
				da, db, d := a.Datagrams, b.Datagrams, ld.Datagrams
				if d == nil || da == nil || db == nil {
					t.Fatal("udp-echo without a datagram account")
				}
				if d.Sent != da.Sent+db.Sent || d.Answered != da.Answered+db.Answered || d.Lost != da.Lost+db.Lost || d.Sent == 0 {
					t.Errorf("datagrams %+v; want the sums of %+v and %+v", *d, *da, *db)
				}
			}
			t.Logf("%s: %d + %d requests, %.0f req/s merged, p99 %d µs (%d and %d), overlap %.3f, skew %v",
				p, a.Requests, b.Requests, ld.Throughput, ld.Latency.P99US, a.Latency.P99US, b.Latency.P99US, r.Merge.Overlap, time.Duration(r.Merge.TimelineSkewNS))
		})
	}
}

func decode(t *testing.T, enc string) *hdr.Histogram {
	t.Helper()
	h, err := hdr.Decode([]byte(enc))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

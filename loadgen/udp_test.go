package loadgen

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
	"unsafe"

	"concbench/internal/proto"
	"concbench/internal/result"
	"concbench/loadgen/dgram"
	"concbench/loadgen/dgram/dgramtest"
	"concbench/models"
	"concbench/models/modeltest"
)

// realUDPServer starts model serving udp-echo in this process, reading and
// writing up to batch datagrams a call, and returns its address.
func realUDPServer(t *testing.T, model string, batch int) string {
	t.Helper()
	return modeltest.Serve(t, models.Config{Model: model, Proto: proto.UDPEcho, Batch: batch})
}

// udp is a udp-echo workload against addr.
func udp(addr string, w result.Workload) result.Workload {
	w.Addr, w.Proto = addr, proto.UDPEcho
	return w
}

// Against a real server (epoll-et) on loopback, at rates it keeps up with:
// every datagram sent in the window is answered, none lost, duplicated,
// reordered or wrong — closed and open loop, batched or not, from the
// smallest datagram (its header) to 60000 bytes, and over 500 flows. Not
// parallel: the server shares this process's CPUs.
func TestUDPRealServer(t *testing.T) {
	tests := []struct {
		name        string
		w           result.Workload
		serverBatch int
		min         int64 // datagrams sent in the window, at least
	}{
		{"closed", result.Workload{Conns: 4, Pipeline: 4}, 1, 200},
		{"closed batch 8", result.Workload{Conns: 4, Pipeline: 16, Batch: 8}, 8, 200},
		{"open", result.Workload{Conns: 4, Rate: 2000}, 1, 400},
		{"open batch 4", result.Workload{Conns: 4, Rate: 2000, Batch: 4}, 4, 400},
		{"header only", result.Workload{Conns: 2, Pipeline: 2, Size: dgram.HeaderLen}, 1, 200},
		{"60000 B", result.Workload{Conns: 2, Size: 60000}, 1, 50},
		{"500 flows", result.Workload{Conns: 500, Rate: 2000, Loops: 2}, 1, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := realUDPServer(t, "epoll-et", tt.serverBatch)
			w := tt.w
			w.Duration = 400 * time.Millisecond
			o := run(t, udp(addr, w))
			ld, d := o.Load, o.Load.Datagrams
			if ld.ErrorsTotal != 0 || d == nil {
				t.Fatalf("errors %v, datagrams %+v", ld.Errors, d)
			}
			if d.Sent < tt.min || d.Answered != d.Sent || d.Lost != 0 || d.Late != 0 || d.Duplicated != 0 || d.Reordered != 0 || d.Mismatched != 0 || d.LossRate != 0 {
				t.Errorf("datagrams %+v: want at least %d sent, every one answered once, in order", d, tt.min)
			}
			if ld.InFlightAtEnd != 0 {
				t.Errorf("%d in flight at the end: the window's datagrams were not followed to their fates", ld.InFlightAtEnd)
			}
			if ld.Requests == 0 || ld.Latency.Count != ld.Requests || ld.Connect.Established != w.Conns {
				t.Errorf("%d replies, %d latencies, %d of %d flows open", ld.Requests, ld.Latency.Count, ld.Connect.Established, w.Conns)
			}
			if st := ld.Steady; st == nil || st.State != result.SteadyOK || st.ServedAtStart != w.Conns {
				t.Errorf("steady %+v: want every flow answered before the window", st)
			}
			if open := w.Rate > 0; open != (ld.Mode == "open") || open && (ld.Uncorrected == nil || ld.ScheduledSends == 0) {
				t.Errorf("mode %q, uncorrected %v, %d sends scheduled", ld.Mode, ld.Uncorrected, ld.ScheduledSends)
			}
			if wantBatch := max(w.Batch, 1); o.Workload.Batch != wantBatch {
				t.Errorf("workload batch %d, want %d", o.Workload.Batch, wantBatch)
			}
		})
	}
}

// Against dgramtest's faulty server, a closed loop of a fixed number of
// requests — every one measured, every one's fate known when the run ends —
// counts exactly what the server did: each flow's every 10th reply dropped,
// one in 100 twice, two swapped, one corrupted (also a mismatch error).
// Batched or not.
func TestUDPFaultyServerExact(t *testing.T) {
	t.Parallel() // exact counts, whatever the pace
	const flows, perFlow = 4, 1000
	want := dgramtest.Want(flows, perFlow)
	for _, batch := range []int{1, 16} {
		t.Run(fmt.Sprintf("batch %d", batch), func(t *testing.T) {
			t.Parallel()
			addr := dgramtest.Start(t)
			// A lost datagram holds its slot for the timeout: 32 slots a flow
			// keep it going at about 32 / (10% × 300 ms) datagrams a second.
			o := run(t, udp(addr, result.Workload{Conns: flows, Pipeline: 32, Batch: batch, Requests: flows * perFlow,
				Timeout: 300 * time.Millisecond, Duration: 60 * time.Second}))
			ld, d := o.Load, o.Load.Datagrams
			if d == nil {
				t.Fatal("no datagram account")
			}
			got := dgram.Tally{Sent: uint64(d.Sent), Answered: uint64(d.Answered), Lost: uint64(d.Lost), Late: uint64(d.Late),
				Duplicated: uint64(d.Duplicated), Reordered: uint64(d.Reordered), Mismatched: uint64(d.Mismatched)}
			if got != want || d.LossRate != 0.1 {
				t.Errorf("datagrams %+v\nwant       %+v, loss rate 0.1", d, want)
			}
			if ld.Requests != int64(want.Answered) || ld.Errors["mismatch"] != int64(want.Mismatched) || ld.ErrorsTotal != ld.Errors["mismatch"] {
				t.Errorf("%d replies measured, errors %v: want %d replies and %d mismatch errors only", ld.Requests, ld.Errors, want.Answered, want.Mismatched)
			}
			if !strings.Contains(strings.Join(o.Warnings, "\n"), "400 of the 4000 datagrams sent in the window were lost (10.000%)") {
				t.Errorf("warnings %q do not give the loss", o.Warnings)
			}
		})
	}
}

// The same server under an open loop for a time: the window holds each
// flow's run of consecutive sequence numbers, so each count is the rule's
// share of the datagrams sent, give or take one a flow at the window's ends;
// and every datagram sent in the window is answered, lost or settled by its
// mismatch.
func TestUDPFaultyServerOpenLoop(t *testing.T) {
	const flows = 4
	addr := dgramtest.Start(t)
	o := run(t, udp(addr, result.Workload{Conns: flows, Rate: 4000, Timeout: 200 * time.Millisecond, Duration: 500 * time.Millisecond}))
	d := o.Load.Datagrams
	if d == nil || d.Sent < 1000 {
		t.Fatalf("datagrams %+v: want an account of at least 1000 sent", d)
	}
	near := func(name string, got, share int64) {
		if got < share-flows || got > share+flows {
			t.Errorf("%s %d of %d sent, want %d ± %d", name, got, d.Sent, share, flows)
		}
	}
	near("lost", d.Lost, d.Sent/10)
	near("duplicated", d.Duplicated, d.Sent/100)
	if d.Answered+d.Lost+d.Mismatched != d.Sent || d.Late != 0 || d.Reordered > flows || d.Mismatched > flows {
		t.Errorf("datagrams %+v: want answered + lost + mismatched = sent, none late, at most %d reordered and mismatched", d, flows)
	}
	if o.Load.Errors["mismatch"] != flows {
		t.Errorf("errors %v: want each flow's corrupted reply a mismatch", o.Load.Errors)
	}
}

// Nothing listening on the port: the flows' datagrams come back as ICMP port
// unreachable (connect_refused errors), nothing is answered, and the run
// ends "not steady" after the settle time instead of waiting out the gate.
func TestUDPNothingListening(t *testing.T) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := c.LocalAddr().String()
	c.Close()
	begin := time.Now()
	o := run(t, udp(addr, result.Workload{Conns: 2, Duration: 5 * time.Second, SteadySettle: 300 * time.Millisecond, Timeout: 100 * time.Millisecond}))
	if took := time.Since(begin); took > 3*time.Second {
		t.Errorf("took %v", took)
	}
	if st := o.Load.Steady; st == nil || st.State != result.SteadyNot || o.Load.Errors["connect_refused"] == 0 {
		t.Errorf("steady %+v, errors %v: want not steady, refused datagrams counted", st, o.Load.Errors)
	}
	if o.Load.Datagrams != nil {
		t.Errorf("datagrams %+v without a window", o.Load.Datagrams)
	}
}

// What Resolve refuses of a udp-echo workload, and the defaults it fills.
func TestResolveUDP(t *testing.T) {
	t.Parallel()
	base := result.Workload{Addr: "127.0.0.1:1", Proto: proto.UDPEcho}
	with := func(f func(*result.Workload)) result.Workload {
		w := base
		f(&w)
		return w
	}
	tests := []struct {
		name string
		w    result.Workload
		want string // in the error; "" for none
	}{
		{"defaults", base, ""},
		{"header only", with(func(w *result.Workload) { w.Size = dgram.HeaderLen }), ""},
		{"IPv4 max", with(func(w *result.Workload) { w.Size = proto.MaxDatagramIPv4 }), ""},
		{"IPv6 max", with(func(w *result.Workload) { w.Addr, w.Size = "[::1]:1", proto.MaxDatagramIPv6 }), ""},
		{"max batch", with(func(w *result.Workload) { w.Batch = MaxBatch }), ""},
		{"below the header", with(func(w *result.Workload) { w.Size = dgram.HeaderLen - 1 }), "at least 32"},
		{"past IPv4's max", with(func(w *result.Workload) { w.Size = proto.MaxDatagramIPv4 + 1 }), "at most 65507 bytes"},
		{"past IPv6's max", with(func(w *result.Workload) { w.Addr, w.Size = "[::1]:1", proto.MaxDatagramIPv6+1 }), "at most 65527 bytes"},
		{"batch past max", with(func(w *result.Workload) { w.Batch = MaxBatch + 1 }), "to 1024"},
		{"negative batch", with(func(w *result.Workload) { w.Batch = -1 }), "negative"},
		{"unix socket", with(func(w *result.Workload) { w.Addr = "unix:/tmp/x.sock" }), "runs over UDP"},
		{"reconnect", with(func(w *result.Workload) { w.Reconnect = true }), "no connection to make"},
		{"idle", with(func(w *result.Workload) { w.Idle = 3 }), "idle connections"},
		{"heartbeat", with(func(w *result.Workload) { w.Heartbeat = time.Second }), "heartbeats"},
		{"file", with(func(w *result.Workload) { w.File = "1k.bin" }), "-file"},
		{"path", with(func(w *result.Workload) { w.Path = "/" }), "-path"},
		{"pipeline in open loop", with(func(w *result.Workload) { w.Rate, w.Pipeline = 100, 4 }), "closed loop's"},
		{"batch for a stream", result.Workload{Addr: "127.0.0.1:1", Batch: 8}, "datagram protocol udp-echo, not echo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := Resolve(tt.w)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Resolve: %v", err)
			case tt.want != "" && (err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Resolve: err = %v, want ErrConfig saying %q", err, tt.want)
			}
			if tt.name == "defaults" && (w.Size != DefaultSize || w.Batch != 1 || w.Pipeline != 1 || w.Timeout != DefaultTimeout) {
				t.Errorf("defaults: %+v", w)
			}
		})
	}
	// A stream's batch of one is recorded as unset: its calls move bytes.
	if w, err := Resolve(result.Workload{Addr: "127.0.0.1:1", Batch: 1}); err != nil || w.Batch != 0 {
		t.Errorf("echo with batch 1: batch %d, %v; want 0", w.Batch, err)
	}
}

// The loop's requests are a header of the batch's own and the shared filler
// (its iovecs): byte for byte what dgram.Encode writes, for every rotation
// of the filler.
func TestTxBatchIsEncode(t *testing.T) {
	t.Parallel()
	tx := newTxBatch(3)
	for _, size := range []int{dgram.HeaderLen, dgram.HeaderLen + 1, 100, 2000, proto.MaxDatagramIPv6} {
		for seq := range uint64(60) {
			h := dgram.Header{Flow: 9, Seq: seq, Sent: time.Duration(seq) * time.Millisecond}
			want, err := dgram.Encode(nil, h, size)
			if err != nil {
				t.Fatal(err)
			}
			i := tx.n
			tx.add(h, dgram.Filler(h.Seq, size-dgram.HeaderLen), 0)
			var got []byte
			iov := unsafe.Slice(tx.hdrs[i].Hdr.Iov, tx.hdrs[i].Hdr.Iovlen)
			for _, v := range iov {
				got = append(got, unsafe.Slice(v.Base, v.Len)...)
			}
			if tx.full() {
				tx.n = 0
			}
			if string(got) != string(want) {
				t.Fatalf("size %d seq %d:\n got %q\nwant %q", size, seq, got, want)
			}
		}
	}
}

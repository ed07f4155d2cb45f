package dgram

import (
	"errors"
	"testing"
	"time"
)

func TestEncodeDecode(t *testing.T) {
	for _, tc := range []struct {
		h    Header
		size int
	}{
		{Header{}, HeaderLen},
		{Header{Flow: 7, Seq: 12345, Sent: 1500 * time.Microsecond}, 64},
		{Header{Flow: 1<<32 - 1, Seq: MaxSeq, Sent: MaxSent}, 1472},
	} {
		req, err := Encode(nil, tc.h, tc.size)
		if err != nil {
			t.Fatal(err)
		}
		if len(req) != tc.size {
			t.Errorf("%+v: %d bytes, want %d", tc.h, len(req), tc.size)
		}
		// The server upper-cases the datagram: the header must survive it, and
		// the filler must change (or a server that echoes unchanged would pass).
		reply := Expected(nil, req)
		for _, b := range [][]byte{req, reply} {
			if got, err := Decode(b); err != nil || got != tc.h {
				t.Errorf("Decode: %+v, %v; want %+v", got, err, tc.h)
			}
		}
		if tc.size > HeaderLen && string(reply) == string(req) {
			t.Errorf("%+v: upper-casing leaves the request unchanged", tc.h)
		}
	}
	for _, bad := range []struct {
		h    Header
		size int
	}{{Header{}, HeaderLen - 1}, {Header{Seq: MaxSeq + 1}, 64}, {Header{Sent: -time.Microsecond}, 64}} {
		if _, err := Encode(nil, bad.h, bad.size); err == nil {
			t.Errorf("Encode(%+v, %d) took it", bad.h, bad.size)
		}
	}
	for _, b := range []string{"", "0000", "0000000g000000000000000000000000", "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"} {
		if _, err := Decode([]byte(b)); !errors.Is(err, ErrHeader) {
			t.Errorf("Decode(%q): %v, want ErrHeader", b, err)
		}
	}
}

// A long flow keeps at most History settled sequence numbers: its memory is
// bounded, and a reply older than that is still told late (a loss that old
// was declared) or duplicate (none was).
func TestFlowWindow(t *testing.T) {
	for _, withLoss := range []bool{false, true} {
		f := NewFlow(1, time.Millisecond)
		const n = History + 5000
		var first []byte
		for i := range n {
			req, _ := Encode(nil, f.Next(0), HeaderLen)
			if i == 0 {
				first = Expected(nil, req)
				if withLoss {
					continue
				}
			}
			f.Reply(Expected(nil, req))
		}
		f.Expire(time.Second)
		if len(f.states) > History {
			t.Errorf("%d states kept after %d requests, want at most %d", len(f.states), n, History)
		}
		f.Reply(first)
		got := f.Tally()
		if withLoss && (got.Lost != 1 || got.Late != 1 || got.Duplicated != 0) {
			t.Errorf("a reply to a request lost long ago: %+v, want it late", got)
		}
		if !withLoss && (got.Lost != 0 || got.Duplicated != 1 || got.Late != 0) {
			t.Errorf("a reply to a request answered long ago: %+v, want it duplicated", got)
		}
	}
}

package dgram

import (
	"errors"
	"net"
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

// faultyEcho is what a lossy network and a sloppy server do to the replies of
// requests 0..n-1, sent in order: it drops every 10th (seq%10 == 9), sends
// one in 100 twice (seq%100 == 0), swaps the replies to 501 and 502, and
// corrupts the filler of 250's.
func faultyEcho(reqs [][]byte) [][]byte {
	var out [][]byte
	for seq, req := range reqs {
		if seq%10 == 9 {
			continue
		}
		reply := Expected(nil, req)
		if seq == 250 {
			reply[len(reply)-1] = '!'
		}
		out = append(out, reply)
		if seq%100 == 0 {
			out = append(out, reply)
		}
	}
	for i := range out {
		if h, _ := Decode(out[i]); h.Seq == 501 {
			out[i], out[i+1] = out[i+1], out[i]
			break
		}
	}
	return out
}

// wantFaulty is the account of faultyEcho's replies to 1000 requests: 100
// dropped (lost), 10 sent twice (duplicated), 501 answered after 502
// (reordered), 250 corrupted (mismatched, and not lost too); the rest
// answered.
var wantFaulty = Tally{Sent: 1000, Answered: 1000 - 100 - 1, Lost: 100, Duplicated: 10, Reordered: 1, Mismatched: 1}

func TestFlowAccounting(t *testing.T) {
	const timeout = 100 * time.Millisecond
	f := NewFlow(3, timeout)
	var reqs [][]byte
	for i := range 1000 {
		h := f.Next(time.Duration(i) * time.Microsecond)
		req, err := Encode(nil, h, 48)
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, req)
	}
	for _, r := range faultyEcho(reqs) {
		f.Reply(r)
	}
	if n := f.Expire(timeout / 2); n != 0 {
		t.Errorf("%d lost before the timeout", n)
	}
	if n := f.Expire(time.Second); n != 100 {
		t.Errorf("%d lost at the timeout, want 100", n)
	}
	if got := f.Tally(); got != wantFaulty {
		t.Errorf("tally %+v\nwant  %+v", got, wantFaulty)
	}
	if f.Outstanding() != 0 {
		t.Errorf("%d outstanding after the timeout", f.Outstanding())
	}
	// A reply to a request declared lost is late, not answered; one from
	// another flow, or to a request never sent, is a mismatch.
	f.Reply(Expected(nil, reqs[9]))
	other, _ := Encode(nil, Header{Flow: 4}, 48)
	never, _ := Encode(nil, Header{Flow: 3, Seq: 5000}, 48)
	f.Reply(Expected(nil, other))
	f.Reply(Expected(nil, never))
	got := f.Tally()
	if got.Late != 1 || got.Mismatched != wantFaulty.Mismatched+2 || got.Answered != wantFaulty.Answered {
		t.Errorf("after a late reply and two foreign ones: %+v", got)
	}
	if r := got.LossRate(); r != 0.1 {
		t.Errorf("loss rate %v, want 0.1", r)
	}
}

// The same account over a real UDP socket on loopback, through a server
// doing faultyEcho's damage: a closed loop of 8 requests in flight, each
// reply read as it comes.
func TestFlowOverUDP(t *testing.T) {
	srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		buf := make([]byte, 2048)
		var held []byte // the reply to 501, sent after 502's
		for {
			n, from, err := srv.ReadFromUDP(buf)
			if err != nil {
				return
			}
			h, _ := Decode(buf[:n])
			reply := Expected(nil, buf[:n])
			switch {
			case h.Seq%10 == 9:
				continue
			case h.Seq == 250:
				reply[n-1] = '!'
			case h.Seq == 501:
				held = reply
				continue
			}
			srv.WriteToUDP(reply, from)
			if h.Seq%100 == 0 {
				srv.WriteToUDP(reply, from)
			}
			if h.Seq == 502 {
				srv.WriteToUDP(held, from)
			}
		}
	}()
	c, err := net.DialUDP("udp", nil, srv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	const timeout = 50 * time.Millisecond
	start := time.Now()
	now := func() time.Duration { return time.Since(start) }
	f := NewFlow(3, timeout)
	buf := make([]byte, 2048)
	var req []byte
	for f.Tally().Sent < 1000 || f.Outstanding() > 0 {
		for f.Outstanding() < 8 && f.Tally().Sent < 1000 {
			req, _ = Encode(req[:0], f.Next(now()), 64)
			if _, err := c.Write(req); err != nil {
				t.Fatal(err)
			}
		}
		c.SetReadDeadline(time.Now().Add(timeout))
		n, err := c.Read(buf)
		if err == nil {
			f.Reply(buf[:n])
		}
		f.Expire(now())
		if now() > 20*time.Second {
			t.Fatalf("no end after 20 s: %+v, %d outstanding", f.Tally(), f.Outstanding())
		}
	}
	// Duplicates still in the socket are counted too.
	for {
		c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		n, err := c.Read(buf)
		if err != nil {
			break
		}
		f.Reply(buf[:n])
	}
	if got := f.Tally(); got != wantFaulty {
		t.Errorf("tally %+v\nwant  %+v", got, wantFaulty)
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

package dgram_test

import (
	"net"
	"testing"
	"time"

	"concbench/internal/proto"
	"concbench/loadgen/dgram"
	"concbench/loadgen/dgram/dgramtest"
)

// wantFaulty is the account of dgramtest's replies to 1000 requests: 100
// dropped (lost), 10 sent twice (duplicated), 501 answered after 502
// (reordered), 250 corrupted (mismatched, and not lost too); the rest
// answered.
var wantFaulty = dgram.Tally{Sent: 1000, Answered: 1000 - 100 - 1, Lost: 100, Duplicated: 10, Reordered: 1, Mismatched: 1}

func TestWantFaulty(t *testing.T) {
	if got := dgramtest.Want(1, 1000); got != wantFaulty {
		t.Errorf("dgramtest.Want(1, 1000) = %+v\nwant %+v", got, wantFaulty)
	}
	if got, want := dgramtest.Want(3, 1000), (dgram.Tally{Sent: 3000, Answered: 2697, Lost: 300, Duplicated: 30, Reordered: 3, Mismatched: 3}); got != want {
		t.Errorf("dgramtest.Want(3, 1000) = %+v\nwant %+v", got, want)
	}
}

func TestFlowAccounting(t *testing.T) {
	const timeout = 100 * time.Millisecond
	f := dgram.NewFlow(3, timeout)
	var reqs [][]byte
	for i := range 1000 {
		h := f.Next(time.Duration(i) * time.Microsecond)
		req, err := dgram.Encode(nil, h, 48)
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, req)
	}
	for _, r := range dgramtest.Replies(reqs) {
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
	f.Reply(dgram.Expected(nil, reqs[9]))
	other, _ := dgram.Encode(nil, dgram.Header{Flow: 4}, 48)
	never, _ := dgram.Encode(nil, dgram.Header{Flow: 3, Seq: 5000}, 48)
	f.Reply(dgram.Expected(nil, other))
	f.Reply(dgram.Expected(nil, never))
	got := f.Tally()
	if got.Late != 1 || got.Mismatched != wantFaulty.Mismatched+2 || got.Answered != wantFaulty.Answered {
		t.Errorf("after a late reply and two foreign ones: %+v", got)
	}
	if r := got.LossRate(); r != 0.1 {
		t.Errorf("loss rate %v, want 0.1", r)
	}
}

// The same account over a real UDP socket on loopback, through dgramtest's
// server: a closed loop of 8 requests in flight, each reply read as it comes.
func TestFlowOverUDP(t *testing.T) {
	addr, err := net.ResolveUDPAddr("udp", dgramtest.Start(t))
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	const timeout = 50 * time.Millisecond
	start := time.Now()
	now := func() time.Duration { return time.Since(start) }
	f := dgram.NewFlow(3, timeout)
	buf := make([]byte, 2048)
	var req []byte
	for f.Tally().Sent < 1000 || f.Outstanding() > 0 {
		for f.Outstanding() < 8 && f.Tally().Sent < 1000 {
			req, _ = dgram.Encode(req[:0], f.Next(now()), 64)
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

// request is the request datagram of header h, size bytes, and its reply.
func request(t *testing.T, h dgram.Header, size int) (req, reply []byte) {
	t.Helper()
	req, err := dgram.Encode(nil, h, size)
	if err != nil {
		t.Fatal(err)
	}
	return req, dgram.Expected(nil, req)
}

// What Reply says of each kind of reply, and the send time it gives back.
func TestFlowFates(t *testing.T) {
	f := dgram.NewFlow(7, time.Second)
	f.ExpectSize(40)
	const sent = 5*time.Millisecond + 300*time.Nanosecond
	h0 := f.Next(sent)
	h1 := f.NextAt(2*time.Millisecond, sent) // an open loop's: meant for 2 ms, sent at 5
	if h0.Sent != 5*time.Millisecond || h1.Sent != 2*time.Millisecond {
		t.Fatalf("headers carry %v and %v, want 5ms (truncated to the µs) and 2ms", h0.Sent, h1.Sent)
	}
	_, r0 := request(t, h0, 40)
	_, r1 := request(t, h1, 40)
	// A byte longer, and right but for its length: the reply to a request
	// of 41 bytes.
	_, long := request(t, h1, 41)
	_, retimed := request(t, dgram.Header{Flow: 7, Seq: 1, Sent: 3 * time.Millisecond}, 40)
	for _, tc := range []struct {
		name  string
		reply []byte
		fate  dgram.Fate
		sent  time.Duration
	}{
		{"first reply", r0, dgram.Answered, sent},
		{"again", r0, dgram.Duplicate, 0},
		{"a byte longer", long, dgram.Mismatch, 0},        // settles request 1
		{"after its mismatch", r1, dgram.Duplicate, 0},    // request 1 was settled
		{"another send time", retimed, dgram.Mismatch, 0}, // well formed, but not what was sent
		{"a short one", r1[:dgram.HeaderLen], dgram.Mismatch, 0},
	} {
		_, got, fate := f.Reply(tc.reply)
		if fate != tc.fate || got != tc.sent {
			t.Errorf("%s: fate %d, sent %v; want %d, %v", tc.name, fate, got, tc.fate, tc.sent)
		}
	}
	want := dgram.Tally{Sent: 2, Answered: 1, Duplicated: 2, Mismatched: 3}
	if got := f.Tally(); got != want || f.Outstanding() != 0 {
		t.Errorf("tally %+v, %d outstanding; want %+v, none", got, f.Outstanding(), want)
	}
}

// Requests the socket refused are withdrawn: their sequence numbers go to
// the next ones, and the oldest outstanding's send time is the flow's next
// deadline.
func TestFlowUnsendOldest(t *testing.T) {
	f := dgram.NewFlow(1, 10*time.Millisecond)
	if _, ok := f.Oldest(); ok {
		t.Error("a new flow has something outstanding")
	}
	for i := range 5 {
		f.Next(time.Duration(i+1) * time.Millisecond)
	}
	f.Unsend(2)
	if h := f.Next(9 * time.Millisecond); h.Seq != 3 {
		t.Errorf("after withdrawing 2 of 5, the next is %d, want 3", h.Seq)
	}
	if got := f.Tally(); got.Sent != 4 || f.Outstanding() != 4 {
		t.Errorf("sent %d, outstanding %d; want 4 and 4", got.Sent, f.Outstanding())
	}
	_, r0 := request(t, dgram.Header{Flow: 1, Seq: 0, Sent: time.Millisecond}, 32)
	f.Reply(r0)
	if o, ok := f.Oldest(); !ok || o != 2*time.Millisecond {
		t.Errorf("oldest outstanding sent at %v (%v), want 2ms", o, ok)
	}
	if n := f.Expire(12*time.Millisecond + 1); n != 1 {
		t.Errorf("%d expired at 12ms, want request 1 (sent at 2ms)", n)
	}
	if o, ok := f.Oldest(); !ok || o != 3*time.Millisecond {
		t.Errorf("oldest outstanding sent at %v (%v), want 3ms", o, ok)
	}
}

// A measured span counts the requests sent in it and whatever becomes of
// them, even after it ends; not those sent before or after it.
func TestFlowMeasure(t *testing.T) {
	f := dgram.NewFlow(2, 10*time.Millisecond)
	var replies [][]byte
	send := func(n int, at time.Duration) {
		for range n {
			_, r := request(t, f.Next(at), 32)
			replies = append(replies, r)
		}
	}
	send(3, 0) // before: 0-2
	f.Measure()
	send(4, time.Millisecond) // in it: 3-6
	f.EndMeasure()
	send(2, 2*time.Millisecond) // after: 7-8
	if !f.Unsettled() {
		t.Error("requests of the span outstanding, yet settled")
	}
	for _, seq := range []int{1, 3, 4, 4, 8} { // a pre-span reply, two answers, a duplicate, a post-span reply
		f.Reply(replies[seq])
	}
	f.Reply([]byte("not a datagram of this flow at all")) // after the span: not counted
	f.Expire(20 * time.Millisecond)                       // 5 and 6 lost (and 0, 2, 7: not counted)
	if f.Unsettled() {
		t.Error("every request of the span settled, yet unsettled")
	}
	f.Reply(replies[5]) // late
	want := dgram.Tally{Sent: 4, Answered: 2, Lost: 2, Late: 1, Duplicated: 1}
	if got := f.Tally(); got != want {
		t.Errorf("tally %+v\nwant  %+v", got, want)
	}
}

// The filler is the letters from the sequence number's on, whatever the
// size (past the largest datagram too, where Filler builds it instead of
// slicing its table); a reply is told right or wrong to its last byte.
func TestFillerAndMatch(t *testing.T) {
	for _, size := range []int{dgram.HeaderLen, dgram.HeaderLen + 1, 1000, proto.MaxDatagramIPv6, proto.MaxDatagramIPv6 + 100} {
		f := dgram.NewFlow(5, time.Second)
		for range 30 {
			h := f.Next(0)
			req, reply := request(t, h, size)
			for i, c := range req[dgram.HeaderLen:] {
				if want := 'a' + byte((h.Seq+uint64(i))%26); c != want {
					t.Fatalf("size %d seq %d: filler byte %d is %q, want %q", size, h.Seq, i, c, want)
				}
			}
			if size > dgram.HeaderLen && h.Seq%2 == 1 {
				reply[len(reply)-1] = req[len(req)-1] // the last byte not upper-cased
				if _, _, fate := f.Reply(reply); fate != dgram.Mismatch {
					t.Errorf("size %d seq %d: a reply wrong in its last byte is %d, want a mismatch", size, h.Seq, fate)
				}
				continue
			}
			if _, _, fate := f.Reply(reply); fate != dgram.Answered {
				t.Errorf("size %d seq %d: the right reply is %d, want answered", size, h.Seq, fate)
			}
		}
	}
}

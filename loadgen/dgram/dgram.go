// Package dgram is the datagram side of the load generator's bookkeeping, for
// the udp-echo workload (issue 19; loadgen's UDP engine is built on it): the
// header every request datagram carries, and the accounting of one flow's
// replies — answered, lost, duplicated, reordered, mismatched — which UDP,
// unlike a stream, leaves to the application.
//
// # Wire format
//
// A request datagram is HeaderLen bytes of header, then filler up to the
// requested size. The header is ASCII, upper-case hexadecimal: the flow id (8
// digits), the sequence number (12) and the send time in microseconds since
// the run's start (12) — in an open loop, the time the datagram was meant to
// go, from which its latency runs (Flow.NextAt). The server of udp-echo
// upper-cases ASCII a–z in the whole datagram, so the header comes back
// unchanged and can be read from the reply; the filler is lower-case letters,
// so that a reply that was not upper-cased is told from one that was. The
// reply expected for a request is proto.AppendUpper of it.
package dgram

import (
	"errors"
	"fmt"
	"time"

	"concbench/internal/proto"
)

// HeaderLen is the header's length, and so the smallest request datagram.
const HeaderLen = 32

const (
	flowDigits = 8
	seqDigits  = 12
	timeDigits = 12
	hexDigits  = "0123456789ABCDEF"
)

// MaxSeq and MaxSent are the largest sequence number and send time the
// header carries (48 bits each: 2^48 µs is about 8.9 years).
const (
	MaxSeq  = 1<<48 - 1
	MaxSent = (1<<48 - 1) * time.Microsecond
)

// Header is what a request datagram says of itself.
type Header struct {
	Flow uint32
	Seq  uint64
	Sent time.Duration // since the run's start, to the microsecond
}

// ErrHeader is wrapped by Decode's errors: a datagram too short, or whose
// header is not what Encode writes.
var ErrHeader = errors.New("malformed datagram header")

// Encode appends a request datagram of size bytes (at least HeaderLen) with
// header h to dst.
func Encode(dst []byte, h Header, size int) ([]byte, error) {
	if size < HeaderLen {
		return dst, fmt.Errorf("datagram of %d bytes: the header needs %d", size, HeaderLen)
	}
	if h.Seq > MaxSeq || h.Sent < 0 || h.Sent > MaxSent {
		return dst, fmt.Errorf("header %+v out of range", h)
	}
	dst = appendHex(dst, uint64(h.Flow), flowDigits)
	dst = appendHex(dst, h.Seq, seqDigits)
	dst = appendHex(dst, uint64(h.Sent/time.Microsecond), timeDigits)
	return append(dst, Filler(h.Seq, size-HeaderLen)...), nil
}

// lower and upper are the alphabet repeated, in lower and upper case, long
// enough to hold the filler of the largest datagram from any of its 26
// starting letters.
var lower, upper = alphabets(proto.MaxDatagramIPv6 - HeaderLen + 26)

func alphabets(n int) (lower, upper []byte) {
	lower, upper = make([]byte, n), make([]byte, n)
	for i := range n {
		lower[i], upper[i] = 'a'+byte(i%26), 'A'+byte(i%26)
	}
	return lower, upper
}

// Filler is the n bytes that follow the header of sequence number seq's
// request datagram: lower-case letters from the (seq mod 26)-th on. Up to the
// largest datagram's it is a slice of one table shared by every caller, which
// must not be written to (a sender may hand it to the kernel as it is).
func Filler(seq uint64, n int) []byte {
	r := int(seq % 26)
	if n <= 0 {
		return nil
	}
	if r+n <= len(lower) {
		return lower[r : r+n : r+n]
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte((seq+uint64(i))%26)
	}
	return b
}

func appendHex(dst []byte, v uint64, digits int) []byte {
	for i := digits - 1; i >= 0; i-- {
		dst = append(dst, hexDigits[(v>>(4*uint(i)))&0xf])
	}
	return dst
}

// Decode reads the header of a request or reply datagram.
func Decode(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, fmt.Errorf("%w: %d bytes, want at least %d", ErrHeader, len(b), HeaderLen)
	}
	flow, ok1 := parseHex(b[:flowDigits])
	seq, ok2 := parseHex(b[flowDigits : flowDigits+seqDigits])
	us, ok3 := parseHex(b[flowDigits+seqDigits : HeaderLen])
	if !ok1 || !ok2 || !ok3 {
		return Header{}, fmt.Errorf("%w: %q", ErrHeader, b[:HeaderLen])
	}
	return Header{Flow: uint32(flow), Seq: seq, Sent: time.Duration(us) * time.Microsecond}, nil
}

func parseHex(b []byte) (uint64, bool) {
	var v uint64
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint64(c-'0')
		case c >= 'A' && c <= 'F':
			v = v<<4 | uint64(c-'A'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

// Expected appends the reply a request datagram should get to dst.
func Expected(dst, req []byte) []byte { return proto.AppendUpper(dst, req) }

// Tally is one flow's (or, summed, a run's) account of its datagrams. Within a
// measured span (Flow.Measure) it counts the requests sent in the span and
// what became of them, whenever that was.
type Tally struct {
	Sent     uint64 // requests sent
	Answered uint64 // replies that matched an outstanding request, each counted once
	// Lost: requests unanswered after the timeout; their slot is freed (a
	// closed-loop flow sends on).
	Lost uint64
	// Late: replies to requests already counted lost (they stay lost).
	Late uint64
	// Duplicated: replies to a request already answered.
	Duplicated uint64
	// Reordered: first replies to a request older than the newest request
	// already answered on the flow (also in Answered).
	Reordered uint64
	// Mismatched: replies whose bytes are not the expected ones (or whose
	// length or send time is not the request's), or that name no request of
	// the flow (a corrupt header, another flow's, one never sent). A request
	// whose first reply is a mismatch is settled by it: it does not count as
	// lost too.
	Mismatched uint64
}

// Add adds o to t.
func (t *Tally) Add(o Tally) {
	t.Sent += o.Sent
	t.Answered += o.Answered
	t.Lost += o.Lost
	t.Late += o.Late
	t.Duplicated += o.Duplicated
	t.Reordered += o.Reordered
	t.Mismatched += o.Mismatched
}

// LossRate is Lost over Sent (0 with nothing sent).
func (t Tally) LossRate() float64 {
	if t.Sent == 0 {
		return 0
	}
	return float64(t.Lost) / float64(t.Sent)
}

// Fate is what Reply found a reply to be.
type Fate uint8

const (
	// Answered: the first reply to a request waiting, and correct: the
	// caller records its latency.
	Answered Fate = iota
	// Duplicate: correct, to a request already answered (or settled by a
	// mismatch).
	Duplicate
	// Late: correct, to a request already counted lost.
	Late
	// Mismatch: wrong bytes, length or send time, or naming no request of
	// the flow.
	Mismatch
)

// state of one sequence number in a flow's window.
type state uint8

const (
	unsent state = iota
	waiting
	answered
	lost
	mismatched // its first reply had wrong bytes
)

// History is how many sequence numbers behind the oldest outstanding one a
// flow still remembers the fate of, to tell a duplicate or a late reply from
// a mismatch. A reply older than that counts as late if the flow has declared
// losses that old, else as a duplicate: beyond the window it cannot be told
// which.
const History = 1 << 16

// noEnd is Flow.to while the measured span has not ended.
const noEnd = ^uint64(0)

// Flow keeps one flow's outstanding requests and counts what becomes of them.
// Sequence numbers are handed out in order from 0 (Next). Not safe for
// concurrent use: one goroutine owns a flow.
type Flow struct {
	id      uint32
	timeout time.Duration
	size    int     // the length every reply must have; 0: any (ExpectSize)
	next    uint64  // the next sequence number to send
	base    uint64  // states[0] is the state of sequence number base
	states  []state // from base to next-1: a sliding window
	// sent is when each request was sent, by the caller's clock: its timeout
	// runs from then; stamps is the time its header carries (Next, NextAt).
	sent    []time.Duration
	stamps  []time.Duration
	settled int    // states[:settled] are settled (not waiting)
	out     int    // requests waiting
	newest  uint64 // the newest sequence number answered, +1 (0: none)
	oldLost uint64 // sequence numbers below this that fell out of the window include lost ones, +1
	// The tally counts the requests from..to-1 (Measure, EndMeasure): all of
	// them until Measure is called.
	from, to uint64
	tally    Tally
	scratch  []byte
}

// NewFlow is flow id, whose requests count as lost once unanswered for timeout.
func NewFlow(id uint32, timeout time.Duration) *Flow {
	return &Flow{id: id, timeout: timeout, to: noEnd}
}

// ExpectSize makes a reply of any length but n a mismatch: the reply to a
// request has its length (a longer or shorter datagram whose bytes happen to
// agree is still wrong). 0, the default, takes any length.
func (f *Flow) ExpectSize(n int) { f.size = n }

// Measure starts the measured span: the tally starts again from zero and
// counts the requests sent from now on and what becomes of each of them —
// also after EndMeasure, for as long as the flow is asked — and, until
// EndMeasure, the replies that name no request of the flow.
func (f *Flow) Measure() {
	f.tally = Tally{}
	f.from, f.to = f.next, noEnd
}

// EndMeasure ends the measured span: the requests sent from now on are not
// counted; the fates of those sent in the span still are.
func (f *Flow) EndMeasure() { f.to = f.next }

// Unsettled reports whether a request sent before EndMeasure (any request,
// before it is called) still waits for its reply or its timeout.
func (f *Flow) Unsettled() bool { return f.out > 0 && f.base+uint64(f.settled) < f.to }

// counts reports whether the tally counts what becomes of request seq.
func (f *Flow) counts(seq uint64) bool { return seq >= f.from && seq < f.to }

// Next records a request sent at now and returns its header.
func (f *Flow) Next(now time.Duration) Header { return f.NextAt(now, now) }

// NextAt records a request sent at now whose header carries stamp instead
// (an open loop's intended send time, the time its latency runs from),
// truncated to the microsecond as the header carries it; the request's
// timeout runs from now. It returns the header.
func (f *Flow) NextAt(stamp, now time.Duration) Header {
	stamp = stamp.Truncate(time.Microsecond)
	h := Header{Flow: f.id, Seq: f.next, Sent: stamp}
	f.states = append(f.states, waiting)
	f.sent = append(f.sent, now)
	f.stamps = append(f.stamps, stamp)
	f.next++
	f.out++
	if f.counts(h.Seq) {
		f.tally.Sent++
	}
	return h
}

// Unsend withdraws the last n requests recorded, which never left (the
// socket refused them): the flow is as if they had not been recorded, and
// their sequence numbers go to the next requests. Only requests still waiting
// are withdrawn.
func (f *Flow) Unsend(n int) {
	for ; n > 0 && len(f.states) > f.settled && f.states[len(f.states)-1] == waiting; n-- {
		last := len(f.states) - 1
		f.states, f.sent, f.stamps = f.states[:last], f.sent[:last], f.stamps[:last]
		f.next--
		f.out--
		if f.counts(f.next) {
			f.tally.Sent--
		}
	}
}

// Outstanding is how many requests wait for a reply.
func (f *Flow) Outstanding() int { return f.out }

// Oldest is when the oldest request still waiting was sent (ok is false when
// none waits): the flow's next loss, if any, is a timeout after it.
func (f *Flow) Oldest() (sent time.Duration, ok bool) {
	if f.out == 0 {
		return 0, false
	}
	return f.sent[f.settled], true // states[settled] is the first waiting (advance)
}

// Reply accounts a reply received on the flow: the request it answers, checked
// byte for byte (and its length and send time against the request's), and
// what the reply is — the first correct one to a request waiting (Answered:
// the caller records its latency from h.Sent; sent is when the request went),
// or a duplicate, a late one, a mismatch.
func (f *Flow) Reply(reply []byte) (h Header, sent time.Duration, fate Fate) {
	h, err := Decode(reply)
	if err != nil || h.Flow != f.id || h.Seq >= f.next {
		// It names no request: counted while the span is open.
		if f.to == noEnd {
			f.tally.Mismatched++
		}
		return h, 0, Mismatch
	}
	known := h.Seq >= f.base // its request's fate is still in the window
	i := h.Seq - f.base
	if !f.matches(h, reply) || known && h.Sent != f.stamps[i] {
		if f.counts(h.Seq) {
			f.tally.Mismatched++
		}
		// The request it names is settled: it will not count as lost too.
		if known && f.states[i] == waiting {
			f.states[i] = mismatched
			f.out--
			f.advance()
		}
		return h, 0, Mismatch
	}
	if !known {
		return h, 0, f.old(h.Seq)
	}
	switch f.states[i] {
	case answered, mismatched:
		if f.counts(h.Seq) {
			f.tally.Duplicated++
		}
		return h, 0, Duplicate
	case lost:
		if f.counts(h.Seq) {
			f.tally.Late++
		}
		return h, 0, Late
	}
	f.states[i] = answered
	f.out--
	if f.counts(h.Seq) {
		f.tally.Answered++
		if h.Seq+1 < f.newest {
			f.tally.Reordered++
		}
	}
	f.newest = max(f.newest, h.Seq+1)
	sent = f.sent[i]
	f.advance()
	return h, sent, Answered
}

// matches reports whether reply is, byte for byte, the reply to the request
// h names (of the expected size, if one was set): its header as Encode
// writes it (upper-casing leaves hexadecimal as it is), then the filler
// upper-cased.
func (f *Flow) matches(h Header, reply []byte) bool {
	if f.size > 0 && len(reply) != f.size || len(reply) < HeaderLen {
		return false
	}
	f.scratch, _ = Encode(f.scratch[:0], h, HeaderLen)
	if string(f.scratch) != string(reply[:HeaderLen]) {
		return false
	}
	r, n := int(h.Seq%26), len(reply)-HeaderLen
	if r+n <= len(upper) {
		return string(reply[HeaderLen:]) == string(upper[r:r+n])
	}
	f.scratch = Expected(f.scratch[:0], Filler(h.Seq, n))
	return string(reply[HeaderLen:]) == string(f.scratch)
}

// old accounts a reply to a sequence number that fell out of the window.
func (f *Flow) old(seq uint64) Fate {
	fate := Duplicate
	if seq+1 <= f.oldLost {
		fate = Late
	}
	switch {
	case !f.counts(seq):
	case fate == Late:
		f.tally.Late++
	default:
		f.tally.Duplicated++
	}
	return fate
}

// Expire counts as lost the requests unanswered for longer than the timeout
// as of now, and returns how many.
func (f *Flow) Expire(now time.Duration) int {
	n := 0
	for i := f.settled; i < len(f.states); i++ {
		if f.states[i] != waiting {
			continue
		}
		if now-f.sent[i] <= f.timeout {
			break // sent in order: the later ones are younger
		}
		f.states[i] = lost
		f.out--
		if f.counts(f.base + uint64(i)) {
			f.tally.Lost++
		}
		n++
	}
	if n > 0 {
		f.advance()
	}
	return n
}

// advance moves settled past the settled states at the head of the window
// and drops those beyond History of them: amortised O(1) a request.
func (f *Flow) advance() {
	for f.settled < len(f.states) && f.states[f.settled] != waiting {
		f.settled++
	}
	if drop := f.settled - History; drop > 0 {
		for _, st := range f.states[:drop] {
			if st == lost {
				f.oldLost = f.base + uint64(drop)
				break
			}
		}
		f.states = f.states[drop:]
		f.sent = f.sent[drop:]
		f.stamps = f.stamps[drop:]
		f.base += uint64(drop)
		f.settled -= drop
	}
}

// Tally is the flow's account so far (of its measured span, once Measure was
// called).
func (f *Flow) Tally() Tally { return f.tally }

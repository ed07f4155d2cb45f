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
// the run's start (12). The server of udp-echo upper-cases ASCII a–z in the
// whole datagram, so the header comes back unchanged and can be read from
// the reply; the filler is lower-case letters, so that a reply that was not
// upper-cased is told from one that was. The reply expected for a request is
// proto.AppendUpper of it.
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
	for i := range size - HeaderLen {
		dst = append(dst, 'a'+byte((h.Seq+uint64(i))%26))
	}
	return dst, nil
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

// Tally is one flow's (or, summed, a run's) account of its datagrams.
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
	// Mismatched: replies whose bytes are not the expected ones, or that name
	// no request of the flow (a corrupt header, another flow's, one never
	// sent). A request whose first reply is a mismatch is settled by it: it
	// does not count as lost too.
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

// Flow keeps one flow's outstanding requests and counts what becomes of them.
// Sequence numbers are handed out in order from 0 (Next). Not safe for
// concurrent use: one goroutine owns a flow.
type Flow struct {
	id      uint32
	timeout time.Duration
	next    uint64  // the next sequence number to send
	base    uint64  // states[0] is the state of sequence number base
	states  []state // from base to next-1: a sliding window
	sent    []time.Duration
	settled int    // states[:settled] are settled (not waiting)
	out     int    // requests waiting
	newest  uint64 // the newest sequence number answered, +1 (0: none)
	oldLost uint64 // sequence numbers below this that fell out of the window include lost ones, +1
	tally   Tally
	scratch []byte
}

// NewFlow is flow id, whose requests count as lost once unanswered for timeout.
func NewFlow(id uint32, timeout time.Duration) *Flow {
	return &Flow{id: id, timeout: timeout}
}

// Next records a request sent at now and returns its header.
func (f *Flow) Next(now time.Duration) Header {
	h := Header{Flow: f.id, Seq: f.next, Sent: now}
	f.states = append(f.states, waiting)
	f.sent = append(f.sent, now)
	f.next++
	f.out++
	f.tally.Sent++
	return h
}

// Outstanding is how many requests wait for a reply.
func (f *Flow) Outstanding() int { return f.out }

// Reply accounts a reply received on the flow: the request it answers, checked
// byte for byte, and whether it is the first reply to it (ok: the caller
// records its latency from h.Sent).
func (f *Flow) Reply(reply []byte) (h Header, ok bool) {
	h, err := Decode(reply)
	if err != nil || h.Flow != f.id || h.Seq >= f.next {
		f.tally.Mismatched++
		return h, false
	}
	// The filler depends on the header only, so the expected reply is
	// rebuilt from it (upper-cased in place).
	f.scratch, _ = Encode(f.scratch[:0], h, len(reply))
	f.scratch = Expected(f.scratch[:0], f.scratch)
	if string(f.scratch) != string(reply) {
		f.tally.Mismatched++
		// The request it names is settled: it will not count as lost too.
		if h.Seq >= f.base && f.states[h.Seq-f.base] == waiting {
			f.states[h.Seq-f.base] = mismatched
			f.out--
			f.advance()
		}
		return h, false
	}
	if h.Seq < f.base {
		f.old(h.Seq)
		return h, false
	}
	i := h.Seq - f.base
	switch f.states[i] {
	case answered, mismatched:
		f.tally.Duplicated++
		return h, false
	case lost:
		f.tally.Late++
		return h, false
	}
	f.states[i] = answered
	f.out--
	f.tally.Answered++
	if h.Seq+1 < f.newest {
		f.tally.Reordered++
	}
	f.newest = max(f.newest, h.Seq+1)
	f.advance()
	return h, true
}

// old accounts a reply to a sequence number that fell out of the window.
func (f *Flow) old(seq uint64) {
	if seq+1 <= f.oldLost {
		f.tally.Late++
	} else {
		f.tally.Duplicated++
	}
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
		f.tally.Lost++
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
		f.base += uint64(drop)
		f.settled -= drop
	}
}

// Tally is the flow's account so far.
func (f *Flow) Tally() Tally { return f.tally }

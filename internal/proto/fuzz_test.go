package proto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// refUpper is the protocol's mapping written the plain way, independent of AppendUpper.
func refUpper(p []byte) []byte {
	out := make([]byte, len(p))
	for i, c := range p {
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

// refParse is a one-shot reference parser: the replies for every complete frame in
// in, and whether a frame header above max was met.
func refParse(in []byte, max int) (out []byte, tooLarge bool) {
	for len(in) >= HeaderLen {
		n := binary.BigEndian.Uint32(in)
		if uint64(n) > uint64(max) {
			return out, true
		}
		if uint64(len(in)-HeaderLen) < uint64(n) {
			break
		}
		out = AppendFrame(out, refUpper(in[HeaderLen:HeaderLen+int(n)]))
		in = in[HeaderLen+int(n):]
	}
	return out, false
}

// FuzzRPCFeed checks that the incremental parser, fed in arbitrary pieces, agrees
// with the one-shot reference parser.
func FuzzRPCFeed(f *testing.F) {
	f.Add(frame("hello"), uint8(3), uint16(100))
	f.Add(cat(frame(""), frame("a"), frame("bcd")), uint8(1), uint16(10))
	f.Add([]byte{0, 0, 1, 0, 'x'}, uint8(2), uint16(255))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, uint8(0), uint16(0))
	f.Add(cat(frame("abc"), []byte{0, 0}), uint8(5), uint16(3))
	f.Add(cat(frame("\xc3\xa9t\xe9"), frame("")), uint8(0), uint16(8))
	f.Fuzz(func(t *testing.T, in []byte, step uint8, maxFrame uint16) {
		p, _ := newRPC(Options{MaxFrame: int(maxFrame)})
		limit := int(maxFrame)
		if limit == 0 {
			limit = DefaultMaxFrame
		}
		want, wantTooLarge := refParse(in, limit)
		s := p.NewSession()
		var got []byte
		var err error
		chunk := int(step) + 1
		for i := 0; i < len(in) && err == nil; i += chunk {
			got, err = feed(s, got, in[i:min(i+chunk, len(in))])
		}
		if wantTooLarge != errors.Is(err, ErrFrameTooLarge) || (err != nil && !wantTooLarge) {
			t.Fatalf("err = %v, want too-large=%v", err, wantTooLarge)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("replies differ:\n got %q\nwant %q", got, want)
		}
	})
}

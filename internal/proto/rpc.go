package proto

import (
	"encoding/binary"
	"fmt"
)

// HeaderLen is the size of an rpc frame header: a big-endian uint32 payload length.
const HeaderLen = 4

type rpc struct {
	max  int
	work Work
}

func newRPC(o Options) (Protocol, error) {
	m := o.MaxFrame
	if m == 0 {
		m = DefaultMaxFrame
	}
	return &rpc{max: m, work: o.Work}, nil
}

func (p *rpc) Name() string        { return "rpc" }
func (p *rpc) NewSession() Session { return &rpcSession{p: p, fr: frameReader{max: p.max}} }

type rpcSession struct {
	p  *rpc
	fr frameReader
}

func (s *rpcSession) Feed(out *Out, src []byte) error {
	return s.fr.each(src, func(payload []byte) error {
		// The request's work runs before its reply is produced.
		s.p.work.Do()
		out.Buf = binary.BigEndian.AppendUint32(out.Buf, uint32(len(payload)))
		out.Buf = AppendUpper(out.Buf, payload)
		return nil
	})
}

// keepBody is the largest partial-frame buffer a frameReader keeps between frames;
// a larger one (left by a big frame) is released so idle connections stay small.
const keepBody = 64 << 10

// frameReader splits a byte stream into rpc frames incrementally; the rpc and file
// sessions share it. A frame wholly inside one src is handed over straight from src;
// only a frame split across reads is copied into body. Its zero value (but for max)
// waits for a header.
type frameReader struct {
	max  int             // largest payload accepted
	hdr  [HeaderLen]byte // header bytes of the current frame
	nh   int             // header bytes collected for the current frame
	need int             // payload length of the current frame, valid once nh == HeaderLen
	body []byte          // payload bytes collected so far for a split frame
}

// each consumes src and calls fn, in order, with the payload of every frame src
// completes (L = 0 included); an incomplete frame at the end is kept for the next
// call. The payload is valid only during the call. each stops at fn's first error
// and returns it, or at a header above max with an error wrapping ErrFrameTooLarge.
// It does not allocate, but for a split frame's body (kept up to keepBody).
func (r *frameReader) each(src []byte, fn func(payload []byte) error) error {
	for len(src) > 0 {
		if r.nh < HeaderLen {
			k := copy(r.hdr[r.nh:], src)
			r.nh += k
			src = src[k:]
			if r.nh < HeaderLen {
				break
			}
			n := binary.BigEndian.Uint32(r.hdr[:])
			if uint64(n) > uint64(r.max) {
				return fmt.Errorf("%w: %d > %d", ErrFrameTooLarge, n, r.max)
			}
			r.need = int(n)
		}
		// A frame wholly inside src (including L = 0) is handed over straight from src.
		if len(r.body) == 0 && len(src) >= r.need {
			payload := src[:r.need]
			src = src[r.need:]
			r.nh = 0
			if err := fn(payload); err != nil {
				return err
			}
			continue
		}
		k := min(r.need-len(r.body), len(src))
		r.body = append(r.body, src[:k]...)
		src = src[k:]
		if len(r.body) == r.need {
			r.nh = 0
			err := fn(r.body)
			if cap(r.body) > keepBody {
				r.body = nil
			} else {
				r.body = r.body[:0]
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// AppendFrame appends payload as one rpc frame. Clients and tests use it.
func AppendFrame(dst, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}

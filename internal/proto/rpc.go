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
func (p *rpc) NewSession() Session { return &rpcSession{p: p} }

// keepBody is the largest partial-frame buffer a session keeps between frames;
// a larger one (left by a big frame) is released so idle connections stay small.
const keepBody = 64 << 10

// rpcSession parses frames incrementally. A frame wholly inside one src is answered
// straight from src; only a frame split across reads is copied into body.
type rpcSession struct {
	p    *rpc
	hdr  [HeaderLen]byte
	nh   int    // header bytes collected for the current frame
	need int    // payload length of the current frame, valid once nh == HeaderLen
	body []byte // payload bytes collected so far for a split frame
}

func (s *rpcSession) Feed(out *Out, src []byte) error {
	var err error
	out.Buf, err = s.feed(out.Buf, src)
	return err
}

func (s *rpcSession) feed(dst, src []byte) ([]byte, error) {
	for len(src) > 0 {
		if s.nh < HeaderLen {
			k := copy(s.hdr[s.nh:], src)
			s.nh += k
			src = src[k:]
			if s.nh < HeaderLen {
				break
			}
			n := binary.BigEndian.Uint32(s.hdr[:])
			if uint64(n) > uint64(s.p.max) {
				return dst, fmt.Errorf("%w: %d > %d", ErrFrameTooLarge, n, s.p.max)
			}
			s.need = int(n)
		}
		// A frame wholly inside src (including L = 0) is answered straight from src.
		if len(s.body) == 0 && len(src) >= s.need {
			dst = s.reply(dst, src[:s.need])
			src = src[s.need:]
			continue
		}
		k := min(s.need-len(s.body), len(src))
		s.body = append(s.body, src[:k]...)
		src = src[k:]
		if len(s.body) == s.need {
			dst = s.reply(dst, s.body)
			if cap(s.body) > keepBody {
				s.body = nil
			} else {
				s.body = s.body[:0]
			}
		}
	}
	return dst, nil
}

// reply runs the request's work and appends its reply frame; the session is then
// ready for the next header.
func (s *rpcSession) reply(dst, payload []byte) []byte {
	s.p.work.Do()
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	s.nh = 0
	return AppendUpper(dst, payload)
}

// AppendFrame appends payload as one rpc frame. Clients and tests use it.
func AppendFrame(dst, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}

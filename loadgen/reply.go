package loadgen

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"

	"concbench/internal/proto"
	"concbench/internal/testfiles"
)

// The replies of the file and http protocols are not known byte for byte in
// advance (headers vary between servers, a file's content is too large to keep
// per rotation), so they are parsed incrementally as they arrive: one parser per
// connection, fed whatever each read brings, checking the framing as it goes and
// the content by CRC32C. Parsers keep fixed-size state and never allocate.

// expect is what every reply of a file or http run must carry.
type expect struct {
	// std is set for a standard file (package testfiles): its size and CRC32C are
	// known. Otherwise a reply is only checked for framing and a consistent size.
	std  bool
	size int64
	crc  uint32
}

func expectFor(proto, nameOrPath string) expect {
	if s, ok := testfiles.Lookup(stdName(proto, nameOrPath)); ok {
		return expect{std: true, size: s.Size, crc: s.CRC}
	}
	return expect{}
}

// verdict is what feeding a parser found.
type verdict uint8

const (
	vMore        verdict = iota // the reply is not complete yet: feed more
	vOK                         // the reply is complete and correct
	vWrong                      // complete and well framed, but wrong (size, checksum): ErrMismatch
	vBadFrame                   // the framing is wrong; the stream cannot be trusted: ErrBadFrame
	vServerError                // file: an ERR frame: ErrServerError
	vHTTPStatus                 // http: a status other than 200: ErrHTTPStatus
)

// Limits of the file protocol as loadgen reads it.
const (
	// fileChunkMax is the largest content frame the protocol allows.
	fileChunkMax = 64 << 10
	// statusKeep is how much of a status frame ("OK <size>" or "ERR <reason>") is
	// kept for parsing; the rest of a longer frame is skipped. "OK " and 19 digits fit.
	statusKeep = 32
	// statusMax is the longest status frame accepted.
	statusMax = 4 << 10
)

// File reply parse states.
const (
	fStatusHdr uint8 = iota // the status frame's header
	fStatus                 // its payload
	fChunkHdr               // a content frame's header (zero length: the end)
	fChunk                  // a content frame's payload
)

// fileReply parses a stream of file-protocol replies: a frame "OK <size>", the
// content as frames of at most 64 KiB, a zero-length frame; or one frame
// "ERR <reason>". Its zero value expects the start of a reply.
type fileReply struct {
	state  uint8
	nh     int // header bytes collected
	hdr    [proto.HeaderLen]byte
	left   int // payload bytes left in the current frame
	ns     int // status bytes kept
	status [statusKeep]byte
	size   int64  // announced content size
	got    int64  // content bytes received
	crc    uint32 // CRC32C of the content so far (standard files)
	bad    bool   // well framed but wrong: the size does not match
}

// feed consumes the bytes of p that belong to the current reply and returns how
// many, and the verdict: vMore when all of p was consumed without completing it.
// After any other verdict the parser expects the next reply; after vBadFrame,
// vServerError or vHTTPStatus the caller closes the connection instead.
func (r *fileReply) feed(p []byte, ex *expect) (int, verdict) {
	n := 0
	for n < len(p) {
		switch r.state {
		case fStatusHdr, fChunkHdr:
			k := copy(r.hdr[r.nh:], p[n:])
			r.nh += k
			n += k
			if r.nh < proto.HeaderLen {
				return n, vMore
			}
			r.nh = 0
			l := binary.BigEndian.Uint32(r.hdr[:])
			if r.state == fStatusHdr {
				if l == 0 || l > statusMax {
					return n, r.done(vBadFrame)
				}
				r.left, r.ns, r.state = int(l), 0, fStatus
				continue
			}
			if l == 0 {
				if r.bad || r.got != r.size || (ex.std && r.crc != ex.crc) {
					return n, r.done(vWrong)
				}
				return n, r.done(vOK)
			}
			if l > fileChunkMax {
				return n, r.done(vBadFrame)
			}
			if r.got+int64(l) > r.size {
				r.bad = true // more content than announced; the frames still parse
			}
			r.left, r.state = int(l), fChunk
		case fStatus:
			k := min(r.left, len(p)-n)
			r.ns += copy(r.status[r.ns:], p[n:n+k])
			r.left -= k
			n += k
			if r.left > 0 {
				return n, vMore
			}
			if v := r.parseStatus(ex); v != vMore {
				return n, r.done(v)
			}
			r.state = fChunkHdr
		case fChunk:
			k := min(r.left, len(p)-n)
			if ex.std && !r.bad {
				r.crc = crc32.Update(r.crc, testfiles.Table, p[n:n+k])
			}
			r.got += int64(k)
			r.left -= k
			n += k
			if r.left == 0 {
				r.state = fChunkHdr
			}
		}
	}
	return n, vMore
}

// parseStatus reads the complete status frame: "OK <size>" starts the content
// (vMore), "ERR …" is a server error, anything else a bad frame.
func (r *fileReply) parseStatus(ex *expect) verdict {
	s := r.status[:r.ns]
	if bytes.HasPrefix(s, []byte("ERR")) {
		return vServerError
	}
	digits, ok := bytes.CutPrefix(s, []byte("OK "))
	if !ok || r.ns == statusKeep { // a longer frame than "OK " and 19 digits
		return vBadFrame
	}
	size, ok := parseDecimal(digits)
	if !ok {
		return vBadFrame
	}
	r.size, r.got, r.crc = size, 0, 0
	if ex.std && size != ex.size {
		r.bad = true
	}
	return vMore
}

func (r *fileReply) done(v verdict) verdict {
	*r = fileReply{}
	return v
}

// parseDecimal parses 1 to 18 ASCII digits.
func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var v int64
	for _, c := range b {
		if c-'0' > 9 {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}

// Limits of HTTP responses as loadgen reads them.
const (
	// lineKeep is how much of a header line is kept: enough for the status line's
	// first part and the headers loadgen reads; a longer line of another header is
	// skipped, a longer Content-Length is a bad frame.
	lineKeep = 96
	// headerMax is the most header bytes (status line included) accepted.
	headerMax = 64 << 10
)

// HTTP reply parse states.
const (
	hStatus  uint8 = iota // the status line
	hHeaders              // header lines, up to the empty one
	hBody                 // Content-Length bytes of body
)

// httpReply parses a stream of HTTP/1.x responses framed by Content-Length (a
// response without one, or chunked, is a bad frame). Its zero value expects the
// start of a response.
type httpReply struct {
	state     uint8
	nl        int // bytes of the current line kept
	line      [lineKeep]byte
	long      bool // the current line is longer than lineKeep
	hdrBytes  int
	status    int
	http10    bool
	keepAlive bool // "Connection: keep-alive" (HTTP/1.0)
	connClose bool // "Connection: close"
	chunked   bool
	haveLen   bool
	clen      int64
	left      int64
	crc       uint32
	bad       bool

	// closing is set with a vOK or vWrong verdict when the response said the server
	// closes the connection after it ("Connection: close", or HTTP/1.0 without
	// keep-alive). It is valid until the next feed.
	closing bool
}

// feed is fileReply.feed for HTTP responses.
func (r *httpReply) feed(p []byte, ex *expect) (int, verdict) {
	r.closing = false
	n := 0
	for n < len(p) {
		if r.state == hBody {
			k := int(min(r.left, int64(len(p)-n)))
			if ex.std && !r.bad {
				r.crc = crc32.Update(r.crc, testfiles.Table, p[n:n+k])
			}
			r.left -= int64(k)
			n += k
			if r.left == 0 {
				return n, r.finish(ex)
			}
			continue
		}
		seg := p[n:]
		nl := bytes.IndexByte(seg, '\n')
		if nl >= 0 {
			seg = seg[:nl]
		}
		k := copy(r.line[r.nl:], seg)
		r.nl += k
		r.long = r.long || k < len(seg)
		r.hdrBytes += len(seg)
		n += len(seg)
		if r.hdrBytes > headerMax {
			return n, r.reset(vBadFrame)
		}
		if nl < 0 {
			return n, vMore
		}
		n++ // the '\n'
		long := r.long
		line := r.line[:r.nl]
		if !long { // a cut line's '\r' was not kept
			line = bytes.TrimSuffix(line, []byte("\r"))
		}
		r.nl, r.long = 0, false
		if r.state == hStatus {
			if !r.parseStatusLine(line) {
				return n, r.reset(vBadFrame)
			}
			r.state = hHeaders
			continue
		}
		if len(line) == 0 {
			if v := r.endHeaders(ex); v != vMore {
				return n, v
			}
			continue
		}
		if !r.header(line, long) {
			return n, r.reset(vBadFrame)
		}
	}
	return n, vMore
}

// parseStatusLine reads "HTTP/1.x NNN …".
func (r *httpReply) parseStatusLine(line []byte) bool {
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return false
	}
	code, ok := parseDecimal(line[9:12])
	if !ok || code < 100 {
		return false
	}
	r.status = int(code)
	r.http10 = line[7] == '0'
	return true
}

// header reads one header line; long says it was cut at lineKeep bytes.
func (r *httpReply) header(line []byte, long bool) bool {
	name, value, ok := bytes.Cut(line, []byte(":"))
	if !ok {
		return long // a cut line may have lost its colon; a short one must have one
	}
	value = bytes.TrimSpace(value)
	switch {
	case bytes.EqualFold(name, []byte("Content-Length")):
		v, ok := parseDecimal(value)
		if !ok || long || (r.haveLen && v != r.clen) {
			return false
		}
		r.clen, r.haveLen = v, true
	case bytes.EqualFold(name, []byte("Transfer-Encoding")):
		if !bytes.EqualFold(value, []byte("identity")) {
			r.chunked = true
		}
	case bytes.EqualFold(name, []byte("Connection")):
		// A comma-separated token list; loadgen looks for close and keep-alive.
		for tok := range bytes.SplitSeq(value, []byte(",")) {
			tok = bytes.TrimSpace(tok)
			if bytes.EqualFold(tok, []byte("close")) {
				r.connClose = true
			} else if bytes.EqualFold(tok, []byte("keep-alive")) {
				r.keepAlive = true
			}
		}
	}
	return true
}

// endHeaders decides what follows the headers: a status other than 200 ends the
// reply (its body is not read: the connection is closed), a body of Content-Length
// bytes, or the end of the reply at once for an empty body.
func (r *httpReply) endHeaders(ex *expect) verdict {
	switch {
	case r.status != 200:
		return r.reset(vHTTPStatus)
	case r.chunked || !r.haveLen:
		return r.reset(vBadFrame)
	}
	if ex.std && r.clen != ex.size {
		r.bad = true
	}
	r.left, r.crc, r.state = r.clen, 0, hBody
	if r.left == 0 {
		return r.finish(ex)
	}
	return vMore
}

// finish ends a response whose body is complete.
func (r *httpReply) finish(ex *expect) verdict {
	closing := r.connClose || (r.http10 && !r.keepAlive)
	v := vOK
	if r.bad || (ex.std && r.crc != ex.crc) {
		v = vWrong
	}
	r.reset(v)
	r.closing = closing
	return v
}

func (r *httpReply) reset(v verdict) verdict {
	*r = httpReply{}
	return v
}

package loadgen

// Checking replies as they arrive: echo and rpc bytes against the precomputed
// replies, file and http replies through their parsers (reply.go); completing a
// reply (recorded, or counted as a mismatch); and what the server's close or its
// "Connection: close" means for the requests outstanding.

import (
	"bytes"

	"concbench/internal/proto"
)

// consume verifies p against the expected replies, completing each one it ends.
// It returns false if c was closed.
func (l *loop) consume(c *conn, p []byte, now int64) bool {
	if l.sh.kind >= kFile {
		return l.parse(c, p, now)
	}
	for len(p) > 0 {
		if c.n == 0 || c.cycleDone {
			l.fail(c, ErrUnexpected, now)
			return false
		}
		pr := l.prof(c)
		want := pr.reps[c.rseq]
		k := min(len(want)-c.roff, len(p))
		if l.sh.kind == kRPC && c.roff < proto.HeaderLen {
			h := min(proto.HeaderLen-c.roff, k)
			if !bytes.Equal(want[c.roff:c.roff+h], p[:h]) {
				l.fail(c, ErrBadFrame, now)
				return false
			}
		}
		if !bytes.Equal(want[c.roff:c.roff+k], p[:k]) {
			c.bad = true
		}
		c.roff += k
		p = p[k:]
		if c.roff == len(want) {
			l.complete(c, now)
		}
	}
	return true
}

// parse feeds p to c's reply parser (file, http), completing each reply it ends.
// It returns false if c was closed.
func (l *loop) parse(c *conn, p []byte, now int64) bool {
	for len(p) > 0 {
		if c.n == 0 || c.cycleDone {
			l.fail(c, ErrUnexpected, now)
			return false
		}
		var (
			n       int
			v       verdict
			closing bool
		)
		if l.sh.kind == kFile {
			n, v = l.files[c.idx].feed(p, &l.prof(c).expect)
		} else {
			r := &l.https[c.idx]
			n, v = r.feed(p, &l.prof(c).expect)
			closing = r.closing
		}
		p = p[n:]
		switch v {
		case vMore:
		case vOK, vWrong:
			c.bad = v == vWrong
			l.complete(c, now)
			if closing && !l.sh.cfg.Reconnect {
				l.serverClosing(c, now)
				return false
			}
		case vBadFrame:
			l.fail(c, ErrBadFrame, now)
			return false
		case vServerError:
			l.fail(c, ErrServerError, now)
			return false
		case vHTTPStatus:
			l.fail(c, ErrHTTPStatus, now)
			return false
		}
	}
	return true
}

// serverClosing handles an http response that announced the server's close
// ("Connection: close"; a server's keep-alive request limit, say). Requests
// pipelined behind it are lost: that is an eof error. Otherwise it is no error:
// close and connect again at once.
func (l *loop) serverClosing(c *conn, now int64) {
	if c.n > 0 {
		l.fail(c, ErrEOF, now)
		return
	}
	l.closeConn(c)
	if l.loading && c.quota != 0 {
		l.connect(c, now)
	} else {
		c.retryAt = now
	}
}

// complete ends the reply at the head of c's ring.
func (l *loop) complete(c *conn, now int64) {
	s := c.ring[c.head]
	c.head++
	if c.head == len(c.ring) {
		c.head = 0
	}
	c.n--
	if c.rseq++; c.rseq == l.prof(c).rot {
		c.rseq = 0
	}
	c.roff = 0
	switch {
	case c.bad && c.idle:
		c.bad = false
		l.st.idleErrors[ErrMismatch]++
	case c.bad:
		c.bad = false
		l.countError(ErrMismatch, now)
	case c.idle:
		l.recordHeartbeat(s, now)
	default:
		l.record(s, now)
		if l.loading {
			c.lastDone = now
		}
	}
	if l.limited && c.quota == 0 && c.n == 0 {
		l.active--
	}
	if l.sh.cfg.Reconnect {
		c.cycleDone = true // the server's close ends the cycle
	}
}

// eof handles the server's close of c.
func (l *loop) eof(c *conn) {
	now := l.now()
	if l.sh.cfg.Reconnect && c.cycleDone {
		l.closeConn(c)
		c.retryAt = 0
		l.wake(c, now)
		return
	}
	if c.n > 0 {
		l.fail(c, ErrEOF, now)
	} else {
		l.fail(c, ErrClosedIdle, now)
	}
}

package loadgen

// The datagram flows of udp-echo. A flow is a UDP socket connected to the
// server, one conn of its loop, driven by the loop's machinery as a
// connection is: the ramp (a UDP connect completes at once), the closed
// loop's pipeline, the open loop's schedule, the steady-state gate, the
// window, the histograms and the timeline. What differs is here:
//
//   - A flow's account is a dgram.Flow: each request datagram carries the
//     flow's id, a sequence number and its send time (in open loop, its
//     intended send time, from which its latency runs: coordinated omission
//     corrected as for a stream), and each reply is checked byte for byte
//     against dgram.Expected of its request. A reply is answered, duplicated,
//     late (after its request was counted lost) or a mismatch (also counted
//     as a mismatch error: a wrong byte is an error); a request unanswered
//     after the timeout is lost — not an error: UDP promises no delivery.
//   - Closed loop keeps Pipeline datagrams outstanding per flow; a lost one
//     frees its slot when its timeout expires. Open loop sends on the
//     schedule whatever is outstanding: a datagram client does not wait for
//     replies, and a loss must not hold a flow's schedule for the timeout.
//   - Expiry runs off the loop's timer: the loop's expiry heap holds each
//     flow with datagrams outstanding at the deadline of its oldest one
//     (dgram.Flow.Oldest), refreshed lazily when that deadline comes, so the
//     loop neither scans its flows nor touches the heap per reply.
//   - Sends and receives are batched per socket (mmsg.go): a receive takes up
//     to Batch replies of the flow's socket, and the datagrams one pass sends
//     on a flow (a closed loop refilling its pipeline, an open loop catching
//     up) go in calls of up to Batch. A socket is one flow, so a batch never
//     spans flows. A flow's socket is level-triggered (epoll reports it again
//     while replies wait), and read while its flow still expects replies:
//     edge-triggered, each readiness would end with a call that finds nothing
//     — at -batch 1 and -pipeline 1, a second read for every reply.
//   - The counts are of the datagrams sent in the measured window, whatever
//     became of them after it: when the window closes the loop stops sending
//     and waits — after the window's end is marked, at most the timeout — for
//     the fate of each (drain), so that Answered + Lost (+ the requests a
//     mismatch settled) is Sent. Latency and Requests are, as for a stream,
//     of the replies completed in the window.

import (
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"concbench/internal/result"
	"concbench/loadgen/dgram"
)

// Epoll events of a flow's socket: readable, level-triggered. EPOLLOUT is
// added only while the socket's send buffer is full (a flow's conn.full),
// and taken away at its first report.
const (
	flowEvents     = unix.EPOLLIN
	flowFullEvents = flowEvents | unix.EPOLLOUT
)

// openFlow prepares a new flow socket: a receive buffer for the replies a
// full pipeline may bring at once, where the default is smaller (best
// effort: a receive buffer past net.core.rmem_max takes privilege; replies
// the socket drops anyway are counted, Datagrams.ClientDropped).
func (l *loop) openFlow(fd int) {
	// A datagram's memory in the receive queue is its payload and an skb's
	// overhead, about 1 KiB on loopback.
	want := l.pipe * (l.sh.cfg.Size + 1024)
	if cur, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF); err == nil && cur < want {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, want) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, want)
		}
	}
}

// wakeFlow is the closed loop's wake for a flow: it fills the pipeline, in
// calls of up to Batch datagrams.
func (l *loop) wakeFlow(c *conn, now int64) {
	// Each round ends with the pipeline full, the socket's send buffer full
	// (canSend is then false), the flow failed, or a refused send withdrawn
	// (the socket's error is cleared by reporting it: the next send goes).
	for l.canSend(c) {
		for !l.tx.full() && l.canSend(c) {
			l.queueDgram(c, now, now)
		}
		l.flushFlow(c, now)
	}
}

// fireFlow is the open loop's send for a flow whose send is due: it sends
// every datagram of the flow due by now, up to Batch.
func (l *loop) fireFlow(c *conn, now int64) {
	for !l.tx.full() && c.due <= now && l.canSend(c) {
		intended := c.due
		c.k++
		c.due = l.nextDue(c, intended)
		l.queueDgram(c, intended, now)
	}
	l.flushFlow(c, now)
}

// queueDgram records c's next datagram in its flow and queues it: intended is
// when it was meant to go (closed loop: now).
func (l *loop) queueDgram(c *conn, intended, now int64) {
	h := c.flow.NextAt(time.Duration(intended), time.Duration(now))
	l.tx.add(h, dgram.Filler(h.Seq, l.sh.cfg.Size-dgram.HeaderLen), intended)
	if c.quota > 0 {
		c.quota--
	}
	if c.expPos < 0 {
		// Its deadline is the oldest outstanding datagram's: this one's, or
		// older (a flow leaves the heap only when nothing is outstanding).
		c.expAt = now + int64(l.sh.cfg.Timeout) + 1
		l.exp.push(c.idx)
	}
}

// flushFlow sends what is queued for c and returns how many went. Those the
// socket refused never left: they are withdrawn from the flow (and an open
// loop's schedule goes back to the first of them). A full send buffer waits
// for the socket to be writable; ECONNREFUSED (an earlier datagram's ICMP
// port unreachable: nothing listens) is counted and the flow goes on; any
// other error closes the flow's socket and reopens it after the backoff.
func (l *loop) flushFlow(c *conn, now int64) int {
	queued := l.tx.n
	if queued == 0 {
		return 0
	}
	sent, err := l.tx.send(c.fd)
	if l.sh.open {
		for i := range sent {
			l.noteSend(c, l.tx.intended[i], now)
		}
	}
	if unsent := queued - sent; unsent > 0 {
		c.flow.Unsend(unsent)
		if c.quota >= 0 {
			c.quota += int64(unsent)
		}
		if l.sh.open {
			// The schedule resumes at the first datagram not sent; with
			// exponential gaps, the gaps after it are drawn anew.
			c.k -= int64(unsent)
			c.due = l.tx.intended[sent]
		}
	}
	switch err {
	case nil:
	case unix.EAGAIN, unix.ENOBUFS:
		c.full = true
		ev := unix.EpollEvent{Events: flowFullEvents, Fd: c.idx}
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, c.fd, &ev); err != nil {
			l.fail(c, ErrIO, now)
		}
	case unix.ECONNREFUSED:
		l.refused(now)
	default:
		l.fail(c, ioErrorKind(err), now)
	}
	return sent
}

// handleFlow processes one epoll event of flow c: writable again after a
// full send buffer, replies (or a pending error) to read; then it sends on.
func (l *loop) handleFlow(c *conn, events uint32) {
	if events&unix.EPOLLOUT != 0 && c.full {
		c.full = false
		ev := unix.EpollEvent{Events: flowEvents, Fd: c.idx}
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, c.fd, &ev); err != nil {
			l.fail(c, ErrIO, l.now())
			return
		}
	}
	if events&(unix.EPOLLIN|unix.EPOLLERR) != 0 && !l.recvFlow(c) {
		return
	}
	l.wake(c, l.now())
}

// recvCalls bounds the receive calls one readiness of a flow makes, so that a
// flow with a deep pipeline does not hold up the others: what it leaves is
// reported again (level-triggered).
const recvCalls = 64

// recvFlow reads the replies waiting on c's socket, a batch a call, while its
// flow still expects some and the last call filled its batch, and accounts
// each. It returns false if c was closed.
func (l *loop) recvFlow(c *conn) bool {
	for range recvCalls {
		n, err := l.rx.recv(c.fd)
		switch {
		case err == unix.EAGAIN:
			return true
		case err == unix.ECONNREFUSED:
			// Reported once, and cleared: the datagram it is about is lost.
			l.refused(l.now())
			return true
		case err != nil:
			l.fail(c, ioErrorKind(err), l.now())
			return false
		}
		now := l.now()
		if !c.served && l.loading {
			l.markServed(c)
		}
		for i := range n {
			l.replyDgram(c, l.rx.datagram(i), now)
		}
		l.settleFlow(c)
		// A short batch found the socket empty; with nothing outstanding, a
		// datagram still there is a duplicate or a late one, read at the
		// next readiness (it is reported again).
		if n < l.rx.cap() || c.flow.Outstanding() == 0 {
			return true
		}
	}
	return true
}

// refused counts a datagram refused by the server's host (an ICMP port
// unreachable, reported on a send or a receive): nothing listens there.
func (l *loop) refused(now int64) {
	l.countError(ErrConnectRefused, now)
	l.pubRefused.Add(1)
}

// replyDgram accounts one reply of flow c, received at now.
func (l *loop) replyDgram(c *conn, p []byte, now int64) {
	h, sent, fate := c.flow.Reply(p)
	switch fate {
	case dgram.Answered:
		// The latency runs from the time the datagram carries: its send, or
		// in open loop its intended send.
		l.record(slot{intended: int64(h.Sent), sent: int64(sent)}, now)
		if l.loading {
			c.lastDone = now
		}
	case dgram.Mismatch:
		l.countError(ErrMismatch, now)
	}
}

// expireDue counts as lost the datagrams whose timeout has passed, flow by
// flow as the expiry heap comes due, and lets a closed loop's flow send again
// in the slots they held.
func (l *loop) expireDue(now int64) {
	for {
		ci, ok := l.exp.popDue(now)
		if !ok {
			return
		}
		c := &l.conns[ci]
		lost := c.flow.Expire(time.Duration(now))
		if oldest, ok := c.flow.Oldest(); ok {
			c.expAt = int64(oldest) + int64(l.sh.cfg.Timeout) + 1
			l.exp.push(ci)
		}
		if lost > 0 {
			l.settleFlow(c)
			if c.state == stOpen {
				l.wake(c, now)
			}
		}
	}
}

// settleFlow takes a flow of a limited run (Workload.Requests) out of the
// active count once its quota is sent and nothing is outstanding.
func (l *loop) settleFlow(c *conn) {
	if l.limited && !c.finished && c.quota == 0 && c.flow.Outstanding() == 0 {
		c.finished = true
		l.active--
	}
}

// drain follows the datagrams sent in the window to their fates once the
// window has closed: it reads replies and expires losses, sending nothing
// and measuring no latency, until none of them is outstanding (at most the
// timeout after the last was sent), or the run is cancelled.
func (l *loop) drain() {
	l.loading = false
	end := l.now() + int64(l.sh.cfg.Timeout) + int64(sweepEvery)
	for !l.sh.stop.Load() && l.flowsUnsettled() {
		now := l.now()
		if now >= end {
			return
		}
		l.poll(now)
	}
}

// flowsUnsettled reports whether a datagram sent in the window still waits.
func (l *loop) flowsUnsettled() bool {
	for i := range l.conns {
		if l.conns[i].flow.Unsettled() {
			return true
		}
	}
	return false
}

// measureFlows starts (start) or ends the flows' measured span: the window.
// Their sockets' drop counts are read at both ends, the end's after the
// drain.
func (l *loop) measureFlows(start bool) {
	for i := range l.conns {
		c := &l.conns[i]
		if start {
			c.flow.Measure()
			c.dropsAt = socketDrops(c.fd)
		} else {
			c.flow.EndMeasure()
		}
	}
}

// countDrops adds up the replies the flows' sockets dropped since the window
// opened, before they are closed.
func (l *loop) countDrops() {
	for i := range l.conns {
		c := &l.conns[i]
		if c.fd >= 0 {
			// A socket reopened in the window (after a failure) started from 0.
			l.st.clientDrops += max(0, socketDrops(c.fd)-c.dropsAt)
		}
	}
}

// socketDrops is how many datagrams the socket fd dropped for want of room
// in its receive buffer (SK_MEMINFO_DROPS); 0 if it cannot be read.
func socketDrops(fd int) int64 {
	if fd < 0 {
		return 0
	}
	var mem [unix.SK_MEMINFO_VARS]uint32
	size := uint32(unsafe.Sizeof(mem))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&mem[0])), uintptr(unsafe.Pointer(&size)), 0)
	if e != 0 {
		return 0
	}
	return int64(mem[unix.SK_MEMINFO_DROPS])
}

// mergeDatagrams adds up the flows' accounts of the window.
func mergeDatagrams(loops []*loop) *result.Datagrams {
	var t dgram.Tally
	d := &result.Datagrams{}
	for _, l := range loops {
		for i := range l.conns {
			t.Add(l.conns[i].flow.Tally())
		}
		d.ClientDropped += l.st.clientDrops
	}
	d.Sent, d.Answered, d.Lost, d.Late = int64(t.Sent), int64(t.Answered), int64(t.Lost), int64(t.Late)
	d.Duplicated, d.Reordered, d.Mismatched = int64(t.Duplicated), int64(t.Reordered), int64(t.Mismatched)
	d.LossRate = t.LossRate()
	return d
}

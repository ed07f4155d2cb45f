package loadgen

// Batches of datagrams for one flow's socket: sendmmsg and recvmmsg of up to
// Workload.Batch datagrams a call, or the plain calls for a batch of one
// (sendmsg, and read: what a classic UDP client makes). x/sys has the mmsghdr
// type but no wrapper for the two calls; these are raw, outside the runtime's
// syscall path, as package rawio's read and write are (the sockets are
// non-blocking and every call passes MSG_DONTWAIT: each returns at once; see
// rawio for why that is correct and what it saves). Each loop owns one
// txBatch and one rxBatch, used for one socket at a time.

import (
	"unsafe"

	"golang.org/x/sys/unix"

	"concbench/internal/rawio"
	"concbench/loadgen/dgram"
)

// txBatch is the request datagrams queued for one socket: each message is
// its own header, then its filler, which points into dgram's shared table
// (dgram.Filler: read-only, never copied).
type txBatch struct {
	hdrs     []unix.Mmsghdr
	iovs     []unix.Iovec // two a message: the header, the filler
	heads    []byte       // dgram.HeaderLen bytes a message
	intended []int64      // when each message was meant to go (ns since the run's base)
	n        int          // messages queued
}

func newTxBatch(n int) *txBatch {
	b := &txBatch{
		hdrs:     make([]unix.Mmsghdr, n),
		iovs:     make([]unix.Iovec, 2*n),
		heads:    make([]byte, n*dgram.HeaderLen),
		intended: make([]int64, n),
	}
	for i := range b.hdrs {
		b.iovs[2*i].Base = &b.heads[i*dgram.HeaderLen]
		b.iovs[2*i].SetLen(dgram.HeaderLen)
		b.hdrs[i].Hdr.Iov = &b.iovs[2*i]
	}
	return b
}

// full reports whether no more messages fit.
func (b *txBatch) full() bool { return b.n == len(b.hdrs) }

// add queues a request datagram: header h, then filler (empty for a datagram
// of the header alone).
func (b *txBatch) add(h dgram.Header, filler []byte, intended int64) {
	i := b.n
	head := b.heads[i*dgram.HeaderLen : i*dgram.HeaderLen : (i+1)*dgram.HeaderLen]
	// A header of a flow's own sequence number and a time since the run's
	// start is always in range (2^48 requests, 8.9 years): Encode cannot fail
	// here, and writes into head's own room (its capacity is the header's).
	_, _ = dgram.Encode(head, h, dgram.HeaderLen)
	iovlen := 1
	if len(filler) > 0 {
		b.iovs[2*i+1].Base = &filler[0]
		b.iovs[2*i+1].SetLen(len(filler))
		iovlen = 2
	}
	b.hdrs[i].Hdr.SetIovlen(iovlen)
	b.hdrs[i].Len = 0
	b.intended[i] = intended
	b.n++
}

// send hands the queued messages to fd's socket: sendmsg for one, sendmmsg
// for more. It returns how many the socket took, in order from the first
// (fewer than queued only with an error: the one refused and those after it
// were not sent), retrying EINTR; the queue is then empty.
func (b *txBatch) send(fd int) (int, error) {
	defer func() { b.n = 0 }()
	sent := 0
	for sent < b.n {
		var r uintptr
		var e unix.Errno
		if b.n-sent == 1 {
			_, _, e = unix.RawSyscall(unix.SYS_SENDMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.hdrs[sent].Hdr)), unix.MSG_DONTWAIT)
			r = 1
		} else {
			r, _, e = unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.hdrs[sent])), uintptr(b.n-sent), unix.MSG_DONTWAIT, 0, 0)
		}
		switch {
		case e == unix.EINTR:
			continue
		case e != 0:
			return sent, e
		case r == 0:
			// Nothing taken and no error: not seen, but never spin on it.
			return sent, unix.EAGAIN
		}
		// sendmmsg stops early only at an error, which the next call reports.
		sent += int(r)
	}
	return sent, nil
}

// rxBatch is the slots replies are received into, slot bytes each: one more
// than a reply should have, so that a longer one shows as too long (a
// datagram is cut to the slot it lands in, the rest discarded).
type rxBatch struct {
	hdrs []unix.Mmsghdr
	iovs []unix.Iovec
	buf  []byte
	slot int
}

func newRxBatch(n, slot int) *rxBatch {
	b := &rxBatch{hdrs: make([]unix.Mmsghdr, n), iovs: make([]unix.Iovec, n), buf: make([]byte, n*slot), slot: slot}
	for i := range b.hdrs {
		b.iovs[i].Base = &b.buf[i*slot]
		b.iovs[i].SetLen(slot)
		b.hdrs[i].Hdr.Iov = &b.iovs[i]
		b.hdrs[i].Hdr.SetIovlen(1)
	}
	return b
}

// recv reads up to the batch's size of the datagrams waiting on fd's socket,
// without waiting: read for a batch of one, recvmmsg for more. It returns how
// many (unix.EAGAIN when none waits), retrying EINTR. A pending error of the
// socket (ECONNREFUSED: an ICMP port unreachable came back for a datagram
// sent) is returned, and cleared by returning it.
func (b *rxBatch) recv(fd int) (int, error) {
	if len(b.hdrs) == 1 {
		n, err := rawio.Read(fd, b.buf[:b.slot])
		if err != nil {
			return 0, err
		}
		b.hdrs[0].Len = uint32(n)
		return 1, nil
	}
	for {
		r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(len(b.hdrs)), unix.MSG_DONTWAIT, 0, 0)
		switch {
		case e == unix.EINTR:
			continue
		case e != 0:
			return 0, e
		case r == 0:
			return 0, unix.EAGAIN
		}
		return int(r), nil
	}
}

// datagram is the i-th datagram of the last recv (at most slot bytes).
func (b *rxBatch) datagram(i int) []byte {
	return b.buf[i*b.slot : i*b.slot+int(b.hdrs[i].Len)]
}

// cap is the most datagrams one recv reads.
func (b *rxBatch) cap() int { return len(b.hdrs) }

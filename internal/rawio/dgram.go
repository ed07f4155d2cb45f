package rawio

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Msgs is a batch of datagram slots on a non-blocking socket: each slot a
// buffer, an iovec over it and room for the peer's address. Recv fills slots
// with recvmmsg (one recvfrom for a batch of one: the classic call, so that
// -batch 1 measures what a plain UDP server makes), Reply queues a slot's
// datagram back to its sender, and Send writes the queued replies with
// sendmmsg (one sendto for a single reply). x/sys has the mmsghdr type but no
// wrapper for the two calls; these are raw, outside the runtime's syscall path,
// as the other calls here (the socket is non-blocking: they return at once).
//
// A Msgs is owned by one goroutine at a time; its buffers are reused by the
// next Recv.
type Msgs struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // large enough for an IPv4 or IPv6 peer
	buf   []byte                  // the slots' buffers, size bytes each
	size  int
	n     int            // slots filled by the last Recv
	out   []unix.Mmsghdr // replies queued, pointing at their slots
}

// NewMsgs returns n slots of size bytes each.
func NewMsgs(n, size int) *Msgs {
	m := &Msgs{
		hdrs:  make([]unix.Mmsghdr, n),
		iovs:  make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrInet6, n),
		buf:   make([]byte, n*size),
		size:  size,
		out:   make([]unix.Mmsghdr, 0, n),
	}
	for i := range m.hdrs {
		m.iovs[i].Base = &m.buf[i*size]
		m.hdrs[i].Hdr.Iov = &m.iovs[i]
		m.hdrs[i].Hdr.Iovlen = 1
		m.hdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&m.names[i]))
	}
	return m
}

// Cap is the number of slots.
func (m *Msgs) Cap() int { return len(m.hdrs) }

// Recv reads up to Cap datagrams that are waiting on fd, without waiting: the
// number read, or unix.EAGAIN when none is. EINTR is retried. Each slot's
// length is the datagram's real length (MSG_TRUNC), which may exceed the
// buffer: see Datagram.
func (m *Msgs) Recv(fd int) (int, error) {
	m.n = 0
	m.out = m.out[:0]
	for i := range m.hdrs {
		m.iovs[i].SetLen(m.size)
		m.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
		m.hdrs[i].Hdr.Flags = 0
		m.hdrs[i].Len = 0
	}
	for {
		var r uintptr
		var e unix.Errno
		if len(m.hdrs) == 1 {
			h := &m.hdrs[0]
			r, _, e = unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&m.buf[0])), uintptr(m.size),
				unix.MSG_DONTWAIT|unix.MSG_TRUNC, uintptr(unsafe.Pointer(h.Hdr.Name)), uintptr(unsafe.Pointer(&h.Hdr.Namelen)))
			if e == 0 {
				h.Len = uint32(r)
				if int(r) > m.size {
					h.Hdr.Flags = unix.MSG_TRUNC
				}
				r = 1
			}
		} else {
			r, _, e = unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&m.hdrs[0])), uintptr(len(m.hdrs)),
				unix.MSG_DONTWAIT|unix.MSG_TRUNC, 0, 0)
		}
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, errno(e)
		}
		m.n = int(r)
		return m.n, nil
	}
}

// Datagram is slot i of the last Recv: its bytes, and whether the datagram
// was larger than the buffer (truncated: p holds only its start). size is its
// real length.
func (m *Msgs) Datagram(i int) (p []byte, size int, truncated bool) {
	h := &m.hdrs[i]
	size = int(h.Len)
	if h.Hdr.Flags&unix.MSG_TRUNC != 0 || size > m.size {
		return m.buf[i*m.size : (i+1)*m.size], size, true
	}
	return m.buf[i*m.size : i*m.size+size], size, false
}

// Reply queues the first n bytes of slot i's buffer to go back to the sender
// of slot i's datagram.
func (m *Msgs) Reply(i, n int) {
	m.iovs[i].SetLen(n)
	m.out = append(m.out, m.hdrs[i])
	m.out[len(m.out)-1].Len = 0
}

// Queued is the number of replies queued and not yet sent.
func (m *Msgs) Queued() int { return len(m.out) }

// Send writes the queued replies, without waiting: the number sent, the
// first of the queue, which Send removes. It stops at the first that fails
// and returns its error (unix.EAGAIN: the socket's send buffer is full); that
// one stays at the head of the queue, for the caller to retry or Drop.
func (m *Msgs) Send(fd int) (int, error) {
	sent := 0
	for len(m.out) > 0 {
		var r uintptr
		var e unix.Errno
		if len(m.out) == 1 {
			h := &m.out[0].Hdr
			r, _, e = unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(h.Iov.Base)), uintptr(h.Iov.Len),
				unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(h.Name)), uintptr(h.Namelen))
			if e == 0 {
				r = 1
			}
		} else {
			r, _, e = unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&m.out[0])), uintptr(len(m.out)),
				unix.MSG_DONTWAIT, 0, 0)
		}
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return sent, errno(e)
		}
		sent += int(r)
		m.out = m.out[:copy(m.out, m.out[r:])]
		if r == 0 {
			break // nothing sent and no error: not seen, but never spin on it
		}
	}
	return sent, nil
}

// Drop removes the reply at the head of the queue unsent.
func (m *Msgs) Drop() {
	if len(m.out) > 0 {
		m.out = m.out[:copy(m.out, m.out[1:])]
	}
}

// DropAll removes every queued reply unsent and returns how many there were.
func (m *Msgs) DropAll() int {
	n := len(m.out)
	m.out = m.out[:0]
	return n
}

package uring

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// msgSlot is a msghdr with its iovec, room for a peer's address and a buffer:
// one sendmsg's or recvmsg's memory.
type msgSlot struct {
	hdr  unix.Msghdr
	iov  unix.Iovec
	name [unix.SizeofSockaddrInet6]byte
	buf  []byte
}

// newMsgSlot returns a slot whose iovec covers a buffer of size bytes and
// whose name has room for an IPv4 or IPv6 address. It is not inlined, so the
// slot it returns is in the heap, where the addresses the kernel keeps stay
// valid (see PrepSendMsg).
//
//go:noinline
func newMsgSlot(size int) *msgSlot {
	s := &msgSlot{buf: make([]byte, size)}
	if size > 0 {
		s.iov.Base = &s.buf[0]
	}
	s.iov.SetLen(size)
	s.hdr.Iov = &s.iov
	s.hdr.SetIovlen(1)
	s.hdr.Name = &s.name[0]
	s.hdr.Namelen = uint32(len(s.name))
	return s
}

// to makes s a message of p to addr (a raw socket address).
func (s *msgSlot) to(addr []byte, p []byte) *msgSlot {
	n := copy(s.buf, p)
	s.iov.SetLen(n)
	s.hdr.Namelen = uint32(copy(s.name[:], addr))
	return s
}

// newTemplate returns a multishot recvmsg's template with room for an IPv6
// address and no control data, in the heap as newMsgSlot's.
//
//go:noinline
func newTemplate() *unix.Msghdr {
	return &unix.Msghdr{Namelen: unix.SizeofSockaddrInet6}
}

// udpSocket is a non-blocking UDP socket bound to 127.0.0.1 on a port of the
// kernel's choice, closed after the test, and its address as raw bytes (a
// struct sockaddr_in).
func udpSocket(t *testing.T) (fd int, addr []byte) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	raw := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: [4]byte{127, 0, 0, 1}}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&raw.Port))[:], uint16(sa.(*unix.SockaddrInet4).Port))
	return fd, unsafe.Slice((*byte)(unsafe.Pointer(&raw)), unix.SizeofSockaddrInet4)
}

// A sendmsg carries a datagram to the address in its name; a recvmsg
// receives it with the sender's address and says whether it fitted: with
// MSG_TRUNC, Res is the datagram's real length; without, what was copied;
// either way the msghdr's Flags say MSG_TRUNC when it did not fit.
func TestSendMsgRecvMsg(t *testing.T) {
	r := newRing(t, 8)
	a, aAddr := udpSocket(t)
	b, bAddr := udpSocket(t)
	for i, c := range []struct {
		name      string
		room      int
		flags     uint32
		msg       string
		wantRes   int
		truncated bool
	}{
		{"fits", 64, unix.MSG_TRUNC, "hello, datagram", 15, false},
		{"fits exactly", 15, unix.MSG_TRUNC, "hello, datagram", 15, false},
		{"empty", 16, unix.MSG_TRUNC, "", 0, false},
		{"truncated, MSG_TRUNC", 8, unix.MSG_TRUNC, "twenty bytes of data", 20, true},
		{"truncated", 8, 0, "twenty bytes of data", 8, true},
	} {
		in := newMsgSlot(c.room)
		out := newMsgSlot(64).to(bAddr, []byte(c.msg))
		recvUD, sendUD := uint64(2*i+1), uint64(2*i+2)
		PrepRecvMsg(r.GetSQE(), b, &in.hdr, c.flags, recvUD)
		PrepSendMsg(r.GetSQE(), a, &out.hdr, unix.MSG_DONTWAIT, sendUD)
		if _, err := r.Submit(); err != nil {
			t.Fatal(err)
		}
		await(t, r, 2)
		got := take(t, r)
		if s := got[sendUD]; s.Res != int32(len(c.msg)) {
			t.Errorf("%s: sendmsg %+v, want %d bytes sent", c.name, s, len(c.msg))
		}
		rc := got[recvUD]
		if rc.Res != int32(c.wantRes) {
			t.Errorf("%s: recvmsg %+v, want res %d", c.name, rc, c.wantRes)
			continue
		}
		if n := min(len(c.msg), c.room); !bytes.Equal(in.buf[:n], []byte(c.msg[:n])) {
			t.Errorf("%s: received %q, want %q", c.name, in.buf[:n], c.msg[:n])
		}
		if trunc := in.hdr.Flags&unix.MSG_TRUNC != 0; trunc != c.truncated {
			t.Errorf("%s: msg_flags %#x, MSG_TRUNC %v; want %v", c.name, in.hdr.Flags, trunc, c.truncated)
		}
		if name := in.name[:in.hdr.Namelen]; !bytes.Equal(name, aAddr) {
			t.Errorf("%s: sender %x, want %x", c.name, name, aAddr)
		}
	}
}

// A multishot recvmsg puts each datagram in a buffer of its group with the
// io_uring_recvmsg_out header and the sender's address before it, one
// completion each, and goes on; one larger than the room is cut and says so,
// with its real size; an empty one ends the receive (its completion, with its
// buffer, is the last); with no buffer left an arrival ends it with -ENOBUFS,
// and the datagram waits in the socket for a receive armed once buffers are
// recycled; a cancel ends it.
func TestRecvMsgMultishot(t *testing.T) {
	r := newRing(t, 8)
	const payloadRoom = 32
	const size = SizeofRecvMsgOut + unix.SizeofSockaddrInet6 + payloadRoom
	b, err := r.NewBufRing(3, 4, size)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	}()
	srv, srvAddr := udpSocket(t)
	a1, a1Addr := udpSocket(t)
	a2, a2Addr := udpSocket(t)
	tmpl := newTemplate()
	arm := func(ud uint64) {
		t.Helper()
		PrepRecvMsgMultishot(r.GetSQE(), srv, tmpl, 3, unix.MSG_TRUNC, ud)
		if _, err := r.Submit(); err != nil {
			t.Fatal(err)
		}
	}
	// next sends p from fd and returns the completion it caused.
	next := func(fd int, p []byte) CQE {
		t.Helper()
		if err := unix.Sendto(fd, p, 0, &unix.SockaddrInet4{Port: int(binary.BigEndian.Uint16(srvAddr[2:4])), Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			t.Fatal(err)
		}
		await(t, r, 1)
		c := *r.PeekCQE()
		r.CQESeen()
		return c
	}
	arm(1)
	long := bytes.Repeat([]byte("x"), payloadRoom+8)
	ids := map[uint16]bool{}
	for i, c := range []struct {
		from      int
		addr, msg []byte
		more      bool
	}{
		{a1, a1Addr, []byte("one"), true},
		{a2, a2Addr, []byte("two"), true},
		{a1, a1Addr, long, true},
		{a2, a2Addr, nil, false}, // empty: the last completion of this receive
	} {
		cqe := next(c.from, c.msg)
		if cqe.UserData != 1 || cqe.Flags&CQEFBuffer == 0 || (cqe.Flags&CQEFMore != 0) != c.more || cqe.Res < 0 {
			t.Fatalf("datagram %d: %+v, want one in a provided buffer, more to come %v", i, cqe, c.more)
		}
		id, buf := b.Buffer(cqe.Flags)
		if ids[id] {
			t.Fatalf("datagram %d in buffer %d, already taken", i, id)
		}
		ids[id] = true
		o, err := ParseRecvMsgOut(buf[:cqe.Res], unix.SizeofSockaddrInet6, 0)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		want := c.msg[:min(len(c.msg), payloadRoom)]
		if !bytes.Equal(o.Payload, want) || o.Size != len(c.msg) || o.Truncated() != (len(c.msg) > payloadRoom) || !bytes.Equal(o.Name, c.addr) {
			t.Fatalf("datagram %d: %q of %d bytes from %x, truncated %v (flags %#x); want %q of %d from %x, truncated %v",
				i, o.Payload, o.Size, o.Name, o.Truncated(), o.Flags, want, len(c.msg), c.addr, len(c.msg) > payloadRoom)
		}
	}
	// Armed again with the 4 buffers taken: the next arrival ends it.
	arm(2)
	if c := next(a1, []byte("waits")); c.UserData != 2 || c.Res != -int32(unix.ENOBUFS) || c.Flags&(CQEFMore|CQEFBuffer) != 0 {
		t.Fatalf("with no buffer left: %+v, want -ENOBUFS, no buffer, no more", c)
	}
	for id := range ids {
		b.Recycle(id)
	}
	arm(3)
	await(t, r, 1)
	c := *r.PeekCQE()
	r.CQESeen()
	if c.UserData != 3 || c.Flags&CQEFBuffer == 0 || c.Flags&CQEFMore == 0 {
		t.Fatalf("armed again after recycling: %+v", c)
	}
	_, buf := b.Buffer(c.Flags)
	if o, err := ParseRecvMsgOut(buf[:c.Res], unix.SizeofSockaddrInet6, 0); err != nil || string(o.Payload) != "waits" {
		t.Fatalf("the datagram that waited: %q, %v", o.Payload, err)
	}
	PrepCancel(r.GetSQE(), 3, 4)
	if _, err := r.Submit(); err != nil {
		t.Fatal(err)
	}
	await(t, r, 2)
	got := take(t, r)
	if c := got[3]; c.Res != -int32(unix.ECANCELED) || c.Flags&CQEFMore != 0 {
		t.Fatalf("the cancelled receive: %+v, want -ECANCELED and no more", c)
	}
	if c := got[4]; c.Res != 0 {
		t.Fatalf("the cancel: %+v, want res 0", c)
	}
}

// ParseRecvMsgOut on literal buffers: the header's fields, the name cut to
// its length, the payload after the name's room; a payload cut short is
// Truncated whether or not the flags say so; a buffer shorter than the header
// and the rooms is an error.
func TestParseRecvMsgOut(t *testing.T) {
	// out builds a buffer: the header, the name in nameRoom bytes, controlRoom
	// bytes of control, the payload.
	out := func(nameLen, payloadLen, flags uint32, name []byte, nameRoom, controlRoom int, payload string) []byte {
		b := binary.NativeEndian.AppendUint32(nil, nameLen)
		b = binary.NativeEndian.AppendUint32(b, 0)
		b = binary.NativeEndian.AppendUint32(b, payloadLen)
		b = binary.NativeEndian.AppendUint32(b, flags)
		room := make([]byte, nameRoom)
		copy(room, name)
		b = append(b, room...)
		b = append(b, make([]byte, controlRoom)...)
		return append(b, payload...)
	}
	v4 := []byte{2, 0, 0x1f, 0x90, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}
	for _, c := range []struct {
		name                  string
		buf                   []byte
		nameRoom, controlRoom int
		want                  RecvMsgOut
		truncated, err        bool
	}{
		{"ipv4 sender", out(16, 5, 0, v4, 28, 0, "hello"), 28, 0,
			RecvMsgOut{Name: v4, Payload: []byte("hello"), Size: 5}, false, false},
		{"control room skipped", out(16, 2, 0, v4, 28, 24, "hi"), 28, 24,
			RecvMsgOut{Name: v4, Payload: []byte("hi"), Size: 2}, false, false},
		{"empty", out(16, 0, 0, v4, 28, 0, ""), 28, 0,
			RecvMsgOut{Name: v4, Payload: []byte{}, Size: 0}, false, false},
		{"name longer than its room", out(16, 1, 0, v4, 8, 0, "x"), 8, 0,
			RecvMsgOut{Name: v4[:8], Payload: []byte("x"), Size: 1}, false, false},
		{"truncated by flags", out(16, 9, unix.MSG_TRUNC, v4, 28, 0, "abc"), 28, 0,
			RecvMsgOut{Name: v4, Payload: []byte("abc"), Size: 9, Flags: unix.MSG_TRUNC}, true, false},
		{"truncated by size", out(16, 9, 0, v4, 28, 0, "abc"), 28, 0,
			RecvMsgOut{Name: v4, Payload: []byte("abc"), Size: 9}, true, false},
		{"shorter than the header", make([]byte, 10), 28, 0, RecvMsgOut{}, false, true},
		{"shorter than the name's room", out(16, 0, 0, v4, 16, 0, ""), 28, 0, RecvMsgOut{}, false, true},
	} {
		got, err := ParseRecvMsgOut(c.buf, c.nameRoom, c.controlRoom)
		if (err != nil) != c.err {
			t.Errorf("%s: error %v, want one: %v", c.name, err, c.err)
			continue
		}
		if err != nil {
			continue
		}
		if !bytes.Equal(got.Name, c.want.Name) || !bytes.Equal(got.Payload, c.want.Payload) || got.Size != c.want.Size || got.Flags != c.want.Flags || got.Truncated() != c.truncated {
			t.Errorf("%s: got %+v truncated %v, want %+v truncated %v", c.name, got, got.Truncated(), c.want, c.truncated)
		}
	}
}

// With MSG_DONTWAIT a sendmsg to a socket without room completes at once
// with -EAGAIN; without it, the kernel waits for room and completes once the
// peer has read. (A Unix datagram socket is full once its peer holds as much
// as the sender's buffer: UDP on loopback hands its datagrams on at once.)
func TestSendMsgDontWait(t *testing.T) {
	r := newRing(t, 8)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	fill := make([]byte, 1024)
	queued := 0
	for ; ; queued++ {
		if err := unix.Sendto(fds[0], fill, unix.MSG_DONTWAIT, nil); err == unix.EAGAIN {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if queued > 1<<16 {
			t.Fatal("a Unix datagram socket took 64 MiB without filling")
		}
	}
	s := newMsgSlot(16).to(nil, []byte("dontwait"))
	s.hdr.Name = nil
	PrepSendMsg(r.GetSQE(), fds[0], &s.hdr, unix.MSG_DONTWAIT, 1)
	if c := one(t, r, "sendmsg MSG_DONTWAIT to a full socket"); c.UserData != 1 || c.Res != -int32(unix.EAGAIN) {
		t.Fatalf("sendmsg MSG_DONTWAIT to a full socket: %+v, want -EAGAIN", c)
	}
	w := newMsgSlot(16).to(nil, []byte("waits"))
	w.hdr.Name = nil
	PrepSendMsg(r.GetSQE(), fds[0], &w.hdr, 0, 2)
	for range 3 {
		if n, err := r.Poll(); n != 0 || err != nil {
			t.Fatalf("sendmsg to a full socket, no MSG_DONTWAIT: %d completions, %v; want it to wait", n, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	buf := make([]byte, len(fill))
	for i := range queued {
		if n, _, err := unix.Recvfrom(fds[1], buf, unix.MSG_DONTWAIT); err != nil || n != len(fill) {
			t.Fatalf("reading back datagram %d of %d: %d, %v", i, queued, n, err)
		}
	}
	await(t, r, 1)
	if c := take(t, r)[2]; c.Res != 5 {
		t.Fatalf("the waiting sendmsg once the peer read: %+v, want 5 bytes sent", c)
	}
	if n, _, err := unix.Recvfrom(fds[1], buf, unix.MSG_DONTWAIT); err != nil || string(buf[:n]) != "waits" {
		t.Fatalf("the waiting sendmsg's datagram: %q, %v", buf[:max(n, 0)], err)
	}
}

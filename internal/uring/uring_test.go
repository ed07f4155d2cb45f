package uring

import (
	"errors"
	"fmt"
	"net"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// newRing sets up a ring for a test, skipping with the kernel's reason where
// io_uring is refused, and closes it after.
func newRing(t *testing.T, entries uint32) *Ring {
	t.Helper()
	r, err := New(entries, 0)
	if errors.Is(err, ErrUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
	return r
}

func TestLayout(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"io_uring_params", unsafe.Sizeof(params{}), 120},
		{"io_uring_sqe", unsafe.Sizeof(SQE{}), 64},
		{"io_uring_cqe", unsafe.Sizeof(CQE{}), 16},
		{"sqe.user_data offset", unsafe.Offsetof(SQE{}.UserData), 32},
		{"sqe.addr3 offset", unsafe.Offsetof(SQE{}.Addr3), 48},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d bytes, want %d", c.name, c.got, c.want)
		}
	}
}

// nop queues a no-op carrying ud.
func nop(t *testing.T, r *Ring, ud uint64) {
	t.Helper()
	sqe := r.GetSQE()
	if sqe == nil {
		t.Fatalf("no SQE for %d with %d pending", ud, r.Pending())
	}
	sqe.Opcode, sqe.UserData = OpNop, ud
}

// reap takes every completion in the ring, checking each is a success, and
// returns their user data in order.
func reap(t *testing.T, r *Ring) []uint64 {
	t.Helper()
	var out []uint64
	for c := r.PeekCQE(); c != nil; c = r.PeekCQE() {
		if c.Res != 0 {
			t.Errorf("completion %d: res %d", c.UserData, c.Res)
		}
		out = append(out, c.UserData)
		r.CQESeen()
	}
	return out
}

// Many more operations than the rings hold, in batches: the indices wrap
// around both rings many times, every operation completes once, in order.
func TestWrapAround(t *testing.T) {
	r := newRing(t, 4)
	if r.SQEntries() != 4 || r.CQEntries() != 8 {
		t.Fatalf("rings of %d and %d entries, want 4 and 8", r.SQEntries(), r.CQEntries())
	}
	var next, want uint64
	for round := range 25 {
		batch := 1 + round%4
		for range batch {
			nop(t, r, next)
			next++
		}
		if n, err := r.SubmitAndWait(uint32(batch)); err != nil || n != batch {
			t.Fatalf("round %d: submitted %d, %v; want %d", round, n, err, batch)
		}
		for _, ud := range reap(t, r) {
			if ud != want {
				t.Fatalf("completion %d, want %d", ud, want)
			}
			want++
		}
	}
	if want != next || next < 60 {
		t.Fatalf("%d of %d completions", want, next)
	}
}

// A full submission ring hands out no entry until the kernel consumes some.
func TestFullSQ(t *testing.T) {
	r := newRing(t, 4)
	for i := range 4 {
		nop(t, r, uint64(i))
	}
	if sqe := r.GetSQE(); sqe != nil {
		t.Fatal("a fifth SQE from a ring of 4 with none submitted")
	}
	if n, err := r.SubmitAndWait(4); err != nil || n != 4 {
		t.Fatalf("submitted %d, %v", n, err)
	}
	if sqe := r.GetSQE(); sqe == nil {
		t.Fatal("no SQE once the kernel consumed the ring")
	}
	if got := reap(t, r); len(got) != 4 {
		t.Fatalf("%d completions, want 4", len(got))
	}
}

// More completions than the completion ring holds, none reaped: the kernel
// keeps the rest (FeatNoDrop) and says so; reaping and entering again brings
// every one of them, each once.
func TestCQOverflow(t *testing.T) {
	r := newRing(t, 4)
	if r.Features()&FeatNoDrop == 0 {
		t.Skip("the kernel drops completions on overflow (no IORING_FEAT_NODROP)")
	}
	const total = 20 // the completion ring holds 8
	for i := range total / 4 {
		for j := range 4 {
			nop(t, r, uint64(4*i+j))
		}
		if _, err := r.Submit(); err != nil {
			t.Fatal(err)
		}
	}
	held, dropped := r.Overflowed()
	if !held || dropped != 0 {
		t.Fatalf("after %d completions into a ring of %d: held %v, dropped %d; want held, none dropped", total, r.CQEntries(), held, dropped)
	}
	seen := map[uint64]int{}
	for range 10 {
		for _, ud := range reap(t, r) {
			seen[ud]++
		}
		if len(seen) == total {
			break
		}
		if _, err := r.SubmitAndWait(0); err != nil { // flushes the held ones
			t.Fatal(err)
		}
	}
	for ud := range uint64(total) {
		if seen[ud] != 1 {
			t.Errorf("completion %d seen %d times, want once", ud, seen[ud])
		}
	}
	if held, _ := r.Overflowed(); held {
		t.Error("the kernel still holds completions after they were all reaped")
	}
}

// Nothing to submit and nothing to wait for makes no syscall; Close releases
// the ring (a second Close is harmless).
func TestIdleAndClose(t *testing.T) {
	r, err := New(8, 0)
	if errors.Is(err, ErrUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if n, err := r.Submit(); n != 0 || err != nil {
		t.Fatalf("empty submit: %d, %v", n, err)
	}
	if c := r.PeekCQE(); c != nil {
		t.Fatalf("a completion from nothing: %+v", c)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

// A multishot accept completes once per connection and goes on (CQEFMore)
// until cancelled; the cancel completes, and so does the accept, cancelled.
func TestAcceptMultishotAndCancel(t *testing.T) {
	r := newRing(t, 8)
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ln)
	if err := unix.Bind(ln, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(ln, 16); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(ln)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)
	const acceptUD, cancelUD = 1, 2
	PrepAcceptMultishot(r.GetSQE(), ln, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, acceptUD)
	if _, err := r.Submit(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := r.SubmitAndWait(1); err != nil {
			t.Fatal(err)
		}
		cqe := r.PeekCQE()
		if cqe == nil || cqe.UserData != acceptUD || cqe.Res < 0 || cqe.Flags&CQEFMore == 0 {
			t.Fatalf("connection %d: completion %+v, want an accepted descriptor with more to come", i, cqe)
		}
		unix.Close(int(cqe.Res))
		r.CQESeen()
	}
	PrepCancel(r.GetSQE(), acceptUD, cancelUD)
	if _, err := r.SubmitAndWait(2); err != nil {
		t.Fatal(err)
	}
	got := map[uint64]CQE{}
	for c := r.PeekCQE(); c != nil; c = r.PeekCQE() {
		got[c.UserData] = *c
		r.CQESeen()
	}
	if c := got[cancelUD]; c.Res != 0 {
		t.Errorf("cancel: res %d, want 0 (found and cancelled)", c.Res)
	}
	if c := got[acceptUD]; c.Res != -int32(unix.ECANCELED) || c.Flags&CQEFMore != 0 {
		t.Errorf("the cancelled accept: %+v, want -ECANCELED and no more", c)
	}
}

// A send and a receive over a socket pair; then a close through the ring.
func TestSendRecvClose(t *testing.T) {
	r := newRing(t, 8)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	msg, buf := []byte("hello, ring"), make([]byte, 64)
	PrepSend(r.GetSQE(), fds[0], msg, unix.MSG_NOSIGNAL, 1)
	PrepRecv(r.GetSQE(), fds[1], buf, 0, 2)
	if _, err := r.SubmitAndWait(2); err != nil {
		t.Fatal(err)
	}
	res := map[uint64]int32{}
	for c := r.PeekCQE(); c != nil; c = r.PeekCQE() {
		res[c.UserData] = c.Res
		r.CQESeen()
	}
	if res[1] != int32(len(msg)) || res[2] != int32(len(msg)) || string(buf[:len(msg)]) != string(msg) {
		t.Fatalf("send %d, recv %d %q; want %d and %q", res[1], res[2], buf[:max(res[2], 0)], len(msg), msg)
	}
	PrepClose(r.GetSQE(), fds[0], 3)
	if _, err := r.SubmitAndWait(1); err != nil {
		t.Fatal(err)
	}
	if c := r.PeekCQE(); c == nil || c.UserData != 3 || c.Res != 0 {
		t.Fatalf("close: %+v", c)
	}
	r.CQESeen()
	if _, err := unix.Write(fds[0], []byte("x")); err != unix.EBADF {
		t.Fatalf("write to the closed descriptor: %v, want EBADF", err)
	}
}

// A multishot receive into provided buffers: one completion per arrival, each
// naming the buffer it filled; with the group's buffers all taken it ends
// with -ENOBUFS; recycled buffers are taken again.
func TestRecvMultishotBufRing(t *testing.T) {
	r := newRing(t, 8)
	for _, bad := range [][2]int{{3, 32}, {0, 32}, {1 << 16, 32}, {4, 0}} {
		if _, err := r.NewBufRing(6, bad[0], bad[1]); err == nil {
			t.Errorf("a buffer ring of %d buffers of %d bytes: no error", bad[0], bad[1])
		}
	}
	b, err := r.NewBufRing(7, 4, 32)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	}()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	recv := func(ud uint64) {
		PrepRecvMultishot(r.GetSQE(), fds[1], 7, ud)
		if _, err := r.Submit(); err != nil {
			t.Fatal(err)
		}
	}
	// next sends msg and returns the completion it caused.
	next := func(msg string) CQE {
		t.Helper()
		if _, err := unix.Write(fds[0], []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if _, err := r.SubmitAndWait(1); err != nil {
			t.Fatal(err)
		}
		c := r.PeekCQE()
		if c == nil {
			t.Fatal("no completion")
		}
		got := *c
		r.CQESeen()
		return got
	}
	recv(1)
	ids := map[uint16]bool{}
	for i := range 4 {
		msg := fmt.Sprintf("message %d", i)
		c := next(msg)
		if c.Res != int32(len(msg)) || c.Flags&CQEFBuffer == 0 || c.Flags&CQEFMore == 0 {
			t.Fatalf("message %d: %+v, want %d bytes in a provided buffer, more to come", i, c, len(msg))
		}
		id, buf := b.Buffer(c.Flags)
		if string(buf[:c.Res]) != msg || ids[id] {
			t.Fatalf("message %d in buffer %d: %q (ids so far %v)", i, id, buf[:c.Res], ids)
		}
		ids[id] = true
	}
	// All 4 buffers are taken: the next arrival ends the receive.
	if c := next("one too many"); c.Res != -int32(unix.ENOBUFS) || c.Flags&CQEFMore != 0 {
		t.Fatalf("with no buffer left: %+v, want -ENOBUFS and no more", c)
	}
	// Recycled, a buffer serves the data still waiting in the socket.
	for id := range ids {
		b.Recycle(id)
	}
	recv(2)
	if _, err := r.SubmitAndWait(1); err != nil {
		t.Fatal(err)
	}
	c := r.PeekCQE()
	if c == nil || c.UserData != 2 || c.Flags&CQEFBuffer == 0 {
		t.Fatalf("after recycling: %+v", c)
	}
	if _, buf := b.Buffer(c.Flags); string(buf[:c.Res]) != "one too many" {
		t.Fatalf("after recycling: %q", buf[:max(c.Res, 0)])
	}
	r.CQESeen()
	PrepCancel(r.GetSQE(), 2, 3)
	if _, err := r.SubmitAndWait(2); err != nil {
		t.Fatal(err)
	}
	for c := r.PeekCQE(); c != nil; c = r.PeekCQE() {
		r.CQESeen()
	}
}

package uring

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// newRing sets up a ring for a test, skipping with the kernel's reason where
// io_uring is refused, and closes it after.
func newRing(t *testing.T, entries uint32) *Ring {
	t.Helper()
	return newRingWith(t, entries, Options{})
}

// newRingWith is newRing with setup options.
func newRingWith(t *testing.T, entries uint32, opt Options) *Ring {
	t.Helper()
	r, err := New(entries, opt)
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
	r, err := New(8, Options{})
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

// socketPair is a connected pair of stream sockets, closed after the test.
func socketPair(t *testing.T) [2]int {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.Close(fds[0])
		unix.Close(fds[1])
	})
	return [2]int(fds)
}

// take takes every completion in the ring, whatever its result, by user data.
func take(t *testing.T, r *Ring) map[uint64]CQE {
	t.Helper()
	got := map[uint64]CQE{}
	for c := r.PeekCQE(); c != nil; c = r.PeekCQE() {
		if _, dup := got[c.UserData]; dup {
			t.Errorf("two completions for %d", c.UserData)
		}
		got[c.UserData] = *c
		r.CQESeen()
	}
	return got
}

// await waits, with Wait and for a few seconds at most, until the ring holds
// at least n completions.
func await(t *testing.T, r *Ring, n int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for r.Ready() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d completions after 3s, want %d", r.Ready(), n)
		}
		if r.Ready() > 0 {
			time.Sleep(time.Millisecond) // Wait would return at once
		}
		if _, err := r.Wait(100 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
}

// within runs f, failing the test if it has not returned after d: f may be
// blocked in the kernel for good, and the test stops waiting for it. f must
// not fail the test itself (it runs on another goroutine).
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s: still blocked after %v", what, d)
	}
}

// kernelAtLeast reports whether the running kernel is at least major.minor.
func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	var ma, mi int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// New hands the flags to the kernel and reports its refusal as it is: a ring
// of no entries, or SetupDeferTaskrun without SetupSingleIssuer, is EINVAL,
// not io_uring being unavailable.
func TestNewRefused(t *testing.T) {
	newRing(t, 4) // skips where io_uring is refused altogether
	for _, c := range []struct {
		name    string
		entries uint32
		opt     Options
	}{
		{"no entries", 0, Options{}},
		{"defer taskrun alone", 4, Options{Flags: SetupDeferTaskrun}},
	} {
		r, err := New(c.entries, c.opt)
		if err == nil {
			r.Close()
			t.Errorf("%s: a ring, want EINVAL", c.name)
			continue
		}
		if !errors.Is(err, unix.EINVAL) || errors.Is(err, ErrUnavailable) || r != nil {
			t.Errorf("%s: %v (ring %v), want EINVAL and not ErrUnavailable", c.name, err, r)
		}
	}
}

// Wait with nothing in flight returns once its timeout has passed, with no
// completion and no error; with completions to come it returns once there is
// one, whatever its timeout: none (negative), zero, or long.
func TestWait(t *testing.T) {
	r := newRing(t, 4)
	if r.Features()&FeatExtArg == 0 {
		t.Skip("no IORING_FEAT_EXT_ARG: Wait has no timeout")
	}
	// A signal may end a wait early (no error either): three tries.
	var waited time.Duration
	for range 3 {
		start := time.Now()
		var n int
		var err error
		within(t, 5*time.Second, "Wait(20ms) with nothing in flight", func() { n, err = r.Wait(20 * time.Millisecond) })
		if n != 0 || err != nil {
			t.Fatalf("Wait(20ms) with nothing in flight: %d, %v; want 0, nil", n, err)
		}
		if waited = time.Since(start); waited >= 5*time.Millisecond {
			break
		}
	}
	if waited < 5*time.Millisecond {
		t.Errorf("Wait(20ms) with nothing in flight returned after %v", waited)
	}
	// A NOP, submitted by Wait itself, completes as it is submitted.
	for i, timeout := range []time.Duration{-1, 0, time.Second} {
		nop(t, r, uint64(i))
		var n int
		var err error
		within(t, 5*time.Second, fmt.Sprintf("Wait(%v) with a NOP pending", timeout), func() { n, err = r.Wait(timeout) })
		if n != 1 || err != nil || r.Pending() != 0 {
			t.Fatalf("Wait(%v) with a NOP pending: %d, %v, %d still pending; want 1, nil, 0", timeout, n, err, r.Pending())
		}
		if got := reap(t, r); len(got) != 1 || got[0] != uint64(i) {
			t.Fatalf("Wait(%v): completions %v, want [%d]", timeout, got, i)
		}
	}
	// A receive completes later, when the peer writes: Wait without a limit
	// blocks until then (a signal may end one wait early, not many).
	fds := socketPair(t)
	buf := make([]byte, 16)
	PrepRecv(r.GetSQE(), fds[1], buf, 0, 9)
	go func() {
		time.Sleep(20 * time.Millisecond)
		unix.Write(fds[0], []byte("late"))
	}()
	var waits int
	var err error
	within(t, 5*time.Second, "Wait(-1) for a receive", func() {
		for waits < 3 {
			waits++
			if _, err = r.Wait(-1); err != nil || r.Ready() > 0 {
				return
			}
		}
	})
	if err != nil || r.Ready() != 1 {
		t.Fatalf("Wait(-1) for a receive: %v, %d completions after %d waits; want one in one wait", err, r.Ready(), waits)
	}
	if c := r.PeekCQE(); c.UserData != 9 || c.Res != 4 || string(buf[:4]) != "late" {
		t.Fatalf("receive: %+v %q", *c, buf)
	}
	r.CQESeen()
}

// Poll submits what is pending and returns at once how many completions the
// ring holds: queued NOPs complete as they are submitted; a receive with
// nothing to receive yet leaves Poll with 0, not blocked, until data arrives.
func TestPoll(t *testing.T) {
	r := newRing(t, 8)
	if n, err := r.Poll(); n != 0 || err != nil {
		t.Fatalf("Poll with nothing: %d, %v", n, err)
	}
	for i := range 3 {
		nop(t, r, uint64(i))
	}
	if n, err := r.Poll(); n != 3 || err != nil || r.Pending() != 0 || r.Ready() != 3 {
		t.Fatalf("Poll with 3 NOPs queued: %d, %v, %d pending, %d ready; want 3, nil, 0, 3", n, err, r.Pending(), r.Ready())
	}
	if got := reap(t, r); fmt.Sprint(got) != "[0 1 2]" {
		t.Fatalf("completions %v, want [0 1 2]", got)
	}
	if n, err := r.Poll(); n != 0 || err != nil {
		t.Fatalf("Poll once reaped: %d, %v", n, err)
	}
	fds := socketPair(t)
	buf := make([]byte, 16)
	PrepRecv(r.GetSQE(), fds[1], buf, 0, 7)
	if n, err := r.Poll(); n != 0 || err != nil || r.Pending() != 0 {
		t.Fatalf("Poll with a receive and nothing sent: %d, %v, %d pending; want 0, nil, 0", n, err, r.Pending())
	}
	if _, err := unix.Write(fds[0], []byte("ping")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(3 * time.Second); r.Ready() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no completion from Poll 3s after the peer wrote")
		}
		if _, err := r.Poll(); err != nil {
			t.Fatal(err)
		}
	}
	if c := take(t, r)[7]; c.Res != 4 || string(buf[:4]) != "ping" {
		t.Fatalf("receive: %+v %q, want 4 bytes \"ping\"", c, buf)
	}
}

// Rings whose completion work runs when their task enters the kernel
// (SetupCoopTaskrun), which one thread uses (SetupSingleIssuer), or whose
// completion work runs only when that thread asks for completions
// (SetupDeferTaskrun): a receive completes with the bytes the peer sent,
// through Poll and through Wait. With SetupDeferTaskrun nothing is posted
// until the thread asks. Each subtest keeps to its OS thread.
func TestTaskrunFlags(t *testing.T) {
	for _, c := range []struct {
		name     string
		flags    uint32
		deferred bool
	}{
		{"coop", SetupCoopTaskrun, false},
		{"single issuer", SetupSingleIssuer, false},
		{"defer", SetupSingleIssuer | SetupDeferTaskrun, true},
		{"coop defer", SetupCoopTaskrun | SetupSingleIssuer | SetupDeferTaskrun, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			runtime.LockOSThread() // the single issuer is the thread that set the ring up
			defer runtime.UnlockOSThread()
			r, err := New(8, Options{Flags: c.flags})
			if errors.Is(err, ErrUnavailable) || errors.Is(err, unix.EINVAL) && !kernelAtLeast(6, 1) {
				t.Skip(err) // EINVAL: a kernel older than the flags
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := r.Close(); err != nil {
					t.Error(err)
				}
			})
			fds := socketPair(t)
			for i, how := range []string{"Poll", "Wait"} {
				buf := make([]byte, 32)
				PrepRecv(r.GetSQE(), fds[1], buf, 0, uint64(i))
				if _, err := r.Submit(); err != nil {
					t.Fatal(err)
				}
				msg := fmt.Sprintf("through %s", how)
				if _, err := unix.Write(fds[0], []byte(msg)); err != nil {
					t.Fatal(err)
				}
				if c.deferred {
					time.Sleep(10 * time.Millisecond)
					if n := r.Ready(); n != 0 {
						t.Fatalf("%s: %d completions posted before the thread asked", how, n)
					}
				}
				deadline := time.Now().Add(3 * time.Second)
				for r.Ready() == 0 {
					if time.Now().After(deadline) {
						t.Fatalf("%s: no completion 3s after the peer wrote", how)
					}
					if how == "Poll" {
						_, err = r.Poll()
						time.Sleep(time.Millisecond)
					} else {
						_, err = r.Wait(time.Second)
					}
					if err != nil {
						t.Fatalf("%s: %v", how, err)
					}
				}
				got := take(t, r)
				if cqe, ok := got[uint64(i)]; len(got) != 1 || !ok || cqe.Res != int32(len(msg)) || string(buf[:len(msg)]) != msg {
					t.Fatalf("%s: completions %+v, buffer %q; want one of %d bytes %q", how, got, buf, len(msg), msg)
				}
			}
		})
	}
}

// waitAsleep waits until the ring's submission thread has gone to sleep (the
// ring says it needs a wakeup), for a while well under the kernel's default
// idle time of a second: the thread must have been set up with a short one.
func waitAsleep(t *testing.T, r *Ring) {
	t.Helper()
	for deadline := time.Now().Add(750 * time.Millisecond); atomic.LoadUint32(r.sqFlags)&sqNeedWakeup == 0; time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the submission thread still awake 750ms after its last work (idle 10ms)")
		}
	}
}

// readyWithoutEntering waits for n completions by looking at the completion
// ring only: no syscall, so nothing but the submission that came before
// woke the kernel's thread.
func readyWithoutEntering(t *testing.T, r *Ring, n int, after string) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); r.Ready() < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %d completions in 3s, want %d", after, r.Ready(), n)
		}
	}
}

// With SetupSQPoll a kernel thread consumes the submission ring: Submit
// publishes the entries and the NOPs complete. Once the thread has slept
// (SQThreadIdle after its last work), Submit, Poll and Wait each wake it, and
// NextSQE on a full ring wakes it and waits until it has made room.
func TestSQPoll(t *testing.T) {
	r := newRingWith(t, 8, Options{Flags: SetupSQPoll, SQThreadIdle: 10 * time.Millisecond})
	for i := range 4 {
		nop(t, r, uint64(i))
	}
	if n, err := r.Submit(); n != 4 || err != nil || r.Pending() != 0 {
		t.Fatalf("submit 4 NOPs: %d, %v, %d pending; want 4, nil, 0", n, err, r.Pending())
	}
	await(t, r, 4)
	if got := reap(t, r); fmt.Sprint(got) != "[0 1 2 3]" {
		t.Fatalf("completions %v, want [0 1 2 3]", got)
	}
	ud := uint64(10)
	for _, c := range []struct {
		name   string
		submit func() error
	}{
		{"Submit", func() error { _, err := r.Submit(); return err }},
		{"Poll", func() error { _, err := r.Poll(); return err }},
		{"Wait", func() error { _, err := r.Wait(time.Second); return err }},
	} {
		waitAsleep(t, r)
		nop(t, r, ud)
		nop(t, r, ud+1)
		if err := c.submit(); err != nil {
			t.Fatalf("%s to the sleeping thread: %v", c.name, err)
		}
		readyWithoutEntering(t, r, 2, c.name+" to the sleeping thread")
		if got := reap(t, r); len(got) != 2 || got[0] != ud || got[1] != ud+1 {
			t.Fatalf("%s: completions %v, want [%d %d]", c.name, got, ud, ud+1)
		}
		ud += 2
	}
	// A full ring, the thread asleep: NextSQE publishes, wakes it, waits.
	waitAsleep(t, r)
	for i := range 8 {
		nop(t, r, uint64(100+i))
	}
	if r.GetSQE() != nil {
		t.Fatal("a ninth SQE from a ring of 8 with none submitted")
	}
	var sqe *SQE
	var err error
	within(t, 5*time.Second, "NextSQE on a full SQPOLL ring", func() { sqe, err = r.NextSQE() })
	if sqe == nil || err != nil {
		t.Fatalf("NextSQE on a full ring: %v, %v", sqe, err)
	}
	sqe.Opcode, sqe.UserData = OpNop, 108
	if _, err := r.Submit(); err != nil {
		t.Fatal(err)
	}
	await(t, r, 9)
	got := reap(t, r)
	for i, ud := range got {
		if ud != uint64(100+i) {
			t.Fatalf("completions %v, want 100 to 108 in order", got)
		}
	}
	if len(got) != 9 {
		t.Fatalf("completions %v, want 100 to 108", got)
	}
}

// NextSQE on a full ring submits what is pending to make room and hands out
// the next entry; with room it is GetSQE and submits nothing.
func TestNextSQE(t *testing.T) {
	r := newRing(t, 4)
	for i := range 4 {
		nop(t, r, uint64(i))
	}
	if r.GetSQE() != nil {
		t.Fatal("a fifth SQE from a ring of 4 with none submitted")
	}
	sqe, err := r.NextSQE()
	if sqe == nil || err != nil {
		t.Fatalf("NextSQE on a full ring: %v, %v", sqe, err)
	}
	if r.Pending() != 1 || r.Ready() != 4 {
		t.Fatalf("after NextSQE on a full ring: %d pending, %d ready; want 1 (its entry), 4 (the NOPs it submitted)", r.Pending(), r.Ready())
	}
	sqe.Opcode, sqe.UserData = OpNop, 4
	if sqe, err = r.NextSQE(); sqe == nil || err != nil {
		t.Fatalf("NextSQE with room: %v, %v", sqe, err)
	}
	sqe.Opcode, sqe.UserData = OpNop, 5
	if r.Pending() != 2 || r.Ready() != 4 {
		t.Fatalf("after NextSQE with room: %d pending, %d ready; want 2, 4 (nothing submitted)", r.Pending(), r.Ready())
	}
	if _, err := r.SubmitAndWait(2); err != nil {
		t.Fatal(err)
	}
	if got := reap(t, r); fmt.Sprint(got) != "[0 1 2 3 4 5]" {
		t.Fatalf("completions %v, want [0 1 2 3 4 5]", got)
	}
}

// one submits what is pending and returns the one completion it brings.
func one(t *testing.T, r *Ring, what string) CQE {
	t.Helper()
	if _, err := r.Submit(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	await(t, r, 1)
	c := *r.PeekCQE()
	r.CQESeen()
	if n := r.Ready(); n != 0 {
		t.Fatalf("%s: %d more completions, want one in all", what, n)
	}
	return c
}

// Splice moves a file's bytes at an offset into a pipe, and from the pipe
// (no offsets) into a socket: the other end reads the file's bytes from that
// offset. A splice reaching past the file's end moves what is left; one from
// its end or beyond moves nothing (Res 0).
func TestSplice(t *testing.T) {
	r := newRing(t, 8)
	content := make([]byte, 200<<10)
	for i := range content {
		content[i] = byte(i % 251) // no period dividing a page: a misplaced offset shows
	}
	f, err := os.CreateTemp(t.TempDir(), "splice")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(content); err != nil {
		t.Fatal(err)
	}
	file := int(f.Fd())
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	fds := socketPair(t)
	if err := unix.SetsockoptTimeval(fds[1], unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 3}); err != nil {
		t.Fatal(err)
	}

	const off, n = 70001, 60000 // under a pipe's 64 KiB
	for moved := 0; moved < n; {
		PrepSplice(r.GetSQE(), file, int64(off+moved), p[1], NoOffset, n-moved, 0, 1)
		c := one(t, r, "splice file to pipe")
		if c.UserData != 1 || c.Res <= 0 {
			t.Fatalf("splice file to pipe at %d: %+v, want bytes moved", off+moved, c)
		}
		for out := 0; out < int(c.Res); {
			PrepSplice(r.GetSQE(), p[0], NoOffset, fds[0], NoOffset, int(c.Res)-out, 0, 2)
			o := one(t, r, "splice pipe to socket")
			if o.UserData != 2 || o.Res <= 0 {
				t.Fatalf("splice pipe to socket: %+v, want bytes moved", o)
			}
			out += int(o.Res)
		}
		moved += int(c.Res)
	}
	got := make([]byte, 0, n)
	for len(got) < n {
		k, err := unix.Read(fds[1], got[len(got):n])
		if err != nil || k == 0 {
			t.Fatalf("read %d of %d bytes from the socket: %d, %v", len(got), n, k, err)
		}
		got = got[:len(got)+k]
	}
	if !bytes.Equal(got, content[off:off+n]) {
		i := 0
		for got[i] == content[off+i] {
			i++
		}
		t.Fatalf("the socket read a byte %d at %d, the file has %d there", got[i], i, content[off+i])
	}

	for _, c := range []struct {
		off  int64
		want int32
	}{
		{int64(len(content)) - 100, 100},
		{int64(len(content)), 0},
		{int64(len(content)) + 4096, 0},
	} {
		PrepSplice(r.GetSQE(), file, c.off, p[1], NoOffset, 4096, 0, 3)
		if cqe := one(t, r, "splice near the end"); cqe.Res != c.want {
			t.Fatalf("splice 4096 bytes at %d of a file of %d: res %d, want %d", c.off, len(content), cqe.Res, c.want)
		}
	}
	tail := make([]byte, 200)
	if k, err := unix.Read(p[0], tail); err != nil || !bytes.Equal(tail[:k], content[len(content)-100:]) {
		t.Fatalf("the pipe holds %d bytes (%v), want the file's last 100", k, err)
	}
}

// PrepCancelFD cancels every operation in flight on a descriptor, and only
// those: two receives on one socket complete with -ECANCELED and the cancel's
// Res counts them; a receive on the other socket stays in flight and still
// receives. A second cancel on the descriptor finds nothing: Res 0, the count
// (with IORING_ASYNC_CANCEL_ALL the kernel counts, it does not say -ENOENT).
func TestCancelFD(t *testing.T) {
	r := newRing(t, 8)
	fds := socketPair(t)
	bufs := [3][]byte{make([]byte, 8), make([]byte, 8), make([]byte, 8)}
	PrepRecv(r.GetSQE(), fds[1], bufs[0], 0, 1)
	PrepRecv(r.GetSQE(), fds[1], bufs[1], 0, 2)
	PrepRecv(r.GetSQE(), fds[0], bufs[2], 0, 3)
	if n, err := r.Poll(); n != 0 || err != nil {
		t.Fatalf("receives with nothing sent: %d completions, %v", n, err)
	}
	PrepCancelFD(r.GetSQE(), fds[1], 10)
	if _, err := r.Submit(); err != nil {
		t.Fatal(err)
	}
	await(t, r, 3)
	time.Sleep(10 * time.Millisecond) // a wrong fourth completion would show
	if _, err := r.Poll(); err != nil {
		t.Fatal(err)
	}
	got := take(t, r)
	if c, ok := got[10]; !ok || c.Res != 2 {
		t.Errorf("cancel by descriptor: %+v, want res 2 (found two)", c)
	}
	for _, ud := range []uint64{1, 2} {
		if c, ok := got[ud]; !ok || c.Res != -int32(unix.ECANCELED) {
			t.Errorf("receive %d on the cancelled descriptor: %+v, want -ECANCELED", ud, c)
		}
	}
	if c, ok := got[3]; ok || len(got) != 3 {
		t.Fatalf("completions %+v; the receive on the other descriptor (%+v) should be in flight", got, c)
	}
	if _, err := unix.Write(fds[1], []byte("still")); err != nil {
		t.Fatal(err)
	}
	await(t, r, 1)
	if c := take(t, r)[3]; c.Res != 5 || string(bufs[2][:5]) != "still" {
		t.Fatalf("the receive left in flight: %+v %q, want 5 bytes \"still\"", c, bufs[2])
	}
	PrepCancelFD(r.GetSQE(), fds[1], 11)
	if c := one(t, r, "cancel with nothing in flight"); c.UserData != 11 || c.Res != 0 {
		t.Fatalf("cancel with nothing in flight: %+v, want res 0 (none found)", c)
	}
}

// A poll for POLLIN on an eventfd completes only once the eventfd is
// readable, with POLLIN (and not POLLOUT, which it was not asked for, though
// the eventfd is writable), and only once (it is one-shot).
func TestPollAdd(t *testing.T) {
	r := newRing(t, 4)
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	// nothing submits what is pending and checks, a while later, that no
	// completion came (with Poll: a broken Wait could block for good).
	nothing := func(what string) {
		t.Helper()
		for range 2 {
			if n, err := r.Poll(); n != 0 || err != nil || r.Pending() != 0 {
				t.Fatalf("%s: %d completions, %v, %d pending; want none, nil, 0", what, n, err, r.Pending())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	PrepPollAdd(r.GetSQE(), efd, unix.POLLIN, 5)
	nothing("poll on an eventfd at 0")
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	if _, err := unix.Write(efd, one[:]); err != nil {
		t.Fatal(err)
	}
	await(t, r, 1)
	c := take(t, r)[5]
	if c.Res < 0 || c.Res&unix.POLLIN == 0 || c.Res&unix.POLLOUT != 0 {
		t.Fatalf("poll once written: %+v, want res with POLLIN and not POLLOUT", c)
	}
	if _, err := unix.Write(efd, one[:]); err != nil {
		t.Fatal(err)
	}
	nothing("written again, the one-shot poll done")
}

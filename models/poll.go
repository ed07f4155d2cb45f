package models

// poll: one thread multiplexes every connection with poll(2), as in the seed's notes:
// an array of struct pollfd {fd, events, revents}, rebuilt from the table of live
// connections on each pass and scanned in full after each return.
//
// Where it comes from: System V Release 3 (1987), the answer to select's fixed
// bitmaps.
//
// Strengths: no FD_SETSIZE ceiling (descriptors of any number, up to RLIMIT_NOFILE);
// one thread, no locks. Limits: every pass copies the whole array into the kernel and
// the kernel polls every descriptor, and the loop scans every revents, so each pass
// costs O(connections) even when one is ready — the cost epoll was made to remove.

import (
	"context"
	"os"
	"runtime"

	"golang.org/x/sys/unix"

	"concbench/internal/rawio"
	"concbench/internal/sock"
)

func init() {
	Register("poll", "one thread, poll(2): no descriptor ceiling, but O(n) copy and scan per pass",
		func() Model { return pollModel{} })
}

var _ Model = pollModel{}

type pollModel struct{}

// The first two pollfds are fixed: the waker and the listener.
const (
	pollWake = iota
	pollListen
	pollFirst
)

func (pollModel) Serve(ctx context.Context, ln *sock.Listener, env *Env) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	w, err := newWaker(ctx)
	if err != nil {
		return err
	}
	defer w.close()
	t := &table{loop: newLoop(env), gate: newAcceptGate(env, ln.FD, unix.SOCK_NONBLOCK)}
	defer t.closeAll()

	// t.clients[i] is watched by pfds[pollFirst+i]; the shutdown, drain and idle
	// sweep of t.pass run between passes, while the two need not agree.
	pfds := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}, {Fd: int32(ln.FD)}}
	var busy rawio.Busy
	for !t.pass(ctx) {
		// A negative fd is skipped by the kernel: that is how the listener leaves the
		// array while accepting is paused or for good once draining.
		pfds[pollListen] = unix.PollFd{Fd: int32(ln.FD), Events: unix.POLLIN}
		if !t.gate.open(true) {
			pfds[pollListen].Fd = -1
		}
		pfds = pfds[:pollFirst]
		for _, c := range t.clients {
			var ev int16
			if t.wantRead(c) {
				ev |= unix.POLLIN
			}
			if t.wantWrite(c) {
				ev |= unix.POLLOUT
			}
			pfds = append(pfds, unix.PollFd{Fd: int32(c.fd), Events: ev})
		}
		// Busy, poll first without blocking (see poller.wait); block only if
		// nothing is ready: ppoll leaves the array as it was but for revents.
		timeout := t.gate.timeoutMS(t.timeoutMS())
		n, err := busy.Wait(timeout,
			func() (int, error) { return rawio.PollNow(pfds) },
			func() (int, error) { return unix.Poll(pfds, timeout) })
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("poll", err)
		}
		t.tick()
		if n == 0 {
			continue
		}
		if pfds[pollWake].Revents != 0 {
			w.clear() // a draining loop must not find it readable on every pass
		}
		// Serve the connections polled this pass before accepting, so the indices of
		// pfds and t.clients still agree; removals swap from the end, so walk
		// backwards.
		for i := len(pfds) - 1; i >= pollFirst; i-- {
			re := pfds[i].Revents
			if re == 0 {
				continue
			}
			c := t.clients[i-pollFirst]
			// POLLHUP/POLLERR are reported whatever was asked: let the read or write
			// that follows meet the error or the end of input.
			broken := re&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0
			t.serviceLT(c, re&unix.POLLIN != 0 || broken, re&unix.POLLOUT != 0 || broken)
			if t.finished(c) {
				t.drop(c)
			}
		}
		if pfds[pollListen].Revents&unix.POLLIN != 0 {
			for range acceptBatch {
				fd := t.gate.accept()
				if fd < 0 {
					break
				}
				t.insert(t.add(fd))
			}
		}
	}
	return nil
}

// ServeDatagrams: the same thread and poll(2) over the waker and the one
// datagram socket, one receive call per readiness (see dgram.go).
func (pollModel) ServeDatagrams(ctx context.Context, ds *sock.Listener, env *Env) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	w, err := newWaker(ctx)
	if err != nil {
		return err
	}
	defer w.close()
	defer rcvbufDropsGauge(env, ds.FD)()
	pfds := make([]unix.PollFd, 2)
	var busy rawio.Busy
	return dgramLoop(ctx, []*dgramSock{newDgramSock(ds.FD, env)}, false, func(ms int, ready func(int)) error {
		pfds[0] = unix.PollFd{Fd: int32(w.fd), Events: unix.POLLIN}
		pfds[1] = unix.PollFd{Fd: int32(ds.FD), Events: unix.POLLIN}
		_, err := busy.Wait(ms,
			func() (int, error) { return rawio.PollNow(pfds) },
			func() (int, error) { return unix.Poll(pfds, ms) })
		if err == unix.EINTR {
			return nil
		}
		if err != nil {
			return os.NewSyscallError("poll", err)
		}
		if pfds[1].Revents&(unix.POLLIN|unix.POLLERR) != 0 {
			ready(0)
		}
		return nil
	})
}

package models

// select: one thread multiplexes every connection with select(2), as in the seed's
// notes: an allset copied into the read and write sets on every pass, maxfd+1, a
// client table, and the --nready short-cut that stops scanning once every ready
// descriptor has been handled.
//
// Where it comes from: 4.2BSD (1983); the first way one Unix process could serve many
// sockets without a process or thread each.
//
// Strengths: one thread, no locks, no context switches between connections; cheap at
// a handful of connections. Limits: the sets are fixed bitmaps of FD_SETSIZE (1024)
// bits, so a descriptor numbered 1024 or above cannot be watched at all; this model
// accepts such a connection and closes it at once (counted as refused, logged once),
// which is the property to measure, not a bug to hide. Every pass rebuilds and the
// kernel scans sets up to maxfd, so cost grows with the number of connections, not
// the number that are ready.

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"concbench/internal/rawio"
	"concbench/internal/sock"
)

func init() {
	Register("select", "one thread, select(2): simplest multiplexer; O(n) per pass, hard limit of 1024 descriptors",
		func() Model { return selectModel{} })
	refuses("select", "its descriptor was at or above FD_SETSIZE (1024), which select(2) cannot watch")
}

var _ Model = selectModel{}

type selectModel struct{}

func (selectModel) Serve(ctx context.Context, ln *sock.Listener, env *Env) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	w, err := newWaker(ctx)
	if err != nil {
		return err
	}
	defer w.close()
	if ln.FD >= unix.FD_SETSIZE || w.fd >= unix.FD_SETSIZE {
		return fmt.Errorf("select: listener fd %d or wake fd %d: %w", ln.FD, w.fd, ErrFDSetSize)
	}
	t := &table{loop: newLoop(env), gate: newAcceptGate(env, ln.FD, unix.SOCK_NONBLOCK)}
	defer t.closeAll()

	var (
		rset, wset   unix.FdSet
		loggedRefuse bool
		busy         rawio.Busy
	)
	for !t.pass(ctx) {
		// The seed's allset, rebuilt from the table on each pass.
		rset.Zero()
		wset.Zero()
		rset.Set(w.fd)
		maxfd := max(w.fd, ln.FD)
		accepting := t.gate.open(true)
		if accepting {
			rset.Set(ln.FD)
		}
		for _, c := range t.clients {
			if t.wantRead(c) {
				rset.Set(c.fd)
			}
			if t.wantWrite(c) {
				wset.Set(c.fd)
			}
			maxfd = max(maxfd, c.fd)
		}
		var tv *unix.Timeval
		ms := t.gate.timeoutMS(t.timeoutMS())
		if ms >= 0 {
			t := unix.NsecToTimeval(int64(ms) * int64(time.Millisecond))
			tv = &t
		}
		// Busy, poll first without blocking (see poller.wait); block only if
		// nothing is ready, with the sets as built (pselect6 rewrites them).
		rwant, wwant := rset, wset
		nready, err := busy.Wait(ms,
			func() (int, error) { return rawio.SelectNow(maxfd+1, &rset, &wset) },
			func() (int, error) {
				rset, wset = rwant, wwant // as built: the poll rewrote them
				return unix.Select(maxfd+1, &rset, &wset, nil, tv)
			})
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("select", err)
		}
		t.tick()
		if rset.IsSet(w.fd) {
			nready--
			w.clear() // a draining loop must not find it readable on every pass
		}
		if accepting && rset.IsSet(ln.FD) {
			nready--
			for range acceptBatch {
				fd := t.gate.accept()
				if fd < 0 {
					break
				}
				if fd >= unix.FD_SETSIZE {
					unix.Close(fd)
					env.Stats.refused.Add(1)
					if !loggedRefuse {
						loggedRefuse = true
						env.Log.Printf("select: refusing connection on fd %d: %v (%d); logged once, counted in refused", fd, ErrFDSetSize, unix.FD_SETSIZE)
					}
					continue
				}
				t.insert(t.add(fd))
			}
		}
		// Connections accepted just now were not in the sets: IsSet is false for them.
		for i := 0; i < len(t.clients) && nready > 0; {
			c := t.clients[i]
			r, wr := rset.IsSet(c.fd), wset.IsSet(c.fd)
			if !r && !wr {
				i++
				continue
			}
			if r {
				nready--
			}
			if wr {
				nready--
			}
			t.serviceLT(c, r, wr)
			if t.finished(c) {
				t.drop(c)
				continue // t.clients[i] is now another connection
			}
			i++
		}
	}
	return nil
}

// ServeDatagrams: the same thread and select(2) over the waker and the one
// datagram socket, one receive call per readiness (see dgram.go). With one
// socket select's O(n) scan costs nothing: what it shows here is the fixed
// cost of a readiness wait per batch.
func (selectModel) ServeDatagrams(ctx context.Context, ds *sock.Listener, env *Env) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	w, err := newWaker(ctx)
	if err != nil {
		return err
	}
	defer w.close()
	if ds.FD >= unix.FD_SETSIZE || w.fd >= unix.FD_SETSIZE {
		return fmt.Errorf("select: socket fd %d or wake fd %d: %w", ds.FD, w.fd, ErrFDSetSize)
	}
	defer rcvbufDropsGauge(env, ds.FD)()
	var (
		rset unix.FdSet
		busy rawio.Busy
	)
	nfd := max(w.fd, ds.FD) + 1
	return dgramLoop(ctx, []*dgramSock{newDgramSock(ds.FD, env)}, false, func(ms int, ready func(int)) error {
		rset.Zero()
		rset.Set(w.fd)
		rset.Set(ds.FD)
		want := rset
		var tv *unix.Timeval
		if ms >= 0 {
			t := unix.NsecToTimeval(int64(ms) * int64(time.Millisecond))
			tv = &t
		}
		_, err := busy.Wait(ms,
			func() (int, error) { return rawio.SelectNow(nfd, &rset, nil) },
			func() (int, error) {
				rset = want
				return unix.Select(nfd, &rset, nil, nil, tv)
			})
		if err == unix.EINTR {
			return nil
		}
		if err != nil {
			return os.NewSyscallError("select", err)
		}
		if rset.IsSet(ds.FD) {
			ready(0)
		}
		return nil
	})
}

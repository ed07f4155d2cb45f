package models

// The datagram protocols (udp-echo) in the models that fit them. A UDP server
// has no connection to accept, to hand to a thread or a process, or to close:
// one socket carries every peer, and each datagram is a request on its own. The
// concurrency levers are different too: how many datagrams one syscall moves
// (recvmmsg/sendmmsg, Config.Batch) and how many sockets — bound to one port
// with SO_REUSEPORT, the kernel spreading peers across them — are served by how
// many threads or processes.
//
// What every model shares is here: dgramSock, one socket served by one thread
// with its batch of slots, and the counting; and the loop of the readiness
// models (select, poll, epoll-lt, epoll-et, and the sub-loops of multireactor
// and prefork), which differ only in their wait and in what one readiness
// obliges them to do:
//
//   - level-triggered (select, poll, epoll-lt): one receive call (recvfrom, or
//     recvmmsg of up to Batch) per readiness, as the seed's loops read once per
//     event; the socket is reported again while datagrams wait.
//   - edge-triggered (epoll-et): receive until EAGAIN — the edge is reported
//     once — with a budget per pass so that the loop still sees its waker.
//
// Replies go out with sendto (sendmmsg for more than one). A reply the socket
// cannot take (EAGAIN: its send buffer full) is dropped and counted in
// dropped_send_full: the socket serves every peer, so waiting for it to drain
// would stop reading for all of them while their datagrams overflow the
// receive buffer instead — the loss would move, not go away — and UDP promises
// no delivery; a client counts the datagram as lost. Datagrams larger than
// Config.MaxDatagram are dropped whole (dropped_oversize), never echoed in part.
// A server stops at once when cancelled: between datagrams it owes nothing, so
// Grace has nothing to drain.

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"concbench/internal/proto"
	"concbench/internal/rawio"
	"concbench/internal/sock"
)

// DatagramServer is a model that also serves the datagram protocols.
type DatagramServer interface {
	// ServeDatagrams answers the datagrams that arrive on ds — a bound,
	// non-blocking UDP socket that belongs to the caller and stays open — with
	// env.Proto (a proto.Datagram) until ctx is cancelled. It then stops at
	// once, releases every descriptor, thread, goroutine and process it
	// started (sockets it bound besides ds included) and returns nil. A
	// non-nil error means it could not start or hit a fault it cannot serve
	// through.
	ServeDatagrams(ctx context.Context, ds *sock.Listener, env *Env) error
}

// Datagram limits of Config.
const (
	DefaultBatch = 1
	// MaxBatch bounds Config.Batch (the kernel's UIO_MAXIOV bounds one
	// recvmmsg at 1024 messages).
	MaxBatch = 1024
	// dgramBudget bounds the datagrams one socket is served per pass of an
	// edge-triggered loop, so that a flood does not keep it from its waker.
	dgramBudget = 256
)

// DatagramRefusal is why the named model does not serve the datagram
// protocols, or "" if it does.
func DatagramRefusal(name string) string {
	regMu.Lock()
	e, ok := registry[name]
	regMu.Unlock()
	if !ok {
		return ""
	}
	if e.noDatagrams != "" {
		return e.noDatagrams
	}
	if _, ok := e.new().(DatagramServer); !ok {
		return "it serves connections only"
	}
	return ""
}

// DatagramModels lists the models that serve the datagram protocols, sorted.
func DatagramModels() []string {
	var names []string
	for _, n := range Names() {
		if DatagramRefusal(n) == "" {
			names = append(names, n)
		}
	}
	return names
}

// servesConnectionsOnly records why model name, a design built on
// connections, does not serve datagrams; a model's init calls it after
// Register.
func servesConnectionsOnly(name, why string) {
	amend(name, func(e *entry) { e.noDatagrams = why })
}

// dgramSock is one datagram socket served by one thread at a time: its slots,
// the protocol, and the counting.
type dgramSock struct {
	fd    int
	env   *Env
	proto proto.Datagram
	m     *rawio.Msgs
	// logged: a send error other than EAGAIN was logged (once per socket).
	logged bool
	// read counts the datagrams read from this socket (the common counter
	// sums every socket's), for a model's per-loop gauge.
	read atomic.Int64
}

func newDgramSock(fd int, env *Env) *dgramSock {
	return &dgramSock{fd: fd, env: env, proto: env.Proto.(proto.Datagram), m: rawio.NewMsgs(env.Config.batch(), env.Config.maxDatagram())}
}

// recv reads what waits, up to the batch: the number read (0 when none did:
// EAGAIN). An error other than EAGAIN is the socket's fault, and returned.
func (d *dgramSock) recv() (int, error) {
	n, err := d.m.Recv(d.fd)
	if err == unix.EAGAIN {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("datagram socket %d: %w", d.fd, os.NewSyscallError("recvmmsg", err))
	}
	d.env.Stats.dgramIn.Add(int64(n))
	d.read.Add(int64(n))
	return n, nil
}

// answer turns the n datagrams of the last recv into replies, in place, and
// queues them (oversize ones dropped and counted).
func (d *dgramSock) answer(n int) {
	answerInto(d.m, n, d.proto, d.env.Stats)
}

// answerInto is answer for a batch held by any goroutine (threadpool's
// workers answer a batch their poller read).
func answerInto(m *rawio.Msgs, n int, p proto.Datagram, st *Stats) {
	for i := range n {
		b, _, truncated := m.Datagram(i)
		if truncated {
			st.dropOversize.Add(1)
			continue
		}
		m.Reply(i, len(p.Reply(b)))
	}
}

// flush sends the queued replies; see sendQueued.
func (d *dgramSock) flush() { sendQueued(d.fd, d.m, d.env, &d.logged) }

// sendQueued sends m's queued replies on fd, without waiting. EAGAIN drops
// the rest (the send buffer is full: see the file's comment); another error
// drops the one reply it refused (logged once per logged flag) and goes on.
func sendQueued(fd int, m *rawio.Msgs, env *Env, logged *bool) {
	for m.Queued() > 0 {
		n, err := m.Send(fd)
		env.Stats.dgramOut.Add(int64(n))
		switch {
		case err == nil:
			if m.Queued() > 0 { // sent none and no error: never spin on it
				env.Stats.dropSendError.Add(int64(m.DropAll()))
			}
			return
		case err == unix.EAGAIN || err == unix.ENOBUFS:
			env.Stats.dropSendFull.Add(int64(m.DropAll()))
			return
		default:
			m.Drop()
			env.Stats.dropSendError.Add(1)
			if !*logged {
				*logged = true
				env.Log.Printf("datagram socket %d: %v (this reply dropped; logged once, counted in dropped_send_error)", fd, os.NewSyscallError("sendmmsg", err))
			}
		}
	}
}

// serve makes up to calls receive calls, answering each batch before the
// next: drained reports that a receive found nothing waiting.
func (d *dgramSock) serve(calls int) (drained bool, err error) {
	for range calls {
		n, err := d.recv()
		if err != nil || n == 0 {
			return true, err
		}
		d.answer(n)
		d.flush()
	}
	return false, nil
}

// dgramLoop is the datagram loop of a readiness model on this thread: wait
// for one of socks to be readable (wait calls ready with the index of each
// that is; it returns when ctx is cancelled too), serve it, until ctx is
// cancelled. edge: a readable socket is served until EAGAIN (edge-triggered:
// it will not be reported again before new datagrams arrive), a budget per
// pass, those left over served again on the next pass without waiting;
// otherwise one receive call per readiness.
func dgramLoop(ctx context.Context, socks []*dgramSock, edge bool, wait func(timeoutMS int, ready func(i int)) error) error {
	calls := 1
	if edge {
		calls = max(1, dgramBudget/socks[0].m.Cap())
	}
	left := make([]bool, len(socks)) // edge: budget ran out before EAGAIN
	nleft := 0
	serve := func(i int) error {
		drained, err := socks[i].serve(calls)
		if edge && !drained && !left[i] {
			left[i] = true
			nleft++
		}
		return err
	}
	var ferr error
	for ctx.Err() == nil {
		timeout := -1
		if nleft > 0 {
			timeout = 0
		}
		if err := wait(timeout, func(i int) {
			if ferr == nil {
				if left[i] { // reported again: served below with the rest
					return
				}
				ferr = serve(i)
			}
		}); err != nil {
			return err
		}
		if ferr != nil {
			return ferr
		}
		for i := range left {
			if left[i] {
				left[i] = false
				nleft--
				if err := serve(i); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// epollDatagrams is the datagram loop of the epoll models on one locked
// thread: fds registered for EPOLLIN (with EPOLLET if edge, and
// EPOLLEXCLUSIVE if exclusive: one of the processes watching a shared socket
// woken per datagram) in an epoll instance of its own.
func epollDatagrams(ctx context.Context, edge, exclusive bool, socks ...*dgramSock) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	p, err := openPoller(ctx, epollEvents)
	if err != nil {
		return err
	}
	defer p.close() // takes fds out of it; they stay open
	ev := uint32(unix.EPOLLIN)
	if edge {
		ev |= unix.EPOLLET
	}
	if exclusive {
		ev |= unix.EPOLLEXCLUSIVE
	}
	for _, s := range socks {
		if err := p.add(s.fd, ev); err != nil {
			return err
		}
	}
	return dgramLoop(ctx, socks, edge, func(timeoutMS int, ready func(int)) error {
		events, err := p.wait(timeoutMS)
		if err != nil {
			return err
		}
		for _, e := range events {
			for i, s := range socks {
				if int(e.Fd) == s.fd {
					ready(i)
				}
			}
		}
		return nil
	})
}

// reusePortGroup returns n sockets bound to ds's address as one SO_REUSEPORT
// group: ds itself first, then n-1 more, which the caller must close. The
// kernel hashes each peer (its address and port) to one socket of the group.
func reusePortGroup(ds *sock.Listener, n int) (fds []int, err error) {
	if err := sock.SetReusePort(ds.FD, true); err != nil {
		return nil, err
	}
	fds = []int{ds.FD}
	for len(fds) < n {
		s, err := sock.ListenUDP(ds.Addr, true, true) // ds's address passed the loopback check
		if err != nil {
			closeFDs(fds[1:])
			return nil, err
		}
		fds = append(fds, s.FD)
	}
	return fds, nil
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// rcvbufDropsGauge publishes rcvbuf_drops: the datagrams the kernel dropped
// on arrival at fds because a socket's receive buffer was full — the loss
// before the model ever saw them (SO_MEMINFO's drop count, summed). The
// caller calls freeze before it closes any of fds: the gauge keeps the counts
// read then (a descriptor number may be reused by then).
func rcvbufDropsGauge(env *Env, fds ...int) (freeze func()) {
	var (
		mu     sync.Mutex
		frozen bool
		last   = make([]int64, len(fds))
	)
	read := func() int64 {
		mu.Lock()
		defer mu.Unlock()
		var sum int64
		for i, fd := range fds {
			if !frozen {
				if n, ok := socketDrops(fd); ok {
					last[i] = n
				}
			}
			sum += last[i]
		}
		return sum
	}
	env.Stats.Gauge("rcvbuf_drops", read)
	return func() {
		read()
		mu.Lock()
		frozen = true
		mu.Unlock()
	}
}

// socketDrops is the kernel's count of datagrams dropped at fd's receive
// buffer, SO_MEMINFO's SK_MEMINFO_DROPS.
func socketDrops(fd int) (int64, bool) {
	var info [unix.SK_MEMINFO_VARS]uint32
	l := uint32(unsafe.Sizeof(info))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_MEMINFO, uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return 0, false
	}
	return int64(info[unix.SK_MEMINFO_DROPS]), true
}

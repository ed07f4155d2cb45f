package rawio

import (
	"testing"

	"golang.org/x/sys/unix"
)

// pair is a connected non-blocking Unix stream socket pair, closed with the test.
func pair(t *testing.T) (a, b int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0], fds[1]
}

// Read and Write, Recv and Send: what is written is read, an empty socket is
// EAGAIN, a bad descriptor EBADF, the peer's close EOF, and a write to a
// closed peer EPIPE (raising no SIGPIPE with Send; the test binary would die
// of one it did not expect only on stdout, so Write's is not tested).
func TestReadWrite(t *testing.T) {
	for _, tc := range []struct {
		name        string
		read, write func(int, []byte) (int, error)
		epipe       bool
	}{
		{"read/write", Read, Write, false},
		{"recv/send", Recv, Send, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := pair(t)
			buf := make([]byte, 16)
			if n, err := tc.read(a, buf); n != -1 || err != unix.EAGAIN {
				t.Fatalf("read of an empty socket: %d, %v; want -1, EAGAIN", n, err)
			}
			if n, err := tc.write(b, []byte("hello")); n != 5 || err != nil {
				t.Fatalf("write: %d, %v", n, err)
			}
			if n, err := tc.write(b, nil); n != 0 || err != nil {
				t.Fatalf("empty write: %d, %v; want 0, nil", n, err)
			}
			if n, err := tc.read(a, buf); n != 5 || err != nil || string(buf[:n]) != "hello" {
				t.Fatalf("read: %d %q, %v", n, buf[:max(n, 0)], err)
			}
			if n, err := tc.read(-1, buf); n != -1 || err != unix.EBADF {
				t.Fatalf("read of fd -1: %d, %v; want -1, EBADF", n, err)
			}
			unix.Close(b)
			if n, err := tc.read(a, buf); n != 0 || err != nil {
				t.Fatalf("read after the peer closed: %d, %v; want 0 (EOF), nil", n, err)
			}
			if tc.epipe {
				if n, err := tc.write(a, []byte("x")); n != -1 || err != unix.EPIPE {
					t.Fatalf("write to a closed peer: %d, %v; want -1, EPIPE", n, err)
				}
			}
		})
	}
}

// The zero-timeout waits report what is ready now, and nothing when nothing is
// — without blocking, which a test that hung would show.
func TestWaitsNow(t *testing.T) {
	a, b := pair(t)
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ep)
	if err := EpollCtl(ep, unix.EPOLL_CTL_ADD, a, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(a)}); err != nil {
		t.Fatal(err)
	}
	if err := EpollCtl(ep, unix.EPOLL_CTL_ADD, a, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(a)}); err != unix.EEXIST {
		t.Fatalf("second add: %v, want EEXIST", err)
	}
	events := make([]unix.EpollEvent, 4)
	pfds := []unix.PollFd{{Fd: int32(a), Events: unix.POLLIN}}
	var rset unix.FdSet
	check := func(when string, want int) {
		t.Helper()
		if n, err := EpollPoll(ep, events); n != want || err != nil {
			t.Errorf("%s: EpollPoll %d, %v; want %d", when, n, err, want)
		} else if n == 1 && (events[0].Fd != int32(a) || events[0].Events&unix.EPOLLIN == 0) {
			t.Errorf("%s: EpollPoll event %+v, want EPOLLIN on fd %d", when, events[0], a)
		}
		if n, err := PollNow(pfds); n != want || err != nil {
			t.Errorf("%s: PollNow %d, %v; want %d", when, n, err, want)
		}
		rset.Zero()
		rset.Set(a)
		if n, err := SelectNow(a+1, &rset, nil); n != want || err != nil || rset.IsSet(a) != (want == 1) {
			t.Errorf("%s: SelectNow %d, %v, set %v; want %d", when, n, err, rset.IsSet(a), want)
		}
	}
	check("nothing sent", 0)
	if _, err := Write(b, []byte("x")); err != nil {
		t.Fatal(err)
	}
	check("a byte sent", 1)
}

func TestBusy(t *testing.T) {
	for _, tc := range []struct {
		name   string
		n      int
		polled bool
		want   bool
	}{
		{"a poll that found work", 1, true, true},
		{"a poll that found much", 7, true, true},
		{"a block woken by one event", 1, false, false},
		{"a block woken by several", 3, false, true},
		{"a block that timed out", 0, false, false},
	} {
		var b Busy
		b.saw(tc.n, tc.polled)
		if b.try != tc.want {
			t.Errorf("%s: try first %v, want %v", tc.name, b.try, tc.want)
		}
	}
	if (&Busy{}).try {
		t.Error("the zero Busy tries a poll first; want it to block first")
	}
}

// The calls a busy event loop makes per request allocate nothing.
func TestNoAllocs(t *testing.T) {
	a, b := pair(t)
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ep)
	events := make([]unix.EpollEvent, 4)
	msg, buf := []byte("ping"), make([]byte, 8)
	allocs := testing.AllocsPerRun(100, func() {
		Write(b, msg)
		EpollPoll(ep, events)
		Read(a, buf)
		Read(a, buf) // EAGAIN
		Send(b, msg)
		Recv(a, buf)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per round, want 0", allocs)
	}
}

// Wait polls first when the timeout is 0 or the loop is busy, blocks when the
// poll found nothing and the timeout allows it (or straight away when not
// busy), and records what it saw.
func TestWait(t *testing.T) {
	for _, tc := range []struct {
		name       string
		busy       bool
		timeout    int
		pollN      int
		pollErr    error
		wantCalls  string // p: poll, b: block
		wantN      int
		wantErr    error
		wantBusyAf bool
	}{
		{"idle: block at once", false, -1, 0, nil, "b", 1, nil, false},
		{"zero timeout: the poll is the wait", false, 0, 0, nil, "p", 0, nil, false},
		{"busy, work ready", true, -1, 3, nil, "p", 3, nil, true},
		{"busy, nothing ready: block", true, 100, 0, nil, "pb", 1, nil, false},
		{"busy, zero timeout, nothing", true, 0, 0, nil, "p", 0, nil, false},
		{"busy, the poll interrupted", true, -1, 0, unix.EINTR, "p", 0, unix.EINTR, true},
	} {
		b := Busy{try: tc.busy}
		calls := ""
		n, err := b.Wait(tc.timeout,
			func() (int, error) { calls += "p"; return tc.pollN, tc.pollErr },
			func() (int, error) { calls += "b"; return 1, nil })
		if calls != tc.wantCalls || n != tc.wantN || err != tc.wantErr || b.try != tc.wantBusyAf {
			t.Errorf("%s: calls %q, %d, %v, busy after %v; want %q, %d, %v, %v", tc.name, calls, n, err, b.try, tc.wantCalls, tc.wantN, tc.wantErr, tc.wantBusyAf)
		}
	}
}

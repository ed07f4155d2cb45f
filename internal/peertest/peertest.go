// Package peertest checks a reference peer — a C server of peers/ for the echo
// and rpc protocols (cepoll, curing, clibevent) — from the outside, with Go net
// clients, against the wire formats of internal/proto (whose AppendUpper and
// AppendFrame are the oracle), and against the contract every peer keeps: its
// flags and usage errors, the "listening on" line, half-close, back-pressure, a
// reset or a bad frame closing only that connection, pausing (not spinning) when
// out of descriptors, and exit 0 on SIGTERM. Each peer's test builds its C file
// (internal/cbuild) and calls Run.
package peertest

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"concbench/internal/proto"
)

const ioTimeout = 10 * time.Second

// Run runs every check against the peer's executable bin.
func Run(t *testing.T, bin string) {
	t.Run("args", func(t *testing.T) { testArgs(t, bin) })
	t.Run("echo", func(t *testing.T) { testEcho(t, bin) })
	t.Run("rpc", func(t *testing.T) { testRPC(t, bin) })
	t.Run("fd limit", func(t *testing.T) { testFDLimit(t, bin) })
}

// server is one running peer process.
type server struct {
	cmd    *exec.Cmd
	addr   string
	stderr *syncBuffer
	done   chan struct{}
	err    error // Wait's result, valid once done is closed
}

var listenLine = regexp.MustCompile(`^listening on 127\.0\.0\.1:([0-9]+)$`)

// start runs the peer with args (plus -addr 127.0.0.1:0) and waits for its listening
// line. wrap, if not nil, is a shell prefix such as "ulimit -n 16;".
func start(t *testing.T, bin, wrap string, args ...string) *server {
	t.Helper()
	args = append(args, "-addr", "127.0.0.1:0")
	var cmd *exec.Cmd
	if wrap == "" {
		cmd = exec.Command(bin, args...)
	} else {
		cmd = exec.Command("/bin/sh", "-c", wrap+` exec "$0" "$@"`, bin)
		cmd.Args = append(cmd.Args, args...)
	}
	s := &server{cmd: cmd, stderr: new(syncBuffer), done: make(chan struct{})}
	cmd.Stderr = s.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		io.Copy(io.Discard, stdout)
		s.err = cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			cmd.Process.Kill()
			<-s.done
		}
	})
	select {
	case line, ok := <-lines:
		m := listenLine.FindStringSubmatch(line)
		if !ok || m == nil {
			t.Fatalf("first stdout line %q: want %q; stderr: %s", line, "listening on 127.0.0.1:PORT", s.stderr)
		}
		if p, _ := strconv.Atoi(m[1]); p == 0 {
			t.Fatalf("listening on port 0")
		}
		s.addr = strings.TrimPrefix(line, "listening on ")
	case <-time.After(ioTimeout):
		t.Fatalf("no listening line within %v; stderr: %s", ioTimeout, s.stderr)
	}
	return s
}

// stop sends SIGTERM and requires exit status 0.
func (s *server) stop(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.done:
		if s.err != nil {
			t.Fatalf("after SIGTERM: %v; stderr: %s", s.err, s.stderr)
		}
	case <-time.After(ioTimeout):
		t.Fatalf("no exit within %v of SIGTERM", ioTimeout)
	}
}

// alive fails the test if the server has exited.
func (s *server) alive(t *testing.T) {
	t.Helper()
	select {
	case <-s.done:
		t.Fatalf("server exited: %v; stderr: %s", s.err, s.stderr)
	default:
	}
}

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(ioTimeout))
	return c.(*net.TCPConn)
}

// payload is n bytes covering every byte value, letters of both cases included.
func payload(n, seed int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8 + seed)
	}
	return b
}

func upper(b []byte) []byte { return proto.AppendUpper(nil, b) }

// roundTrip writes req and reads exactly len(want) bytes, which must equal want.
func roundTrip(t *testing.T, c net.Conn, req, want []byte) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { _, err := c.Write(req); errc <- err }()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read %d bytes: %v", len(want), err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if i := firstDiff(got, want); i >= 0 {
		t.Fatalf("reply differs at byte %d of %d: got %#x want %#x", i, len(want), got[i], want[i])
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// expectClosed requires that c yields EOF (or a reset) with no further bytes.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	n, err := io.Copy(io.Discard, c)
	if n != 0 {
		t.Fatalf("%d unexpected bytes before close", n)
	}
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("want EOF or reset, got %v", err)
	}
}

func testArgs(t *testing.T, bin string) {
	for _, tc := range []struct {
		args []string
		want string // in stderr
	}{
		{[]string{"-proto", "http"}, "valid values are echo, rpc"},
		{[]string{"-proto"}, "usage:"},
		{[]string{"-max-frame", "0"}, "must be 1..4294967295"},
		{[]string{"-max-frame=-5"}, "must be 1..4294967295"},
		{[]string{"-addr", "nonsense"}, "want IP:PORT"},
		{[]string{"-addr", "127.0.0.1:70000"}, "want IP:PORT"},
		{[]string{"-addr", "192.0.2.1:0"}, "not loopback"},
		{[]string{"-bogus", "1"}, "unknown flag"},
		{[]string{"stray"}, "usage:"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stderr bytes.Buffer
			cmd := exec.Command(bin, tc.args...)
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("exit: %v, want status 2; stderr: %s", err, &stderr)
			}
			if !strings.Contains(stderr.String(), tc.want) || !strings.Contains(stderr.String(), "echo | rpc") {
				t.Fatalf("stderr lacks %q or the usage's valid values:\n%s", tc.want, &stderr)
			}
		})
	}
}

func testEcho(t *testing.T, bin string) {
	s := start(t, bin, "", "-proto", "echo")

	t.Run("round trips", func(t *testing.T) {
		c := dial(t, s.addr) // one connection, many sizes in turn
		for _, n := range []int{1, 2, 26, 63, 64, 1000, 4096, 16384, 65535, 65536} {
			p := payload(n, n)
			roundTrip(t, c, p, upper(p))
		}
	})

	t.Run("4 MiB stream while reading", func(t *testing.T) {
		c := dial(t, s.addr)
		const total = 4 << 20
		p := payload(total, 3)
		errc := make(chan error, 1)
		go func() {
			for off := 0; off < total; off += 100_000 { // odd chunks against the 64 KiB reads
				if _, err := c.Write(p[off:min(off+100_000, total)]); err != nil {
					errc <- err
					return
				}
			}
			errc <- c.CloseWrite()
		}()
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if i := firstDiff(got, upper(p)); i >= 0 {
			t.Fatalf("got %d bytes, want %d; first difference at %d", len(got), total, i)
		}
	})

	t.Run("half-close", func(t *testing.T) {
		for _, n := range []int{0, 1, 5000, 1 << 20} {
			t.Run(strconv.Itoa(n), func(t *testing.T) {
				c := dial(t, s.addr)
				p := payload(n, 9)
				errc := make(chan error, 1)
				go func() {
					_, err := c.Write(p)
					if err == nil {
						err = c.CloseWrite()
					}
					errc <- err
				}()
				time.Sleep(20 * time.Millisecond) // let the FIN arrive before reading
				got, err := io.ReadAll(c)
				if err != nil {
					t.Fatalf("read after half-close: %v", err)
				}
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
				if i := firstDiff(got, upper(p)); i >= 0 {
					t.Fatalf("got %d bytes, want %d; first difference at %d", len(got), n, i)
				}
			})
		}
	})

	t.Run("back-pressure", func(t *testing.T) {
		// A client that writes and never reads: the server must stop reading once
		// 256 KiB are unsent, so the client's writes block after what the socket
		// buffers of both directions hold plus 256 KiB and one read; then, after
		// the client's FIN, everything comes back.
		c := dial(t, s.addr)
		limit := 2*(sysctlMax(t, "tcp_wmem")+sysctlMax(t, "tcp_rmem")) + 2<<20
		chunk := payload(64<<10, 5)
		var sent int
		for sent <= limit {
			c.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
			n, err := c.Write(chunk)
			sent += n
			if err != nil {
				break // blocked for 300 ms: the server stopped reading
			}
		}
		if sent > limit {
			t.Fatalf("wrote %.1f MiB without reading and never blocked (socket buffers hold at most %.1f MiB): no back-pressure",
				float64(sent)/(1<<20), float64(limit)/(1<<20))
		}
		c.SetDeadline(time.Now().Add(ioTimeout))
		c.CloseWrite()
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != sent {
			t.Fatalf("read back %d bytes, sent %d", len(got), sent)
		}
		want := upper(chunk)
		for off := 0; off < sent; off += len(chunk) {
			if !bytes.Equal(got[off:min(off+len(chunk), sent)], want[:min(len(chunk), sent-off)]) {
				t.Fatalf("wrong bytes in the chunk at %d", off)
			}
		}
		t.Logf("blocked after %.1f MiB unread", float64(sent)/(1<<20))
	})

	t.Run("reset closes only that connection", func(t *testing.T) {
		other := dial(t, s.addr)
		roundTrip(t, other, []byte("before"), []byte("BEFORE"))
		c := dial(t, s.addr)
		c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		for range 64 { // queue output on the server, then reset
			if _, err := c.Write(payload(64<<10, 1)); err != nil {
				break
			}
		}
		c.SetLinger(0)
		c.Close()
		time.Sleep(50 * time.Millisecond)
		s.alive(t)
		roundTrip(t, other, []byte("after"), []byte("AFTER"))
		roundTrip(t, dial(t, s.addr), []byte("new"), []byte("NEW"))
	})

	t.Run("200 simultaneous connections", func(t *testing.T) {
		const n = 200
		conns := make([]*net.TCPConn, n)
		for i := range conns {
			conns[i] = dial(t, s.addr)
		}
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i, c := range conns {
			wg.Go(func() {
				for round := range 3 {
					msg := []byte(fmt.Sprintf("conn %d round %d %s", i, round, payload(100+i, i)))
					if _, err := c.Write(msg); err != nil {
						errs <- err
						return
					}
					got := make([]byte, len(msg))
					if _, err := io.ReadFull(c, got); err != nil {
						errs <- fmt.Errorf("conn %d: %w", i, err)
						return
					}
					if !bytes.Equal(got, upper(msg)) {
						errs <- fmt.Errorf("conn %d round %d: wrong reply", i, round)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	})

	t.Run("SIGTERM exits 0 with connections open", func(t *testing.T) {
		idle := dial(t, s.addr)
		busy := dial(t, s.addr)
		busy.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		for range 64 { // leave unsent output queued on the server
			if _, err := busy.Write(payload(64<<10, 2)); err != nil {
				break
			}
		}
		s.stop(t)
		idle.SetReadDeadline(time.Now().Add(ioTimeout))
		expectClosed(t, idle)
	})
}

func frame(p []byte) []byte { return proto.AppendFrame(nil, p) }

// readFrame reads one reply frame.
func readFrame(t *testing.T, c net.Conn) []byte {
	t.Helper()
	var h [4]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		t.Fatalf("reply header: %v", err)
	}
	p := make([]byte, binary.BigEndian.Uint32(h[:]))
	if _, err := io.ReadFull(c, p); err != nil {
		t.Fatalf("reply payload of %d bytes: %v", len(p), err)
	}
	return p
}

func testRPC(t *testing.T, bin string) {
	const maxFrame = 100_000
	s := start(t, bin, "", "-proto", "rpc", "-max-frame", strconv.Itoa(maxFrame))

	t.Run("frames", func(t *testing.T) {
		c := dial(t, s.addr)
		for _, n := range []int{0, 1, 4, 64, 4096, 65536, 70000, maxFrame} {
			p := payload(n, n)
			roundTrip(t, c, frame(p), frame(upper(p)))
		}
	})

	t.Run("many frames in one write", func(t *testing.T) {
		c := dial(t, s.addr)
		var req, want []byte
		for i := range 300 {
			p := payload((i*37)%500, i) // sizes 0..499, 0 among them
			req = append(req, frame(p)...)
			want = append(want, frame(upper(p))...)
		}
		roundTrip(t, c, req, want)
	})

	t.Run("frame split across writes", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			n    int
			cuts []int // write boundaries within the framed request
		}{
			{"header byte by byte", 10, []int{1, 2, 3}},
			{"header then body", 10, []int{4}},
			{"inside the body", 1000, []int{2, 300, 301, 800}},
			{"empty frame split", 0, []int{2}},
			{"big body in pieces", 90_000, []int{3, 40_000, 70_000}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c := dial(t, s.addr)
				p := payload(tc.n, 11)
				req := frame(p)
				req = append(req, frame([]byte("next"))...) // the session must be back at a header
				prev := 0
				for _, cut := range append(tc.cuts, len(req)) {
					if _, err := c.Write(req[prev:cut]); err != nil {
						t.Fatal(err)
					}
					prev = cut
					time.Sleep(5 * time.Millisecond) // separate reads on the server
				}
				if got := readFrame(t, c); !bytes.Equal(got, upper(p)) {
					t.Fatalf("reply of %d bytes is wrong", len(got))
				}
				if got := readFrame(t, c); string(got) != "NEXT" {
					t.Fatalf("second reply %q, want NEXT", got)
				}
			})
		}
	})

	t.Run("oversize frame closes only that connection", func(t *testing.T) {
		other := dial(t, s.addr)
		roundTrip(t, other, frame([]byte("ok")), frame([]byte("OK")))
		for _, l := range []uint32{maxFrame + 1, 1 << 31, 0xffffffff} {
			c := dial(t, s.addr)
			req := frame([]byte("first"))
			req = binary.BigEndian.AppendUint32(req, l)
			req = append(req, "junk"...)
			if _, err := c.Write(req); err != nil {
				t.Fatal(err)
			}
			if got := readFrame(t, c); string(got) != "FIRST" {
				t.Fatalf("reply to the frame before the bad one: %q", got)
			}
			expectClosed(t, c)
		}
		s.alive(t)
		roundTrip(t, other, frame([]byte("still")), frame([]byte("STILL")))
	})

	t.Run("half-close", func(t *testing.T) {
		c := dial(t, s.addr)
		var req, want []byte
		for i := range 50 {
			p := payload(i*1000, i)
			req = append(req, frame(p)...)
			want = append(want, frame(upper(p))...)
		}
		req = append(req, 0, 0) // a partial header at EOF is dropped
		go func() {
			c.Write(req)
			c.CloseWrite()
		}()
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		if i := firstDiff(got, want); i >= 0 {
			t.Fatalf("got %d bytes, want %d; first difference at %d", len(got), len(want), i)
		}
	})

	s.stop(t)
}

// testFDLimit runs the peer with at most 16 descriptors, so a few clients exhaust
// them (how many depends on descriptors inherited from the environment, hence the
// probing). Accepting must pause, not spin, and resume once descriptors are freed.
func testFDLimit(t *testing.T, bin string) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh to set ulimit -n")
	}
	s := start(t, bin, "ulimit -n 16 || exit 3;", "-proto", "echo")
	var served, waiting []*net.TCPConn
	for len(waiting) == 0 && len(served) < 16 {
		c := dial(t, s.addr) // the kernel completes it from the backlog either way
		c.Write([]byte("a"))
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		got := make([]byte, 1)
		_, err := io.ReadFull(c, got)
		var ne net.Error
		switch {
		case err == nil && got[0] == 'A':
			served = append(served, c)
		case errors.As(err, &ne) && ne.Timeout():
			waiting = append(waiting, c) // not accepted: out of descriptors
		default:
			t.Fatalf("connection %d: %q %v", len(served), got, err)
		}
	}
	if len(waiting) == 0 || len(served) < 3 {
		t.Fatalf("%d connections served, %d waiting: the limit did not bite as expected", len(served), len(waiting))
	}
	for range 2 {
		c := dial(t, s.addr)
		c.Write([]byte("b"))
		waiting = append(waiting, c)
	}
	before := cpuTicks(t, s.cmd.Process.Pid)
	time.Sleep(500 * time.Millisecond)
	if used := cpuTicks(t, s.cmd.Process.Pid) - before; used > 10 { // 100 ms at USER_HZ 100
		t.Errorf("server used %d ticks in 500 ms while out of descriptors: spinning on accept?", used)
	}
	if !strings.Contains(s.stderr.String(), "pausing accept") {
		t.Errorf("no back-off message on stderr: %q", s.stderr)
	}
	s.alive(t)
	for _, c := range served[:len(waiting)] {
		c.Close()
	}
	for i, c := range waiting {
		c.SetReadDeadline(time.Now().Add(ioTimeout))
		got := make([]byte, 1)
		if _, err := io.ReadFull(c, got); err != nil || (got[0] != 'A' && got[0] != 'B') {
			t.Fatalf("waiting connection %d after descriptors were freed: %q %v", i, got, err)
		}
	}
	t.Logf("%d served, then %d waited for descriptors and were served", len(served), len(waiting))
	s.stop(t)
}

// sysctlMax is the maximum (third) value of net.ipv4.NAME, a socket buffer limit.
func sysctlMax(t *testing.T, name string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/ipv4/" + name)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	n, err := strconv.Atoi(f[len(f)-1])
	if err != nil {
		t.Fatalf("%s: %q", name, b)
	}
	return n
}

// cpuTicks is utime+stime of pid in clock ticks.
func cpuTicks(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	u, _ := strconv.Atoi(f[11])
	s, _ := strconv.Atoi(f[12])
	return u + s
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

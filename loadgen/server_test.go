package loadgen

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"concbench/internal/proto"
)

// testServer is a small blocking Go server speaking echo or rpc with fixed-size
// requests, with hooks that shape its behaviour: a serial service time, a stall,
// corruption, death.
type testServer struct {
	t     *testing.T
	ln    net.Listener
	proto string
	size  int
	// unixPath, if set, makes the server listen on this Unix domain socket
	// instead of a loopback TCP port.
	unixPath string

	// serial makes requests wait for one another (one global lock) and each take
	// service; zero service is an immediate reply.
	serial  bool
	service time.Duration
	// before, if set, is called with the reply number (from 0, server-wide) and
	// the reply before it is written; it may sleep or change the reply.
	before func(n int64, reply []byte)
	// acceptEvery slows accepting down: a wait before each accept after the
	// first, as a server that starts a process per connection would.
	acceptEvery time.Duration
	// hold, if above 0, serves only the first hold connections: the others are
	// accepted and never read (a pool of hold workers, all busy); with drop they
	// are closed at once instead.
	hold int
	drop bool
	// remotes records the address of every connection accepted.
	remotesMu sync.Mutex
	remotes   []string

	mu      sync.Mutex // serialises service when serial
	replies atomic.Int64
	connsMu sync.Mutex
	conns   map[net.Conn]bool
	closed  bool
	wg      sync.WaitGroup
}

func startServer(t *testing.T, s *testServer) *testServer {
	t.Helper()
	network, addr := "tcp", "127.0.0.1:0"
	if s.unixPath != "" {
		network, addr = "unix", s.unixPath
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	s.t, s.ln, s.conns = t, ln, map[net.Conn]bool{}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.kill)
	return s
}

func (s *testServer) addr() string {
	if s.unixPath != "" {
		return "unix:" + s.unixPath
	}
	return s.ln.Addr().String()
}

func (s *testServer) accept() {
	defer s.wg.Done()
	for n := 0; ; n++ {
		if n > 0 && s.acceptEvery > 0 {
			time.Sleep(s.acceptEvery)
		}
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.connsMu.Lock()
		if s.closed {
			s.connsMu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = true
		s.connsMu.Unlock()
		s.remotesMu.Lock()
		s.remotes = append(s.remotes, c.RemoteAddr().String())
		s.remotesMu.Unlock()
		if s.hold > 0 && n >= s.hold {
			if s.drop {
				c.Close()
			}
			continue // held open, unread, until kill
		}
		s.wg.Add(1)
		go s.serve(c)
	}
}

func (s *testServer) serve(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.connsMu.Lock()
		delete(s.conns, c)
		s.connsMu.Unlock()
		c.Close()
	}()
	n := s.size
	if s.proto == "rpc" {
		n += proto.HeaderLen
	}
	req := make([]byte, n)
	reply := make([]byte, 0, n)
	for {
		if _, err := io.ReadFull(c, req); err != nil {
			return // EOF (the client's half-close or close) or a reset
		}
		reply = reply[:0]
		if s.proto == "rpc" {
			if int(binary.BigEndian.Uint32(req)) != s.size {
				s.t.Errorf("test server: frame length %d, want %d", binary.BigEndian.Uint32(req), s.size)
				return
			}
			reply = proto.AppendFrame(reply, proto.AppendUpper(nil, req[proto.HeaderLen:]))
		} else {
			reply = proto.AppendUpper(reply, req)
		}
		if s.serial {
			s.mu.Lock()
		}
		if s.service > 0 {
			time.Sleep(s.service)
		}
		k := s.replies.Add(1) - 1
		if s.before != nil {
			s.before(k, reply)
		}
		if s.serial {
			s.mu.Unlock()
		}
		if _, err := c.Write(reply); err != nil {
			return
		}
	}
}

// kill closes the listener and every connection at once, as a crashing server
// would, and waits for its goroutines.
func (s *testServer) kill() {
	s.connsMu.Lock()
	s.closed = true
	s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.connsMu.Unlock()
	s.wg.Wait()
}

package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"concbench/internal/proto"
	"concbench/internal/result"
	"concbench/internal/sock"
	"concbench/internal/testfiles"
	"concbench/models"
)

// cannedServer answers each request (exactly req, checked) with reply(n), n the
// reply number server-wide from 0. The reply may end with a close: then the
// server closes the connection after writing it. The request is made from the
// server's address (http's Host header) before the server starts.
type cannedServer struct {
	t     *testing.T
	ln    net.Listener
	req   []byte
	reply func(n int64) (b []byte, close bool)

	replies atomic.Int64
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]bool
}

func startCanned(t *testing.T, req func(addr string) []byte, reply func(n int64) ([]byte, bool)) *cannedServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &cannedServer{t: t, ln: ln, req: req(ln.Addr().String()), reply: reply, conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = true
			s.mu.Unlock()
			s.wg.Add(1)
			go s.serve(c)
		}
	}()
	t.Cleanup(s.stop)
	return s
}

func (s *cannedServer) addr() string { return s.ln.Addr().String() }

func (s *cannedServer) serve(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	var in []byte
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		in = append(in, buf[:n]...)
		for len(in) >= len(s.req) {
			if !bytes.Equal(in[:len(s.req)], s.req) {
				s.t.Errorf("canned server: request %q, want %q", in[:len(s.req)], s.req)
				return
			}
			in = in[len(s.req):]
			b, closeAfter := s.reply(s.replies.Add(1) - 1)
			if _, err := c.Write(b); err != nil || closeAfter {
				return
			}
		}
	}
}

func (s *cannedServer) stop() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// fileRequest and httpGet make the request loadgen sends, for startCanned.
func fileRequest(name string) func(string) []byte {
	return func(string) []byte { return proto.AppendFrame(nil, []byte(name)) }
}

func httpGet(path string, reconnect bool) func(string) []byte {
	return func(addr string) []byte { return httpRequest(path, addr, reconnect) }
}

// TestWrongRepliesCounted: a server that gets one reply wrong, in each way a file
// or http reply can be wrong, is counted once under the right kind; the other
// replies are correct.
func TestWrongRepliesCounted(t *testing.T) {
	t.Parallel() // 300 requests, exact counts, each case with its own server
	k1 := content(t, "1k.bin")
	idx := content(t, "index.html")
	flip := func(b []byte) []byte { b = bytes.Clone(b); b[len(b)/2] ^= 0x40; return b }
	okFile := fileReplyBytes(len(k1), k1, 1024)
	okHTTP := httpReplyBytes(idx)
	tests := []struct {
		proto, name string
		bad         []byte
		kind        string
	}{
		{"file", "size", fileReplyBytes(1000, k1[:1000], 1024), "mismatch"},
		{"file", "checksum", fileReplyBytes(len(k1), flip(k1), 1024), "mismatch"},
		{"file", "frames short", fileReplyBytes(len(k1), k1[:1000], 1024), "mismatch"},
		{"file", "ERR", proto.AppendFrame(nil, []byte("ERR not found")), "server_error"},
		{"file", "bad frame", proto.AppendFrame(nil, []byte("YES 1024")), "bad_frame"},
		{"file", "truncated", okFile[:len(okFile)/2], "eof"},
		{"http", "size", httpReplyBytes(idx[:100]), "mismatch"},
		{"http", "checksum", httpReplyBytes(flip(idx)), "mismatch"},
		{"http", "404", []byte("HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found"), "http_status"},
		{"http", "chunked", []byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), "bad_frame"},
		{"http", "truncated", okHTTP[:len(okHTTP)-10], "eof"},
	}
	for _, tt := range tests {
		t.Run(tt.proto+"/"+tt.name, func(t *testing.T) {
			t.Parallel()
			w := result.Workload{Proto: tt.proto, Conns: 2, Requests: 300, Duration: 20 * time.Second}
			req, good := fileRequest("1k.bin"), okFile
			if tt.proto == "http" {
				req, good = httpGet("/index.html", false), okHTTP
			}
			s := startCanned(t, req, func(n int64) ([]byte, bool) {
				if n == 100 {
					return tt.bad, tt.kind == "eof"
				}
				return good, false
			})
			w.Addr = s.addr()
			ld := run(t, w).Load
			if ld.ErrorsTotal != 1 || ld.Errors[tt.kind] != 1 {
				t.Errorf("errors %v, want exactly one %s", ld.Errors, tt.kind)
			}
			if ld.Requests != 299 {
				t.Errorf("%d correct replies, want 299", ld.Requests)
			}
		})
	}
}

// TestFilePipelined: pipelined file and http requests over kept connections, with
// one reply in 50 corrupted: exactly those are mismatches, and the stream stays in
// step (every other reply is correct).
func TestFilesPipelined(t *testing.T) {
	t.Parallel() // 2000 requests, exact counts
	k16 := content(t, "16k.bin")
	idx := content(t, "index.html")
	for _, p := range []string{"file", "http"} {
		t.Run(p, func(t *testing.T) {
			t.Parallel()
			good, req := fileReplyBytes(len(k16), k16, 4096), fileRequest("16k.bin")
			w := result.Workload{Proto: p, File: "16k.bin", Conns: 3, Pipeline: 4, Requests: 2000, Duration: 20 * time.Second}
			if p == "http" {
				good, req = httpReplyBytes(idx), httpGet("/index.html", false)
				w.File, w.Path = "", "/index.html"
			}
			bad := bytes.Clone(good)
			bad[len(bad)-100] ^= 1 // in the content, not a frame header
			s := startCanned(t, req, func(n int64) ([]byte, bool) {
				if n%50 == 49 {
					return bad, false
				}
				return good, false
			})
			w.Addr = s.addr()
			ld := run(t, w).Load
			if ld.Errors["mismatch"] != 40 || ld.ErrorsTotal != 40 || ld.Requests != 1960 {
				t.Errorf("errors %v, %d correct replies: want 40 mismatches and 1960 correct", ld.Errors, ld.Requests)
			}
			if ld.Connect.Latency.Count != 3 {
				t.Errorf("%d connects, want 3 (the connections were kept)", ld.Connect.Latency.Count)
			}
		})
	}
}

// TestFilesReconnect: a connection per request. file half-closes like echo; http
// sends "Connection: close" (the canned server checks the request) and the server
// closes after the response.
func TestFilesReconnect(t *testing.T) {
	k1 := content(t, "1k.bin")
	idx := content(t, "index.html")
	for _, p := range []string{"file", "http"} {
		t.Run(p, func(t *testing.T) {
			good, req := fileReplyBytes(len(k1), k1, 1024), fileRequest("1k.bin")
			w := result.Workload{Proto: p, Conns: 3, Reconnect: true, Duration: 600 * time.Millisecond}
			if p == "http" {
				good, req = httpReplyBytes(idx, "Connection: close"), httpGet(DefaultPath, true)
			}
			s := startCanned(t, req, func(int64) ([]byte, bool) { return good, p == "http" })
			w.Addr = s.addr()
			ld := run(t, w).Load
			if ld.ErrorsTotal != 0 || ld.Requests < 50 {
				t.Fatalf("errors %v, %d requests", ld.Errors, ld.Requests)
			}
			if ld.Connect.Latency.Count < ld.Requests {
				t.Errorf("%d connects for %d requests: want a connection per request", ld.Connect.Latency.Count, ld.Requests)
			}
		})
	}
}

// TestHTTPServerCloses: a server that ends every 10th response with
// "Connection: close" and closes (a keep-alive request limit) costs a reconnect,
// not an error.
func TestHTTPServerCloses(t *testing.T) {
	t.Parallel() // 500 requests, exact counts
	idx := content(t, "index.html")
	good, closing := httpReplyBytes(idx), httpReplyBytes(idx, "Connection: close")
	s := startCanned(t, httpGet(DefaultPath, false), func(n int64) ([]byte, bool) {
		if n%10 == 9 {
			return closing, true
		}
		return good, false
	})
	ld := run(t, result.Workload{Addr: s.addr(), Proto: "http", Conns: 2, Requests: 500, Duration: 20 * time.Second}).Load
	if ld.ErrorsTotal != 0 || ld.Requests != 500 {
		t.Fatalf("errors %v, %d requests: want 500 and no error", ld.Errors, ld.Requests)
	}
	if c := ld.Connect.Latency.Count; c < 50 {
		t.Errorf("%d connects, want about 52 (2, and one per close)", c)
	}
}

// realServer starts the epoll-et model in this process serving p (file or http)
// from a directory of the standard files; it skips if the protocol is not built.
func realServer(t *testing.T, p string) string {
	t.Helper()
	dir := t.TempDir()
	if err := testfiles.Generate(dir); err != nil {
		t.Fatal(err)
	}
	cfg := models.Config{Model: "epoll-et", Proto: p, Addr: "127.0.0.1:0", Root: dir}
	env, err := models.NewEnv(cfg, nil)
	if err != nil {
		t.Skipf("the server has no %s protocol yet: %v", p, err)
	}
	m, err := models.New(cfg.Model)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := sock.Listen(cfg.Addr, false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx, ln, env) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		ln.Close()
	})
	return ln.Addr
}

// TestRealServer drives the epoll-et model's file and http protocols over every
// standard file, pipelined, open loop and with a connection per request: every
// reply verifies. Asking for a file that is not there is counted as the server's
// refusal. Not parallel: its floor of 20 requests in 300 ms is not far below what
// a run of 1m.bin makes under -race.
func TestRealServer(t *testing.T) {
	files := testfiles.Std
	if testing.Short() {
		// -short: the smallest file and the largest (Std grows in size). The one
		// takes a read, the other many reads and, with file, many frames; the
		// sizes between take no other path of loadgen.
		files = []testfiles.File{testfiles.Std[0], testfiles.Std[len(testfiles.Std)-1]}
	}
	for _, p := range []string{"file", "http"} {
		t.Run(p, func(t *testing.T) {
			addr := realServer(t, p)
			for _, f := range files {
				for _, shape := range []result.Workload{
					{Conns: 4, Pipeline: 3},
					{Conns: 2, Rate: 400},
					{Conns: 2, Reconnect: true},
				} {
					w := shape
					w.Addr, w.Proto, w.Duration = addr, p, 300*time.Millisecond
					if p == "file" {
						w.File = f.Name
					} else {
						w.Path = "/" + f.Name
					}
					name := fmt.Sprintf("%s c%d pipe%d rate%g reconnect=%v", f.Name, w.Conns, w.Pipeline, w.Rate, w.Reconnect)
					ld := run(t, w).Load
					if ld.ErrorsTotal != 0 || ld.Requests < 20 {
						t.Errorf("%s: errors %v, %d requests", name, ld.Errors, ld.Requests)
					}
				}
			}
			if p == "http" { // "/" is index.html, verified as such
				w := result.Workload{Addr: addr, Proto: p, Path: "/?q=1", Conns: 2, Pipeline: 2, Duration: 300 * time.Millisecond}
				if o := run(t, w); o.Load.ErrorsTotal != 0 || o.Load.Requests < 20 || len(o.Warnings) != 0 {
					t.Errorf("/: errors %v, %d requests, warnings %q", o.Load.Errors, o.Load.Requests, o.Warnings)
				}
			}
			w := result.Workload{Addr: addr, Proto: p, File: "nope.bin", Conns: 1, Duration: 300 * time.Millisecond}
			kind := "server_error"
			if p == "http" {
				w.File, w.Path, kind = "", "/nope.bin", "http_status"
			}
			o := run(t, w)
			if ld := o.Load; ld.Requests != 0 || ld.Errors[kind] == 0 || ld.ErrorsTotal != ld.Errors[kind] {
				t.Errorf("missing file: %d requests, errors %v: want only %s", ld.Requests, ld.Errors, kind)
			}
			if !slices.ContainsFunc(o.Warnings, func(s string) bool { return bytes.Contains([]byte(s), []byte("not a standard file")) }) {
				t.Errorf("warnings %q do not say the file is not standard", o.Warnings)
			}
		})
	}
}

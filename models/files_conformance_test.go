package models_test

// The conformance suites of the two protocols that serve files, file and http, over
// every registered model. Their replies depend on a directory, not on the request
// bytes alone, so they are checked against servedTree: the standard test files plus
// entries that probe the root's confinement (symlinks in and out, a subdirectory, an
// empty file, a large file that is not a multiple of any buffer size) and a secret
// just outside the root that no reply may ever contain.
//
// Replies of the file protocol are parsed by readFileReply, written from the wire
// contract alone; http replies by net/http's own http.ReadResponse on a raw TCP
// connection, and once through an http.Client, so what a real client accepts is what
// passes.
//
// The process models (fork, procpool, prefork) start children per server, so they
// run each suite as two combined cases on two servers instead of one server per case.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"concbench/internal/proto"
	"concbench/internal/testfiles"
	"concbench/models"
)

// servedTree is the directory the file and http suites serve and what a correct
// server sends for each name in it.
type servedTree struct {
	root   string
	files  map[string][]byte // servable name under root → its content
	secret []byte            // content of the files outside root: never served
}

// bigSize is the size of the tree's big.bin: above proto.InlineMax (so it goes with
// sendfile), and not a multiple of any frame or buffer size.
const bigSize = 300<<10 + 3

// newServedTree builds, under a fresh temporary directory:
//
//	root/            the standard files (testfiles.Generate), and
//	  empty.txt      0 bytes
//	  big.bin        bigSize pseudo-random bytes
//	  link.bin       symlink to 1k.bin: inside the root, served
//	  escape         symlink to the absolute path of outside/secret.txt: refused
//	  escape-rel     symlink to ../secret: refused
//	  sub/index.html sub/note.txt
//	  nodir/         an empty directory
//	x, secret, outside/secret.txt   the secret, where an escape from root would land
func newServedTree(t *testing.T) *servedTree {
	t.Helper()
	base := t.TempDir()
	root := filepath.Join(base, "root")
	if err := testfiles.Generate(root); err != nil {
		t.Fatal(err)
	}
	tr := &servedTree{
		root:   root,
		files:  map[string][]byte{},
		secret: []byte("concbench secret " + strconv.Itoa(os.Getpid()) + ": outside the root, never served"),
	}
	for _, f := range testfiles.Std {
		b, ok := testfiles.Content(f.Name)
		if !ok || int64(len(b)) != f.Size {
			t.Fatalf("testfiles.Content(%q): %d bytes, ok=%v; want %d", f.Name, len(b), ok, f.Size)
		}
		tr.files[f.Name] = b
	}
	rng := rand.New(rand.NewPCG(17, 18))
	tr.files["empty.txt"] = []byte{}
	tr.files["big.bin"] = randBytes(rng, bigSize)
	tr.files["sub/index.html"] = []byte("<!DOCTYPE html>\n<p>the index of sub/</p>\n")
	tr.files["sub/note.txt"] = []byte("a note in a subdirectory\n")
	for _, d := range []string{filepath.Join(root, "sub"), filepath.Join(root, "nodir"), filepath.Join(base, "outside")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, b := range tr.files {
		if _, std := testfiles.Lookup(name); std {
			continue
		}
		if err := os.WriteFile(filepath.Join(root, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"x", "secret", "outside/secret.txt"} {
		if err := os.WriteFile(filepath.Join(base, p), tr.secret, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"link.bin":   "1k.bin",
		"escape":     filepath.Join(base, "outside", "secret.txt"),
		"escape-rel": "../secret",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	tr.files["link.bin"] = tr.files["1k.bin"]
	return tr
}

// want is the content of name, which must be in the tree.
func (tr *servedTree) want(t *testing.T, name string) []byte {
	t.Helper()
	b, ok := tr.files[name]
	if !ok {
		t.Fatalf("test bug: %q is not a served file", name)
	}
	return b
}

// fileStep is one part of a case, run against a server of the suite's protocol.
type fileStep func(t *testing.T, s *server, tr *servedTree)

// fileCase is a case of the file or http suite: its steps run in order on one
// server; leakCheck also stops that server with downloads in flight and checks that
// no descriptor and no goroutine is left behind.
type fileCase struct {
	name      string
	leakCheck bool
	steps     []fileStep
}

// fileSuite is the cases of one protocol: each on its own server for the models that
// start cheaply, and the few combined ones for the process models.
type fileSuite struct {
	proto        string
	cases        []fileCase
	processCases []fileCase
	// inFlight opens connections that are mid-download (and mid-request) when the
	// server stops, for the leak check.
	inFlight func(t *testing.T, s *server) []*net.TCPConn
}

// isProcessModel reports whether model serves from child processes, which start
// slowly under -race and hold the served files outside this process.
func isProcessModel(model string) bool {
	return model == "fork" || model == "procpool" || model == "prefork"
}

func (fs fileSuite) run(t *testing.T) {
	if len(models.Names()) == 0 {
		t.Fatal("no models registered")
	}
	tr := newServedTree(t)
	for _, model := range models.Names() {
		cases := fs.cases
		if isProcessModel(model) {
			cases = fs.processCases
		}
		for _, tc := range cases {
			t.Run(model+"/"+tc.name, func(t *testing.T) {
				// A leak check counts the whole process's goroutines and
				// descriptors: it runs alone.
				if !tc.leakCheck {
					parallel(t, model)
				}
				fs.runCase(t, model, tc, tr)
			})
		}
	}
}

func (fs fileSuite) runCase(t *testing.T, model string, tc fileCase, tr *servedTree) {
	// Measured before start: the server's Env then opens the root, which it holds
	// for its life (one descriptor more after the stop, while the Env is referenced).
	fds, goroutines := openFDs(t), runtime.NumGoroutine()
	s := start(t, model, fs.proto, func(c *models.Config) { c.Root = tr.root })
	for _, step := range tc.steps {
		step(t, s, tr)
		if t.Failed() {
			return
		}
	}
	if !tc.leakCheck {
		return
	}
	// Every step closed its connections; wait for the server to see it, so that
	// the connections opened now are the only ones left.
	eventually(t, "earlier connections to close", func() bool { return s.env.Stats.Snapshot().Active == 0 })
	conns := fs.inFlight(t, s)
	eventually(t, fmt.Sprintf("%d connections in flight", len(conns)), func() bool {
		return s.env.Stats.Snapshot().Active == int64(len(conns))
	})
	if !isProcessModel(model) {
		// The server holds the files it is sending (8 are owed), which the stop
		// must close. Counted by what each descriptor names, not as a difference
		// of totals: a finalizer or a lingering goroutine of an earlier test
		// closing descriptors meanwhile made that negative once (CI, stop 26).
		held := filesOpenUnder(t, tr.root)
		if held < 1 {
			t.Fatalf("%d files held open mid-download, want at least 1: the check below would prove nothing", held)
		}
		t.Logf("%d files held open mid-download", held)
	}
	// No garbage collection until the check: an *os.File dropped without Close is
	// closed by its finalizer, which would hide the leak at random.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	s.stop()
	for _, c := range conns {
		expectEOF(t, c) // what was already sent may come first
		c.Close()
	}
	if st := s.env.Stats.Snapshot(); st.Active != 0 {
		t.Fatalf("after shutdown: %+v, want 0 active", st)
	}
	eventually(t, fmt.Sprintf("goroutines back to %d", goroutines), func() bool { return runtime.NumGoroutine() <= goroutines })
	const rootFD = 1
	eventually(t, fmt.Sprintf("descriptors back to %d (+%d for the root)", fds, rootFD), func() bool {
		return openFDs(t) <= fds+rootFD
	})
}

// filesOpenUnder counts this process's descriptors open on files below root
// (testfiles.OpenUnder; root itself, which the server's Env holds, not counted).
func filesOpenUnder(t testing.TB, root string) int {
	t.Helper()
	n, err := testfiles.OpenUnder(root)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// diffAt is the first offset where got and want differ, or -1 if they are equal.
func diffAt(got, want []byte) int {
	if bytes.Equal(got, want) {
		return -1
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	return i
}

func checkContent(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if i := diffAt(got, want); i >= 0 {
		t.Fatalf("%s: content differs at byte %d (got %d bytes, want %d)", what, i, len(got), len(want))
	}
}

// ---- file protocol ----

// fileMaxChunk is the largest content frame of a file reply.
const fileMaxChunk = 64 << 10

// fileMaxName is the largest request frame the file protocol accepts.
const fileMaxName = 4096

// fileReq is the request frames for names, in order.
func fileReq(names ...string) []byte {
	var b []byte
	for _, n := range names {
		b = proto.AppendFrame(b, []byte(n))
	}
	return b
}

// readFrame reads one rpc frame whose payload is at most max bytes.
func readFrame(r io.Reader, max int) ([]byte, error) {
	var hdr [proto.HeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > uint32(max) {
		return nil, fmt.Errorf("frame of %d bytes, want at most %d", n, max)
	}
	b := make([]byte, n)
	_, err := io.ReadFull(r, b)
	return b, err
}

// readFileReply reads one reply of the file protocol: "OK <size>", content frames
// of 64 KiB (the last one 1 to 64 KiB) adding up to size, then an empty frame; or one "ERR <reason>"
// frame, whose reason it returns (content is nil then). Errors are about the
// framing or the connection.
func readFileReply(r io.Reader) (content []byte, reason string, err error) {
	head, err := readFrame(r, fileMaxChunk)
	if err != nil {
		return nil, "", fmt.Errorf("reply header: %w", err)
	}
	if rest, ok := bytes.CutPrefix(head, []byte("ERR ")); ok {
		if len(rest) == 0 {
			return nil, "", errors.New("ERR reply without a reason")
		}
		return nil, string(rest), nil
	}
	sz, ok := bytes.CutPrefix(head, []byte("OK "))
	if !ok {
		return nil, "", fmt.Errorf("reply header %q, want \"OK <size>\" or \"ERR <reason>\"", head)
	}
	size, err := strconv.ParseInt(string(sz), 10, 64)
	if err != nil || size < 0 {
		return nil, "", fmt.Errorf("reply header %q: bad size", head)
	}
	content = make([]byte, 0, size)
	for {
		fr, err := readFrame(r, fileMaxChunk)
		if err != nil {
			return nil, "", fmt.Errorf("after %d of %d content bytes: %w", len(content), size, err)
		}
		if len(fr) == 0 {
			break
		}
		if len(content)%fileMaxChunk != 0 {
			return nil, "", fmt.Errorf("a content frame of %d bytes after a short one (every frame full but the last)", len(fr))
		}
		content = append(content, fr...)
		if int64(len(content)) > size {
			return nil, "", fmt.Errorf("content frames add up to more than the %d bytes announced", size)
		}
	}
	if int64(len(content)) != size {
		return nil, "", fmt.Errorf("content ended after %d of %d bytes announced", len(content), size)
	}
	return content, "", nil
}

// expectFile reads a reply to name and checks it is the file's content.
func expectFile(t *testing.T, r io.Reader, tr *servedTree, name string) {
	t.Helper()
	got, reason, err := readFileReply(r)
	switch {
	case err != nil:
		t.Fatalf("%s: %v", name, err)
	case reason != "":
		t.Fatalf("%s: ERR %s, want its %d bytes", name, reason, len(tr.want(t, name)))
	}
	checkContent(t, name, got, tr.want(t, name))
}

// expectFileErr reads a reply to name and checks it is ERR with the reason given.
func expectFileErr(t *testing.T, r io.Reader, tr *servedTree, name, want string) {
	t.Helper()
	got, reason, err := readFileReply(r)
	switch {
	case err != nil:
		t.Fatalf("%.40q: %v", name, err)
	case bytes.Contains(got, tr.secret):
		t.Fatalf("%.40q: served the secret outside the root", name)
	case reason == "":
		t.Fatalf("%.40q: served %d bytes, want ERR %s", name, len(got), want)
	case reason != want:
		t.Fatalf("%.40q: ERR %s, want ERR %s", name, reason, want)
	}
}

// fileDownloads: every file, one after the other on one connection.
func fileDownloads(t *testing.T, s *server, tr *servedTree) {
	c := s.dial(t)
	defer c.Close()
	br := bufio.NewReader(c)
	names := []string{"index.html", "1k.bin", "16k.bin", "64k.bin", "1m.bin", "empty.txt", "big.bin", "link.bin", "sub/note.txt"}
	for _, name := range names {
		if _, err := c.Write(fileReq(name)); err != nil {
			t.Fatal(err)
		}
		expectFile(t, br, tr, name)
	}
	// A request split across writes (and so, most likely, reads).
	req := fileReq("16k.bin")
	for _, part := range [][]byte{req[:2], req[2:6], req[6:]} {
		if _, err := c.Write(part); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	expectFile(t, br, tr, "16k.bin")
}

// filePipelined: five requests in one write, an error among them, answered in order.
func filePipelined(t *testing.T, s *server, tr *servedTree) {
	c := s.dial(t)
	defer c.Close()
	br := bufio.NewReader(c)
	if _, err := c.Write(fileReq("1m.bin", "index.html", "no-such-file", "empty.txt", "big.bin")); err != nil {
		t.Fatal(err)
	}
	expectFile(t, br, tr, "1m.bin")
	expectFile(t, br, tr, "index.html")
	expectFileErr(t, br, tr, "no-such-file", "not found")
	expectFile(t, br, tr, "empty.txt")
	expectFile(t, br, tr, "big.bin")

	// Requests, then the client's FIN with 5 MiB still owed (more than the socket
	// buffers hold): every reply comes, then the close.
	hc := s.dial(t)
	defer hc.Close()
	names := []string{"1m.bin", "1m.bin", "1m.bin", "1m.bin", "big.bin", "1m.bin", "index.html"}
	if _, err := hc.Write(fileReq(names...)); err != nil {
		t.Fatal(err)
	}
	if err := hc.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	hr := bufio.NewReader(hc)
	for _, name := range names {
		expectFile(t, hr, tr, name)
	}
	expectEOF(t, hc)
}

// fileErrors: names that are not served get an ERR each, the connection stays open
// and the secret outside the root never appears.
func fileErrors(t *testing.T, s *server, tr *servedTree) {
	c := s.dial(t)
	defer c.Close()
	br := bufio.NewReader(c)
	for _, tc := range []struct{ name, reason string }{
		{"no-such-file", "not found"},
		{"sub/no-such-file", "not found"},
		{"index.html/x", "not found"},
		{"sub", "not a regular file"},
		{"nodir", "not a regular file"},
		{"../x", "outside the root"},
		{"sub/../../secret", "outside the root"},
		{"/etc/passwd", "outside the root"},
		{tr.root + "/index.html", "outside the root"}, // absolute, even to inside
		{"escape", "outside the root"},
		{"escape-rel", "outside the root"},
	} {
		if _, err := c.Write(fileReq(tc.name)); err != nil {
			t.Fatal(err)
		}
		expectFileErr(t, br, tr, tc.name, tc.reason)
	}
	if _, err := c.Write(fileReq("index.html")); err != nil {
		t.Fatal(err)
	}
	expectFile(t, br, tr, "index.html")
}

// fileOversize: a name of exactly the maximum is a request (for no such file); a
// request frame one byte over closes that connection only.
func fileOversize(t *testing.T, s *server, tr *servedTree) {
	good := s.dial(t)
	defer good.Close()
	gr := bufio.NewReader(good)
	if _, err := good.Write(fileReq("index.html")); err != nil {
		t.Fatal(err)
	}
	expectFile(t, gr, tr, "index.html")

	bad := s.dial(t)
	defer bad.Close()
	br := bufio.NewReader(bad)
	if _, err := bad.Write(fileReq(strings.Repeat("a", fileMaxName))); err != nil {
		t.Fatal(err)
	}
	expectFileErr(t, br, tr, strings.Repeat("a", fileMaxName), "not found")

	errs := s.env.Stats.Snapshot().ProtoErrors
	hdr := binary.BigEndian.AppendUint32(nil, fileMaxName+1)
	if _, err := bad.Write(append(hdr, "index.html"...)); err != nil {
		t.Fatal(err)
	}
	// The server may explain with an ERR frame; it must close, and send no file.
	bad.SetReadDeadline(time.Now().Add(ioTimeout))
	rest, err := io.ReadAll(br)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Fatalf("request frame of %d bytes: the server did not close the connection", fileMaxName+1)
	case len(rest) > 0:
		if _, reason, err := readFileReply(bytes.NewReader(rest)); err != nil || reason == "" {
			t.Fatalf("request frame of %d bytes: got %d bytes %.60q before the close, want nothing or one ERR frame", fileMaxName+1, len(rest), rest)
		}
	}
	eventually(t, "protocol error to be counted", func() bool { return s.env.Stats.Snapshot().ProtoErrors == errs+1 })

	if _, err := good.Write(fileReq("1m.bin")); err != nil {
		t.Fatal(err)
	}
	expectFile(t, gr, tr, "1m.bin")
}

// fileReset: a client that resets in the middle of a long download (its server side
// held in sendfile or queued) costs only its own connection: a download running in
// parallel completes, and a new connection is served.
func fileReset(t *testing.T, s *server, tr *servedTree) {
	eventually(t, "earlier connections to close", func() bool { return s.env.Stats.Snapshot().Active == 0 })
	resetter := s.dial(t)
	defer resetter.Close()
	// 16 MiB owed: more than the socket buffers of both ends hold, so the server
	// is mid-send when the reset comes.
	var req []byte
	for range 16 {
		req = append(req, fileReq("1m.bin")...)
	}
	if _, err := resetter.Write(req); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resetter, make([]byte, 100<<10)); err != nil {
		t.Fatalf("start of the download to reset: %v", err)
	}

	bystander := s.dial(t)
	defer bystander.Close()
	done := make(chan error, 1)
	go func() {
		br := bufio.NewReader(bystander)
		if _, err := bystander.Write(fileReq("1m.bin", "big.bin")); err != nil {
			done <- err
			return
		}
		for _, name := range []string{"1m.bin", "big.bin"} {
			got, reason, err := readFileReply(br)
			if err == nil && (reason != "" || diffAt(got, tr.files[name]) >= 0) {
				err = fmt.Errorf("%d bytes, ERR %q: not the content", len(got), reason)
			}
			if err != nil {
				done <- fmt.Errorf("parallel download of %s: %w", name, err)
				return
			}
		}
		done <- nil
	}()
	time.Sleep(10 * time.Millisecond) // let the parallel download start
	resetter.SetLinger(0)             // close sends RST
	resetter.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	eventually(t, "server to close the reset connection", func() bool { return s.env.Stats.Snapshot().Active == 1 })

	fresh := s.dial(t)
	defer fresh.Close()
	if _, err := fresh.Write(fileReq("64k.bin")); err != nil {
		t.Fatal(err)
	}
	expectFile(t, bufio.NewReader(fresh), tr, "64k.bin")
}

// fileInFlight: one connection owed 8 MiB it does not read, one with half a request.
func fileInFlight(t *testing.T, s *server) []*net.TCPConn {
	busy := s.dial(t)
	var req []byte
	for range 8 {
		req = append(req, fileReq("1m.bin")...)
	}
	if _, err := busy.Write(req); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(busy, make([]byte, 1)); err != nil {
		t.Fatalf("start of the download in flight: %v", err)
	}
	partial := s.dial(t)
	if _, err := partial.Write(fileReq("index.html")[:6]); err != nil {
		t.Fatal(err)
	}
	return []*net.TCPConn{busy, partial}
}

var fileConformance = fileSuite{
	proto: "file",
	cases: []fileCase{
		{name: "downloads", steps: []fileStep{fileDownloads}},
		{name: "pipelined", steps: []fileStep{filePipelined}},
		{name: "errors", steps: []fileStep{fileErrors}},
		{name: "oversize request", steps: []fileStep{fileOversize}},
		{name: "reset mid-download", steps: []fileStep{fileReset}},
		{name: "shutdown mid-download", leakCheck: true},
	},
	processCases: []fileCase{
		{name: "downloads", leakCheck: true, steps: []fileStep{fileDownloads, filePipelined, fileReset}},
		{name: "errors", steps: []fileStep{fileErrors, fileOversize}},
	},
	inFlight: fileInFlight,
}

func TestFileConformance(t *testing.T) { fileConformance.run(t) }

// ---- http ----

// httpConn is a raw TCP connection speaking HTTP, its replies parsed by net/http.
type httpConn struct {
	*net.TCPConn
	br *bufio.Reader
	tr *servedTree
}

func dialHTTP(t *testing.T, s *server, tr *servedTree) *httpConn {
	c := s.dial(t)
	return &httpConn{TCPConn: c, br: bufio.NewReader(c), tr: tr}
}

// httpReq is an HTTP/1.1 request with a Host header and the extra header lines given.
func httpReq(method, target string, header ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: concbench.test\r\n", method, target)
	for _, h := range header {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

func (h *httpConn) send(t *testing.T, reqs ...string) {
	t.Helper()
	if _, err := h.Write([]byte(strings.Join(reqs, ""))); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// response reads the reply to a request of the method given, and its body. No
// reply may carry the secret from outside the root.
// what names the request in messages.
func (h *httpConn) response(t *testing.T, method, what string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.ReadResponse(h.br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s: reading the response: %v", what, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s: reading the body of %q: %v", what, resp.Status, err)
	}
	if bytes.Contains(body, h.tr.secret) {
		t.Fatalf("%s: %q served the secret from outside the root", what, resp.Status)
	}
	return resp, body
}

// expectServed reads the reply to a GET (or HEAD) of a served file and checks it.
func (h *httpConn) expectServed(t *testing.T, method, target, name string) {
	t.Helper()
	resp, body := h.response(t, method, method+" "+target)
	checkServed(t, method+" "+target, resp, body, name, h.tr.want(t, name))
	if resp.Close {
		t.Fatalf("%s %s: Connection: close on a keep-alive request", method, target)
	}
}

// checkServed checks a reply of file name's content: 200, its length, a type, a date
// and (but for HEAD) the body.
func checkServed(t *testing.T, what string, resp *http.Response, body []byte, name string, want []byte) {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: status %q, want 200 OK", what, resp.Status)
	}
	if resp.ContentLength != int64(len(want)) {
		t.Fatalf("%s: Content-Length %d, want %d", what, resp.ContentLength, len(want))
	}
	ct := resp.Header.Get("Content-Type")
	if ct == "" || strings.HasSuffix(name, ".html") && !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("%s: Content-Type %q", what, ct)
	}
	if _, err := http.ParseTime(resp.Header.Get("Date")); err != nil {
		t.Fatalf("%s: Date %q: %v", what, resp.Header.Get("Date"), err)
	}
	if resp.Request.Method == http.MethodHead {
		if len(body) != 0 {
			t.Fatalf("%s: %d bytes of body in reply to HEAD", what, len(body))
		}
		return
	}
	checkContent(t, what, body, want)
}

// expectClose checks that the server closes the connection after last, the reply
// just read, which says so (Connection: close), and sends nothing more.
func (h *httpConn) expectClose(t *testing.T, what string, last *http.Response) {
	t.Helper()
	if !last.Close {
		t.Errorf("%s: %q closes the connection without \"Connection: close\"", what, last.Status)
	}
	h.SetReadDeadline(time.Now().Add(ioTimeout))
	n, err := io.Copy(io.Discard, h.br)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Fatalf("%s: the server did not close the connection", what)
	case n > 0:
		t.Fatalf("%s: %d bytes after the reply, want the close", what, n)
	case err != nil:
		// The reply was read in full; a reset instead of a FIN is the server closing
		// with input unread, which a client may see before the reply.
		t.Logf("%s: connection ended by %v, not a clean close", what, err)
	}
}

// httpGetHead: GET and HEAD of files of every size on one connection (keep-alive);
// a HEAD is followed by a GET, which parses only if HEAD sent no body.
func httpGetHead(t *testing.T, s *server, tr *servedTree) {
	h := dialHTTP(t, s, tr)
	defer h.Close()
	for _, tc := range []struct{ target, name string }{
		{"/index.html", "index.html"},
		{"/", "index.html"},
		{"/1m.bin", "1m.bin"},
		{"/big.bin", "big.bin"},
		{"/1k.bin", "1k.bin"},
		{"/empty.txt", "empty.txt"},
		{"/sub/", "sub/index.html"},
		{"/sub/note.txt", "sub/note.txt"},
		{"/link.bin", "link.bin"},
		{"/%31k.bin", "1k.bin"}, // percent-decoded
	} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			h.send(t, httpReq(method, tc.target))
			h.expectServed(t, method, tc.target, tc.name)
		}
	}
}

// httpPipelined: requests in one write, answered in order.
func httpPipelined(t *testing.T, s *server, tr *servedTree) {
	h := dialHTTP(t, s, tr)
	defer h.Close()
	h.send(t,
		httpReq("GET", "/index.html"),
		httpReq("GET", "/1m.bin"),
		httpReq("GET", "/1k.bin"),
		httpReq("HEAD", "/64k.bin"),
		httpReq("GET", "/no-such-file"),
		httpReq("GET", "/16k.bin"),
	)
	h.expectServed(t, "GET", "/index.html", "index.html")
	h.expectServed(t, "GET", "/1m.bin", "1m.bin")
	h.expectServed(t, "GET", "/1k.bin", "1k.bin")
	h.expectServed(t, "HEAD", "/64k.bin", "64k.bin")
	if resp, _ := h.response(t, "GET", "GET /no-such-file"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /no-such-file: %q, want 404", resp.Status)
	}
	h.expectServed(t, "GET", "/16k.bin", "16k.bin")

	// Requests, then the client's FIN with 6 MiB still owed: every reply comes,
	// then the close.
	hc := dialHTTP(t, s, tr)
	defer hc.Close()
	hc.send(t, strings.Repeat(httpReq("GET", "/1m.bin"), 6)+httpReq("GET", "/index.html"))
	if err := hc.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	for range 6 {
		hc.expectServed(t, "GET", "/1m.bin after the client's FIN", "1m.bin")
	}
	hc.expectServed(t, "GET", "/index.html after the client's FIN", "index.html")
	hc.SetReadDeadline(time.Now().Add(ioTimeout))
	if n, err := io.Copy(io.Discard, hc.br); n > 0 || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after the replies owed at the client's FIN: %d more bytes, %v; want the close", n, err)
	}
}

// httpKeepAlive: sequential requests on one connection; the server keeps it open
// between them (a write after the reply reaches the same server connection).
func httpKeepAlive(t *testing.T, s *server, tr *servedTree) {
	h := dialHTTP(t, s, tr)
	defer h.Close()
	for _, name := range []string{"index.html", "64k.bin", "1k.bin"} {
		time.Sleep(5 * time.Millisecond) // a server that closes after a reply would have by now
		h.send(t, httpReq("GET", "/"+name))
		h.expectServed(t, "GET", "/"+name, name)
	}
}

// httpClose: "Connection: close" and HTTP/1.0 without keep-alive get their reply,
// then the close. With 8 MiB owed when the session ends (more than the socket
// buffers hold), the close must wait for all of it to be written.
func httpClose(t *testing.T, s *server, tr *servedTree) {
	owed := strings.Repeat(httpReq("GET", "/1m.bin"), 7) + httpReq("GET", "/1m.bin", "Connection: close")
	for _, tc := range []struct {
		what, req string
		names     []string
	}{
		{"HTTP/1.1 Connection: close", httpReq("GET", "/index.html", "Connection: close"), []string{"index.html"}},
		{"HTTP/1.1 Connection: close, 8 MiB owed", owed, slices.Repeat([]string{"1m.bin"}, 8)},
		{"HTTP/1.0", "GET /1k.bin HTTP/1.0\r\n\r\n", []string{"1k.bin"}},
		{"HTTP/1.0, 1 MiB", "GET /1m.bin HTTP/1.0\r\nHost: concbench.test\r\n\r\n", []string{"1m.bin"}},
	} {
		h := dialHTTP(t, s, tr)
		h.send(t, tc.req)
		var resp *http.Response
		for i, name := range tc.names {
			what := fmt.Sprintf("%s, reply %d", tc.what, i+1)
			var body []byte
			resp, body = h.response(t, "GET", what)
			checkServed(t, what, resp, body, name, tr.want(t, name))
		}
		h.expectClose(t, tc.what, resp)
		h.Close()
	}
}

// httpErrors: each error status, and whether the connection stays open after it (a
// GET on it then works) or closes.
func httpErrors(t *testing.T, s *server, tr *servedTree) {
	longTarget := "/" + strings.Repeat("a", 5000)
	manyHeaders := make([]string, 200)
	for i := range manyHeaders {
		manyHeaders[i] = fmt.Sprintf("X-Header-%03d: %s", i, strings.Repeat("v", 40))
	}
	for _, tc := range []struct {
		what   string
		req    string
		status int
		closes bool
	}{
		{"malformed request line", "NOT A REQUEST\r\n\r\n", 400, true},
		{"header without a colon", httpReq("GET", "/index.html", "Broken header"), 400, true},
		{"missing file", httpReq("GET", "/no-such-file"), 404, false},
		{"missing in a subdirectory", httpReq("GET", "/sub/no-such-file"), 404, false},
		{"directory without index.html", httpReq("GET", "/nodir/"), 404, false},
		{"POST", httpReq("POST", "/index.html", "Content-Length: 0"), 405, false},
		{"DELETE", httpReq("DELETE", "/index.html"), 405, false},
		{"target over 4 KiB", httpReq("GET", longTarget), 414, true},
		{"request line over 8 KiB", httpReq("GET", "/"+strings.Repeat("b", 9000)), 414, true},
		{"one header over 8 KiB", httpReq("GET", "/index.html", "X-Big: "+strings.Repeat("b", 9000)), 431, true},
		{"headers over 8 KiB", httpReq("GET", "/index.html", manyHeaders...), 431, true},
		{"HTTP/2.0", "GET /index.html HTTP/2.0\r\nHost: concbench.test\r\n\r\n", 505, true},
		{"HTTP/3.0", "GET /index.html HTTP/3.0\r\nHost: concbench.test\r\n\r\n", 505, true},
	} {
		h := dialHTTP(t, s, tr)
		h.send(t, tc.req)
		resp, _ := h.response(t, "GET", tc.what)
		if resp.StatusCode != tc.status {
			t.Fatalf("%s: status %q, want %d", tc.what, resp.Status, tc.status)
		}
		if tc.status == http.StatusMethodNotAllowed && !strings.Contains(resp.Header.Get("Allow"), "GET") {
			t.Errorf("%s: 405 with Allow %q, want the methods allowed", tc.what, resp.Header.Get("Allow"))
		}
		if tc.closes {
			h.expectClose(t, tc.what, resp)
		} else {
			if resp.Close {
				t.Fatalf("%s: %s with Connection: close, want the connection kept", tc.what, resp.Status)
			}
			h.send(t, httpReq("GET", "/index.html"))
			h.expectServed(t, "GET", "/index.html after "+tc.what, "index.html")
		}
		h.Close()
	}

	// A refused POST with a body: the server keeps the connection and skips the
	// body, or closes; it never reads the body as the next request.
	h := dialHTTP(t, s, tr)
	defer h.Close()
	body := httpReq("GET", "/1k.bin") // a body that looks like a request
	h.send(t, httpReq("POST", "/index.html", "Content-Length: "+strconv.Itoa(len(body)))+body)
	if resp, _ := h.response(t, "POST", "POST with a body"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST with a body: status %q, want 405", resp.Status)
	}
	if _, err := h.Write([]byte(httpReq("GET", "/index.html"))); err != nil {
		return // closed after the 405: allowed
	}
	resp, err := http.ReadResponse(h.br, &http.Request{Method: "GET"})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("GET after a POST with a body: no reply and no close: %v", err)
	}
	if err != nil {
		return // closed after the 405: allowed
	}
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	checkServed(t, "GET after a POST with a body", resp, got, "index.html", tr.want(t, "index.html"))
}

// httpTraversal: targets that lead out of the root, in several encodings, never get
// 200 nor the secret. A ".." element after percent-decoding is 400 (and the close).
func httpTraversal(t *testing.T, s *server, tr *servedTree) {
	for _, tc := range []struct {
		target string
		status []int // acceptable statuses
	}{
		{"/../x", []int{400}},
		{"/../../../../etc/passwd", []int{400}},
		{"/sub/../../x", []int{400}},
		{"/%2e%2e/x", []int{400}},
		{"/%2E%2e%2fetc%2fpasswd", []int{400}},
		{"/a/..%2f..%2fsecret", []int{400}},
		{"/sub%2f..%2f..%2foutside%2fsecret.txt", []int{400}},
		{"/%252e%252e/x", []int{400, 404}}, // decoded once it is "%2e%2e/x": a name, not ".."
		{"/escape", []int{400, 403, 404}},
		{"/escape-rel", []int{400, 403, 404}},
		{"/index.html%00", []int{400, 404}},
	} {
		h := dialHTTP(t, s, tr)
		h.send(t, httpReq("GET", tc.target))
		resp, _ := h.response(t, "GET", "GET "+tc.target) // fails on the secret
		ok := false
		for _, st := range tc.status {
			ok = ok || resp.StatusCode == st
		}
		if !ok {
			t.Fatalf("GET %s: status %q, want one of %v", tc.target, resp.Status, tc.status)
		}
		if resp.StatusCode == http.StatusBadRequest {
			h.expectClose(t, "GET "+tc.target, resp)
		}
		h.Close()
	}
}

// httpClient: net/http's client downloads through one kept-alive connection.
func httpClient(t *testing.T, s *server, tr *servedTree) {
	transport := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: ioTimeout}
	for i, tc := range []struct {
		method, target, name string
		status               int
	}{
		{"GET", "/index.html", "index.html", 200},
		{"GET", "/1m.bin", "1m.bin", 200},
		{"HEAD", "/big.bin", "big.bin", 200},
		{"GET", "/no-such-file", "", 404},
		{"GET", "/sub/", "sub/index.html", 200},
	} {
		var reused bool
		trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) { reused = ci.Reused }}
		req, err := http.NewRequest(tc.method, "http://"+s.addr+tc.target, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.target, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s %s: body: %v", tc.method, tc.target, err)
		}
		if bytes.Contains(body, tr.secret) {
			t.Fatalf("%s %s: served the secret", tc.method, tc.target)
		}
		if resp.StatusCode != tc.status {
			t.Fatalf("%s %s: status %q, want %d", tc.method, tc.target, resp.Status, tc.status)
		}
		if tc.status == http.StatusOK {
			checkServed(t, tc.method+" "+tc.target, resp, body, tc.name, tr.want(t, tc.name))
		}
		if i > 0 && !reused {
			t.Fatalf("%s %s: request %d did not reuse the kept-alive connection", tc.method, tc.target, i+1)
		}
	}
}

// httpInFlight: one connection owed 8 MiB it does not read, one with half a request.
func httpInFlight(t *testing.T, s *server) []*net.TCPConn {
	busy := s.dial(t)
	if _, err := busy.Write([]byte(strings.Repeat(httpReq("GET", "/1m.bin"), 8))); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(busy, make([]byte, 1)); err != nil {
		t.Fatalf("start of the download in flight: %v", err)
	}
	partial := s.dial(t)
	if _, err := partial.Write([]byte("GET /index.html HTTP/1.1\r\nHo")); err != nil {
		t.Fatal(err)
	}
	return []*net.TCPConn{busy, partial}
}

var httpConformance = fileSuite{
	proto: "http",
	cases: []fileCase{
		{name: "get and head", steps: []fileStep{httpGetHead}},
		{name: "pipelined", steps: []fileStep{httpPipelined}},
		{name: "keep-alive", steps: []fileStep{httpKeepAlive}},
		{name: "connection close", steps: []fileStep{httpClose}},
		{name: "errors", steps: []fileStep{httpErrors}},
		{name: "traversal", steps: []fileStep{httpTraversal}},
		{name: "net/http client", steps: []fileStep{httpClient}},
		{name: "shutdown mid-download", leakCheck: true},
	},
	processCases: []fileCase{
		{name: "downloads", leakCheck: true, steps: []fileStep{httpGetHead, httpPipelined, httpKeepAlive, httpClose, httpClient}},
		{name: "errors", steps: []fileStep{httpErrors, httpTraversal}},
	},
	inFlight: httpInFlight,
}

func TestHTTPConformance(t *testing.T) { httpConformance.run(t) }

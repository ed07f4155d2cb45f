package proto

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// httpFiles is the content of the test root; big.bin goes with sendfile.
var httpFiles = map[string][]byte{
	"index.html":     []byte("<!DOCTYPE html><h1>home</h1>\n"),
	"small.txt":      []byte("hello, world\n"),
	"big.bin":        httpPattern(InlineMax*2 + 123),
	"edge.bin":       httpPattern(InlineMax), // the largest inline file
	"sub/index.html": []byte("<p>sub</p>\n"),
	"sub/a b.txt":    []byte("spaced\n"),
	"%2e%2e":         []byte("a file literally named %2e%2e\n"),
}

func httpPattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

// httpTree writes httpFiles under dir/root, a secret beside the root, and two
// symlinks: escape (to the secret, out of the root) and inner (to small.txt).
func httpTree(t testing.TB, dir string) string {
	t.Helper()
	root := filepath.Join(dir, "root")
	for name, content := range httpFiles {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "secret.txt"), []byte("secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../secret.txt", filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("small.txt", filepath.Join(root, "inner")); err != nil {
		t.Fatal(err)
	}
	return root
}

func newHTTPProto(t testing.TB, work Work) Protocol {
	t.Helper()
	p, err := New("http", Options{Root: httpTree(t, t.TempDir()), Work: work})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// httpDrain takes everything o owes, as a model would: bytes as they are, file
// pieces read with pread(2) from the piece's descriptor.
func httpDrain(t testing.TB, o *Out) []byte {
	t.Helper()
	var b []byte
	for {
		p := o.Head()
		switch {
		case p.Bytes != nil:
			b = append(b, p.Bytes...)
			o.Advance(len(p.Bytes))
		case p.File != nil:
			buf := make([]byte, p.N)
			n, err := unix.Pread(p.FD, buf, p.Off)
			if err != nil || n == 0 {
				t.Fatalf("pread %s at %d: %d, %v", p.File.Name(), p.Off, n, err)
			}
			b = append(b, buf[:n]...)
			o.Advance(n)
		default:
			if o.Len() != 0 || o.Files() != 0 {
				t.Fatalf("empty head but %d bytes, %d files owed", o.Len(), o.Files())
			}
			return b
		}
	}
}

// httpFeed feeds in to a new session in pieces of the given sizes (cycled; none:
// all at once), stopping at the first error as a model does, and returns what the
// session owes and the error.
func httpFeed(t testing.TB, p Protocol, in []byte, sizes ...int) ([]byte, error) {
	t.Helper()
	s := p.NewSession()
	var o Out
	var err error
	for i := 0; len(in) > 0 && err == nil; i++ {
		n := len(in)
		if len(sizes) > 0 {
			n = min(n, sizes[i%len(sizes)])
		}
		err = s.Feed(&o, in[:n])
		in = in[n:]
	}
	return httpDrain(t, &o), err
}

// httpResp is a response as net/http's client reads it, with its body.
type httpResp struct {
	*http.Response
	body []byte
}

// httpReadAll parses b as consecutive responses to requests with the given methods
// (the client must know which were HEAD) and fails unless b holds exactly those.
func httpReadAll(t testing.TB, b []byte, methods ...string) []httpResp {
	t.Helper()
	br := bufio.NewReader(bytes.NewReader(b))
	var rs []httpResp
	for i, m := range methods {
		r, err := http.ReadResponse(br, &http.Request{Method: m})
		if err != nil {
			t.Fatalf("response %d: %v\nin %q", i, err, trunc(b))
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Fatalf("response %d body: %v", i, err)
		}
		rs = append(rs, httpResp{r, body})
	}
	if rest, _ := io.ReadAll(br); len(rest) > 0 {
		t.Fatalf("%d bytes after %d responses: %q", len(rest), len(methods), trunc(rest))
	}
	return rs
}

// maskDates blanks the values of the Date headers in b, the only part of a reply
// that varies.
func maskDates(b []byte) []byte {
	const key = "\r\nDate: "
	b = bytes.Clone(b)
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte(key))
		if j < 0 {
			return b
		}
		i += j + len(key)
		for ; i < len(b) && b[i] != '\r'; i++ {
			b[i] = '*'
		}
	}
}

// errKind names how an error ends a connection: "" (it does not), "close" (after
// the reply, the client's choice) or "fatal" (after the reply, a protocol error).
func errKind(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrClose) && errors.Is(err, ErrProtocol):
		return "fatal"
	case errors.Is(err, ErrClose):
		return "close"
	}
	return "bare: " + err.Error()
}

func get(target string) string { return "GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n" }

// httpConnection is the Connection header as sent: net/http's reader drops a
// "close" from the header and sets Close instead. Replies are all HTTP/1.1, so
// Close means exactly that.
func httpConnection(r *http.Response) string {
	if r.Close {
		return "close"
	}
	return r.Header.Get("Connection")
}

// httpReason is the reason phrase of RFC 9110, which net/http's StatusText
// follows except for 414 (it keeps RFC 2616's "Request URI Too Long").
func httpReason(code int) string {
	if code == http.StatusRequestURITooLong {
		return "URI Too Long"
	}
	return http.StatusText(code)
}

func TestHTTPRequests(t *testing.T) {
	p := newHTTPProto(t, Work{})
	longTarget := "/" + strings.Repeat("a", httpMaxTarget-1)
	// Field lines of exactly the limit, and one byte over it.
	atLimit := "Host: x\r\nX: " + strings.Repeat("h", httpMaxHeader-14) + "\r\n"
	overLimit := "Host: x\r\nX: " + strings.Repeat("h", httpMaxHeader-13) + "\r\n"
	tests := []struct {
		name   string
		req    string
		method string // HEAD when the reply is to one
		code   int
		body   []byte // nil: not checked (error replies are checked by code)
		conn   string // the Connection header wanted
		err    string // errKind
	}{
		{name: "inline", req: get("/small.txt"), code: 200, body: httpFiles["small.txt"]},
		{name: "sendfile", req: get("/big.bin"), code: 200, body: httpFiles["big.bin"]},
		{name: "largest inline", req: get("/edge.bin"), code: 200, body: httpFiles["edge.bin"]},
		{name: "HEAD inline", req: "HEAD /small.txt HTTP/1.1\r\nHost: x\r\n\r\n", method: "HEAD", code: 200, body: []byte{}},
		{name: "HEAD sendfile", req: "HEAD /big.bin HTTP/1.1\r\nHost: x\r\n\r\n", method: "HEAD", code: 200, body: []byte{}},
		{name: "HEAD missing", req: "HEAD /nope HTTP/1.1\r\nHost: x\r\n\r\n", method: "HEAD", code: 404, body: []byte{}},
		{name: "index", req: get("/"), code: 200, body: httpFiles["index.html"]},
		{name: "sub index", req: get("/sub/"), code: 200, body: httpFiles["sub/index.html"]},
		{name: "sub dot", req: get("/sub/."), code: 200, body: httpFiles["sub/index.html"]},
		{name: "double slash", req: get("//sub//index.html"), code: 200, body: httpFiles["sub/index.html"]},
		{name: "directory", req: get("/sub"), code: 404},
		{name: "missing", req: get("/nope.html"), code: 404},
		{name: "escaped space", req: get("/sub/a%20b.txt"), code: 200, body: httpFiles["sub/a b.txt"]},
		{name: "query and fragment", req: get("/small.txt?a=1&b=/../x#frag"), code: 200, body: httpFiles["small.txt"]},
		{name: "absolute form", req: get("http://example.com/small.txt?q"), code: 200, body: httpFiles["small.txt"]},
		{name: "absolute form no path", req: get("HTTP://example.com"), code: 200, body: httpFiles["index.html"]},
		{name: "absolute form no host", req: get("http:///small.txt"), code: 400, err: "fatal"},
		{name: "asterisk GET", req: get("*"), code: 400, err: "fatal"},
		{name: "symlink inside", req: get("/inner"), code: 200, body: httpFiles["small.txt"]},
		{name: "LF only", req: "GET /small.txt HTTP/1.1\nHost: x\n\n", code: 200, body: httpFiles["small.txt"]},
		{name: "leading empty lines", req: "\r\n\n" + get("/small.txt"), code: 200, body: httpFiles["small.txt"]},
		{name: "header spacing", req: "GET /small.txt HTTP/1.1\r\nHost:x\r\nX-A: \t b \t\r\n\r\n", code: 200},
		{name: "target at limit", req: get(longTarget), code: 404},
		{name: "header at limit", req: "GET /small.txt HTTP/1.1\r\n" + atLimit + "\r\n", code: 200, body: httpFiles["small.txt"]},

		// Traversal, in every encoding, never leaves the root.
		{name: "dotdot", req: get("/../secret.txt"), code: 400, err: "fatal"},
		{name: "dotdot encoded", req: get("/%2e%2e/secret.txt"), code: 400, err: "fatal"},
		{name: "dotdot mixed case slash", req: get("/%2E%2e%2fetc/passwd"), code: 400, err: "fatal"},
		{name: "dotdot encoded slashes", req: get("/a/..%2f..%2fx"), code: 400, err: "fatal"},
		{name: "dotdot inside", req: get("/sub/../small.txt"), code: 400, err: "fatal"},
		{name: "dotdot absolute form", req: get("http://h/../secret.txt"), code: 400, err: "fatal"},
		{name: "backslash", req: get("/..%5c..%5csecret.txt"), code: 404},
		{name: "double encoded", req: get("/%252e%252e/secret.txt"), code: 404},
		{name: "double encoded is literal", req: get("/%252e%252e"), code: 200, body: httpFiles["%2e%2e"]},
		{name: "symlink out", req: get("/escape"), code: 404},
		{name: "NUL", req: get("/small.txt%00.html"), code: 400, err: "fatal"},
		{name: "bad escape", req: get("/%zz"), code: 400, err: "fatal"},
		{name: "short escape", req: get("/a%2"), code: 400, err: "fatal"},
		{name: "escape at end", req: get("/a%"), code: 400, err: "fatal"},

		// Connection management.
		{name: "close", req: "GET /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", code: 200, body: httpFiles["small.txt"], conn: "close", err: "close"},
		{name: "close among tokens", req: "GET /small.txt HTTP/1.1\r\nHost: x\r\nConnection: Keep-Alive\r\nconnection: upgrade , CLOSE\r\n\r\n", code: 200, conn: "close", err: "close"},
		{name: "1.1 keep-alive token", req: "GET /small.txt HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", code: 200},
		{name: "1.0", req: "GET /small.txt HTTP/1.0\r\n\r\n", code: 200, body: httpFiles["small.txt"], conn: "close", err: "close"},
		{name: "1.0 keep-alive", req: "GET /small.txt HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", code: 200, body: httpFiles["small.txt"], conn: "keep-alive"},
		{name: "1.0 keep-alive and close", req: "GET /small.txt HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", code: 200, conn: "close", err: "close"},
		{name: "1.0 404", req: "GET /nope HTTP/1.0\r\n\r\n", code: 404, conn: "close", err: "close"},

		// Methods and versions.
		{name: "POST", req: "POST /small.txt HTTP/1.1\r\nHost: x\r\n\r\n", code: 405},
		{name: "lower-case get", req: "get /small.txt HTTP/1.1\r\nHost: x\r\n\r\n", code: 405},
		{name: "OPTIONS asterisk", req: "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", code: 405},
		{name: "HTTP/2.0", req: "GET / HTTP/2.0\r\nHost: x\r\n\r\n", code: 505, conn: "close", err: "fatal"},
		{name: "HTTP/1.2", req: "GET / HTTP/1.2\r\nHost: x\r\n\r\n", code: 505, conn: "close", err: "fatal"},
		{name: "HTTP/0.9", req: "GET / HTTP/0.9\r\n\r\n", code: 505, conn: "close", err: "fatal"},
		{name: "lower-case version", req: "GET / http/1.1\r\nHost: x\r\n\r\n", code: 400, err: "fatal"},
		{name: "long version", req: "GET / HTTP/1.10\r\nHost: x\r\n\r\n", code: 400, err: "fatal"},
		{name: "no version", req: "GET /\r\n\r\n", code: 400, err: "fatal"},
		{name: "two spaces", req: "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", code: 400, err: "fatal"},
		{name: "garbage", req: "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", code: 400, err: "fatal"},
		{name: "bad method", req: "G(T / HTTP/1.1\r\nHost: x\r\n\r\n", code: 400, err: "fatal"},
		{name: "control in target", req: "GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n", code: 400, err: "fatal"},

		// Header fields.
		{name: "no Host", req: "GET /small.txt HTTP/1.1\r\n\r\n", code: 400, conn: "close", err: "fatal"},
		{name: "two Hosts", req: "GET /small.txt HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", code: 400, err: "fatal"},
		{name: "space before colon", req: "GET /small.txt HTTP/1.1\r\nHost : x\r\n\r\n", code: 400, err: "fatal"},
		{name: "obs-fold", req: "GET /small.txt HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  b\r\n\r\n", code: 400, err: "fatal"},
		{name: "no colon", req: "GET /small.txt HTTP/1.1\r\nHost: x\r\nnocolon\r\n\r\n", code: 400, err: "fatal"},
		{name: "empty name", req: "GET /small.txt HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n", code: 400, err: "fatal"},
		{name: "bare CR in value", req: "GET /small.txt HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", code: 400, err: "fatal"},
		{name: "HEAD error has no body", req: "HEAD /small.txt HTTP/1.1\r\nHost : x\r\n\r\n", method: "HEAD", code: 400, body: []byte{}, err: "fatal"},
		{name: "Transfer-Encoding", req: "POST /small.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", code: 501, conn: "close", err: "fatal"},
		{name: "Content-Length letters", req: "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1a\r\n\r\n", code: 400, err: "fatal"},
		{name: "Content-Length sign", req: "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n", code: 400, err: "fatal"},
		{name: "Content-Length empty", req: "GET / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", code: 400, err: "fatal"},
		{name: "Content-Length overflow", req: "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", code: 400, err: "fatal"},
		{name: "Content-Length list differs", req: "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 2\r\n\r\nab", code: 400, err: "fatal"},
		{name: "Content-Length fields differ", req: "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", code: 400, err: "fatal"},
		{name: "Content-Length repeated", req: "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\nab", code: 200, body: httpFiles["index.html"]},
		{name: "Expect with body", req: "GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n", code: 200, conn: "close", err: "close"},

		// Limits.
		{name: "target over limit", req: get(longTarget + "a"), code: 414, conn: "close", err: "fatal"},
		{name: "request line over limit", req: "GET /?" + strings.Repeat("q", httpMaxLine) + " HTTP/1.1\r\nHost: x\r\n\r\n", code: 414, err: "fatal"},
		{name: "request line over limit, unfinished", req: "GET /" + strings.Repeat("q", httpMaxLine), code: 414, err: "fatal"},
		{name: "header over limit", req: "GET /small.txt HTTP/1.1\r\n" + overLimit + "\r\n", code: 431, conn: "close", err: "fatal"},
		{name: "header over limit, unfinished", req: "GET /small.txt HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-A: b\r\n", httpMaxHeader/8+1), code: 431, err: "fatal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = "GET"
			}
			got, err := httpFeed(t, p, []byte(tt.req))
			if k := errKind(err); k != tt.err {
				t.Fatalf("error %v: kind %q, want %q", err, k, tt.err)
			}
			r := httpReadAll(t, got, method)[0]
			if r.StatusCode != tt.code {
				t.Fatalf("status %d, want %d; body %q", r.StatusCode, tt.code, r.body)
			}
			if tt.body != nil && !bytes.Equal(r.body, tt.body) {
				t.Errorf("body %d bytes %q, want %d bytes %q", len(r.body), trunc(r.body), len(tt.body), trunc(tt.body))
			}
			if c := httpConnection(r.Response); c != tt.conn && !(tt.conn == "" && tt.err != "" && c == "close") {
				t.Errorf("Connection %q, want %q", c, tt.conn)
			}
			if c := httpConnection(r.Response); tt.err != "" && c != "close" {
				t.Errorf("a closing reply says Connection %q", c)
			}
			if r.Header.Get("Server") != "concbench" {
				t.Errorf("Server %q", r.Header.Get("Server"))
			}
			wantLen := int64(len(tt.body))
			if tt.code != 200 {
				wantLen = int64(len(fmt.Sprintf("%d %s\n", tt.code, httpReason(tt.code))))
				if method != "HEAD" && string(r.body) != fmt.Sprintf("%d %s\n", tt.code, httpReason(tt.code)) {
					t.Errorf("error body %q", r.body)
				}
				if ct := r.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
					t.Errorf("error Content-Type %q", ct)
				}
			} else if method == "HEAD" {
				wantLen = int64(len(httpFiles[strings.Fields(tt.req)[1][1:]]))
			}
			if tt.body != nil || tt.code != 200 {
				if cl := r.Header.Get("Content-Length"); cl != strconv.FormatInt(wantLen, 10) {
					t.Errorf("Content-Length %s, want %d", cl, wantLen)
				}
			}
			if tt.code == 405 && r.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("405 Allow %q", r.Header.Get("Allow"))
			}
			// The reason phrase is the standard one.
			if want := strconv.Itoa(tt.code) + " " + httpReason(tt.code); r.Status != want {
				t.Errorf("status line %q, want %q", r.Status, want)
			}
		})
	}
}

func TestHTTPContentType(t *testing.T) {
	p := newHTTPProto(t, Work{})
	for _, tt := range []struct{ target, want string }{
		{"/", "text/html; charset=utf-8"},
		{"/sub/index.html", "text/html; charset=utf-8"},
		{"/small.txt", "text/plain"},
		{"/%252e%252e", "application/octet-stream"}, // "%2e%2e": no dot
		{"/inner", "application/octet-stream"},      // no extension
	} {
		got, err := httpFeed(t, p, []byte(get(tt.target)))
		if err != nil {
			t.Fatal(err)
		}
		r := httpReadAll(t, got, "GET")[0]
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.want) {
			t.Errorf("%s: Content-Type %q, want %q", tt.target, ct, tt.want)
		}
	}
}

func TestHTTPSendfile(t *testing.T) {
	p := newHTTPProto(t, Work{})
	for _, tt := range []struct {
		req   string
		files int
	}{
		{get("/big.bin"), 1},
		{get("/edge.bin"), 0},
		{get("/small.txt"), 0},
		{"HEAD /big.bin HTTP/1.1\r\nHost: x\r\n\r\n", 0},
	} {
		var o Out
		if err := p.NewSession().Feed(&o, []byte(tt.req)); err != nil {
			t.Fatal(err)
		}
		if o.Files() != tt.files {
			t.Errorf("%q: %d files owed, want %d", tt.req, o.Files(), tt.files)
		}
		o.Reset()
	}
}

func TestHTTPKeepAlive(t *testing.T) {
	p := newHTTPProto(t, Work{})
	for _, tt := range []struct {
		name  string
		reqs  []string
		codes []int
		err   string // after the last request
	}{
		{"1.1", []string{get("/small.txt"), get("/big.bin"), get("/nope"), "DELETE / HTTP/1.1\r\nHost: x\r\n\r\n", get("/")}, []int{200, 200, 404, 405, 200}, ""},
		{"1.1 then close", []string{get("/small.txt"), "GET /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"}, []int{200, 200}, "close"},
		{"1.0 keep-alive", []string{"GET /small.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "GET /big.bin HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "GET / HTTP/1.0\r\n\r\n"}, []int{200, 200, 200}, "close"},
		{"bodies skipped", []string{"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nGET /", "GET /small.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", get("/")}, []int{405, 200, 200}, ""},
		{"CRLF after body", []string{"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab\r\n", get("/small.txt")}, []int{405, 200}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := p.NewSession()
			var o Out
			for i, req := range tt.reqs {
				err := s.Feed(&o, []byte(req))
				want := ""
				if i == len(tt.reqs)-1 {
					want = tt.err
				}
				if k := errKind(err); k != want {
					t.Fatalf("request %d: error %v, want %q", i, err, want)
				}
				r := httpReadAll(t, httpDrain(t, &o), "GET")[0]
				if r.StatusCode != tt.codes[i] {
					t.Fatalf("request %d: status %d, want %d", i, r.StatusCode, tt.codes[i])
				}
			}
		})
	}
}

// httpPipeline is three requests in one read: an inline GET, a HEAD of a sendfile
// file, and a sendfile GET with a body to skip, the last one split mid-head.
var httpPipeline = []byte(get("/small.txt") +
	"HEAD /big.bin HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" +
	"GET /big.bin HTTP/1.1\nHost: x\nContent-Length: 4\n\nbody")

func TestHTTPPipelined(t *testing.T) {
	p := newHTTPProto(t, Work{})
	whole, err := httpFeed(t, p, httpPipeline)
	if err != nil {
		t.Fatal(err)
	}
	rs := httpReadAll(t, whole, "GET", "HEAD", "GET")
	for i, want := range []struct {
		code int
		body []byte
		cl   int
	}{
		{200, httpFiles["small.txt"], len(httpFiles["small.txt"])},
		{200, []byte{}, len(httpFiles["big.bin"])},
		{200, httpFiles["big.bin"], len(httpFiles["big.bin"])},
	} {
		r := rs[i]
		if r.StatusCode != want.code || !bytes.Equal(r.body, want.body) || r.ContentLength != int64(want.cl) {
			t.Errorf("reply %d: %d, %d bytes, Content-Length %d; want %d, %d, %d", i, r.StatusCode, len(r.body), r.ContentLength, want.code, len(want.body), want.cl)
		}
	}
	if c := rs[1].Header.Get("Connection"); c != "keep-alive" {
		t.Errorf("HTTP/1.0 keep-alive reply: Connection %q", c)
	}

	// Every split into two reads, and byte at a time, owes the same bytes.
	want := maskDates(whole)
	for cut := 0; cut <= len(httpPipeline); cut++ {
		s := p.NewSession()
		var o Out
		err1 := s.Feed(&o, httpPipeline[:cut])
		err2 := s.Feed(&o, httpPipeline[cut:])
		if err1 != nil || err2 != nil {
			t.Fatalf("cut %d: %v, %v", cut, err1, err2)
		}
		if got := maskDates(httpDrain(t, &o)); !bytes.Equal(got, want) {
			t.Fatalf("cut %d: owes %d bytes, want %d (first difference at %d)", cut, len(got), len(want), httpFirstDiff(got, want))
		}
	}
	got, err := httpFeed(t, p, httpPipeline, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(maskDates(got), want) {
		t.Fatalf("byte at a time: owes %d bytes, want %d", len(got), len(want))
	}
}

// TestHTTPSplitErrors: errors are decided by the bytes, not by how they were split.
func TestHTTPSplitErrors(t *testing.T) {
	p := newHTTPProto(t, Work{})
	for _, in := range []string{
		get("/small.txt") + "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
		get("/small.txt") + "GET /" + strings.Repeat("q", httpMaxLine+10),
		"GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-A: b\r\n", httpMaxHeader/8+1),
		"GET / HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("b", httpMaxHeader-4) + "\r\n\r",
		"\r\n\r\r\n",
	} {
		want, wantErr := httpFeed(t, p, []byte(in))
		for _, size := range []int{1, 2, 3, 7, 100, 4096} {
			got, err := httpFeed(t, p, []byte(in), size)
			if errKind(err) != errKind(wantErr) || !bytes.Equal(maskDates(got), maskDates(want)) {
				t.Fatalf("%.40q in %d-byte reads: %q, %v; at once: %q, %v", in, size, trunc(got), err, trunc(want), wantErr)
			}
		}
	}
}

func httpFirstDiff(a, b []byte) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return i
}

func TestHTTPDate(t *testing.T) {
	p := newHTTPProto(t, Work{})
	before := time.Now().Truncate(time.Second)
	got, err := httpFeed(t, p, []byte(get("/small.txt")))
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	d := httpReadAll(t, got, "GET")[0].Header.Get("Date")
	if httpTimeFormat != http.TimeFormat {
		t.Fatalf("layout %q differs from net/http's %q", httpTimeFormat, http.TimeFormat)
	}
	tm, err := time.Parse(http.TimeFormat, d)
	if err != nil || len(d) != len(http.TimeFormat) || !strings.HasSuffix(d, " GMT") {
		t.Fatalf("Date %q is not IMF-fixdate: %v", d, err)
	}
	if tm.Before(before) || tm.After(after) {
		t.Errorf("Date %v not within [%v, %v]", tm, before, after)
	}
}

func TestHTTPWork(t *testing.T) {
	const d = 5 * time.Millisecond
	p := newHTTPProto(t, Work{Kind: WorkSleep, D: d})
	in := []byte(get("/small.txt") + get("/nope") + "PUT / HTTP/1.1\r\nHost: x\r\n\r\n")
	start := time.Now()
	got, err := httpFeed(t, p, in)
	if err != nil {
		t.Fatal(err)
	}
	httpReadAll(t, got, "GET", "GET", "GET")
	if el := time.Since(start); el < 3*d {
		t.Errorf("3 requests with %v of work each took %v", d, el)
	}
}

// TestHTTPConcurrent: sessions of one protocol share the Date line and the
// content-type cache; run it with -race.
func TestHTTPConcurrent(t *testing.T) {
	p := newHTTPProto(t, Work{})
	targets := []string{"/", "/small.txt", "/big.bin", "/inner", "/sub/a%20b.txt", "/nope"}
	done := make(chan error)
	for g := range 8 {
		go func() {
			s := p.NewSession()
			var o Out
			var err error
			for i := range 200 {
				if err = s.Feed(&o, []byte(get(targets[(g+i)%len(targets)]))); err != nil {
					break
				}
				o.Reset()
			}
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func TestHTTPFeedAfterClose(t *testing.T) {
	p := newHTTPProto(t, Work{})
	s := p.NewSession()
	var o Out
	if err := s.Feed(&o, []byte("GET / HTTP/1.0\r\n\r\n")); !errors.Is(err, ErrClose) {
		t.Fatalf("err %v, want ErrClose", err)
	}
	n := o.Len()
	if err := s.Feed(&o, []byte(get("/"))); !errors.Is(err, ErrClose) || o.Len() != n {
		t.Fatalf("a closed session answered: err %v, %d more bytes", err, o.Len()-n)
	}
	o.Reset()
}

func TestHTTPNoRoot(t *testing.T) {
	if _, err := New("http", Options{}); err == nil {
		t.Fatal("http without a root: no error")
	}
}

// TestHTTPAllocs: a request answered from the read buffer allocates nothing but
// what opening the file costs, plus the name os.Root takes as a string.
func TestHTTPAllocs(t *testing.T) {
	p := newHTTPProto(t, Work{})
	root := p.(*httpProto).root
	open := func(name string) func() {
		return func() {
			if f, _, err := root.open(name); err == nil {
				f.Close()
			}
		}
	}
	s := p.NewSession()
	var o Out
	for _, tt := range []struct {
		req  string
		open func() // what the request costs besides parsing and replying
	}{
		{"OPTIONS /a%20b HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nContent-Length: 0\r\nAccept: */*\r\n\r\n", nil},
		{get("/small.txt"), open("small.txt")},
		{"HEAD /sub/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", open("sub/index.html")},
		{get("/nope"), open("nope")},
	} {
		req := []byte(tt.req)
		n := testing.AllocsPerRun(200, func() {
			if err := s.Feed(&o, req); err != nil {
				t.Fatal(err)
			}
			o.Advance(len(o.Head().Bytes))
		})
		want := 0.0
		if tt.open != nil {
			want = testing.AllocsPerRun(200, tt.open) + 1
		}
		if n > want {
			t.Errorf("%q: %.1f allocations per request, want <= %.0f", tt.req, n, want)
		}
	}
}

func BenchmarkHTTPFeed(b *testing.B) {
	p := newHTTPProto(b, Work{})
	for _, target := range []string{"/small.txt", "/big.bin", "/nope"} {
		b.Run(target[1:], func(b *testing.B) {
			s := p.NewSession()
			var o Out
			req := []byte(get(target))
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Feed(&o, req); err != nil {
					b.Fatal(err)
				}
				o.Reset()
			}
		})
	}
}

// FuzzHTTPFeed: any input, fed in any pieces, gets the same replies and the same
// kind of error as fed at once, never a panic; an error always lets its reply out.
func FuzzHTTPFeed(f *testing.F) {
	p := newHTTPProto(f, Work{})
	f.Add(httpPipeline, []byte{0})
	f.Fuzz(func(t *testing.T, in, sizes []byte) {
		want, wantErr := httpFeed(t, p, in)
		steps := make([]int, len(sizes))
		for i, c := range sizes {
			steps[i] = int(c) + 1
		}
		got, err := httpFeed(t, p, in, steps...)
		if errKind(err) != errKind(wantErr) {
			t.Fatalf("in pieces %v: error %v; at once: %v", steps, err, wantErr)
		}
		if err != nil && !errors.Is(err, ErrClose) {
			t.Fatalf("error %v closes without a reply", err)
		}
		if !bytes.Equal(maskDates(got), maskDates(want)) {
			t.Fatalf("in pieces %v: owes %q; at once: %q", steps, trunc(got), trunc(want))
		}
		if len(want) > 0 && !bytes.HasPrefix(want, []byte("HTTP/1.1 ")) {
			t.Fatalf("reply %q", trunc(want))
		}
	})
}

package loadgen

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"

	"concbench/internal/proto"
	"concbench/internal/testfiles"
)

func (v verdict) String() string {
	return [...]string{"more", "ok", "wrong", "bad_frame", "server_error", "http_status"}[v]
}

// content is a standard file's bytes.
func content(tb testing.TB, name string) []byte {
	tb.Helper()
	b, ok := testfiles.Content(name)
	if !ok {
		tb.Fatalf("%s is not a standard file", name)
	}
	return b
}

// fileReplyBytes is a file-protocol reply announcing size and carrying body in
// frames of at most chunk bytes, then the end frame.
func fileReplyBytes(size int, body []byte, chunk int) []byte {
	b := proto.AppendFrame(nil, fmt.Appendf(nil, "OK %d", size))
	for len(body) > 0 {
		k := min(chunk, len(body))
		b = proto.AppendFrame(b, body[:k])
		body = body[k:]
	}
	return proto.AppendFrame(b, nil)
}

// httpReplyBytes is a 200 response with the given extra header lines.
func httpReplyBytes(body []byte, headers ...string) []byte {
	h := "HTTP/1.1 200 OK\r\nServer: test\r\n"
	for _, l := range headers {
		h += l + "\r\n"
	}
	if !slices.ContainsFunc(headers, func(l string) bool { return strings.HasPrefix(strings.ToLower(l), "content-length") }) {
		h += fmt.Sprintf("Content-Length: %d\r\n", len(body))
	}
	return append([]byte(h+"\r\n"), body...)
}

// feeder is either parser.
type feeder interface {
	feed(p []byte, ex *expect) (int, verdict)
}

// verdicts feeds stream to a fresh parser in pieces of at most step bytes and
// returns the verdicts other than vMore (with "+close" for a response that said
// the server closes), stopping at the first that ends the connection.
func verdicts(t *testing.T, p feeder, ex expect, stream []byte, step int) []string {
	t.Helper()
	var out []string
	for off := 0; off < len(stream); {
		piece := stream[off:min(off+step, len(stream))]
		for len(piece) > 0 {
			n, v := p.feed(piece, &ex)
			if n < 0 || n > len(piece) || (v == vMore && n != len(piece)) {
				t.Fatalf("feed of %d bytes consumed %d with verdict %v", len(piece), n, v)
			}
			piece = piece[n:]
			off += n
			switch v {
			case vMore:
				continue
			case vOK, vWrong:
				s := v.String()
				if h, ok := p.(*httpReply); ok && h.closing {
					s += "+close"
				}
				out = append(out, s)
			default:
				return append(out, v.String())
			}
		}
	}
	return out
}

func TestFileReplyParse(t *testing.T) {
	t.Parallel()
	k1 := content(t, "1k.bin")
	m1 := content(t, "1m.bin")
	flipped := bytes.Clone(k1)
	flipped[500] ^= 1
	ok := fileReplyBytes(len(k1), k1, 300)
	errFrame := proto.AppendFrame(nil, []byte("ERR not found"))
	hdr := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
	std := expectFor("file", "1k.bin")
	tests := []struct {
		name   string
		ex     expect
		stream []byte
		want   []string
	}{
		{"one", std, ok, []string{"ok"}},
		{"pipelined", std, slices.Concat(ok, ok, ok), []string{"ok", "ok", "ok"}},
		{"1m in 64k frames", expectFor("file", "1m.bin"), fileReplyBytes(len(m1), m1, 64<<10), []string{"ok"}},
		{"bad checksum", std, slices.Concat(fileReplyBytes(len(k1), flipped, 1024), ok), []string{"wrong", "ok"}},
		{"announced size wrong", std, slices.Concat(fileReplyBytes(1000, k1[:1000], 1000), ok), []string{"wrong", "ok"}},
		{"frames short of the size", std, slices.Concat(fileReplyBytes(1024, k1[:1000], 1000), ok), []string{"wrong", "ok"}},
		{"frames beyond the size", std, slices.Concat(fileReplyBytes(1000, k1, 1024), ok), []string{"wrong", "ok"}},
		{"other file consistent", expect{}, fileReplyBytes(3, []byte("abc"), 2), []string{"ok"}},
		{"other file short", expect{}, fileReplyBytes(4, []byte("abc"), 2), []string{"wrong"}},
		{"empty other file", expect{}, fileReplyBytes(0, nil, 1), []string{"ok"}},
		{"ERR", std, slices.Concat(errFrame, ok), []string{"server_error"}},
		{"long ERR", std, proto.AppendFrame(nil, append([]byte("ERR "), bytes.Repeat([]byte("x"), 1000)...)), []string{"server_error"}},
		{"chunk too large", std, slices.Concat(proto.AppendFrame(nil, []byte("OK 70000")), hdr(64<<10+1)), []string{"bad_frame"}},
		{"empty status", std, hdr(0), []string{"bad_frame"}},
		{"status too long", std, hdr(statusMax + 1), []string{"bad_frame"}},
		{"not OK", std, proto.AppendFrame(nil, []byte("HELLO 1024")), []string{"bad_frame"}},
		{"OK no digits", std, proto.AppendFrame(nil, []byte("OK ")), []string{"bad_frame"}},
		{"OK negative", std, proto.AppendFrame(nil, []byte("OK -1")), []string{"bad_frame"}},
		{"OK 19 digits", std, proto.AppendFrame(nil, []byte("OK 1000000000000000000")), []string{"bad_frame"}},
	}
	for _, tt := range tests {
		for _, step := range []int{1, 3, 4, 5, 1000, 1 << 30} {
			t.Run(fmt.Sprintf("%s/step%d", tt.name, step), func(t *testing.T) {
				if got := verdicts(t, new(fileReply), tt.ex, tt.stream, step); !slices.Equal(got, tt.want) {
					t.Errorf("verdicts %v, want %v", got, tt.want)
				}
			})
		}
	}
}

func TestHTTPReplyParse(t *testing.T) {
	t.Parallel()
	idx := content(t, "index.html")
	flipped := bytes.Clone(idx)
	flipped[10] ^= 1
	ok := httpReplyBytes(idx)
	std := expectFor("http", "/index.html")
	tests := []struct {
		name   string
		ex     expect
		stream []byte
		want   []string
	}{
		{"one", std, ok, []string{"ok"}},
		{"pipelined", std, slices.Concat(ok, ok, ok), []string{"ok", "ok", "ok"}},
		{"1m", expectFor("http", "/1m.bin"), httpReplyBytes(content(t, "1m.bin"), "Content-Type: application/octet-stream"), []string{"ok"}},
		{"bad checksum", std, slices.Concat(httpReplyBytes(flipped), ok), []string{"wrong", "ok"}},
		{"wrong length", std, slices.Concat(httpReplyBytes(idx[:100]), ok), []string{"wrong", "ok"}},
		{"other path", expect{}, httpReplyBytes([]byte("hello")), []string{"ok"}},
		{"empty body", expect{}, httpReplyBytes(nil), []string{"ok"}},
		{"lower-case, bare LF, no reason", std, append([]byte("HTTP/1.1 200\ncontent-length:  "+fmt.Sprint(len(idx))+" \n\n"), idx...), []string{"ok"}},
		{"long headers", std, httpReplyBytes(idx, "X-Long: "+strings.Repeat("a", 500), "Set-Cookie: "+strings.Repeat("b", 97)), []string{"ok"}},
		{"connection close", std, slices.Concat(httpReplyBytes(idx, "Connection: close"), ok), []string{"ok+close", "ok"}},
		{"connection tokens", std, httpReplyBytes(idx, "Connection: Upgrade, Close"), []string{"ok+close"}},
		{"http/1.0", std, append([]byte("HTTP/1.0 200 OK\r\nContent-Length: "+fmt.Sprint(len(idx))+"\r\n\r\n"), idx...), []string{"ok+close"}},
		{"http/1.0 keep-alive", std, append([]byte("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: "+fmt.Sprint(len(idx))+"\r\n\r\n"), idx...), []string{"ok"}},
		{"404", std, []byte("HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found"), []string{"http_status"}},
		{"204", std, []byte("HTTP/1.1 204 No Content\r\n\r\n"), []string{"http_status"}},
		{"500 no length", std, []byte("HTTP/1.1 500 Oops\r\n\r\n"), []string{"http_status"}},
		{"chunked", std, []byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), []string{"bad_frame"}},
		{"no length", std, []byte("HTTP/1.1 200 OK\r\n\r\nhello"), []string{"bad_frame"}},
		{"two lengths", std, httpReplyBytes(idx, "Content-Length: 5", "Content-Length: 6"), []string{"bad_frame"}},
		{"bad length", std, httpReplyBytes(idx, "Content-Length: 12x"), []string{"bad_frame"}},
		{"not http", std, []byte("SSH-2.0-OpenSSH\r\n"), []string{"bad_frame"}},
		{"no colon", std, []byte("HTTP/1.1 200 OK\r\nbroken header\r\n\r\n"), []string{"bad_frame"}},
		{"headers too long", std, append([]byte("HTTP/1.1 200 OK\r\n"), bytes.Repeat([]byte("X-A: b\r\n"), headerMax/6)...), []string{"bad_frame"}},
	}
	for _, tt := range tests {
		for _, step := range []int{1, 2, 7, 100, 1 << 30} {
			t.Run(fmt.Sprintf("%s/step%d", tt.name, step), func(t *testing.T) {
				if got := verdicts(t, new(httpReply), tt.ex, tt.stream, step); !slices.Equal(got, tt.want) {
					t.Errorf("verdicts %v, want %v", got, tt.want)
				}
			})
		}
	}
}

func TestHTTPRequest(t *testing.T) {
	t.Parallel()
	if got, want := string(httpRequest("/1k.bin", "127.0.0.1:80", false)), "GET /1k.bin HTTP/1.1\r\nHost: 127.0.0.1:80\r\nUser-Agent: concbench-loadgen\r\n\r\n"; got != want {
		t.Errorf("request %q, want %q", got, want)
	}
	if got, want := string(httpRequest("/", "unix:/tmp/s.sock", true)), "GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: concbench-loadgen\r\nConnection: close\r\n\r\n"; got != want {
		t.Errorf("reconnect request %q, want %q", got, want)
	}
}

// FuzzHTTPReply: no input makes the parser consume more than it was given, stall
// (return vMore without consuming everything), or panic; and feeding in pieces
// gives the verdicts of feeding at once.
func FuzzHTTPReply(f *testing.F) {
	f.Add(httpReplyBytes([]byte("hello")), 3)
	f.Add([]byte("HTTP/1.1 404 x\r\n\r\n"), 1)
	f.Fuzz(func(t *testing.T, stream []byte, step int) {
		step = max(1, step%64)
		ex := expect{}
		whole := verdicts(t, new(httpReply), ex, stream, len(stream)+1)
		if pieces := verdicts(t, new(httpReply), ex, stream, step); !slices.Equal(whole, pieces) {
			t.Fatalf("whole %v, in pieces of %d %v", whole, step, pieces)
		}
	})
}

// FuzzFileReply is FuzzHTTPReply for the file protocol.
func FuzzFileReply(f *testing.F) {
	f.Add(fileReplyBytes(3, []byte("abc"), 2), 3)
	f.Add(proto.AppendFrame(nil, []byte("ERR x")), 1)
	f.Fuzz(func(t *testing.T, stream []byte, step int) {
		step = max(1, step%64)
		ex := expectFor("file", "1k.bin")
		whole := verdicts(t, new(fileReply), ex, stream, len(stream)+1)
		if pieces := verdicts(t, new(fileReply), ex, stream, step); !slices.Equal(whole, pieces) {
			t.Fatalf("whole %v, in pieces of %d %v", whole, step, pieces)
		}
	})
}

func TestIsStd(t *testing.T) {
	t.Parallel()
	tests := []struct {
		proto, name string
		want        bool
	}{
		{"file", "1k.bin", true},
		{"file", "index.html", true},
		{"file", "1k.bin?x", false},
		{"file", "sub/1k.bin", false},
		{"http", "/1m.bin", true},
		{"http", "/1m.bin?cache=no", true},
		{"http", "/", true},
		{"http", "/?x=1", true},
		{"http", "/sub/", false},
		{"http", "/2k.bin", false},
	}
	for _, tt := range tests {
		if got := IsStd(tt.proto, tt.name); got != tt.want {
			t.Errorf("IsStd(%q, %q) = %v, want %v", tt.proto, tt.name, got, tt.want)
		}
	}
}

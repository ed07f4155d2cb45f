// The http protocol: HTTP/1.1 (and HTTP/1.0) serving the regular files under
// Options.Root, read-only. Nothing else: no ranges, no conditional requests, no
// compression, no directory listings, no redirects, no chunked request bodies.
//
// Requests
//
//   - Methods GET and HEAD (HEAD: the same headers as GET, no body). Any other
//     syntactically valid method gets 405 with "Allow: GET, HEAD"; the connection stays.
//   - Request line: METHOD SP TARGET SP HTTP/x.y, single spaces. The method is a
//     token and case-sensitive; the target is visible ASCII or bytes >= 0x80.
//     HTTP/1.1 and HTTP/1.0 are served; any other well-formed version is 505.
//   - Line endings CRLF or bare LF (lenient, like nginx); empty lines before a
//     request line are skipped. Header field names are tokens with the colon right
//     after them (whitespace before the colon is 400), values lose surrounding
//     spaces and tabs and may not hold control characters other than tab; an
//     obsolete folded line (one starting with a space or tab) is 400.
//   - HTTP/1.1 requires exactly one Host field (400 otherwise); HTTP/1.0 allows at
//     most one. Its value is not checked further.
//   - Connection: comma-separated tokens, compared case-insensitively, over every
//     Connection field. HTTP/1.1 keeps the connection unless "close" is among them;
//     HTTP/1.0 closes it unless "keep-alive" is ("close" wins over both). A reply that
//     ends the connection says "Connection: close"; one that keeps an HTTP/1.0
//     connection says "Connection: keep-alive".
//   - Bodies: a request may carry one framed by Content-Length, which is skipped.
//     Content-Length must be digits (or a list of identical values, RFC 9110 §8.6);
//     anything else, or two fields that disagree, is 400. Any Transfer-Encoding is
//     501. A body announced with "Expect: 100-continue" is not waited for: the reply
//     goes at once and closes the connection, since the client may never send it.
//   - Pipelining: any number of requests in one read, a request split at any byte;
//     replies go in request order.
//   - Limits: a request line over 8 KiB (8192 bytes, without its line ending) or a
//     target over 4 KiB is 414; a header section (the field lines with their line
//     endings) over 8 KiB is 431. Both are decided as soon as the bytes received
//     prove it, so a session never holds more than about 16 KiB of a request.
//
// Targets and confinement
//
// The target is origin-form ("/path?query") or absolute-form
// ("http://host/path?query", scheme case-insensitive, host ignored); anything else
// given to GET or HEAD is 400. The query and any fragment are dropped. The path is
// then percent-decoded once: "%" not followed by two hex digits is 400, and so is
// "%00". Only after decoding is it split on "/" (so "%2f" separates elements):
// empty and "." elements are dropped, and a ".." element is 400 whatever its
// encoding ("/../x", "/%2e%2e/x", "/a/..%2f..%2fx"); no legitimate client sends one,
// as clients remove dot segments before sending. A path ending in "/" (or "/.")
// names that directory's index.html. The name is then opened under the root with
// os.Root, which refuses, as 404, any symlink leading out of it; a backslash is an
// ordinary byte in a Linux name ("/..%5c.." is just not found), and a double
// encoding ("%252e%252e") decodes once to a literal name, also not found.
//
// Replies
//
// Every reply has the status line "HTTP/1.1 <code> <reason>", then Server,
// Date (IMF-fixdate, formatted once a second for all sessions), Content-Type,
// Content-Length and, where needed, Connection. A file's type comes from its
// extension (mime.TypeByExtension; text/html for .html and .htm whatever the
// system's tables say; application/octet-stream for the rest). A file's content
// goes inline up to InlineMax and with sendfile(2) above. Error replies have a short
// text/plain body ("404 Not Found\n"), left out for HEAD.
//
// Status codes
//
// These keep the connection (unless Connection, or HTTP/1.0 without keep-alive,
// says otherwise, when Feed's error wraps ErrClose only):
//
//	200 OK                   the file (GET), or its headers (HEAD)
//	404 Not Found            no such file or no permission; not a regular file (a
//	                         directory named without its slash); a symlink that
//	                         leads out of the root
//	405 Method Not Allowed   a method other than GET and HEAD
//	503 Service Unavailable  the server is out of descriptors
//
// These are sent, then the connection is closed: Feed's error wraps ErrClose and,
// for the client's errors (all but 500), ErrProtocol, as the request cannot be
// trusted to frame the next one.
//
//	400 Bad Request                      malformed request line, field line, Host,
//	                                     Content-Length, target or escape; a ".."
//	                                     element; NUL in the path
//	414 URI Too Long                     request line over 8 KiB, target over 4 KiB
//	431 Request Header Fields Too Large  header section over 8 KiB
//	500 Internal Server Error            the file could not be read (it shrank)
//	501 Not Implemented                  Transfer-Encoding
//	505 HTTP Version Not Supported       HTTP/x.y other than HTTP/1.0 and HTTP/1.1
//
// Per-request work (Options.Work) runs once for every request whose head was read
// and understood, the ones answered 200, 404, 405 or 503, before its reply is
// produced; requests refused as malformed do not run it.

package proto

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func init() { constructors["http"] = newHTTP }

// Limits on a request head, in bytes.
const (
	httpMaxLine   = 8 << 10 // request line, without its line ending
	httpMaxTarget = 4 << 10 // request target
	httpMaxHeader = 8 << 10 // field lines with their line endings, without the blank line
	// httpMaxHead bounds what a session buffers of a head split across reads: the
	// limits above decide before a head grows this long (see frame).
	httpMaxHead = httpMaxLine + httpMaxHeader + 4
	// httpKeepHead is the largest head buffer kept once a request is done.
	httpKeepHead = 4 << 10
	// httpMaxTypes bounds the content-type cache; it only holds extensions of files
	// that were served, so it stays small unless the root is unusual.
	httpMaxTypes = 256
)

// httpTimeFormat is the IMF-fixdate layout of the Date header (net/http's TimeFormat).
const httpTimeFormat = "Mon, 02 Jan 2006 15:04:05 GMT"

// errHTTPDone ends a connection the client (or HTTP/1.0) did not keep alive.
var errHTTPDone = fmt.Errorf("%w: http: connection not kept alive", ErrClose)

type httpProto struct {
	root   *fileRoot
	work   Work
	maxOut int
	mu     sync.Mutex                        // serializes writers of types
	types  atomic.Pointer[map[string]string] // content type by extension, copy on write
}

func newHTTP(o Options) (Protocol, error) {
	r, err := openFileRoot("http", o.Root)
	if err != nil {
		return nil, err
	}
	return &httpProto{root: r, work: o.Work, maxOut: outputCap(o)}, nil
}

func (p *httpProto) Name() string        { return "http" }
func (p *httpProto) NewSession() Session { return &httpSession{p: p} }

// contentType is the Content-Type of the file name. Lookups are a map read; the
// first request for an extension asks the mime package and adds it.
func (p *httpProto) contentType(name string) string {
	ext := path.Ext(name)
	m := p.types.Load()
	if m != nil {
		if t, ok := (*m)[ext]; ok {
			return t
		}
	}
	t := typeByExtension(ext)
	p.mu.Lock()
	defer p.mu.Unlock()
	m = p.types.Load()
	if m == nil || len(*m) < httpMaxTypes {
		next := make(map[string]string, 8)
		if m != nil {
			for k, v := range *m {
				next[k] = v
			}
		}
		next[ext] = t
		p.types.Store(&next)
	}
	return t
}

func typeByExtension(ext string) string {
	// The system's tables (/etc/mime.types) override Go's built-in ones and may drop
	// the charset; HTML pages are what a browser or loadgen expects as such.
	if strings.EqualFold(ext, ".html") || strings.EqualFold(ext, ".htm") {
		return "text/html; charset=utf-8"
	}
	if ext != "" {
		if t := mime.TypeByExtension(ext); t != "" {
			return t
		}
	}
	return "application/octet-stream"
}

// httpSession parses requests incrementally. A head wholly inside one src is
// parsed and answered straight from src; only a head split across reads is copied
// into buf, and only up to httpMaxHead bytes.
type httpSession struct {
	p    *httpProto
	buf  []byte // the start of a head split across reads
	skip int64  // body bytes of the last request still to discard
	done bool   // an error was returned: the connection is over

	// The head being received, as offsets from its first byte (in buf or src).
	scan  int  // where the search for the next line feed resumes
	hdr   int  // start of the field lines; 0 until the request line is complete
	mEnd  int  // the method is head[:mEnd]
	tEnd  int  // the target is head[mEnd+1:tEnd]
	minor byte // HTTP/1.minor
	head  bool // the method is HEAD: replies have no body

	name []byte // scratch for the decoded path
}

// Feed answers every request src completes, in order (see Session). A head that
// src leaves incomplete waits in buf; the body of the last request is skipped as
// it arrives.
func (s *httpSession) Feed(out *Out, src []byte) error {
	if s.done {
		return errHTTPDone
	}
	for len(src) > 0 {
		if s.skip > 0 {
			k := min(s.skip, int64(len(src)))
			s.skip -= k
			src = src[k:]
			continue
		}
		var head []byte
		if len(s.buf) == 0 {
			src = src[skipEmptyLines(src):]
			if len(src) == 0 {
				break
			}
			n, code, why := s.frame(src)
			if code != 0 {
				return s.fail(out, code, why)
			}
			if n == 0 {
				// frame has checked the limits, so this copy is at most httpMaxHead.
				s.buf = append(s.buf, src...)
				return nil
			}
			head, src = src[:n], src[n:]
		} else {
			if len(s.buf) == 1 && s.buf[0] == '\r' && src[0] == '\n' {
				// An empty line before a request, split between its CR and LF.
				s.buf, s.scan = s.buf[:0], 0
				src = src[1:]
				continue
			}
			old := len(s.buf)
			k := min(len(src), httpMaxHead-old)
			s.buf = append(s.buf, src[:k]...)
			n, code, why := s.frame(s.buf)
			if code != 0 {
				return s.fail(out, code, why)
			}
			if n == 0 {
				if k < len(src) { // cannot happen: frame decides before httpMaxHead
					return s.fail(out, 431, "head over the buffer limit")
				}
				return nil
			}
			head, src = s.buf[:n], src[n-old:]
		}
		err := s.serve(out, head)
		s.scan, s.hdr, s.head = 0, 0, false
		if cap(s.buf) > httpKeepHead {
			s.buf = nil
		} else {
			s.buf = s.buf[:0]
		}
		if err != nil {
			s.done = true
			return err
		}
	}
	return nil
}

// skipEmptyLines is the length of the empty lines (LF or CRLF) that start b.
func skipEmptyLines(b []byte) int {
	i := 0
	for i < len(b) {
		switch {
		case b[i] == '\n':
			i++
		case b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n':
			i += 2
		default:
			return i
		}
	}
	return i
}

// frame looks for the end of the request head that starts b, resuming where the
// last call on a shorter b stopped. It returns the head's length through its blank
// line, or 0 if more bytes are needed, or an error status (with why) as soon as b
// proves the head malformed or over a limit. The request line is parsed as soon as
// it is complete, into s.mEnd, s.tEnd, s.minor and s.head.
//
// The decisions depend only on the bytes, never on how they were split: while the
// request line has no LF, it is at least len(b)-1 bytes long (the last byte may be
// its CR); while the head has no blank line, its field lines are at least
// len(b)-s.hdr-1 bytes (the last byte may be the blank line's CR). So a head is
// decided before it reaches httpMaxLine+2+httpMaxHeader+2 bytes.
func (s *httpSession) frame(b []byte) (n, code int, why string) {
	if s.hdr == 0 {
		i := bytes.IndexByte(b[s.scan:], '\n')
		if i < 0 {
			if len(b)-1 > httpMaxLine {
				return 0, 414, "request line too long"
			}
			s.scan = len(b)
			return 0, 0, ""
		}
		i += s.scan
		line := trimCR(b[:i])
		if len(line) > httpMaxLine {
			return 0, 414, "request line too long"
		}
		s.mEnd, s.tEnd, s.minor, code, why = parseRequestLine(line)
		if code != 0 {
			return 0, code, why
		}
		s.head = string(line[:s.mEnd]) == "HEAD"
		s.hdr = i + 1
		s.scan = i // the blank line may follow the request line at once
	}
	for {
		i := bytes.IndexByte(b[s.scan:], '\n')
		if i < 0 {
			s.scan = len(b)
			break
		}
		i += s.scan
		var end int
		switch {
		case i+1 == len(b) || b[i+1] == '\r' && i+2 == len(b):
			// Maybe the blank line, cut short: look here again with more bytes.
			s.scan = i
		case b[i+1] == '\n':
			end = i + 2
		case b[i+1] == '\r' && b[i+2] == '\n':
			end = i + 3
		default:
			s.scan = i + 1
			continue
		}
		if end == 0 {
			break
		}
		if i+1-s.hdr > httpMaxHeader {
			return 0, 431, "header section too long"
		}
		return end, 0, ""
	}
	if len(b)-s.hdr-1 > httpMaxHeader {
		return 0, 431, "header section too long"
	}
	return 0, 0, ""
}

// parseRequestLine splits line (without its line ending) into method, target and
// version: the method is line[:mEnd], the target line[mEnd+1:tEnd]. It returns 400
// for a malformed line, 414 for a target over httpMaxTarget, 505 for a version
// other than HTTP/1.0 and HTTP/1.1.
func parseRequestLine(line []byte) (mEnd, tEnd int, minor byte, code int, why string) {
	mEnd = bytes.IndexByte(line, ' ')
	if mEnd <= 0 || !isToken(line[:mEnd]) {
		return 0, 0, 0, 400, "malformed method"
	}
	t := bytes.IndexByte(line[mEnd+1:], ' ')
	if t <= 0 {
		return 0, 0, 0, 400, "malformed request line"
	}
	tEnd = mEnd + 1 + t
	for _, c := range line[mEnd+1 : tEnd] {
		if c <= ' ' || c == 0x7f {
			return 0, 0, 0, 400, "control character in target"
		}
	}
	v := line[tEnd+1:]
	if len(v) != 8 || string(v[:5]) != "HTTP/" || !isDigit(v[5]) || v[6] != '.' || !isDigit(v[7]) {
		return 0, 0, 0, 400, "malformed version"
	}
	if t > httpMaxTarget {
		return 0, 0, 0, 414, "target too long"
	}
	if v[5] != '1' || v[7] > '1' {
		return 0, 0, 0, 505, "version " + string(v) + " not supported"
	}
	return mEnd, tEnd, v[7] - '0', 0, ""
}

// serve answers one complete head: its request line is parsed (s.mEnd, s.tEnd,
// s.minor), its field lines start at s.hdr, and it ends with its blank line.
func (s *httpSession) serve(out *Out, head []byte) error {
	if err := checkOutput(out, s.p.maxOut); err != nil {
		return err
	}
	var (
		hosts             int
		closeTok, keepTok bool
		length            int64 = -1
		chunked, expect   bool
	)
	for h := head[s.hdr:]; ; {
		i := bytes.IndexByte(h, '\n')
		line := trimCR(h[:i])
		h = h[i+1:]
		if len(line) == 0 {
			break // the blank line
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			return s.fail(out, 400, "field line without a colon")
		}
		name := line[:colon]
		if !isToken(name) {
			// Also a space before the colon, and an obsolete folded line.
			return s.fail(out, 400, "malformed field name")
		}
		value := trimOWS(line[colon+1:])
		for _, c := range value {
			if c < ' ' && c != '\t' || c == 0x7f {
				return s.fail(out, 400, "control character in field value")
			}
		}
		switch {
		case equalFold(name, "host"):
			hosts++
		case equalFold(name, "connection"):
			c, k := connectionTokens(value)
			closeTok, keepTok = closeTok || c, keepTok || k
		case equalFold(name, "content-length"):
			n, ok := parseContentLength(value)
			if !ok || length >= 0 && n != length {
				return s.fail(out, 400, "invalid Content-Length")
			}
			length = n
		case equalFold(name, "transfer-encoding"):
			chunked = true
		case equalFold(name, "expect"):
			expect = expect || equalFold(value, "100-continue")
		}
	}
	if chunked {
		return s.fail(out, 501, "Transfer-Encoding not supported")
	}
	if hosts > 1 || hosts == 0 && s.minor == 1 {
		return s.fail(out, 400, "missing or repeated Host")
	}
	keep := !closeTok && (s.minor == 1 || keepTok)
	if expect && length > 0 {
		keep = false
	}
	if length > 0 {
		s.skip = length
	}
	conn := ""
	switch {
	case !keep:
		conn = "Connection: close\r\n"
	case s.minor == 0:
		conn = "Connection: keep-alive\r\n"
	}

	if m := head[:s.mEnd]; string(m) != "GET" && string(m) != "HEAD" {
		s.p.work.Do()
		out.Buf = appendError(out.Buf, 405, "Allow: GET, HEAD\r\n"+conn, s.head)
		return keepOrClose(keep)
	}
	name, code, why := s.resolve(head[s.mEnd+1 : s.tEnd])
	if code != 0 {
		return s.fail(out, code, why)
	}
	s.p.work.Do()
	f, size, err := s.p.root.open(name)
	if err != nil {
		code := 404
		if errors.Is(err, errBusy) {
			code = 503
		}
		out.Buf = appendError(out.Buf, code, conn, s.head)
		return keepOrClose(keep)
	}
	mark := len(out.Buf)
	out.Buf = appendHead(out.Buf, 200, s.p.contentType(name), size, conn)
	if s.head {
		f.Close()
		return keepOrClose(keep)
	}
	if err := appendContent(out, f, size, 0); err != nil {
		out.Buf = appendError(out.Buf[:mark], 500, "Connection: close\r\n", false)
		return fmt.Errorf("%w: http 500: %w", ErrClose, err)
	}
	return keepOrClose(keep)
}

func keepOrClose(keep bool) error {
	if keep {
		return nil
	}
	return errHTTPDone
}

// fail appends the error reply for a request the client got wrong and returns the
// error that ends the connection after it.
func (s *httpSession) fail(out *Out, code int, why string) error {
	s.done = true
	out.Buf = appendError(out.Buf, code, "Connection: close\r\n", s.head)
	return fmt.Errorf("%w: %w: http %d: %s", ErrClose, ErrProtocol, code, why)
}

// resolve turns a target into the name to open under the root (see the file's
// comment), in s.name's memory. It returns 400 with a reason for a target it
// refuses.
func (s *httpSession) resolve(target []byte) (string, int, string) {
	p := target
	if p[0] != '/' {
		rest, ok := cutPrefixFold(p, "http://")
		if !ok {
			rest, ok = cutPrefixFold(p, "https://")
		}
		if !ok {
			return "", 400, "target in neither origin nor absolute form"
		}
		i := bytes.IndexAny(rest, "/?#")
		switch {
		case i == 0 || len(rest) == 0:
			return "", 400, "absolute target without a host"
		case i < 0 || rest[i] != '/':
			p = []byte("/")
		default:
			p = rest[i:]
		}
	}
	if i := bytes.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}

	d := s.name[:0]
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '%' {
			if i+2 >= len(p) {
				return "", 400, "truncated percent escape"
			}
			hi, ok1 := unhex(p[i+1])
			lo, ok2 := unhex(p[i+2])
			if !ok1 || !ok2 {
				return "", 400, "invalid percent escape"
			}
			if c = hi<<4 | lo; c == 0 {
				return "", 400, "NUL in path"
			}
			i += 2
		}
		d = append(d, c)
	}
	s.name = d

	// d starts with '/'. Clean it in place: d[:w] is the name so far, and w never
	// passes the element being read.
	w, dir := 0, false
	for r := 1; r <= len(d); {
		end := bytes.IndexByte(d[r:], '/')
		if end < 0 {
			end = len(d)
		} else {
			end += r
		}
		elem := d[r:end]
		switch {
		case len(elem) == 0 || string(elem) == ".":
			dir = true
		case string(elem) == "..":
			return "", 400, "\"..\" in path"
		default:
			if w > 0 {
				d[w] = '/'
				w++
			}
			w += copy(d[w:], elem)
			dir = false
		}
		r = end + 1
	}
	d = d[:w]
	if dir {
		if w > 0 {
			d = append(d, '/')
		}
		d = append(d, "index.html"...)
	}
	s.name = d
	return string(d), 0, ""
}

// appendHead appends a reply's status line and headers, through the blank line.
// extra holds whole header lines (CRLF-terminated) or is empty.
func appendHead(dst []byte, code int, ctype string, length int64, extra string) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(code), 10)
	dst = append(dst, ' ')
	dst = append(dst, statusText(code)...)
	dst = append(dst, "\r\nServer: concbench\r\n"...)
	dst = appendDate(dst)
	dst = append(dst, "Content-Type: "...)
	dst = append(dst, ctype...)
	dst = append(dst, "\r\nContent-Length: "...)
	dst = strconv.AppendInt(dst, length, 10)
	dst = append(dst, "\r\n"...)
	dst = append(dst, extra...)
	return append(dst, "\r\n"...)
}

// appendError appends an error reply, whose body is "<code> <reason>\n" (left out,
// but counted in Content-Length, when head is set).
func appendError(dst []byte, code int, extra string, head bool) []byte {
	text := statusText(code)
	dst = appendHead(dst, code, "text/plain; charset=utf-8", int64(len(text)+5), extra)
	if head {
		return dst
	}
	dst = strconv.AppendInt(dst, int64(code), 10)
	dst = append(dst, ' ')
	dst = append(dst, text...)
	return append(dst, '\n')
}

func statusText(code int) string {
	switch code {
	case 200:
		return "OK"
	case 400:
		return "Bad Request"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 414:
		return "URI Too Long"
	case 431:
		return "Request Header Fields Too Large"
	case 500:
		return "Internal Server Error"
	case 501:
		return "Not Implemented"
	case 503:
		return "Service Unavailable"
	case 505:
		return "HTTP Version Not Supported"
	}
	return "Unknown"
}

// dateLine is a formatted "Date: ...\r\n" header line and the second it stands for.
type dateLine struct {
	unix int64
	line []byte
}

// httpDate is the Date line of the current second, shared by every session; a
// session that finds it stale formats the new one and publishes it.
var httpDate atomic.Pointer[dateLine]

func appendDate(dst []byte) []byte {
	now := time.Now()
	d := httpDate.Load()
	if d == nil || d.unix != now.Unix() {
		b := now.UTC().AppendFormat(append(make([]byte, 0, 40), "Date: "...), httpTimeFormat)
		d = &dateLine{unix: now.Unix(), line: append(b, "\r\n"...)}
		httpDate.Store(d)
	}
	return append(dst, d.line...)
}

// connectionTokens reports whether the Connection value v lists close and
// keep-alive.
func connectionTokens(v []byte) (closeTok, keep bool) {
	for len(v) > 0 {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			tok, v = v, nil
		}
		tok = trimOWS(tok)
		closeTok = closeTok || equalFold(tok, "close")
		keep = keep || equalFold(tok, "keep-alive")
	}
	return closeTok, keep
}

// parseContentLength parses 1*DIGIT, or a comma-separated list of equal such values.
func parseContentLength(v []byte) (int64, bool) {
	n := int64(-1)
	for {
		var e []byte
		i := bytes.IndexByte(v, ',')
		if i >= 0 {
			e, v = trimOWS(v[:i]), v[i+1:]
		} else {
			e = trimOWS(v)
		}
		if len(e) == 0 || len(e) > 18 { // 18 digits cannot overflow an int64
			return 0, false
		}
		var x int64
		for _, c := range e {
			if !isDigit(c) {
				return 0, false
			}
			x = x*10 + int64(c-'0')
		}
		if n >= 0 && x != n {
			return 0, false
		}
		n = x
		if i < 0 {
			return n, true
		}
	}
}

// tokenChars marks the bytes of an RFC 9110 token (tchar).
var tokenChars = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range []byte("!#$%&'*+-.^_`|~") {
		t[c] = true
	}
	return t
}()

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenChars[c] {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return c-'0' < 10 }

func unhex(c byte) (byte, bool) {
	switch {
	case c-'0' < 10:
		return c - '0', true
	case c-'a' < 6:
		return c - 'a' + 10, true
	case c-'A' < 6:
		return c - 'A' + 10, true
	}
	return 0, false
}

func trimCR(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == '\r' {
		return b[:len(b)-1]
	}
	return b
}

// trimOWS drops the spaces and tabs around b.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold reports whether b equals the lower-case ASCII string lower, ignoring
// ASCII case.
func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if c-'A' < 26 {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func cutPrefixFold(b []byte, lower string) ([]byte, bool) {
	if len(b) < len(lower) || !equalFold(b[:len(lower)], lower) {
		return nil, false
	}
	return b[len(lower):], true
}

package proto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Contents of the test root's files.
var (
	smallContent = pattern(1000, 11)
	inlineMax    = pattern(InlineMax, 12)
	aboveInline  = pattern(InlineMax+1, 13)
	bigContent   = pattern(200<<10+3, 14) // three full 64 KiB frames and one of 8195 bytes
)

// fileTree makes a root to serve, beside a directory outside it:
//
//	root/empty, small, inline-max, above-inline, big   regular files
//	root/sub/inner                                      a file in a directory
//	root/sub/up -> ../small                             a symlink that stays inside
//	root/in-link -> small                               likewise
//	root/out-abs -> /abs/outside/secret                 symlinks that leave the root
//	root/out-rel -> ../outside/secret
//	root/out-dir -> ../outside                          (requested as out-dir/secret)
//	root/fifo                                           a FIFO nobody writes to
//	outside/secret
func fileTree(t testing.TB, dir string) (root string) {
	t.Helper()
	root = filepath.Join(dir, "root")
	outside := filepath.Join(dir, "outside")
	for _, d := range []string{root, outside, filepath.Join(root, "sub")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string][]byte{
		"root/empty":        nil,
		"root/small":        smallContent,
		"root/inline-max":   inlineMax,
		"root/above-inline": aboveInline,
		"root/big":          bigContent,
		"root/sub/inner":    []byte("inner"),
		"outside/secret":    []byte("secret"),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"root/sub/up":   "../small",
		"root/in-link":  "small",
		"root/out-abs":  filepath.Join(outside, "secret"),
		"root/out-rel":  "../outside/secret",
		"root/out-dir":  "../outside",
		"outside/to-in": "../root/small",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func newFileProto(t testing.TB, root string, work Work) Protocol {
	t.Helper()
	p, err := New("file", Options{Root: root, Work: work})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// okReply and errReply are the replies the format prescribes, built by hand.
func okReply(content []byte) []byte {
	b := frame("OK " + strconv.Itoa(len(content)))
	b = append(b, framed(content, FileChunk)...)
	return append(b, 0, 0, 0, 0)
}

func errReply(reason string) []byte { return frame("ERR " + reason) }

// fileReply is one reply as a client parses it.
type fileReply struct {
	status  string // "OK <size>" or "ERR <reason>"
	content []byte
	frames  []int // content frame lengths
}

// parseFileReplies parses a stream of complete file protocol replies as a client
// would, checking every rule of the format, and returns them.
func parseFileReplies(b []byte) ([]fileReply, error) {
	next := func() ([]byte, error) {
		if len(b) < HeaderLen {
			return nil, fmt.Errorf("truncated header: %d bytes left", len(b))
		}
		n := int(binary.BigEndian.Uint32(b))
		if len(b)-HeaderLen < n {
			return nil, fmt.Errorf("truncated frame: %d of %d bytes", len(b)-HeaderLen, n)
		}
		p := b[HeaderLen : HeaderLen+n]
		b = b[HeaderLen+n:]
		return p, nil
	}
	var replies []fileReply
	for len(b) > 0 {
		head, err := next()
		if err != nil {
			return replies, err
		}
		r := fileReply{status: string(head)}
		if reason, ok := strings.CutPrefix(r.status, "ERR "); ok {
			switch reason {
			case errNotFound.Error(), errOutside.Error(), errNotRegular.Error(), errBusy.Error():
			default:
				return replies, fmt.Errorf("unknown reason %q", reason)
			}
			replies = append(replies, r)
			continue
		}
		digits, ok := strings.CutPrefix(r.status, "OK ")
		size, err := strconv.ParseInt(digits, 10, 64)
		if !ok || err != nil || size < 0 || strconv.FormatInt(size, 10) != digits {
			return replies, fmt.Errorf("bad status %q", r.status)
		}
		for {
			p, err := next()
			if err != nil {
				return replies, err
			}
			if len(p) == 0 {
				break
			}
			if len(p) > FileChunk || (len(r.frames) > 0 && r.frames[len(r.frames)-1] != FileChunk) {
				return replies, fmt.Errorf("%q: content frame of %d bytes after %v", r.status, len(p), r.frames)
			}
			r.frames = append(r.frames, len(p))
			r.content = append(r.content, p...)
		}
		if int64(len(r.content)) != size {
			return replies, fmt.Errorf("%q: %d content bytes", r.status, len(r.content))
		}
		replies = append(replies, r)
	}
	return replies, nil
}

func TestFileRequests(t *testing.T) {
	root := fileTree(t, t.TempDir())
	p := newFileProto(t, root, Work{})
	tests := []struct {
		name   string // requested
		status string
		frames []int  // content frame lengths, for OK
		want   []byte // content, for OK
	}{
		{"empty", "OK 0", nil, nil},
		{"small", "OK 1000", []int{1000}, smallContent},
		{"inline-max", "OK 16384", []int{InlineMax}, inlineMax},
		{"above-inline", "OK 16385", []int{InlineMax + 1}, aboveInline},
		{"big", "OK 204803", []int{FileChunk, FileChunk, FileChunk, 8195}, bigContent},
		{"sub/inner", "OK 5", []int{5}, []byte("inner")},
		{"./small", "OK 1000", []int{1000}, smallContent},
		{"sub//inner", "OK 5", []int{5}, []byte("inner")},
		{"in-link", "OK 1000", []int{1000}, smallContent},
		{"sub/up", "OK 1000", []int{1000}, smallContent},

		{"missing", "ERR not found", nil, nil},
		{"sub/missing", "ERR not found", nil, nil},
		{"small/x", "ERR not found", nil, nil},
		{"small\x00", "ERR not found", nil, nil},
		{"sm\x00all", "ERR not found", nil, nil},
		{strings.Repeat("n", 300), "ERR not found", nil, nil},
		{strings.Repeat("n", MaxFileName), "ERR not found", nil, nil},
		{"sub", "ERR not a regular file", nil, nil},
		{"sub/", "ERR not a regular file", nil, nil},
		{".", "ERR not a regular file", nil, nil},
		{"fifo", "ERR not a regular file", nil, nil},
		{"", "ERR outside the root", nil, nil},
		{"..", "ERR outside the root", nil, nil},
		{"../x", "ERR outside the root", nil, nil},
		{"../outside/secret", "ERR outside the root", nil, nil},
		{"a/../../x", "ERR outside the root", nil, nil},
		{"sub/../small", "ERR outside the root", nil, nil}, // no ".." element at all, even inside
		{"sub/..", "ERR outside the root", nil, nil},
		{"/etc/passwd", "ERR outside the root", nil, nil},
		{"/", "ERR outside the root", nil, nil},
		{"out-abs", "ERR outside the root", nil, nil},
		{"out-rel", "ERR outside the root", nil, nil},
		{"out-dir/secret", "ERR outside the root", nil, nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%.40q", tt.name), func(t *testing.T) {
			var o Out
			done := make(chan error, 1)
			go func() { done <- p.NewSession().Feed(&o, frame(tt.name)) }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Feed: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Feed blocked") // a FIFO opened for reading waits for a writer
			}
			got := drain(t, &o, 0)
			if n := openFDs(t, root); n != 0 {
				t.Errorf("%d descriptors open after draining", n)
			}
			replies, err := parseFileReplies(got)
			if err != nil || len(replies) != 1 {
				t.Fatalf("reply %.80q: %d replies, %v", got, len(replies), err)
			}
			r := replies[0]
			if r.status != tt.status {
				t.Fatalf("status %q, want %q", r.status, tt.status)
			}
			if !slices.Equal(r.frames, tt.frames) || !bytes.Equal(r.content, tt.want) {
				t.Fatalf("content in frames %v, want %v; equal content: %v", r.frames, tt.frames, bytes.Equal(r.content, tt.want))
			}
			want := errReply(strings.TrimPrefix(tt.status, "ERR "))
			if strings.HasPrefix(tt.status, "OK") {
				want = okReply(tt.want)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("reply bytes differ from the format's at %d", firstDiff(got, want))
			}
		})
	}
}

// TestFilePipelined sends several requests at once and then split at every byte
// boundary: the replies are the same, in request order.
func TestFilePipelined(t *testing.T) {
	// Parallel with other tests: it counts the descriptors open in its own
	// directory only. Its subtests share that directory, so they are not.
	t.Parallel()
	root := fileTree(t, t.TempDir())
	p := newFileProto(t, root, Work{})
	reqs := []struct {
		name string
		want []byte
	}{
		{"small", okReply(smallContent)},
		{"missing", errReply("not found")},
		{"big", okReply(bigContent)},
		{"empty", okReply(nil)},
		{"../x", errReply("outside the root")},
		{"above-inline", okReply(aboveInline)},
		{"", errReply("outside the root")},
		{"big", okReply(bigContent)},
		{"sub", errReply("not a regular file")},
	}
	var in, want []byte
	for _, r := range reqs {
		in = AppendFrame(in, []byte(r.name))
		want = append(want, r.want...)
	}
	check := func(t *testing.T, what string, o *Out, step int) {
		t.Helper()
		if got := o.Files(); got != 3 {
			t.Fatalf("%s: Out holds %d files, want 3 (the large ones)", what, got)
		}
		if n := openFDs(t, root); n != 3 {
			t.Fatalf("%s: %d descriptors open, want 3", what, n)
		}
		got := drain(t, o, step)
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: %d bytes, want %d; first difference at %d", what, len(got), len(want), firstDiff(got, want))
		}
		if n := openFDs(t, root); n != 0 {
			t.Fatalf("%s: %d descriptors open after draining", what, n)
		}
	}
	t.Run("one feed", func(t *testing.T) {
		var o Out
		if err := p.NewSession().Feed(&o, in); err != nil {
			t.Fatal(err)
		}
		check(t, "one feed", &o, 0)
	})
	t.Run("every split", func(t *testing.T) {
		for cut := 0; cut <= len(in); cut++ {
			s := p.NewSession()
			var o Out
			if err := s.Feed(&o, in[:cut]); err != nil {
				t.Fatal(err)
			}
			if err := s.Feed(&o, in[cut:]); err != nil {
				t.Fatal(err)
			}
			check(t, fmt.Sprintf("cut %d", cut), &o, FileChunk/3)
		}
	})
	t.Run("byte at a time", func(t *testing.T) {
		s := p.NewSession()
		var o Out
		for i := range in {
			if err := s.Feed(&o, in[i:i+1]); err != nil {
				t.Fatal(err)
			}
		}
		check(t, "byte at a time", &o, 1)
	})
	t.Run("drained between requests", func(t *testing.T) {
		// A model drains the Out between reads: replies must not depend on it.
		s := p.NewSession()
		var o Out
		var got []byte
		for i := 0; i < len(in); i += 7 {
			if err := s.Feed(&o, in[i:min(i+7, len(in))]); err != nil {
				t.Fatal(err)
			}
			got = append(got, drain(t, &o, 4096)...)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%d bytes, want %d; first difference at %d", len(got), len(want), firstDiff(got, want))
		}
	})
}

func TestFileOversize(t *testing.T) {
	root := fileTree(t, t.TempDir())
	p := newFileProto(t, root, Work{})
	hdr := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
	tests := []struct {
		name    string
		in      []byte
		want    []byte
		wantErr error
	}{
		{"at limit", AppendFrame(nil, bytes.Repeat([]byte("a"), MaxFileName)), errReply("not found"), nil},
		{"one above", hdr(MaxFileName + 1), nil, ErrFrameTooLarge},
		{"huge", hdr(1<<32 - 1), nil, ErrFrameTooLarge},
		{"after a good request", cat(frame("small"), hdr(1<<20), []byte("ignored")), okReply(smallContent), ErrFrameTooLarge},
		{"truncated frame", frame("small")[:7], nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for cut := 0; cut <= len(tt.in); cut += 1 + len(tt.in)/50 {
				s := p.NewSession()
				var o Out
				err := s.Feed(&o, tt.in[:cut])
				if err == nil {
					err = s.Feed(&o, tt.in[cut:])
				}
				if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
					t.Fatalf("cut %d: err = %v, want %v", cut, err, tt.wantErr)
				}
				if err != nil && (!errors.Is(err, ErrProtocol) || errors.Is(err, ErrClose)) {
					t.Fatalf("cut %d: err %v: want a protocol error, not a close after reply", cut, err)
				}
				if got := drain(t, &o, 0); !bytes.Equal(got, tt.want) {
					t.Fatalf("cut %d: got %.60q, want %.60q", cut, got, tt.want)
				}
			}
		})
	}
}

func TestFileOptions(t *testing.T) {
	if _, err := New("file", Options{}); err == nil {
		t.Error("file protocol without a root: no error")
	}
	if _, err := New("file", Options{Root: filepath.Join(t.TempDir(), "none")}); err == nil {
		t.Error("file protocol with a missing root: no error")
	}
	root := fileTree(t, t.TempDir())
	// MaxFrame is the rpc payload limit; it does not shrink or stretch a name.
	p, err := New("file", Options{Root: root, MaxFrame: 3})
	if err != nil {
		t.Fatal(err)
	}
	var o Out
	if err := p.NewSession().Feed(&o, frame("small")); err != nil {
		t.Fatalf("5-byte name with MaxFrame 3: %v", err)
	}
	o.Reset()
	if p.Name() != "file" || !ServesFiles(p.Name()) {
		t.Errorf("Name() = %q", p.Name())
	}
}

// TestFileWork checks that the work runs once per request, before its reply.
func TestFileWork(t *testing.T) {
	root := fileTree(t, t.TempDir())
	const d = 3 * time.Millisecond
	p := newFileProto(t, root, Work{WorkSleep, d})
	var o Out
	start := time.Now()
	if err := p.NewSession().Feed(&o, cat(frame("small"), frame("missing"), frame("big"), frame("x")[:3])); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 3*d {
		t.Errorf("three requests took %v, want at least %v", el, 3*d)
	}
	o.Reset()
}

// TestFileResetHalfSent: a connection that dies mid-reply leaves the model an Out
// to Reset, which closes every file it holds.
func TestFileResetHalfSent(t *testing.T) {
	root := fileTree(t, t.TempDir())
	p := newFileProto(t, root, Work{})
	var o Out
	if err := p.NewSession().Feed(&o, cat(frame("big"), frame("small"), frame("above-inline"), frame("big"))); err != nil {
		t.Fatal(err)
	}
	if n := openFDs(t, root); n != 3 {
		t.Fatalf("%d descriptors open, want 3", n)
	}
	advance(t, &o, 100000) // into the second frame of the first file
	o.Reset()
	if n := openFDs(t, root); n != 0 {
		t.Fatalf("%d descriptors open after Reset", n)
	}
}

// TestAppendContentShrunk: a file that is shorter than its announced size fails
// and leaves the Out as it was.
func TestAppendContentShrunk(t *testing.T) {
	name := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(name, smallContent, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	o := Out{Buf: []byte("before")}
	if err := appendContent(&o, f, int64(len(smallContent))+1, FileChunk); err == nil {
		t.Fatal("no error for a file shorter than its size")
	}
	if string(o.Buf) != "before" || o.Files() != 0 {
		t.Fatalf("Out changed: %q, %d files", o.Buf, o.Files())
	}
}

// TestFileAllocs: a request answered from the read buffer allocates only what
// opening the file takes; rpc frames allocate nothing.
func TestFileAllocs(t *testing.T) {
	root := fileTree(t, t.TempDir())
	p := newFileProto(t, root, Work{})
	s := p.NewSession()
	in := frame("small")
	o := Out{Buf: make([]byte, 0, 4096)}
	allocs := testing.AllocsPerRun(200, func() {
		if err := s.Feed(&o, in); err != nil {
			t.Fatal(err)
		}
		o.Buf = o.Buf[:0]
	})
	fr := p.(*fileProto).root
	opens := testing.AllocsPerRun(200, func() {
		f, _, err := fr.open("small")
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	})
	// Beyond the open (os.Root's walk, the *os.File, Stat's result): the name string.
	t.Logf("file request (inline): %.0f allocations; the open alone: %.0f", allocs, opens)
	if allocs > opens+1 {
		t.Errorf("file request: %.0f allocations, want at most %.0f (the open's, and the name)", allocs, opens+1)
	}

	r, _ := New("rpc", Options{})
	rs := r.NewSession()
	rin := cat(frame("abc"), frame(""), frame(strings.Repeat("x", 1000)))
	if allocs := testing.AllocsPerRun(200, func() {
		if err := rs.Feed(&o, rin); err != nil {
			t.Fatal(err)
		}
		o.Buf = o.Buf[:0]
	}); allocs != 0 {
		t.Errorf("rpc frames: %.0f allocations, want 0", allocs)
	}
	// A frame split across reads is kept in the session's buffer, reused.
	if allocs := testing.AllocsPerRun(200, func() {
		for i := range rin {
			if err := rs.Feed(&o, rin[i:i+1]); err != nil {
				t.Fatal(err)
			}
		}
		o.Buf = o.Buf[:0]
	}); allocs != 0 {
		t.Errorf("rpc frames byte by byte: %.0f allocations, want 0", allocs)
	}
}

func BenchmarkFileFeed(b *testing.B) {
	root := fileTree(b, b.TempDir())
	p := newFileProto(b, root, Work{})
	for _, name := range []string{"small", "big", "missing"} {
		b.Run(name, func(b *testing.B) {
			s := p.NewSession()
			in := frame(name)
			var o Out
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Feed(&o, in); err != nil {
					b.Fatal(err)
				}
				o.Reset()
			}
		})
	}
}

// FuzzFileFeed: any input, fed in any chunk sizes, gives the same replies and error
// as fed at once, the replies are well formed, and nothing panics or leaks a
// descriptor. steps gives the chunk sizes, cyclically (empty: one byte).
func FuzzFileFeed(f *testing.F) {
	root := fileTree(f, f.TempDir())
	// Two frames are enough for big here, and keep inputs that ask for it many
	// times cheap to compare.
	if err := os.WriteFile(filepath.Join(root, "big"), pattern(FileChunk+5, 15), 0o644); err != nil {
		f.Fatal(err)
	}
	p := newFileProto(f, root, Work{})
	f.Fuzz(func(t *testing.T, in, steps []byte) {
		if len(in) > MaxFileName+2*HeaderLen {
			// Each request for a large file holds a descriptor until drained; cap
			// what one input can hold (and the bytes to compare), still room for a
			// name at the limit.
			in = in[:MaxFileName+2*HeaderLen]
		}
		var whole Out
		wholeErr := p.NewSession().Feed(&whole, in)
		want := drain(t, &whole, 0)

		s := p.NewSession()
		var o Out
		var err error
		for i, k := 0, 0; i < len(in) && err == nil; k++ {
			n := 1
			if len(steps) > 0 {
				n = int(steps[k%len(steps)]) + 1
			}
			err = s.Feed(&o, in[i:min(i+n, len(in))])
			i += n
		}
		got := drain(t, &o, 0)
		if (err == nil) != (wholeErr == nil) || (err != nil && err.Error() != wholeErr.Error()) {
			t.Fatalf("err %v, fed at once %v", err, wholeErr)
		}
		if err != nil && !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("err %v: want nil or ErrFrameTooLarge", err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%d bytes, fed at once %d; first difference at %d", len(got), len(want), firstDiff(got, want))
		}
		if _, err := parseFileReplies(got); err != nil {
			t.Fatalf("malformed replies: %v", err)
		}
		if n := openFDs(t, root); n != 0 {
			t.Fatalf("%d descriptors open after draining", n)
		}
	})
}

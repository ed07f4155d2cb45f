package proto

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"concbench/internal/testfiles"
)

// drain empties o through Head and Advance as a model does, consuming at most step
// bytes per Advance (step <= 0: whole pieces) and reading file pieces with pread(2)
// on the piece's descriptor, and returns the bytes in order. It checks at every
// step that Len counts exactly the bytes still owed and that pieces are well formed.
func drain(t testing.TB, o *Out, step int) []byte {
	t.Helper()
	var got []byte
	left := o.Len()
	for {
		if n := o.Len(); n != left {
			t.Fatalf("after %d bytes: Len = %d, want %d", len(got), n, left)
		}
		p := o.Head()
		var n int
		switch {
		case p.Bytes != nil:
			if len(p.Bytes) == 0 || p.File != nil || p.N != 0 {
				t.Fatalf("after %d bytes: malformed byte piece %+v", len(got), p)
			}
			n = len(p.Bytes)
			if step > 0 {
				n = min(n, step)
			}
			got = append(got, p.Bytes[:n]...)
		case p.N > 0:
			if p.File == nil || p.N > maxSendfile || p.Off < 0 {
				t.Fatalf("after %d bytes: malformed file piece %+v", len(got), p)
			}
			n = p.N
			if step > 0 {
				n = min(n, step)
			}
			buf := make([]byte, n)
			k, err := unix.Pread(p.FD, buf, p.Off)
			if err != nil || k == 0 {
				t.Fatalf("after %d bytes: pread(fd %d, %d, off %d) = %d, %v", len(got), p.FD, n, p.Off, k, err)
			}
			n = k
			got = append(got, buf[:k]...)
		default:
			if !isZero(p) || left != 0 || o.Files() != 0 {
				t.Fatalf("after %d bytes: Head = %+v with Len %d and %d files", len(got), p, left, o.Files())
			}
			return got
		}
		o.Advance(n)
		left -= int64(n)
	}
}

// openFDs counts the process's descriptors open on files under dir
// (testfiles.OpenUnder): exact while the runtime, or a finalizer closing an
// unreachable os.Root of an earlier test, opens or closes others.
func openFDs(t testing.TB, dir string) int {
	t.Helper()
	n, err := testfiles.OpenUnder(dir)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// pattern returns n bytes that differ from their neighbours' positions, so a piece
// sent twice, out of order or from the wrong offset shows.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i) ^ byte(i>>8)*31 ^ seed
	}
	return b
}

// seg is one thing appended to an Out: bytes, or (when file is not nil) n bytes
// of a file with that content from offset off, framed when frame > 0.
type seg struct {
	b      string
	file   []byte
	off, n int64
	frame  int
}

func bytesSeg(s string) seg { return seg{b: s} }

func fileSeg(content []byte, off, n int64, frame int) seg {
	return seg{file: content, off: off, n: n, frame: frame}
}

// build appends segs to o, creating and opening their files in dir, and returns
// the bytes the model must send for them, computed independently of Out.
func build(t testing.TB, o *Out, dir string, segs ...seg) []byte {
	t.Helper()
	var want []byte
	for i, s := range segs {
		if s.file == nil {
			o.Buf = append(o.Buf, s.b...)
			want = append(want, s.b...)
			continue
		}
		name := filepath.Join(dir, "seg"+string(rune('a'+i)))
		if err := os.WriteFile(name, s.file, 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		o.AddFile(f, s.off, s.n, s.frame)
		want = append(want, framed(s.file[s.off:s.off+s.n], s.frame)...)
	}
	return want
}

// framed is content as rpc frames of at most frame bytes (frame <= 0: raw).
func framed(content []byte, frame int) []byte {
	if frame <= 0 {
		return content
	}
	var b []byte
	for len(content) > 0 {
		k := min(frame, len(content))
		b = AppendFrame(b, content[:k])
		content = content[k:]
	}
	return b
}

func TestOutDrain(t *testing.T) {
	t.Parallel() // each case counts the descriptors open in its own directories
	small := pattern(1000, 1)
	big := pattern(2*FileChunk+100, 2)
	huge := pattern(maxSendfile+5, 3)
	tests := []struct {
		name  string
		segs  []seg
		files int // open files held before draining
	}{
		{"empty", nil, 0},
		{"bytes only", []seg{bytesSeg("hello, world")}, 0},
		{"bytes file bytes", []seg{bytesSeg("head"), fileSeg(small, 0, 1000, 0), bytesSeg("tail")}, 1},
		{"file range", []seg{fileSeg(small, 100, 300, 0), bytesSeg("x")}, 1},
		{"file first and last", []seg{fileSeg(small, 0, 10, 0), bytesSeg("mid"), fileSeg(small, 990, 10, 0)}, 2},
		{"files back to back", []seg{fileSeg(small, 0, 500, 0), fileSeg(small, 500, 500, 3)}, 2},
		{"empty file closes at once", []seg{bytesSeg("a"), fileSeg(small, 0, 0, 0), bytesSeg("b")}, 0},
		{"framed 64 KiB, short last", []seg{bytesSeg("OK"), fileSeg(big, 0, int64(len(big)), FileChunk), bytesSeg("\x00\x00\x00\x00")}, 1},
		{"framed, exact multiple", []seg{fileSeg(big, 0, 2*FileChunk, FileChunk)}, 1},
		{"framed tiny frames", []seg{bytesSeg("<"), fileSeg(small, 3, 10, 3), bytesSeg(">")}, 1},
		{"raw above maxSendfile", []seg{fileSeg(huge, 0, int64(len(huge)), 0)}, 1},
		{"framed frame above maxSendfile", []seg{fileSeg(huge, 0, int64(len(huge)), maxSendfile+2)}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, step := range []int{0, 1, 2, 3, 5, 4099, FileChunk + 1} {
				dir := t.TempDir()
				var o Out
				want := build(t, &o, dir, tt.segs...)
				if step > 0 && step < 1000 && len(want) > 1<<18 {
					o.Reset() // a pread per byte through a megabyte: slow, and no new boundary
					continue
				}
				if got, fds := o.Files(), openFDs(t, dir); got != tt.files || fds != tt.files {
					t.Errorf("step %d: Files = %d, descriptors open %d, want %d", step, got, fds, tt.files)
				}
				if got := o.Len(); got != int64(len(want)) {
					t.Fatalf("step %d: Len = %d, want %d", step, got, len(want))
				}
				got := drain(t, &o, step)
				if !bytes.Equal(got, want) {
					t.Fatalf("step %d: drained %d bytes, want %d; first difference at %d", step, len(got), len(want), firstDiff(got, want))
				}
				if n := openFDs(t, dir); n != 0 {
					t.Fatalf("step %d: %d descriptors open after draining", step, n)
				}
				// The drained Out is reusable.
				o.Buf = append(o.Buf, "again"...)
				if got := drain(t, &o, step); string(got) != "again" {
					t.Fatalf("step %d: reuse drained %q", step, got)
				}
			}
		})
	}
}

// TestOutFramedHeaders checks the framed pieces themselves: a header piece of 4
// bytes before each frame's content, the content pieces never crossing a frame.
func TestOutFramedHeaders(t *testing.T) {
	content := pattern(2*FileChunk+100, 4)
	var o Out
	build(t, &o, t.TempDir(), fileSeg(content, 0, int64(len(content)), FileChunk))
	var kinds []int // > 0: file piece length; < 0: header piece length, negated
	for o.Len() > 0 {
		p := o.Head()
		if p.Bytes != nil {
			kinds = append(kinds, -len(p.Bytes))
			if len(p.Bytes) == HeaderLen {
				if n := binary.BigEndian.Uint32(p.Bytes); n != FileChunk && n != 100 {
					t.Fatalf("frame header %d", n)
				}
			}
			o.Advance(len(p.Bytes))
			continue
		}
		kinds = append(kinds, p.N)
		o.Advance(p.N)
	}
	want := []int{-4, FileChunk, -4, FileChunk, -4, 100}
	if !slices.Equal(kinds, want) {
		t.Fatalf("pieces %v, want %v", kinds, want)
	}
}

func TestOutMoveFrom(t *testing.T) {
	t.Parallel() // each case counts the descriptors open in its own directories
	content := pattern(3*FileChunk/2, 5)
	srcSegs := []seg{bytesSeg("src-head"), fileSeg(content, 0, int64(len(content)), FileChunk), bytesSeg("src-tail")}
	// Bytes of src sent before the move: inside its leading bytes, inside the first
	// frame header, inside the content, at a frame boundary, in the second header,
	// in the trailing bytes, everything.
	srcLen := len("src-head") + len(content) + 2*HeaderLen + len("src-tail")
	cuts := []int{0, 3, 8, 10, 12, 5000, 8 + 4 + FileChunk, 8 + 4 + FileChunk + 2, srcLen - 3, srcLen}
	dsts := []struct {
		name string
		segs []seg
		sent int // bytes of dst sent before the move
	}{
		{"empty", nil, 0},
		{"bytes pending", []seg{bytesSeg("dst-pending")}, 4},
		{"file pending", []seg{bytesSeg("d"), fileSeg(content, 7, 20000, 0), bytesSeg("e")}, 100},
		// Most of dst's bytes written: the move compacts Buf, shifting the file's place.
		{"mostly sent, then a file", []seg{bytesSeg(string(pattern(8000, 9))), fileSeg(content, 7, 20000, 0), bytesSeg("e")}, 6000},
	}
	for _, d := range dsts {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			for _, cut := range cuts {
				dir := t.TempDir()
				dstDir := filepath.Join(dir, "dst")
				if err := os.Mkdir(dstDir, 0o755); err != nil {
					t.Fatal(err)
				}
				var src, dst Out
				srcWant := build(t, &src, dir, srcSegs...)
				dstWant := build(t, &dst, dstDir, d.segs...)
				if len(srcWant) != srcLen {
					t.Fatalf("src is %d bytes, test assumes %d", len(srcWant), srcLen)
				}
				sent := advance(t, &src, cut)
				sent = append(advance(t, &dst, d.sent), sent...)
				if !bytes.Equal(sent, append(append([]byte{}, dstWant[:d.sent]...), srcWant[:cut]...)) {
					t.Fatalf("cut %d: sent bytes differ", cut)
				}
				want := append(append([]byte{}, dstWant[d.sent:]...), srcWant[cut:]...)
				dst.MoveFrom(&src)
				if src.Len() != 0 || src.Files() != 0 || !isZero(src.Head()) {
					t.Fatalf("cut %d: src after move: Len %d, Files %d, Head %+v", cut, src.Len(), src.Files(), src.Head())
				}
				if got := dst.Len(); got != int64(len(want)) {
					t.Fatalf("cut %d: dst Len = %d, want %d", cut, got, len(want))
				}
				got := drain(t, &dst, 777)
				if !bytes.Equal(got, want) {
					t.Fatalf("cut %d: drained %d bytes, want %d; first difference at %d", cut, len(got), len(want), firstDiff(got, want))
				}
				if n := openFDs(t, dir); n != 0 {
					t.Fatalf("cut %d: %d descriptors open after draining", cut, n)
				}
			}
		})
	}
}

// advance sends n bytes of o through Head and Advance, and returns them.
func advance(t testing.TB, o *Out, n int) []byte {
	t.Helper()
	var got []byte
	for len(got) < n {
		p := o.Head()
		k := n - len(got)
		switch {
		case p.Bytes != nil:
			k = min(k, len(p.Bytes))
			got = append(got, p.Bytes[:k]...)
		case p.N > 0:
			buf := make([]byte, min(k, p.N))
			m, err := unix.Pread(p.FD, buf, p.Off)
			if err != nil || m == 0 {
				t.Fatalf("pread: %d, %v", m, err)
			}
			k = m
			got = append(got, buf[:m]...)
		default:
			t.Fatalf("Out empty after %d of %d bytes", len(got), n)
		}
		before := o.Len()
		o.Advance(k)
		if o.Len() != before-int64(k) {
			t.Fatalf("Advance(%d): Len %d -> %d", k, before, o.Len())
		}
	}
	return got
}

func TestOutReset(t *testing.T) {
	content := pattern(3*FileChunk, 6)
	for _, cut := range []int{0, 2, 6, 5000, 2 + HeaderLen + FileChunk + 1} {
		dir := t.TempDir()
		var o Out
		want := build(t, &o, dir, bytesSeg("hi"), fileSeg(content, 0, int64(len(content)), FileChunk), fileSeg(content, 0, 10, 0), bytesSeg("end"))
		if n := openFDs(t, dir); n != 2 {
			t.Fatalf("cut %d: %d descriptors open with two files added, want 2", cut, n)
		}
		advance(t, &o, cut)
		o.Reset()
		if o.Len() != 0 || o.Files() != 0 || !isZero(o.Head()) {
			t.Fatalf("cut %d: after Reset: Len %d, Files %d, Head %+v", cut, o.Len(), o.Files(), o.Head())
		}
		if n := openFDs(t, dir); n != 0 {
			t.Fatalf("cut %d: %d descriptors open after Reset", cut, n)
		}
		o.Buf = append(o.Buf, want[:3]...)
		if got := drain(t, &o, 0); !bytes.Equal(got, want[:3]) {
			t.Fatalf("cut %d: reused Out drained %q", cut, got)
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// isZero reports whether p is the zero Piece: nothing owed.
func isZero(p Piece) bool {
	return p.Bytes == nil && p.File == nil && p.FD == 0 && p.Off == 0 && p.N == 0
}

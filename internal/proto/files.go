package proto

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"syscall"
)

// This file is what the file and http protocols share: a confined root, opening a
// requested name under it, and putting a file's content into an Out.

// Reasons a name is not served. The file protocol sends them as "ERR <reason>";
// http maps them to status codes.
var (
	errNotFound   = errors.New("not found")
	errOutside    = errors.New("outside the root")
	errNotRegular = errors.New("not a regular file")
	errBusy       = errors.New("server out of descriptors")
)

// InlineMax is the largest file whose content is read into the reply (one pread,
// then written with the reply's header in one write) instead of sent with
// sendfile(2): below it, sendfile's extra system call and the descriptor held until
// the send costs more than the copy.
const InlineMax = 16 << 10

// fileRoot is the directory a protocol serves, held open for the protocol's life.
// os.Root refuses any path that leaves it: "..", absolute paths, and symlinks that
// point outside (checked by the kernel at each step, so a symlink swapped in later
// cannot escape either).
type fileRoot struct{ root *os.Root }

func openFileRoot(proto, dir string) (*fileRoot, error) {
	if dir == "" {
		return nil, fmt.Errorf("protocol %s serves files: it needs a root directory", proto)
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("protocol %s: root: %w", proto, err)
	}
	return &fileRoot{root: r}, nil
}

// open opens name, a slash-separated path relative to the root (already decoded),
// for reading, and returns it with its size. An empty name, one with a ".."
// element, a NUL byte or a leading slash is refused before the file system is
// asked: the first check is lexical, the second (os.Root) is the kernel's. "." and
// empty elements ("./a", "a//b") are harmless and resolve as the kernel does.
func (r *fileRoot) open(name string) (*os.File, int64, error) {
	if name == "" || strings.HasPrefix(name, "/") {
		return nil, 0, errOutside
	}
	if strings.IndexByte(name, 0) >= 0 {
		return nil, 0, errNotFound
	}
	for elem := range strings.SplitSeq(name, "/") {
		if elem == ".." {
			return nil, 0, errOutside
		}
	}
	// O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer,
	// holding the serving thread (a whole event loop) forever. It changes nothing
	// for the regular files that are served: Linux ignores it for them.
	f, err := r.root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, openError(err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, openError(err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, errNotRegular
	}
	return f, st.Size(), nil
}

// openError sorts an error from opening under the root into a reason.
func openError(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.ENAMETOOLONG):
		return errNotFound
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		// errors.Is, not errors.As into an Errno: that would allocate per request.
		return errBusy
	case errors.Is(err, fs.ErrPermission):
		return errNotFound
	case strings.Contains(err.Error(), "escapes"):
		// os.Root's error for a path (a symlink) leading out of the root; it has no
		// exported sentinel.
		return errOutside
	}
	return errNotFound
}

// outputCap is Options.MaxOutput with its default applied.
func outputCap(o Options) int {
	if o.MaxOutput > 0 {
		return o.MaxOutput
	}
	return DefaultMaxOutput
}

// checkOutput is called before a request is answered: it refuses to add to an
// output that already holds more than max bytes in memory or MaxOutFiles files.
func checkOutput(out *Out, max int) error {
	if out.Buffered() > max || out.Files() >= MaxOutFiles {
		return fmt.Errorf("%w: %d bytes and %d files owed", ErrOutputCap, out.Buffered(), out.Files())
	}
	return nil
}

// appendContent puts the size bytes of f into out and takes ownership of f: files
// up to InlineMax are read into out.Buf at once (as one rpc frame when frame > 0)
// and closed; larger ones are added for sendfile, in frames of at most frame bytes
// when frame > 0. An error (the file shrank or could not be read) leaves out as it
// was.
func appendContent(out *Out, f *os.File, size int64, frame int) error {
	if size > InlineMax {
		out.AddFile(f, 0, size, frame)
		return nil
	}
	defer f.Close()
	if size == 0 {
		return nil
	}
	n := len(out.Buf)
	if frame > 0 {
		out.Buf = append(out.Buf, byte(size>>24), byte(size>>16), byte(size>>8), byte(size))
	}
	start := len(out.Buf)
	out.Buf = slices.Grow(out.Buf, int(size))[:start+int(size)]
	// ReadAt reads until the buffer is full (pread(2) in a loop), or fails.
	if _, err := f.ReadAt(out.Buf[start:], 0); err != nil {
		out.Buf = out.Buf[:n]
		return fmt.Errorf("reading %s: %w", f.Name(), err)
	}
	return nil
}

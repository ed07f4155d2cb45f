// The file protocol: a download service over rpc frames, after the seed's file
// download example (the client names a file, the server sends its content).
//
// Wire format. Every message either way is an rpc frame: a 4-byte big-endian
// unsigned length L, then L bytes of payload.
//
//   - Request: one frame whose payload is a file name: a slash-separated path
//     relative to the served directory (Options.Root), not percent- or otherwise
//     encoded, at most MaxFileName (4096, PATH_MAX) bytes. A longer frame is a
//     protocol error: the connection closes without a reply to it.
//   - Reply, when the file is served: a frame "OK <size>" (size in ASCII decimal, no
//     sign, no leading zeros), then the size content bytes as frames of 1 to
//     FileChunk (64 KiB) bytes each, every frame full but the last, then a
//     zero-length frame that ends the file. An empty file is "OK 0" and then at once
//     the zero-length frame.
//   - Reply, when it is not: one frame "ERR <reason>", the reason one of
//     "not found" (no such file, a name with a NUL byte, or one the server may not
//     read), "outside the root" (an empty or absolute name, a ".." element, or a
//     symlink leading out of the root), "not a regular file" (a directory, device,
//     fifo...), "server out of descriptors" (EMFILE/ENFILE: try again later). The
//     connection stays open.
//
// Several requests may follow on one connection, and may be pipelined: the replies
// come in request order. Per-request work (see Work) runs once per request, before
// its reply. Should a small file fail to read after it was opened (it shrank, or an
// I/O error), the replies to the earlier requests go out and the connection closes;
// a large file that shrinks while it is sent closes the connection too, as its
// frames can no longer be kept.
//
// Content up to InlineMax is read into the reply; larger files go out with
// sendfile(2), their frame headers written between the pieces (see Out).

package proto

import (
	"encoding/binary"
	"fmt"
	"strconv"
)

// File protocol limits; clients need them to check replies.
const (
	// MaxFileName is the longest request (file name) the file protocol accepts.
	MaxFileName = 4096
	// FileChunk is the largest content frame of a file protocol reply.
	FileChunk = 64 << 10
)

func init() { constructors["file"] = newFile }

type fileProto struct {
	root   *fileRoot
	work   Work
	maxOut int
}

// newFile returns the file protocol serving o.Root; it needs one. o.MaxFrame does
// not apply: a request is a name, limited to MaxFileName.
func newFile(o Options) (Protocol, error) {
	r, err := openFileRoot("file", o.Root)
	if err != nil {
		return nil, err
	}
	return &fileProto{root: r, work: o.Work, maxOut: outputCap(o)}, nil
}

func (p *fileProto) Name() string { return "file" }
func (p *fileProto) NewSession() Session {
	return &fileSession{p: p, fr: frameReader{max: MaxFileName}}
}

type fileSession struct {
	p  *fileProto
	fr frameReader
}

func (s *fileSession) Feed(out *Out, src []byte) error {
	return s.fr.each(src, func(name []byte) error { return s.p.serve(out, name) })
}

// serve appends the reply to one request for name. It allocates only what opening
// the file takes.
func (p *fileProto) serve(out *Out, name []byte) error {
	if err := checkOutput(out, p.maxOut); err != nil {
		return err
	}
	p.work.Do()
	f, size, err := p.root.open(string(name))
	if err != nil {
		appendFileError(out, err)
		return nil
	}
	// "OK <size>", its length patched in once the digits are written.
	mark := len(out.Buf)
	out.Buf = append(out.Buf, 0, 0, 0, 0, 'O', 'K', ' ')
	out.Buf = strconv.AppendInt(out.Buf, size, 10)
	binary.BigEndian.PutUint32(out.Buf[mark:], uint32(len(out.Buf)-mark-HeaderLen))
	if err := appendContent(out, f, size, FileChunk); err != nil {
		// The announced size cannot be kept: drop this reply, send the earlier
		// ones, close.
		out.Buf = out.Buf[:mark]
		return fmt.Errorf("%w: file protocol: %w", ErrClose, err)
	}
	out.Buf = append(out.Buf, 0, 0, 0, 0) // end of the file
	return nil
}

// appendFileError appends the "ERR <reason>" frame for a reason from
// fileRoot.open.
func appendFileError(out *Out, reason error) {
	msg := reason.Error()
	out.Buf = binary.BigEndian.AppendUint32(out.Buf, uint32(len("ERR ")+len(msg)))
	out.Buf = append(out.Buf, "ERR "...)
	out.Buf = append(out.Buf, msg...)
}

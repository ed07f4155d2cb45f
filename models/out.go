package models

import (
	"errors"
	"io"
	"time"

	"golang.org/x/sys/unix"

	"concbench/internal/proto"
	"concbench/internal/rawio"
	"concbench/internal/sock"
)

// errFileShrank: a file ended before the bytes its reply announced were sent (it was
// truncated while being served). The framing is broken, so the connection closes.
var errFileShrank = errors.New("file shrank while being sent")

// writeOut writes o to fd until o is empty (nil), the socket is full (unix.EAGAIN) or
// an error. Bytes go with write(2), file ranges with sendfile(2). On a blocking
// descriptor it returns only once everything went or an error happened.
func writeOut(fd int, o *proto.Out) error { return writeOutWith(fd, o, sock.Write) }

// writeOutNB is writeOut for a non-blocking descriptor (an event loop's): its
// writes of bytes skip the runtime's syscall path (rawio), since they cannot
// block; sendfile keeps it, since reading the file may wait for the disk.
func writeOutNB(fd int, o *proto.Out) error { return writeOutWith(fd, o, rawio.Write) }

func writeOutWith(fd int, o *proto.Out, write func(int, []byte) (int, error)) error {
	for {
		p := o.Head()
		var n int
		var err error
		switch {
		case p.More:
			n, err = sock.WriteMore(fd, p.Bytes) // a header, then sendfile: one segment
		case p.Bytes != nil:
			n, err = write(fd, p.Bytes)
		case p.N > 0:
			n, err = sock.Sendfile(fd, p.FD, p.Off, p.N)
			if err == nil && n == 0 {
				err = errFileShrank
			}
		default:
			return nil
		}
		if err != nil {
			return err
		}
		o.Advance(n)
	}
}

// writeOutConn writes o through the net package's poller: bytes with w (a
// net.Conn's Write, which waits for room in Go's netpoller), file ranges with
// sendfile(2) inside rc.Write, which is what the net package does for io.Copy from
// an *os.File. With idle > 0 each write call gets a deadline idle from its start,
// and one that passes returns an error wrapping os.ErrDeadlineExceeded. It returns
// once everything went or an error happened.
func writeOutConn(w deadlineWriter, rc rawWriter, o *proto.Out, idle time.Duration) error {
	for {
		p := o.Head()
		var n int
		var err error
		if idle > 0 && (p.Bytes != nil || p.N > 0) {
			w.SetWriteDeadline(time.Now().Add(idle))
		}
		switch {
		case p.More:
			// A header before a file: net.Conn has no MSG_MORE, so through the
			// raw descriptor, as for sendfile, to share a segment with the file.
			werr := rc.Write(func(fd uintptr) bool {
				n, err = sock.WriteMore(int(fd), p.Bytes)
				return err != unix.EAGAIN
			})
			if err == nil {
				err = werr
			}
		case p.Bytes != nil:
			n, err = w.Write(p.Bytes)
		case p.N > 0:
			werr := rc.Write(func(fd uintptr) bool {
				n, err = sock.Sendfile(int(fd), p.FD, p.Off, p.N)
				return err != unix.EAGAIN
			})
			if err == nil {
				err = werr
			}
			if err == nil && n == 0 {
				err = errFileShrank
			}
		default:
			return nil
		}
		if err != nil {
			return err
		}
		o.Advance(n)
	}
}

// owed is what Config.MaxOutput caps: the reply bytes o holds in memory. File
// ranges cost no memory (sendfile sends them from the page cache) and are not
// counted.
func owed(o *proto.Out) int64 { return int64(o.Buffered()) }

// deadlineWriter is the writing side of a net.Conn.
type deadlineWriter interface {
	io.Writer
	SetWriteDeadline(t time.Time) error
}

// rawWriter is the write half of syscall.RawConn.
type rawWriter interface {
	Write(f func(fd uintptr) (done bool)) error
}

// feedEnd sorts out a session's Feed error: it counts protocol errors and reports
// whether the output must still be written in full before the close (ErrClose)
// rather than the connection dropped at once.
func feedEnd(s *Stats, err error) (drain bool) {
	if errors.Is(err, proto.ErrProtocol) {
		s.protoErrors.Add(1)
	}
	return errors.Is(err, proto.ErrClose)
}

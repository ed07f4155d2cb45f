package models

import (
	"errors"
	"io"

	"golang.org/x/sys/unix"

	"concbench/internal/proto"
	"concbench/internal/sock"
)

// errFileShrank: a file ended before the bytes its reply announced were sent (it was
// truncated while being served). The framing is broken, so the connection closes.
var errFileShrank = errors.New("file shrank while being sent")

// writeOut writes o to fd until o is empty (nil), the socket is full (unix.EAGAIN) or
// an error. Bytes go with write(2), file ranges with sendfile(2). On a blocking
// descriptor it returns only once everything went or an error happened.
func writeOut(fd int, o *proto.Out) error {
	for {
		p := o.Head()
		var n int
		var err error
		switch {
		case p.Bytes != nil:
			n, err = sock.Write(fd, p.Bytes)
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
// an *os.File. It returns once everything went or an error happened.
func writeOutConn(w io.Writer, rc rawWriter, o *proto.Out) error {
	for {
		p := o.Head()
		var n int
		var err error
		switch {
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

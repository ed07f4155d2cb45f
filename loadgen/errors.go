package loadgen

import (
	"errors"

	"golang.org/x/sys/unix"
)

// ErrorKind is one kind of error the engine counts. Every failure is counted once
// under exactly one kind; the requests it lost are not retried.
type ErrorKind uint8

// The kinds of errors, with their names in results.
const (
	ErrConnectRefused ErrorKind = iota // connect: ECONNREFUSED (nothing listening, or the backlog overflowed); for a Unix socket also EAGAIN (backlog full) and ENOENT (no socket file); for a udp-echo flow, ECONNREFUSED on a send or receive (an ICMP port unreachable: nothing listens)
	ErrConnectTimeout                  // connect did not complete within ConnectTimeout (or ETIMEDOUT)
	ErrConnectAddr                     // connect: EADDRNOTAVAIL (ephemeral ports exhausted)
	ErrConnectFD                       // socket: EMFILE/ENFILE (descriptor limit)
	ErrConnectOther                    // connect failed otherwise
	ErrReset                           // ECONNRESET or EPIPE on an open connection
	ErrEOF                             // the server closed with requests outstanding (a short read)
	ErrClosedIdle                      // the server closed a connection with nothing outstanding
	ErrTimeout                         // no reply within Timeout
	ErrMismatch                        // a well-framed reply is wrong: payload bytes (echo, rpc); size or CRC32C of the content (file, http); a udp-echo reply whose bytes, length or send time are not its request's, or that names none of its flow's
	ErrBadFrame                        // a reply's framing is wrong (rpc or file frame header, http status line or headers): the stream cannot be trusted
	ErrServerError                     // file: the server answered with an ERR frame
	ErrHTTPStatus                      // http: the status was not 200
	ErrUnexpected                      // bytes arrived with no request outstanding
	ErrIO                              // another read or write error
	numErrorKinds
)

var errorNames = [numErrorKinds]string{
	"connect_refused", "connect_timeout", "connect_addr", "connect_fd", "connect_other",
	"reset", "eof", "closed_idle", "timeout", "mismatch", "bad_frame",
	"server_error", "http_status", "unexpected", "io",
}

func (k ErrorKind) String() string {
	if k < numErrorKinds {
		return errorNames[k]
	}
	return "unknown"
}

// ErrorKinds lists every kind, in order.
func ErrorKinds() []ErrorKind {
	ks := make([]ErrorKind, numErrorKinds)
	for i := range ks {
		ks[i] = ErrorKind(i)
	}
	return ks
}

func connectErrorKind(err error) ErrorKind {
	switch {
	case errors.Is(err, unix.ECONNREFUSED), errors.Is(err, unix.EAGAIN), errors.Is(err, unix.ENOENT):
		// EAGAIN and ENOENT come only from connecting to a Unix domain socket.
		return ErrConnectRefused
	case errors.Is(err, unix.ETIMEDOUT):
		return ErrConnectTimeout
	case errors.Is(err, unix.EADDRNOTAVAIL):
		return ErrConnectAddr
	case errors.Is(err, unix.EMFILE), errors.Is(err, unix.ENFILE):
		return ErrConnectFD
	}
	return ErrConnectOther
}

func ioErrorKind(err error) ErrorKind {
	if errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.EPIPE) {
		return ErrReset
	}
	if errors.Is(err, unix.ETIMEDOUT) {
		return ErrTimeout
	}
	return ErrIO
}

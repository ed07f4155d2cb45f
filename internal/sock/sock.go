// Package sock holds the raw-socket helpers the models share: a listening socket
// made with socket/bind/listen (so process models can hand its fd to children), and
// the retry discipline of the seed's wrappers (EINTR retried, ECONNABORTED skipped).
package sock

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Backlog is the listen backlog asked for; the kernel caps it at net.core.somaxconn.
const Backlog = 4096

// ErrNotLoopback is returned by Listen for a non-loopback address unless allowed.
var ErrNotLoopback = errors.New("address is not loopback")

// ErrReusePortUnix is returned by ListenReusePort for a unix: address:
// SO_REUSEPORT groups exist for TCP and UDP ports only.
var ErrReusePortUnix = errors.New("SO_REUSEPORT does not apply to Unix domain sockets")

// UnixPrefix marks a Unix domain socket address: "unix:/path/to.sock".
const UnixPrefix = "unix:"

// Listener is a listening stream socket (TCP, or Unix domain for a unix: address)
// owned by the caller, non-blocking and close-on-exec.
type Listener struct {
	FD   int    // the socket
	Addr string // the bound address as HOST:PORT (the real port when :0 was asked), or unix:PATH

	// unlink is the socket file Listen created, removed by Close. Only Listen sets
	// it, so a Listener built around an inherited descriptor (a worker process's)
	// never removes its parent's file.
	unlink string
	ino    uint64 // the file's inode when bound: Close leaves a file replaced since
	dev    uint64
}

// Close closes the socket and, for a Unix domain socket this process bound,
// removes its file (unless another socket has replaced it since).
func (l *Listener) Close() error {
	err := unix.Close(l.FD)
	if l.unlink != "" {
		var st unix.Stat_t
		if unix.Lstat(l.unlink, &st) == nil && st.Ino == l.ino && st.Dev == l.dev {
			if uerr := unix.Unlink(l.unlink); uerr != nil && err == nil {
				err = &os.PathError{Op: "unlink", Path: l.unlink, Err: uerr}
			}
		}
		l.unlink = ""
	}
	if err != nil {
		return os.NewSyscallError("close", err)
	}
	return nil
}

// IsUnix reports whether addr names a Unix domain socket (unix:PATH).
func IsUnix(addr string) bool { return strings.HasPrefix(addr, UnixPrefix) }

// Listen binds addr (HOST:PORT, numeric host; port 0 picks a free one) with
// SO_REUSEADDR and listens. A non-loopback host is refused with ErrNotLoopback
// unless allowRemote is set.
//
// For addr unix:PATH it binds an AF_UNIX stream socket at PATH instead (local by
// nature: no loopback check). A stale socket file at PATH (nothing accepting on
// it) is removed first; a live one is refused with EADDRINUSE, and anything that
// is not a socket is never removed. Close removes the file.
func Listen(addr string, allowRemote bool) (*Listener, error) {
	if path, ok := strings.CutPrefix(addr, UnixPrefix); ok {
		return listenUnix(path)
	}
	return listen(addr, unix.SOCK_STREAM, allowRemote, false)
}

// ListenUDP binds a UDP socket on addr (IP:PORT, loopback unless allowRemote,
// as Listen), non-blocking and close-on-exec, for the datagram protocols.
// reusePort sets SO_REUSEPORT before bind: the socket joins the group already
// bound to addr, and the kernel spreads datagrams across the group by a hash
// of their source and destination, so one peer's datagrams reach one socket.
// A unix: address is refused: the datagram protocols are UDP.
func ListenUDP(addr string, allowRemote, reusePort bool) (*Listener, error) {
	if IsUnix(addr) {
		return nil, fmt.Errorf("listen %s: %w", addr, ErrUnixDatagram)
	}
	return listen(addr, unix.SOCK_DGRAM, allowRemote, reusePort)
}

// ErrUnixDatagram is returned by ListenUDP for a unix: address.
var ErrUnixDatagram = errors.New("the datagram protocols are served over UDP, not a Unix domain socket")

// ListenReusePort is Listen with SO_REUSEPORT set before bind: the socket joins the
// group of SO_REUSEPORT sockets already bound to addr (whose binding already passed
// Listen's loopback check), and the kernel spreads new connections across the group
// by a hash of their addresses.
// A unix: address is refused with ErrReusePortUnix.
func ListenReusePort(addr string) (*Listener, error) {
	if IsUnix(addr) {
		return nil, fmt.Errorf("listen %s: %w", addr, ErrReusePortUnix)
	}
	return listen(addr, unix.SOCK_STREAM, true, true)
}

func listenUnix(path string) (*Listener, error) {
	addr := UnixPrefix + path
	if path == "" {
		return nil, fmt.Errorf("listen %q: want unix:/path/to.sock", addr)
	}
	sa := &unix.SockaddrUnix{Name: path}
	if len(path) >= len(unix.RawSockaddrUnix{}.Path) {
		return nil, fmt.Errorf("listen %s: path longer than %d bytes", addr, len(unix.RawSockaddrUnix{}.Path)-1)
	}
	if err := removeStale(path, sa); err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listen %s: %w", addr, os.NewSyscallError("bind", err))
	}
	ln := &Listener{FD: fd, Addr: addr, unlink: path}
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		ln.unlink = "" // cannot tell it is ours later: leave it
		ln.Close()
		return nil, fmt.Errorf("listen %s: %w", addr, &os.PathError{Op: "lstat", Path: path, Err: err})
	}
	ln.ino, ln.dev = st.Ino, st.Dev
	if err := unix.Listen(fd, Backlog); err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen %s: %w", addr, os.NewSyscallError("listen", err))
	}
	return ln, nil
}

// removeStale removes a socket file at path that no one accepts on. It refuses a
// path that is not a socket, and a socket a server still listens on.
func removeStale(path string, sa *unix.SockaddrUnix) error {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		if err == unix.ENOENT {
			return nil
		}
		return &os.PathError{Op: "lstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return fmt.Errorf("%s exists and is not a socket: refusing to remove it", path)
	}
	// A non-blocking connect to a Unix socket resolves at once: it succeeds or
	// fails with EAGAIN (full backlog) if someone listens, ECONNREFUSED if not.
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	err = unix.Connect(fd, sa)
	unix.Close(fd)
	switch err {
	case unix.ECONNREFUSED: // stale
	case nil, unix.EAGAIN:
		return fmt.Errorf("%s: a server is listening on it: %w", path, os.NewSyscallError("bind", unix.EADDRINUSE))
	default:
		return fmt.Errorf("probing %s: %w", path, os.NewSyscallError("connect", err))
	}
	if err := unix.Unlink(path); err != nil && err != unix.ENOENT {
		return &os.PathError{Op: "unlink stale socket", Path: path, Err: err}
	}
	return nil
}

// ParseListenAddr parses a TCP listen address, IP:PORT or localhost:PORT, and
// refuses a non-loopback IP with ErrNotLoopback unless allowRemote is set.
func ParseListenAddr(addr string, allowRemote bool) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		host, port, serr := net.SplitHostPort(addr)
		if serr != nil || host != "localhost" {
			return ap, fmt.Errorf("listen %q: want IP:PORT (e.g. 127.0.0.1:7000): %w", addr, err)
		}
		p, perr := strconv.ParseUint(port, 10, 16)
		if perr != nil {
			return ap, fmt.Errorf("listen %q: bad port: %w", addr, perr)
		}
		ap = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(p))
	}
	if !ap.Addr().IsLoopback() && !allowRemote {
		return ap, fmt.Errorf("listen %s: %w (binding other interfaces needs an explicit opt-in)", addr, ErrNotLoopback)
	}
	return ap, nil
}

func listen(addr string, sotype int, allowRemote, reusePort bool) (*Listener, error) {
	ap, err := ParseListenAddr(addr, allowRemote)
	if err != nil {
		return nil, err
	}
	family := unix.AF_INET
	var sa unix.Sockaddr
	if a := ap.Addr().Unmap(); a.Is4() {
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
	} else {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
	}
	fd, err := unix.Socket(family, sotype|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if err := setup(fd, sa, sotype == unix.SOCK_STREAM, reusePort); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	bound, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("getsockname", err)
	}
	return &Listener{FD: fd, Addr: SockaddrString(bound)}, nil
}

// setup sets the socket's options and binds it (and listens, for a stream).
// SO_REUSEADDR is for TCP only (rebinding a port whose connections are in
// TIME_WAIT): on UDP it would let a second socket bind the port and take
// every datagram from the first.
func setup(fd int, sa unix.Sockaddr, stream, reusePort bool) error {
	if stream {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return os.NewSyscallError("setsockopt SO_REUSEADDR", err)
		}
	}
	if reusePort {
		if err := SetReusePort(fd, true); err != nil {
			return err
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return os.NewSyscallError("bind", err)
	}
	if !stream {
		return nil
	}
	if err := unix.Listen(fd, Backlog); err != nil {
		return os.NewSyscallError("listen", err)
	}
	return nil
}

// SetReusePort sets or clears SO_REUSEPORT on a socket. Set after bind, it lets
// later ListenReusePort sockets join the socket's port (Linux allows this).
func SetReusePort(fd int, on bool) error {
	v := 0
	if on {
		v = 1
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, v); err != nil {
		return os.NewSyscallError("setsockopt SO_REUSEPORT", err)
	}
	return nil
}

// SockaddrString formats an inet socket address as HOST:PORT, a Unix domain one
// as unix:PATH.
func SockaddrString(sa unix.Sockaddr) string {
	switch a := sa.(type) {
	case *unix.SockaddrUnix:
		return UnixPrefix + a.Name
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String()
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port)).String()
	}
	return fmt.Sprintf("%v", sa)
}

// Accept accepts one connection with the given accept4 flags, retrying EINTR and
// skipping ECONNABORTED (a connection reset while still in the backlog). It returns
// unix.EAGAIN when the backlog is empty and EMFILE/ENFILE when out of descriptors;
// the caller must back off on those instead of spinning.
func Accept(lfd, flags int) (int, error) {
	for {
		fd, _, err := unix.Accept4(lfd, flags|unix.SOCK_CLOEXEC)
		switch {
		case err == nil:
			// Every model sets TCP_NODELAY, as Go's net package (the goroutine
			// model) and nginx do: a small write (a frame header between sendfile
			// pieces, a reply behind an unacknowledged one) must not wait for the
			// peer's delayed ACK, 40 ms. It fails harmlessly on a Unix socket.
			_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
			return fd, nil
		case err == unix.EINTR, err == unix.ECONNABORTED:
			continue
		default:
			return -1, err
		}
	}
}

// IsFDLimit reports whether err means the process or system ran out of descriptors.
func IsFDLimit(err error) bool {
	return errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) ||
		errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM)
}

// Read reads once into p, retrying EINTR.
func Read(fd int, p []byte) (int, error) {
	for {
		n, err := unix.Read(fd, p)
		if err != unix.EINTR {
			return n, err
		}
	}
}

// Write writes once from p, retrying EINTR.
func Write(fd int, p []byte) (int, error) {
	for {
		n, err := unix.Write(fd, p)
		if err != unix.EINTR {
			return n, err
		}
	}
}

// Sendfile sends up to n bytes of the file infd from offset off to the socket fd
// (sendfile(2): the bytes go from the page cache to the socket without a copy
// through user space), retrying EINTR. It returns how many went.
func Sendfile(fd, infd int, off int64, n int) (int, error) {
	for {
		w, err := unix.Sendfile(fd, infd, &off, n)
		if err != unix.EINTR {
			return max(w, 0), err
		}
	}
}

// WriteMore writes once from p with MSG_MORE, retrying EINTR: the kernel may hold
// the bytes back to send them in one segment with what the next call writes (a
// reply header and the file that sendfile sends after it). Unix sockets ignore it.
func WriteMore(fd int, p []byte) (int, error) {
	for {
		n, err := unix.SendmsgN(fd, p, nil, nil, unix.MSG_MORE)
		if err != unix.EINTR {
			return n, err
		}
	}
}

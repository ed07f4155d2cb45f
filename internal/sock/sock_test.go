package sock

import (
	"errors"
	"net"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestListen(t *testing.T) {
	tests := []struct {
		addr        string
		allowRemote bool
		wantErr     error  // nil: must succeed
		wantPrefix  string // of the bound address
	}{
		{"127.0.0.1:0", false, nil, "127.0.0.1:"},
		{"localhost:0", false, nil, "127.0.0.1:"},
		{"[::1]:0", false, nil, "[::1]:"},
		{"0.0.0.0:0", false, ErrNotLoopback, ""},
		{"0.0.0.0:0", true, nil, "0.0.0.0:"},
		{"example.com:80", false, errAny, ""},
		{"127.0.0.1", false, errAny, ""},
	}
	for _, tt := range tests {
		ln, err := Listen(tt.addr, tt.allowRemote)
		if tt.wantErr != nil {
			if err == nil || (tt.wantErr != errAny && !errors.Is(err, tt.wantErr)) {
				t.Errorf("Listen(%q, %v) err = %v, want %v", tt.addr, tt.allowRemote, err, tt.wantErr)
			}
			if ln != nil {
				ln.Close()
			}
			continue
		}
		if err != nil {
			if strings.Contains(err.Error(), "address not available") || strings.Contains(err.Error(), "cannot assign") {
				t.Logf("Listen(%q): %v (no such interface here)", tt.addr, err)
				continue
			}
			t.Errorf("Listen(%q): %v", tt.addr, err)
			continue
		}
		if !strings.HasPrefix(ln.Addr, tt.wantPrefix) || strings.HasSuffix(ln.Addr, ":0") {
			t.Errorf("Listen(%q) bound %q, want %s<port>", tt.addr, ln.Addr, tt.wantPrefix)
		}
		c, err := net.Dial("tcp", strings.Replace(ln.Addr, "0.0.0.0", "127.0.0.1", 1))
		if err != nil {
			t.Errorf("dial %s: %v", ln.Addr, err)
		} else {
			c.Close()
		}
		ln.Close()
	}
}

var errAny = errors.New("any error")

// TestListenReusePort: a second socket joins a port only when the first one has
// SO_REUSEPORT; without it the bind fails.
func TestListenReusePort(t *testing.T) {
	for _, share := range []bool{true, false} {
		first, err := Listen("127.0.0.1:0", false)
		if err != nil {
			t.Fatal(err)
		}
		if share {
			if err := SetReusePort(first.FD, true); err != nil {
				t.Fatal(err)
			}
		}
		second, err := ListenReusePort(first.Addr)
		switch {
		case share && err != nil:
			t.Errorf("joining %s with SO_REUSEPORT set: %v", first.Addr, err)
		case !share && err == nil:
			t.Errorf("joined %s though its socket has no SO_REUSEPORT", first.Addr)
		}
		if second != nil {
			if second.Addr != first.Addr {
				t.Errorf("joined %s, want %s", second.Addr, first.Addr)
			}
			second.Close()
		}
		first.Close()
	}
}

// TestListenUDP: a UDP socket on loopback with the real port, refused off
// loopback without the opt-in and on a unix: address; a second joins its port
// only as a SO_REUSEPORT group.
func TestListenUDP(t *testing.T) {
	first, err := ListenUDP("127.0.0.1:0", false, false)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if typ, err := unix.GetsockoptInt(first.FD, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || typ != unix.SOCK_DGRAM {
		t.Errorf("socket type %d, %v; want SOCK_DGRAM", typ, err)
	}
	if strings.HasSuffix(first.Addr, ":0") {
		t.Errorf("bound %s: want the real port", first.Addr)
	}
	if _, err := ListenUDP("192.0.2.1:0", false, false); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("non-loopback: %v, want ErrNotLoopback", err)
	}
	if _, err := ListenUDP("unix:/tmp/x.sock", false, false); !errors.Is(err, ErrUnixDatagram) {
		t.Errorf("unix: %v, want ErrUnixDatagram", err)
	}
	if s, err := ListenUDP(first.Addr, false, true); err == nil {
		s.Close()
		t.Errorf("joined %s though its socket has no SO_REUSEPORT", first.Addr)
	}
	if err := SetReusePort(first.FD, true); err != nil {
		t.Fatal(err)
	}
	second, err := ListenUDP(first.Addr, false, true)
	if err != nil {
		t.Fatalf("joining %s with SO_REUSEPORT set: %v", first.Addr, err)
	}
	second.Close()
}

// TestListenUnix: unix:PATH binds a Unix domain socket, replaces a stale socket
// file, refuses a live one and anything that is not a socket, and Close removes
// the file it bound — but not a file that replaced it, and a Listener around an
// inherited descriptor (a worker's) removes nothing.
func TestListenUnix(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/s.sock"
	isSocket := func() bool {
		fi, err := os.Lstat(path)
		return err == nil && fi.Mode()&os.ModeSocket != 0
	}

	// A stale socket file: bound, then closed without removing it.
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	if !isSocket() {
		t.Fatal("stale socket file missing")
	}

	ln, err := Listen("unix:"+path, false)
	if err != nil {
		t.Fatalf("Listen over a stale socket file: %v", err)
	}
	if ln.Addr != "unix:"+path {
		t.Errorf("Addr = %q, want unix:%s", ln.Addr, path)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	c.Close()

	// A live one is not replaced.
	if ln2, err := Listen("unix:"+path, false); !errors.Is(err, unix.EADDRINUSE) {
		t.Errorf("Listen on a live socket: err = %v, want EADDRINUSE", err)
		if ln2 != nil {
			ln2.Close()
		}
	}
	if _, err := ListenReusePort(ln.Addr); !errors.Is(err, ErrReusePortUnix) {
		t.Errorf("ListenReusePort(%s) err = %v, want %v", ln.Addr, err, ErrReusePortUnix)
	}

	// A worker's Listener around an inherited copy of the descriptor.
	dup, err := unix.FcntlInt(uintptr(ln.FD), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := (&Listener{FD: dup, Addr: ln.Addr}).Close(); err != nil {
		t.Fatal(err)
	}
	if !isSocket() {
		t.Fatal("closing an inherited descriptor removed the socket file")
	}
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after Close: %v, want the file removed", err)
	}

	// A file that replaced ours is left alone.
	old, err := Listen("unix:"+path, false)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	cur, err := Listen("unix:"+path, false)
	if err != nil {
		t.Fatal(err)
	}
	old.Close()
	if !isSocket() {
		t.Fatal("closing a replaced listener removed its successor's file")
	}
	cur.Close()

	// Never removes what is not a socket.
	for _, kind := range []string{"regular file", "directory"} {
		p := dir + "/not-a-socket"
		os.RemoveAll(p)
		if kind == "directory" {
			err = os.Mkdir(p, 0o755)
		} else {
			err = os.WriteFile(p, []byte("keep me"), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
		if ln, err := Listen("unix:"+p, false); err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Errorf("Listen over a %s: err = %v, want a refusal", kind, err)
			if ln != nil {
				ln.Close()
			}
		}
		if fi, err := os.Lstat(p); err != nil || fi.IsDir() != (kind == "directory") {
			t.Errorf("%s removed or replaced: %v", kind, err)
		} else if b, _ := os.ReadFile(p); kind == "regular file" && string(b) != "keep me" {
			t.Errorf("regular file now holds %q", b)
		}
	}

	if _, err := Listen("unix:"+dir+"/"+strings.Repeat("x", 120), false); err == nil {
		t.Error("Listen accepted a path longer than sun_path")
	}
}

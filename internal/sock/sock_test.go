package sock

import (
	"errors"
	"net"
	"strings"
	"testing"
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

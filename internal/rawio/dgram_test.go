package rawio

import (
	"bytes"
	"fmt"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// udpPair is a non-blocking UDP socket on loopback (the server's side, a raw
// fd) and a client connected to it.
func udpPair(t *testing.T) (fd int, client *net.UDPConn) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
	c, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*unix.SockaddrInet4).Port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return fd, c
}

// TestMsgs: a batch reads what waits up to its slots (recvfrom for one,
// recvmmsg for more), knows each datagram's length and sender, flags one
// larger than its slot, and sends the replies queued back to their senders.
func TestMsgs(t *testing.T) {
	for _, slots := range []int{1, 4} {
		t.Run(fmt.Sprint(slots, " slots"), func(t *testing.T) {
			fd, c := udpPair(t)
			m := NewMsgs(slots, 100)
			if _, err := m.Recv(fd); err != unix.EAGAIN {
				t.Fatalf("Recv with nothing waiting: %v, want EAGAIN", err)
			}
			sent := [][]byte{[]byte("a"), bytes.Repeat([]byte("b"), 100), bytes.Repeat([]byte("c"), 150), []byte("dd"), []byte("e")}
			for _, p := range sent {
				c.Write(p)
			}
			var got [][]byte
			for len(got) < len(sent) {
				deadline := time.Now().Add(5 * time.Second)
				n, err := m.Recv(fd)
				if err == unix.EAGAIN && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
					continue
				}
				if err != nil || n < 1 || n > slots {
					t.Fatalf("Recv: %d, %v; want 1 to %d", n, err, slots)
				}
				for i := range n {
					p, size, trunc := m.Datagram(i)
					want := sent[len(got)]
					if size != len(want) || trunc != (len(want) > 100) {
						t.Errorf("datagram %d: size %d truncated %v, want %d, %v", len(got), size, trunc, len(want), len(want) > 100)
					}
					if !trunc {
						if !bytes.Equal(p, want) {
							t.Errorf("datagram %d: %q, want %q", len(got), p, want)
						}
						p[0] ^= 0x20 // upper-case the first letter, in place
						m.Reply(i, len(p))
					}
					got = append(got, want)
				}
				if sent, err := m.Send(fd); err != nil || m.Queued() != 0 {
					t.Fatalf("Send: %d, %v, %d left", sent, err, m.Queued())
				}
			}
			// Four replies (the 150-byte one was not queued), in order, to c.
			buf := make([]byte, 200)
			for _, want := range []string{"A", "B" + string(bytes.Repeat([]byte("b"), 99)), "Dd", "E"} {
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, err := c.Read(buf)
				if err != nil || string(buf[:n]) != want {
					t.Fatalf("reply %q, %v; want %q", buf[:n], err, want)
				}
			}
		})
	}
}

// TestMsgsDrop: replies queued can be dropped unsent, one or all.
func TestMsgsDrop(t *testing.T) {
	fd, c := udpPair(t)
	m := NewMsgs(4, 16)
	for _, p := range []string{"w", "x", "y"} {
		c.Write([]byte(p))
	}
	k, err := m.Recv(fd)
	for deadline := time.Now().Add(5 * time.Second); err == unix.EAGAIN && time.Now().Before(deadline); k, err = m.Recv(fd) {
		time.Sleep(time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	for i := range k {
		m.Reply(i, 1)
	}
	m.Drop()
	if m.Queued() != k-1 {
		t.Fatalf("%d queued after dropping one of %d", m.Queued(), k)
	}
	if n := m.DropAll(); n != k-1 || m.Queued() != 0 {
		t.Fatalf("DropAll: %d, %d left; want %d, 0", n, m.Queued(), k-1)
	}
	if sent, err := m.Send(fd); sent != 0 || err != nil {
		t.Fatalf("Send of nothing: %d, %v", sent, err)
	}
}

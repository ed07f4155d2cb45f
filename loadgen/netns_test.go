package loadgen

// A run past one source address's ports, in a network namespace of the test's
// own whose ephemeral port range is narrowed to 50 ports: the test binary runs
// itself there (clone with CLONE_NEWNET, as root) in the role netnsChild.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"concbench/internal/proto"
	"concbench/internal/result"
)

const netnsChildEnv = "CONCBENCH_LOADGEN_NETNS_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(netnsChildEnv) != "" {
		os.Exit(netnsChild())
	}
	os.Exit(m.Run())
}

// netnsPorts is the port range the child narrows its namespace's to; netnsConns
// the connections it opens to one server port: more than the range has.
const (
	netnsPorts = 50
	netnsConns = 120
)

// netnsReport is what the child found.
type netnsReport struct {
	Err         string
	Src         []string
	Established int
	Errors      map[string]int64
	Requests    int64
	Sources     map[string]int // connections by source address, as the server saw them
}

// TestSourcesPastPortRange: with 50 ephemeral ports, 120 connections to one
// server port cannot come from one address; over loopback the engine spreads
// them over as many as it needs (127.0.0.1-127.0.0.3) and every one connects.
func TestSourcesPastPortRange(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: a network namespace of its own (CLONE_NEWNET) and its port range")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), netnsChildEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil && len(out) == 0 {
		t.Skipf("cannot run in a network namespace of its own: %v", err)
	}
	var r netnsReport
	if jerr := json.Unmarshal(out, &r); jerr != nil {
		t.Fatalf("child: %v (%v); output %q", jerr, err, out)
	}
	if r.Err != "" {
		t.Fatalf("child: %s", r.Err)
	}
	if r.Established != netnsConns || len(r.Errors) != 0 || r.Requests == 0 {
		t.Fatalf("%d of %d connections established over %v, errors %v, %d requests", r.Established, netnsConns, r.Src, r.Errors, r.Requests)
	}
	if len(r.Sources) < 3 {
		t.Errorf("connections came from %v: want at least 3 addresses for %d connections over %d ports", r.Sources, netnsConns, netnsPorts)
	}
	for a, n := range r.Sources {
		if n > netnsPorts {
			t.Errorf("%d connections from %s, more than its %d ports", n, a, netnsPorts)
		}
	}
	t.Logf("%d connections from %v (src %v)", r.Established, r.Sources, r.Src)
}

// netnsChild runs in the new namespace: loopback up, the port range narrowed,
// an echo server, and a run of netnsConns connections; it prints its report.
func netnsChild() int {
	r := netnsReport{Sources: map[string]int{}}
	var mu sync.Mutex // guards r.Sources against the accept goroutine
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		json.NewEncoder(os.Stdout).Encode(r)
	}()
	fail := func(err error) int { r.Err = err.Error(); return 0 }
	if err := loopbackUp(); err != nil {
		return fail(err)
	}
	lo := 40000
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_local_port_range", fmt.Appendf(nil, "%d %d", lo, lo+netnsPorts-1), 0); err != nil {
		return fail(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			mu.Lock()
			r.Sources[host]++
			mu.Unlock()
			go func() {
				defer c.Close()
				buf := make([]byte, 16)
				for {
					if _, err := io.ReadFull(c, buf); err != nil {
						return
					}
					c.Write(proto.AppendUpper(nil, buf))
				}
			}()
		}
	}()
	w, err := Resolve(result.Workload{Addr: ln.Addr().String(), Size: 16, Conns: netnsConns, Duration: 300 * time.Millisecond})
	if err != nil {
		return fail(err)
	}
	r.Src = w.Src
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o, err := Run(ctx, Config{Workload: w})
	if err != nil {
		return fail(err)
	}
	ln.Close()
	r.Established, r.Errors, r.Requests = o.Load.Connect.Established, o.Load.Errors, o.Load.Requests
	if len(r.Errors) == 0 {
		r.Errors = nil
	}
	return 0
}

// loopbackUp sets the namespace's loopback interface up (a new network namespace
// starts with it down).
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return os.NewSyscallError("ioctl SIOCGIFFLAGS", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return os.NewSyscallError("ioctl SIOCSIFFLAGS", err)
	}
	return nil
}

package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"concbench/models"
)

// binDir holds the server binary the tests run: made by TestMain, removed when
// every test has ended.
var binDir string

func TestMain(m *testing.M) {
	// -parallel defaults to GOMAXPROCS, which suits tests that use CPU; these
	// mostly wait for their servers, so unless -parallel is given, as many run
	// at once as serverSlots allows.
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit && runtime.GOMAXPROCS(0) < cap(serverSlots) {
		flag.Set("test.parallel", strconv.Itoa(cap(serverSlots)))
	}
	dir, err := os.MkdirTemp("", "concbench-server-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildOnce compiles the server into binDir the first time a test asks for it: a
// go build takes about a second even from the build cache, and every test runs
// the same binary.
var buildOnce = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(binDir, "server")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// build returns the server binary, built once per test binary run; a failed
// build fails every test that needs it.
func build(t *testing.T) string {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// serverSlots bounds how many tests run server binaries at once. Each such test
// holds a server, its worker processes and up to 160 client connections, and
// most of its time is waiting (a grace period, a write stall, a steady state):
// running several at once saves that time, but this is a 2-core machine shared
// with other test runs, and the tests' deadlines (a server exits within 3 s of
// its grace period, a waiting client is served within seconds) must keep their
// margins.
var serverSlots = make(chan struct{}, 6)

// parallelServer marks t parallel and waits for one of serverSlots, held until t
// and its cleanups end (the slot's release is the first cleanup registered, so
// the last to run: after the server is stopped). A test whose subtests take slots
// must not take one itself: holding it while they wait for one could deadlock.
func parallelServer(t *testing.T) {
	t.Helper()
	t.Parallel()
	serverSlots <- struct{}{}
	t.Cleanup(func() { <-serverSlots })
}

func TestBadFlags(t *testing.T) {
	t.Parallel() // no server is left running: each start exits at once
	bin := build(t)
	tests := []struct {
		args []string
		want []string // each must appear in stderr
	}{
		{[]string{"-model", "nope"}, append([]string{`unknown model "nope"`}, models.Names()...)},
		{[]string{}, append([]string{"-model is required"}, models.Names()...)},
		{[]string{"-model", "poll", "-proto", "smtp"}, []string{`unknown protocol "smtp"`, "echo", "rpc"}},
		{[]string{"-model", "poll", "-work", "nap:1s"}, []string{"cpu:DUR"}},
		{[]string{"-model", "poll", "-max-frame", "0"}, []string{"-max-frame 0: must be positive"}},
		{[]string{"-model", "poll", "extra"}, []string{"unexpected arguments"}},
		{[]string{"-model", "poll", "-balance", "random"}, []string{"-balance", "rr, least"}},
		{[]string{"-model", "poll", "-accept", "all"}, []string{"exclusive, reuseport"}},
		{[]string{"-model", "poll", "-min-threads", "9", "-max-threads", "3"}, []string{"above -max-threads"}},
		{[]string{"-model", "epoll-et", "-sqpoll"}, []string{"-sqpoll applies to the uring model only"}},
		{[]string{"-model", "poll", "-ring-entries", "64"}, []string{"-ring-entries applies to the uring models only"}},
		{[]string{"-model", "uring", "-ring-entries", "65536"}, []string{"above the kernel's limit of 32768"}},
		{[]string{"-model", "uring", "-sqpoll-cpu", "1"}, []string{"-sqpoll-cpu applies to uring with -sqpoll"}},
		{[]string{"-model", "uring-sqpoll", "-sqpoll-cpu", "x"}, []string{"want a CPU number"}},
		{[]string{"-model", "fork", "-proto", "udp-echo"}, []string{"-model fork does not serve -proto udp-echo", "no connection", "models that do: epoll-et"}},
		{[]string{"-model", "procpool", "-proto", "udp-echo"}, []string{"-model procpool does not serve -proto udp-echo", "SCM_RIGHTS"}},
		{[]string{"-model", "epoll-et", "-proto", "udp-echo", "-batch", "0"}, []string{"-batch 0: must be positive"}},
		{[]string{"-model", "epoll-et", "-proto", "udp-echo", "-batch", "1025"}, []string{"-batch 1025 is above 1024"}},
		{[]string{"-model", "epoll-et", "-proto", "echo", "-batch", "8"}, []string{"apply to the datagram protocols"}},
		{[]string{"-model", "epoll-et", "-proto", "udp-echo", "-max-datagram", "70000"}, []string{"the largest UDP payload"}},
		{[]string{"-model", "epoll-et", "-proto", "udp-echo", "-addr", "unix:/tmp/x.sock"}, []string{"not a Unix domain socket"}},
	}
	for _, tt := range tests {
		cmd := exec.Command(bin, tt.args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("%v: err = %v, want exit status 2", tt.args, err)
		}
		for _, w := range tt.want {
			if !strings.Contains(stderr.String(), w) {
				t.Errorf("%v: stderr does not contain %q:\n%s", tt.args, w, stderr.String())
			}
		}
	}
}

func TestNonLoopbackRefused(t *testing.T) {
	t.Parallel() // the server refuses to start
	bin := build(t)
	out, err := exec.Command(bin, "-model", "poll", "-addr", "0.0.0.0:0").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "not loopback") || !strings.Contains(string(out), "-allow-remote") {
		t.Fatalf("binding 0.0.0.0 without -allow-remote: err=%v out=%s; want exit 2 naming -allow-remote (a usage error)", err, out)
	}
}

// TestServeAndStop: the first stdout line is exactly "listening on HOST:PORT", the
// server answers there, and SIGTERM (or SIGINT) makes it exit 0.
func TestServeAndStop(t *testing.T) {
	parallelServer(t) // each server on its own port 0; one at a time here
	bin := build(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		for _, model := range models.Names() {
			if err := models.Unavailable(model); err != nil {
				t.Logf("%s skipped: %v", model, err)
				continue
			}
			cmd, addr := runServer(t, bin, model, "-addr", "127.0.0.1:0")
			checkHello(t, model, "tcp", addr)
			stopServer(t, cmd, model, sig)
		}
	}
}

// runServer starts the server binary with -model model and args, and
// returns it and the address its first line says it listens on.
func runServer(t *testing.T, bin, model string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-model", model}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "listening on ")
	if err != nil || !ok {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("%s: first line %q, %v; want \"listening on HOST:PORT\"", model, line, err)
	}
	return cmd, addr
}

// stopServer sends sig to the server and checks that it exits 0 within 10s.
func stopServer(t *testing.T, cmd *exec.Cmd, model string, sig syscall.Signal) {
	t.Helper()
	cmd.Process.Signal(sig)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("%s: after %v: %v, want exit 0", model, sig, err)
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("%s: still running 10s after %v", model, sig)
	}
}

// TestServeUDP: -proto udp-echo serves datagrams on the UDP port it says it
// listens on, in the models of each kind (a loop, a pool, processes, Go's
// runtime), and SIGTERM stops it with exit 0.
func TestServeUDP(t *testing.T) {
	parallelServer(t)
	bin := build(t)
	for _, model := range []string{"epoll-et", "threadpool", "prefork", "goroutine"} {
		cmd, addr := runServer(t, bin, model, "-proto", "udp-echo", "-batch", "8", "-addr", "127.0.0.1:0")
		c, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		var got string
		for try := 0; try < 5 && got == ""; try++ { // a datagram may be lost: send again
			c.Write([]byte("hello, udp"))
			c.SetReadDeadline(time.Now().Add(time.Second))
			b := make([]byte, 64)
			if n, err := c.Read(b); err == nil {
				got = string(b[:n])
			}
		}
		c.Close()
		if got != "HELLO, UDP" {
			t.Errorf("%s: got %q, want HELLO, UDP", model, got)
		}
		stopServer(t, cmd, model, syscall.SIGTERM)
	}
}

// TestUnixSocket: -addr unix:PATH serves on a Unix domain socket and says so; a
// socket file left by a killed server is replaced; exit removes the file; prefork's
// reuseport mode refuses a Unix socket with a clear message.
func TestUnixSocket(t *testing.T) {
	parallelServer(t) // its socket file is in its own temporary directory
	bin := build(t)
	path := filepath.Join(t.TempDir(), "s.sock")
	startUnix := func(model string) *exec.Cmd {
		t.Helper()
		cmd, addr := runServer(t, bin, model, "-addr", "unix:"+path)
		if want := "unix:" + path; addr != want {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("%s: listening on %q, want %q", model, addr, want)
		}
		checkHello(t, model, "unix", path)
		return cmd
	}

	// Killed: nothing removes the file, and it is stale.
	cmd := startUnix("poll")
	cmd.Process.Kill()
	cmd.Wait()
	if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket file after SIGKILL: %v, want a stale socket left", err)
	}
	for _, model := range []string{"poll", "prefork"} {
		cmd := startUnix(model)
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("%s: after SIGTERM: %v, want exit 0", model, err)
		}
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: socket file after exit: %v, want it removed", model, err)
		}
	}

	out, err := exec.Command(bin, "-model", "prefork", "-accept", "reuseport", "-addr", "unix:"+path).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "SO_REUSEPORT does not apply to Unix domain sockets") {
		t.Errorf("prefork -accept reuseport on a Unix socket: err=%v out=%s", err, out)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file after the refused start: %v, want it removed", err)
	}
}

// checkHello sends "hello", half-closes, and expects "HELLO" and the server's close.
func checkHello(t *testing.T, model, network, addr string) {
	t.Helper()
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", model, err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("hello"))
	c.(interface{ CloseWrite() error }).CloseWrite()
	got, err := io.ReadAll(c)
	c.Close()
	if err != nil || string(got) != "HELLO" {
		t.Errorf("%s: got %q, %v; want HELLO", model, got, err)
	}
}

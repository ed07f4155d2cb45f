package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"concbench/models"
)

// build compiles the server once per test binary run.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "server")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func TestBadFlags(t *testing.T) {
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
	bin := build(t)
	out, err := exec.Command(bin, "-model", "poll", "-addr", "0.0.0.0:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not loopback") {
		t.Fatalf("binding 0.0.0.0 without -allow-remote: err=%v out=%s", err, out)
	}
}

// TestServeAndStop: the first stdout line is exactly "listening on HOST:PORT", the
// server answers there, and SIGTERM (or SIGINT) makes it exit 0.
func TestServeAndStop(t *testing.T) {
	bin := build(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		for _, model := range models.Names() {
			cmd := exec.Command(bin, "-model", model, "-addr", "127.0.0.1:0")
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(stdout).ReadString('\n')
			if err != nil {
				t.Fatalf("%s: reading first line: %v", model, err)
			}
			addr, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "listening on ")
			if !ok {
				t.Fatalf("%s: first line %q, want \"listening on HOST:PORT\"", model, line)
			}
			checkHello(t, model, "tcp", addr)
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
	}
}

// TestUnixSocket: -addr unix:PATH serves on a Unix domain socket and says so; a
// socket file left by a killed server is replaced; exit removes the file; prefork's
// reuseport mode refuses a Unix socket with a clear message.
func TestUnixSocket(t *testing.T) {
	bin := build(t)
	path := filepath.Join(t.TempDir(), "s.sock")
	startUnix := func(model string) *exec.Cmd {
		t.Helper()
		cmd := exec.Command(bin, "-model", model, "-addr", "unix:"+path)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("%s: reading first line: %v", model, err)
		}
		if want := "listening on unix:" + path + "\n"; line != want {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("%s: first line %q, want %q", model, line, want)
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

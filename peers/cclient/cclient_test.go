package cclient

// These tests build cclient.c with the system C compiler and run it against Go
// servers: one that speaks the wire formats of internal/proto (through its own
// sessions, the oracle), and one that answers a wrong byte.

import (
	"encoding/json"
	"errors"
	"net"
	"os/exec"
	"strings"
	"testing"

	"concbench/internal/cbuild"
	"concbench/internal/proto"
)

// build compiles cclient.c (cbuild: the Makefile's flags plus -Werror).
func build(t *testing.T) string { return cbuild.Build(t, "cclient.c") }

// serve runs a server of protocol name on a loopback port until the test ends:
// each connection fed to a session of internal/proto, its replies written back
// — with the first reply byte changed if corrupt.
func serve(t *testing.T, name string, corrupt bool) string {
	t.Helper()
	p, err := proto.New(name, proto.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s, buf, first := p.NewSession(), make([]byte, 64<<10), true
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					var out proto.Out
					if err := s.Feed(&out, buf[:n]); err != nil {
						return
					}
					if corrupt && first && len(out.Buf) > 0 {
						out.Buf[len(out.Buf)-1] ^= 0x20
						first = false
					}
					if _, err := c.Write(out.Buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

type report struct {
	Proto                  string
	Conns, Size            int
	Rate                   float64
	Requests               int64
	Seconds                float64
	UserUs                 float64 `json:"user_us"`
	SystemUs               float64 `json:"system_us"`
	Voluntary, Involuntary int64
	Errors                 int64
}

func TestCclient(t *testing.T) {
	bin := build(t)
	for _, name := range []string{"echo", "rpc"} {
		t.Run(name, func(t *testing.T) {
			addr := serve(t, name, false)
			out, err := exec.Command(bin, "-addr", addr, "-proto", name, "-c", "8", "-size", "100", "-d", "0.3", "-warmup", "0.1").Output()
			if err != nil {
				t.Fatalf("cclient: %v (%s)", err, stderr(err))
			}
			var r report
			if err := json.Unmarshal(out, &r); err != nil {
				t.Fatalf("output %q: %v", out, err)
			}
			if r.Proto != name || r.Conns != 8 || r.Size != 100 || r.Errors != 0 {
				t.Errorf("report %+v: want %s, 8 connections, 100 bytes, no error", r, name)
			}
			if r.Requests < 100 || r.Seconds < 0.29 || r.Seconds > 1 || r.UserUs+r.SystemUs <= 0 {
				t.Errorf("report %+v: want requests over ~0.3 s and some CPU time", r)
			}
		})
	}
	// -rate: an open loop completes what it was asked for, no more (a closed
	// loop of 8 connections against this server does tens of thousands a
	// second), and not much less.
	t.Run("open loop", func(t *testing.T) {
		addr := serve(t, "echo", false)
		out, err := exec.Command(bin, "-addr", addr, "-c", "8", "-d", "0.5", "-warmup", "0.1", "-rate", "2000").Output()
		if err != nil {
			t.Fatalf("cclient -rate 2000: %v (%s)", err, stderr(err))
		}
		var r report
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("output %q: %v", out, err)
		}
		if rate := float64(r.Requests) / r.Seconds; rate < 1800 || rate > 2100 || r.Rate != 2000 || r.Errors != 0 {
			t.Errorf("report %+v: %.0f requests/s, want 2000 (1800..2100) and no error", r, rate)
		}
	})
	t.Run("wrong reply", func(t *testing.T) {
		addr := serve(t, "echo", true)
		out, err := exec.Command(bin, "-addr", addr, "-c", "2", "-d", "0.2", "-warmup", "0").Output()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(ee.Stderr), "wrong reply") {
			t.Fatalf("against a server that answers a wrong byte: %v (%s), output %q; want exit 1 saying so", err, stderr(err), out)
		}
	})
	t.Run("bad flags", func(t *testing.T) {
		for _, args := range [][]string{
			{"-addr", "127.0.0.1:1", "-proto", "smtp"},
			{"-addr", "localhost"},
			{"-addr", "127.0.0.1:1", "-c", "0"},
			{"-addr", "127.0.0.1:1", "-d", "-1"},
			{"-addr", "127.0.0.1:1", "-size"},
			{"-addr", "127.0.0.1:1", "-rate", "0"},
			{"-addr", "127.0.0.1:1", "-rate", "fast"},
			{"-bogus", "1"},
			{},
		} {
			err := exec.Command(bin, args...).Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Errorf("cclient %v: %v, want exit 2", args, err)
			}
		}
	})
}

func stderr(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return strings.TrimSpace(string(ee.Stderr))
	}
	return ""
}

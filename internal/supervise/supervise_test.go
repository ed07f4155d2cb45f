package supervise

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"concbench/internal/procstat"
	"concbench/internal/result"
)

// start starts `sh -c script` as o says; the process (and its group, if it has
// one) is killed when the test ends.
func start(t *testing.T, script string, o Options) *Process {
	t.Helper()
	p, err := Start(exec.Command("/bin/sh", "-c", script), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Kill()
		KillGroup(p.PID())
	})
	return p
}

// gone reports whether pid has ended: no such process, or a zombie waiting for
// its (new) parent to reap it.
func gone(pid int) bool {
	if unix.Kill(pid, 0) == unix.ESRCH {
		return true
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	s, err := procstat.ParseStat(b)
	return err == nil && (s.State == 'Z' || s.State == 'X')
}

func TestListening(t *testing.T) {
	tests := []struct {
		name    string
		script  string
		timeout time.Duration
		want    string // the address, or what the error says
		wantErr error  // FirstLine's sentinel, if any
	}{
		{"first line", `echo "listening on 127.0.0.1:7"; echo more; sleep 30`, 10 * time.Second, "127.0.0.1:7", nil},
		{"no line end, stdout closed", `printf 'listening on unix:/x.sock'; exec >&-; sleep 30`, 10 * time.Second, "unix:/x.sock", nil},
		{"never prints", `sleep 30`, 300 * time.Millisecond, "did not print its address within 300ms", ErrSilent},
		{"exits early", `echo oops >&2; exit 3`, 10 * time.Second, "exited before listening (exit status 3)", ErrExited},
		{"killed early", `kill -KILL $$`, 10 * time.Second, "exited before listening (signal: killed)", ErrExited},
		{"another first line", `echo hello; sleep 30`, 10 * time.Second, `its first line "hello" is not "listening on HOST:PORT"`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := start(t, tt.script, Options{Group: true})
			begin := time.Now()
			got, err := p.Listening(t.Context(), tt.timeout)
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("Listening = %q, want %q", got, tt.want)
			}
			if took := time.Since(begin); took > tt.timeout+2*time.Second {
				t.Errorf("Listening took %v with a timeout of %v", took, tt.timeout)
			}
			if tt.wantErr != nil {
				if _, err := p.FirstLine(t.Context(), tt.timeout); !errors.Is(err, tt.wantErr) {
					t.Errorf("FirstLine: err = %v, want %v", err, tt.wantErr)
				}
			}
		})
	}
}

func TestListeningCancelled(t *testing.T) {
	p := start(t, `sleep 30`, Options{Group: true})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := p.Listening(ctx, 10*time.Second); !errors.Is(err, context.Canceled) {
		t.Errorf("Listening with a cancelled context: err = %v, want context.Canceled", err)
	}
}

// Output: the tail keeps everything; Options.Output gets stderr and stdout
// after its first line, which the caller reports itself.
func TestOutput(t *testing.T) {
	var fwd Tail
	p := start(t, `echo "listening on 127.0.0.1:7"; echo more; echo oops >&2`, Options{Output: &fwd})
	if _, err := p.Listening(t.Context(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	<-p.Exited()
	p.Stop(time.Second) // it exited: Stop only waits for the end of its output
	for _, tt := range []struct {
		name, got string
		want      []string
		not       string
	}{
		{"tail", p.Output(), []string{"listening on 127.0.0.1:7\n", "more\n", "oops\n"}, ""},
		{"forwarded", fwd.String(), []string{"more\n", "oops\n"}, "listening"},
	} {
		for _, w := range tt.want {
			if !strings.Contains(tt.got, w) {
				t.Errorf("%s %q lacks %q", tt.name, tt.got, w)
			}
		}
		if tt.not != "" && strings.Contains(tt.got, tt.not) {
			t.Errorf("%s %q holds %q", tt.name, tt.got, tt.not)
		}
	}
}

func TestStop(t *testing.T) {
	// Each script says its first line once its traps are set (a SIGTERM before
	// would find none); a line that is a number is the pid of a child it started.
	tests := []struct {
		name   string
		script string
		group  bool
		grace  time.Duration
		want   result.Exit
	}{
		{"clean", `trap "exit 0" TERM; echo ready; while :; do sleep 0.05; done`, true, 10 * time.Second,
			result.Exit{Code: 0, Clean: true}},
		{"unclean status", `trap "exit 3" TERM; echo ready; while :; do sleep 0.05; done`, false, 10 * time.Second,
			result.Exit{Code: 3, Error: "unclean exit after SIGTERM"}},
		{"ignores SIGTERM", `trap "" TERM; echo ready; while :; do sleep 0.05; done`, false, 300 * time.Millisecond,
			result.Exit{Code: -1, Signal: "killed", Error: "still running 300ms after SIGTERM: killed"}},
		// Ignored signals are inherited: the child ignores SIGTERM too.
		{"group ignores SIGTERM", `trap "" TERM; sleep 300 & echo $!; wait`, true, 300 * time.Millisecond,
			result.Exit{Code: -1, Signal: "killed", Error: "still running 300ms after SIGTERM: its process group was killed"}},
		{"leaves a child", `trap "exit 0" TERM; sleep 300 & echo $!; while :; do sleep 0.05; done`, true, 10 * time.Second,
			result.Exit{Code: 0, Error: "processes of its group outlived it and were killed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := start(t, tt.script, Options{Group: tt.group, EarlyExit: "the test's process exited before the test stopped it"})
			line, err := p.FirstLine(t.Context(), 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			begin := time.Now()
			got := p.Stop(tt.grace)
			if *got != tt.want {
				t.Errorf("Stop = %+v, want %+v", *got, tt.want)
			}
			if took := time.Since(begin); took > tt.grace+5*time.Second {
				t.Errorf("Stop took %v with a grace of %v", took, tt.grace)
			}
			if p.Alive() || !gone(p.PID()) {
				t.Errorf("pid %d still running after Stop", p.PID())
			}
			if child, err := strconv.Atoi(line); err == nil && !gone(child) {
				t.Errorf("its child %d still running after Stop", child)
			}
			again := p.Stop(tt.grace)
			if want := "the test's process exited before the test stopped it"; again.Clean || again.Error != want {
				t.Errorf("a second Stop = %+v, want not clean, %q", *again, want)
			}
		})
	}
}

// A group whose leader exited and left a child: KillGroup kills the child and
// says so; a group with nothing left is reported so.
func TestKillGroup(t *testing.T) {
	// The leader exits when its stdin ends, once its first line is read.
	cmd := exec.Command("/bin/sh", "-c", `sleep 300 & echo $!; read x; exit 0`)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p, err := Start(cmd, Options{Group: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Kill() })
	line, err := p.FirstLine(t.Context(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(line)
	if err != nil {
		t.Fatalf("first line %q: want the child's pid", line)
	}
	stdin.Close()
	<-p.Exited()
	if e := p.Exit(); e == nil || e.Code != 0 || e.Clean {
		t.Errorf("Exit = %+v, want status 0, not clean (not stopped)", e)
	}
	tests := []struct {
		name        string
		aliveBefore bool
		wantKilled  bool
	}{
		{"child left", true, true},
		{"nothing left", false, false},
	}
	for _, tt := range tests {
		if got := GroupAlive(p.PID()); got != tt.aliveBefore {
			t.Errorf("%s: GroupAlive = %v, want %v", tt.name, got, tt.aliveBefore)
		}
		if got := KillGroup(p.PID()); got != tt.wantKilled {
			t.Errorf("%s: KillGroup = %v, want %v", tt.name, got, tt.wantKilled)
		}
		if GroupAlive(p.PID()) {
			t.Errorf("%s: GroupAlive after KillGroup = true, want false", tt.name)
		}
	}
	if !gone(child) {
		t.Errorf("the child %d survived KillGroup", child)
	}
}

func TestWaitAccept(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := closed.Addr().String()
	closed.Close()
	tests := []struct {
		name, script, addr string
		want               string // in the error; "" for none
	}{
		{"accepts", `sleep 30`, ln.Addr().String(), ""},
		{"exits", `exit 3`, refused, "exited before accepting connections (exit status 3)"},
		{"refuses", `sleep 30`, refused, "not accepting connections on " + refused + " after 300ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := start(t, tt.script, Options{Group: true})
			err := p.WaitAccept(t.Context(), tt.addr, 300*time.Millisecond)
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("WaitAccept: err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestTail(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		want   string
	}{
		{"short", []string{"a", "bc"}, "abc"},
		{"long", []string{strings.Repeat("x", TailMax), "end"}, strings.Repeat("x", TailMax-3) + "end"},
	}
	for _, tt := range tests {
		var tl Tail
		for _, w := range tt.writes {
			tl.Write([]byte(w))
		}
		if got := tl.String(); got != tt.want {
			t.Errorf("%s: tail of %d bytes, want %d", tt.name, len(got), len(tt.want))
		}
	}
}

func TestStartRefusesOutputs(t *testing.T) {
	cmd := exec.Command("/bin/sh", "-c", "exit 0")
	cmd.Stdout = os.Stdout
	if _, err := Start(cmd, Options{}); err == nil {
		t.Error("Start with Stdout set: no error")
	}
}

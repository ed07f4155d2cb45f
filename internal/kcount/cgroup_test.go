package kcount

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestSnapshotSub(t *testing.T) {
	early := Snapshot{Syscalls: map[string]int64{"read": 10, "write": 5}, SyscallsTotal: 100, CtxSwitches: 7, Voluntary: 4, Involuntary: 3, UserUS: 1000, SystemUS: 500, UsageUS: 1500, Unavailable: []string{"x"}}
	late := Snapshot{Syscalls: map[string]int64{"read": 15, "write": 25}, SyscallsTotal: 140, CtxSwitches: 10, Voluntary: 6, Involuntary: 4, UserUS: 1600, SystemUS: 700, UsageUS: 2300, Unavailable: []string{"x"}}
	got := late.Sub(early)
	want := Snapshot{Syscalls: map[string]int64{"read": 5, "write": 20}, SyscallsTotal: 40, CtxSwitches: 3, Voluntary: 2, Involuntary: 1, UserUS: 600, SystemUS: 200, UsageUS: 800, Unavailable: []string{"x"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if o := got.Other(); o != 15 {
		t.Errorf("Other: got %d, want 40 − 5 − 20 = 15", o)
	}
	got.Syscalls["read"] = 0
	if late.Syscalls["read"] != 15 {
		t.Error("Sub shares its map with the receiver")
	}
}

func TestDefaultSyscallsIsACopy(t *testing.T) {
	a := DefaultSyscalls()
	a[0] = "changed"
	if DefaultSyscalls()[0] == "changed" {
		t.Fatal("DefaultSyscalls returns the package's slice")
	}
	if !slices.Contains(a, "sendfile") || !slices.Contains(a, "epoll_pwait2") {
		t.Fatalf("DefaultSyscalls lacks names: %v", a)
	}
}

func TestNewCgroupLabel(t *testing.T) {
	for _, bad := range []string{"", "a/b", "..x/", "sp ace"} {
		if cg, err := NewCgroup(bad); err == nil {
			cg.Remove()
			t.Errorf("NewCgroup(%q): no error", bad)
		} else if errors.Is(err, ErrUnavailable) {
			t.Errorf("NewCgroup(%q): a bad label is the caller's error, not ErrUnavailable: %v", bad, err)
		}
	}
}

// Two cgroups of one label get two directories.
func TestNewCgroupTwice(t *testing.T) {
	needCgroup(t)
	a, b := newCgroup(t, "same"), newCgroup(t, "same")
	if a.Path() == b.Path() {
		t.Fatalf("both at %s", a.Path())
	}
	if !strings.Contains(filepath.Base(a.Path()), "concbench-"+strconv.Itoa(os.Getpid())+"-same") {
		t.Errorf("name %s: want concbench-PID-LABEL", a.Path())
	}
}

func needCgroup(t *testing.T) {
	t.Helper()
	if _, err := ownCgroupDir(); err != nil {
		t.Skip("no cgroup: ", err)
	}
}

// Remove refuses a cgroup with a live process, naming it, and leaves the cgroup
// usable; once the process has exited it succeeds, and twice is no error.
func TestRemoveOrder(t *testing.T) {
	needCgroup(t)
	cg, err := NewCgroup("remove")
	if err != nil {
		t.Skip("cannot make a cgroup: ", err)
	}
	defer cg.Remove()
	removeWait0 := removeWait
	removeWait = 0 // the live helper will not exit by itself
	defer func() { removeWait = removeWait0 }()
	c := startHelper(t, cg, "spin", "0", "-1")
	pid := c.cmd.Process.Pid
	err = cg.Remove()
	t.Logf("with pid %d inside: %v", pid, err)
	if !errors.Is(err, ErrNotEmpty) || !strings.Contains(err.Error(), strconv.Itoa(pid)) {
		t.Fatalf("Remove with pid %d inside: got %v, want ErrNotEmpty naming the pid", pid, err)
	}
	if _, err := os.Stat(cg.Path()); err != nil || cg.FD() < 0 {
		t.Fatalf("a failed Remove lost the cgroup: %v, fd %d", err, cg.FD())
	}
	c.cmd.Process.Kill()
	c.cmd.Wait()
	c.done = true
	removeWait = removeWait0
	if err := cg.Remove(); err != nil {
		t.Fatalf("after the exit: %v", err)
	}
	if _, err := os.Stat(cg.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("cgroup still there: %v", err)
	}
	if err := cg.Remove(); err != nil || cg.FD() != -1 {
		t.Fatalf("second Remove: %v, fd %d", err, cg.FD())
	}
	if err := cg.Add(os.Getpid()); err == nil {
		t.Fatal("Add after Remove: no error")
	}
}

// A process killed just before Remove is waited for: it leaves the cgroup as it
// exits, a moment after the signal.
func TestRemoveRightAfterKill(t *testing.T) {
	needCgroup(t)
	cg := newCgroup(t, "kill")
	c := startHelper(t, cg, "spin", "0", "-1")
	c.cmd.Process.Kill()
	if err := cg.Remove(); err != nil {
		t.Fatal(err)
	}
	c.cmd.Wait()
	c.done = true
}

// openFDs lists this process's descriptors.
func openFDs(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		out = append(out, e.Name()+" "+l)
	}
	return out
}

// cgroupsLeft lists the cgroups of this process's making still there.
func cgroupsLeft(t *testing.T) []string {
	t.Helper()
	dir, err := ownCgroupDir()
	if err != nil {
		return nil
	}
	m, _ := filepath.Glob(filepath.Join(dir, "concbench-"+strconv.Itoa(os.Getpid())+"-*"))
	return m
}

// On a kernel too old for the counting (a stand-in release: the raw
// sched_switch tracepoint gives prev_state since 5.18), Available and Open say
// so, wrapping ErrUnavailable, and leave no descriptor behind.
func TestUnavailable(t *testing.T) {
	needCgroup(t)
	release0 := release
	release = func() (string, error) { return "5.10.0-stand-in", nil }
	defer func() { release = release0 }()
	fds := openFDs(t)
	cg := newCgroup(t, "unavailable")
	fdsCg := openFDs(t)
	for name, f := range map[string]func() error{
		"Available": Available,
		"Open": func() error {
			k, err := Open(cg, nil, DefaultSyscalls())
			if err == nil {
				k.Close()
			}
			return err
		},
	} {
		err := f()
		t.Logf("%s: not measured: %v", name, err)
		var ue *UnavailableError
		if !errors.Is(err, ErrUnavailable) || !errors.As(err, &ue) || ue.Cause != NoBPF || !strings.Contains(err.Error(), "older than 5.18") {
			t.Errorf("%s: got %v, want an UnavailableError of cause %q saying the kernel is older than 5.18", name, err, NoBPF)
		}
	}
	if got := openFDs(t); !slices.Equal(got, fdsCg) {
		t.Errorf("descriptors left: before %v, after %v", fdsCg, got)
	}
	if err := cg.Remove(); err != nil {
		t.Fatal(err)
	}
	if got := openFDs(t); !slices.Equal(got, fds) {
		t.Errorf("descriptors left after Remove: before %v, after %v", fds, got)
	}
	if left := cgroupsLeft(t); len(left) > 0 {
		t.Errorf("cgroups left: %v", left)
	}
}

// A syscall this architecture has no number for is listed as unavailable, not an
// error, and the others are counted.
func TestUnavailableSyscall(t *testing.T) {
	needCounting(t)
	cg := newCgroup(t, "names")
	k := openCounter(t, cg, nil, []string{"write", "no_such_syscall", "write"})
	s := read(t, k)
	if !slices.Equal(s.Unavailable, []string{"no_such_syscall"}) {
		t.Errorf("Unavailable: got %v, want [no_such_syscall]", s.Unavailable)
	}
	if _, ok := s.Syscalls["write"]; !ok || len(s.Syscalls) != 1 {
		t.Errorf("Syscalls: got %v, want write alone (asked twice, counted once)", s.Syscalls)
	}
}

// Open and Close leave no descriptor; Read after Close is an error.
func TestCloseLeavesNothing(t *testing.T) {
	needCounting(t)
	cg := newCgroup(t, "close")
	fds := openFDs(t)
	k, err := Open(cg, nil, DefaultSyscalls())
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	if got := openFDs(t); !slices.Equal(got, fds) {
		t.Errorf("descriptors left: before %v, after %v", fds, got)
	}
	if _, err := k.Read(); err == nil {
		t.Error("Read after Close: no error")
	}
	if err := k.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// As an unprivileged user, Available says what is refused: BPF, naming root
// and the capabilities that would do.
func TestNoPermission(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a helper as nobody")
	}
	// The helper binary where nobody may run it (t.TempDir's parent is 0700).
	dir, err := os.MkdirTemp("", "kcount-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "helper")
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), helperEnv+"=available")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v: %s", err, out)
	}
	t.Logf("as nobody: not measured: %s", out)
	cause, text, _ := strings.Cut(string(out), ": ")
	if cause != strconv.Itoa(int(NoPermission)) {
		t.Errorf("cause %s, want %d (%v)", cause, NoPermission, NoPermission)
	}
	for _, s := range []string{"BPF", "root", "CAP_BPF"} {
		if !strings.Contains(text, s) {
			t.Errorf("%q does not say %q", text, s)
		}
	}
}

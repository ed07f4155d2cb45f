package kcount

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(helperEnv); role != "" {
		os.Exit(helper(role, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// needCounting skips a test on a machine that cannot count, saying why.
func needCounting(t *testing.T) {
	t.Helper()
	if err := Available(); err != nil {
		t.Skip("not measured: ", err)
	}
}

// newCgroup makes a cgroup removed (and checked gone) when the test ends, after
// the helpers' cleanups have killed and waited for them.
func newCgroup(t *testing.T, label string) *Cgroup {
	t.Helper()
	cg, err := NewCgroup(label)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cg.Remove(); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(cg.Path()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s left behind: %v", cg.Path(), err)
		}
	})
	return cg
}

func openCounter(t *testing.T, cg *Cgroup, cpus []int, syscalls []string) *Counter {
	t.Helper()
	k, err := Open(cg, cpus, syscalls)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

func read(t *testing.T, k *Counter) Snapshot {
	t.Helper()
	s, err := k.Read()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// child is a helper process with a sync channel: it writes a byte to say it is
// at a sync point and waits for one back.
type child struct {
	cmd     *exec.Cmd
	in, out *os.File // our ends
	done    bool
}

// startHelper starts this test binary in a helper role, cloned into cg unless
// cg is nil. It is killed and waited for when the test ends, before the
// cgroup's removal (cleanups run last first).
func startHelper(t *testing.T, cg *Cgroup, role string, args ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), helperEnv+"="+role)
	cmd.Stderr = os.Stderr
	if cg != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cg.FD()}
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdin, cmd.Stdout = inR, outW
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		t.Fatal(err)
	}
	c := &child{cmd: cmd, in: inW, out: outR}
	t.Cleanup(func() {
		if !c.done {
			cmd.Process.Kill()
			cmd.Wait()
		}
		inW.Close()
		outR.Close()
	})
	return c
}

// ready waits for the helper to reach its sync point.
func (c *child) ready(t *testing.T) {
	t.Helper()
	c.out.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.out.Read(make([]byte, 1)); err != nil {
		t.Fatalf("helper %s: no sync: %v", c.cmd.Env[len(c.cmd.Env)-1], err)
	}
}

// release lets the helper go on past its sync point.
func (c *child) release(t *testing.T) {
	t.Helper()
	if _, err := c.in.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
}

// wait waits for a helper's exit, which must be clean.
func (c *child) wait(t *testing.T) *os.ProcessState {
	t.Helper()
	err := c.cmd.Wait()
	c.done = true
	if err != nil {
		t.Fatalf("helper %s: %v", c.cmd.Env[len(c.cmd.Env)-1], err)
	}
	return c.cmd.ProcessState
}

// run starts a helper in cg and waits for it, between two Reads.
func run(t *testing.T, k *Counter, cg *Cgroup, role string, args ...string) Snapshot {
	t.Helper()
	before := read(t, k)
	startHelper(t, cg, role, args...).wait(t)
	return read(t, k).Sub(before)
}

// The count of a helper doing N writes and N reads is its baseline (the same
// helper with N = 0: the runtime's own reads at start, none of its writes) plus N.
// A busy sibling outside the cgroup making the same syscalls adds nothing.
func TestSyscallCounts(t *testing.T) {
	needCounting(t)
	cg := newCgroup(t, "counts")
	k := openCounter(t, cg, nil, DefaultSyscalls())
	base := run(t, k, cg, "rw", "0")
	if !base.SyscallsCounted || len(k.b.progs) != 2 {
		t.Errorf("a counter of syscalls: counted=%v with %d programs, want true and 2", base.SyscallsCounted, len(k.b.progs))
	}
	t.Logf("baseline of a helper: read %d, write %d, total %d", base.Syscalls["read"], base.Syscalls["write"], base.SyscallsTotal)

	sibling := startHelper(t, nil, "rw-forever")
	sibStart := ioCounts(t, sibling.cmd.Process.Pid)
	for _, n := range []int{1, 1000, 100000} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			d := run(t, k, cg, "rw", strconv.Itoa(n))
			for _, name := range []string{"read", "write"} {
				got, want := d.Syscalls[name], base.Syscalls[name]+int64(n)
				t.Logf("%s: got %d, want %d (baseline %d + %d)", name, got, want, base.Syscalls[name], n)
				if got < want || got > want+readSlack {
					t.Errorf("%s: got %d, want %d..%d", name, got, want, want+readSlack)
				}
			}
			if d.SyscallsTotal < d.Syscalls["read"]+d.Syscalls["write"] || d.Other() < 0 {
				t.Errorf("total %d is less than the named counts (other %d)", d.SyscallsTotal, d.Other())
			}
		})
	}
	sib := ioCounts(t, sibling.cmd.Process.Pid)
	t.Logf("meanwhile the sibling outside the cgroup made %d reads and %d writes", sib[0]-sibStart[0], sib[1]-sibStart[1])
	if sib[1]-sibStart[1] < 100000 {
		t.Errorf("the sibling made only %d writes: it did not compete", sib[1]-sibStart[1])
	}
}

// ioCounts is syscr and syscw of /proc/PID/io: the read and write syscalls the
// process made, by the kernel's per-task accounting.
func ioCounts(t *testing.T, pid int) [2]int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		t.Fatal(err)
	}
	var out [2]int64
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "syscr":
			out[0] = n
		case "syscw":
			out[1] = n
		}
	}
	return out
}

// readSlack is how far a helper's reads or writes may exceed baseline + N: the
// runtime's start reads a few files, and may read one more or less from run to
// run; it never writes.
const readSlack = 2

// Syscalls before the window's first Read are not in it: a helper makes many
// writes, syncs, then a few; the window from the sync to its exit holds the few.
// A process made outside and moved in with Add counts from the move on.
func TestWindow(t *testing.T) {
	needCounting(t)
	const before, after = 50000, 1000
	for _, tc := range []struct {
		name string
		add  bool // start outside the cgroup, Add at the sync point
	}{{"cloned in", false}, {"added", true}} {
		t.Run(tc.name, func(t *testing.T) {
			cg := newCgroup(t, "window")
			k := openCounter(t, cg, nil, []string{"write"})
			start := read(t, k)
			into := cg
			if tc.add {
				into = nil
			}
			c := startHelper(t, into, "sync-writes", strconv.Itoa(before), strconv.Itoa(after))
			c.ready(t)
			if tc.add {
				if err := cg.Add(c.cmd.Process.Pid); err != nil {
					t.Fatal(err)
				}
			}
			mid := read(t, k)
			c.release(t)
			c.wait(t)
			end := read(t, k)
			early, window := mid.Sub(start).Syscalls["write"], end.Sub(mid).Syscalls["write"]
			wantEarly := int64(before + 1) // and the sync byte
			if tc.add {
				wantEarly = 0 // made outside the cgroup
			}
			t.Logf("writes before the sync %d (want %d), in the window %d (want %d)", early, wantEarly, window, after)
			if early != wantEarly || window != after {
				t.Errorf("got %d before and %d in the window, want %d and %d", early, window, wantEarly, after)
			}
		})
	}
}

// Threads and processes made during the window, and gone before its end, are
// counted: a helper starts a grandchild doing N writes and T threads doing N
// writes each, which all exit before the end Read.
func TestTree(t *testing.T) {
	needCounting(t)
	const n, threads = 10000, 4
	cg := newCgroup(t, "tree")
	k := openCounter(t, cg, nil, DefaultSyscalls())
	before := read(t, k)
	startHelper(t, cg, "tree", strconv.Itoa(n), strconv.Itoa(threads)).wait(t)
	d := read(t, k).Sub(before)
	want := int64(n * (1 + threads))
	t.Logf("writes %d (want %d), execve %d, clone %d, clone3 %d, total %d", d.Syscalls["write"], want, d.Syscalls["execve"], d.Syscalls["clone"], d.Syscalls["clone3"], d.SyscallsTotal)
	if got := d.Syscalls["write"]; got != want {
		t.Errorf("writes: got %d, want %d", got, want)
	}
	// The helper's own execve and its grandchild's: both after the clone into
	// the cgroup. Each of the T threads is a clone.
	if got := d.Syscalls["execve"]; got != 2 {
		t.Errorf("execve: got %d, want 2", got)
	}
	if got := d.Syscalls["clone"] + d.Syscalls["clone3"]; got < threads+1 {
		t.Errorf("clone+clone3: got %d, want at least %d (the threads and the grandchild)", got, threads+1)
	}
}

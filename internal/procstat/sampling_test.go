package procstat

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestSampleReadFailures: a /proc read that fails because the process is not
// there is ErrGone; one that fails for any other reason (this process out of
// descriptors, a permission) is ErrSampling — never "gone" for a live process —
// and the sampler keeps going past it, counting the missing samples.
func TestSampleReadFailures(t *testing.T) {
	self := os.Getpid()
	tests := []struct {
		name    string
		fail    error // what reading self's stat returns
		want    error
		notWant error
	}{
		{"EMFILE", &os.PathError{Op: "open", Path: "/proc/x/stat", Err: syscall.EMFILE}, ErrSampling, ErrGone},
		{"EACCES", &os.PathError{Op: "open", Path: "/proc/x/stat", Err: syscall.EACCES}, ErrSampling, ErrGone},
		{"ENOENT", &os.PathError{Op: "open", Path: "/proc/x/stat", Err: syscall.ENOENT}, ErrGone, ErrSampling},
		{"ESRCH", &os.PathError{Op: "read", Path: "/proc/x/stat", Err: syscall.ESRCH}, ErrGone, ErrSampling},
	}
	defer func() { readFile = os.ReadFile }()
	for _, tt := range tests {
		readFile = func(string) ([]byte, error) { return nil, tt.fail }
		_, err := Sample("/proc", self)
		if !errors.Is(err, tt.want) || errors.Is(err, tt.notWant) {
			t.Errorf("%s: Sample = %v, want %v and not %v", tt.name, err, tt.want, tt.notWant)
		}
		if tt.want == ErrSampling && !errors.Is(err, syscall.EMFILE) && !errors.Is(err, syscall.EACCES) {
			t.Errorf("%s: Sample = %v, want the cause kept", tt.name, err)
		}
	}

	// The sampler: two failed reads, then good ones; it does not stop.
	fails := 2
	readFile = func(p string) ([]byte, error) {
		if fails > 0 {
			fails--
			return nil, &os.PathError{Op: "open", Path: p, Err: syscall.EMFILE}
		}
		return os.ReadFile(p)
	}
	s := Start("/proc", self, time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := s.Latest(); ok || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	samples, err := s.Stop()
	if len(samples) == 0 {
		t.Fatalf("no sample after the failures: the sampler stopped (err %v)", err)
	}
	if !errors.Is(err, ErrSampling) || errors.Is(err, ErrGone) || !errors.Is(err, syscall.EMFILE) {
		t.Fatalf("Stop error %v, want ErrSampling with the EMFILE, not ErrGone", err)
	}
}

// SampleIn lists the tree from the cgroup's cgroup.procs, not from a scan of
// /proc: a child this process started is in the tree when the list names it,
// and out of it when the list does not; its CPU time is the cgroup's cpu.stat,
// not the processes' ticks; a cgroup without either file is a sampling error.
func TestSampleInCgroup(t *testing.T) {
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { child.Process.Kill(); child.Wait() }()
	self, kid := os.Getpid(), child.Process.Pid
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(self)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := SampleIn("/proc", self, dir); !errors.Is(err, ErrSampling) {
		t.Fatalf("a cgroup without cpu.stat: %v, want ErrSampling", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cpu.stat"), []byte("usage_usec 123456789\nuser_usec 1\nsystem_usec 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		list string
		want []int
	}{
		{fmt.Sprintf("%d\n%d\n", self, kid), []int{self, kid}},
		{fmt.Sprintf("%d\n", self), []int{self}},
	} {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(tc.list), 0o644); err != nil {
			t.Fatal(err)
		}
		tr, err := SampleIn("/proc", self, dir)
		if err != nil {
			t.Fatal(err)
		}
		if got := slices.Sorted(slices.Values(tr.PIDs)); !slices.Equal(got, slices.Sorted(slices.Values(tc.want))) {
			t.Errorf("cgroup.procs %q: tree %v, want %v", tc.list, got, tc.want)
		}
		if want := 123456789 * time.Microsecond; tr.CPU != want {
			t.Errorf("cgroup.procs %q: CPU %v, want cpu.stat's %v", tc.list, tr.CPU, want)
		}
	}
	if _, err := SampleIn("/proc", self, filepath.Join(dir, "gone")); !errors.Is(err, ErrSampling) {
		t.Errorf("a cgroup without cgroup.procs: %v, want ErrSampling", err)
	}
}

package kcount

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Cgroup is a cgroup v2 directory made for one measured tree, below this
// process's own v2 cgroup. The order of use is fixed by the kernel:
//
//	cg, _ := NewCgroup("epoll")             // mkdir
//	k, _ := Open(cg, cpus, DefaultSyscalls()) // counters on it
//	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cg.FD()}
//	... start, Read, run, Read ...
//	k.Close()
//	// every process in it exits (and is waited for) or is moved out
//	cg.Remove()                             // rmdir
//
// A Cgroup is not safe for concurrent Remove.
type Cgroup struct {
	path     string
	fd       int  // O_DIRECTORY fd of path; -1 once removed
	borrowed bool // made by someone else (OpenCgroup): Remove only lets go of it
}

// OpenCgroup opens an existing cgroup v2 directory that someone else made and
// will remove (bench makes one per reference peer it starts, and loadgen counts
// it): Remove only closes it.
func OpenCgroup(dir string) (*Cgroup, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, unavailable(CgroupCreate, os.NewSyscallError("open", err), "cannot open cgroup %s", dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("kcount: %s is not a cgroup v2 directory: %w", dir, err)
	}
	return &Cgroup{path: dir, fd: fd, borrowed: true}, nil
}

// MoveOut moves process pid (all its threads) back to the cgroup's parent, the
// cgroup NewCgroup made it in: what a process that moved itself in with Add does
// before Remove.
func (c *Cgroup) MoveOut(pid int) error {
	f, err := os.OpenFile(filepath.Join(filepath.Dir(c.path), "cgroup.procs"), os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("kcount: move %d out of %s: %w", pid, c.path, err)
	}
	defer f.Close()
	if _, err := f.WriteString(strconv.Itoa(pid)); err != nil {
		return fmt.Errorf("kcount: move %d out of %s: %w", pid, c.path, err)
	}
	return nil
}

// removeWait is how long Remove retries a busy cgroup: a process killed just
// before may still be exiting (it leaves the cgroup in do_exit, not when reaped).
var removeWait = time.Second

// cgroupSeq numbers the names tried after concbench-PID-LABEL exists (a label
// used twice in a process, or a leftover of a dead process with our pid).
var cgroupSeq atomic.Int64

// NewCgroup makes an empty cgroup named concbench-PID-LABEL (with a -N suffix if
// that exists) below this process's cgroup v2. The label is one path element of
// letters, digits, '.', '_' and '-'. Errors that mean the machine cannot do it
// (no cgroup2, mkdir refused) wrap ErrUnavailable; on error nothing is left.
func NewCgroup(label string) (*Cgroup, error) {
	if label == "" || strings.Trim(label, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "" {
		return nil, fmt.Errorf("kcount: cgroup label %q: want letters, digits, '.', '_', '-'", label)
	}
	parent, err := ownCgroupDir()
	if err != nil {
		return nil, err
	}
	base := fmt.Sprintf("concbench-%d-%s", os.Getpid(), label)
	dir := filepath.Join(parent, base)
	err = unix.Mkdir(dir, 0o755)
	for err == unix.EEXIST {
		dir = filepath.Join(parent, fmt.Sprintf("%s-%d", base, cgroupSeq.Add(1)+1))
		err = unix.Mkdir(dir, 0o755)
	}
	if err != nil {
		return nil, unavailable(CgroupCreate, os.NewSyscallError("mkdir", err), "cannot create cgroup %s", dir)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Rmdir(dir) // just made and empty
		return nil, unavailable(CgroupCreate, os.NewSyscallError("open", err), "cannot open cgroup %s", dir)
	}
	return &Cgroup{path: dir, fd: fd}, nil
}

// ownCgroupDir is the directory of this process's cgroup v2.
func ownCgroupDir() (string, error) {
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", unavailable(NoCgroup2, err, "cannot read this process's cgroups")
	}
	cg, err := parseOwnCgroup(self)
	if err != nil {
		return "", unavailable(NoCgroup2, err, "this process is in no cgroup v2 (a v1-only machine?)")
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", unavailable(NoCgroup2, err, "cannot read the mounts")
	}
	dir, err := cgroup2Dir(mi, cg)
	if err != nil {
		return "", unavailable(NoCgroup2, err, "cannot find this process's cgroup v2 directory (where cgroup2 is not mounted, as root: mount -t cgroup2 none DIR)")
	}
	return dir, nil
}

// FD is the cgroup directory's descriptor, for syscall.SysProcAttr.CgroupFD with
// UseCgroupFD: the child is cloned into the cgroup (clone3 CLONE_INTO_CGROUP),
// so its every thread and descendant is born there. -1 after Remove.
func (c *Cgroup) FD() int { return c.fd }

// Path is the cgroup's directory.
func (c *Cgroup) Path() string { return c.path }

// Add moves process pid (all its threads) into the cgroup. Its children made
// before keep their cgroup; those made after are born in this one. Counts taken
// across the move are not exact: take the first Read after Add returns.
func (c *Cgroup) Add(pid int) error {
	if c.fd < 0 {
		return fmt.Errorf("kcount: add %d: cgroup %s already removed", pid, c.path)
	}
	f, err := os.OpenFile(filepath.Join(c.path, "cgroup.procs"), os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("kcount: add %d: %w", pid, err)
	}
	defer f.Close()
	// One pid per write(2): the kernel takes the whole write as one pid.
	if _, err := f.WriteString(strconv.Itoa(pid)); err != nil {
		return fmt.Errorf("kcount: add %d to %s: %w", pid, c.path, err)
	}
	return nil
}

// PIDs lists the processes in the cgroup now.
func (c *Cgroup) PIDs() ([]int, error) {
	b, err := os.ReadFile(filepath.Join(c.path, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for f := range strings.FieldsSeq(string(b)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids, nil
}

// Remove deletes the cgroup. Its processes must have exited or been moved out
// first (Counters on it may stay open: they count nothing more). A process that
// is still exiting is waited for up to removeWait; past that the error wraps
// ErrNotEmpty and names the pids left. Removing twice is not an error.
func (c *Cgroup) Remove() error {
	if c.fd < 0 {
		return nil
	}
	if c.borrowed {
		unix.Close(c.fd)
		c.fd = -1
		return nil
	}
	deadline := time.Now().Add(removeWait)
	for {
		err := unix.Rmdir(c.path)
		if err == nil || err == unix.ENOENT {
			unix.Close(c.fd)
			c.fd = -1
			return nil
		}
		if err != unix.EBUSY {
			return fmt.Errorf("kcount: remove cgroup %s: %w", c.path, os.NewSyscallError("rmdir", err))
		}
		if time.Now().After(deadline) {
			pids, perr := c.PIDs()
			left := fmt.Sprintf("pids %v", pids)
			if perr != nil || len(pids) == 0 {
				left = "no pids listed (child cgroups?)"
			}
			return fmt.Errorf("kcount: remove cgroup %s: %w (%s): let them exit or move them out first: %w",
				c.path, ErrNotEmpty, left, os.NewSyscallError("rmdir", err))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

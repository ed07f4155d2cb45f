package kcount

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"concbench/internal/cpuset"

	"golang.org/x/sys/unix"
)

// helperEnv names the role a re-executed test binary plays; its arguments are
// the command line. The helpers make syscalls whose number the tests know, with
// raw unix calls so that nothing but the helper's loop adds to them.
const helperEnv = "KCOUNT_HELPER"

// helper runs the role and returns the exit code.
func helper(role string, args []string) int {
	// A bad argument is a bug in a test: the role runs with 0 and exits 2.
	var argErr error
	num := func(i int) int {
		if i >= len(args) {
			argErr = fmt.Errorf("%s: argument %d missing", role, i+1)
			return 0
		}
		n, err := strconv.Atoi(args[i])
		if err != nil {
			argErr = fmt.Errorf("%s: %w", role, err)
		}
		return n
	}
	var err error
	switch role {
	case "rw": // N writes of one byte to /dev/null, then N reads from /dev/zero
		err = readsWrites(num(0), num(0))
	case "rw-forever": // writes and reads until killed
		for err == nil {
			err = readsWrites(1000, 1000)
		}
	case "sync-writes": // N writes, a sync with the parent, M writes
		if err = readsWrites(num(0), 0); err == nil {
			if err = syncParent(); err == nil {
				err = readsWrites(num(1), 0)
			}
		}
	case "tree": // a grandchild doing N writes, and T new threads doing N writes each
		err = tree(num(0), num(1))
	case "sleep": // K sleeps of D µs on one thread, then a sync
		runtime.LockOSThread()
		for range num(0) {
			unix.Nanosleep(&unix.Timespec{Nsec: int64(num(1)) * 1000}, nil)
		}
		err = syncParent()
	case "spin": // a busy loop pinned to CPU C for D ms, then a sync (-1: no sync, spin until killed)
		if err = cpuset.PinProcess([]int{num(0)}); err == nil {
			spin(time.Duration(num(1)) * time.Millisecond)
			if num(1) >= 0 {
				err = syncParent()
			}
		}
	case "available": // Available's verdict as "CAUSE: TEXT"
		var ue *UnavailableError
		if e := Available(); errors.As(e, &ue) {
			fmt.Printf("%d: %v", int(ue.Cause), e)
		} else {
			fmt.Printf("0: %v", e)
		}
	case "zero": // N reads of 1 MiB from /dev/zero: kernel time, little else
		var zero int
		if zero, err = unix.Open("/dev/zero", unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
			// A raw read: unix.Read under -race marks the whole buffer
			// written, in user time.
			b := make([]byte, 1<<20)
			for range num(0) {
				if _, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(zero), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b))); e != 0 {
					err = e
					break
				}
			}
		}
	case "getppid": // N getppid, timed; prints ns per call
		n := num(0)
		start := time.Now()
		for range n {
			unix.RawSyscall(unix.SYS_GETPPID, 0, 0, 0)
		}
		fmt.Printf("%.3f\n", float64(time.Since(start).Nanoseconds())/float64(n))
	default:
		err = fmt.Errorf("unknown helper role %q", role)
	}
	if argErr != nil {
		fmt.Fprintln(os.Stderr, argErr)
		return 2
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func readsWrites(writes, reads int) error {
	null, err := unix.Open("/dev/null", unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	zero, err := unix.Open("/dev/zero", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	b := []byte{0}
	for range writes {
		if _, err := unix.Write(null, b); err != nil {
			return err
		}
	}
	for range reads {
		if _, err := unix.Read(zero, b); err != nil {
			return err
		}
	}
	return nil
}

// syncParent writes one byte to stdout and waits for one on stdin: the parent
// reads its counters in between. The write is before the parent's Read; the read
// may enter before or after it.
func syncParent() error {
	if _, err := unix.Write(1, []byte{'!'}); err != nil {
		return err
	}
	_, err := unix.Read(0, make([]byte, 1))
	return err
}

func tree(n, threads int) error {
	cmd := exec.Command(os.Args[0], strconv.Itoa(n))
	cmd.Env = append(os.Environ(), helperEnv+"=rw")
	if err := cmd.Start(); err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make(chan error, threads)
	for range threads {
		wg.Go(func() {
			// Locked and never unlocked: the thread exits with the goroutine,
			// so the runtime makes new threads for the next ones.
			runtime.LockOSThread()
			errs <- readsWrites(n, 0)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return cmd.Wait()
}

func spin(d time.Duration) {
	end := time.Now().Add(d)
	for d < 0 || time.Now().Before(end) {
		for range 1000 {
		}
	}
}

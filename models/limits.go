package models

// The machine's limits the models size themselves by: memory (fork's cap on
// children), threads and pids (thread's cap), and descriptors (the process models
// raise their soft limit so that workers inherit it).

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// memAvailable reads MemAvailable from /proc/meminfo, in bytes.
func memAvailable() (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	return parseMemAvailable(string(b))
}

// parseMemAvailable finds "MemAvailable: N kB" in the text of /proc/meminfo.
func parseMemAvailable(meminfo string) (int64, error) {
	for _, line := range strings.Split(meminfo, "\n") {
		rest, ok := strings.CutPrefix(line, "MemAvailable:")
		if !ok {
			continue
		}
		var kb int64
		if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err != nil {
			return 0, fmt.Errorf("meminfo: %q: %w", line, err)
		}
		return kb << 10, nil
	}
	return 0, errors.New("meminfo: no MemAvailable line")
}

// raiseNofile raises this process's soft RLIMIT_NOFILE to its hard limit. It goes
// through package syscall, which then lets children inherit the raised limit
// (otherwise ForkExec restores the limit the process started with).
func raiseNofile() error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return os.NewSyscallError("getrlimit", err)
	}
	if lim.Cur >= lim.Max {
		return nil
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return os.NewSyscallError("setrlimit", err)
	}
	return nil
}

// threadCeiling is the most threads this process can have as the kernel's limits
// read now, and which limits those were.
func threadCeiling() (int, string) {
	ceiling := int64(math.MaxInt32)
	var from []string
	lower := func(name string, v int64) {
		if v <= 0 {
			return
		}
		from = append(from, name+" "+strconv.FormatInt(v, 10))
		ceiling = min(ceiling, v)
	}
	lower("kernel.pid_max", threadReadLimit("/proc/sys/kernel/pid_max"))
	lower("kernel.threads-max", threadReadLimit("/proc/sys/kernel/threads-max"))
	lower("pids.max", threadReadLimit("/sys/fs/cgroup/pids.max"))      // cgroup v2
	lower("pids.max", threadReadLimit("/sys/fs/cgroup/pids/pids.max")) // cgroup v1
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NPROC, &rl) == nil && rl.Cur != unix.RLIM_INFINITY && rl.Cur < math.MaxInt32 {
		lower("RLIMIT_NPROC", int64(rl.Cur))
	}
	if len(from) == 0 {
		return 10000, "no limit readable; Go's default"
	}
	return int(ceiling), strings.Join(from, ", ")
}

// threadReadLimit reads a number from a /proc or /sys file; 0 if absent, "max" or not a
// number.
func threadReadLimit(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0
	}
	return v
}

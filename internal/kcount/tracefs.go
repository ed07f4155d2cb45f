package kcount

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// tracefsRoots are where tracefs is looked for, in order: its own mount point
// (Linux 4.1+) and the older place under debugfs. A variable so that a test can
// point it at a directory that is not tracefs.
var tracefsRoots = []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}

// mountTracefs is the command the NoTracefs error tells the reader to run.
const mountTracefs = "mount -t tracefs nodev /sys/kernel/tracing"

// findTracefs returns the first tracefs root whose syscall tracepoints can be
// read, or an UnavailableError saying why none can: not mounted, not readable by
// us, or a kernel built without the tracepoints. It only reads.
func findTracefs() (string, error) {
	var denied error
	var bare []string // roots with an events/ directory but no raw_syscalls
	for _, root := range tracefsRoots {
		_, err := tracepointID(root, "raw_syscalls", "sys_enter")
		if err == nil {
			if _, err := os.Stat(filepath.Join(root, "events", "syscalls")); err != nil {
				return "", unavailable(NoTracepoints, err, "%s has raw_syscalls but no syscalls/ events (kernel without CONFIG_FTRACE_SYSCALLS?)", root)
			}
			return root, nil
		}
		switch {
		case errors.Is(err, fs.ErrPermission):
			denied = err
		case errors.Is(err, fs.ErrNotExist):
			if st, serr := os.Stat(filepath.Join(root, "events")); serr == nil && st.IsDir() {
				bare = append(bare, root)
			}
		default:
			return "", unavailable(NoTracefs, err, "reading tracepoint ids under %s", root)
		}
	}
	switch {
	case denied != nil:
		return "", unavailable(NoPermission, denied, "tracefs tracepoint ids are not readable (tracefs is root-only by default; run as root)")
	case len(bare) > 0:
		return "", unavailable(NoTracepoints, nil, "%s has no raw_syscalls/sys_enter tracepoint (kernel without CONFIG_FTRACE_SYSCALLS)", strings.Join(bare, ", "))
	}
	return "", unavailable(NoTracefs, nil, "no tracefs at %s (as root: %s)", strings.Join(tracefsRoots, " or "), mountTracefs)
}

// tracepointID reads the perf config of tracepoint group:name under root. A
// tracepoint the kernel lacks gives an error wrapping fs.ErrNotExist.
func tracepointID(root, group, name string) (uint64, error) {
	p := filepath.Join(root, "events", group, name, "id")
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	id, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", p, err)
	}
	return id, nil
}

// preempted is the prev_state sched_switch reports for a preempted task, read
// from the running kernel's format file; defaultPreempted (TASK_REPORT_MAX of
// 4.14 to 6.x) where that file says nothing we can parse.
func preempted(root string) int64 {
	b, err := os.ReadFile(filepath.Join(root, "events", "sched", "sched_switch", "format"))
	if err != nil {
		return defaultPreempted
	}
	v, err := parsePreempted(b)
	if err != nil {
		return defaultPreempted
	}
	return v
}

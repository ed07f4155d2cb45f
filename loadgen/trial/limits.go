package trial

// System limits a trial's load can hit: the descriptor limit, raised before the
// load, and the ones that can only be warned of.

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"concbench/internal/envinfo"
	"concbench/internal/result"
)

// raiseNoFile lifts RLIMIT_NOFILE to at least need (up to the hard limit, or to
// fs/nr_open when allowed to raise the hard limit too).
func raiseNoFile(need uint64) error {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return os.NewSyscallError("getrlimit", err)
	}
	if rl.Cur >= need {
		return nil
	}
	if rl.Max < need {
		nrOpen := readUint("/proc/sys/fs/nr_open")
		want := unix.Rlimit{Cur: max(need, min(nrOpen, need*2)), Max: max(need, min(nrOpen, need*2))}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &want); err == nil {
			return nil
		}
		rl.Cur = rl.Max
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &rl)
		return fmt.Errorf("descriptor limit %d is below the %d that -c needs, and cannot be raised", rl.Max, need)
	}
	rl.Cur = rl.Max
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return os.NewSyscallError("setrlimit", err)
	}
	return nil
}

// preflight warns about system limits that a workload of w's size would hit.
func preflight(w result.Workload) []string {
	var out []string
	if lo, hi, ok := envinfo.PortRange(); ok {
		ports := hi - lo + 1
		if uint64(w.Conns) > ports {
			out = append(out, fmt.Sprintf("-c %d is above the %d ephemeral ports (net/ipv4/ip_local_port_range %d-%d): connects will fail with connect_addr", w.Conns, ports, lo, hi))
		}
	}
	if s := readUint("/proc/sys/net/core/somaxconn"); s > 0 && uint64(min(w.Conns, w.ConnectInFlight)) > s {
		out = append(out, fmt.Sprintf("net/core/somaxconn is %d, below the %d connects in flight: the accept queue may overflow (SYN retries add 1 s to connect latency)", s, min(w.Conns, w.ConnectInFlight)))
	}
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil && rl.Cur < uint64(w.Conns)+64 {
		out = append(out, fmt.Sprintf("RLIMIT_NOFILE is %d, below -c %d plus a margin: connects will fail with connect_fd", rl.Cur, w.Conns))
	}
	return out
}

func readUint(path string) uint64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return v
}

package trial

// System limits a trial's load can hit: the descriptor limit, raised before the
// load, and the ones that can only be warned of.

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"concbench/internal/envinfo"
	"concbench/internal/proto"
	"concbench/internal/result"
)

// ErrImpossible is wrapped by the error of a trial refused before it started,
// because it cannot succeed here (more connections than descriptors).
var ErrImpossible = errors.New("impossible here")

// ownFDs is how many descriptors loadgen keeps for itself beside one per
// connection: its epoll instances and timers, /proc reads of the server's tree,
// the result's files, and the kernel counters (a few dozen per CPU counted).
func ownFDs(cpus int) uint64 { return 256 + 40*uint64(max(cpus, 1)) }

// raiseNoFile lifts this process's soft RLIMIT_NOFILE to its hard limit (the
// most it may have without privilege), and to need if it may raise the hard
// limit too; it returns the limit it got.
func raiseNoFile(need uint64) (uint64, error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0, os.NewSyscallError("getrlimit", err)
	}
	if rl.Max < need {
		// Privileged (CAP_SYS_RESOURCE), the hard limit may go up to fs.nr_open.
		if nrOpen := readUint("/proc/sys/fs/nr_open"); nrOpen >= need {
			if unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: need, Max: need}) == nil {
				return need, nil
			}
		}
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
			return 0, os.NewSyscallError("setrlimit", err)
		}
	}
	return rl.Cur, nil
}

// checkDescriptors refuses a load that cannot fit the descriptors it may have:
// one a connection (active and idle) and loadgen's own. Connecting anyway would
// only fail, connection after connection, for the length of the run.
func checkDescriptors(w result.Workload, own, limit uint64) error {
	need := uint64(w.Conns) + uint64(w.Idle) + own
	if need <= limit {
		return nil
	}
	conns := fmt.Sprintf("-c %d", w.Conns)
	if w.Idle > 0 {
		conns += fmt.Sprintf(" and -idle %d", w.Idle)
	}
	return fmt.Errorf("%w: %s need %d descriptors (one a connection, and %d for loadgen's own), above the %d that RLIMIT_NOFILE's hard limit allows this process; raise it (as root: ulimit -Hn N, or LimitNOFILE= for a service) or split the connections over several loadgen processes",
		ErrImpossible, conns, need, own, limit)
}

// preflight warns about system limits that a workload of w's size would hit.
func preflight(w result.Workload, loopback bool) []string {
	var out []string
	if lo, hi, ok := envinfo.PortRange(); ok && len(w.Src) == 0 && !loopback {
		ports := hi - lo + 1
		if uint64(w.Conns+w.Idle) > ports {
			out = append(out, fmt.Sprintf("%d connections are above the %d ephemeral ports of one source address (net/ipv4/ip_local_port_range %d-%d): connects will fail with connect_addr; spread them over source addresses with -src", w.Conns+w.Idle, ports, lo, hi))
		}
	}
	if s := readUint("/proc/sys/net/core/somaxconn"); s > 0 && uint64(min(w.Conns, w.ConnectInFlight)) > s && !proto.IsDatagram(w.Proto) {
		out = append(out, fmt.Sprintf("net/core/somaxconn is %d, below the %d connects in flight: the accept queue may overflow (SYN retries add 1 s to connect latency)", s, min(w.Conns, w.ConnectInFlight)))
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

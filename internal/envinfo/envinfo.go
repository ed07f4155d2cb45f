// Package envinfo describes the machine a run happens on, for result.Env: kernel,
// CPU model, Go version, the sysctls that shape network runs, and the git revision
// the binary was built from.
package envinfo

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"concbench/internal/result"
)

// Sysctls are the /proc/sys entries recorded with every run.
var Sysctls = []string{
	"net/core/somaxconn",
	"net/ipv4/ip_local_port_range",
	"net/ipv4/tcp_max_syn_backlog",
	"net/ipv4/tcp_tw_reuse",
	"net/ipv4/tcp_fin_timeout",
	"net/ipv4/tcp_syncookies",
	"net/core/netdev_max_backlog",
	"fs/file-max",
	"fs/nr_open",
	"kernel/pid_max",
	"kernel/threads-max",
}

// Collect describes this machine and this process.
func Collect() result.Env {
	e := result.Env{
		GoVersion:  runtime.Version(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		NumCPU:     runtime.NumCPU(),
		Sysctls:    map[string]string{},
	}
	e.Hostname, _ = os.Hostname()
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		e.Kernel = strings.Join([]string{cstr(u.Sysname[:]), cstr(u.Release[:]), cstr(u.Version[:])}, " ")
		e.Arch = cstr(u.Machine[:])
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		e.CPUModel = CPUModel(b)
	}
	for _, k := range Sysctls {
		if b, err := os.ReadFile(filepath.Join("/proc/sys", k)); err == nil {
			e.Sysctls[k] = strings.Join(strings.Fields(string(b)), " ")
		}
	}
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil {
		e.NoFileLimit = rl.Cur
	}
	e.GitRevision, e.GitModified = Revision()
	return e
}

// Revision is the version control revision this program was built from ("" if
// unknown) and whether its tree had changes not committed.
func Revision() (rev string, modified bool) {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	return rev, modified
}

// CPUModel returns the first "model name" of a /proc/cpuinfo text.
func CPUModel(cpuinfo []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// PortRange is the kernel's ephemeral port range (net.ipv4.ip_local_port_range):
// how many client connections one source address can hold to one destination.
func PortRange() (lo, hi uint64, ok bool) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, false
	}
	lo, err1 := strconv.ParseUint(f[0], 10, 64)
	hi, err2 := strconv.ParseUint(f[1], 10, 64)
	return lo, hi, err1 == nil && err2 == nil && hi >= lo
}

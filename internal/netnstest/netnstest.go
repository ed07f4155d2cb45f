// Package netnstest makes network-namespace hosts running sshd for tests
// (scripts/netns.sh): the agent hosts of multi-host load generation, on one
// machine. A test calls Up, then reaches each host with ssh (Topology.SSHArgs,
// or Topology.SSH) and the hosts reach a server in the test's own namespace at
// Topology.ServerAddr.
//
// Up needs root; without it (or without ip, sshd or ssh, or where a network
// namespace cannot be made) it skips the test, saying why.
//
// # Concurrent topologies
//
// go test runs packages' test binaries in parallel, and a binary may call Up
// from parallel tests, so several topologies may be up at once. Each gets a
// prefix of its own, "cbt" + the process id + a per-process sequence in letters
// (e.g. cbt4242a: namespaces cbt4242ah1.., veths cbt4242av1.., cbt4242asrv), and
// a range of third octets of 198.19.0.0/16 of its own: the server address
// 198.19.N.1 and host i's 198.19.(N+i).0/24. Names alone would not do: two
// topologies with the same /24 on two interfaces of the root namespace would
// route each other's replies.
//
// The ranges are handed out under an exclusive flock of lockPath, from a
// registry directory (regDir) holding one file per topology: its prefix, owner
// (pid and start time), base, host count and state paths. Under the lock Up
// takes the lowest base whose range overlaps neither a registered topology nor
// any 198.19 address already on an interface here (a topology made by hand with
// scripts/netns.sh -net 198.19, say), writes its file, and lets go of the lock
// before building: the file is the reservation. Its cleanup tears the topology
// down and then removes the file.
//
// # Leftovers
//
// A test binary killed mid-test (a timeout, ^C) leaves its topology behind. So,
// under the lock, Up first takes down every registered topology whose owner is
// no longer running (a pid that is gone, or reused: the start time differs),
// and every namespace or interface named like ours (cbt<pid><letters>...) whose
// pid is not running and which is not registered (its registry file lost).
package netnstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"concbench/internal/shquote"
)

// Topology is a set of hosts made by Up.
type Topology struct {
	ServerAddr string // e.g. "198.19.0.1": where a server in this (root) namespace listens for the hosts
	Hosts      []Host
	// SSHArgs are the ssh options a client needs to reach the hosts: this
	// topology's key and known_hosts file (host keys are checked), never asking.
	SSHArgs []string
	Dir     string // scripts/netns.sh's state directory: sshd configs, logs, host keys
}

// Host is one agent host: a network namespace running sshd.
type Host struct {
	Name   string // the namespace, e.g. "cbt4242ah1"
	Addr   string // e.g. "198.19.1.2"
	Target string // e.g. "root@198.19.1.2"
}

const (
	// net16 is the /16 of the benchmarking range the tests use; scripts/netns.sh
	// defaults to 198.18 for people, so the two do not meet.
	net16 = "198.19"
	// MaxHosts bounds Up's k: names stay within IFNAMSIZ (cbt + a 7-digit pid +
	// 2 letters + "v50" is 15 characters) and many topologies fit in one /16.
	MaxHosts = 50

	lockPath = "/tmp/concbench-netnstest.lock"
	regDir   = "/tmp/concbench-netnstest.d"

	// noKnownHosts is a known_hosts path that does not exist: netns.sh down
	// then edits none (an unregistered leftover's file is unknown, and was
	// a temporary one anyway).
	noKnownHosts = "/nonexistent/netnstest/known_hosts"

	scriptTimeout = 60 * time.Second // one netns.sh up or down
	sshTimeout    = 60 * time.Second // one Topology.SSH command
)

// seq numbers the topologies of this process: the letters after the pid.
var seq atomic.Int64

// Up makes k hosts (1 <= k <= MaxHosts) for t and tears them down when t ends
// (t.Cleanup), logging the sshd logs first if t failed. It skips t when it
// cannot run here: not root, no ip, sshd or ssh, or no network namespaces.
func Up(t testing.TB, k int) *Topology {
	t.Helper()
	if k < 1 || k > MaxHosts {
		t.Fatalf("netnstest.Up: %d hosts: want 1 to %d", k, MaxHosts)
	}
	script := skipUnlessAble(t)

	n := seq.Add(1) - 1
	prefix := "cbt" + strconv.Itoa(os.Getpid()) + letters(n)
	if l := len(prefix) + len("v") + len(strconv.Itoa(k)); l > 15 {
		t.Fatalf("netnstest: prefix %s with %d hosts makes %d-character interface names (over IFNAMSIZ)", prefix, k, l)
	}

	tmp := t.TempDir()
	key := filepath.Join(tmp, "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "netnstest", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("netnstest: ssh-keygen -f %s: %v\n%s", key, err, out)
	}
	// The known_hosts file exists from the start, empty: netns.sh adds the keys.
	knownHosts := filepath.Join(tmp, "known_hosts")
	if err := os.WriteFile(knownHosts, nil, 0o600); err != nil {
		t.Fatalf("netnstest: %v", err)
	}

	e := entry{
		Prefix: prefix, PID: os.Getpid(), Start: startTime(os.Getpid()), Hosts: k,
		Dir: filepath.Join(tmp, "netns"), KnownHosts: knownHosts,
	}
	if err := reserve(&e, t.Logf); err != nil {
		t.Fatalf("netnstest: %v", err)
	}
	downArgs := e.args(script, "down")
	t.Cleanup(func() {
		if t.Failed() {
			logSSHDLogs(t, e.Dir)
		}
		if out, err := run(downArgs); err != nil {
			// The registry file stays: once this process has gone, a later Up
			// takes the topology down.
			t.Errorf("netnstest: %s: %v\n%s", strings.Join(downArgs, " "), err, out)
			return
		}
		if err := release(e.Prefix); err != nil {
			t.Errorf("netnstest: %v", err)
		}
	})

	upArgs := e.args(script, "up")
	upArgs = append(upArgs, "-pubkey", key+".pub")
	out, err := run(upArgs)
	if err != nil {
		var ee *exec.ExitError
		// netns.sh exits 2 when it refuses; after the checks above, that is one
		// of these: no CAP_NET_ADMIN, no /run/netns, no veth in the kernel.
		if errors.As(err, &ee) && ee.ExitCode() == 2 && bytes.Contains(out, []byte("netns.sh: cannot create")) {
			t.Skipf("netnstest: cannot make network namespaces or interfaces here: %s", bytes.TrimSpace(out))
		}
		t.Fatalf("netnstest: %s: %v\n%s", strings.Join(upArgs, " "), err, out)
	}

	tp := &Topology{
		ServerAddr: fmt.Sprintf("%s.%d.1", net16, e.Base),
		Dir:        e.Dir,
		SSHArgs: []string{
			"-F", "/dev/null", // not the user's ~/.ssh/config nor /etc/ssh/ssh_config
			"-i", key,
			"-o", "IdentitiesOnly=yes",
			"-o", "UserKnownHostsFile=" + knownHosts,
			"-o", "GlobalKnownHostsFile=/dev/null",
			"-o", "StrictHostKeyChecking=yes", // the keys are known: an unknown one is an error
			"-o", "BatchMode=yes", // no password or passphrase prompts: fail instead
			"-o", "ConnectTimeout=5",
		},
	}
	for i := 1; i <= k; i++ {
		addr := fmt.Sprintf("%s.%d.2", net16, e.Base+i)
		tp.Hosts = append(tp.Hosts, Host{Name: fmt.Sprintf("%sh%d", prefix, i), Addr: addr, Target: "root@" + addr})
	}
	t.Logf("netnstest: hosts %s..%s at %s..%s (%s), server address %s",
		tp.Hosts[0].Name, tp.Hosts[k-1].Name, tp.Hosts[0].Addr, tp.Hosts[k-1].Addr, strings.Join(tp.SSHArgs, " "), tp.ServerAddr)
	return tp
}

// skipUnlessAble skips t unless it runs as root with ip, sshd, ssh and bash,
// and returns the path of scripts/netns.sh (failing t if it cannot be found).
func skipUnlessAble(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("netnstest: needs root (network namespaces, interfaces, sshd on port 22)")
	}
	for _, tool := range []string{"ip", "ssh", "ssh-keygen", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("netnstest: %s not found (apt-get install openssh-server openssh-client iproute2): %v", tool, err)
		}
	}
	if _, err := exec.LookPath("sshd"); err != nil {
		if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
			t.Skip("netnstest: sshd not found (apt-get install openssh-server)")
		}
	}
	script, err := scriptPath()
	if err != nil {
		t.Fatalf("netnstest: %v", err)
	}
	return script
}

// SSH runs cmd on h (`ssh SSHArgs h.Target -- cmd...`) and returns its combined
// output. ssh hands the remote shell one string, the words joined by spaces;
// SSH quotes each word for that shell, so cmd arrives as these exact arguments:
// SSH(h, "bash", "-c", "echo $HOSTNAME; ...") works as exec.Command would.
func (tp *Topology) SSH(h Host, cmd ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), sshTimeout)
	defer cancel()
	args := append(append([]string(nil), tp.SSHArgs...), h.Target, "--")
	for _, w := range cmd {
		args = append(args, shquote.Quote(w))
	}
	out, err := exec.CommandContext(ctx, "ssh", args...).CombinedOutput()
	if err != nil {
		err = fmt.Errorf("ssh %s %s: %w", h.Target, strings.Join(cmd, " "), err)
	}
	return out, err
}

// letters writes n in base 26 with the digits a..z: a, b, .., z, ba, bb, ...
// Letters after the decimal pid keep the two apart in a name.
func letters(n int64) string {
	var b []byte
	for {
		b = append([]byte{byte('a' + n%26)}, b...)
		n /= 26
		if n == 0 {
			return string(b)
		}
	}
}

// scriptPath finds scripts/netns.sh: beside this source file when the test
// binary was built from this tree (the usual case), else in the module root
// above the working directory (go test runs in the package's directory).
func scriptPath() (string, error) {
	var tried []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		p := filepath.Join(filepath.Dir(file), "..", "..", "scripts", "netns.sh")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		tried = append(tried, p)
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding scripts/netns.sh: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, "scripts", "netns.sh")
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
			tried = append(tried, p)
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", fmt.Errorf("scripts/netns.sh not found (tried %s)", strings.Join(tried, ", "))
}

// run runs a netns.sh command line, returning its combined output.
func run(args []string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	// bash explicitly: the script works even where its executable bit was lost.
	cmd := exec.CommandContext(ctx, "bash", args...)
	// Every setting is given by flag, and flags win over the NETNS_* variables;
	// still, none of the caller's reaches the script, should it learn more.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NETNS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	return cmd.CombinedOutput()
}

// logSSHDLogs logs each host's sshd log in dir: why a login failed.
func logSSHDLogs(t testing.TB, dir string) {
	logs, _ := filepath.Glob(filepath.Join(dir, "sshd.*.log"))
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			t.Logf("netnstest: %v", err)
			continue
		}
		t.Logf("netnstest: %s:\n%s", l, b)
	}
}

// ---- the registry ------------------------------------------------------------------

// entry is one registered topology: a file regDir/Prefix of key=value lines.
type entry struct {
	Prefix     string
	PID        int
	Start      uint64 // the owner's start time (/proc/PID/stat field 22): tells a reused pid
	Base       int    // third octet of the server address; host i has Base+i
	Hosts      int
	Dir        string // netns.sh -dir
	KnownHosts string // netns.sh -known-hosts
}

// args is the netns.sh command line for command (up or down) of e.
func (e *entry) args(script, command string) []string {
	return []string{script, command, "-prefix", e.Prefix, "-net", net16, "-base", strconv.Itoa(e.Base),
		"-n", strconv.Itoa(e.Hosts), "-dir", e.Dir, "-known-hosts", e.KnownHosts}
}

func (e *entry) marshal() []byte {
	return fmt.Appendf(nil, "pid=%d\nstart=%d\nbase=%d\nhosts=%d\ndir=%s\nknown_hosts=%s\n",
		e.PID, e.Start, e.Base, e.Hosts, e.Dir, e.KnownHosts)
}

func parseEntry(prefix string, b []byte) (entry, error) {
	e := entry{Prefix: prefix}
	var errs []error
	atoi := func(s string) int {
		n, err := strconv.Atoi(s)
		errs = append(errs, err)
		return n
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "pid":
			e.PID = atoi(v)
		case "start":
			n, err := strconv.ParseUint(v, 10, 64)
			e.Start, errs = n, append(errs, err)
		case "base":
			e.Base = atoi(v)
		case "hosts":
			e.Hosts = atoi(v)
		case "dir":
			e.Dir = v
		case "known_hosts":
			e.KnownHosts = v
		}
	}
	if err := errors.Join(errs...); err != nil {
		return e, fmt.Errorf("registry entry %s: %w", filepath.Join(regDir, prefix), err)
	}
	if e.PID <= 0 || e.Hosts < 1 || e.Hosts > 255 || e.Base < 0 || e.Base+e.Hosts > 255 {
		return e, fmt.Errorf("registry entry %s: pid %d, base %d, hosts %d out of range", filepath.Join(regDir, prefix), e.PID, e.Base, e.Hosts)
	}
	return e, nil
}

// lock takes the registry's exclusive lock; the returned func lets go of it.
// The lock is an flock on an open file: two Ups of one process conflict as
// well, and a killed holder's lock goes with its descriptors.
func lock() (unlock func(), err error) {
	// O_NOFOLLOW: a fixed name in /tmp, opened by root.
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("registry lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("registry lock: flock %s: %w", lockPath, err)
	}
	return func() { f.Close() }, nil // closing the last descriptor unlocks
}

var ourName = regexp.MustCompile(`^cbt([0-9]+)([a-z]+)(?:h[0-9]+|v[0-9]+|srv)$`)

// reserve registers e, setting e.Base, after taking down the leftovers of dead
// processes. logf reports what it cleaned.
func reserve(e *entry, logf func(string, ...any)) error {
	unlock, err := lock()
	if err != nil {
		return err
	}
	defer unlock()
	if err := os.MkdirAll(regDir, 0o700); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	script, err := scriptPath()
	if err != nil {
		return err
	}

	used := make([]bool, 256) // third octets taken
	registered := map[string]bool{}
	files, err := os.ReadDir(regDir)
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	for _, f := range files {
		prefix := f.Name()
		if strings.HasPrefix(prefix, ".") {
			continue // a write cut short before its rename
		}
		b, err := os.ReadFile(filepath.Join(regDir, prefix))
		if err != nil {
			return fmt.Errorf("registry: %w", err)
		}
		o, err := parseEntry(prefix, b)
		if err == nil && !o.alive() {
			args := o.args(script, "down")
			out, err := run(args)
			if err != nil {
				return fmt.Errorf("removing the leftover topology %s of process %d (gone): %s: %v\n%s",
					prefix, o.PID, strings.Join(args, " "), err, out)
			}
			logf("netnstest: removed the leftover topology %s of process %d (gone)", prefix, o.PID)
			if err := os.Remove(filepath.Join(regDir, prefix)); err != nil {
				return fmt.Errorf("registry: %w", err)
			}
			continue
		}
		if err != nil {
			// Unreadable: keep out of its way rather than guess. (Written whole
			// under the lock, an entry is only ever corrupt by hand.)
			logf("netnstest: %v (ignored; remove it if no topology of it remains)", err)
			registered[prefix] = true
			continue
		}
		registered[prefix] = true
		for o2 := o.Base; o2 <= o.Base+o.Hosts; o2++ {
			used[o2] = true
		}
	}

	// Names of ours without a registry entry (an entry lost, say): take down
	// those of processes that are gone. Only names: their addresses are known
	// by reading them below, and their state and known_hosts were temporary.
	orphans, err := orphanPrefixes(registered)
	if err != nil {
		return err
	}
	for _, prefix := range orphans {
		args := []string{script, "down", "-prefix", prefix, "-net", net16, "-known-hosts", noKnownHosts}
		if out, err := run(args); err != nil {
			return fmt.Errorf("removing the leftover topology %s: %s: %v\n%s", prefix, strings.Join(args, " "), err, out)
		}
		logf("netnstest: removed the unregistered leftover topology %s (its process is gone)", prefix)
	}

	// Addresses already on interfaces here: made by hand, or a registered
	// topology still coming up or going down (already counted, no harm).
	out, err := exec.Command("ip", "-4", "-o", "addr", "show").Output()
	if err != nil {
		return fmt.Errorf("ip -4 -o addr show: %w", err)
	}
	for _, f := range strings.Fields(string(out)) {
		if a, ok := strings.CutPrefix(f, net16+"."); ok {
			if third, _, ok := strings.Cut(a, "."); ok {
				if n, err := strconv.Atoi(third); err == nil && n >= 0 && n < 256 {
					used[n] = true
				}
			}
		}
	}

	e.Base = -1
	for b := 0; b+e.Hosts <= 255 && e.Base < 0; b++ {
		free := true
		for o := b; o <= b+e.Hosts; o++ {
			if used[o] {
				free, b = false, o // the next candidate starts after o
				break
			}
		}
		if free {
			e.Base = b
		}
	}
	if e.Base < 0 {
		return fmt.Errorf("no %d free third octets in %s.0.0/16 (see %s and `ip -4 addr`)", e.Hosts+1, net16, regDir)
	}
	return e.write()
}

// write writes e's registry file, whole and renamed into place (a reader
// never sees half an entry). The caller holds the lock.
func (e *entry) write() error {
	tmp := filepath.Join(regDir, "."+e.Prefix+".tmp")
	if err := os.WriteFile(tmp, e.marshal(), 0o600); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(regDir, e.Prefix)); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	return nil
}

// release removes prefix's registry entry, its topology being down.
func release(prefix string) error {
	unlock, err := lock()
	if err != nil {
		return err
	}
	defer unlock()
	if err := os.Remove(filepath.Join(regDir, prefix)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("registry: %w", err)
	}
	return nil
}

// orphanPrefixes lists the prefixes of namespaces and interfaces named like
// ours that are not registered and whose process (the pid in the name) is gone.
func orphanPrefixes(registered map[string]bool) ([]string, error) {
	var names []string
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil, fmt.Errorf("ip netns list: %w", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	out, err = exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		return nil, fmt.Errorf("ip -o link show: %w", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		// "7: cbt4242av1@if2: <BROADCAST,..."
		if f := strings.Fields(line); len(f) > 1 {
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			names = append(names, name)
		}
	}
	set := map[string]bool{}
	for _, name := range names {
		m := ourName.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		prefix := "cbt" + m[1] + m[2]
		pid, err := strconv.Atoi(m[1])
		if err != nil || registered[prefix] || running(pid) {
			continue
		}
		set[prefix] = true
	}
	var prefixes []string
	for p := range set {
		prefixes = append(prefixes, p)
	}
	sort.Strings(prefixes)
	return prefixes, nil
}

// alive reports whether e's owner still runs: its pid is running and started
// when the registered one did (a reused pid did not).
func (e *entry) alive() bool {
	return running(e.PID) && startTime(e.PID) == e.Start
}

// running reports whether pid exists and is not a zombie.
func running(pid int) bool {
	f, ok := statFields(pid)
	return ok && f[0] != "Z" && f[0] != "X"
}

// startTime is pid's start time in clock ticks since boot, 0 if unknown.
func startTime(pid int) uint64 {
	f, ok := statFields(pid)
	if !ok {
		return 0
	}
	n, _ := strconv.ParseUint(f[22-3], 10, 64)
	return n
}

// statFields returns the fields of /proc/PID/stat from field 3 (state) on:
// field n is [n-3]. The command name (field 2) may hold spaces and parentheses,
// so the fields are counted from the last ')'.
func statFields(pid int) ([]string, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 22-3+1 {
		return nil, false
	}
	return f, true
}

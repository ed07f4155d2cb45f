package netnstest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestUpSSH: each host answers ssh with its own address, reaches a server of
// this process at ServerAddr from inside its namespace, and is gone once its
// test has ended.
func TestUpSSH(t *testing.T) {
	t.Parallel()
	var hosts []Host
	// Up in a subtest, so that its cleanup has run when the subtest returns.
	ok := t.Run("up", func(t *testing.T) {
		tp := Up(t, 2)
		hosts = tp.Hosts

		ln, err := net.Listen("tcp", net.JoinHostPort(tp.ServerAddr, "0"))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go serveEcho(ln)
		port := ln.Addr().(*net.TCPAddr).Port

		for _, h := range tp.Hosts {
			out, err := tp.SSH(h, "ip", "-4", "-o", "addr")
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if !strings.Contains(string(out), "eth0    inet "+h.Addr+"/24") {
				t.Errorf("%s: ip -4 -o addr shows no eth0 with %s/24:\n%s", h.Name, h.Addr, out)
			}

			// bash's /dev/tcp: no nc or socat needed on the host. The server
			// answers with the line and the address it came from, which must be
			// the host's own (the connection came from inside its namespace).
			script := fmt.Sprintf(`exec 3<>/dev/tcp/%s/%d && echo "hi %s" >&3 && IFS= read -r -t 5 line <&3 && echo "$line"`,
				tp.ServerAddr, port, h.Name)
			out, err = tp.SSH(h, "bash", "-c", script)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if got, want := strings.TrimSpace(string(out)), "hi "+h.Name+" from "+h.Addr; got != want {
				t.Errorf("%s: round trip to %s:%d: got %q, want %q", h.Name, tp.ServerAddr, port, got, want)
			}
		}
	})
	if !ok {
		return
	}
	if hosts == nil {
		t.Skip("Up skipped")
	}
	prefix := strings.TrimSuffix(hosts[0].Name, "h1")
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		if slices.Contains(strings.Fields(string(out)), h.Name) {
			t.Errorf("namespace %s still there after the test's cleanup:\n%s", h.Name, out)
		}
	}
	out, err = exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, link := range []string{prefix + "srv", prefix + "v1", prefix + "v2"} {
		if strings.Contains(string(out), " "+link+":") || strings.Contains(string(out), " "+link+"@") {
			t.Errorf("interface %s still there after the test's cleanup", link)
		}
	}
	if _, err := os.Stat(filepath.Join(regDir, prefix)); err == nil {
		t.Errorf("registry entry %s still there after the test's cleanup", filepath.Join(regDir, prefix))
	}
}

// serveEcho answers each line on a connection of ln with "LINE from ADDR".
func serveEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s from %s\n", strings.TrimSpace(line), c.RemoteAddr().(*net.TCPAddr).IP)
		}()
	}
}

// TestHostKeyChecking: the client checks the hosts' keys: ssh refuses a host
// whose key is not in the known_hosts file, or is another key.
func TestHostKeyChecking(t *testing.T) {
	t.Parallel()
	tp := Up(t, 1)
	h := tp.Hosts[0]
	for _, a := range tp.SSHArgs {
		if strings.Contains(strings.ToLower(a), "stricthostkeychecking=no") {
			t.Errorf("SSHArgs turn host key checking off: %q", tp.SSHArgs)
		}
	}
	if out, err := tp.SSH(h, "true"); err != nil { // the control: the right key
		t.Fatalf("%v\n%s", err, out)
	}

	dir := t.TempDir()
	other := filepath.Join(dir, "other")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(other + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	keyType, key, _ := strings.Cut(strings.TrimSpace(string(pub)), " ")
	key, _, _ = strings.Cut(key, " ")
	for _, c := range []struct{ name, knownHosts, want string }{
		{"empty known_hosts", "", "No ED25519 host key is known for " + h.Addr},
		{"another key", h.Addr + " " + keyType + " " + key + "\n", "REMOTE HOST IDENTIFICATION HAS CHANGED"},
	} {
		kh := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_"))
		if err := os.WriteFile(kh, []byte(c.knownHosts), 0o600); err != nil {
			t.Fatal(err)
		}
		var args []string
		for _, a := range tp.SSHArgs {
			if strings.HasPrefix(a, "UserKnownHostsFile=") {
				a = "UserKnownHostsFile=" + kh
			}
			args = append(args, a)
		}
		out, err := exec.Command("ssh", append(args, h.Target, "true")...).CombinedOutput()
		if err == nil {
			t.Errorf("%s: ssh %s true succeeded, want host key verification to fail:\n%s", c.name, h.Target, out)
			continue
		}
		if !strings.Contains(string(out), "Host key verification failed") || !strings.Contains(string(out), c.want) {
			t.Errorf("%s: ssh %s true: %v, want %q and %q in:\n%s", c.name, h.Target, err, c.want, "Host key verification failed", out)
		}
	}
}

// TestLeftovers: Up takes down what test processes that are gone left behind:
// a registered topology, and namespaces and interfaces named like ours that
// are not registered. (Not parallel: parallel Ups of this binary would clean
// them up as well, racing the checks.)
func TestLeftovers(t *testing.T) {
	script := skipUnlessAble(t)
	dead := deadPID(t)
	tmp := t.TempDir()
	key := filepath.Join(tmp, "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}

	// A registered leftover: reserved and built as this process, then handed
	// to the dead one, so that no other Up can take it down while it is built.
	reg := entry{Prefix: "cbt" + strconv.Itoa(dead) + "a", PID: os.Getpid(), Start: startTime(os.Getpid()), Hosts: 1,
		Dir: filepath.Join(tmp, "netns"), KnownHosts: filepath.Join(tmp, "known_hosts")}
	if err := reserve(&reg, t.Logf); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // should the test fail before Up removes it
		run(reg.args(script, "down"))
		release(reg.Prefix)
	})
	if out, err := run(append(reg.args(script, "up"), "-pubkey", key+".pub")); err != nil {
		t.Fatalf("netns.sh up: %v\n%s", err, out)
	}
	unlock, err := lock()
	if err != nil {
		t.Fatal(err)
	}
	reg.PID, reg.Start = dead, 1
	err = reg.write()
	unlock()
	if err != nil {
		t.Fatal(err)
	}

	// An unregistered leftover: a namespace and a veth, no addresses. Made
	// under the registry's lock: an Up of another test binary would take it
	// down between the two commands.
	orphan := "cbt" + strconv.Itoa(dead) + "b"
	t.Cleanup(func() { run([]string{script, "down", "-prefix", orphan, "-known-hosts", noKnownHosts}) })
	unlock, err = lock()
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"netns", "add", orphan + "h1"},
		{"link", "add", orphan + "v1", "type", "veth", "peer", "name", "eth0", "netns", orphan + "h1"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			unlock()
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	unlock()

	Up(t, 1)

	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{reg.Prefix + "h1", orphan + "h1"} {
		if slices.Contains(strings.Fields(string(out)), ns) {
			t.Errorf("leftover namespace %s still there after Up:\n%s", ns, out)
		}
	}
	out, err = exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, link := range []string{reg.Prefix + "srv", reg.Prefix + "v1", orphan + "v1"} {
		if strings.Contains(string(out), " "+link+":") || strings.Contains(string(out), " "+link+"@") {
			t.Errorf("leftover interface %s still there after Up", link)
		}
	}
	if _, err := os.Stat(filepath.Join(regDir, reg.Prefix)); err == nil {
		t.Errorf("leftover's registry entry %s still there after Up", filepath.Join(regDir, reg.Prefix))
	}
	if _, err := os.Stat(reg.Dir); err == nil {
		t.Errorf("leftover's state directory %s still there after Up", reg.Dir)
	}
}

// deadPID returns the pid of a process that has ended.
func deadPID(t *testing.T) int {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if running(cmd.Process.Pid) {
		t.Fatalf("pid %d of an ended process is running again", cmd.Process.Pid)
	}
	return cmd.Process.Pid
}

func TestNames(t *testing.T) {
	for n, want := range map[int64]string{0: "a", 1: "b", 25: "z", 26: "ba", 27: "bb", 675: "zz"} {
		if got := letters(n); got != want {
			t.Errorf("letters(%d) = %q, want %q", n, got, want)
		}
	}
	// A name parses back to its prefix and pid, whatever letters follow the pid.
	for name, want := range map[string]string{
		"cbt4242ah1": "cbt4242a", "cbt4242hh12": "cbt4242h", "cbt4242vv3": "cbt4242v",
		"cbt4242ssrv": "cbt4242s", "cbt4242basrv": "cbt4242ba", "cb4242ah1": "", "cbt4242h1": "", "cbt4242ax": "",
	} {
		m := ourName.FindStringSubmatch(name)
		got := ""
		if m != nil {
			got = "cbt" + m[1] + m[2]
		}
		if got != want {
			t.Errorf("%s: prefix %q, want %q", name, got, want)
		}
	}
}

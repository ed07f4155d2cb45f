package kcount

import (
	"os"
	"strings"
	"testing"
)

func TestParseOwnCgroup(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		err            bool
	}{
		{"hybrid", "9:name=systemd:/\n4:memory:/x/y\n0::/\n", "/", false},
		{"unified", "0::/user.slice/user-1000.slice/session-2.scope\n", "/user.slice/user-1000.slice/session-2.scope", false},
		{"v1 only", "4:memory:/\n1:cpu:/\n", "", true},
		{"deleted", "0::/gone (deleted)\n", "", true},
		{"empty", "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseOwnCgroup([]byte(tc.in))
			if (err != nil) != tc.err || got != tc.want {
				t.Fatalf("got %q, %v; want %q, error %v", got, err, tc.want, tc.err)
			}
		})
	}
}

func TestV1Controllers(t *testing.T) {
	got := v1Controllers([]byte("9:name=systemd:/\n3:cpu,cpuacct:/\n2:perf_event:/\n0::/\n"))
	if want := "name=systemd cpu cpuacct perf_event"; strings.Join(got, " ") != want {
		t.Fatalf("got %v, want %s", got, want)
	}
}

const mountinfoHybrid = `22 1 0:21 / /sys rw,nosuid - sysfs sysfs rw
30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw
44 22 0:13 / /sys/kernel/tracing rw,relatime - tracefs nodev rw
`

func TestCgroup2Dir(t *testing.T) {
	for _, tc := range []struct {
		name, mountinfo, cg, want string
		err                       bool
	}{
		{"hybrid root", mountinfoHybrid, "/", "/sys/fs/cgroup/unified", false},
		{"hybrid nested", mountinfoHybrid, "/a/b", "/sys/fs/cgroup/unified/a/b", false},
		{"unified", "25 1 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n", "/user.slice", "/sys/fs/cgroup/user.slice", false},
		// A container's view: the mount's root is /docker/abc, its own cgroup below it.
		{"bind of a subtree", "25 1 0:23 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n", "/docker/abc/inner", "/sys/fs/cgroup/inner", false},
		{"subtree root itself", "25 1 0:23 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n", "/docker/abc", "/sys/fs/cgroup", false},
		{"not holding us", "25 1 0:23 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n", "/docker/abcd", "", true},
		{"escaped space", `25 1 0:23 / /mnt/cg\040two rw - cgroup2 cgroup2 rw` + "\n", "/x", "/mnt/cg two/x", false},
		{"no cgroup2", "31 30 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n", "/", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cgroup2Dir([]byte(tc.mountinfo), tc.cg)
			if (err != nil) != tc.err || got != tc.want {
				t.Fatalf("got %q, %v; want %q, error %v", got, err, tc.want, tc.err)
			}
		})
	}
}

func TestParseCPUStat(t *testing.T) {
	in := "usage_usec 5057080000\nuser_usec 2782376000\nsystem_usec 2274704000\nnice_usec 0\nnr_periods 0\n"
	got, err := parseCPUStat([]byte(in))
	if want := (cpuStat{Usage: 5057080000, User: 2782376000, System: 2274704000}); err != nil || got != want {
		t.Fatalf("got %+v, %v; want %+v", got, err, want)
	}
	for _, bad := range []string{"", "usage_usec 1\nuser_usec 2\n", "usage_usec x\nuser_usec 2\nsystem_usec 3\n"} {
		if _, err := parseCPUStat([]byte(bad)); err == nil {
			t.Errorf("parseCPUStat(%q): no error", bad)
		}
	}
}

// The print fmt of sched_switch on 6.18 (this machine), and shorter forms.
const format618 = `name: sched_switch
ID: 372
format:
	field:long prev_state;	offset:32;	size:8;	signed:1;

print fmt: "prev_comm=%s prev_pid=%d prev_prio=%d prev_state=%s%s ==> next_comm=%s next_pid=%d next_prio=%d", REC->prev_comm, REC->prev_pid, REC->prev_prio, (REC->prev_state & ((((0x00000000 | 0x00000001 | 0x00000002 | 0x00000004 | 0x00000008 | 0x00000010 | 0x00000020 | 0x00000040) + 1) << 1) - 1)) ? __print_flags(REC->prev_state & ((((0x00000000 | 0x00000001 | 0x00000002 | 0x00000004 | 0x00000008 | 0x00000010 | 0x00000020 | 0x00000040) + 1) << 1) - 1), "|", { 0x00000001, "S" }, { 0x00000002, "D" }, { 0x00000004, "T" }, { 0x00000008, "t" }, { 0x00000010, "X" }, { 0x00000020, "Z" }, { 0x00000040, "P" }, { 0x00000080, "I" }) : "R", REC->prev_state & (((0x00000000 | 0x00000001 | 0x00000002 | 0x00000004 | 0x00000008 | 0x00000010 | 0x00000020 | 0x00000040) + 1) << 1) ? "+" : "", REC->next_comm, REC->next_pid, REC->next_prio
`

func TestParsePreempted(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     int64
		err      bool
	}{
		{"6.18", format618, 0x100, false},
		{"decimal", `print fmt: "...", REC->prev_state & 4096 ? "+" : ""`, 4096, false},
		{"older hex", `print fmt: "...", REC->prev_state & (0x0400) ? "+" : ""`, 0x400, false},
		{"no mark", `print fmt: "...", REC->prev_state`, 0, true},
		{"symbolic", `print fmt: "...", REC->prev_state & TASK_REPORT_MAX ? "+" : ""`, 0, true},
		{"unbalanced", `print fmt: "...", REC->prev_state & ((1 << 8) ? "+" : ""`, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parsePreempted([]byte(tc.in))
			if (err != nil) != tc.err || got != tc.want {
				t.Fatalf("got %#x, %v; want %#x, error %v", got, err, tc.want, tc.err)
			}
		})
	}
}

// The running kernel's own format file, where there is one to read.
func TestParsePreemptedHere(t *testing.T) {
	for _, root := range tracefsRoots {
		b, err := os.ReadFile(root + "/events/sched/sched_switch/format")
		if err != nil {
			continue
		}
		v, err := parsePreempted(b)
		if err != nil {
			t.Fatalf("%s: %v", root, err)
		}
		t.Logf("%s: a preempted task reports prev_state %#x", root, v)
		return
	}
	t.Skip("no readable sched_switch format file")
}

func TestEvalConst(t *testing.T) {
	for in, want := range map[string]int64{
		"1":                        1,
		"0x10 | 1":                 0x11,
		"1 + 1 << 2":               8, // + binds tighter than <<
		"(((1 | 2) + 1) << 1) - 1": 7,
		"0x80 << 1 | 1":            0x101,
	} {
		if got, err := evalConst(in); err != nil || got != want {
			t.Errorf("evalConst(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "(", "1 +", "x", "1 << 99", "1 2"} {
		if _, err := evalConst(bad); err == nil {
			t.Errorf("evalConst(%q): no error", bad)
		}
	}
}

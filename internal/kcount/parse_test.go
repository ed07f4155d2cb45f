package kcount

import (
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

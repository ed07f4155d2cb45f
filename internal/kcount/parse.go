package kcount

import (
	"bufio"
	"bytes"
	"fmt"
	"path"
	"strconv"
	"strings"
)

// The pure parsers of this package: each takes the bytes of one kernel file and
// is tested on literal inputs; the reading is elsewhere.

// parseOwnCgroup returns this process's cgroup v2 path from /proc/self/cgroup:
// the "0::/path" line (hierarchy 0, no controllers). A v1-only machine has none.
func parseOwnCgroup(b []byte) (string, error) {
	for line := range strings.SplitSeq(string(b), "\n") {
		p, ok := strings.CutPrefix(line, "0::")
		if !ok {
			continue
		}
		// A cgroup removed under a live process shows as "/x (deleted)"; we
		// cannot create children there.
		if strings.HasSuffix(p, " (deleted)") || !strings.HasPrefix(p, "/") {
			return "", fmt.Errorf("/proc/self/cgroup: unusable v2 path %q", p)
		}
		return p, nil
	}
	return "", fmt.Errorf("/proc/self/cgroup has no cgroup v2 line (0::/path)")
}

// cgroup2Dir finds the directory of cgroup v2 path cg (as /proc/self/cgroup names
// it) from /proc/self/mountinfo. The mount's root field matters inside a cgroup
// namespace or a bind mount: a mount of /a at /m holds /a/b at /m/b. The first
// cgroup2 mount whose root holds cg wins.
func cgroup2Dir(mountinfo []byte, cg string) (string, error) {
	found := false
	for line := range strings.SplitSeq(string(mountinfo), "\n") {
		// id parent maj:min root mountpoint options [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 1 || qf[0] != "cgroup2" {
			continue
		}
		found = true
		root, mnt := unescapeMount(pf[3]), unescapeMount(pf[4])
		rel, ok := within(root, cg)
		if !ok {
			continue
		}
		return path.Join(mnt, rel), nil
	}
	if !found {
		return "", fmt.Errorf("/proc/self/mountinfo has no cgroup2 mount")
	}
	return "", fmt.Errorf("no cgroup2 mount in /proc/self/mountinfo holds this process's cgroup %s", cg)
}

// within reports whether p is root or below it, and p relative to root.
func within(root, p string) (string, bool) {
	if root == "/" {
		return p, true
	}
	if p == root {
		return "/", true
	}
	if rest, ok := strings.CutPrefix(p, root+"/"); ok {
		return "/" + rest, true
	}
	return "", false
}

// unescapeMount undoes mountinfo's octal escapes (\040 space, \011 tab, \012
// newline, \134 backslash).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cpuStat is what a cgroup's cpu.stat says, in microseconds.
type cpuStat struct {
	Usage, User, System int64
}

// parseCPUStat parses cpu.stat ("usage_usec 123\nuser_usec 100\n..."). The three
// fields are there on every cgroup v2 since Linux 4.15, with or without the cpu
// controller; other lines (nr_periods, ...) are ignored.
func parseCPUStat(b []byte) (cpuStat, error) {
	var s cpuStat
	want := map[string]*int64{"usage_usec": &s.Usage, "user_usec": &s.User, "system_usec": &s.System}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		dst := want[k]
		if !ok || dst == nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return s, fmt.Errorf("cpu.stat: %s: %w", k, err)
		}
		*dst = n
		delete(want, k)
	}
	if len(want) > 0 {
		var missing []string
		for k := range want {
			missing = append(missing, k)
		}
		return s, fmt.Errorf("cpu.stat: missing %s", strings.Join(missing, ", "))
	}
	return s, nil
}

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

// v1Controllers lists the controllers /proc/self/cgroup shows bound to v1
// hierarchies ("4:memory:/x" gives memory); used to explain why perf cannot
// count a v2 cgroup when perf_event is one of them.
func v1Controllers(b []byte) []string {
	var out []string
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 || f[0] == "0" {
			continue
		}
		for c := range strings.SplitSeq(f[1], ",") {
			if c != "" {
				out = append(out, c)
			}
		}
	}
	return out
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

// defaultPreempted is TASK_REPORT_MAX on Linux 4.14 to 6.x: the prev_state
// sched_switch reports for a preempted task. Used only when the format file
// cannot be read or parsed.
const defaultPreempted = 0x100

// parsePreempted reads, from sched:sched_switch's format file, the prev_state
// value the kernel reports for a preempted task. The print fmt ends with
// `REC->prev_state & EXPR ? "+" : ""` (the "+" perf prints for a preemption),
// where EXPR is TASK_REPORT_MAX expanded to constants, e.g.
// `(((0x00000000 | 0x00000001 | ... | 0x00000040) + 1) << 1)`.
func parsePreempted(format []byte) (int64, error) {
	f := string(format)
	q := strings.LastIndex(f, `? "+"`)
	if q < 0 {
		return 0, fmt.Errorf(`sched_switch format: no ? "+" in the print fmt`)
	}
	const field = "REC->prev_state &"
	i := strings.LastIndex(f[:q], field)
	if i < 0 {
		return 0, fmt.Errorf("sched_switch format: no %q before the preemption mark", field)
	}
	v, err := evalConst(f[i+len(field) : q])
	if err != nil {
		return 0, fmt.Errorf("sched_switch format: preemption mask: %w", err)
	}
	if v <= 0 {
		return 0, fmt.Errorf("sched_switch format: preemption mask %#x is not positive", v)
	}
	return v, nil
}

// evalConst evaluates an integer constant expression of the kind the kernel
// writes into a print fmt: numbers (decimal or 0x hex), parentheses, |, <<, + and -,
// with C's precedence (+ - above << above |).
func evalConst(s string) (int64, error) {
	p := &constParser{s: s}
	v, err := p.or()
	if err != nil {
		return 0, err
	}
	p.space()
	if p.i != len(p.s) {
		return 0, fmt.Errorf("%q: unexpected %q", s, p.s[p.i:])
	}
	return v, nil
}

type constParser struct {
	s string
	i int
}

func (p *constParser) space() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *constParser) eat(op string) bool {
	p.space()
	if strings.HasPrefix(p.s[p.i:], op) {
		p.i += len(op)
		return true
	}
	return false
}

func (p *constParser) or() (int64, error) {
	v, err := p.shift()
	for err == nil && p.eat("|") {
		var w int64
		w, err = p.shift()
		v |= w
	}
	return v, err
}

func (p *constParser) shift() (int64, error) {
	v, err := p.add()
	for err == nil && p.eat("<<") {
		var w int64
		if w, err = p.add(); err == nil && (w < 0 || w > 62) {
			err = fmt.Errorf("shift by %d", w)
		}
		v <<= w
	}
	return v, err
}

func (p *constParser) add() (int64, error) {
	v, err := p.unary()
	for err == nil {
		var w int64
		switch {
		case p.eat("+"):
			w, err = p.unary()
			v += w
		case p.eat("-"):
			w, err = p.unary()
			v -= w
		default:
			return v, nil
		}
	}
	return v, err
}

func (p *constParser) unary() (int64, error) {
	if p.eat("(") {
		v, err := p.or()
		if err == nil && !p.eat(")") {
			err = fmt.Errorf("%q: missing ) at %d", p.s, p.i)
		}
		return v, err
	}
	p.space()
	j := p.i
	for j < len(p.s) && (p.s[j] >= '0' && p.s[j] <= '9' || p.s[j] >= 'a' && p.s[j] <= 'f' || p.s[j] >= 'A' && p.s[j] <= 'F' || p.s[j] == 'x' || p.s[j] == 'X') {
		j++
	}
	if j == p.i {
		return 0, fmt.Errorf("%q: want a number at %d", p.s, p.i)
	}
	v, err := strconv.ParseInt(p.s[p.i:j], 0, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", p.s, err)
	}
	p.i = j
	return v, nil
}

// Package hostnoise measures the host's noise on given CPUs over a trial's
// window: steal time (a VM's vCPU not running), time spent busy, and the
// interrupts and softirqs delivered. A trial reads a Snapshot at the start and
// at the end of its window and takes the Delta on the CPUs its server and
// client are pinned to; foreign work is then Busy less the ticks that the
// trial's own processes spent there (procstat measures those). Parsing is pure
// and separate from the reading.
//
// Caveats that come from the kernel, not from this package:
//   - /proc/stat times are clock ticks of USER_HZ (100 a second), but with
//     tick-based accounting (CONFIG_TICK_CPU_ACCOUNTING) busy time is a sample
//     taken at each timer tick (CONFIG_HZ a second): over a one-second window
//     it is good to a few ticks.
//   - Steal is 0 wherever the hypervisor does not report it; there, time the
//     vCPU was not running is charged to whatever it was doing (or lost, on a
//     busy CPU with tick-based accounting: Ticks then falls short of the
//     window's length).
//   - Softirq counts and time include the trial's own work: a loopback
//     connection's receive path runs as NET_RX on the sender's CPU, and without
//     CONFIG_IRQ_TIME_ACCOUNTING its time may be charged to the task or to the
//     softirq column depending on where a tick lands.
package hostnoise

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// CPUTimes is one CPU's line of /proc/stat, in clock ticks (USER_HZ, 100/s).
// guest and guest_nice are left out: the kernel already counts them in User
// and Nice.
type CPUTimes struct{ User, Nice, System, Idle, IOWait, IRQ, SoftIRQ, Steal uint64 }

// Busy is the time the CPU ran something: user+nice+system+irq+softirq (not
// idle, iowait or steal).
func (t CPUTimes) Busy() uint64 { return t.User + t.Nice + t.System + t.IRQ + t.SoftIRQ }

// Snapshot is the host's counters at one instant. /proc/stat and
// /proc/interrupts list the online CPUs; /proc/softirqs lists every possible
// one, so SoftIRQ may hold CPUs that the others do not.
type Snapshot struct {
	CPU map[int]CPUTimes // by CPU number, from /proc/stat "cpuN" lines
	// IRQ is interrupts by CPU, summed over every /proc/interrupts line that
	// has per-CPU columns (device interrupts and NMI, LOC, RES, CAL...).
	IRQ map[int]uint64
	// SoftIRQ is softirqs by CPU, summed over every /proc/softirqs line;
	// SoftIRQByKind is the same by line: "TIMER", "NET_RX", "SCHED"... to CPU.
	SoftIRQ       map[int]uint64
	SoftIRQByKind map[string]map[int]uint64
}

// Read reads the three files from procfs (normally "/proc"), one after the
// other.
func Read(procfs string) (Snapshot, error) {
	var s Snapshot
	read := func(name string, parse func(file string, b []byte) error) error {
		file := filepath.Join(procfs, name)
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("hostnoise: %w", err)
		}
		return parse(file, b)
	}
	err := read("stat", func(file string, b []byte) (err error) {
		s.CPU, err = parseStat(file, b)
		return err
	})
	if err == nil {
		err = read("interrupts", func(file string, b []byte) (err error) {
			s.IRQ, err = parseInterrupts(file, b)
			return err
		})
	}
	if err == nil {
		err = read("softirqs", func(file string, b []byte) (err error) {
			s.SoftIRQ, s.SoftIRQByKind, err = parseSoftirqs(file, b)
			return err
		})
	}
	if err != nil {
		return Snapshot{}, err
	}
	return s, nil
}

// ParseStat parses /proc/stat's per-CPU lines, "cpuN user nice system idle
// iowait irq softirq steal guest guest_nice", by CPU number. Older kernels
// write fewer columns: missing trailing ones are 0, but the first four are
// required. The aggregate "cpu" line and the other lines are skipped.
func ParseStat(b []byte) (map[int]CPUTimes, error) { return parseStat("/proc/stat", b) }

func parseStat(file string, b []byte) (map[int]CPUTimes, error) {
	cpus := map[int]CPUTimes{}
	for _, l := range lines(b) {
		n, f := l.n, strings.Fields(l.text)
		if len(f) == 0 {
			continue
		}
		num, ok := strings.CutPrefix(f[0], "cpu")
		if !ok || num == "" || num[0] < '0' || num[0] > '9' {
			continue // the aggregate "cpu" line, intr, ctxt, btime...
		}
		cpu, err := strconv.Atoi(num)
		if err != nil {
			return nil, lineErr(file, n, "bad CPU %q", f[0])
		}
		if _, dup := cpus[cpu]; dup {
			return nil, lineErr(file, n, "CPU %d again", cpu)
		}
		if len(f) < 1+4 {
			return nil, lineErr(file, n, "%d times, want at least 4", len(f)-1)
		}
		var v [8]uint64
		for i, s := range f[1:] {
			x, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return nil, lineErr(file, n, "column %d: %q is not a count", i+2, s)
			}
			if i < len(v) {
				v[i] = x
			}
		}
		cpus[cpu] = CPUTimes{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]}
	}
	if len(cpus) == 0 {
		return nil, fmt.Errorf("hostnoise: %s: no cpuN lines", file)
	}
	return cpus, nil
}

// ParseInterrupts parses /proc/interrupts into interrupts by CPU, summed over
// its lines. The header names the CPU columns ("CPU0 CPU1 CPU3": offline CPUs
// are left out). A line is a label ("24:", "NMI:"), up to one count per
// column, then a description, which may hold numbers ("IO-APIC 2-edge
// timer"): the counts are the leading numbers, at most as many as there are
// columns, credited to the columns in order. ERR and MIS (and arm's Err) are
// machine-wide single counts and are skipped.
func ParseInterrupts(b []byte) (map[int]uint64, error) { return parseInterrupts("/proc/interrupts", b) }

func parseInterrupts(file string, b []byte) (map[int]uint64, error) {
	cols, sums, rest, err := header(file, b)
	if err != nil {
		return nil, err
	}
	for _, l := range rest {
		n, f := l.n, strings.Fields(l.text)
		if len(f) == 0 {
			continue
		}
		label, ok := strings.CutSuffix(f[0], ":")
		if !ok || label == "" {
			return nil, lineErr(file, n, "%q is not a label", f[0])
		}
		if strings.EqualFold(label, "ERR") || strings.EqualFold(label, "MIS") {
			continue
		}
		k := 0
		for ; k < len(cols) && 1+k < len(f); k++ {
			x, err := strconv.ParseUint(f[1+k], 10, 64)
			if err != nil {
				break // the description
			}
			sums[cols[k]] += x
		}
		if k == 0 {
			return nil, lineErr(file, n, "%s: no counts", label)
		}
	}
	return sums, nil
}

// ParseSoftirqs parses /proc/softirqs: a header of CPU columns (every
// possible CPU), then a line per kind, "NET_RX:" and one count per column. It
// returns softirqs by CPU summed over the kinds, and by kind.
func ParseSoftirqs(b []byte) (total map[int]uint64, byKind map[string]map[int]uint64, err error) {
	return parseSoftirqs("/proc/softirqs", b)
}

func parseSoftirqs(file string, b []byte) (map[int]uint64, map[string]map[int]uint64, error) {
	cols, total, rest, err := header(file, b)
	if err != nil {
		return nil, nil, err
	}
	byKind := map[string]map[int]uint64{}
	for _, l := range rest {
		n, f := l.n, strings.Fields(l.text)
		if len(f) == 0 {
			continue
		}
		kind, ok := strings.CutSuffix(f[0], ":")
		if !ok || kind == "" {
			return nil, nil, lineErr(file, n, "%q is not a label", f[0])
		}
		if _, dup := byKind[kind]; dup {
			return nil, nil, lineErr(file, n, "%s again", kind)
		}
		if len(f)-1 != len(cols) {
			return nil, nil, lineErr(file, n, "%s: %d counts for %d CPU columns", kind, len(f)-1, len(cols))
		}
		m := make(map[int]uint64, len(cols))
		for i, s := range f[1:] {
			x, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return nil, nil, lineErr(file, n, "%s: %q is not a count", kind, s)
			}
			m[cols[i]] = x
			total[cols[i]] += x
		}
		byKind[kind] = m
	}
	if len(byKind) == 0 {
		return nil, nil, fmt.Errorf("hostnoise: %s: no softirq lines", file)
	}
	return total, byKind, nil
}

// header parses the first line of /proc/interrupts or /proc/softirqs, "CPU0
// CPU1 ...": it returns the CPU of each column, a map with a zero for each,
// and the other lines.
func header(file string, b []byte) (cols []int, zero map[int]uint64, rest []line, err error) {
	all := lines(b)
	zero = map[int]uint64{}
	for _, s := range strings.Fields(all[0].text) {
		num, ok := strings.CutPrefix(s, "CPU")
		cpu, err := strconv.Atoi(num)
		if !ok || err != nil || cpu < 0 {
			return nil, nil, nil, lineErr(file, 1, "header: %q is not a CPU column", s)
		}
		if _, dup := zero[cpu]; dup {
			return nil, nil, nil, lineErr(file, 1, "header: CPU%d again", cpu)
		}
		cols = append(cols, cpu)
		zero[cpu] = 0
	}
	if len(cols) == 0 {
		return nil, nil, nil, lineErr(file, 1, "header: no CPU columns")
	}
	return cols, zero, all[1:], nil
}

// line is a line of a file and its number, from 1.
type line struct {
	n    int
	text string
}

// lines splits b into lines; there is always at least one.
func lines(b []byte) []line {
	var out []line
	for i, l := range strings.Split(string(b), "\n") {
		out = append(out, line{i + 1, l})
	}
	return out
}

func lineErr(file string, n int, format string, args ...any) error {
	return fmt.Errorf("hostnoise: %s line %d: %s", file, n, fmt.Sprintf(format, args...))
}

// CPUNoise is what one CPU did over a window.
type CPUNoise struct {
	CPU int
	// Ticks is all the ticks that elapsed on the CPU, Busy+Idle+Steal (the
	// sum of every /proc/stat column's difference): about 100 a second.
	Ticks uint64
	// Busy, Idle and Steal are the differences of CPUTimes.Busy, of
	// idle+iowait (iowait is idle time with a task waiting for I/O; the kernel
	// moves time between the two, so either alone may go backwards) and of
	// steal; in ticks.
	Busy, Idle, Steal uint64
	IRQ, SoftIRQ      uint64            // differences, counts
	SoftIRQByKind     map[string]uint64 // differences by kind, if both snapshots have them
}

// Delta returns the per-CPU differences from a to b for the given CPUs (all
// CPUs present in both when cpus is nil), sorted by CPU. It errors if a CPU is
// missing from either snapshot or a counter went backwards.
//
// The kernel's interrupt and softirq counts are 32-bit and wrap: their
// differences are taken modulo 2^32, which is exact while a CPU gets fewer
// than 2^31 of them between the snapshots; a larger difference is a counter
// that went backwards (a device freed its interrupt line, or the snapshots
// are swapped).
func Delta(a, b Snapshot, cpus []int) ([]CPUNoise, error) {
	if cpus == nil {
		for c := range a.CPU {
			if _, ok := b.CPU[c]; ok {
				cpus = append(cpus, c)
			}
		}
	} else {
		cpus = slices.Clone(cpus)
	}
	slices.Sort(cpus)
	cpus = slices.Compact(cpus)
	out := make([]CPUNoise, 0, len(cpus))
	for _, c := range cpus {
		n, err := delta(a, b, c)
		if err != nil {
			return nil, fmt.Errorf("hostnoise: CPU %d: %w", c, err)
		}
		out = append(out, n)
	}
	return out, nil
}

func delta(a, b Snapshot, c int) (CPUNoise, error) {
	n := CPUNoise{CPU: c}
	for _, s := range []struct {
		which string
		snap  Snapshot
	}{{"first", a}, {"second", b}} {
		_, inStat := s.snap.CPU[c]
		_, inIRQ := s.snap.IRQ[c]
		_, inSoft := s.snap.SoftIRQ[c]
		for _, m := range []struct {
			in   bool
			file string
		}{{inStat, "stat"}, {inIRQ, "interrupts"}, {inSoft, "softirqs"}} {
			if !m.in {
				return n, fmt.Errorf("not in the %s snapshot's %s", s.which, m.file)
			}
		}
	}
	x, y := a.CPU[c], b.CPU[c]
	var back []string
	sub := func(name string, x, y uint64) uint64 {
		if y < x {
			back = append(back, fmt.Sprintf("%s %d to %d", name, x, y))
			return 0
		}
		return y - x
	}
	sub32 := func(name string, x, y uint64) uint64 {
		d := uint32(y - x)
		if d >= 1<<31 {
			back = append(back, fmt.Sprintf("%s %d to %d", name, x, y))
			return 0
		}
		return uint64(d)
	}
	n.Busy = sub("user", x.User, y.User) + sub("nice", x.Nice, y.Nice) +
		sub("system", x.System, y.System) + sub("irq", x.IRQ, y.IRQ) +
		sub("softirq", x.SoftIRQ, y.SoftIRQ)
	n.Idle = sub("idle+iowait", x.Idle+x.IOWait, y.Idle+y.IOWait)
	n.Steal = sub("steal", x.Steal, y.Steal)
	n.Ticks = n.Busy + n.Idle + n.Steal
	n.IRQ = sub32("interrupts", a.IRQ[c], b.IRQ[c])
	n.SoftIRQ = sub32("softirqs", a.SoftIRQ[c], b.SoftIRQ[c])
	for _, kind := range slices.Sorted(maps.Keys(a.SoftIRQByKind)) {
		av, ok := a.SoftIRQByKind[kind][c]
		bv, ok2 := b.SoftIRQByKind[kind][c]
		if !ok || !ok2 {
			continue
		}
		if n.SoftIRQByKind == nil {
			n.SoftIRQByKind = map[string]uint64{}
		}
		n.SoftIRQByKind[kind] = sub32(kind, av, bv)
	}
	if back != nil {
		return n, fmt.Errorf("went backwards: %s", strings.Join(back, ", "))
	}
	return n, nil
}

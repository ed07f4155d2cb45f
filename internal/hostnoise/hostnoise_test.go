package hostnoise

import (
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const stat2 = `cpu  300 20 200 5000 30 0 40 7 5 0
cpu0 100 10 50 2500 10 0 20 3 5 0
cpu1 200 10 150 2500 20 0 20 4 0 0
intr 12345 0 1 2 3
ctxt 999
btime 1700000000
processes 100
procs_running 2
procs_blocked 0
softirq 500 1 2 3
`

// CPU 2 is offline: /proc/stat leaves it out.
const stat4 = `cpu  1000 0 600 90000 0 0 30 0 0 0
cpu0 400 0 200 30000 0 0 10 0 0 0
cpu1 300 0 200 30000 0 0 10 0 0 0
cpu3 300 0 200 30000 0 0 10 0 0 0
intr 1 0
ctxt 5
`

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     map[int]CPUTimes
	}{
		{"2 CPUs", stat2, map[int]CPUTimes{
			0: {User: 100, Nice: 10, System: 50, Idle: 2500, IOWait: 10, SoftIRQ: 20, Steal: 3},
			1: {User: 200, Nice: 10, System: 150, Idle: 2500, IOWait: 20, SoftIRQ: 20, Steal: 4},
		}},
		{"CPU 2 offline", stat4, map[int]CPUTimes{
			0: {User: 400, System: 200, Idle: 30000, SoftIRQ: 10},
			1: {User: 300, System: 200, Idle: 30000, SoftIRQ: 10},
			3: {User: 300, System: 200, Idle: 30000, SoftIRQ: 10},
		}},
		{"old kernel, 4 and 7 columns", "cpu 2 4 6 8\ncpu0 1 2 3 4\ncpu1 1 2 3 4 5 6 7\n", map[int]CPUTimes{
			0: {User: 1, Nice: 2, System: 3, Idle: 4},
			1: {User: 1, Nice: 2, System: 3, Idle: 4, IOWait: 5, IRQ: 6, SoftIRQ: 7},
		}},
	} {
		got, err := ParseStat([]byte(tc.in))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !maps.Equal(got, tc.want) {
			t.Errorf("%s: got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
	if got := (CPUTimes{1, 2, 4, 1000, 1000, 8, 16, 1000}).Busy(); got != 31 {
		t.Errorf("Busy = %d, want 31", got)
	}
}

func TestParseStatErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "no cpuN lines"},
		{"garbage", "\x00\xff garbage\n\n", "no cpuN lines"},
		{"aggregate only", "cpu  1 2 3 4\n", "no cpuN lines"},
		{"non-number", "cpu  1 2 3 4\ncpu0 1 2 x 4\n", "/proc/stat line 2: column 4"},
		{"negative", "cpu0 -1 2 3 4\n", "/proc/stat line 1:"},
		{"too few columns", "cpu  1 2 3\ncpu0 1 2 3\n", "/proc/stat line 2: 3 times"},
		{"bad CPU", "cpu0x 1 2 3 4\n", "/proc/stat line 1: bad CPU"},
		{"CPU twice", "cpu0 1 2 3 4\ncpu0 1 2 3 4\n", "/proc/stat line 2: CPU 0 again"},
	} {
		_, err := ParseStat([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "hostnoise: /proc/stat") {
			t.Errorf("%s: err = %v, want one saying %q", tc.name, err, tc.want)
		}
	}
}

// A header with a gap (CPU 2 offline), ERR and MIS lines with a single count,
// descriptions holding numbers, and a line (9) whose description starts with one.
const interrupts3 = `            CPU0       CPU1       CPU3       
   0:         45          0          0   IO-APIC   2-edge      timer
   1:          0          9          0   IO-APIC   1-edge      i8042
   8:          0          0          1   IO-APIC   8-edge      rtc0
   9:          1          2          3  9  fasteoi   acpi
  24:       1000       2000       3000   PCI-MSI 512000-edge      ahci[0000:00:1f.2]
NMI:          1          2          3   Non-maskable interrupts
LOC:     100000     200000     300000   Local timer interrupts
SPU:          0          0          0   Spurious interrupts
RES:        500        600        700   Rescheduling interrupts
CAL:         10         20         30   Function call interrupts
ERR:          5
MIS:          7
PIN:          0          0          0   Posted-interrupt notification event
`

func TestParseInterrupts(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     map[int]uint64
	}{
		{"gap in CPUs", interrupts3, map[int]uint64{
			0: 45 + 1 + 1000 + 1 + 100000 + 500 + 10,
			1: 9 + 2 + 2000 + 2 + 200000 + 600 + 20,
			3: 1 + 3 + 3000 + 3 + 300000 + 700 + 30,
		}},
		{"one CPU, ERR skipped", "           CPU0\n  0:  7  IO-APIC 2-edge timer\nERR:  3\nMIS:  4\n", map[int]uint64{0: 7}},
		{"arm Err", "           CPU0       CPU1\n 11:  5  6  GICv3  27 Level  arch_timer\nIPI0:  1  2  Rescheduling interrupts\nErr:  9\n", map[int]uint64{0: 6, 1: 8}},
		{"short line: first columns", "     CPU0  CPU1  CPU3\n 30:  5  7  PCI-MSI 1-edge  eth0\n", map[int]uint64{0: 5, 1: 7, 3: 0}},
		{"no lines", "     CPU0  CPU1\n", map[int]uint64{0: 0, 1: 0}},
	} {
		got, err := ParseInterrupts([]byte(tc.in))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !maps.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestParseInterruptsErrors(t *testing.T) {
	const h = "           CPU0       CPU1\n"
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "line 1: header: no CPU columns"},
		{"garbage", "\x00\xff garbage\n", "line 1: header: \"\\x00\\xff\" is not a CPU column"},
		{"header twice the CPU", "  CPU0  CPU0\n", "line 1: header: CPU0 again"},
		{"header negative", "  CPU-1\n", "line 1: header"},
		{"no counts", h + "  0:  x  y  timer\n", "line 2: 0: no counts"},
		{"no label", h + "  0  1  2  timer\n", "line 2: \"0\" is not a label"},
		{"empty label", h + "  :  1  2\n", "line 2: \":\" is not a label"},
	} {
		_, err := ParseInterrupts([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "hostnoise: /proc/interrupts") {
			t.Errorf("%s: err = %v, want one saying %q", tc.name, err, tc.want)
		}
	}
}

// Every possible CPU, including offline ones.
const softirqs4 = `                    CPU0       CPU1       CPU2       CPU3       
          HI:          1          0          0          0
       TIMER:        100        200        300        400
      NET_TX:          2          0          0          1
      NET_RX:       1000       2000          0       3000
       BLOCK:         10          0          0          0
    IRQ_POLL:          0          0          0          0
     TASKLET:          5          0          0          0
       SCHED:         50         60         70         80
     HRTIMER:          0          1          0          0
         RCU:         30         40         50         60
`

func TestParseSoftirqs(t *testing.T) {
	total, byKind, err := ParseSoftirqs([]byte(softirqs4))
	if err != nil {
		t.Fatal(err)
	}
	if want := map[int]uint64{0: 1198, 1: 2301, 2: 420, 3: 3541}; !maps.Equal(total, want) {
		t.Errorf("total %v, want %v", total, want)
	}
	if len(byKind) != 10 {
		t.Errorf("%d kinds, want 10", len(byKind))
	}
	if want := map[int]uint64{0: 1000, 1: 2000, 2: 0, 3: 3000}; !maps.Equal(byKind["NET_RX"], want) {
		t.Errorf("NET_RX %v, want %v", byKind["NET_RX"], want)
	}
}

func TestParseSoftirqsErrors(t *testing.T) {
	const h = "          CPU0       CPU1\n"
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "line 1: header: no CPU columns"},
		{"garbage", "garbage\n", "line 1: header: \"garbage\" is not a CPU column"},
		{"header only", h, "no softirq lines"},
		{"non-number", h + "  HI:  0  0\nTIMER:  1  x\n", "line 3: TIMER: \"x\" is not a count"},
		{"too few columns", h + "  HI:  0\n", "line 2: HI: 1 counts for 2 CPU columns"},
		{"too many columns", h + "  HI:  0  1  2\n", "line 2: HI: 3 counts for 2 CPU columns"},
		{"no label", h + "  HI  0  1\n", "line 2: \"HI\" is not a label"},
		{"kind twice", h + "  HI:  0  1\n  HI:  0  1\n", "line 3: HI again"},
	} {
		_, _, err := ParseSoftirqs([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "hostnoise: /proc/softirqs") {
			t.Errorf("%s: err = %v, want one saying %q", tc.name, err, tc.want)
		}
	}
}

// snap parses a snapshot from the three files' texts.
func snap(t *testing.T, stat, interrupts, softirqs string) Snapshot {
	t.Helper()
	var s Snapshot
	var err error
	if s.CPU, err = ParseStat([]byte(stat)); err != nil {
		t.Fatal(err)
	}
	if s.IRQ, err = ParseInterrupts([]byte(interrupts)); err != nil {
		t.Fatal(err)
	}
	if s.SoftIRQ, s.SoftIRQByKind, err = ParseSoftirqs([]byte(softirqs)); err != nil {
		t.Fatal(err)
	}
	return s
}

// Two snapshots of a 2-CPU host. Over the window CPU 0 was busy 46 ticks (user
// 30, system 10, irq 1, softirq 5), idle 42 (2540+12 - 2500-10), stole 2: 90
// ticks. CPU 1's iowait went back from 20 to 15 as its idle went on, 2520 to
// 2610: idle 90, busy 2, 92 ticks.
func windowSnapshots(t *testing.T) (a, b Snapshot) {
	a = snap(t,
		"cpu  1 1 1 1\ncpu0 100 10 50 2500 10 0 20 3 0 0\ncpu1 200 10 150 2500 20 0 20 4 0 0\n",
		"           CPU0       CPU1\n  0:         45          0   IO-APIC   2-edge      timer\nLOC:     100000     200000   Local timer interrupts\nERR:          0\n",
		"                    CPU0       CPU1\n       TIMER:        100        200\n      NET_RX:       1000       2000\n")
	b = snap(t,
		"cpu  1 1 1 1\ncpu0 130 10 60 2540 12 1 25 5 0 0\ncpu1 201 10 151 2595 15 0 20 4 0 0\n",
		"           CPU0       CPU1\n  0:         45          0   IO-APIC   2-edge      timer\nLOC:     100250     200900   Local timer interrupts\nERR:          3\n",
		"                    CPU0       CPU1\n       TIMER:        120        205\n      NET_RX:       1000       2500\n")
	return a, b
}

func TestDelta(t *testing.T) {
	a, b := windowSnapshots(t)
	cpu0 := CPUNoise{CPU: 0, Ticks: 90, Busy: 46, Idle: 42, Steal: 2, IRQ: 250, SoftIRQ: 20,
		SoftIRQByKind: map[string]uint64{"TIMER": 20, "NET_RX": 0}}
	cpu1 := CPUNoise{CPU: 1, Ticks: 92, Busy: 2, Idle: 90, Steal: 0, IRQ: 900, SoftIRQ: 505,
		SoftIRQByKind: map[string]uint64{"TIMER": 5, "NET_RX": 500}}
	for _, tc := range []struct {
		cpus []int
		want []CPUNoise
	}{
		{nil, []CPUNoise{cpu0, cpu1}},
		{[]int{1}, []CPUNoise{cpu1}},
		{[]int{1, 0, 1}, []CPUNoise{cpu0, cpu1}},
		{[]int{}, []CPUNoise{}},
	} {
		got, err := Delta(a, b, tc.cpus)
		if err != nil {
			t.Errorf("cpus %v: %v", tc.cpus, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("cpus %v: got %+v\nwant %+v", tc.cpus, got, tc.want)
		}
	}
}

func TestDeltaErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cpus   []int
		change func(a, b *Snapshot)
		want   string
	}{
		{"CPU in neither", []int{0, 2}, nil, "CPU 2: not in the first snapshot's stat"},
		{"CPU gone offline", []int{1}, func(a, b *Snapshot) { delete(b.CPU, 1) }, "CPU 1: not in the second snapshot's stat"},
		{"CPU missing from interrupts", nil, func(a, b *Snapshot) { delete(b.IRQ, 1) }, "CPU 1: not in the second snapshot's interrupts"},
		{"CPU missing from softirqs", nil, func(a, b *Snapshot) { delete(a.SoftIRQ, 0) }, "CPU 0: not in the first snapshot's softirqs"},
		{"user backwards", nil, func(a, b *Snapshot) {
			c := b.CPU[0]
			c.User = 99
			b.CPU[0] = c
		}, "CPU 0: went backwards: user 100 to 99"},
		{"idle+iowait backwards", nil, func(a, b *Snapshot) {
			c := b.CPU[1]
			c.Idle = 2499
			b.CPU[1] = c
		}, "CPU 1: went backwards: idle+iowait 2520 to 2514"},
		{"interrupts backwards", nil, func(a, b *Snapshot) { b.IRQ[1] = a.IRQ[1] - 1 }, "CPU 1: went backwards: interrupts 200000 to 199999"},
		{"a softirq kind backwards", nil, func(a, b *Snapshot) { b.SoftIRQByKind["TIMER"][0] = 99 }, "CPU 0: went backwards: TIMER 100 to 99"},
		{"swapped", nil, func(a, b *Snapshot) { *a, *b = *b, *a }, "CPU 0: went backwards: user 130 to 100, system 60 to 50, irq 1 to 0, softirq 25 to 20, idle+iowait 2552 to 2510, steal 5 to 3, interrupts 100295 to 100045, softirqs 1120 to 1100, TIMER 120 to 100"},
	} {
		a, b := windowSnapshots(t)
		if tc.change != nil {
			tc.change(&a, &b)
		}
		got, err := Delta(a, b, tc.cpus)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "hostnoise: ") {
			t.Errorf("%s: got %+v, %v; want an error saying %q", tc.name, got, err, tc.want)
		}
	}
}

// The kernel's per-CPU interrupt counts are 32-bit: here line 5 wraps on CPU
// 0, from 2^32-6 to 6 (12 interrupts), while line 7 counts 100 more.
func TestDeltaWrap(t *testing.T) {
	a, b := windowSnapshots(t)
	var err error
	a.IRQ, err = ParseInterrupts([]byte("    CPU0  CPU1\n  5:  4294967290  1  x\n  7:  3000000000  2  y\n"))
	if err != nil {
		t.Fatal(err)
	}
	b.IRQ, err = ParseInterrupts([]byte("    CPU0  CPU1\n  5:  6  1  x\n  7:  3000000100  2  y\n"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Delta(a, b, []int{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].IRQ != 112 || got[1].IRQ != 0 {
		t.Errorf("IRQ %d and %d, want 112 and 0", got[0].IRQ, got[1].IRQ)
	}
}

// Captured on the development machine (a 2-vCPU Firecracker VM, kernel 6.18)
// a second apart, while a benchmark ran: t0 and t1 are procfs directories. The
// wanted sums were taken with awk, independently of the parsers.
func TestReadCaptured(t *testing.T) {
	dir := filepath.Join("testdata", "firecracker-2cpu")
	var snaps [2]Snapshot
	for i, want := range []struct{ irq, soft [2]uint64 }{
		{[2]uint64{96771972, 108755371}, [2]uint64{306875414, 313390997}},
		{[2]uint64{96794964, 108778370}, [2]uint64{306895186, 313410929}},
	} {
		s, err := Read(filepath.Join(dir, []string{"t0", "t1"}[i]))
		if err != nil {
			t.Fatal(err)
		}
		for c := range 2 {
			if s.IRQ[c] != want.irq[c] || s.SoftIRQ[c] != want.soft[c] {
				t.Errorf("t%d CPU %d: IRQ %d, softirqs %d; want %d, %d", i, c, s.IRQ[c], s.SoftIRQ[c], want.irq[c], want.soft[c])
			}
		}
		if len(s.CPU) != 2 || len(s.IRQ) != 2 || len(s.SoftIRQ) != 2 || len(s.SoftIRQByKind) != 10 {
			t.Errorf("t%d: %d CPUs in stat, %d in interrupts, %d in softirqs, %d kinds; want 2, 2, 2, 10",
				i, len(s.CPU), len(s.IRQ), len(s.SoftIRQ), len(s.SoftIRQByKind))
		}
		snaps[i] = s
	}
	d, err := Delta(snaps[0], snaps[1], nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(d) != 2 {
		t.Fatalf("%d CPUs, want 2", len(d))
	}
	for _, n := range d {
		// A second is 100 ticks; tick sampling on a busy vCPU loses some.
		if n.Ticks < 80 || n.Ticks > 120 || n.Busy+n.Idle+n.Steal != n.Ticks {
			t.Errorf("CPU %d: %+v: want about 100 ticks, the sum of busy, idle and steal", n.CPU, n)
		}
		if n.IRQ < 1000 || n.SoftIRQByKind["NET_RX"] == 0 {
			t.Errorf("CPU %d: %d interrupts, %d NET_RX: the captured window had thousands, and traffic", n.CPU, n.IRQ, n.SoftIRQByKind["NET_RX"])
		}
	}
}

func TestReadReal(t *testing.T) {
	a, err := Read("/proc")
	if err != nil {
		t.Fatal(err)
	}
	c0, ok := a.CPU[0]
	if !ok || c0.Busy()+c0.Idle+c0.IOWait+c0.Steal == 0 {
		t.Fatalf("CPU 0: %+v, %v; want positive ticks", c0, ok)
	}
	if _, ok := a.IRQ[0]; !ok {
		t.Errorf("no CPU 0 in /proc/interrupts: %v", a.IRQ)
	}
	if _, ok := a.SoftIRQByKind["TIMER"][0]; !ok {
		t.Errorf("no TIMER softirqs for CPU 0: %v", a.SoftIRQByKind)
	}
	b, err := Read("/proc")
	if err != nil {
		t.Fatal(err)
	}
	d, err := Delta(a, b, []int{0})
	if err != nil || len(d) != 1 {
		t.Fatalf("Delta: %+v, %v", d, err)
	}
}

func TestReadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Read(dir); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "stat")) {
		t.Errorf("no files: err = %v, want one naming the stat file", err)
	}
	for name, text := range map[string]string{"stat": "cpu0 1 2 3 4\n", "interrupts": "  CPU0\n  0:  x\n", "softirqs": "  CPU0\n HI: 0\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := "hostnoise: " + filepath.Join(dir, "interrupts") + " line 2: 0: no counts"
	if _, err := Read(dir); err == nil || err.Error() != want {
		t.Errorf("bad interrupts: err = %v, want %q", err, want)
	}
}

// The parsers never panic, and what they accept Delta takes.
func FuzzParse(f *testing.F) {
	for _, s := range []string{stat2, stat4, interrupts3, softirqs4, "", "cpu0 1 2 3 4", "  CPU0\n 0: 1\n", "  CPU3\nERR: 1\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var s Snapshot
		s.CPU, _ = ParseStat([]byte(in))
		s.IRQ, _ = ParseInterrupts([]byte(in))
		s.SoftIRQ, s.SoftIRQByKind, _ = ParseSoftirqs([]byte(in))
		Delta(s, s, nil)
	})
}

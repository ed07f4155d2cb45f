package kcount

import (
	"concbench/internal/cpuset"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// cpu.stat grows with a helper's CPU time, on the side it spends it: user for
// a busy loop, system for reads that clear 1 MiB each in the kernel; its total agrees with getrusage
// of the reaped helper.
func TestCPUTime(t *testing.T) {
	needCounting(t)
	cpus, err := cpuset.Available()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		args   []string
		sync   bool
		system bool // the side that must hold most of the time
	}{
		{"busy loop", []string{"spin", strconv.Itoa(cpus[0]), "300"}, true, false},
		{"syscalls", []string{"zero", "10000"}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cg := newCgroup(t, "cpu")
			k := openCounter(t, cg, nil, nil)
			start := read(t, k)
			c := startHelper(t, cg, tc.args[0], tc.args[1:]...)
			if tc.sync {
				c.ready(t)
				c.release(t)
			}
			ru := c.wait(t).SysUsage().(*syscall.Rusage)
			d := read(t, k).Sub(start)
			ruUS := time.Duration(syscall.TimevalToNsec(ru.Utime)+syscall.TimevalToNsec(ru.Stime)) / time.Microsecond
			t.Logf("cpu.stat: user %d µs, system %d µs, usage %d µs; getrusage user+system %d µs", d.UserUS, d.SystemUS, d.UsageUS, ruUS)
			if d.UsageUS < 50000 {
				t.Fatalf("usage %d µs: the helper did not burn CPU", d.UsageUS)
			}
			if main, other := d.UserUS, d.SystemUS; (main > other) == tc.system {
				t.Errorf("user %d µs, system %d µs: want most in %s", d.UserUS, d.SystemUS, map[bool]string{false: "user", true: "system"}[tc.system])
			}
			// User+system is the usage split by ticks and scaled to it; a
			// read may see the two sides flushed a tick apart.
			if sum := d.UserUS + d.SystemUS; sum < d.UsageUS*9/10 || sum > d.UsageUS*11/10 {
				t.Errorf("user+system %d µs, usage %d µs: want within 10%%", sum, d.UsageUS)
			}
			// getrusage of the reaped helper is the runtime of all its
			// threads, which are all the cgroup held.
			if diff := int64(ruUS) - d.UsageUS; diff > 5000 || diff < -5000 {
				t.Errorf("usage %d µs, getrusage %d µs: want them within 5 ms", d.UsageUS, ruUS)
			}
		})
	}
}

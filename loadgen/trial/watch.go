package trial

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"concbench/internal/cpuset"
	"concbench/internal/procstat"
	"concbench/internal/result"
)

// Watch samples a server this process neither started nor drives — its
// process tree from /proc, its threads' context switches, and its kernel
// counts when its cgroup is given — over a window whose edges are marked from
// outside: the coordinator of loadgen agents (package agents), which marks the
// instant every agent's window opens and the one they close, on the host the
// server runs on.
type Watch struct {
	pid      int
	cpus     []int
	sampler  *procstat.Sampler
	kc       *kernelCounts
	win      *window
	warnings []string
	// Cmdline is the server's command line, read as the watch started (nil
	// if it could not be).
	Cmdline []string
}

// WatchServer starts watching o.ServerPID (with o.ServerCgroup, o.ServerCPUs,
// o.NoKernelCounts and o.NoSyscallCounts as Run takes them; nil ServerCPUs
// means the CPUs it may run on).
func WatchServer(o Options) (*Watch, error) {
	if o.ServerPID <= 0 {
		return nil, errors.New("no server pid to watch")
	}
	cpus := o.ServerCPUs
	if cpus == nil {
		var err error
		if cpus, err = cpuset.Allowed(o.ServerPID); err != nil {
			return nil, fmt.Errorf("server pid %d: %w", o.ServerPID, err)
		}
	}
	kc := newKernelCounts(o)
	// This process is not the load's client: the agents count their own.
	if kc.client.cg != nil {
		kc.client.cg.Remove()
		kc.client.cg = nil
	}
	kc.client.fail("the agents are the clients")
	w := &Watch{pid: o.ServerPID, cpus: cpus, kc: kc}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", o.ServerPID)); err == nil && len(b) > 0 {
		w.Cmdline = strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
	}
	w.sampler = procstat.StartIn("/proc", o.ServerPID, kc.serverCgroupDir(), sampleEvery)
	kc.open(cpus, nil)
	w.win = &window{sampler: w.sampler, kernel: kc}
	return w, nil
}

// Model is the -model its command line gives (a concbench server's), or "".
func (w *Watch) Model() string {
	if len(w.Cmdline) == 0 {
		return ""
	}
	return flagValue(w.Cmdline[1:], "model")
}

// Mark marks the window's start (start) or end at the instant at.
func (w *Watch) Mark(start bool, at time.Time) { w.win.mark(start, at) }

// Window marks the window at at and d later, by this host's clock, then
// stops the watch and returns what it saw as a result: Server, the server's
// binary, arguments, model and CPUs in Config (from its command line), the
// window's marks in Load (LoadStartUnixNS is at, the samples' origin) and
// Warnings. If done closes first it stops the watch and returns nil.
func (w *Watch) Window(done <-chan struct{}, at time.Time, d time.Duration) *result.Run {
	var marks [2]time.Time
	for i, t := range []time.Time{at, at.Add(d)} {
		select {
		case <-time.After(time.Until(t)):
			marks[i] = time.Now()
			w.Mark(i == 0, marks[i])
		case <-done:
			w.Stop(at)
			return nil
		}
	}
	r := &result.Run{}
	r.Server, r.Warnings = w.Stop(at)
	if len(w.Cmdline) > 0 {
		r.Config.ServerBin, r.Config.ServerArgs, r.Config.Model = w.Cmdline[0], w.Cmdline[1:], w.Model()
	}
	r.Config.ServerCPUs = w.cpus
	ld := &r.Load
	ld.LoadStartUnixNS, ld.WindowStartUnixNS, ld.WindowEndUnixNS = at.UnixNano(), marks[0].UnixNano(), marks[1].UnixNano()
	ld.Seconds = marks[1].Sub(marks[0]).Seconds()
	return r
}

// Stop ends the watch and returns the server's figures over the window (its
// samples' times from loadStart) and what went wrong, as warnings.
func (w *Watch) Stop(loadStart time.Time) (*result.Server, []string) {
	w.kc.closeCounters()
	warn := func(format string, a ...any) { w.warnings = append(w.warnings, fmt.Sprintf(format, a...)) }
	w.win.mu.Lock()
	s := w.win.server(w.sampler, w.kc, w.pid, loadStart, len(w.cpus), warn)
	w.win.mu.Unlock()
	s.External = true
	if err := w.kc.release(); err != nil {
		warn("the kernel counts' cgroups: %v", err)
	}
	return s, w.warnings
}

package trial

import (
	"fmt"
	"strings"
	"time"

	"concbench/internal/hostnoise"
	"concbench/internal/hostprobe"
	"concbench/internal/result"
)

// The host's noise on the measured CPUs (result.Host): /proc/stat, interrupts
// and softirqs read at the window's edges, and a probe of the wake-up latency
// between a server CPU and a client CPU just before the load and just after it.

// userHZ is the unit of /proc/stat's times: clock ticks a second.
const userHZ = 100

// probeRounds is how many round trips a probe times: about 10–40 ms here.
const probeRounds = 500

// probe runs a hostprobe between the first server CPU and the first client
// CPU; nil (and why) when the trial is not pinned to both.
func probe(serverCPUs, clientCPUs []int) (*result.Probe, string) {
	if len(serverCPUs) == 0 || len(clientCPUs) == 0 {
		return nil, "not pinned to server and client CPUs"
	}
	p, err := hostprobe.Run(serverCPUs[0], clientCPUs[0], probeRounds)
	if err != nil {
		return nil, err.Error()
	}
	return &p, ""
}

// hostFigures reduces the window's two host snapshots: per measured CPU its
// ticks and interrupts, and the shares of steal, lost ticks and foreign work,
// ownSeconds being the server tree's and loadgen's CPU time over the window.
func hostFigures(start, end hostnoise.Snapshot, span time.Duration, serverCPUs, clientCPUs []int, ownSeconds float64) (*result.Host, error) {
	cpus := append(append([]int(nil), serverCPUs...), clientCPUs...)
	d, err := hostnoise.Delta(start, end, cpus)
	if err != nil {
		return nil, err
	}
	h := &result.Host{WindowSeconds: span.Seconds()}
	role := map[int]string{}
	for _, c := range clientCPUs {
		role[c] = "client"
	}
	for _, c := range serverCPUs {
		role[c] = "server" // a CPU in both sets (unpinned runs) is the server's
	}
	var ticks, steal, user uint64
	for _, n := range d {
		t := end.CPU[n.CPU]
		s := start.CPU[n.CPU]
		u := (t.User + t.Nice + t.System) - (s.User + s.Nice + s.System)
		h.CPUs = append(h.CPUs, result.HostCPU{CPU: n.CPU, Role: role[n.CPU], Ticks: n.Ticks, Busy: n.Busy, User: u,
			Steal: n.Steal, IRQ: n.IRQ, SoftIRQ: n.SoftIRQ})
		ticks, steal, user = ticks+n.Ticks, steal+n.Steal, user+u
	}
	clock := span.Seconds() * userHZ * float64(len(d))
	if ticks > 0 {
		h.StealShare = float64(steal) / float64(ticks)
	}
	if clock > 0 {
		h.LostShare = max(0, 1-float64(ticks)/clock)
		h.ForeignShare = max(0, float64(user)/userHZ-ownSeconds) * userHZ / clock
	}
	var why []string
	for _, x := range []struct {
		name  string
		share float64
	}{{"steal", h.StealShare}, {"foreign work on the measured CPUs", h.ForeignShare}} {
		if x.share > result.DisturbedAt {
			why = append(why, fmt.Sprintf("%s %.0f%% of the window", x.name, 100*x.share))
		}
	}
	if len(why) > 0 {
		h.Disturbed, h.Why = true, strings.Join(why, "; ")
	}
	return h, nil
}

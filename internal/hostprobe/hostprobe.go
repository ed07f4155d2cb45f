// Package hostprobe measures, in a few tens of milliseconds, what a shared
// virtual machine's host does to the CPUs a trial runs on: how long a wake-up
// across two CPUs takes (a round trip over two pipes between a thread pinned to
// each), and how long a fixed piece of arithmetic takes on each CPU.
//
// Why: at one connection a request is two wake-ups across the server's and the
// client's CPUs, so its throughput is the wake-up latency's inverse. On this
// project's machines (a Firecracker guest) that latency moves in steps with the
// host's own load — 20 µs a round trip for minutes, then 14 µs — and the
// hypervisor reports no steal time (/proc/stat's steal stays 0), so neither the
// trial nor /proc can see it. A probe before and after each trial can: its
// round trip tracks the one-connection throughput (23k req/s at 20 µs, 33k at
// 14 µs, 7k when a probe saw 44 µs and a 30% slower spin), and a spin slower
// than usual is CPU the host took from the guest.
package hostprobe

import (
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"concbench/internal/result"
)

// spinIters is the fixed work of the spin: about 1 ms on a 2 GHz core.
const spinIters = 1_500_000

// Run probes CPUs a and b (which may be equal: the round trip is then within
// one CPU) with rounds round trips: the median and 90th percentile round trip
// of a byte between a thread on a and one on b (pipe write → the other's read
// wakes → write back → read), and how long the fixed spin took on each, µs.
func Run(a, b, rounds int) (result.Probe, error) {
	p := result.Probe{CPUs: []int{a, b}}
	var ab, ba [2]int
	if err := unix.Pipe2(ab[:], unix.O_CLOEXEC); err != nil {
		return p, fmt.Errorf("hostprobe: pipe: %w", err)
	}
	if err := unix.Pipe2(ba[:], unix.O_CLOEXEC); err != nil {
		unix.Close(ab[0])
		unix.Close(ab[1])
		return p, fmt.Errorf("hostprobe: pipe: %w", err)
	}
	// Each thread owns the ends it uses and closes them when it is done, so
	// that either one stopping early ends the other's read with end of file
	// instead of leaving it waiting.
	defer unix.Close(ab[1])
	defer unix.Close(ba[0])

	// This thread on a, then the echo thread on b: each reports whether it
	// could be pinned before any byte moves, so that neither waits for a
	// partner that is not there.
	ready, echo := make(chan error, 1), make(chan error, 1)
	spinB := make(chan float64, 1)
	unpin, err := pin(a)
	if err != nil {
		unix.Close(ab[0])
		unix.Close(ba[1])
		return p, err
	}
	defer unpin()
	go func() {
		defer unix.Close(ab[0])
		defer unix.Close(ba[1])
		unpin, err := pin(b)
		ready <- err
		if err != nil {
			return
		}
		defer unpin()
		buf := make([]byte, 1)
		for range rounds {
			if n, err := unix.Read(ab[0], buf); err != nil || n != 1 {
				echo <- fmt.Errorf("read %d: %v", n, err)
				return
			}
			if _, err := unix.Write(ba[1], buf); err != nil {
				echo <- err
				return
			}
		}
		echo <- nil
		spinB <- spin()
	}()
	if err := <-ready; err != nil {
		return p, err
	}
	rtts := make([]float64, 0, rounds)
	buf := []byte{1}
	for range rounds {
		t := time.Now()
		if _, err := unix.Write(ab[1], buf); err != nil {
			return p, fmt.Errorf("hostprobe: write: %w", err)
		}
		if n, err := unix.Read(ba[0], buf); err != nil || n != 1 {
			if eerr := <-echo; eerr != nil {
				return p, fmt.Errorf("hostprobe: the echo thread: %w", eerr)
			}
			return p, fmt.Errorf("hostprobe: read %d: %v", n, err)
		}
		rtts = append(rtts, float64(time.Since(t).Nanoseconds())/1e3)
	}
	if err := <-echo; err != nil {
		return p, fmt.Errorf("hostprobe: the echo thread: %w", err)
	}
	sa := spin()
	p.SpinUS = []float64{sa, <-spinB}
	slices.Sort(rtts)
	p.WakeRTTUS = rtts[len(rtts)/2]
	p.WakeRTTP90US = rtts[len(rtts)*9/10]
	return p, nil
}

// sink keeps the spin's result alive (atomic: both threads spin).
var sink atomic.Uint64

// spin times a fixed piece of arithmetic on the calling thread, µs.
func spin() float64 {
	t := time.Now()
	x := uint64(1)
	for i := range uint64(spinIters) {
		x += i ^ (x >> 3)
	}
	sink.Add(x)
	return float64(time.Since(t).Nanoseconds()) / 1e3
}

// pin locks the calling goroutine to its thread and the thread to cpu; unpin
// restores the thread's affinity and unlocks it.
func pin(cpu int) (unpin func(), err error) {
	runtime.LockOSThread()
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("hostprobe: sched_getaffinity: %w", err)
	}
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("hostprobe: CPU %d: %w", cpu, err)
	}
	return func() {
		unix.SchedSetaffinity(0, &old)
		runtime.UnlockOSThread()
	}, nil
}

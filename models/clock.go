package models

// The clock of an event loop: when the idle sweep is due, when a graceful
// shutdown's deadline passes, and the step at the head of every pass that starts
// and ends the drain.

import (
	"context"
	"time"
)

// maxSweepEvery caps the interval of the idle sweep: a loop sweeps its connections
// every min(IdleTimeout/4, maxSweepEvery), so one is closed at most that much later
// than its timeout.
const maxSweepEvery = time.Second

// clockStart is the epoch of monoNow, one for the process, so that times read on
// different threads (threadpool's poller and workers) compare.
var clockStart = time.Now()

// monoNow is the monotonic clock (vDSO clock_gettime, no syscall) since clockStart.
func monoNow() time.Duration { return time.Since(clockStart) }

// loopClock is an event loop's sense of time. now is read once per wake-up (tick)
// rather than per event, and only when something needs it: the idle timeout
// (Config.IdleTimeout; 0 disables it all) — every sweepEvery the loop closes the
// connections idle for longer than idle — and the drain (Config.Grace). The loop's
// wait never outlasts the next sweep or the drain's deadline (timeoutMS).
type loopClock struct {
	idle       time.Duration
	sweepEvery time.Duration
	nextSweep  time.Duration
	now        time.Duration

	// grace is Config.Grace. draining is the graceful shutdown, entered with
	// beginDrain and never left; the loop ends when no connection is left or at
	// drainEnd (on this clock).
	grace    time.Duration
	draining bool
	drainEnd time.Duration
}

func newLoopClock(cfg Config) loopClock {
	c := loopClock{grace: cfg.Grace}
	c.setIdle(cfg.IdleTimeout)
	return c
}

// setIdle sets the idle timeout d (0 disables the sweep) and schedules the first
// sweep.
func (c *loopClock) setIdle(d time.Duration) {
	c.idle = d
	if d <= 0 {
		return
	}
	c.sweepEvery = max(time.Millisecond, min(d/4, maxSweepEvery))
	c.now = monoNow()
	c.nextSweep = c.now + c.sweepEvery
}

// tick reads the clock; a loop calls it once per wake-up, before it handles events.
func (c *loopClock) tick() {
	if c.idle > 0 || c.draining {
		c.now = monoNow()
	}
}

// beginDrain enters draining mode with the deadline grace from now.
func (c *loopClock) beginDrain() {
	c.draining = true
	c.now = monoNow()
	c.drainEnd = c.now + c.grace
}

// drainExpired reports whether the drain's deadline has passed.
func (c *loopClock) drainExpired() bool { return monoNow() >= c.drainEnd }

// sweepDue reports whether the idle sweep is due (as of the last tick), and if so
// schedules the next one.
func (c *loopClock) sweepDue() bool {
	if c.idle <= 0 || c.now < c.nextSweep {
		return false
	}
	c.nextSweep = c.now + c.sweepEvery
	return true
}

// expired reports whether lastActive is longer ago than the idle timeout.
func (c *loopClock) expired(lastActive time.Duration) bool {
	return c.idle > 0 && c.now-lastActive > c.idle
}

// timeoutMS is how long the loop may block: until the next idle sweep is due or
// the drain's deadline, whichever is first; -1 (no limit) if neither is pending.
func (c *loopClock) timeoutMS() int {
	t := -1
	if c.idle > 0 {
		t = untilMS(t, c.nextSweep)
	}
	if c.draining {
		t = untilMS(t, c.drainEnd)
	}
	return t
}

// untilMS is the wait t (in ms, -1 for no limit) shortened to end at `at` on the
// loop clock if that comes first.
func untilMS(t int, at time.Duration) int {
	// Rounded up: waking a little late is harmless, waking early spins.
	until := at - monoNow()
	ms := int(max(0, (until+time.Millisecond-1)/time.Millisecond))
	if t < 0 || ms < t {
		return ms
	}
	return t
}

// drainer is an event loop's own part of a graceful shutdown, driven by
// loopClock.stopping.
type drainer interface {
	// startDrain runs once, when the shutdown begins, the clock already draining:
	// the listener leaves the set for good, and every connection is settled once
	// in draining mode (finished, or its interest brought in line with draining),
	// since a connection idle in the kernel gets no event to do it.
	startDrain()
	// drainDone runs at the head of every pass while draining, and reports
	// whether no connection is left.
	drainDone() bool
}

// stopping is the step at the head of every event loop's pass. Until ctx is
// cancelled it reports false. Then, with no grace period, true at once (the
// caller closes everything); with one, it enters draining mode and starts d's
// drain the first time, and reports true once d has no connection left or the
// deadline has passed.
func (c *loopClock) stopping(ctx context.Context, d drainer) bool {
	if ctx.Err() == nil {
		return false
	}
	if c.grace <= 0 {
		return true
	}
	if !c.draining {
		c.beginDrain()
		d.startDrain()
	}
	return d.drainDone() || c.drainExpired()
}

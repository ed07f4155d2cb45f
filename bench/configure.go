package bench

import (
	"fmt"
	"slices"
	"strings"
)

// Fair configurations: a verdict is only fair if each model runs as its users
// would configure it for the load. A pool sized for one connection (procpool's
// default, a worker per server CPU: one under bench's pinning) serves one
// connection at a time, and a report that calls it "slowest, starved" at every
// concurrency above 1 says something about one setting, not about process
// pools. With Spec.Configure "fair" (every preset) each cell's server gets the
// flags a user would give it for the cell's connections; with "defaults" every
// model runs with its defaults, as runs before this field did.

// Configure values.
const (
	ConfigureFair     = "fair"
	ConfigureDefaults = "defaults"
)

// Configures lists the values of Spec.Configure.
var Configures = []string{ConfigureFair, ConfigureDefaults}

// defaultMaxThreads is threadpool's default bound (models.DefaultMaxThreads,
// checked by a test): a fair configuration raises it only above.
const defaultMaxThreads = 64

// fair reports whether cells get their fair configuration.
func (s Spec) fair() bool { return s.Configure == ConfigureFair }

// CellConfig is the server flags a cell runs with beyond the model's defaults:
// under the fair configuration,
//   - procpool: one worker process per connection the cell holds (busy and
//     idle) — a worker serves one connection at a time — up to ProcessCap, the
//     worker processes the machine's memory and pids allow;
//   - threadpool: at least as many threads as connections (at least its default
//     64), so that blocking work on every connection can overlap, up to a
//     quarter of ThreadCap;
//   - prefork keeps one worker per server CPU (what nginx's worker_processes
//     auto picks: each worker multiplexes all its connections), and every other
//     model has no pool to size.
//
// None under the defaults; a variant's own flag (-set) is left to it.
func (s Spec) CellConfig(c Cell) []string {
	if !s.fair() {
		return nil
	}
	need := c.Conns + c.Idle
	var args []string
	switch BaseModel(c.Model) {
	case "procpool":
		n := need
		if s.ProcessCap > 0 {
			n = min(n, s.ProcessCap)
		}
		args = []string{fmt.Sprintf("-workers=%d", max(1, n))}
	case "threadpool":
		n := need
		if s.ThreadCap > 0 {
			n = min(n, s.ThreadCap/4)
		}
		if n > defaultMaxThreads {
			args = []string{fmt.Sprintf("-max-threads=%d", n)}
		}
	}
	// A variant's own setting (-set) wins over the fair one.
	if flag, _, ok := variantSetting(c.Model); ok {
		args = slices.DeleteFunc(args, func(a string) bool { return strings.HasPrefix(a, "-"+flag+"=") })
	}
	return args
}

// ConfigString says how the spec configures the servers, for the report.
func (s Spec) ConfigString() string {
	if !s.fair() {
		return "every model with its defaults (-configure defaults): procpool and prefork one worker per server CPU, threadpool at most 64 threads"
	}
	var b strings.Builder
	b.WriteString("fair (-configure fair): procpool one worker process per connection the cell holds")
	if s.ProcessCap > 0 {
		fmt.Fprintf(&b, ", up to %d (%s)", s.ProcessCap, s.CapsWhy)
	}
	fmt.Fprintf(&b, "; threadpool at most max(%d, connections) threads", defaultMaxThreads)
	if s.ThreadCap > 0 {
		fmt.Fprintf(&b, ", up to %d (a quarter of the %d threads the kernel allows)", s.ThreadCap/4, s.ThreadCap)
	}
	b.WriteString("; prefork one worker per server CPU, as nginx's worker_processes auto (each worker multiplexes its connections); the other models have no pool to size")
	return b.String()
}

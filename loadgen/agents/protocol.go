// Package agents runs one load from several hosts at once: a coordinator
// starts a loadgen agent on each over OpenSSH (no daemon of its own: `ssh HOST
// loadgen agent`), gives each its share of the connections and of the
// open-loop rate, measures each host's clock against its own, lets every agent
// connect, ramp and pass its steady-state gate, then starts every agent's
// measured window at one instant — each at that instant by its own clock —
// and merges the results exactly (package merge) into the one a single client
// holding every connection would have measured, with each agent's share.
//
// The coordinator and an agent speak over the ssh session's standard input
// and output, a line a message, a word naming it and its argument:
//
//	agent → coordinator   hello PROTOCOL SCHEMA REVISION   at once
//	coordinator → agent   clock                            any time
//	agent → coordinator   clock UNIX_NS                    its clock, at once
//	coordinator → agent   config JSON                      its share: Config
//	agent → coordinator   ready UNIX_NS                    steady, warmed up, loading
//	coordinator → agent   start UNIX_NS                    the window's start, on the agent's clock
//	agent → coordinator   result JSON                      its result.Run
//	agent → coordinator   done CODE MESSAGE                its exit: 0 ok, 1 failed, 2 refused
//	coordinator → agent   abort                            stop now (and so does its input's end)
//
// An agent's standard error is its progress lines, which the coordinator
// passes on prefixed with the agent's name.
package agents

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"concbench/internal/envinfo"
	"concbench/internal/result"
	"concbench/loadgen/trial"
)

// Protocol is the version of the conversation above: a coordinator refuses an
// agent that speaks another.
const Protocol = 1

// Config is what the coordinator tells an agent to run: its share of the load
// and how it may measure.
type Config struct {
	// Name is the agent as the coordinator names it (its ssh destination).
	Name string `json:"name"`
	// Workload is its share: Conns, Idle, Rate, Requests and Seed are its own
	// (Split), the rest is every agent's.
	Workload result.Workload `json:"workload"`
	// ClientCPUs pins the agent on its host (nil: unpinned).
	ClientCPUs []int `json:"client_cpus,omitempty"`
	// NoKernelCounts and NoSyscallCounts are trial.Options'.
	NoKernelCounts  bool `json:"no_kernel_counts,omitempty"`
	NoSyscallCounts bool `json:"no_syscall_counts,omitempty"`
	// WindowWait bounds how long the agent loads, ready, before the window
	// starts (loadgen.Config.WindowWait).
	WindowWait time.Duration `json:"window_wait_ns"`
	// Sample, if set, makes the agent a sampler: on the server's host it
	// loads nothing and samples the server over the window (Workload gives
	// its Duration), as loadgen -server-pid does (trial.WatchServer).
	Sample *Sample `json:"sample,omitempty"`
}

// Sample is what a sampler agent samples: Options.ServerPID's.
type Sample struct {
	PID    int    `json:"pid"`
	Cgroup string `json:"cgroup,omitempty"`
	CPUs   []int  `json:"cpus,omitempty"`
}

// Exit codes an agent reports (done) and exits with.
const (
	ExitOK      = 0 // measured, without a failure
	ExitFailed  = 1 // measured, but the run failed (errors, not steady, interrupted): its result says how
	ExitRefused = 2 // could not run (bad config, impossible load): no result
)

// conn is one side of the conversation: lines written whole under a lock (the
// agent answers clock from its reader while its run reports ready).
type conn struct {
	mu sync.Mutex
	w  io.Writer
}

func (c *conn) send(word string, arg any) error {
	var line string
	switch a := arg.(type) {
	case nil:
		line = word
	case string:
		line = word + " " + a
	default:
		b, err := json.Marshal(a)
		if err != nil {
			return err
		}
		line = word + " " + string(b)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := io.WriteString(c.w, line+"\n")
	return err
}

// split cuts a message into its word and the rest.
func split(line string) (word, arg string) {
	word, arg, _ = strings.Cut(strings.TrimRight(line, "\r\n"), " ")
	return word, arg
}

// maxLine bounds one message: a result carries its histograms (tens of KB each
// with many distinct values, a timeline of one per entry).
const maxLine = 64 << 20

func newScanner(r io.Reader) *bufio.Scanner {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	return sc
}

// Serve is the agent (`loadgen agent`): it speaks with the coordinator over in
// and out, runs its share of the load with trial.Run, its progress lines going
// to log, and returns its exit code. The run is cancelled when ctx is, on
// abort, and when in ends (the coordinator, or its ssh session, is gone).
func Serve(ctx context.Context, in io.Reader, out io.Writer, log io.Writer) int {
	c := &conn{w: out}
	if err := c.send("hello", fmt.Sprintf("%d %d %s", Protocol, result.SchemaVersion, revision())); err != nil {
		return ExitRefused
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	configs := make(chan Config, 1)
	starts := make(chan time.Time, 1)
	bad := make(chan error, 1)
	go func() {
		sc := newScanner(in)
		gotConfig := false
		for sc.Scan() {
			word, arg := split(sc.Text())
			switch word {
			case "clock":
				c.send("clock", strconv.FormatInt(time.Now().UnixNano(), 10))
			case "config":
				var cfg Config
				if err := json.Unmarshal([]byte(arg), &cfg); err != nil || gotConfig {
					bad <- fmt.Errorf("a bad config message (%v, or a second one)", err)
					return
				}
				gotConfig = true
				configs <- cfg
			case "start":
				ns, err := strconv.ParseInt(arg, 10, 64)
				if err != nil {
					cancel(fmt.Errorf("a bad start message %q", arg))
					return
				}
				select {
				case starts <- time.Unix(0, ns):
				default: // a second start: the first stands
				}
			case "abort":
				cancel(errors.New("the coordinator aborted the run"))
				return
			default:
				cancel(fmt.Errorf("an unknown message %q from the coordinator", word))
				return
			}
		}
		why := "the coordinator's end of the conversation closed"
		if err := sc.Err(); err != nil {
			why += ": " + err.Error()
		}
		cancel(errors.New(why))
	}()
	var cfg Config
	select {
	case cfg = <-configs:
	case err := <-bad:
		c.send("done", fmt.Sprintf("%d %v", ExitRefused, err))
		return ExitRefused
	case <-ctx.Done():
		c.send("done", fmt.Sprintf("%d %v", ExitRefused, context.Cause(ctx)))
		return ExitRefused
	}
	if cfg.Sample != nil {
		return sample(ctx, c, cfg, starts)
	}
	o := trial.Options{
		Workload:        cfg.Workload,
		ClientCPUs:      cfg.ClientCPUs,
		NoKernelCounts:  cfg.NoKernelCounts,
		NoSyscallCounts: cfg.NoSyscallCounts,
		Log:             log,
		WindowWait:      cfg.WindowWait,
		WindowAt: func(ready time.Time) (time.Time, error) {
			if err := c.send("ready", strconv.FormatInt(ready.UnixNano(), 10)); err != nil {
				return time.Time{}, err
			}
			select {
			case at := <-starts:
				return at, nil
			case <-ctx.Done():
				return time.Time{}, context.Cause(ctx)
			}
		},
	}
	r, err := trial.Run(ctx, o)
	if r != nil {
		if serr := c.send("result", r); serr != nil {
			return ExitFailed
		}
	}
	code := ExitOK
	switch {
	case r == nil:
		code = ExitRefused
	case err != nil:
		code = ExitFailed
	case r.Load.WindowStartUnixNS == 0:
		code, err = ExitFailed, errors.New("no window was measured: "+strings.Join(r.Warnings, "; "))
	}
	msg := "ok"
	if err != nil {
		msg = err.Error()
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
			msg += " (" + cause.Error() + ")"
		}
	}
	c.send("done", fmt.Sprintf("%d %s", code, msg))
	return code
}

// sample is a sampler agent's run: it says ready at once, samples the server
// from then on, marks the window at the instant given and Duration later, and
// sends the server's figures as its result (Load holds only the window: its
// start as LoadStartUnixNS too, the samples' origin).
func sample(ctx context.Context, c *conn, cfg Config, starts <-chan time.Time) int {
	s := cfg.Sample
	done := func(code int, msg string) int {
		c.send("done", fmt.Sprintf("%d %s", code, msg))
		return code
	}
	w, err := trial.WatchServer(trial.Options{ServerPID: s.PID, ServerCgroup: s.Cgroup, ServerCPUs: s.CPUs,
		NoKernelCounts: cfg.NoKernelCounts, NoSyscallCounts: cfg.NoSyscallCounts})
	if err != nil {
		return done(ExitRefused, "-server-pid: "+err.Error())
	}
	started, env := time.Now(), envinfo.Collect()
	if err := c.send("ready", strconv.FormatInt(time.Now().UnixNano(), 10)); err != nil {
		w.Stop(time.Now())
		return ExitFailed
	}
	var at time.Time
	select {
	case at = <-starts:
	case <-ctx.Done():
		w.Stop(time.Now())
		return done(ExitFailed, context.Cause(ctx).Error())
	}
	r := w.Window(ctx.Done(), at, cfg.Workload.Duration)
	if r == nil {
		return done(ExitFailed, context.Cause(ctx).Error())
	}
	r.Schema, r.Started, r.Env = result.SchemaVersion, started, env
	if err := c.send("result", r); err != nil {
		return ExitFailed
	}
	return done(ExitOK, "ok")
}

// revision is this build's version control revision ("unknown" if not known,
// "+" after it if its tree had changes).
func revision() string {
	rev, modified := envinfo.Revision()
	rev = cmp.Or(rev, "unknown")
	if modified {
		rev += "+"
	}
	return rev
}

// RemoveSelf removes the running executable's file (an agent binary copied for
// one run: Linux keeps a running program's file until it exits).
func RemoveSelf() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	return os.Remove(exe)
}

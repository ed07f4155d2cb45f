package agents

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"concbench/internal/result"
	"concbench/internal/supervise"
	"concbench/loadgen/merge"
	"concbench/loadgen/trial"
)

// Options say what Run runs.
type Options struct {
	// Targets are the agents' ssh destinations (USER@HOST or HOST), one agent
	// each; at least two. One host named twice runs two agents there.
	Targets []string
	SSH     SSH
	// Remote is the loadgen executable on the agents' hosts ("" means
	// "loadgen", found on the remote PATH), unless Copy is set.
	Remote string
	// Copy, if set, is a local loadgen executable copied (scp) to each host
	// for the run, to a fresh name in /tmp that the agent removes as it starts.
	Copy string
	// Workload is the whole load, which Split shares out.
	Workload result.Workload
	// ClientCPUs pins every agent on its host (nil: unpinned).
	ClientCPUs []int
	// NoKernelCounts, NoSyscallCounts: trial.Options'.
	NoKernelCounts, NoSyscallCounts bool
	// Wait is how long the last agent may take to be ready (connected,
	// ramped, steady and warmed up) after the first (0: DefaultWait).
	Wait time.Duration
	// MaxOffset is the clock offset beyond which the result warns (0:
	// DefaultMaxOffset).
	MaxOffset time.Duration
	// ServerPID, if set, is the server's pid on this host: the coordinator
	// samples its process tree (and its kernel counts, given ServerCgroup) over
	// the agents' common window, as loadgen -server-pid does over its own
	// (trial.WatchServer); ServerCPUs are its CPUs (nil: those it may run on).
	ServerPID    int
	ServerCgroup string
	ServerCPUs   []int
	// ServerHost, with ServerPID, is the ssh destination of the server's host
	// when it is not this one: an agent started there only samples it (a
	// sampler: Config.Sample), over the same window.
	ServerHost string
	// Log receives progress lines, the agents' prefixed with their names; nil
	// discards them.
	Log io.Writer
}

// Defaults of Options.
const (
	DefaultWait      = time.Minute
	DefaultMaxOffset = time.Millisecond
)

// Timeouts of the conversation: for an agent to say hello (ssh connects,
// authenticates and starts it; scp has copied it already), to answer a clock
// reading, and, once the window has ended, to deliver its result.
const (
	helloTimeout  = 30 * time.Second
	clockTimeout  = 5 * time.Second
	resultTimeout = time.Minute
	// clockRounds is how many clock readings an offset is taken from: the one
	// of the shortest round trip, whose error is at most half of it.
	clockRounds = 16
)

// Agent is one agent's part of a run.
type Agent struct {
	Name  string          // its ssh destination
	Share result.Workload // what it was given
	// Sampler is set for the agent on the server's host that only samples
	// the server (Options.ServerHost); it holds no share.
	Sampler bool
	// Offset is its clock minus the coordinator's, measured over the ssh
	// session (the reading of the shortest of clockRounds round trips, RTT);
	// the true offset is within RTT/2 of it.
	Offset, RTT time.Duration
	// Result is its result, its times moved onto the coordinator's clock
	// (Offset taken off); nil if it sent none.
	Result *result.Run
	// Code and Done are what it said as it ended (done); Err is why it failed,
	// nil if it did not.
	Code int
	Done string
	Err  error
	// Stderr is the end of what it wrote to its standard error.
	Stderr string
}

// Outcome is a run's: the merged result (nil when there is none: an agent
// failed, or the results could not be merged) and every agent's part.
type Outcome struct {
	Merged *result.Run
	Agents []*Agent
}

// ErrAgent means an agent failed: the run has no merged result, and the
// others' results are kept in the Outcome.
var ErrAgent = errors.New("an agent failed")

// Split shares w out over n agents: each gets Conns/n connections (the first
// Conns%n one more), idle connections and a request count likewise, and the
// open-loop rate in proportion to its connections, so that every connection
// keeps the rate a single client would give it and the merged schedule is the
// requested one. With exponential arrivals each agent gets a seed of its own
// (the given one, or one chosen here, plus its index), so that their processes
// are independent. Loops, CPUs and the connect concurrency are each host's
// own (its defaults).
func Split(w result.Workload, n int) ([]result.Workload, error) {
	if n < 1 {
		return nil, errors.New("no agents")
	}
	if w.Conns < n {
		return nil, fmt.Errorf("%d connections cannot be shared by %d agents: each needs at least one (-c %d or more)", w.Conns, n, n)
	}
	if w.Requests > 0 && w.Requests < int64(w.Conns) {
		return nil, fmt.Errorf("-n %d requests over %d connections: each connection needs at least one", w.Requests, w.Conns)
	}
	part := func(total, i int) int {
		p := total / n
		if i < total%n {
			p++
		}
		return p
	}
	seed := w.Seed
	if w.Rate > 0 && w.Arrival == "exp" && seed == 0 {
		seed = mrand.Uint64N(math.MaxUint64-uint64(n)) + 1
	}
	out := make([]result.Workload, n)
	var given int64
	for i := range out {
		s := w
		s.Conns, s.Idle = part(w.Conns, i), part(w.Idle, i)
		s.Loops, s.CPUs, s.ConnectInFlight = 0, nil, 0
		if w.Rate > 0 {
			s.Rate = w.Rate * float64(s.Conns) / float64(w.Conns)
		}
		if seed != 0 {
			s.Seed = seed + uint64(i)
		}
		if w.Requests > 0 {
			// In proportion to the connections, the last taking the rest, so
			// that the counts sum to the total exactly.
			s.Requests = w.Requests * int64(s.Conns) / int64(w.Conns)
			if i == n-1 {
				s.Requests = w.Requests - given
			}
			given += s.Requests
		}
		out[i] = s
	}
	return out, nil
}

// Run runs o's load from its agents and merges their results. It returns an
// error wrapping ErrAgent when an agent failed (naming it; the Outcome keeps
// every agent's part, results included), a merge's error when the results
// could not be merged, and any other error when the run could not start.
func Run(ctx context.Context, o Options) (*Outcome, error) {
	if len(o.Targets) < 2 {
		return nil, fmt.Errorf("agents: give at least two (got %d): one host's load is plain loadgen's, run there", len(o.Targets))
	}
	for _, t := range o.Targets {
		if err := ValidTarget(t); err != nil {
			return nil, err
		}
	}
	if o.Workload.Addr == "" || strings.HasPrefix(o.Workload.Addr, "unix:") {
		return nil, fmt.Errorf("agents: the server's address must be one the agents' hosts reach (HOST:PORT), not %q", o.Workload.Addr)
	}
	shares, err := Split(o.Workload, len(o.Targets))
	if err != nil {
		return nil, fmt.Errorf("agents: %w", err)
	}
	wait := cmp.Or(o.Wait, DefaultWait)
	log := o.Log
	if log == nil {
		log = io.Discard
	}
	lw := &lockedWriter{w: log}
	agents := make([]*agent, len(o.Targets))
	for i, t := range o.Targets {
		name := t
		if slices.Index(o.Targets, t) != i {
			name = fmt.Sprintf("%s#%d", t, i+1)
		}
		agents[i] = &agent{Agent: Agent{Name: name, Share: shares[i]}, target: t, log: lw}
	}
	var sampler *agent
	if o.ServerHost != "" {
		if o.ServerPID == 0 {
			return nil, errors.New("agents: a server host without the server's pid to sample there")
		}
		if err := ValidTarget(o.ServerHost); err != nil {
			return nil, err
		}
		sampler = &agent{Agent: Agent{Name: "server " + o.ServerHost, Sampler: true, Share: result.Workload{Duration: o.Workload.Duration}},
			target: o.ServerHost, log: lw}
		agents = append(agents, sampler)
	}
	loaders := agents[:len(o.Targets)] // the agents that load; the sampler, if any, after them
	var watch *trial.Watch
	if o.ServerPID != 0 && sampler == nil {
		if watch, err = trial.WatchServer(trial.Options{ServerPID: o.ServerPID, ServerCgroup: o.ServerCgroup, ServerCPUs: o.ServerCPUs,
			NoKernelCounts: o.NoKernelCounts, NoSyscallCounts: o.NoSyscallCounts}); err != nil {
			return nil, fmt.Errorf("agents: -server-pid: %w", err)
		}
	}
	// The local watch's figures over the window (watched), nil if none.
	var local *result.Run
	watched := make(chan struct{})
	markCtx, stopMarks := context.WithCancel(ctx)
	defer stopMarks()
	out := &Outcome{}
	for _, a := range agents {
		out.Agents = append(out.Agents, &a.Agent)
	}

	// Each agent's conversation runs in its own goroutine; this one decides
	// the window's start once every agent is ready.
	readyCh := make(chan *agent, len(agents))
	endCh := make(chan *agent, len(agents))
	for _, a := range agents {
		a.start = make(chan time.Time, 1)
		cfg := Config{Name: a.Name, Workload: a.Share, ClientCPUs: o.ClientCPUs,
			NoKernelCounts: o.NoKernelCounts, NoSyscallCounts: o.NoSyscallCounts,
			// The agent waits at most this for the start; the coordinator
			// gives up earlier (wait), so the agent never refuses an instant
			// the coordinator still sends.
			WindowWait: wait + 30*time.Second}
		if a.Sampler {
			cfg.Sample = &Sample{PID: o.ServerPID, Cgroup: o.ServerCgroup, CPUs: o.ServerCPUs}
		}
		go func() {
			a.run(ctx, o, cfg, readyCh)
			endCh <- a
		}()
	}
	abortAll := func(why string) {
		for _, a := range agents {
			a.abort(why)
		}
	}
	ready, ended := 0, 0
	started := false // the window's start was sent
	var failed []*agent
	var firstReady time.Time
	var timeout <-chan time.Time
	for ready < len(agents) && failed == nil {
		select {
		case <-readyCh:
			ready++
			if ready == 1 {
				firstReady = time.Now()
				timeout = time.After(wait)
			}
		case a := <-endCh:
			ended++
			failed = append(failed, a)
			if a.Err == nil {
				a.Err = fmt.Errorf("it ended before the window started: %s", a.Done)
			}
		case <-timeout:
			var late []string
			for _, a := range agents {
				if !a.isReady() {
					late = append(late, a.Name)
					a.setErr(fmt.Errorf("not ready %v after the first agent was (still connecting, ramping or not steady)", wait))
				}
			}
			abortAll("agents " + strings.Join(late, ", ") + " were not ready in time")
			for _, a := range agents {
				if !a.isReady() {
					failed = append(failed, a)
				}
			}
		case <-ctx.Done():
			abortAll("interrupted")
			failed = append(failed, nil)
		}
	}
	if failed == nil {
		// One instant for all, far enough ahead that every start message
		// arrives before it: a tenth of a second, or ten of the slowest
		// round trips.
		var slowest time.Duration
		for _, a := range agents {
			slowest = max(slowest, a.RTT)
		}
		at := time.Now().Add(max(100*time.Millisecond, 10*slowest))
		fmt.Fprintf(lw, "agents: all %d ready (the last %v after the first); the window starts at %s for %v\n",
			len(agents), time.Since(firstReady).Round(time.Millisecond), at.Format("15:04:05.000000"), o.Workload.Duration)
		for _, a := range agents {
			a.start <- at.Add(a.Offset)
		}
		started = true
		if watch != nil {
			// The server's window is the agents' on this clock.
			go func() {
				defer close(watched)
				local = watch.Window(markCtx.Done(), at, o.Workload.Duration)
			}()
		}
	} else {
		for _, a := range failed {
			if a != nil {
				abortAll(fmt.Sprintf("agent %s failed: %v", a.Name, a.Err))
				break
			}
		}
	}
	for ended < len(agents) {
		a := <-endCh
		ended++
		if a.Err != nil && !slices.Contains(failed, a) {
			failed = append(failed, a)
		}
	}
	switch {
	case watch != nil && started:
		if failed != nil {
			stopMarks()
		}
		<-watched // the watch stopped, with or without the window
	case watch != nil:
		watch.Stop(time.Now()) // no window: only its cgroups to release
	}
	if ctx.Err() != nil {
		return out, fmt.Errorf("%w: interrupted", ErrAgent)
	}
	// The agents that failed of themselves; those stopped because of them
	// only if none did.
	var names, aborted []string
	for _, a := range failed {
		if a != nil {
			name := fmt.Sprintf("%s: %v", a.Name, a.Err)
			if a.wasAborted() {
				aborted = append(aborted, name)
			} else {
				names = append(names, name)
			}
		}
	}
	if len(names) == 0 {
		names = aborted
	}
	if len(names) > 0 {
		return out, fmt.Errorf("%w: %s", ErrAgent, strings.Join(names, "; "))
	}
	in := make([]merge.Input, len(loaders))
	for i, a := range loaders {
		in[i] = merge.Input{Name: a.Name, Run: a.Result}
	}
	m, err := merge.Merge(in)
	if err != nil {
		return out, err
	}
	for i, a := range loaders {
		mi := &m.Merge.Inputs[i]
		mi.ClockOffsetNS, mi.ClockRTTNS = int64(a.Offset), int64(a.RTT)
		if bound := cmp.Or(o.MaxOffset, DefaultMaxOffset); a.Offset > bound || a.Offset < -bound {
			m.Warnings = append(m.Warnings, fmt.Sprintf("agent %s's clock is %v off the coordinator's (beyond %v; measured to ±%v over ssh): its times were moved onto the coordinator's clock by it, but keep the hosts' clocks synchronised (NTP, chrony)",
				a.Name, a.Offset, bound, a.RTT/2))
		}
	}
	m.Merge.Coordinated = true
	// The server's figures: the local watch's, or the sampler's on the
	// server's host (its times already on this clock), moved onto the merged
	// timeline. The server is what its command line says (a concbench
	// server's -model).
	var srv *result.Run
	switch {
	case local != nil:
		srv, m.Merge.ServerFrom = local, "the coordinator" // beside the server, over the common window
	case sampler != nil:
		srv, m.Merge.ServerFrom = sampler.Result, sampler.Name
		m.Merge.ServerClockOffsetNS, m.Merge.ServerClockRTTNS = int64(sampler.Offset), int64(sampler.RTT)
		for i, w := range srv.Warnings {
			srv.Warnings[i] = sampler.Name + ": " + w
		}
	}
	if srv != nil {
		m.Server = srv.Server.Rebased(srv.Load.LoadStartUnixNS, m.Load.LoadStartUnixNS)
		c := srv.Config
		m.Config.ServerBin, m.Config.ServerArgs, m.Config.Model, m.Config.ServerCPUs = c.ServerBin, c.ServerArgs, c.Model, c.ServerCPUs
		m.Warnings = append(m.Warnings, srv.Warnings...)
	}
	out.Merged = m
	return out, nil
}

// agent is one agent's conversation.
type agent struct {
	Agent
	target string
	log    io.Writer
	start  chan time.Time // the window's start on its clock, from Run

	mu     sync.Mutex
	c      *conn // nil until started
	ready  bool
	closed bool // aborted
}

// wasAborted reports whether the coordinator told it to stop.
func (a *agent) wasAborted() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.closed
}

func (a *agent) isReady() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ready
}

func (a *agent) setErr(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.Err == nil {
		a.Err = err
	}
}

// abort tells the agent to stop, once.
func (a *agent) abort(why string) {
	a.mu.Lock()
	c, closed := a.c, a.closed
	a.closed = true
	a.mu.Unlock()
	if c != nil && !closed {
		fmt.Fprintf(a.log, "agents: %s: aborting: %s\n", a.Name, why)
		c.send("abort", nil)
	}
}

// msg is one line from the agent, or its output's end (err).
type msg struct {
	word, arg string
	err       error
}

// run is the agent's whole conversation: copy, start, hello, clock, config,
// ready (said on readyCh), start (from a.start), result and done. Its
// failures are set in a.Err.
func (a *agent) run(ctx context.Context, o Options, cfg Config, readyCh chan<- *agent) {
	remote := []string{cmp.Or(o.Remote, "loadgen"), "agent"}
	if o.Copy != "" {
		var b [6]byte
		rand.Read(b[:])
		path := "/tmp/concbench-loadgen-" + hex.EncodeToString(b[:])
		cp := o.SSH.copyCommand(o.Copy, a.target, path)
		if out, err := exec.CommandContext(ctx, cp[0], cp[1:]...).CombinedOutput(); err != nil {
			a.setErr(fmt.Errorf("copying %s there (%s): %v: %s", o.Copy, strings.Join(cp, " "), err, bytes.TrimSpace(out)))
			return
		}
		remote = []string{path, "agent", "-remove-self"}
	}
	argv := o.SSH.command(a.target, remote...)
	cmd := exec.Command(argv[0], argv[1:]...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		a.setErr(err)
		return
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		a.setErr(err)
		return
	}
	tail := &tailWriter{prefix: "agent " + a.Name + ": ", log: a.log}
	cmd.Stderr = tail
	fmt.Fprintf(a.log, "agents: %s: %s\n", a.Name, strings.Join(argv, " "))
	if err := cmd.Start(); err != nil {
		a.setErr(fmt.Errorf("starting ssh: %v", err))
		return
	}
	a.mu.Lock()
	a.c = &conn{w: stdin}
	aborted := a.closed
	a.mu.Unlock()
	if aborted {
		a.c.send("abort", nil)
	}
	msgs := make(chan msg, 16)
	go func() {
		sc := newScanner(stdout)
		for sc.Scan() {
			word, arg := split(sc.Text())
			msgs <- msg{word: word, arg: arg}
		}
		err := sc.Err()
		if err == nil {
			err = io.EOF
		}
		msgs <- msg{err: err}
	}()
	defer func() {
		// Whatever happened, the session ends: the agent's input closes
		// (which ends a run still going), then ssh is given a while to exit.
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var werr error
		select {
		case werr = <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			werr = <-done
		}
		a.Stderr = tail.String()
		a.mu.Lock()
		defer a.mu.Unlock()
		switch {
		case a.Err == nil && a.Done == "":
			a.Err = fmt.Errorf("the session ended without a word from the agent (ssh: %v)", werr)
		case a.Err != nil && werr != nil:
			a.Err = fmt.Errorf("%w (ssh: %v)", a.Err, werr)
		}
	}()
	// recv waits for the next message, up to d (0: no limit but ctx's).
	recv := func(d time.Duration) (msg, error) {
		var t <-chan time.Time
		if d > 0 {
			timer := time.NewTimer(d)
			defer timer.Stop()
			t = timer.C
		}
		select {
		case m := <-msgs:
			if m.err != nil {
				return m, fmt.Errorf("its session ended (%v)%s", m.err, tail.last())
			}
			return m, nil
		case <-t:
			return msg{}, fmt.Errorf("no word from it in %v%s", d, tail.last())
		}
	}

	m, err := recv(helloTimeout)
	if err == nil && m.word != "hello" {
		err = fmt.Errorf("it said %q first, not hello: is %s a concbench loadgen?", m.word, remote[0])
	}
	if err != nil {
		a.setErr(err)
		return
	}
	var proto, schema int
	var rev string
	if n, _ := fmt.Sscanf(m.arg, "%d %d %s", &proto, &schema, &rev); n != 3 || proto != Protocol || schema != result.SchemaVersion {
		a.setErr(fmt.Errorf("it speaks protocol %d and result schema %d (%q), this loadgen %d and %d: give both the same build (-agent-bin copies this one)", proto, schema, m.arg, Protocol, result.SchemaVersion))
		return
	}
	if err := a.measureClock(recv); err != nil {
		a.setErr(fmt.Errorf("measuring its clock: %v", err))
		return
	}
	role := fmt.Sprintf("%d connections", a.Share.Conns)
	if a.Sampler {
		role = fmt.Sprintf("sampling the server, pid %d", cfg.Sample.PID)
	}
	fmt.Fprintf(a.log, "agents: %s: revision %s, clock offset %v (±%v), %s\n", a.Name, rev, a.Offset, a.RTT/2, role)
	if err := a.c.send("config", cfg); err != nil {
		a.setErr(err)
		return
	}
	// Until the start, Run bounds the wait (for every agent's ready); after
	// it, the window's length and resultTimeout do.
	var deadline <-chan time.Time
	interrupted := ctx.Done()
	for {
		var m msg
		select {
		case at := <-a.start:
			if err := a.c.send("start", strconv.FormatInt(at.UnixNano(), 10)); err != nil {
				a.setErr(err)
				return
			}
			deadline = time.After(time.Until(at.Add(-a.Offset)) + cfg.Workload.Duration + resultTimeout)
			continue
		case <-deadline:
			a.setErr(fmt.Errorf("no result %v after its window should have ended%s", resultTimeout, tail.last()))
			return
		case <-interrupted:
			a.abort("interrupted")
			interrupted = nil
			continue
		case m = <-msgs:
		}
		if m.err != nil {
			a.setErr(fmt.Errorf("its session ended before it was done (%v)%s", m.err, tail.last()))
			return
		}
		switch m.word {
		case "ready":
			a.mu.Lock()
			a.ready = true
			a.mu.Unlock()
			readyCh <- a
		case "result":
			var r result.Run
			if err := json.Unmarshal([]byte(m.arg), &r); err != nil {
				a.setErr(fmt.Errorf("its result is not one: %v", err))
				return
			}
			a.shift(&r)
			a.Result = &r
		case "done":
			code, rest, _ := strings.Cut(m.arg, " ")
			a.Code, _ = strconv.Atoi(code)
			a.Done = rest
			if a.Code != ExitOK {
				a.setErr(fmt.Errorf("it failed (exit %d): %s", a.Code, rest))
			} else if a.Result == nil {
				a.setErr(errors.New("it ended without a result"))
			}
			return
		case "clock":
			// A late answer to a clock reading: nothing to do.
		default:
			a.setErr(fmt.Errorf("it said %q, which this coordinator does not know", m.word))
			return
		}
	}
}

// measureClock takes clockRounds readings of the agent's clock and keeps the
// one of the shortest round trip: offset = its clock − the midpoint of the
// round trip on ours.
func (a *agent) measureClock(recv func(time.Duration) (msg, error)) error {
	best := time.Duration(math.MaxInt64)
	for range clockRounds {
		t0 := time.Now()
		if err := a.c.send("clock", nil); err != nil {
			return err
		}
		m, err := recv(clockTimeout)
		if err != nil {
			return err
		}
		t1 := time.Now()
		ns, err := strconv.ParseInt(m.arg, 10, 64)
		if m.word != "clock" || err != nil {
			return fmt.Errorf("it answered %q %q to a clock reading", m.word, m.arg)
		}
		if rtt := t1.Sub(t0); rtt < best {
			best = rtt
			mid := t0.Add(rtt / 2)
			a.Offset = time.Unix(0, ns).Sub(mid)
		}
	}
	a.RTT = best
	return nil
}

// shift moves r's absolute times from the agent's clock onto the
// coordinator's, so that the merge compares one clock's.
func (a *agent) shift(r *result.Run) {
	off := int64(a.Offset)
	ld := &r.Load
	for _, p := range []*int64{&ld.LoadStartUnixNS, &ld.WindowStartUnixNS, &ld.WindowEndUnixNS} {
		if *p != 0 {
			*p -= off
		}
	}
}

// lockedWriter serialises writes of whole lines from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// tailWriter keeps the end of an agent's standard error (a supervise.Tail)
// and passes each whole line on to log with a prefix.
type tailWriter struct {
	prefix string
	log    io.Writer
	supervise.Tail

	mu      sync.Mutex
	partial []byte // the line being written
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.Tail.Write(p)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.partial = append(t.partial, p...)
	for {
		i := bytes.IndexByte(t.partial, '\n')
		if i < 0 {
			break
		}
		fmt.Fprintf(t.log, "%s%s\n", t.prefix, t.partial[:i])
		t.partial = t.partial[i+1:]
	}
	return len(p), nil
}

// last is its last line, as "; its last line: LINE", or "".
func (t *tailWriter) last() string {
	end := strings.TrimRight(t.String(), "\n")
	if end == "" {
		return ""
	}
	return fmt.Sprintf("; its last line: %q", end[strings.LastIndexByte(end, '\n')+1:])
}

package main

// Multi-host runs: -agents starts loadgen agents over ssh (package agents) and
// merges their results; `loadgen agent` is an agent's side, which the
// coordinator starts (not for running by hand).

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"concbench/internal/result"
	"concbench/loadgen/agents"
	"concbench/loadgen/merge"
	"concbench/loadgen/trial"
)

// agentOptions are -agents and what goes with it.
type agentOptions struct {
	targets    []string // ssh destinations, from -agents
	ssh        agents.SSH
	copyBin    string // -agent-bin
	remote     string // -agent-path
	wait       time.Duration
	maxOffset  time.Duration
	serverHost string // -server-host
}

// addAgentFlags registers -agents and its companions on fs.
func addAgentFlags(fs *flag.FlagSet, a *agentOptions) {
	fs.Func("agents", "run the load from loadgen agents on these hosts, started over ssh: `USER@HOST,…` (or @FILE, one a line), each given its share of -c, -idle, -n and -rate; their windows start at one instant and their results are merged exactly (see Multi-host in the README)", func(v string) error {
		t, err := parseTargets(v)
		a.targets = append(a.targets, t...)
		return err
	})
	fs.StringVar(&a.copyBin, "agent-bin", "", "with -agents: copy this loadgen `FILE` (e.g. bin/loadgen) to each host with scp for the run (removed as it starts); default: run `loadgen` from the host's PATH (-agent-path)")
	fs.StringVar(&a.remote, "agent-path", "loadgen", "with -agents: the loadgen executable on the agents' hosts, when -agent-bin does not copy one")
	fs.IntVar(&a.ssh.Port, "ssh-port", 0, "with -agents: ssh's -p `PORT` (default: ssh's)")
	fs.StringVar(&a.ssh.Identity, "ssh-identity", "", "with -agents: ssh's -i `FILE`")
	fs.StringVar(&a.ssh.ConfigFile, "ssh-config", "", "with -agents: ssh's -F `FILE`")
	fs.Func("ssh-opt", "with -agents: an ssh -o `OPTION`, e.g. UserKnownHostsFile=FILE (repeatable; host keys are checked as ssh checks them)", func(v string) error {
		if !strings.Contains(v, "=") && !strings.Contains(v, " ") {
			return fmt.Errorf("%q is not an ssh option (Key=Value)", v)
		}
		a.ssh.Options = append(a.ssh.Options, v)
		return nil
	})
	fs.StringVar(&a.serverHost, "server-host", "", "with -agents and -server-pid: the server runs on this ssh destination `USER@HOST`, not here: an agent started there samples it over the window (default: sampled here, beside the coordinator)")
	fs.DurationVar(&a.wait, "agent-wait", agents.DefaultWait, "with -agents: how long the last agent may take to be ready (connected, steady, warmed up) after the first")
	fs.DurationVar(&a.maxOffset, "max-offset", agents.DefaultMaxOffset, "with -agents: warn when an agent's clock is further than this from the coordinator's")
}

// parseTargets reads -agents: a comma-separated list, or @FILE with one
// destination a line (blank lines and # comments skipped).
func parseTargets(v string) ([]string, error) {
	var words []string
	if file, ok := strings.CutPrefix(v, "@"); ok {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line, _, _ := strings.Cut(sc.Text(), "#")
			if line = strings.TrimSpace(line); line != "" {
				words = append(words, line)
			}
		}
		if err := sc.Err(); err != nil {
			return nil, err
		}
		if len(words) == 0 {
			return nil, fmt.Errorf("%s names no host", file)
		}
	} else {
		for _, w := range strings.Split(v, ",") {
			if w = strings.TrimSpace(w); w != "" {
				words = append(words, w)
			}
		}
	}
	return words, nil
}

// startAtValue is -start-at: an instant as RFC 3339 or Unix seconds.
type startAtValue struct{ t *time.Time }

func (v startAtValue) String() string {
	if v.t == nil || v.t.IsZero() {
		return ""
	}
	return v.t.Format(time.RFC3339Nano)
}

func (v startAtValue) Set(s string) error {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		*v.t = t
		return nil
	}
	sec, err := strconv.ParseFloat(s, 64)
	if err != nil || sec <= 0 {
		return fmt.Errorf("%q is neither an RFC 3339 time (2026-12-04T18:00:00Z) nor Unix seconds", s)
	}
	*v.t = time.Unix(0, int64(sec*1e9))
	return nil
}

// startAt makes o's window open at the instant at (-start-at), by this host's
// clock: the way several loadgens started by other means (a batch scheduler, a
// Kubernetes Indexed Job: deploy/) measure one window, for loadgen merge.
func startAt(o *options, at time.Time) error {
	if until := time.Until(at); until <= 0 {
		return fmt.Errorf("-start-at %s is %v in the past", at.Format(time.RFC3339), (-until).Round(time.Second))
	}
	o.WindowWait = time.Until(at) + time.Second
	o.WindowAt = func(ready time.Time) (time.Time, error) {
		if ready.After(at) {
			return time.Time{}, fmt.Errorf("ready (connected, steady and warmed up) only %v after -start-at %s: the window would not be the other loadgens'; start earlier or give a later -start-at",
				ready.Sub(at).Round(time.Millisecond), at.Format(time.RFC3339Nano))
		}
		return at, nil
	}
	return nil
}

// checkAgents refuses what -agents cannot do with the other flags set.
func checkAgents(o options, set map[string]bool) error {
	a := o.agents
	if len(a.targets) == 0 {
		for _, f := range []string{"agent-bin", "agent-path", "ssh-port", "ssh-identity", "ssh-config", "ssh-opt", "agent-wait", "max-offset", "server-host"} {
			if set[f] {
				return fmt.Errorf("-%s is for -agents", f)
			}
		}
		return nil
	}
	switch {
	case len(a.targets) < 2:
		return fmt.Errorf("-agents %s: give at least two hosts (one host's load is plain loadgen's, run there)", a.targets[0])
	case o.Model != "":
		return errors.New("-agents drives a server at -addr HOST:PORT that the agents' hosts reach: not -model (start the server yourself, with -allow-remote)")
	case o.slo.Text != "":
		return errors.New("-agents with -search: not supported (run the search from one host)")
	case strings.HasPrefix(o.Workload.Addr, "unix:"):
		return errors.New("-agents: the agents are on other hosts; give a TCP or UDP address, not unix:PATH")
	case a.copyBin != "" && set["agent-path"]:
		return errors.New("-agent-bin copies loadgen to the hosts; -agent-path names one already there: give one")
	case a.serverHost != "" && o.ServerPID == 0:
		return errors.New("-server-host names where the server runs, for -server-pid PID there: give its pid")
	case a.wait <= 0 || a.maxOffset <= 0:
		return errors.New("-agent-wait and -max-offset must be positive")
	}
	if a.copyBin != "" {
		if st, err := os.Stat(a.copyBin); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return fmt.Errorf("-agent-bin %s: not an executable file (%v)", a.copyBin, err)
		}
	}
	for _, t := range append(slices.Clone(a.targets), a.serverHost) {
		if t == "" {
			continue
		}
		if err := agents.ValidTarget(t); err != nil {
			return fmt.Errorf("-agents: %q is not a destination (USER@HOST or HOST): %v", t, err)
		}
	}
	return nil
}

// runAgents runs o's load from its agents, prints the merged summary and each
// agent's share, and writes -o: the merged result to FILE.json and each
// agent's to FILE.agent-N.json (kept when an agent failed). It returns the
// exit status.
func runAgents(ctx context.Context, o options, stdout, stderr io.Writer) int {
	a := o.agents
	ao := agents.Options{
		Targets: a.targets, SSH: a.ssh, Copy: a.copyBin, Remote: a.remote,
		Workload: o.Workload, ClientCPUs: o.ClientCPUs,
		NoKernelCounts: o.NoKernelCounts, NoSyscallCounts: o.NoSyscallCounts,
		Wait: a.wait, MaxOffset: a.maxOffset, Log: o.Log,
		ServerPID: o.ServerPID, ServerCgroup: o.ServerCgroup, ServerCPUs: o.ServerCPUs, ServerHost: a.serverHost,
	}
	out, err := agents.Run(ctx, ao)
	code := 0
	if out != nil {
		if o.Out != "" {
			if werr := os.MkdirAll(filepath.Dir(o.Out), 0o755); werr != nil {
				fmt.Fprintln(stderr, "loadgen:", werr)
				code = 1
			}
			base := strings.TrimSuffix(o.Out, ".json")
			for i, ag := range out.Agents {
				if ag.Result == nil {
					continue
				}
				p := fmt.Sprintf("%s.agent-%d.json", base, i+1)
				if ag.Sampler {
					p = base + ".server.json"
				}
				if werr := result.WriteFile(p, ag.Result); werr != nil {
					fmt.Fprintln(stderr, "loadgen:", werr)
					code = 1
				}
			}
			if out.Merged != nil {
				if werr := merge.Write(o.Out, out.Merged); werr != nil {
					fmt.Fprintln(stderr, "loadgen:", werr)
					code = 1
				}
			}
		}
		if out.Merged != nil {
			trial.PrintSummary(stdout, out.Merged)
		} else {
			printAgents(stdout, out)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		if out != nil && o.Out != "" {
			fmt.Fprintf(stderr, "loadgen: the agents' results that came back are in %s.agent-N.json\n", strings.TrimSuffix(o.Out, ".json"))
		}
		if errors.Is(err, merge.ErrConfig) || errors.Is(err, merge.ErrWindow) || out == nil {
			return 2
		}
		return 1
	}
	if r := out.Merged; r.Load.ErrorsTotal > 0 || r.Load.Idle != nil && r.Load.Idle.ErrorsTotal > 0 {
		fmt.Fprintf(stderr, "loadgen: %d errors in the merged run\n", r.Load.ErrorsTotal)
		return 1
	}
	return code
}

// printAgents is each agent's line when there is no merged result: its share,
// what it measured, and why it failed.
func printAgents(w io.Writer, out *agents.Outcome) {
	fmt.Fprintln(w, "\n  no merged result; the agents:")
	for _, a := range out.Agents {
		state := "ok"
		if a.Err != nil {
			state = "FAILED: " + a.Err.Error()
		}
		measured := "no result"
		if r := a.Result; r != nil && a.Sampler {
			measured = "sampled the server"
		} else if r != nil {
			measured = fmt.Sprintf("%d requests in %.2fs (%.1f req/s), %d errors", r.Load.Requests, r.Load.Seconds, r.Load.Throughput, r.Load.ErrorsTotal)
		}
		fmt.Fprintf(w, "  %-24s %6d conns  clock %+v (±%v)  %s  %s\n", a.Name, a.Share.Conns, a.Offset, a.RTT/2, measured, state)
	}
}

// runAgent is `loadgen agent`: the agent's side of a multi-host run, spoken
// over its standard input and output (package agents). It returns the exit
// status.
func runAgent(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loadgen agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	removeSelf := fs.Bool("remove-self", false, "remove this executable's file as it starts (a copy made for the run)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: loadgen agent [-remove-self]\n\nThe agent's side of a multi-host run: started over ssh by a coordinating\nloadgen (-agents), it speaks with it over its standard input and output.\nNot for running by hand.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *removeSelf {
		if err := agents.RemoveSelf(); err != nil {
			fmt.Fprintln(stderr, "loadgen agent: removing itself:", err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return agents.Serve(ctx, stdin, stdout, stderr)
}

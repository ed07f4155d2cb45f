package main

import (
	"errors"
	"flag"
	"fmt"
	"net"

	"concbench/bench"
)

// addAgentFlags registers bench's multi-host flags on fs; the function it
// returns, called after parsing, checks them and returns the runner's Agents
// (nil without -agents). The flags are loadgen's, passed to every trial's
// loadgen as given, but for -agent-host, which is bench's.
func addAgentFlags(fs *flag.FlagSet) func() (*bench.Agents, error) {
	var args []string
	pass := func(name, usage string) {
		fs.Func(name, usage, func(v string) error {
			args = append(args, "-"+name+"="+v)
			return nil
		})
	}
	targets := fs.String("agents", "", "load every trial from loadgen agents on these hosts, started over ssh: `USER@HOST,…` or @FILE (loadgen -agents); bench starts each cell's server (models too) listening on -agent-host, and loadgen samples it over the agents' common window")
	host := fs.String("agent-host", "", "with -agents: this host's `ADDRESS` the agents reach, where the servers listen (e.g. 198.18.0.1 with make netns-up)")
	pass("agent-bin", "with -agents: loadgen's -agent-bin `FILE` (copy it to each host for each trial)")
	pass("agent-path", "with -agents: loadgen's -agent-path (loadgen on the hosts)")
	pass("ssh-port", "with -agents: loadgen's -ssh-port")
	pass("ssh-identity", "with -agents: loadgen's -ssh-identity")
	pass("ssh-config", "with -agents: loadgen's -ssh-config")
	pass("ssh-opt", "with -agents: loadgen's -ssh-opt (repeatable)")
	pass("max-offset", "with -agents: loadgen's -max-offset")
	wait := fs.Duration("agent-wait", 0, "with -agents: loadgen's -agent-wait (default: loadgen's)")
	return func() (*bench.Agents, error) {
		if *targets == "" {
			if *host != "" || len(args) > 0 || *wait != 0 {
				return nil, errors.New("-agent-host, -agent-*, -ssh-* and -max-offset are for -agents")
			}
			return nil, nil
		}
		if net.ParseIP(*host) == nil {
			return nil, fmt.Errorf("-agents needs -agent-host ADDRESS, an IP address of this host that the agents reach (got %q)", *host)
		}
		a := &bench.Agents{Host: *host, Targets: *targets, Wait: *wait, Args: args}
		if *wait != 0 {
			a.Args = append(a.Args, "-agent-wait="+wait.String())
		}
		return a, nil
	}
}

package bench

// Multi-host trials: the load of every trial comes from loadgen agents on
// other hosts (loadgen -agents, package loadgen/agents). bench then starts each
// cell's server itself, as it starts a peer — a model's `server -model M` too —
// listening on an address of this host the agents reach, and gives loadgen,
// the agents' coordinator here, its address, pid, cgroup and CPUs: the
// coordinator samples it over the agents' common window.

import (
	"net"
	"path/filepath"
	"strconv"
	"time"

	"concbench/internal/proto"
	"concbench/loadgen"
	"concbench/loadgen/agents"
)

// Agents is how a Runner's trials are loaded from other hosts.
type Agents struct {
	// Host is the address of this host the agents reach: every server listens
	// there (with -allow-remote), e.g. 198.18.0.1.
	Host string
	// Targets is loadgen's -agents: the agents' ssh destinations,
	// comma-separated, or @FILE (what Spec.Agents records).
	Targets string
	// Args are loadgen's other agent flags, passed to every trial as given:
	// -agent-bin, -agent-path, -ssh-port, -ssh-identity, -ssh-config,
	// -ssh-opt, -agent-wait, -max-offset.
	Args []string
	// Wait is the -agent-wait given (0: loadgen's default), which the trial's
	// time limit allows for.
	Wait time.Duration
}

func (a *Agents) wait() time.Duration {
	if a.Wait > 0 {
		return a.Wait
	}
	return agents.DefaultWait
}

// listenHost is where the servers bench starts listen: loopback, or the
// agents' Host.
func (r *Runner) listenHost() string {
	if r.Agents != nil {
		return r.Agents.Host
	}
	return "127.0.0.1"
}

// modelServer is a model's server as bench starts it for agents: concbench's
// `server` beside loadgen, listening on Agents.Host, with the arguments
// loadgen -model would give it.
var modelServer = peerDef{
	name: "server",
	find: func(o PeerOptions, lg string) (string, error) {
		return findFile("server", filepath.Join(filepath.Dir(lg), "server"), " (make build builds it)")
	},
	prepare: func(r *Runner, c Cell, _ string, _ *PeerRun) ([]string, string, error) {
		args := []string{"-model", BaseModel(c.Model), "-proto", c.Proto, "-addr", net.JoinHostPort(r.listenHost(), "0"), "-allow-remote"}
		if proto.IsDatagram(c.Proto) {
			// loadgen's batch is the server's, as loadgen -model gives it.
			args = append(args, "-batch", strconv.Itoa(max(c.Batch, loadgen.DefaultBatch)))
		}
		return append(args, r.Spec.serverArgs(c)...), "", nil
	},
}

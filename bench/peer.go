package bench

// The registry of reference peers, their options, and how bench starts one for a
// trial (what each peer needs of its own is in peer_NAME.go).
//
// Reference peers are servers that are not concbench models and not ours to tune:
// the single-threaded C servers for echo and rpc of peers/ — cepoll (epoll),
// curing (io_uring, liburing) and clibevent (libevent) — and nginx (static files
// over http). They run in the matrix like models under the name
// peer:NAME. bench starts a peer itself (package supervise), pinned to the CPUs
// loadgen gives the models' server, in a process group of its own, waits until it
// accepts connections, drives it with `loadgen -addr HOST:PORT -server-pid PID` —
// the same client pinning and the same /proc sampling of the server's process tree
// as a model cell — and stops it after the trial: SIGTERM, then SIGKILL of its
// whole process group past a grace period.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"concbench/internal/cpuset"
	"concbench/internal/kcount"
	"concbench/internal/proto"
	"concbench/internal/result"
	"concbench/internal/supervise"
)

// PeerPrefix marks a reference server in a model list: "peer:cepoll".
const PeerPrefix = "peer:"

// ErrPeerNotInstalled is the start error of a peer whose executable is missing.
var ErrPeerNotInstalled = errors.New("peer not installed")

// peerDef is one known reference server: a table entry, everything bench knows of
// it.
type peerDef struct {
	name   string   // without the prefix
	protos []string // the protocols it serves
	about  string   // one line for help and the report
	// find locates its executable (the PeerOptions setting, else where it usually
	// is), or returns ErrPeerNotInstalled (wrapped) saying where it looked.
	find func(o PeerOptions, loadgen string) (string, error)
	// prepare readies a trial of cell c with executable bin: its arguments, and the
	// address it is told to listen on, "" when it picks one and says it as its
	// first line ("listening on HOST:PORT", as concbench's server does). What it
	// writes for the trial it records in run.
	prepare func(r *Runner, c Cell, bin string, run *PeerRun) (args []string, addr string, err error)
}

var peerDefs = []peerDef{
	{
		name:    "cepoll",
		protos:  []string{"echo", "rpc"},
		about:   "single-threaded level-triggered epoll server in C (peers/cepoll), one core by construction",
		find:    findCepoll,
		prepare: prepareC,
	},
	{
		name:    "uring",
		protos:  []string{"echo", "rpc"},
		about:   "single-threaded io_uring server in C on liburing (peers/curing), built as the uring model is: the io_uring line's floor",
		find:    findCuring,
		prepare: prepareC,
	},
	{
		name:    "libevent",
		protos:  []string{"echo", "rpc"},
		about:   "single-threaded libevent server in C (peers/clibevent: event_base, evconnlistener, bufferevent): the library form of the reactor",
		find:    findClibevent,
		prepare: prepareC,
	},
	{
		name:    "nginx",
		protos:  []string{"http"},
		about:   "nginx, one worker process, static files with sendfile (peers/nginx)",
		find:    findNginx,
		prepare: prepareNginx,
	},
}

// PeerNames lists the known peers as model names ("peer:cepoll", …).
func PeerNames() []string {
	var out []string
	for _, p := range peerDefs {
		out = append(out, PeerPrefix+p.name)
	}
	return out
}

// IsPeer reports whether a model name names a reference peer.
func IsPeer(model string) bool { return strings.HasPrefix(model, PeerPrefix) }

func lookupPeer(model string) (peerDef, bool) {
	for _, p := range peerDefs {
		if PeerPrefix+p.name == model {
			return p, true
		}
	}
	return peerDef{}, false
}

// PeerAbout is a peer's one-line description ("" for a model).
func PeerAbout(model string) string {
	p, _ := lookupPeer(model)
	return p.about
}

// PeerSkip says why a peer cannot serve cell c: a protocol it does not speak, or
// per-request work (a flag of concbench's server only). It is "" when it can, and
// for models.
func PeerSkip(c Cell) string {
	p, ok := lookupPeer(c.Model)
	if !ok {
		return ""
	}
	if !slices.Contains(p.protos, c.Proto) {
		return fmt.Sprintf("%s does not speak %s (it serves %s)", c.Model, c.Proto, strings.Join(p.protos, ", "))
	}
	if c.Work != "" && c.Work != "none" {
		return fmt.Sprintf("%s has no per-request work (work %s is a flag of concbench's server)", c.Model, c.Work)
	}
	return ""
}

// PeerOptions say how bench finds and runs peers. The zero value finds cepoll
// beside loadgen and nginx on PATH (else /usr/sbin/nginx), serves nginx the
// standard test files in testfiles.DefaultDir(), and splits the CPUs as loadgen
// does.
type PeerOptions struct {
	// Cepoll, Curing and Clibevent are the C peers' executables; "" means the
	// one beside loadgen (make build puts them all in bin/).
	Cepoll, Curing, Clibevent string
	// Nginx is the nginx executable; "" means nginx on PATH, else /usr/sbin/nginx.
	Nginx string
	// Root is the directory nginx serves; "" means testfiles.DefaultDir(), what
	// the Go server serves without -root. The standard files are generated into it
	// before each http trial.
	Root string
	// ServerCPUs and ClientCPUs are the CPUs of the peer and of loadgen; nil means
	// loadgen's default split of bench's CPUs (the first half for the server),
	// the split every model cell gets.
	ServerCPUs, ClientCPUs []int
	// Grace is how long a peer has after SIGTERM before its process group is
	// killed; 0 means 10s (what loadgen gives a model's server).
	Grace time.Duration
	// StartTimeout is how long a peer has to accept connections; 0 means 10s.
	StartTimeout time.Duration
}

// PeerRun is how bench ran a peer for one trial, saved in the trial's record.
type PeerRun struct {
	Bin     string   `json:"bin"`
	Args    []string `json:"args"`
	Version string   `json:"version,omitempty"` // e.g. "nginx/1.22.1"
	// Config is the configuration file written for the trial (nginx), relative to
	// the run directory.
	Config string `json:"config,omitempty"`
	PID    int    `json:"pid,omitempty"`
	Addr   string `json:"addr,omitempty"`
	// CPUs is the peer's CPU affinity as read back from /proc after it started.
	CPUs []int `json:"cpus,omitempty"`
	// Exit is how it ended when bench stopped it; nil if it never started.
	Exit *result.Exit `json:"exit,omitempty"`
	// Output is the tail of its stdout and stderr, kept when something failed.
	Output string `json:"output,omitempty"`
	// Cgroup is the cgroup v2 bench started it in (its whole tree is born
	// there), which loadgen counts the kernel's work of (-server-cgroup); ""
	// when the kernel cannot count here, and CgroupMissing says why.
	Cgroup        string `json:"cgroup,omitempty"`
	CgroupMissing string `json:"cgroup_missing,omitempty"`
	cg            *kcount.Cgroup
}

// removeCgroup removes the peer's cgroup once the peer has exited.
func (run *PeerRun) removeCgroup() {
	if run != nil && run.cg != nil {
		run.cg.Remove()
		run.cg = nil
	}
}

// peerCgroup makes the cgroup a peer is started in, so that loadgen can count
// what its whole tree asks of the kernel; nil, and why, when this machine
// cannot count (loadgen would say the same).
func peerCgroup(model string) (*kcount.Cgroup, string) {
	if err := kcount.Available(); err != nil {
		return nil, err.Error()
	}
	cg, err := kcount.NewCgroup(sanitize(model))
	if err != nil {
		return nil, err.Error()
	}
	return cg, ""
}

// peerCPUs are the CPU sets of a peer trial.
func (o PeerOptions) peerCPUs() (server, client []int, err error) {
	if o.ServerCPUs != nil && o.ClientCPUs != nil {
		return o.ServerCPUs, o.ClientCPUs, nil
	}
	avail, err := cpuset.Available()
	if err != nil {
		return nil, nil, err
	}
	server, client, err = cpuset.Split(avail)
	if o.ServerCPUs != nil {
		server = o.ServerCPUs
	}
	if o.ClientCPUs != nil {
		client = o.ClientCPUs
	}
	return server, client, err
}

// startPeer starts the peer of trial t for one trial, pinned to serverCPUs, and
// waits until it accepts. On error nothing of it is left running; the PeerRun
// says as much as is known.
func (r *Runner) startPeer(ctx context.Context, t Trial, serverCPUs []int) (*supervise.Process, *PeerRun, error) {
	def, ok := lookupPeer(t.Cell.Model)
	switch {
	case !IsPeer(t.Cell.Model) && r.Agents != nil:
		def = modelServer // started by bench, for agents on other hosts
	case !ok:
		return nil, nil, fmt.Errorf("unknown peer %q (known: %s)", t.Cell.Model, strings.Join(PeerNames(), ", "))
	}
	bin, err := def.find(r.Peers, r.Loadgen)
	if err != nil {
		return nil, nil, err
	}
	run := &PeerRun{Bin: bin}
	args, addr, err := def.prepare(r, t.Cell, bin, run)
	if err != nil {
		return nil, run, err
	}
	run.Args = args
	// Its own process group lets bench kill whatever the peer forked (nginx's
	// worker); bench stops it, in order, after loadgen. It is cloned into a
	// cgroup of its own, where its children are born too.
	cmd := exec.Command(bin, args...)
	run.cg, run.CgroupMissing = peerCgroup(t.Cell.Model)
	if run.cg != nil {
		run.Cgroup = run.cg.Path()
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: run.cg.FD()}
	}
	p, err := supervise.Start(cmd, supervise.Options{
		CPUs: serverCPUs, Group: true, EarlyExit: "the peer exited before bench stopped it"})
	if err != nil {
		run.removeCgroup()
		return nil, run, err
	}
	run.PID = p.PID()
	// The peer may open as many descriptors as its hard limit allows, as the Go
	// server does (the Go runtime raises its own soft limit; exec restores the
	// original one for children).
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil {
		unix.Prlimit(p.PID(), unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: rl.Max, Max: rl.Max}, nil)
	}
	fail := func(err error) (*supervise.Process, *PeerRun, error) {
		run.Exit = p.Stop(r.grace())
		run.Output = p.Output()
		run.removeCgroup()
		return nil, run, err
	}
	timeout := r.Peers.StartTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	if addr == "" {
		if addr, err = p.Listening(ctx, timeout); err != nil {
			return fail(err)
		}
	}
	run.Addr = addr
	// A UDP server has bound its socket when it says where: there is no
	// connection to accept.
	if !proto.IsDatagram(t.Cell.Proto) {
		if err := p.WaitAccept(ctx, addr, timeout); err != nil {
			return fail(err)
		}
	}
	run.CPUs, _ = cpuset.Allowed(p.PID())
	return p, run, nil
}

func (r *Runner) grace() time.Duration {
	if r.Peers.Grace > 0 {
		return r.Peers.Grace
	}
	return 10 * time.Second
}

// findFile is a find for an executable at a path given or derived: bin, or
// ErrPeerNotInstalled saying where it was looked for and how to get it.
func findFile(name, bin, howTo string) (string, error) {
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("%w: no %s at %s%s", ErrPeerNotInstalled, name, bin, howTo)
	}
	return bin, nil
}

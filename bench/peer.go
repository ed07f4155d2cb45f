package bench

// Reference peers are servers that are not concbench models and not ours to tune:
// cepoll (peers/cepoll, a single-threaded C epoll server for echo and rpc) and
// nginx (static files over http). They run in the matrix like models under the name
// peer:NAME. bench starts a peer itself, pinned to the CPUs loadgen gives the
// models' server, waits until it accepts connections, drives it with
// `loadgen -addr HOST:PORT -server-pid PID` — the same client pinning and the same
// /proc sampling of the server's process tree as a model cell — and stops it after
// the trial: SIGTERM, then SIGKILL of its whole process group past a grace period.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	"golang.org/x/sys/unix"

	"concbench/internal/cpuset"
	"concbench/internal/result"
	"concbench/internal/testfiles"
)

// PeerPrefix marks a reference server in a model list: "peer:cepoll".
const PeerPrefix = "peer:"

// ErrPeerNotInstalled is the start error of a peer whose executable is missing.
var ErrPeerNotInstalled = errors.New("peer not installed")

// peerDef is one known reference server.
type peerDef struct {
	name   string   // without the prefix
	protos []string // the protocols it serves
	about  string   // one line for help and the report
}

var peerDefs = []peerDef{
	{"cepoll", []string{"echo", "rpc"}, "single-threaded level-triggered epoll server in C (peers/cepoll), one core by construction"},
	{"nginx", []string{"http"}, "nginx, one worker process, static files with sendfile (peers/nginx)"},
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
	// Cepoll is the cepoll executable; "" means cepoll beside loadgen (make build
	// puts both in bin/).
	Cepoll string
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

// nginxFallback is where nginx is looked for when it is not on PATH (Debian's
// /usr/sbin is not on every user's PATH). A variable for the tests.
var nginxFallback = "/usr/sbin/nginx"

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

// findPeer locates a peer's executable, or returns ErrPeerNotInstalled (wrapped)
// saying where it looked.
func (o PeerOptions) findPeer(name, loadgen string) (string, error) {
	switch name {
	case "cepoll":
		bin := o.Cepoll
		if bin == "" {
			bin = filepath.Join(filepath.Dir(loadgen), "cepoll")
		}
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("%w: no cepoll at %s (make peers builds it)", ErrPeerNotInstalled, bin)
		}
		return bin, nil
	case "nginx":
		if o.Nginx != "" {
			if _, err := os.Stat(o.Nginx); err != nil {
				return "", fmt.Errorf("%w: no nginx at %s", ErrPeerNotInstalled, o.Nginx)
			}
			return o.Nginx, nil
		}
		if p, err := exec.LookPath("nginx"); err == nil {
			return p, nil
		}
		if _, err := os.Stat(nginxFallback); err == nil {
			return nginxFallback, nil
		}
		return "", fmt.Errorf("%w: nginx is not on PATH nor at %s (make deps installs it)", ErrPeerNotInstalled, nginxFallback)
	}
	return "", fmt.Errorf("unknown peer %q", name)
}

// peerProc is a running peer: the process bench started, leader of its own
// process group (which nginx's workers share).
type peerProc struct {
	cmd     *exec.Cmd
	out     *lineTail     // its stdout and stderr
	outDone chan struct{} // closed when every writer of its output is gone
	exited  chan struct{} // closed once Wait returned
	err     error         // Wait's error, valid once exited is closed
}

// startPeerProc starts cmd pinned to cpus, in a process group of its own.
//
// Pinning is loadgen's (cmd/loadgen: forkPinned): a child inherits the CPU mask
// of the thread that forks it, so the fork happens on a locked thread whose mask
// is the peer's CPUs for that moment. The peer and every process and thread it
// creates are pinned from their first instruction; no taskset is needed.
//
// Its own process group lets bench kill whatever the peer forked (nginx's worker)
// and keeps a terminal's ^C away from it: bench stops it, in order, after loadgen.
// Pdeathsig kills the leader if bench itself dies without stopping it.
func startPeerProc(cmd *exec.Cmd, cpus []int) (*peerProc, error) {
	p := &peerProc{cmd: cmd, out: newLineTail(), outDone: make(chan struct{}), exited: make(chan struct{})}
	// Pipes of our own rather than io.Writers: exec would make Wait wait for the
	// copy, that is for every process holding the pipe (a worker the leader left
	// behind), while here Wait returns when the leader exits. Only stdout's first
	// line counts as cepoll's address line; stderr goes to the same tail.
	var pipes [2][2]*os.File // [stdout, stderr][read, write]
	for i := range pipes {
		r, w, err := os.Pipe()
		if err != nil {
			closeAll(pipes[:i])
			return nil, err
		}
		pipes[i] = [2]*os.File{r, w}
	}
	cmd.Stdout, cmd.Stderr = pipes[0][1], pipes[1][1]
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err := cpuset.StartPinned(cmd, cpus)
	pipes[0][1].Close()
	pipes[1][1].Close()
	if err != nil {
		pipes[0][0].Close()
		pipes[1][0].Close()
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	var copies sync.WaitGroup
	for i, w := range []io.Writer{p.out, &p.out.tail} {
		copies.Go(func() {
			io.Copy(w, pipes[i][0])
			pipes[i][0].Close()
		})
	}
	go func() {
		copies.Wait()
		close(p.outDone)
	}()
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	// The peer may open as many descriptors as its hard limit allows, as the Go
	// server does (the Go runtime raises its own soft limit; exec restores the
	// original one for children).
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil {
		unix.Prlimit(p.pid(), unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: rl.Max, Max: rl.Max}, nil)
	}
	return p, nil
}

func closeAll(pipes [][2]*os.File) {
	for _, p := range pipes {
		p[0].Close()
		p[1].Close()
	}
}

func (p *peerProc) pid() int { return p.cmd.Process.Pid }

func (p *peerProc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// waitAccept waits until addr accepts a TCP connection, the peer exits, ctx ends
// or timeout passes.
func (p *peerProc) waitAccept(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if !p.alive() {
			return fmt.Errorf("exited before accepting connections (%s)", describeExit(result.ExitOf(p.err)))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not accepting connections on %s after %v: %v", addr, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.exited:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop ends the peer: SIGTERM to the leader, SIGKILL to the whole group past
// grace, and SIGKILL to anything of the group still alive after the leader
// exited. The exit is clean only if the leader exited 0 after SIGTERM, in time,
// leaving nothing behind. It may be called again: later calls return the first
// answer.
func (p *peerProc) stop(grace time.Duration) *result.Exit {
	var e *result.Exit
	if !p.alive() {
		e = result.ExitOf(p.err)
		e.Clean = false
		e.Error = "the peer exited before bench stopped it"
	} else {
		syscall.Kill(p.pid(), syscall.SIGTERM)
		select {
		case <-p.exited:
			e = result.ExitOf(p.err)
			if !e.Clean {
				e.Error = "unclean exit after SIGTERM"
			}
		case <-time.After(grace):
			p.killGroup()
			<-p.exited
			e = &result.Exit{Code: -1, Signal: "killed", Error: fmt.Sprintf("still running %v after SIGTERM: its process group was killed", grace)}
		}
	}
	if p.killGroup() {
		e.Clean = false
		e.Error = strings.TrimPrefix(e.Error+"; processes of its group outlived it and were killed", "; ")
	}
	// The group is gone: the output pipe is at its end once what is in it is read.
	select {
	case <-p.outDone:
	case <-time.After(time.Second):
	}
	return e
}

// killGroup SIGKILLs whatever is left of the peer's process group and waits (up to
// 2 s) until it is gone; it reports whether anything was left.
func (p *peerProc) killGroup() bool { return killGroup(p.pid()) }

// killGroup SIGKILLs whatever is left of process group pgid and waits (up to 2 s)
// until it is gone; it reports whether anything was left.
func killGroup(pgid int) bool {
	if !groupAlive(pgid) {
		return false
	}
	syscall.Kill(-pgid, syscall.SIGKILL)
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline) && groupAlive(pgid); {
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// groupAlive reports whether process group pgid has a member that is not a
// zombie. Orphans of the group are reaped by init (or this machine's PID 1),
// which may take its time; a zombie holds nothing but its pid.
func groupAlive(pgid int) bool {
	if syscall.Kill(-pgid, 0) == syscall.ESRCH {
		return false
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" && f[0] != "X" {
			return true
		}
	}
	return false
}

func describeExit(e *result.Exit) string {
	switch {
	case e.Signal != "":
		return "signal: " + e.Signal // as Go says it: "signal: killed"
	case e.Error != "":
		return e.Error
	}
	return fmt.Sprintf("exit status %d", e.Code)
}

// lineTail keeps the tail of a process's output and hands over its first line.
type lineTail struct {
	tail
	lmu   sync.Mutex // guards first and done
	first []byte
	done  bool
	line  chan string // receives the first line, once
}

func newLineTail() *lineTail { return &lineTail{line: make(chan string, 1)} }

func (l *lineTail) Write(b []byte) (int, error) {
	l.lmu.Lock()
	if !l.done {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			l.first = append(l.first, b[:i]...)
			l.done = true
			l.line <- strings.TrimSpace(string(l.first))
		} else if l.first = append(l.first, b...); len(l.first) > tailMax {
			l.done = true
			l.line <- string(l.first[:tailMax])
		}
	}
	l.lmu.Unlock()
	return l.tail.Write(b)
}

// startPeer starts the peer of cell c for one trial and waits until it accepts.
// On error nothing of it is left running; the PeerRun says as much as is known.
func (r *Runner) startPeer(ctx context.Context, t Trial, serverCPUs []int) (*peerProc, *PeerRun, error) {
	def, ok := lookupPeer(t.Cell.Model)
	if !ok {
		return nil, nil, fmt.Errorf("unknown peer %q (known: %s)", t.Cell.Model, strings.Join(PeerNames(), ", "))
	}
	o := r.Peers
	bin, err := o.findPeer(def.name, r.Loadgen)
	if err != nil {
		return nil, nil, err
	}
	run := &PeerRun{Bin: bin}
	startTimeout := o.StartTimeout
	if startTimeout == 0 {
		startTimeout = 10 * time.Second
	}
	var addr string
	var cmd *exec.Cmd
	switch def.name {
	case "cepoll":
		run.Args = []string{"-proto", t.Cell.Proto, "-addr", "127.0.0.1:0"}
		cmd = exec.Command(bin, run.Args...)
	case "nginx":
		run.Version = nginxVersion(bin)
		if addr, err = freePort(); err != nil {
			return nil, run, err
		}
		conf, err := r.writeNginxConfig(t.Cell, addr)
		if err != nil {
			return nil, run, err
		}
		run.Config, _ = filepath.Rel(r.Store.Dir, conf)
		prefix := filepath.Dir(conf)
		run.Args = []string{"-c", conf, "-p", prefix + "/"}
		cmd = exec.Command(bin, run.Args...)
	}
	p, err := startPeerProc(cmd, serverCPUs)
	if err != nil {
		return nil, run, err
	}
	run.PID = p.pid()
	fail := func(err error) (*peerProc, *PeerRun, error) {
		run.Exit = p.stop(r.grace())
		run.Output = p.out.String()
		return nil, run, err
	}
	if addr == "" { // cepoll: its first line is "listening on HOST:PORT"
		select {
		case line := <-p.out.line:
			a, ok := strings.CutPrefix(line, "listening on ")
			if !ok {
				return fail(fmt.Errorf("its first line %q is not \"listening on HOST:PORT\"", line))
			}
			addr = a
		case <-p.exited:
			return fail(fmt.Errorf("exited before listening (%s)", describeExit(result.ExitOf(p.err))))
		case <-time.After(startTimeout):
			return fail(fmt.Errorf("did not print its address within %v", startTimeout))
		case <-ctx.Done():
			return fail(ctx.Err())
		}
	}
	run.Addr = addr
	if err := p.waitAccept(ctx, addr, startTimeout); err != nil {
		return fail(err)
	}
	run.CPUs, _ = cpuset.Allowed(p.pid())
	return p, run, nil
}

func (r *Runner) grace() time.Duration {
	if r.Peers.Grace > 0 {
		return r.Peers.Grace
	}
	return 10 * time.Second
}

// freePort picks a free loopback TCP port for a peer that cannot report the one
// it was given (nginx): bind port 0, read it, close. Another process could take
// it before the peer binds it; the peer then fails to start and says so.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// nginxVersion is "nginx/1.22.1", from `nginx -v`; "" if it cannot tell.
func nginxVersion(bin string) string {
	out, err := exec.Command(bin, "-v").CombinedOutput()
	if err != nil {
		return ""
	}
	_, v, ok := strings.Cut(strings.TrimSpace(string(out)), "version: ")
	if !ok {
		return ""
	}
	return v
}

// writeNginxConfig renders the trial's configuration into RUNDIR/peers/nginx/ (the
// prefix nginx is started with: pid file, error log and temporary directories go
// there) and generates the standard test files into the root it serves.
func (r *Runner) writeNginxConfig(c Cell, addr string) (string, error) {
	prefix, err := filepath.Abs(filepath.Join(r.Store.Dir, "peers", "nginx"))
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Join(prefix, "tmp"), 0o755); err != nil {
		return "", err
	}
	root := r.Peers.Root
	if root == "" {
		root = testfiles.DefaultDir()
	}
	if root, err = filepath.Abs(root); err != nil {
		return "", err
	}
	if err := testfiles.Generate(root); err != nil {
		return "", fmt.Errorf("generating the test files in %s: %w", root, err)
	}
	nc := NginxConfig{Listen: addr, Root: root, Prefix: prefix, WorkerConnections: max(1024, c.Conns+128)}
	nc.RlimitNofile = 2*nc.WorkerConnections + 64
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil && os.Geteuid() != 0 {
		nc.RlimitNofile = int(min(uint64(nc.RlimitNofile), rl.Max))
	}
	if os.Geteuid() == 0 {
		if u, err := user.Current(); err == nil {
			nc.User = u.Username
		}
	}
	conf := filepath.Join(prefix, "nginx.conf")
	if err := writeFileAtomic(conf, []byte(nc.Render())); err != nil {
		return "", err
	}
	return conf, nil
}

// NginxConfig is what bench writes into nginx.conf for a peer:nginx trial.
// peers/nginx/README.md says what each setting is and why; peers/nginx/nginx.conf
// is a rendered example (kept equal to Render by a test).
type NginxConfig struct {
	Listen string // 127.0.0.1:PORT
	Root   string // absolute: the directory the Go servers serve
	Prefix string // absolute: pid file, error log and temporary directories
	// WorkerConnections bounds the worker's connections (listening socket
	// included); RlimitNofile is its descriptor limit (a file being sent holds one).
	WorkerConnections int
	RlimitNofile      int
	// User is the user the worker runs as when nginx is started as root; ""
	// leaves nginx's default (nobody).
	User string
}

var nginxTemplate = template.Must(template.New("nginx.conf").Parse(`# nginx.conf for a concbench peer:nginx trial, written by bench (bench/peer.go).
# What each setting is and why: peers/nginx/README.md.
daemon off;
master_process on;
worker_processes 1;
{{- if .User}}
user {{.User}};
{{- end}}
worker_rlimit_nofile {{.RlimitNofile}};
pid {{.Prefix}}/nginx.pid;
error_log {{.Prefix}}/error.log warn;

events {
    worker_connections {{.WorkerConnections}};
}

http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 10000000;
    keepalive_timeout 65s;

    types {
        text/html html;
    }
    default_type application/octet-stream;

    client_body_temp_path {{.Prefix}}/tmp/body;
    proxy_temp_path {{.Prefix}}/tmp/proxy;
    fastcgi_temp_path {{.Prefix}}/tmp/fastcgi;
    uwsgi_temp_path {{.Prefix}}/tmp/uwsgi;
    scgi_temp_path {{.Prefix}}/tmp/scgi;

    server {
        listen {{.Listen}} backlog=4096;
        root {{.Root}};
    }
}
`))

// Render is the configuration file's text.
func (c NginxConfig) Render() string {
	var b strings.Builder
	if err := nginxTemplate.Execute(&b, c); err != nil {
		// The template is a constant over plain fields: it cannot fail.
		return "# " + err.Error() + "\n"
	}
	return b.String()
}

// Package models holds the server concurrency models that concbench compares, behind
// one interface, and the registry through which each model makes itself known.
//
// A model decides how connections are accepted and scheduled; it owns every read and
// write. What the bytes mean is the protocol's business (package internal/proto):
// a model feeds what it reads into the connection's proto.Session and writes back what
// the session returns. Any model runs any protocol with any work.
//
// Each model is one file named after its -model value (select.go, poll.go,
// epoll_lt.go and epoll_et.go over epoll.go, reactor.go, multireactor.go,
// uring.go (uring and uring-sqpoll), threadpool.go, thread.go, fork.go,
// procpool.go, prefork.go, goroutine.go),
// which says what is particular to it; what they share is in files of their own:
//
//   - config.go: Config, its defaults and Validate; model.go: Model, Env, the
//     registry and Server; stats.go: the counters (a plain struct of atomics that
//     may live in shared memory) and gauges; statsfile.go: the -stats file.
//   - poller.go: an epoll instance with its wake-up built in (the waker);
//     accept.go: the accept gate — accept4, the back-off on EMFILE, the listener
//     in or out of the interest set; clock.go: a loop's idle sweep and drain
//     deadline, and the shutdown step at the head of every pass.
//   - dgram.go: the datagram protocols (udp-echo) — DatagramServer, one
//     socket served by one thread, the readiness loops' datagram loop, the
//     SO_REUSEPORT group, the counting and the drop policy; each model's
//     ServeDatagrams is in its own file.
//   - evloop.go: an event loop's connections and the work done on a ready one;
//     table.go: select's and poll's table of connections; out.go: writing replies
//     (write, sendfile, MSG_MORE).
//   - blocking.go: the blocking connection server of thread, fork and procpool;
//     spawn.go: worker processes (re-executed, watched through pidfds, stopped);
//     connstatus.go: how a worker's connection ended; limits.go: the machine's
//     limits the models size themselves by.
//
// "The seed" in the models' comments means the study notes on Linux network
// programming that the project was created from (see the README): the design a
// model reproduces, such as the seed's process pool or its epoll reactor.
package models

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"concbench/internal/proto"
	"concbench/internal/sock"
)

// Sentinel errors.
var (
	// ErrUnknownModel is wrapped by New for a name no model registered.
	ErrUnknownModel = errors.New("unknown model")
	// ErrFDSetSize is logged (once) and counted when select is handed a descriptor
	// at or above FD_SETSIZE; the connection is closed.
	ErrFDSetSize = errors.New("descriptor at or above FD_SETSIZE")
)

// Model is one way of accepting and scheduling connections.
type Model interface {
	// Serve accepts connections on ln and serves each with a session of env.Proto
	// until ctx is cancelled. It then stops accepting at once (ln belongs to the
	// caller and stays open; Serve stops watching it) and ends every connection it
	// holds:
	//
	//   - with env.Config.Grace zero, it closes them all at once;
	//   - with Grace above zero, it drains them: a connection takes no new request
	//     (no more input is fed to its session) but writes everything it already
	//     owes; then its write side is shut down (shutdown(SHUT_WR): the client reads
	//     EOF right after the last owed byte), and it is closed when the client
	//     closes its end (a read returns 0) or when Grace has passed since the
	//     cancel, whichever comes first. Input that arrives meanwhile is read and
	//     discarded — a lingering close: closing a socket with unread input makes
	//     the kernel send a reset, which destroys replies still in flight. At the
	//     deadline whatever is left is closed at once.
	//
	// Either way Serve releases every descriptor, thread, goroutine and process it
	// started and returns nil. A non-nil error means the model could not start or
	// hit a fault it cannot serve through.
	Serve(ctx context.Context, ln *sock.Listener, env *Env) error
}

// Env is what a model serves with: the configuration, the protocol built from it,
// the counters it must keep, and where it logs.
type Env struct {
	Config Config
	Proto  proto.Protocol
	Stats  *Stats
	Log    *log.Logger
}

// NewEnv validates cfg (Config.Validate) and builds the protocol it names and
// fresh counters. A nil logger discards.
func NewEnv(cfg Config, logger *log.Logger) (*Env, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p, err := proto.New(cfg.Proto, cfg.protoOptions())
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	return &Env{Config: cfg, Proto: p, Stats: newStats(nil), Log: logger}, nil
}

// registry

type entry struct {
	summary string
	new     func() Model
	refusal string // why the model counts a connection in refused, if it ever does
	// available says whether this machine lets the model run (nil for one
	// that always can).
	available func() error
	// noDatagrams is why a model built on connections does not serve the
	// datagram protocols (see servesConnectionsOnly).
	noDatagrams string
}

var (
	regMu    sync.Mutex
	registry = map[string]entry{}
)

// Register makes a model available under name. summary is its one-line trade-off,
// shown in help. It panics on a duplicate name: that is a programming error caught
// at init.
func Register(name, summary string, newModel func() Model) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[name]; dup {
		panic("models: Register called twice for " + name)
	}
	registry[name] = entry{summary: summary, new: newModel}
}

// refuses records why model name closes a connection at once, counted in
// refused (StatsSnapshot.Refused); a model's init calls it after Register.
func refuses(name, why string) { amend(name, func(e *entry) { e.refusal = why }) }

// amend changes model name's registry entry.
func amend(name string, change func(*entry)) {
	regMu.Lock()
	defer regMu.Unlock()
	e := registry[name]
	change(&e)
	registry[name] = e
}

// needs records that model name runs only where available returns nil (a
// kernel feature that may be missing or disabled); a model's init calls it
// after Register.
func needs(name string, available func() error) {
	amend(name, func(e *entry) { e.available = available })
}

// Unavailable is why the named model cannot run on this machine (the kernel
// refuses what it is built on), or nil. Tests skip such a model with it, and
// bench records its cells as skipped.
func Unavailable(name string) error {
	regMu.Lock()
	e := registry[name]
	regMu.Unlock()
	if e.available == nil {
		return nil
	}
	return e.available()
}

// Refusal is why the named model refuses connections (accepts and closes them at
// once, counted in refused), or "" for a model that never does.
func Refusal(name string) string {
	regMu.Lock()
	defer regMu.Unlock()
	return registry[name].refusal
}

// Names lists the registered models, sorted.
func Names() []string {
	regMu.Lock()
	defer regMu.Unlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Summary is the one-line trade-off a model registered with.
func Summary(name string) string {
	regMu.Lock()
	defer regMu.Unlock()
	return registry[name].summary
}

// New returns a fresh instance of the named model; an unknown name gives an error
// wrapping ErrUnknownModel that lists the valid names.
func New(name string) (Model, error) {
	regMu.Lock()
	e, ok := registry[name]
	regMu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w %q (valid: %s)", ErrUnknownModel, name, strings.Join(Names(), ", "))
	}
	return e.new(), nil
}

// Server is the whole server process: listen, serve with one model, optionally
// write gauges, stop on ctx. The zero value needs only Config.
type Server struct {
	Config      Config
	AllowRemote bool              // allow a non-loopback listen address
	Log         *log.Logger       // nil discards
	OnListen    func(addr string) // called with the bound address once connections queue
	StatsPath   string            // if set, write a StatsLine here every StatsEvery
	StatsEvery  time.Duration     // 0 means 100ms
}

// Run validates Config (an error wraps ErrConfig), listens on Config.Addr
// (loopback only unless AllowRemote) and serves with the model Config.Model until
// ctx is cancelled. It returns nil after a clean shutdown.
func (s *Server) Run(ctx context.Context) error {
	env, err := NewEnv(s.Config, s.Log)
	if err != nil {
		return err
	}
	m, err := New(s.Config.Model)
	if err != nil {
		return err
	}
	// Refused before it listens: a client must not find a port that will
	// never serve.
	if err := Unavailable(s.Config.Model); err != nil {
		return fmt.Errorf("-model %s: %w", s.Config.Model, err)
	}
	listen := sock.Listen
	if proto.IsDatagram(s.Config.Proto) {
		listen = func(addr string, allowRemote bool) (*sock.Listener, error) {
			return sock.ListenUDP(addr, allowRemote, false)
		}
	}
	ln, err := listen(s.Config.Addr, s.AllowRemote)
	if err != nil {
		return err
	}
	defer ln.Close()
	if s.StatsPath != "" {
		f, err := os.Create(s.StatsPath)
		if err != nil {
			return err
		}
		defer f.Close()
		stop := WriteStats(f, env.Stats, orDefaultDur(s.StatsEvery, 100*time.Millisecond))
		defer stop()
	}
	if s.OnListen != nil {
		s.OnListen(ln.Addr)
	}
	if proto.IsDatagram(s.Config.Proto) {
		return m.(DatagramServer).ServeDatagrams(ctx, ln, env) // Validate checked it is one
	}
	return m.Serve(ctx, ln, env)
}

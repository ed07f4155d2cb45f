// Package models holds the server concurrency models that concbench compares, behind
// one interface, and the registry through which each model makes itself known.
//
// A model decides how connections are accepted and scheduled; it owns every read and
// write. What the bytes mean is the protocol's business (package internal/proto):
// a model feeds what it reads into the connection's proto.Session and writes back what
// the session returns. Any model runs any protocol with any work.
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
	"sync/atomic"
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

// NewEnv builds the protocol that cfg names and fresh counters. A nil logger discards.
func NewEnv(cfg Config, logger *log.Logger) (*Env, error) {
	p, err := proto.New(cfg.Proto, cfg.protoOptions())
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	return &Env{Config: cfg, Proto: p, Stats: new(Stats), Log: logger}, nil
}

// Config is everything that shapes a server run. The zero value is valid (with
// Proto set); every default is stated on its field. Results record it as JSON.
type Config struct {
	Model string `json:"model"` // registered model name
	Proto string `json:"proto"` // protocol name: echo or rpc
	Addr  string `json:"addr"`  // listen address, HOST:PORT or unix:PATH

	// Root is the directory the file and http protocols serve.
	Root string `json:"root,omitempty"`

	// Work is the per-request cost of rpc requests; zero is none.
	Work proto.Work `json:"work"`
	// MaxFrame is the largest rpc payload accepted, bytes; 0 means 1 MiB.
	MaxFrame int `json:"max_frame"`
	// HighWater is the back-pressure bound, bytes: a connection whose unsent output
	// exceeds it is not read until the output drains below it; 0 means 256 KiB.
	HighWater int `json:"high_water"`
	// ReadBuf is the size of one read, bytes; 0 means 64 KiB.
	ReadBuf int `json:"read_buf"`

	// Workers is the number of worker processes (procpool, prefork); 0 means one per CPU.
	Workers int `json:"workers,omitempty"`
	// MaxProcs caps live children of fork; 0 means sized to the machine's memory.
	MaxProcs int `json:"max_procs,omitempty"`
	// MinThreads and MaxThreads bound the threadpool; 0 means 2 and 64.
	MinThreads int `json:"min_threads,omitempty"`
	MaxThreads int `json:"max_threads,omitempty"`
	// QueueCap is the threadpool's task-queue capacity; 0 means 1024.
	QueueCap int `json:"queue_cap,omitempty"`
	// AdjustInterval is how often the threadpool's manager resizes it; 0 means 1s.
	AdjustInterval time.Duration `json:"adjust_interval,omitempty"`
	// Loops is the number of sub-reactors of multireactor; 0 means one per CPU.
	Loops int `json:"loops,omitempty"`
	// Balance is multireactor's hand-off policy: "rr" (round-robin, the zero value's
	// meaning) or "least" (fewest connections).
	Balance string `json:"balance,omitempty"`
	// IdleTimeout closes a connection from which no byte was read and to which no
	// byte was written for longer, in every model (counted in idle_closed); 0
	// disables. A client that stops reading its replies is closed by it too: once
	// back-pressure stops reading it, its writes make no progress. The event loops
	// sweep their connections every min(IdleTimeout/4, 1s); thread, fork and
	// procpool set SO_RCVTIMEO and SO_SNDTIMEO on the blocking socket; goroutine
	// sets a deadline before each read and write. The server flag's default is 60s.
	IdleTimeout time.Duration `json:"idle_timeout,omitempty"`
	// MaxOutput caps the reply bytes one connection may hold in memory, bytes: a
	// connection that owes more after a Feed is closed at once (counted in
	// output_capped); 0 means 4 MiB. Back-pressure (HighWater) keeps echo and rpc
	// well below it; it is the safety net for requests whose replies are large. The
	// blocking models write synchronously, so what they owe is one Feed's replies.
	MaxOutput int `json:"max_output"`
	// Grace is how long Serve drains its connections after ctx is cancelled (see
	// Model): each takes no new request, writes what it owes, shuts its write side
	// and is closed when the client closes its end, or when Grace has passed,
	// whichever comes first. 0 closes every connection at once. The event loops
	// drain in their loop, their wait bounded by the deadline; thread and
	// goroutine tell each connection's thread or goroutine to drain (blockingConn,
	// gConn); fork, procpool and prefork send their children SIGTERM, on which a
	// child drains its connections the same way (prefork's workers with their
	// epoll-et loop), and wait for them up to Grace plus childMargin (1s) before
	// SIGKILL. The server flag's default is 5s.
	Grace time.Duration `json:"grace,omitempty"`
	// Accept is prefork's accept distribution: "exclusive" (EPOLLEXCLUSIVE on the one
	// inherited socket, the zero value's meaning) or "reuseport" (a SO_REUSEPORT
	// socket per worker).
	Accept string `json:"accept,omitempty"`
}

// protoOptions are the protocol's options from c.
func (c Config) protoOptions() proto.Options {
	return proto.Options{MaxFrame: c.MaxFrame, Work: c.Work, Root: c.Root, MaxOutput: c.MaxOutput}
}

// Defaults for the zero values of Config.
const (
	DefaultHighWater = 256 << 10
	DefaultReadBuf   = 64 << 10
	DefaultMaxOutput = 4 << 20
)

func (c Config) highWater() int { return orDefault(c.HighWater, DefaultHighWater) }
func (c Config) readBuf() int   { return orDefault(c.ReadBuf, DefaultReadBuf) }
func (c Config) maxOutput() int64 {
	return int64(orDefault(c.MaxOutput, DefaultMaxOutput))
}

func orDefault(v, d int) int {
	if v > 0 {
		return v
	}
	return d
}

// Stats are a model's counters, safe for concurrent use. Read them with Snapshot.
// Besides the common counters a model may publish gauges of its own (children live,
// workers busy, threads live, queue length…) with Gauge.
type Stats struct {
	accepted, active, closed, protoErrors, ioErrors, refused, acceptPauses atomic.Int64
	idleClosed, outputCapped                                               atomic.Int64

	mu         sync.Mutex
	gauges     map[string]func() int64
	onSnapshot func()
}

// OnSnapshot registers f to run at the start of every Snapshot, for a model whose
// counters live elsewhere (prefork's workers count in shared memory) to bring
// them up to date first. f must be safe to call from any goroutine.
func (s *Stats) OnSnapshot(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onSnapshot = f
}

// Gauge publishes a model-specific figure under name; f is called at every
// Snapshot and must be safe to call from any goroutine. Registering a name again
// replaces it.
func (s *Stats) Gauge(name string, f func() int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gauges == nil {
		s.gauges = map[string]func() int64{}
	}
	s.gauges[name] = f
}

// StatsSnapshot is Stats at one moment.
type StatsSnapshot struct {
	Accepted     int64 `json:"accepted"`      // connections accepted
	Active       int64 `json:"active"`        // connections open now
	Closed       int64 `json:"closed"`        // connections closed, for any reason
	ProtoErrors  int64 `json:"proto_errors"`  // connections closed for malformed input
	IOErrors     int64 `json:"io_errors"`     // connections closed by a read or write error (reset, EPIPE)
	Refused      int64 `json:"refused"`       // connections accepted and closed at once (e.g. select's FD_SETSIZE)
	AcceptPauses int64 `json:"accept_pauses"` // times accepting was paused for lack of descriptors
	IdleClosed   int64 `json:"idle_closed"`   // connections closed for no byte read or written for Config.IdleTimeout
	OutputCapped int64 `json:"output_capped"` // connections closed for owing more than Config.MaxOutput bytes of replies
	// Gauges are the model's own figures by name (see each model's doc).
	Gauges map[string]int64 `json:"gauges,omitempty"`
}

// Snapshot reads the counters.
func (s *Stats) Snapshot() StatsSnapshot {
	s.mu.Lock()
	refresh := s.onSnapshot
	s.mu.Unlock()
	if refresh != nil {
		refresh()
	}
	return StatsSnapshot{
		Accepted: s.accepted.Load(), Active: s.active.Load(), Closed: s.closed.Load(),
		ProtoErrors: s.protoErrors.Load(), IOErrors: s.ioErrors.Load(),
		Refused: s.refused.Load(), AcceptPauses: s.acceptPauses.Load(),
		IdleClosed: s.idleClosed.Load(), OutputCapped: s.outputCapped.Load(),
		Gauges: s.readGauges(),
	}
}

func (s *Stats) readGauges() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.gauges) == 0 {
		return nil
	}
	g := make(map[string]int64, len(s.gauges))
	for name, f := range s.gauges {
		g[name] = f()
	}
	return g
}

func (s *Stats) opened() { s.accepted.Add(1); s.active.Add(1) }
func (s *Stats) done()   { s.active.Add(-1); s.closed.Add(1) }

// registry

type entry struct {
	summary string
	new     func() Model
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
	registry[name] = entry{summary, newModel}
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

// Run listens on Config.Addr (loopback only unless AllowRemote) and serves with the
// model Config.Model until ctx is cancelled. It returns nil after a clean shutdown.
func (s *Server) Run(ctx context.Context) error {
	m, err := New(s.Config.Model)
	if err != nil {
		return err
	}
	env, err := NewEnv(s.Config, s.Log)
	if err != nil {
		return err
	}
	ln, err := sock.Listen(s.Config.Addr, s.AllowRemote)
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
	return m.Serve(ctx, ln, env)
}

func orDefaultDur(v, d time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return d
}

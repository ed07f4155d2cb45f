package models

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"concbench/internal/proto"
	"concbench/internal/sock"
)

// ErrConfig is wrapped by every error of Config.Validate.
var ErrConfig = errors.New("invalid configuration")

// Config is everything that shapes a server run. The zero value is valid once
// Model and Proto are set; every default is stated on its field. Results record it
// as JSON. Each field is set by the server flag of the same name (MaxFrame by
// -max-frame, …), and Validate's errors name fields that way.
type Config struct {
	Model string `json:"model"` // registered model name (Names)
	Proto string `json:"proto"` // protocol name (proto.Names): echo, rpc, file or http
	Addr  string `json:"addr"`  // listen address, HOST:PORT or unix:PATH

	// Root is the directory the file and http protocols serve.
	Root string `json:"root,omitempty"`

	// Work is the per-request cost of rpc, file and http requests; zero is none.
	Work proto.Work `json:"work"`
	// MaxFrame is the largest rpc payload accepted, bytes; 0 means
	// proto.DefaultMaxFrame (1 MiB).
	MaxFrame int `json:"max_frame"`
	// HighWater is the back-pressure bound, bytes: a connection whose unsent output
	// exceeds it is not read until the output drains below it; 0 means
	// DefaultHighWater (256 KiB).
	HighWater int `json:"high_water"`
	// ReadBuf is the size of one read, bytes; 0 means DefaultReadBuf (64 KiB).
	ReadBuf int `json:"read_buf"`

	// Workers is the number of worker processes (procpool, prefork); 0 means one per CPU.
	Workers int `json:"workers,omitempty"`
	// MaxProcs caps live children of fork; 0 means sized to the machine's memory
	// and pid limit at start-up.
	MaxProcs int `json:"max_procs,omitempty"`
	// MinThreads and MaxThreads bound the threadpool; 0 means DefaultMinThreads
	// (2) and DefaultMaxThreads (64).
	MinThreads int `json:"min_threads,omitempty"`
	MaxThreads int `json:"max_threads,omitempty"`
	// QueueCap is the threadpool's task-queue capacity; 0 means DefaultQueueCap (1024).
	QueueCap int `json:"queue_cap,omitempty"`
	// AdjustInterval is how often the threadpool's manager resizes it; 0 means
	// DefaultAdjustInterval (1s).
	AdjustInterval time.Duration `json:"adjust_interval,omitempty"`
	// Loops is the number of sub-reactors of multireactor; 0 means one per CPU.
	Loops int `json:"loops,omitempty"`
	// Balance is multireactor's hand-off policy: BalanceRR (round-robin, also
	// what "" means) or BalanceLeast (fewest connections).
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
	// connection that owes more after a read's requests are answered is closed at
	// once (counted in output_capped); 0 means DefaultMaxOutput (4 MiB).
	// Back-pressure (HighWater) keeps echo and rpc well below it; it is the safety
	// net for requests whose replies are large. The blocking models write
	// synchronously, so what they owe is one read's replies.
	MaxOutput int `json:"max_output"`
	// Grace is how long a server drains its connections when it stops (see
	// Model.Serve): each takes no new request, writes what it owes, shuts its
	// write side and is closed when the client closes its end, or when Grace has
	// passed, whichever comes first. 0 closes every connection at once. The
	// process models (fork, procpool, prefork) pass SIGTERM to their children,
	// which drain the same way, and kill those still running a second past
	// Grace. The server flag's default is 5s.
	Grace time.Duration `json:"grace,omitempty"`
	// Accept is prefork's accept distribution: AcceptExclusive (EPOLLEXCLUSIVE
	// on the one inherited socket, also what "" means) or AcceptReuseport (a
	// SO_REUSEPORT socket per worker; TCP only).
	Accept string `json:"accept,omitempty"`
	// SQPoll gives uring's ring a kernel thread that polls its submission
	// ring (IORING_SETUP_SQPOLL; what the uring-sqpoll model always does).
	SQPoll bool `json:"sqpoll,omitempty"`
	// SQPollCPU pins the SQPoll thread to this CPU (IORING_SETUP_SQ_AFF), to
	// give it a core of its own; nil leaves it on the server's CPUs.
	SQPollCPU *int `json:"sqpoll_cpu,omitempty"`
	// RingEntries is the size of uring's submission ring (rounded up to a
	// power of two by the kernel; the completion ring is twice as large); 0
	// means DefaultRingEntries (4096).
	RingEntries int `json:"ring_entries,omitempty"`

	// Batch is how many datagrams one receive or send call moves in the
	// datagram protocols: 1 is recvfrom/sendto, more is recvmmsg/sendmmsg of
	// up to Batch (at most MaxBatch); 0 means DefaultBatch (1). Each model's
	// doc says how it applies.
	Batch int `json:"batch,omitempty"`
	// MaxDatagram is the largest datagram served, bytes — each receive slot's
	// size; a larger one is dropped whole (dropped_oversize). 0 means
	// proto.DefaultMaxDatagram (65507, the most an IPv4 datagram carries);
	// at most proto.MaxDatagramIPv6.
	MaxDatagram int `json:"max_datagram,omitempty"`
}

// Defaults for the zero values of Config, and the values of its enumerations.
const (
	DefaultHighWater      = 256 << 10
	DefaultReadBuf        = 64 << 10
	DefaultMaxOutput      = 4 << 20
	DefaultMinThreads     = 2
	DefaultMaxThreads     = 64
	DefaultQueueCap       = 1024
	DefaultAdjustInterval = time.Second

	BalanceRR    = "rr"
	BalanceLeast = "least"

	AcceptExclusive = "exclusive"
	AcceptReuseport = "reuseport"
)

// Validate checks c as a whole: a registered model and a known protocol, no
// negative size, count or duration, the threadpool's bounds in order (defaults
// applied), known Balance and Accept values, and no SO_REUSEPORT on a Unix
// socket address. Every error wraps ErrConfig. NewEnv calls it, so every server
// starts from a valid Config; a CLI calls it to refuse bad flags before it starts
// anything.
func (c Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, a...)...)
	}
	if c.Model == "" {
		return bad("-model is required (valid: %s)", strings.Join(Names(), ", "))
	}
	if !slices.Contains(Names(), c.Model) {
		return bad("%w %q (valid: %s)", ErrUnknownModel, c.Model, strings.Join(Names(), ", "))
	}
	if !slices.Contains(proto.Names(), c.Proto) {
		return bad("%w %q (valid: %s)", proto.ErrUnknown, c.Proto, strings.Join(proto.Names(), ", "))
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"-max-frame", int64(c.MaxFrame)}, {"-high-water", int64(c.HighWater)}, {"-read-buf", int64(c.ReadBuf)},
		{"-max-output", int64(c.MaxOutput)}, {"-workers", int64(c.Workers)}, {"-max-procs", int64(c.MaxProcs)},
		{"-min-threads", int64(c.MinThreads)}, {"-max-threads", int64(c.MaxThreads)}, {"-queue-cap", int64(c.QueueCap)},
		{"-loops", int64(c.Loops)}, {"-adjust-interval", int64(c.AdjustInterval)},
		{"-idle-timeout", int64(c.IdleTimeout)}, {"-grace", int64(c.Grace)}, {"-ring-entries", int64(c.RingEntries)},
		{"-batch", int64(c.Batch)}, {"-max-datagram", int64(c.MaxDatagram)},
	} {
		if f.v < 0 {
			return bad("%s is negative: 0 means its default, above 0 a value", f.name)
		}
	}
	if proto.IsDatagram(c.Proto) {
		if why := DatagramRefusal(c.Model); why != "" {
			return bad("-model %s does not serve -proto %s: %s (models that do: %s)", c.Model, c.Proto, why, strings.Join(DatagramModels(), ", "))
		}
		if sock.IsUnix(c.Addr) {
			return bad("-proto %s on %s: %w", c.Proto, c.Addr, sock.ErrUnixDatagram)
		}
	} else if c.Batch > 1 || c.MaxDatagram != 0 {
		return bad("-batch and -max-datagram apply to the datagram protocols (%s) only, not -proto %s", proto.UDPEcho, c.Proto)
	}
	if c.Batch > MaxBatch {
		return bad("-batch %d is above %d, the most datagrams one recvmmsg moves", c.Batch, MaxBatch)
	}
	if c.MaxDatagram > proto.MaxDatagramIPv6 {
		return bad("-max-datagram %d is above %d, the largest UDP payload", c.MaxDatagram, proto.MaxDatagramIPv6)
	}
	isUring := c.Model == "uring" || c.Model == "uring-sqpoll"
	if c.SQPoll && !isUring {
		return bad("-sqpoll applies to the uring model only, not %s", c.Model)
	}
	if c.SQPollCPU != nil && !(c.SQPoll || c.Model == "uring-sqpoll") {
		return bad("-sqpoll-cpu applies to uring with -sqpoll (or uring-sqpoll) only")
	}
	if c.SQPollCPU != nil && *c.SQPollCPU < 0 {
		return bad("-sqpoll-cpu %d: a CPU number is 0 or more", *c.SQPollCPU)
	}
	if c.RingEntries != 0 && !isUring {
		return bad("-ring-entries applies to the uring models only, not %s", c.Model)
	}
	if c.RingEntries > MaxRingEntries {
		return bad("-ring-entries %d is above the kernel's limit of %d", c.RingEntries, MaxRingEntries)
	}
	if lo, hi := orDefault(c.MinThreads, DefaultMinThreads), orDefault(c.MaxThreads, DefaultMaxThreads); lo > hi {
		return bad("-min-threads %d is above -max-threads %d", lo, hi)
	}
	if err := oneOf("-balance", c.Balance, BalanceRR, BalanceLeast); err != nil {
		return bad("%v", err)
	}
	if err := oneOf("-accept", c.Accept, AcceptExclusive, AcceptReuseport); err != nil {
		return bad("%v", err)
	}
	if c.Accept == AcceptReuseport && sock.IsUnix(c.Addr) {
		return bad("-accept %s on %s: %w (use -accept %s)", AcceptReuseport, c.Addr, sock.ErrReusePortUnix, AcceptExclusive)
	}
	return nil
}

// oneOf checks an enumeration's value; "" stands for the first.
func oneOf(name, v string, valid ...string) error {
	if v == "" || slices.Contains(valid, v) {
		return nil
	}
	return fmt.Errorf("%s %q: valid values are %s", name, v, strings.Join(valid, ", "))
}

// protoOptions are the protocol's options from c.
func (c Config) protoOptions() proto.Options {
	return proto.Options{MaxFrame: c.MaxFrame, Work: c.Work, Root: c.Root, MaxOutput: c.MaxOutput}
}

func (c Config) highWater() int { return orDefault(c.HighWater, DefaultHighWater) }
func (c Config) batch() int     { return orDefault(c.Batch, DefaultBatch) }
func (c Config) maxDatagram() int {
	return orDefault(c.MaxDatagram, proto.DefaultMaxDatagram)
}
func (c Config) readBuf() int { return orDefault(c.ReadBuf, DefaultReadBuf) }
func (c Config) maxOutput() int64 {
	return int64(orDefault(c.MaxOutput, DefaultMaxOutput))
}

func orDefault(v, d int) int {
	if v > 0 {
		return v
	}
	return d
}

func orDefaultDur(v, d time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return d
}

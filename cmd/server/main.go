// Command server runs one concurrency model with one protocol on one address.
//
//	server -model epoll-et -proto echo -addr 127.0.0.1:7000
//
// Its first line on stdout, once connections are being accepted, is exactly
// "listening on HOST:PORT". SIGTERM or SIGINT stops it: it stops accepting, drains
// every connection for up to -grace (each takes no new request, writes what it owes,
// shuts its write side and is closed when the client closes), closes what is left
// and exits 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"concbench/internal/proto"
	"concbench/internal/sock"
	"concbench/internal/testfiles"
	"concbench/internal/uring"
	"concbench/models"
)

type options struct {
	cfg         models.Config
	allowRemote bool
	statsPath   string
	nofile      int // RLIMIT_NOFILE to set, soft and hard; 0 leaves it
}

func main() {
	// A process model's worker is this binary re-executed: run its role and exit.
	models.RunWorkerIfChild()
	opts, err := parse(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(2)
	}
	if err := run(opts); err != nil {
		if errors.Is(err, uring.ErrUnavailable) {
			// Refused by the kernel or the sandbox: no retry will do better.
			fmt.Fprintln(os.Stderr, "server:", err)
			os.Exit(2)
		}
		log.Fatalf("server: %v", err)
	}
}

func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.cfg.Model, "model", "", "concurrency model (required; see the list below)")
	fs.StringVar(&o.cfg.Proto, "proto", "echo", "protocol: "+strings.Join(proto.Names(), " | "))
	fs.StringVar(&o.cfg.Addr, "addr", "127.0.0.1:7000", "listen address IP:PORT (port 0 picks a free one), or unix:PATH for a Unix domain socket (a stale socket file is replaced; the file is removed on exit)")
	fs.Var(&o.cfg.Work, "work", "per-request work for rpc: none | cpu:DUR | sleep:DUR (e.g. cpu:50us)")
	fs.IntVar(&o.cfg.MaxFrame, "max-frame", proto.DefaultMaxFrame, "largest rpc payload in bytes; a larger frame closes the connection")
	fs.IntVar(&o.cfg.HighWater, "high-water", models.DefaultHighWater, "stop reading a connection whose unsent output exceeds this many bytes")
	fs.IntVar(&o.cfg.MaxOutput, "max-output", models.DefaultMaxOutput, "close a connection whose replies held in memory exceed this many bytes, at once (counted in output_capped)")
	fs.IntVar(&o.cfg.ReadBuf, "read-buf", models.DefaultReadBuf, "bytes per read")
	fs.BoolVar(&o.allowRemote, "allow-remote", false, "allow binding a non-loopback address (prints a warning)")
	fs.StringVar(&o.statsPath, "stats", "", "write counters and gauges as JSON lines to `FILE` every 100ms")
	fs.IntVar(&o.nofile, "nofile", 0, fmt.Sprintf("set RLIMIT_NOFILE, soft and hard, to `N` descriptors (at least %d) before serving; worker processes inherit it (0: unchanged)", minNofile))
	fs.IntVar(&o.cfg.Workers, "workers", 0, "worker processes of procpool and prefork (0: one per CPU)")
	fs.IntVar(&o.cfg.MaxProcs, "max-procs", 0, "cap on live children of fork (0: sized to memory)")
	fs.IntVar(&o.cfg.MinThreads, "min-threads", models.DefaultMinThreads, "threadpool: fewest live threads")
	fs.IntVar(&o.cfg.MaxThreads, "max-threads", models.DefaultMaxThreads, "threadpool: most live threads")
	fs.IntVar(&o.cfg.QueueCap, "queue-cap", models.DefaultQueueCap, "threadpool: task queue capacity")
	fs.DurationVar(&o.cfg.AdjustInterval, "adjust-interval", models.DefaultAdjustInterval, "threadpool: how often the manager resizes the pool")
	fs.IntVar(&o.cfg.Loops, "loops", 0, "multireactor: sub-reactor threads (0: one per CPU)")
	fs.StringVar(&o.cfg.Balance, "balance", "rr", "multireactor: hand-off policy, rr | least")
	fs.DurationVar(&o.cfg.IdleTimeout, "idle-timeout", 60*time.Second, "every model: close a connection with no byte read or written for this long, counted in idle_closed (event loops: a sweep every min(timeout/4, 1s); thread, fork, procpool: SO_RCVTIMEO/SO_SNDTIMEO; goroutine: read and write deadlines); 0 disables")
	fs.DurationVar(&o.cfg.Grace, "grace", 5*time.Second, "on SIGTERM or SIGINT, drain connections for up to this long: stop accepting; each connection takes no new request but writes every reply it owes, then shuts its write side (the client reads EOF) and is closed when the client closes, input meanwhile discarded; whatever is left at the deadline is closed (0: close every connection at once)")
	fs.StringVar(&o.cfg.Accept, "accept", "exclusive", "prefork: accept distribution, exclusive | reuseport")
	fs.BoolVar(&o.cfg.SQPoll, "sqpoll", false, "uring: a kernel thread polls the submission ring (no syscall while busy, that thread's CPU besides); the uring-sqpoll model sets it")
	fs.Func("sqpoll-cpu", "uring with -sqpoll: pin the submission-polling thread to CPU `N`, a core of its own (default: the server's CPUs)", func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("want a CPU number, 0 or more")
		}
		o.cfg.SQPollCPU = &n
		return nil
	})
	fs.IntVar(&o.cfg.RingEntries, "ring-entries", 0, fmt.Sprintf("uring: submission ring entries, rounded up to a power of two, at most %d; the completion ring is twice as large (0: %d)", models.MaxRingEntries, models.DefaultRingEntries))
	fs.IntVar(&o.cfg.Batch, "batch", models.DefaultBatch, fmt.Sprintf("udp-echo: datagrams one receive or send call moves, 1 (recvfrom/sendto) to %d (recvmmsg/sendmmsg); each model's doc says how it applies", models.MaxBatch))
	fs.IntVar(&o.cfg.MaxDatagram, "max-datagram", 0, fmt.Sprintf("udp-echo: the largest datagram served, bytes; a larger one is dropped whole and counted in dropped_oversize (0: %d, the most an IPv4 datagram carries; at most %d)", proto.DefaultMaxDatagram, proto.MaxDatagramIPv6))
	fs.StringVar(&o.cfg.Root, "root", "", "file and http: the `DIR` served (default: concbench's generated test files, written to "+testfiles.DefaultDir()+")")
	fs.Usage = func() { usage(fs) }
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	// These flags show their default, so 0 is a value typed, not "the default"
	// it stands for in models.Config: a size of 0 bytes, which cannot serve.
	for name, v := range map[string]int{"-batch": o.cfg.Batch, "-max-frame": o.cfg.MaxFrame, "-high-water": o.cfg.HighWater, "-max-output": o.cfg.MaxOutput, "-read-buf": o.cfg.ReadBuf,
		"-min-threads": o.cfg.MinThreads, "-max-threads": o.cfg.MaxThreads, "-queue-cap": o.cfg.QueueCap, "-adjust-interval": int(o.cfg.AdjustInterval)} {
		if v <= 0 {
			return o, fmt.Errorf("%s %d: must be positive", name, v)
		}
	}
	if o.nofile != 0 && o.nofile < minNofile {
		return o, fmt.Errorf("-nofile %d: must be 0 (unchanged) or at least %d, the descriptors a server needs before its first connection", o.nofile, minNofile)
	}
	if err := o.cfg.Validate(); err != nil {
		return o, err
	}
	if !sock.IsUnix(o.cfg.Addr) {
		if _, err := sock.ParseListenAddr(o.cfg.Addr, o.allowRemote); errors.Is(err, sock.ErrNotLoopback) {
			return o, fmt.Errorf("-addr %s: %w: pass -allow-remote to bind other interfaces", o.cfg.Addr, sock.ErrNotLoopback)
		} else if err != nil {
			return o, err
		}
	}
	if o.cfg.Root == "" && proto.ServesFiles(o.cfg.Proto) {
		o.cfg.Root = testfiles.DefaultDir()
		if err := testfiles.Generate(o.cfg.Root); err != nil {
			return o, fmt.Errorf("generating the test files: %w", err)
		}
	}
	// The protocol is built once here so that a bad -root is a usage error.
	if _, err := proto.New(o.cfg.Proto, proto.Options{MaxFrame: o.cfg.MaxFrame, Root: o.cfg.Root}); err != nil {
		return o, err
	}
	return o, nil
}

func usage(fs *flag.FlagSet) {
	w := fs.Output()
	fmt.Fprint(w, `usage: server -model NAME [-proto echo|rpc|file|http|udp-echo] [-addr 127.0.0.1:7000] [flags]

Serves one protocol with one concurrency model. The first stdout line is
"listening on HOST:PORT" (or "listening on unix:PATH"); SIGTERM or SIGINT stops it cleanly
(exit 0), after draining connections for up to -grace.

Examples:
  server -model epoll-et -proto echo -addr 127.0.0.1:7000
  printf hello | nc -N 127.0.0.1 7000          # prints HELLO
  server -model select -proto rpc -work sleep:1ms -addr 127.0.0.1:0
  server -model goroutine -addr unix:/tmp/concbench.sock
  server -model epoll-et -proto udp-echo -batch 32 -addr 127.0.0.1:7000
  printf hello | nc -u -w1 127.0.0.1 7000      # prints HELLO (one datagram)

udp-echo (datagrams) is served by every model but fork, thread and procpool,
which are built on connections and refuse it (exit 2).

Models:
`)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, n := range models.Names() {
		fmt.Fprintf(tw, "  %s\t%s\n", n, models.Summary(n))
	}
	tw.Flush()
	fmt.Fprintln(w, "\nFlags:")
	fs.PrintDefaults()
}

func run(o options) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	logger := log.New(os.Stderr, "server: ", log.LstdFlags)
	if o.allowRemote {
		logger.Printf("warning: -allow-remote: %s may be reachable from other hosts", o.cfg.Addr)
	}
	if o.nofile > 0 {
		if err := setNofile(o.nofile); err != nil {
			return err
		}
	}
	srv := &models.Server{
		Config:      o.cfg,
		AllowRemote: o.allowRemote,
		Log:         logger,
		StatsPath:   o.statsPath,
		OnListen:    func(addr string) { fmt.Printf("listening on %s\n", addr) },
	}
	return srv.Run(ctx)
}

// minNofile is the smallest -nofile accepted: a server holds about ten descriptors
// before its first connection (standard streams, the listener, epoll instances and
// eventfds, the Go runtime's poller).
const minNofile = 16

// setNofile sets RLIMIT_NOFILE, soft and hard, to n. Both: procpool and prefork
// raise the soft limit to the hard one at start. Through package syscall, which
// then lets children inherit it (otherwise ForkExec restores the limit the process
// started with).
func setNofile(n int) error {
	lim := syscall.Rlimit{Cur: uint64(n), Max: uint64(n)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		var cur syscall.Rlimit
		syscall.Getrlimit(syscall.RLIMIT_NOFILE, &cur)
		return fmt.Errorf("-nofile %d (hard limit now %d; raising it needs CAP_SYS_RESOURCE): %w",
			n, cur.Max, os.NewSyscallError("setrlimit", err))
	}
	return nil
}

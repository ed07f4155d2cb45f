// Command loadgen drives a concbench server (or any echo/rpc server) with load and
// reports throughput, latency percentiles, errors by kind, and the server's CPU,
// memory, threads and processes.
//
//	loadgen -model epoll-et -c 10000 -d 10s
//	loadgen -addr 127.0.0.1:7000 -proto rpc -c 64 -rate 50000 -o run.json
//
// With -model it starts the server itself (bin/server beside it), pins server and
// loadgen to disjoint CPUs, runs, stops the server with SIGTERM and checks its exit.
// It exits 1 if any request failed or the server did not exit cleanly, 2 on a usage
// error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"concbench/internal/result"
	"concbench/loadgen"
	"concbench/models"
)

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, " ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

type options struct {
	w          result.Workload
	model      string
	serverBin  string
	serverArgs []string
	serverCPUs string
	clientCPUs string
	out        string
	quiet      bool
	unix       bool // -model: serve on a Unix domain socket in a temporary directory
}

// errFailed means the run completed but something failed: errors were counted or
// the server did not exit cleanly. The results were still written.
var errFailed = errors.New("run failed")

func main() {
	o, err := parse(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if _, err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	var serverArgs stringList
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.model, "model", "", "start `server -model NAME` and drive it (exclusive with -addr)")
	fs.StringVar(&o.w.Addr, "addr", "", "drive a server already listening at HOST:PORT, or at a Unix domain socket unix:PATH")
	fs.BoolVar(&o.unix, "unix", false, "with -model: start the server on a Unix domain socket (unix:$TMPDIR/concbench-*/server.sock) instead of loopback TCP")
	fs.StringVar(&o.w.Proto, "proto", "echo", "protocol: echo | rpc")
	fs.IntVar(&o.w.Conns, "c", 1, "concurrent connections")
	fs.DurationVar(&o.w.Duration, "d", 10*time.Second, "measured duration")
	fs.DurationVar(&o.w.Warmup, "warmup", 2*time.Second, "load before the measured duration, not measured")
	fs.IntVar(&o.w.Size, "size", 64, "request payload bytes")
	fs.Float64Var(&o.w.Rate, "rate", 0, "open loop: total requests/s on a schedule, latency from the intended send time (0: closed loop)")
	fs.IntVar(&o.w.Pipeline, "pipeline", 1, "requests outstanding per connection")
	fs.BoolVar(&o.w.Reconnect, "reconnect", false, "a new connection per request: connect, request, reply, close")
	fs.Int64Var(&o.w.Requests, "n", 0, "stop after this many requests in total (closed loop; 0: no limit)")
	fs.IntVar(&o.w.Loops, "loops", 0, "event loops (0: one per client CPU)")
	fs.IntVar(&o.w.ConnectInFlight, "connect-inflight", loadgen.DefaultConnectInFlight, "connects in flight during the ramp")
	fs.DurationVar(&o.w.Timeout, "timeout", loadgen.DefaultTimeout, "a reply later than this is a timeout error")
	fs.DurationVar(&o.w.ConnectTimeout, "connect-timeout", loadgen.DefaultTimeout, "a connect longer than this is a connect_timeout error")
	fs.StringVar(&o.out, "o", "", "write the result as JSON to `FILE.json`, and the latency histogram to FILE.hgrm")
	fs.StringVar(&o.serverBin, "server-bin", "", "server executable (default: `server` beside loadgen)")
	fs.Var(&serverArgs, "server-arg", "pass one more argument to the server, e.g. -server-arg=-work=sleep:1ms (repeatable; arguments after -- are passed too)")
	fs.StringVar(&o.serverCPUs, "server-cpus", "", "CPUs for the server, e.g. 0-1 (default: first half of this process's CPUs)")
	fs.StringVar(&o.clientCPUs, "client-cpus", "", "CPUs for loadgen (default: the second half with -model; unpinned with -addr)")
	fs.BoolVar(&o.quiet, "q", false, "no progress lines on stderr")
	fs.Usage = func() { usage(fs) }
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.serverArgs = append(serverArgs, fs.Args()...)
	switch {
	case (o.model == "") == (o.w.Addr == ""):
		return o, errors.New("give exactly one of -model NAME and -addr HOST:PORT")
	case o.model == "" && o.unix:
		return o, errors.New("-unix is for -model; with -addr, give unix:PATH")
	case o.model == "" && len(o.serverArgs) > 0:
		return o, fmt.Errorf("server arguments %q without -model", o.serverArgs)
	case o.w.Conns < 1 || o.w.Size < 1 || o.w.Pipeline < 1 || o.w.Duration <= 0:
		return o, errors.New("-c, -size, -pipeline and -d must be positive")
	}
	if o.model != "" {
		// Same build as the server: refuse an unknown model before starting anything.
		if _, err := models.New(o.model); err != nil {
			return o, err
		}
	}
	probe := o.w
	if probe.Addr == "" {
		probe.Addr = "127.0.0.1:1"
	}
	if _, err := loadgen.Resolve(probe); err != nil {
		return o, err
	}
	return o, nil
}

func usage(fs *flag.FlagSet) {
	fmt.Fprint(fs.Output(), `usage: loadgen (-model NAME [-unix] | -addr HOST:PORT|unix:PATH) [-c N] [-d 10s] [flags] [-- SERVER-ARGS]

Drives an echo or rpc server with N connections, verifies every reply, and reports
throughput, latency percentiles (HdrHistogram), errors by kind, and (with -model)
the server's CPU, memory, threads and processes sampled from /proc.

Closed loop by default: each connection keeps -pipeline requests outstanding and
latency is from the actual send. With -rate, open loop: sends follow a schedule
and latency is from the intended send time (coordinated omission corrected); the
uncorrected latency and the send lag are reported beside it.

With -model, loadgen starts the server itself, pins it and loadgen to disjoint
CPUs (default: the first half of the CPUs for the server), and passes it
-server-arg values and everything after --.

Examples:
  loadgen -model epoll-et -c 10000 -d 10s
  loadgen -model poll -proto rpc -c 50 -rate 20000 -o results/poll.json -- -work=cpu:20us
  loadgen -model fork -reconnect -c 8 -d 5s
  loadgen -addr 127.0.0.1:7000 -c 100 -pipeline 4
  loadgen -model epoll-et -unix -c 100 -d 5s      # over a Unix domain socket
  loadgen -addr unix:/tmp/concbench.sock -c 100

Flags:
`)
	fs.PrintDefaults()
}

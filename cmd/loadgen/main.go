// Command loadgen drives a concbench server (or any echo, rpc, file or HTTP
// server) with load and reports throughput, latency percentiles, errors by kind,
// and the server's CPU, memory, threads and processes.
//
//	loadgen -model epoll-et -c 10000 -d 10s
//	loadgen -addr 127.0.0.1:7000 -proto rpc -c 64 -rate 50000 -o run.json
//	loadgen -model epoll-et -proto http -path /1m.bin -c 100
//	loadgen -addr 127.0.0.1:8080 -proto http -server-pid 4242 -c 100
//
// With -model it starts the server itself (bin/server beside it), pins server and
// loadgen to disjoint CPUs, runs, stops the server with SIGTERM and checks its exit.
// With -addr and -server-pid it samples a server someone else started. It exits 1
// if any request failed or the server did not exit cleanly, 2 on a usage error.
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
	serverPID  int  // -addr: sample this externally started server's process tree
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
	fs.StringVar(&o.w.Proto, "proto", "echo", "protocol: echo | rpc | file | http")
	fs.StringVar(&o.w.File, "file", "", "proto file: the `NAME` every request asks for, relative to the server's root (default "+loadgen.DefaultFile+"; standard files: "+strings.Join(loadgen.StdNames(), ", ")+")")
	fs.StringVar(&o.w.Path, "path", "", "proto http: the `PATH` every request GETs (default "+loadgen.DefaultPath+")")
	fs.IntVar(&o.serverPID, "server-pid", 0, "with -addr: sample the CPU, memory, threads and processes of this `PID`'s process tree, a server loadgen did not start")
	fs.IntVar(&o.w.Conns, "c", 1, "concurrent connections")
	fs.DurationVar(&o.w.Duration, "d", 10*time.Second, "measured duration")
	fs.DurationVar(&o.w.Warmup, "warmup", 2*time.Second, "load before the measured duration, not measured")
	fs.IntVar(&o.w.Size, "size", loadgen.DefaultSize, "echo and rpc: request payload bytes")
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
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	files := o.w.Proto == "file" || o.w.Proto == "http"
	switch {
	case files && set["size"]:
		return o, fmt.Errorf("-size is for echo and rpc: a %s request asks for a name (-file NAME for file, -path /PATH for http)", o.w.Proto)
	case o.w.File != "" && o.w.Proto != "file":
		return o, fmt.Errorf("-file is for -proto file (with -proto %s)", o.w.Proto)
	case o.w.Path != "" && o.w.Proto != "http":
		return o, fmt.Errorf("-path is for -proto http (with -proto %s)", o.w.Proto)
	}
	if files {
		o.w.Size = 0
	}
	switch {
	case (o.model == "") == (o.w.Addr == ""):
		return o, errors.New("give exactly one of -model NAME and -addr HOST:PORT")
	case o.model == "" && o.unix:
		return o, errors.New("-unix is for -model; with -addr, give unix:PATH")
	case o.model == "" && len(o.serverArgs) > 0:
		return o, fmt.Errorf("server arguments %q without -model", o.serverArgs)
	case o.w.Conns < 1 || (!files && o.w.Size < 1) || o.w.Pipeline < 1 || o.w.Duration <= 0:
		return o, errors.New("-c, -size, -pipeline and -d must be positive")
	case o.serverPID != 0 && o.model != "":
		return o, errors.New("-server-pid is for a server loadgen did not start (-addr); with -model loadgen samples its own")
	case o.serverPID < 0 || o.serverPID == os.Getpid():
		return o, fmt.Errorf("-server-pid %d: want the pid of the server process", o.serverPID)
	}
	if o.serverPID != 0 {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/stat", o.serverPID)); err != nil {
			return o, fmt.Errorf("-server-pid %d: no such process (%v)", o.serverPID, err)
		}
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
	w, err := loadgen.Resolve(probe)
	if err != nil {
		return o, err
	}
	// A server started without -root serves only the standard files: another name
	// could only fail.
	if files && o.model != "" && !hasRoot(o.serverArgs) {
		name, flagName := w.File, "-file"
		if w.Proto == "http" {
			name, flagName = w.Path, "-path"
		}
		if !loadgen.IsStd(w.Proto, name) {
			prefix := ""
			if w.Proto == "http" {
				prefix = "/"
			}
			return o, fmt.Errorf("%s %s: the server -model starts serves the standard files only: %s%s (or give it -server-arg=-root=DIR)",
				flagName, name, prefix, strings.Join(loadgen.StdNames(), ", "+prefix))
		}
	}
	return o, nil
}

// hasRoot reports whether server arguments set the server's -root.
func hasRoot(args []string) bool {
	for _, a := range args {
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if a == "root" || strings.HasPrefix(a, "root=") {
			return true
		}
	}
	return false
}

func usage(fs *flag.FlagSet) {
	fmt.Fprint(fs.Output(), `usage: loadgen (-model NAME [-unix] | -addr HOST:PORT|unix:PATH [-server-pid PID]) [-c N] [-d 10s] [flags] [-- SERVER-ARGS]

Drives a server with N connections, verifies every reply, and reports throughput,
latency percentiles (HdrHistogram), errors by kind, and (with -model, or -addr with
-server-pid) the server's CPU, memory, threads and processes sampled from /proc.

Protocols (-proto):
  echo  -size bytes of lowercase letters; the reply is them uppercased
  rpc   the same in frames: 4-byte big-endian length, then the payload
  file  one frame naming -file NAME; the reply is a frame "OK <size>", the content
        in frames of at most 64 KiB, and an empty frame (or one frame "ERR <reason>")
  http  GET -path /PATH over HTTP/1.1 keep-alive; the response by Content-Length
For file and http, -size does not apply (giving it is an error). The standard
files, which a concbench server started without -root serves, are
  `+strings.Join(loadgen.StdNames(), ", ")+`
and their replies are verified by size and CRC32C; any other file by its framing
and a size consistent with the one announced.
A wrong size or checksum is a mismatch error, an ERR frame a server_error, an
HTTP status other than 200 an http_status error (the connection is then closed).
Latency runs to the last byte of the reply. With -reconnect, http asks
"Connection: close" and the server closes after the response; echo, rpc and file
half-close after the request instead.

Closed loop by default: each connection keeps -pipeline requests outstanding and
latency is from the actual send. With -rate, open loop: sends follow a schedule
and latency is from the intended send time (coordinated omission corrected); the
uncorrected latency and the send lag are reported beside it.

With -model, loadgen starts the server itself, pins it and loadgen to disjoint
CPUs (default: the first half of the CPUs for the server), and passes it
-proto, -server-arg values and everything after --. For file and http the server
then serves the standard files.

With -addr and -server-pid PID, loadgen samples the process tree of PID (a
server it did not start: a C peer, nginx's master with its workers) as it would
its own, and records the CPUs PID may run on; it does not stop it.

Examples:
  loadgen -model epoll-et -c 10000 -d 10s
  loadgen -model poll -proto rpc -c 50 -rate 20000 -o results/poll.json -- -work=cpu:20us
  loadgen -model fork -reconnect -c 8 -d 5s
  loadgen -addr 127.0.0.1:7000 -c 100 -pipeline 4
  loadgen -model epoll-et -unix -c 100 -d 5s      # over a Unix domain socket
  loadgen -addr unix:/tmp/concbench.sock -c 100
  loadgen -model epoll-et -proto http -path /index.html -c 100 -d 5s
  loadgen -model epoll-et -proto http -path /1m.bin -c 100 -pipeline 2
  loadgen -model epoll-et -proto file -file 1m.bin -c 10 -d 5s
  loadgen -model thread -proto file -file 16k.bin -c 50 -reconnect
  loadgen -addr 127.0.0.1:8080 -proto http -path /64k.bin -server-pid 4242 -client-cpus 1 -c 100

Flags:
`)
	fs.PrintDefaults()
}

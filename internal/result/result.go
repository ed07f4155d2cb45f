// Package result is the typed schema of a load run's result: what loadgen writes
// with -o FILE.json and what bench reads back. Every figure a run reports is a field
// here, documented where it is declared; nothing is scraped from text output.
//
// Units are in the field names: _us is microseconds, _seconds seconds, _bytes bytes.
// Latency percentiles come from HdrHistograms (1 µs to 60 s, 3 significant digits)
// merged across the load generator's event loops, never averaged.
package result

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// SchemaVersion is incremented whenever a field changes meaning or is removed.
const SchemaVersion = 1

// Run is one loadgen run: configuration, environment and every measured figure.
type Run struct {
	Schema  int       `json:"schema"`  // SchemaVersion of the writer
	Started time.Time `json:"started"` // wall-clock time the run started
	Config  Config    `json:"config"`  // what produced the figures
	Env     Env       `json:"env"`     // where they were produced
	Load    Load      `json:"load"`    // client-side figures: throughput, latency, errors
	// Server is the server's process tree as sampled from /proc: the server loadgen
	// started (-model), or one started by someone else and named by -server-pid; nil
	// when loadgen drove -addr without -server-pid and so could not see it.
	Server *Server `json:"server,omitempty"`
	Client Client  `json:"client"` // the load generator's own CPU use
	// ClientBound is set when the load generator's CPUs were at least 90% busy: the
	// throughput is then the client's limit, not the server's.
	ClientBound bool `json:"client_bound"`
	// Warnings are the preflight and run warnings, as printed.
	Warnings []string `json:"warnings,omitempty"`
	// HistogramFile is the path of the merged latency histogram in HdrHistogram's
	// percentile-distribution text format (.hgrm), written beside the JSON.
	HistogramFile string `json:"histogram_file,omitempty"`
}

// Workload is the shape of the load: what the engine (package loadgen) runs. The zero
// value is valid with Addr set; every default is stated on its field.
type Workload struct {
	Addr  string `json:"addr"`  // server address, HOST:PORT or unix:PATH
	Proto string `json:"proto"` // "echo", "rpc", "file" or "http"; "" means echo
	// Conns is the number of concurrent connections; 0 means 1.
	Conns int `json:"conns"`
	// Pipeline is the requests outstanding per connection; 0 means 1.
	Pipeline int `json:"pipeline"`
	// Size is the request payload in bytes (the rpc frame header is extra); 0 means
	// 64 for echo and rpc. It stays 0 for file and http, whose requests are a name.
	Size int `json:"size"`
	// File is the name every file request asks for, relative to the server's root;
	// "" means 1k.bin. Only for proto file. A standard file (package testfiles) is
	// verified by size and CRC32C, any other by framing and a consistent size.
	File string `json:"file,omitempty"`
	// Path is the path every http request GETs; "" means /index.html. Only for proto
	// http. A standard file's path is verified by size and CRC32C.
	Path string `json:"path,omitempty"`
	// Rate is the open-loop target in requests per second over all connections;
	// 0 means closed loop (each connection sends when its previous reply arrived).
	Rate float64 `json:"rate,omitempty"`
	// Duration is the measured part of the run; 0 means 10s.
	Duration time.Duration `json:"duration_ns"`
	// Warmup runs load before the measured part; its requests are not in the
	// latency histograms nor the throughput (they are in the timeline). 0 is none.
	Warmup time.Duration `json:"warmup_ns"`
	// Requests stops the run after this many requests in total (closed loop only);
	// 0 means no limit. The run still stops at Warmup+Duration.
	Requests int64 `json:"requests,omitempty"`
	// Reconnect makes every request use a new connection: connect, request,
	// half-close, reply, server's close.
	Reconnect bool `json:"reconnect,omitempty"`
	// Loops is the number of event loops (OS threads); 0 means one per entry of
	// CPUs, or 1 when CPUs is empty.
	Loops int `json:"loops"`
	// CPUs pins event loop i to CPUs[i % len(CPUs)]; empty means no pinning.
	CPUs []int `json:"cpus,omitempty"`
	// ConnectInFlight bounds the connects in progress during the initial ramp, over
	// all loops; 0 means 256.
	ConnectInFlight int `json:"connect_in_flight"`
	// Timeout is how long a request may wait for its reply before the connection is
	// counted as a timeout error and reconnected; 0 means 5s.
	Timeout time.Duration `json:"timeout_ns"`
	// ConnectTimeout is how long a connect may take; 0 means 5s.
	ConnectTimeout time.Duration `json:"connect_timeout_ns"`
	// Backoff is the wait before reconnecting after a failed connection; 0 means 100ms.
	Backoff time.Duration `json:"backoff_ns"`
}

// Config is the whole run's configuration: the workload and the server loadgen
// started (if any), with the CPU pinning of both sides.
type Config struct {
	Workload Workload `json:"workload"`
	// Model is the server model loadgen started; "" when it drove -addr.
	Model string `json:"model,omitempty"`
	// ServerBin is the server executable started.
	ServerBin string `json:"server_bin,omitempty"`
	// ServerArgs are the server's full arguments.
	ServerArgs []string `json:"server_args,omitempty"`
	// ServerCPUs and ClientCPUs are the disjoint CPU sets of server and loadgen;
	// ClientCPUs is empty when loadgen was not pinned.
	ServerCPUs []int `json:"server_cpus,omitempty"`
	ClientCPUs []int `json:"client_cpus,omitempty"`
	// PinningDefault is set when the CPU sets are the default split of the machine.
	PinningDefault bool `json:"pinning_default,omitempty"`
}

// Env is where the run happened.
type Env struct {
	Hostname    string            `json:"hostname"`
	Kernel      string            `json:"kernel"`    // uname sysname, release and version
	Arch        string            `json:"arch"`      // uname machine
	CPUModel    string            `json:"cpu_model"` // /proc/cpuinfo "model name"
	NumCPU      int               `json:"num_cpu"`   // CPUs online
	GoVersion   string            `json:"go_version"`
	GOMAXPROCS  int               `json:"gomaxprocs"`   // of the load generator during the run
	GitRevision string            `json:"git_revision"` // of the loadgen build, "" if unknown
	GitModified bool              `json:"git_modified"` // the build had uncommitted changes
	NoFileLimit uint64            `json:"nofile_limit"` // RLIMIT_NOFILE (soft) during the run
	Sysctls     map[string]string `json:"sysctls"`      // the networking and fd sysctls that shape a run, by /proc/sys path
}

// Load is what the client measured.
type Load struct {
	// Mode is "closed" (each connection waits for its replies before sending more;
	// latency is from the actual send) or "open" (sends on a schedule; latency is
	// from the intended send time, coordinated omission corrected).
	Mode string `json:"mode"`
	// Requests is the number of correct replies completed in the measured window.
	Requests int64 `json:"requests"`
	// Seconds is the length of the measured window.
	Seconds float64 `json:"seconds"`
	// Throughput is Requests / Seconds.
	Throughput float64 `json:"throughput"`
	// TargetRate is the open-loop rate asked for (requests/s); 0 in closed loop.
	TargetRate float64 `json:"target_rate,omitempty"`
	// RateShortfall is set when the open-loop throughput is more than 2% below TargetRate.
	RateShortfall bool `json:"rate_shortfall,omitempty"`
	// Latency is the request latency: from the intended send time in open loop
	// (corrected), from the actual send in closed loop.
	Latency Percentiles `json:"latency"`
	// Uncorrected is open-loop latency from the actual send time (what a tool that
	// ignores coordinated omission would report); nil in closed loop.
	Uncorrected *Percentiles `json:"uncorrected,omitempty"`
	// SendLag is how late sends went out after their intended time (open loop); nil
	// in closed loop.
	SendLag *Percentiles `json:"send_lag,omitempty"`
	// Connect describes the connections: the ramp and connect latency.
	Connect Connect `json:"connect"`
	// Errors counts errors by kind (see loadgen's ErrorKind); a kind with no error
	// is absent. Every failure is counted once; requests it lost are not retried.
	Errors map[string]int64 `json:"errors,omitempty"`
	// ErrorsTotal is the sum of Errors.
	ErrorsTotal int64 `json:"errors_total"`
	// InFlightAtEnd is the requests sent but not answered when the run stopped
	// (neither successes nor errors).
	InFlightAtEnd int64 `json:"in_flight_at_end"`
	// Timeline is one entry per second of load, warm-up included.
	Timeline []Second `json:"timeline"`
	// LatencyHist is the whole latency histogram of Latency (µs) in HdrHistogram's
	// V2 compressed encoding, base64 — the form HdrHistogram's logs carry — so that
	// repetitions can be merged exactly and percentiles read from the merge. Empty
	// in results written before the field existed.
	LatencyHist string `json:"latency_hist,omitempty"`
}

// Connect describes connection establishment.
type Connect struct {
	Target int `json:"target"` // connections asked for (-c)
	// Established is the connections open when the ramp ended (reconnect mode: 0,
	// there is no ramp).
	Established int `json:"established"`
	// RampSeconds is the time from the first connect to the last initial connect
	// resolved (established or failed): the time to reach Target connections.
	RampSeconds float64 `json:"ramp_seconds"`
	// Latency is connect latency over every successful connect of the run.
	Latency Percentiles `json:"latency"`
}

// Percentiles summarises one latency histogram, in microseconds.
type Percentiles struct {
	Count   int64   `json:"count"` // values recorded
	MinUS   int64   `json:"min_us"`
	MeanUS  float64 `json:"mean_us"`
	P50US   int64   `json:"p50_us"`
	P90US   int64   `json:"p90_us"`
	P99US   int64   `json:"p99_us"`
	P999US  int64   `json:"p99_9_us"`
	P9999US int64   `json:"p99_99_us"`
	MaxUS   int64   `json:"max_us"`
}

// Second is one second of the timeline.
type Second struct {
	T        int   `json:"t"`        // seconds since load started (0-based)
	Warmup   bool  `json:"warmup"`   // the second lies (at least partly) in the warm-up
	Requests int64 `json:"requests"` // correct replies completed in this second
	Errors   int64 `json:"errors"`   // errors in this second
	// P99US is the 99th percentile latency of the replies completed in this second
	// (corrected in open loop), at 2 significant digits; 0 if none.
	P99US int64 `json:"p99_us"`
}

// Server is the server's process tree as sampled from /proc.
type Server struct {
	PID int `json:"pid"` // the server process: started by loadgen, or given by -server-pid
	// External is set when loadgen did not start the server (-server-pid): it was
	// sampled but not stopped, so Exit is nil.
	External bool `json:"external,omitempty"`
	// CPUCoresMean is the tree's CPU time over the measured window divided by its
	// length: 1.0 is one core fully busy. Exited, reaped descendants are included.
	CPUCoresMean float64 `json:"cpu_cores_mean"`
	// CPUCoresMax is the highest CPU use over one sampling interval (100 ms).
	CPUCoresMax float64 `json:"cpu_cores_max"`
	RSSMaxBytes int64   `json:"rss_max_bytes"` // highest summed resident set of the tree
	ThreadsMax  int     `json:"threads_max"`   // highest summed thread count of the tree
	ProcsMax    int     `json:"procs_max"`     // highest number of processes in the tree
	// VoluntaryCtxSwitches and InvoluntaryCtxSwitches are the context switches of the
	// tree's threads over the measured window: per thread, its count at the end
	// less its count at the start (all of it for a thread born since). The kernel
	// drops a thread's count when it exits, so when threads or processes came and
	// went during the window (a process or thread per connection that closes)
	// CtxSwitchesLowerBound is set: the figures leave the exited ones out.
	VoluntaryCtxSwitches   int64 `json:"voluntary_ctx_switches"`
	InvoluntaryCtxSwitches int64 `json:"involuntary_ctx_switches"`
	CtxSwitchesLowerBound  bool  `json:"ctx_switches_lower_bound,omitempty"`
	// Samples are the raw samples, every 100 ms, over the whole run.
	Samples []ProcSample `json:"samples"`
	// Exit is how the server ended when loadgen stopped it; nil for an external
	// one, unless it exited during the run (then not clean, its status unknown).
	Exit *Exit `json:"exit,omitempty"`
}

// ProcSample is one /proc sample of a process tree.
type ProcSample struct {
	T        float64 `json:"t"`         // seconds since load started (negative: during the ramp)
	CPUCores float64 `json:"cpu_cores"` // CPU used since the previous sample, in cores
	RSSBytes int64   `json:"rss_bytes"` // summed resident set
	Threads  int     `json:"threads"`   // summed threads
	Procs    int     `json:"procs"`     // processes in the tree
}

// Exit is how a server process ended.
type Exit struct {
	Code   int    `json:"code"`             // exit status, -1 if killed by a signal
	Signal string `json:"signal,omitempty"` // the signal that killed it
	// Clean is set when it exited 0 after SIGTERM, within the grace period.
	Clean bool   `json:"clean"`
	Error string `json:"error,omitempty"` // what went wrong otherwise
}

// Client is the load generator's own CPU use over the measured window.
type Client struct {
	CPUs       int     `json:"cpus"`        // CPUs it may run on
	CPUSeconds float64 `json:"cpu_seconds"` // user+system time (getrusage)
	CPUCores   float64 `json:"cpu_cores"`   // CPUSeconds / window length
	// Busy is CPUCores / CPUs: 1.0 means every client CPU was busy.
	Busy float64 `json:"busy"`
}

// ClientBoundAt is the Busy fraction at or above which a run is ClientBound.
const ClientBoundAt = 0.9

// WriteFile writes r as indented JSON to path.
func WriteFile(path string, r *Run) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadFile reads a Run written by WriteFile, refusing another schema version.
func ReadFile(path string) (*Run, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Run
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if r.Schema != SchemaVersion {
		return nil, fmt.Errorf("%s: schema %d, this build reads %d", path, r.Schema, SchemaVersion)
	}
	return &r, nil
}

// ExitOf is the Exit of a process from the error its exec.Cmd's Wait returned.
func ExitOf(err error) *Exit {
	if err == nil {
		return &Exit{Code: 0, Clean: true}
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return &Exit{Code: -1, Signal: ws.Signal().String()}
		}
		return &Exit{Code: ee.ExitCode()}
	}
	return &Exit{Code: -1, Error: err.Error()}
}

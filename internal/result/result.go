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
	"slices"
	"syscall"
	"time"
)

// SchemaVersion is incremented whenever a field changes meaning, is removed, or a
// figure a reader relies on is added. 2 added the steady-state gate (Load.Steady),
// the server's own counters (Server.Counters…) and Server.SamplingError, the
// kernel's counts (Server.Kernel, Client.Kernel), and capped Server.CPUCoresMax at
// the server's CPUs. 3 added Kernel.SyscallsMissing: a side's switches and CPU
// counted without its syscalls (whose counts are then absent, not zero), and
// the open loop's arrival process, achieved-rate gate and stationarity test
// (Workload.Arrival, Load.UnderRate, Load.Arrival, Load.Stationarity). 4 added
// Host: what the host did to the measured CPUs over the window (steal, ticks
// lost, foreign work, interrupts) and the probes around the trial, and the
// disturbed verdict. 5 added the datagram protocol udp-echo: Workload.Batch
// and Load.Datagrams (sent, answered, lost, late, duplicated, reordered,
// mismatched, the loss rate). 6 added the window's place in time
// (Load.LoadStartUnixNS, Load.WindowStartUnixNS, Load.WindowEndUnixNS), the
// histograms of the uncorrected latency, the send lag and the connect latency
// (Load.UncorrectedHist, Load.SendLagHist, Connect.LatencyHist), and merged
// results (Run.Merge: loadgen merge).
const SchemaVersion = 6

// OldestSchema is the oldest schema this build still reads: a result written
// before a field existed has it at its zero value, and readers say so where a
// figure is missing.
const OldestSchema = 1

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
	// Host is what the host did to the server's and the client's CPUs over the
	// measured window, and what the probes taken just before and after the
	// load saw; nil when not measured (unpinned, or results before schema 4).
	Host *Host `json:"host,omitempty"`
	// Warnings are the preflight and run warnings, as printed.
	Warnings []string `json:"warnings,omitempty"`
	// Search is a capacity search's (loadgen -search): every open-loop step
	// tried and the capacity found; the run's own figures are then its
	// closed-loop calibration's. nil for any other run.
	Search *Search `json:"search,omitempty"`
	// HistogramFile is the file name of the merged latency histogram in
	// HdrHistogram's percentile-distribution text format (.hgrm), written beside
	// the JSON, in the same directory (results before this build give its path as
	// loadgen wrote it).
	HistogramFile string `json:"histogram_file,omitempty"`
	// Merge says, for a result merged from the results of several load
	// generators that drove one server at the same time (loadgen merge), what
	// each of them measured and how their windows met; nil for a run.
	Merge *Merge `json:"merge,omitempty"`
}

// Workload is the shape of the load: what the engine (package loadgen) runs. The zero
// value is valid with Addr set; every default is stated on its field.
type Workload struct {
	Addr  string `json:"addr"`  // server address, HOST:PORT or unix:PATH (not for udp-echo)
	Proto string `json:"proto"` // "echo", "rpc", "file", "http" or "udp-echo"; "" means echo
	// Conns is the number of concurrent connections; 0 means 1. For udp-echo
	// it is the number of flows: UDP sockets, each connected to the server.
	Conns int `json:"conns"`
	// Pipeline is the requests outstanding per connection; 0 means 1. For
	// udp-echo, the datagrams outstanding per flow in closed loop (an open
	// loop's flows send on their schedule whatever is outstanding, and take
	// none but 1).
	Pipeline int `json:"pipeline"`
	// Size is the request payload in bytes (the rpc frame header is extra); 0 means
	// 64 for echo, rpc and udp-echo. It stays 0 for file and http, whose requests
	// are a name. A udp-echo datagram is Size bytes in all: at least its 32-byte
	// header, at most the largest UDP payload of the address's family (65507
	// bytes over IPv4, 65527 over IPv6).
	Size int `json:"size"`
	// Batch is, for udp-echo, the most datagrams one send or receive call of
	// a flow's socket moves: 1 is send and read, more sendmmsg and recvmmsg
	// (at most 1024); 0 means 1. Unset (0) for the stream protocols.
	Batch int `json:"batch,omitempty"`
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
	// Arrival is the open loop's arrival process: "fixed" (each connection sends
	// every Conns/Rate, the connections' phases spread evenly) or "exp" (each
	// connection a Poisson process of rate Rate/Conns: exponential gaps, so that
	// their sum, the load the server sees, is a Poisson process of rate Rate).
	// "" means fixed; closed loop has none.
	Arrival string `json:"arrival,omitempty"`
	// Seed seeds the exponential gaps (each event loop draws from its own
	// stream of it); 0 means one chosen at start, recorded here.
	Seed uint64 `json:"seed,omitempty"`
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
	// counted as a timeout error and reconnected; 0 means 5s. For udp-echo, a
	// datagram unanswered this long is lost (Load.Datagrams), not an error.
	Timeout time.Duration `json:"timeout_ns"`
	// ConnectTimeout is how long a connect may take; 0 means 5s.
	ConnectTimeout time.Duration `json:"connect_timeout_ns"`
	// Backoff is the wait before reconnecting after a failed connection; 0 means 100ms.
	Backoff time.Duration `json:"backoff_ns"`
	// SteadyTimeout bounds the steady-state gate (Load.Steady): the measured
	// window opens once every connection has completed a request and Warmup has
	// passed — or once the number served has stayed the same for SteadySettle, a
	// ceiling — and a run that got to neither this long after the load started
	// fails, "not steady". 0 means 30s. The gate does not apply to a run of
	// Requests requests (every request is measured) nor to Reconnect.
	SteadyTimeout time.Duration `json:"steady_timeout_ns,omitempty"`
	// SteadySettle is how long the number of connections served must stay the
	// same to be the server's ceiling; 0 means 1s.
	SteadySettle time.Duration `json:"steady_settle_ns,omitempty"`
	// TimelineStep is the width of one timeline entry; 0 means 1s.
	TimelineStep time.Duration `json:"timeline_step_ns,omitempty"`
	// Idle opens this many connections besides the Conns active ones: ramped
	// like them and held for the whole run, each sending a heartbeat (one small
	// request of the run's protocol: 8 bytes of echo or rpc, or the smallest
	// standard file) every Heartbeat, the connections' heartbeats spread evenly
	// over the interval. Their figures are Load.Idle; the active load's are as
	// without them. An idle connection the server closes or resets is an error of
	// its own (Load.Idle.Errors) and is not reopened.
	Idle int `json:"idle,omitempty"`
	// Heartbeat is the idle connections' interval; 0 makes them silent (only
	// watched for the server's close or reset).
	Heartbeat time.Duration `json:"heartbeat_ns,omitempty"`
	// Src are the source addresses connections are spread over (addresses, or
	// ranges A-B), bound before each connect; empty lets the kernel choose, or,
	// to a loopback IPv4 server with more connections than one address's
	// ephemeral ports allow, picks 127.0.0.1, 127.0.0.2, … as needed.
	Src []string `json:"src,omitempty"`
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
	// Seconds is the length of the measured window (of a merged result, the
	// agents' common window).
	Seconds float64 `json:"seconds"`
	// Throughput is Requests / Seconds. A merged result's is the sum of its
	// agents' throughputs, each agent's requests over its own window: its
	// Requests / Seconds would count the requests each agent made outside the
	// common window as made inside it.
	Throughput float64 `json:"throughput"`
	// TargetRate is the open-loop rate asked for (requests/s); 0 in closed loop.
	TargetRate float64 `json:"target_rate,omitempty"`
	// RateShortfall is set when the open-loop throughput is more than 2% below TargetRate.
	RateShortfall bool `json:"rate_shortfall,omitempty"`
	// UnderRate is the achieved-rate gate: the open-loop throughput is more than
	// 10% below TargetRate (and the requests short of TargetRate × Seconds by
	// more than 3√ of it, beyond a Poisson count's own variation): the run does
	// not measure the load asked for.
	// UnderRateCause says who could not keep up and the evidence: "client: …"
	// when loadgen's CPUs were saturated (client-bound); else "server: …" when
	// it held only some connections (a ceiling) or at least 10% of the sends had
	// to wait for their connection's previous reply; else "client: …" (sends
	// late with their connections free).
	UnderRate      bool   `json:"under_rate,omitempty"`
	UnderRateCause string `json:"under_rate_cause,omitempty"`
	// ScheduledSends counts the open-loop sends of the window; ParkedSends those
	// of them that waited for their connection's previous reply (its pipeline
	// was full when they were due).
	ScheduledSends int64 `json:"scheduled_sends,omitempty"`
	ParkedSends    int64 `json:"parked_sends,omitempty"`
	// Arrival is how the open loop's sends were actually spaced; nil in closed loop.
	Arrival *ArrivalFit `json:"arrival,omitempty"`
	// Stationarity is the open-loop window's trend test; nil in closed loop.
	Stationarity *Stationarity `json:"stationarity,omitempty"`
	// Latency is the request latency: from the intended send time in open loop
	// (corrected), from the actual send in closed loop.
	Latency Percentiles `json:"latency"`
	// Uncorrected is open-loop latency from the actual send time (what a tool that
	// ignores coordinated omission would report); nil in closed loop.
	// UncorrectedHist is its histogram (encoded as LatencyHist is).
	Uncorrected     *Percentiles `json:"uncorrected,omitempty"`
	UncorrectedHist string       `json:"uncorrected_hist,omitempty"`
	// SendLag is how late sends went out after their intended time (open loop); nil
	// in closed loop. SendLagHist is its histogram (encoded as LatencyHist is).
	SendLag     *Percentiles `json:"send_lag,omitempty"`
	SendLagHist string       `json:"send_lag_hist,omitempty"`
	// Connect describes the connections: the ramp and connect latency.
	Connect Connect `json:"connect"`
	// Steady is how the measured window was opened (the steady-state gate) and
	// which connections were held and served in it. nil in results of schema 1.
	Steady *Steady `json:"steady,omitempty"`
	// Idle is the idle connections' figures (Workload.Idle); nil without them.
	Idle *Idle `json:"idle,omitempty"`
	// Datagrams is the account of udp-echo's datagrams over the window; nil
	// for the stream protocols.
	Datagrams *Datagrams `json:"datagrams,omitempty"`
	// Errors counts errors by kind (see loadgen's ErrorKind); a kind with no error
	// is absent. Every failure is counted once; requests it lost are not retried.
	Errors map[string]int64 `json:"errors,omitempty"`
	// ErrorsTotal is the sum of Errors.
	ErrorsTotal int64 `json:"errors_total"`
	// InFlightAtEnd is the requests sent but not answered when the run stopped
	// (neither successes nor errors).
	InFlightAtEnd int64 `json:"in_flight_at_end"`
	// LoadStartUnixNS is when the load started (the ramp was over), by the
	// load generator's wall clock, in nanoseconds since the Unix epoch: the
	// origin of Timeline, whose entry T covers [T, T+1) × TimelineStepSeconds
	// from it. WindowStartUnixNS and WindowEndUnixNS are when the measured
	// window opened and closed, on the same clock (their difference is
	// Seconds). They place runs of several load generators against one another
	// (loadgen merge); 0 when the window never opened, and in results before
	// schema 6.
	LoadStartUnixNS   int64 `json:"load_start_unix_ns,omitempty"`
	WindowStartUnixNS int64 `json:"window_start_unix_ns,omitempty"`
	WindowEndUnixNS   int64 `json:"window_end_unix_ns,omitempty"`
	// Timeline is one entry per TimelineStepSeconds of load, warm-up included.
	Timeline []Second `json:"timeline"`
	// TimelineStepSeconds is the width of a timeline entry; 0 (results of schema
	// 1) means 1.
	TimelineStepSeconds float64 `json:"timeline_step_seconds,omitempty"`
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
	// Latency is connect latency over every successful connect of the run;
	// LatencyHist its histogram (encoded as Load.LatencyHist is).
	Latency     Percentiles `json:"latency"`
	LatencyHist string      `json:"latency_hist,omitempty"`
}

// Idle is what the idle connections saw (Workload.Idle): held beside the active
// load, each sending a heartbeat every Workload.Heartbeat. Heartbeats are counted
// over the measured window.
type Idle struct {
	Conns int `json:"conns"` // asked for
	// Established and OpenAtEnd are the idle connections open when the ramp
	// ended and when the run did.
	Established int `json:"established"`
	OpenAtEnd   int `json:"open_at_end"`
	// HeartbeatSeconds is the interval; 0: silent.
	HeartbeatSeconds float64 `json:"heartbeat_seconds"`
	// Sent heartbeats, and Answered (correctly; a wrong reply is a mismatch
	// error); Late were answered after more than the interval; Missed were due
	// while the connection's previous heartbeat was still unanswered (not sent).
	Sent     int64 `json:"sent"`
	Answered int64 `json:"answered"`
	Late     int64 `json:"late"`
	Missed   int64 `json:"missed"`
	// Latency is the heartbeats' round trips; LatencyHist its histogram
	// (HdrHistogram V2 compressed, base64, µs).
	Latency     Percentiles `json:"latency"`
	LatencyHist string      `json:"latency_hist,omitempty"`
	// Errors are the idle connections' errors by kind (eof: the server closed
	// one; reset; connect errors…), over the whole run; each lost the connection.
	Errors      map[string]int64 `json:"errors,omitempty"`
	ErrorsTotal int64            `json:"errors_total"`
}

// Datagrams is udp-echo's account of the request datagrams sent in the
// measured window, each followed to its fate: the run stops sending when the
// window closes and waits (at most Workload.Timeout) for the replies still
// owed, so every datagram sent in the window is answered, lost or settled by
// a mismatch. Loss is not an error; a mismatch is (also counted in
// Load.Errors, over the whole run). Load.Requests and the latency are, as for
// a stream, of the replies that came in the window.
type Datagrams struct {
	Sent int64 `json:"sent"` // request datagrams sent in the window
	// Answered: their first correct replies (reordered ones included).
	Answered int64 `json:"answered"`
	// Lost: unanswered after Workload.Timeout.
	Lost int64 `json:"lost"`
	// Late: correct replies that came after their request was counted lost.
	Late int64 `json:"late"`
	// Duplicated: correct replies beyond a request's first.
	Duplicated int64 `json:"duplicated"`
	// Reordered: first replies to a request older than one already answered
	// on its flow (also in Answered).
	Reordered int64 `json:"reordered"`
	// Mismatched: replies whose bytes, length or send time are not their
	// request's, or that name no request of their flow; one that names a
	// request waiting settles it (not lost too).
	Mismatched int64 `json:"mismatched"`
	// LossRate is Lost / Sent.
	LossRate float64 `json:"loss_rate"`
	// ClientDropped is the replies the load generator's own sockets dropped,
	// their receive buffers full (the kernel's count, SK_MEMINFO_DROPS), from
	// the window's start to the end of the wait for its replies: counted in
	// Lost, but lost by the client.
	ClientDropped int64 `json:"client_dropped,omitempty"`
}

// Add adds the account o (another run's, or another agent's) to d, count by
// count, and recomputes the loss rate over the sum.
func (d *Datagrams) Add(o Datagrams) {
	d.Sent += o.Sent
	d.Answered += o.Answered
	d.Lost += o.Lost
	d.Late += o.Late
	d.Duplicated += o.Duplicated
	d.Reordered += o.Reordered
	d.Mismatched += o.Mismatched
	d.ClientDropped += o.ClientDropped
	d.LossRate = 0
	if d.Sent > 0 {
		d.LossRate = float64(d.Lost) / float64(d.Sent)
	}
}

// States of the steady-state gate (Steady.State).
const (
	// SteadyOK: every connection had completed a request, and the warm-up had
	// passed, when the window opened.
	SteadyOK = "steady"
	// SteadyCeiling: fewer had, and their number had stopped growing for the
	// settle time: the server holds only Steady.ServedAtStart of the connections
	// (a pool's size, a cap on processes or threads). The cell's figures are not
	// comparable with those of a server that held them all.
	SteadyCeiling = "ceiling"
	// SteadyNot: the number served was still growing at the gate's bound: the
	// window never opened and the run failed.
	SteadyNot = "not steady"
	// SteadyOff: no gate — a run of a fixed number of requests (every request
	// measured) or with a new connection per request.
	SteadyOff = "off"
)

// Steady is the steady-state gate: the measured window opens only when every
// connection is established and has completed at least one request (and the
// warm-up has passed), so that a server still starting a process or thread per
// connection is not measured in its ramp; or, for a server that cannot hold them
// all, once the number served has stopped growing (a ceiling).
type Steady struct {
	State string `json:"state"` // SteadyOK, SteadyCeiling, SteadyNot or SteadyOff
	// WaitSeconds is the time from the load's start to the window's.
	WaitSeconds float64 `json:"wait_seconds"`
	// SettleSeconds is how long the number served must stay the same to be a
	// ceiling; TimeoutSeconds the gate's bound.
	SettleSeconds  float64 `json:"settle_seconds"`
	TimeoutSeconds float64 `json:"timeout_seconds"`
	// ServedAtStart is the connections that had completed at least one request
	// when the window opened (when it did not: when the run gave up).
	ServedAtStart int `json:"served_at_start"`
	// OpenAtStart and OpenAtEnd are the connections open (established, as the
	// client sees them) when the window opened and when it closed.
	OpenAtStart int `json:"open_at_start"`
	OpenAtEnd   int `json:"open_at_end"`
	// IdleInWindow is the connections that completed no request in the window:
	// unserved (waiting in a backlog, a pool busy) or starved.
	IdleInWindow int `json:"idle_in_window"`
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

// Second is one entry of the timeline: a second, or Load.TimelineStepSeconds.
type Second struct {
	// T is the entry's index since load started (0-based): it covers
	// [T, T+1) × Load.TimelineStepSeconds.
	T        int   `json:"t"`
	Warmup   bool  `json:"warmup"`   // the entry lies (at least partly) before the measured window
	Requests int64 `json:"requests"` // correct replies completed in this entry
	Errors   int64 `json:"errors"`   // errors in this entry
	// P99US is the 99th percentile latency of the replies completed in this entry
	// (corrected in open loop), at 2 significant digits; 0 if none. P50US is
	// the median. A merged result (Run.Merge) has neither: an entry's
	// histogram is not in the results it merges, and percentiles are never
	// averaged.
	P99US int64 `json:"p99_us"`
	P50US int64 `json:"p50_us,omitempty"`
}

// Search is a capacity search: the highest open-loop rate at which a latency
// objective (the SLO: a percentile at most a bound) holds. A closed-loop
// calibration gives the peak; then each of Rounds independent bisections
// brackets the capacity between 0 and the peak with short open-loop steps
// until the bracket is narrower than Tolerance × the peak, and its capacity is
// the highest rate that passed. A step passes when its latency at the
// percentile is within the bound, it completed without errors, and it is
// neither under rate nor unstable. Capacity is the median over the rounds,
// [CapacityLo, CapacityHi] their range, an order-statistic interval of the
// median with coverage Level (1 − 2·0.5^Rounds: 75% for 3 rounds).
type Search struct {
	SLO        string  `json:"slo"`        // as given, e.g. "p99<=1ms"
	Percentile float64 `json:"percentile"` // 99
	BoundUS    int64   `json:"bound_us"`   // 1000
	Arrival    string  `json:"arrival"`    // the steps' arrival process
	Rounds     int     `json:"rounds"`
	Tolerance  float64 `json:"tolerance"`
	// CalibratedRate is the closed-loop throughput of the calibration, the
	// bisections' upper end.
	CalibratedRate float64 `json:"calibrated_rate"`
	// Capacities are the rounds' capacities, in order.
	Capacities []float64 `json:"capacities"`
	Capacity   float64   `json:"capacity"`
	CapacityLo float64   `json:"capacity_lo"`
	CapacityHi float64   `json:"capacity_hi"`
	Level      float64   `json:"level"`
	// AtLeast is set when the objective held at the calibrated peak itself in
	// some round: the capacity there is at least that rate (the search cannot
	// offer more than the server served in a closed loop).
	AtLeast bool         `json:"at_least,omitempty"`
	Steps   []SearchStep `json:"steps"`
}

// SearchStep is one open-loop step of a search.
type SearchStep struct {
	Round     int     `json:"round"` // 1-based
	Rate      float64 `json:"rate"`  // offered, req/s
	Achieved  float64 `json:"achieved"`
	LatencyUS int64   `json:"latency_us"` // at the objective's percentile
	P50US     int64   `json:"p50_us"`
	P99US     int64   `json:"p99_us"`
	UnderRate bool    `json:"under_rate,omitempty"`
	Unstable  bool    `json:"unstable,omitempty"`
	Errors    int64   `json:"errors,omitempty"`
	// ServerCPU is the server tree's mean CPU use in cores; ClientBound is
	// loadgen's own saturation: what limited the step.
	ServerCPU   float64 `json:"server_cpu"`
	ClientBound bool    `json:"client_bound,omitempty"`
	Pass        bool    `json:"pass"`
	Why         string  `json:"why,omitempty"` // why it failed
}

// Merge is how a merged result was made (loadgen merge): the results of
// several load generators — agents, each with its share of the connections
// and of the open-loop rate — that drove one server at the same time, added
// up into what one client holding all their connections would have measured.
//
// In the merged Run, counts are the agents' sums (requests, errors by kind,
// datagrams, heartbeats, sends scheduled and parked, connections); every
// histogram is the HdrHistogram merge of the agents' and its percentiles are
// read from it; Load.Throughput and Load.TargetRate are the sums of the
// agents' (each agent's requests over its own window); Load.Seconds and the
// window's times are the agents' common overlap; the timeline is summed entry
// by entry over the span all agents cover, aligned on the absolute time of
// each agent's load start. Connect.RampSeconds is the slowest agent's ramp;
// Steady's connection counts are summed, and its state is a ceiling if any
// agent's was. What cannot be merged exactly is left out, not
// estimated: the timeline entries' percentiles, the arrival fit, the
// stationarity test and the host's noise (each agent's verdicts are in
// Inputs). Client is the agents' CPUs and CPU time summed, ClientBound set
// when any agent was. Server is the one agent's that sampled the server.
type Merge struct {
	// Inputs are the merged results, in the order given.
	Inputs []MergeInput `json:"inputs"`
	// Overlap is the agents' common window (Load.WindowStartUnixNS to
	// Load.WindowEndUnixNS) as a fraction of the shortest agent's window; a
	// merge refuses less than MinOverlap.
	Overlap float64 `json:"overlap"`
	// TimelineSkewNS is the largest distance between an agent's timeline
	// entries and the merged ones they were added into: each agent's entries
	// are shifted by the whole number of steps nearest to its load start's
	// distance from the merged origin (Load.LoadStartUnixNS, the latest
	// agent's), so it is at most half a step.
	TimelineSkewNS int64 `json:"timeline_skew_ns"`
	// ServerFrom is the input whose Server figures the merged result carries
	// (the one that sampled the server), or "the coordinator" when loadgen
	// -agents -server-pid sampled it beside the server; "" when none did, or
	// when several did and they conflict (ServerConflict says which).
	ServerFrom     string `json:"server_from,omitempty"`
	ServerConflict string `json:"server_conflict,omitempty"`
	// EnvDiffers names the Env fields (by JSON name) in which the agents'
	// environments differ: the merged Env has them at their zero value (each
	// agent's whole Env is in Inputs).
	EnvDiffers []string `json:"env_differs,omitempty"`
	// Coordinated is set when loadgen's coordinator ran the agents (-agents)
	// and started their windows at one instant: every input's absolute times
	// (LoadStartUnixNS, WindowStartUnixNS, WindowEndUnixNS, here and in its
	// Load) were moved onto the coordinator's clock by the agent's measured
	// offset (MergeInput.ClockOffsetNS). Unset, they are on each agent's own
	// clock, as recorded (loadgen merge of files).
	Coordinated bool `json:"coordinated,omitempty"`
	// ServerClockOffsetNS and ServerClockRTTNS are the clock of the server's
	// host against the coordinator's, when an agent there sampled it
	// (loadgen -agents -server-host; ServerFrom names it).
	ServerClockOffsetNS int64 `json:"server_clock_offset_ns,omitempty"`
	ServerClockRTTNS    int64 `json:"server_clock_rtt_ns,omitempty"`
}

// MinOverlap is the least common window, as a fraction of the shortest
// agent's, that loadgen merge accepts.
const MinOverlap = 0.95

// MergeInput is one merged result: where it came from, its share of the load
// and what limited it.
type MergeInput struct {
	Name string `json:"name"` // the file, as named to loadgen merge
	Host string `json:"host"` // Env.Hostname of the agent
	// Conns, Idle and Rate are its share of the workload; Seed its arrival
	// seed (open loop, exp).
	Conns int     `json:"conns"`
	Idle  int     `json:"idle,omitempty"`
	Rate  float64 `json:"rate,omitempty"`
	Seed  uint64  `json:"seed,omitempty"`
	// Requests, Seconds and Throughput are its own; Errors its ErrorsTotal.
	Requests   int64   `json:"requests"`
	Seconds    float64 `json:"seconds"`
	Throughput float64 `json:"throughput"`
	Errors     int64   `json:"errors"`
	P50US      int64   `json:"p50_us"`
	P99US      int64   `json:"p99_us"`
	// LoadStartUnixNS, WindowStartUnixNS and WindowEndUnixNS are its own
	// (Load's), on its own clock; on the coordinator's when Merge.Coordinated.
	LoadStartUnixNS   int64 `json:"load_start_unix_ns"`
	WindowStartUnixNS int64 `json:"window_start_unix_ns"`
	WindowEndUnixNS   int64 `json:"window_end_unix_ns"`
	// ClientBound is its Run.ClientBound, ClientBusy its Client.Busy: an
	// agent that was client-bound is the bottleneck of the merged run.
	ClientBound bool    `json:"client_bound"`
	ClientBusy  float64 `json:"client_busy"`
	ClientCPUs  []int   `json:"client_cpus,omitempty"`
	// Its open-loop verdicts, which the merged result does not recompute.
	UnderRate bool `json:"under_rate,omitempty"`
	Unstable  bool `json:"unstable,omitempty"`
	Distorted bool `json:"distorted,omitempty"`
	Disturbed bool `json:"disturbed,omitempty"` // its Host.Disturbed
	// Server is set for the input that sampled the server.
	Server bool `json:"server,omitempty"`
	Env    Env  `json:"env"`
	// ClockOffsetNS is the agent's clock minus the coordinator's, and
	// ClockRTTNS the round trip over ssh it was read in (the offset is true
	// to within half of it); set when Merge.Coordinated.
	ClockOffsetNS int64 `json:"clock_offset_ns,omitempty"`
	ClockRTTNS    int64 `json:"clock_rtt_ns,omitempty"`
}

// ArrivalFit is how an open loop's sends were actually spaced: the gaps between
// consecutive sends of each event loop, from the window's first ones, each
// loop's gaps divided by their mean and pooled.
type ArrivalFit struct {
	Process string `json:"process"` // Workload.Arrival: "fixed" or "exp"
	// Sample is the number of gaps examined; MeanGapUS their mean, µs (per
	// event loop: a loop sends its share of the rate).
	Sample    int     `json:"sample"`
	MeanGapUS float64 `json:"mean_gap_us"`
	// CV is the gaps' coefficient of variation: near 1 for exponential gaps,
	// near 0 for fixed ones over one connection.
	CV float64 `json:"cv"`
	// The rest is for exp only. ResolutionUS is the event loop's resolution:
	// sends due closer than it go out in one pass, so gaps below it say
	// nothing of the process (twice the median send lag, at least 20 µs).
	// Below is the share of gaps under it, BelowExpected an exponential's.
	// AD is the Anderson–Darling statistic of the gaps above it, less it (by
	// memorylessness, exponential with the same mean if the sends are a
	// Poisson process), against the exponential, with Stephens' modification
	// for an estimated mean, A²(1 + 0.6/n). Distorted is set when it exceeds
	// ADCritical: the sends did not go out as a Poisson process (held back and
	// bunched by a busy client, or by connections waiting for replies).
	ResolutionUS  float64 `json:"resolution_us,omitempty"`
	Below         float64 `json:"below,omitempty"`
	BelowExpected float64 `json:"below_expected,omitempty"`
	AD            float64 `json:"ad,omitempty"`
	Distorted     bool    `json:"distorted,omitempty"`
}

// ADCritical is the 1% critical value of the modified Anderson–Darling
// statistic for an exponential distribution whose mean is estimated from the
// sample (Stephens 1974; D'Agostino & Stephens, Goodness-of-Fit Techniques,
// table 4.11): 1% rather than 5%, so that one good run in a hundred, not one
// in twenty, is called distorted.
const ADCritical = 1.957

// Stationarity tests whether an open-loop window reached a steady state or
// its latency kept rising — a queue growing because the offered load exceeds
// what the server serves, or a backlog not yet worked off. The window's
// timeline entries with replies are the points, their median latency the
// value. Unstable when both: the last third of the entries is slower than the
// first third by the two-sided Mann–Whitney test (P < 0.05), and its median
// is at least twice the first third's or grew by at least 0.1 s per second of
// the window (GrowthPerSec: the queue of an offered load 10% above what is
// served; a backlog already built in the warm-up hides it from the ratio).
// Neither alone is enough: a small drift is significant over many entries,
// and one slow entry is not a trend.
type Stationarity struct {
	Steps       int     `json:"steps"`        // entries tested (fewer than 6: not tested)
	StepSeconds float64 `json:"step_seconds"` // their width
	P           float64 `json:"p"`            // Mann–Whitney p-value, last third against first
	FirstP50US  float64 `json:"first_p50_us"` // median over the first third's entries
	LastP50US   float64 `json:"last_p50_us"`  // and over the last third's
	// GrowthPerSec is the latency gained between the thirds' centres per
	// second of the window (seconds per second).
	GrowthPerSec float64 `json:"growth_per_sec"`
	Tested       bool    `json:"tested"`
	Unstable     bool    `json:"unstable"`
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
	// CPUCoresMax is the highest CPU use over half a second (five samples; over
	// one 100 ms sample the 10 ms clock ticks of /proc would make it jitter by
	// ±10%), capped at the number of CPUs the server may run on.
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
	// SamplingError says why samples are missing (reading /proc failed: this
	// process out of descriptors, say); "" when none is. It is never a reason to
	// think the server gone.
	SamplingError string `json:"sampling_error,omitempty"`
	// Counters are a concbench server's own counters (its -stats file) when loadgen
	// started it: at its exit, and as they stood just before the window opened and
	// just after it closed. nil for an external server.
	Counters              *ServerCounters `json:"counters,omitempty"`
	CountersAtWindowStart *ServerCounters `json:"counters_at_window_start,omitempty"`
	CountersAtWindowEnd   *ServerCounters `json:"counters_at_window_end,omitempty"`
	// RefusedWhy is why the model refuses connections (Counters.Refused): its
	// registered reason, e.g. select's FD_SETSIZE.
	RefusedWhy string `json:"refused_why,omitempty"`
	// Kernel is what the kernel did for the server's whole tree over the measured
	// window, from its own counters; nil when not measured, and then
	// KernelMissing says why ("not measured: …").
	Kernel        *Kernel `json:"kernel,omitempty"`
	KernelMissing string  `json:"kernel_missing,omitempty"`
	// Exit is how the server ended when loadgen stopped it; nil for an external
	// one, unless it exited during the run (then not clean, its status unknown).
	Exit *Exit `json:"exit,omitempty"`
}

// ServerCounters are a concbench server's counters at one moment, as its -stats
// file writes them (models.StatsLine): connections accepted, open, closed and why.
type ServerCounters struct {
	UnixMS       int64 `json:"unix_ms"`       // when, milliseconds since the epoch
	Accepted     int64 `json:"accepted"`      // connections accepted
	Active       int64 `json:"active"`        // connections open
	Closed       int64 `json:"closed"`        // connections closed, for any reason
	ProtoErrors  int64 `json:"proto_errors"`  // closed for malformed input
	IOErrors     int64 `json:"io_errors"`     // closed by a read or write error
	Refused      int64 `json:"refused"`       // accepted and closed at once (see Server.RefusedWhy)
	AcceptPauses int64 `json:"accept_pauses"` // times accepting paused (out of descriptors, at a cap)
	IdleClosed   int64 `json:"idle_closed"`   // closed for idleness
	OutputCapped int64 `json:"output_capped"` // closed for owing too much output
	// The datagram protocols (udp-echo): datagrams received and replies
	// sent, and those received and not answered, by reason. Those the kernel
	// dropped before the server read them (its receive buffer full) are the
	// gauge rcvbuf_drops.
	DatagramsIn      int64 `json:"datagrams_in,omitempty"`
	DatagramsOut     int64 `json:"datagrams_out,omitempty"`
	DroppedOversize  int64 `json:"dropped_oversize,omitempty"`   // larger than the server's -max-datagram
	DroppedSendFull  int64 `json:"dropped_send_full,omitempty"`  // its socket's send buffer full
	DroppedSendError int64 `json:"dropped_send_error,omitempty"` // the send failed otherwise
	// Gauges are the model's own figures (threads_live, children_live, …).
	Gauges map[string]int64 `json:"gauges,omitempty"`
}

// Rebased is a copy of s whose samples' times are from the instant originNS
// (Unix ns) instead of fromNS, the instant they were taken from: a result's
// server figures moved onto a merged timeline. s is not modified.
func (s Server) Rebased(fromNS, originNS int64) *Server {
	shift := time.Duration(fromNS - originNS).Seconds()
	s.Samples = slices.Clone(s.Samples)
	for i := range s.Samples {
		s.Samples[i].T += shift
	}
	return &s
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
	// Kernel is what the kernel did for the load generator over the window (how
	// the client spends its CPUs); nil when not measured, KernelMissing says why.
	Kernel        *Kernel `json:"kernel,omitempty"`
	KernelMissing string  `json:"kernel_missing,omitempty"`
}

// Kernel is the kernel's own count of what one side of a run cost it over the
// measured window: every thread and process of the side (a cgroup v2 made for
// it, counted by BPF programs on the sys_enter and sched_switch raw tracepoints;
// package kcount), those that came and went included. Exact counts, not
// samples. Divide by Load.Requests for the cost per request.
type Kernel struct {
	// Syscalls counts the named syscalls (kcount.DefaultSyscalls: read, write,
	// epoll_wait, …); SyscallsOther every other one, and SyscallsTotal all of
	// them.
	Syscalls      map[string]int64 `json:"syscalls"`
	SyscallsOther int64            `json:"syscalls_other"`
	SyscallsTotal int64            `json:"syscalls_total"`
	// SyscallsMissing says why the syscalls were not counted ("not measured:
	// …", loadgen -count-syscalls=false): Syscalls is then nil and the two
	// totals 0, and the switches and CPU below are still measured.
	SyscallsMissing string `json:"syscalls_missing,omitempty"`
	// CtxSwitches is every context switch away from a task of the side, the sum
	// of Voluntary (it blocked) and Involuntary (preempted, or still runnable),
	// as /proc/PID/status splits them.
	CtxSwitches int64 `json:"ctx_switches"`
	Voluntary   int64 `json:"voluntary"`
	Involuntary int64 `json:"involuntary"`
	// UserUS and SystemUS are CPU time in user and kernel mode (cgroup
	// cpu.stat), µs.
	UserUS   int64 `json:"user_us"`
	SystemUS int64 `json:"system_us"`
}

// Host is the host's noise on the measured CPUs over a trial's window.
type Host struct {
	// CPUs are the server's and the client's CPUs' counts over the window.
	CPUs []HostCPU `json:"cpus"`
	// WindowSeconds is the window's length by the clock the ticks are set
	// against.
	WindowSeconds float64 `json:"window_seconds"`
	// StealShare is the steal ticks over every tick of the measured CPUs (the
	// hypervisor's own report: 0 where it reports none, as here). LostShare is
	// the share of the window's clock ticks (WindowSeconds × USER_HZ a CPU)
	// that no CPU time field accounted for: time a virtual CPU did not run, but
	// also time lost by a CPU going idle and busy again faster than the tick
	// (15% at one connection on an undisturbed machine here, under 1% at 100),
	// so it is recorded, not judged. ForeignShare is the user and system time
	// of the measured CPUs beyond the server tree's and loadgen's own CPU time,
	// over the window's ticks: other processes' work on the CPUs the trial was
	// pinned to (its own softirqs excluded).
	StealShare   float64 `json:"steal_share"`
	LostShare    float64 `json:"lost_share"`
	ForeignShare float64 `json:"foreign_share"`
	// Before and After are the probes taken just before the load and just
	// after it (package hostprobe): the wake-up round trip between a server
	// CPU and a client CPU, and a fixed spin on each.
	Before *Probe `json:"before,omitempty"`
	After  *Probe `json:"after,omitempty"`
	// Disturbed marks a window whose steal or foreign work exceeded
	// DisturbedAt (Why says which): the host or another process took part of
	// the measured CPUs, and bench leaves the trial out of its cell's figures
	// while the cell has others.
	Disturbed bool   `json:"disturbed,omitempty"`
	Why       string `json:"why,omitempty"`
	// Missing says why some figure is absent ("" when all were measured).
	Missing string `json:"missing,omitempty"`
}

// HostCPU is one measured CPU's counts over the window, clock ticks (USER_HZ)
// and interrupt counts.
type HostCPU struct {
	CPU     int    `json:"cpu"`
	Role    string `json:"role"` // "server" or "client"
	Ticks   uint64 `json:"ticks"`
	Busy    uint64 `json:"busy"` // user + nice + system + irq + softirq
	User    uint64 `json:"user"` // user + nice + system, the part foreign work is read from
	Steal   uint64 `json:"steal"`
	IRQ     uint64 `json:"irq"`
	SoftIRQ uint64 `json:"softirq"`
}

// Probe is a measurement of package hostprobe: the median (and 90th
// percentile) round trip of a byte between a thread on CPUs[0] and one on
// CPUs[1] over two pipes, µs, and how long a fixed spin took on each, µs.
type Probe struct {
	WakeRTTUS    float64   `json:"wake_rtt_us"`
	WakeRTTP90US float64   `json:"wake_rtt_p90_us"`
	SpinUS       []float64 `json:"spin_us"`
	CPUs         []int     `json:"cpus"`
}

// DisturbedAt is the share of the measured CPUs' window that steal or foreign
// work may take before the window is called disturbed: above the
// few ticks' sampling error of a one-second window (/proc/stat counts in
// hundredths of a second), below what moves a figure by more than the noise
// bench reports.
const DisturbedAt = 0.05

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

// ReadFile reads a Run written by WriteFile, refusing a schema this build does
// not read (newer, or older than OldestSchema).
func ReadFile(path string) (*Run, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Run
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if r.Schema < OldestSchema || r.Schema > SchemaVersion {
		return nil, fmt.Errorf("%s: schema %d, this build reads %d to %d", path, r.Schema, OldestSchema, SchemaVersion)
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

// Package loadgen is the load engine: event loops on raw epoll, one per client CPU,
// each owning a slice of the connections. It ramps connections up at a bounded
// number of connects in flight, drives them closed-loop (-pipeline K requests
// outstanding per connection) or open-loop on a schedule (latency from the intended
// send time: coordinated omission corrected), verifies every reply, and records
// latency (from the send, or the intended send, to the reply's last byte) in
// HdrHistograms per loop, merged at the end.
//
// The request cycle does no allocation and starts no goroutine: requests are
// precomputed; reads land in one buffer per loop and are checked in place; each
// loop's histograms and per-second counters exist before the run. Echo and rpc
// replies are compared byte for byte with precomputed expected replies (payloads
// rotate through 26 patterns so a stale or misrouted reply is caught). File and http
// replies are parsed incrementally by a fixed-size parser per connection (reply.go):
// framing, status, announced size against the bytes that came, and for a standard
// file (package testfiles) its size and the CRC32C of the content.
//
// Protocol by protocol (wire formats in package proto):
//
//   - echo, rpc: -size bytes of payload per request (in an rpc frame for rpc).
//   - file: one rpc frame holding File; the reply is a frame "OK <size>", the
//     content in frames of at most 64 KiB, and a zero-length frame (or one frame
//     "ERR <reason>": a server_error, and the connection is closed).
//   - http: "GET Path HTTP/1.1" with Host and User-Agent, keep-alive; responses are
//     read by Content-Length (a status other than 200 is an http_status error, and
//     the connection is closed). A response with "Connection: close" is followed by
//     a reconnect without error when nothing else was outstanding.
//   - udp-echo: datagrams of Size bytes over flows, each a UDP socket connected to
//     the server and a connection of its loop; each datagram carries its flow, a
//     sequence number and its send time (package dgram), and each reply is checked
//     byte for byte. A datagram unanswered after Timeout is lost, not an error;
//     duplicates, reordering, late replies and mismatches are counted too, of the
//     datagrams sent in the window (Load.Datagrams). Sends and receives move up to
//     Batch datagrams a call (sendmmsg, recvmmsg). See flows.go.
//
// Reconnect mode (a connection per request): echo, rpc and file half-close after
// the request and the server closes after its reply (the client's FIN went first,
// so TIME_WAIT is on the client's side; Linux reuses such ports for new loopback
// connects, net.ipv4.tcp_tw_reuse=2). http sends "Connection: close" instead and
// does not half-close (an HTTP server may take a FIN as an abort): the server
// closes first, and TIME_WAIT is on its side, as with real HTTP clients.
package loadgen

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"concbench/internal/envinfo"
	"concbench/internal/proto"
	"concbench/internal/result"
	"concbench/internal/testfiles"
	"concbench/loadgen/dgram"
)

// Config is a run of the engine: the workload (documented field by field in
// result.Workload) and hooks. Only Addr is required.
type Config struct {
	result.Workload

	// OnMeasure, if set, is called once when the measured window starts (after the
	// warm-up) and, if it was, once when the run stops, with the instant: after
	// every loop stopped loading and before any closes its connections. It runs on
	// the coordinating goroutine, not a loop: it may take a few milliseconds.
	OnMeasure func(start bool, at time.Time) `json:"-"`
	// OnLoad, if set, is called when the ramp is over and load starts.
	OnLoad func(at time.Time) `json:"-"`
	// WindowAt, if set, decides when the measured window opens, for a load
	// measured together with others (loadgen agents, package agents): once this
	// run is ready to measure (the steady-state gate held and the warm-up
	// passed; or, without the gate, the warm-up passed), it is called with that
	// instant and returns the instant the window opens at, which it may choose
	// later; the load goes on meanwhile, unmeasured, and the window opens at
	// that instant on this host's clock. An error, or a run that stops first,
	// ends the load without a window (Outcome.Warnings says why). It runs on the
	// coordinating goroutine and may block up to WindowWait.
	WindowAt func(ready time.Time) (time.Time, error) `json:"-"`
	// WindowWait, with WindowAt, is the longest the window may open after the
	// run is ready: the load is bounded by it on top of the warm-up (or the
	// gate's bound) and the window, and an instant later than that is refused.
	WindowWait time.Duration `json:"-"`
}

// Defaults for zero values of the workload.
const (
	DefaultConns           = 1
	DefaultPipeline        = 1
	DefaultSize            = 64
	DefaultDuration        = 10 * time.Second
	DefaultConnectInFlight = 256
	DefaultTimeout         = 5 * time.Second
	DefaultBackoff         = 100 * time.Millisecond
	DefaultSteadyTimeout   = 30 * time.Second
	DefaultSteadySettle    = time.Second
	DefaultTimelineStep    = time.Second
	DefaultFile            = "1k.bin"      // proto file
	DefaultPath            = "/index.html" // proto http
	DefaultBatch           = 1             // proto udp-echo
	// MaxBatch bounds Workload.Batch: the kernel moves at most 1024
	// datagrams (UIO_MAXIOV) in one sendmmsg or recvmmsg.
	MaxBatch = 1024
)

// StdNames lists the standard files (package testfiles) that a concbench server
// started without -root serves, and whose replies loadgen verifies by checksum.
func StdNames() []string {
	names := make([]string, len(testfiles.Std))
	for i, f := range testfiles.Std {
		names[i] = f.Name
	}
	return names
}

// IsStd reports whether a file name (proto file) or an http path (proto http)
// names a standard file, whose content loadgen verifies by checksum.
func IsStd(proto, nameOrPath string) bool {
	_, ok := StdSize(proto, nameOrPath)
	return ok
}

// StdSize is the size of the standard file that a file name (proto file) or an
// http path (proto http) names.
func StdSize(proto, nameOrPath string) (int64, bool) {
	s, ok := testfiles.Lookup(stdName(proto, nameOrPath))
	return s.Size, ok
}

// stdName is the name of the file asked for, as testfiles.Lookup takes it. A
// file-protocol name is one already; an http path loses its query, and one ending
// in "/" names the directory's index.html.
func stdName(proto, nameOrPath string) string {
	if proto != "http" {
		return nameOrPath
	}
	p, _, _ := strings.Cut(nameOrPath, "?")
	if strings.HasSuffix(p, "/") {
		p += "index.html"
	}
	return p
}

// CheckFile reports what is wrong with a file-protocol name, if anything: it is
// relative to the server's root, stays inside it, and fits a frame.
func CheckFile(name string) error {
	valid := "want a name relative to the server's root, such as one of the standard files " + strings.Join(StdNames(), ", ")
	switch {
	case name == "":
		return fmt.Errorf("file name is empty: %s", valid)
	case strings.HasPrefix(name, "/"):
		return fmt.Errorf("file %q: %s (no leading /)", name, valid)
	case strings.IndexByte(name, 0) >= 0 || len(name) > 4096:
		return fmt.Errorf("file %q: %s", name, valid)
	case slices.Contains(strings.Split(name, "/"), ".."):
		return fmt.Errorf("file %q leaves the server's root: %s", name, valid)
	}
	return nil
}

// CheckPath reports what is wrong with an http path, if anything: it starts with
// a slash and has no byte that would break the request line.
func CheckPath(path string) error {
	valid := "want /NAME, such as one of the standard files /" + strings.Join(StdNames(), ", /")
	if !strings.HasPrefix(path, "/") || len(path) > 8192 {
		return fmt.Errorf("path %q: %s", path, valid)
	}
	for i := 0; i < len(path); i++ {
		if c := path[i]; c <= ' ' || c == 0x7f {
			return fmt.Errorf("path %q: byte %#x at %d would break the request line (percent-encode it): %s", path, c, i, valid)
		}
	}
	return nil
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("bad load configuration")

// Resolve returns w with every zero default filled in, or an error wrapping ErrConfig.
func Resolve(w result.Workload) (result.Workload, error) {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if w.Proto == "" {
		w.Proto = "echo"
	}
	bad := func(format string, a ...any) (result.Workload, error) {
		return w, fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, a...))
	}
	switch w.Proto {
	case "echo", "rpc":
		if w.File != "" || w.Path != "" {
			return bad("a file name (-file) is for proto file and a path (-path) for proto http, not %s", w.Proto)
		}
		def(&w.Size, DefaultSize)
	case "file", "http":
		if w.Size != 0 {
			return bad("proto %s requests a name, not a payload: size is for echo and rpc", w.Proto)
		}
		if w.Proto == "file" {
			if w.Path != "" {
				return bad("a path (-path) is for proto http; proto file asks for -file NAME")
			}
			if w.File == "" {
				w.File = DefaultFile
			}
			if err := CheckFile(w.File); err != nil {
				return bad("%v", err)
			}
		} else {
			if w.File != "" {
				return bad("a file name (-file) is for proto file; proto http asks for -path /PATH")
			}
			if w.Path == "" {
				w.Path = DefaultPath
			}
			if err := CheckPath(w.Path); err != nil {
				return bad("%v", err)
			}
		}
	case proto.UDPEcho:
		if w.File != "" || w.Path != "" {
			return bad("a file name (-file) is for proto file and a path (-path) for proto http, not %s", w.Proto)
		}
		def(&w.Size, DefaultSize)
		def(&w.Batch, DefaultBatch)
	default:
		return bad("proto %q: want echo, rpc, file, http or %s", w.Proto, proto.UDPEcho)
	}
	if !proto.IsDatagram(w.Proto) {
		switch {
		case w.Batch > 1:
			return bad("a batch (-batch %d) is for the datagram protocol %s, not %s", w.Batch, proto.UDPEcho, w.Proto)
		case w.Batch == 1:
			w.Batch = 0 // a stream's calls move bytes, not datagrams: recorded as unset
		}
	}
	def(&w.Conns, DefaultConns)
	def(&w.Pipeline, DefaultPipeline)
	def(&w.ConnectInFlight, DefaultConnectInFlight)
	if w.Loops == 0 {
		w.Loops = max(1, len(w.CPUs))
	}
	defDur(&w.Duration, DefaultDuration)
	defDur(&w.Timeout, DefaultTimeout)
	defDur(&w.ConnectTimeout, DefaultTimeout)
	defDur(&w.Backoff, DefaultBackoff)
	defDur(&w.SteadyTimeout, DefaultSteadyTimeout)
	defDur(&w.SteadySettle, DefaultSteadySettle)
	if w.TimelineStep == 0 && w.Rate > 0 {
		// An open-loop window is tested for a rising latency over its
		// timeline: twenty entries, from 10 ms to the default's second.
		w.TimelineStep = min(max(w.Duration/20, 10*time.Millisecond), DefaultTimelineStep).Round(time.Millisecond)
	}
	defDur(&w.TimelineStep, DefaultTimelineStep)
	switch {
	case w.Rate > 0 && w.Arrival == "":
		w.Arrival = ArrivalFixed
	case w.Rate == 0 && w.Arrival != "":
		return bad("an arrival process (%s) is for an open loop: give -rate", w.Arrival)
	}
	if w.Arrival != "" && w.Arrival != ArrivalFixed && w.Arrival != ArrivalExp {
		return bad("arrival %q: want %s (evenly spaced) or %s (Poisson)", w.Arrival, ArrivalFixed, ArrivalExp)
	}
	if w.Arrival == ArrivalExp && w.Seed == 0 {
		w.Seed = uint64(time.Now().UnixNano()) | 1
	}
	switch {
	case w.Conns < 0 || w.Pipeline < 0 || w.Size < 0 || w.Loops < 0 || w.ConnectInFlight < 0 || w.Batch < 0:
		return bad("counts must not be negative")
	case w.Rate < 0:
		return bad("rate %v must not be negative", w.Rate)
	case w.Duration < 0 || w.Warmup < 0 || w.Timeout < 0 || w.ConnectTimeout < 0 || w.Backoff < 0 ||
		w.SteadyTimeout < 0 || w.SteadySettle < 0 || w.TimelineStep < 0:
		return bad("durations must not be negative")
	case w.TimelineStep < time.Millisecond:
		return bad("timeline step %v: at least 1ms", w.TimelineStep)
	case w.Idle < 0 || w.Heartbeat < 0:
		return bad("idle connections and the heartbeat must not be negative")
	case w.Idle > 0 && w.Reconnect:
		return bad("idle connections are held for the run: not with a connection per request")
	case w.Reconnect && w.Pipeline != 1:
		return bad("-reconnect sends one request per connection: pipeline must be 1")
	case w.Requests < 0:
		return bad("requests %d must not be negative", w.Requests)
	case w.Requests > 0 && w.Rate > 0:
		return bad("a request count is for closed loop only")
	}
	if proto.IsDatagram(w.Proto) {
		if err := checkDatagram(w); err != nil {
			return bad("%v", err)
		}
	}
	if w.Loops > w.Conns {
		w.Loops = w.Conns
	}
	family, sa, err := resolveAddr(w.Addr)
	if err != nil {
		return bad("%v", err)
	}
	if proto.IsDatagram(w.Proto) {
		limit := proto.MaxDatagramIPv4
		if family == unix.AF_INET6 {
			limit = proto.MaxDatagramIPv6
		}
		if w.Size > limit {
			return bad("size %d: a %s datagram is at most %d bytes to %s (the largest UDP payload of its family), at least the %d-byte header", w.Size, w.Proto, limit, w.Addr, dgram.HeaderLen)
		}
	}
	if _, err := sourceAddrs(w.Src, family); err != nil {
		return bad("%v", err)
	}
	if s4, ok := sa.(*unix.SockaddrInet4); ok && len(w.Src) == 0 && s4.Addr[0] == 127 {
		if lo, hi, ok := envinfo.PortRange(); ok {
			w.Src = autoSources(w.Conns+w.Idle, int(hi-lo+1))
		}
	}
	return w, nil
}

// checkDatagram refuses what a udp-echo workload cannot be: one with options
// of the stream protocols, a datagram smaller than its header, a batch out of
// range, a Unix domain socket.
func checkDatagram(w result.Workload) error {
	switch {
	case strings.HasPrefix(w.Addr, "unix:"):
		return fmt.Errorf("%s runs over UDP: give HOST:PORT, not %s", w.Proto, w.Addr)
	case w.Reconnect:
		return fmt.Errorf("%s has no connection to make per request: not with reconnect (-reconnect)", w.Proto)
	case w.Idle > 0 || w.Heartbeat > 0:
		return fmt.Errorf("idle connections and their heartbeats (-idle, -heartbeat) are held connections of the stream protocols, not %s's flows", w.Proto)
	case w.Size < dgram.HeaderLen:
		return fmt.Errorf("size %d: a %s datagram carries a %d-byte header (flow, sequence number, send time): at least %d", w.Size, w.Proto, dgram.HeaderLen, dgram.HeaderLen)
	case w.Batch < 1 || w.Batch > MaxBatch:
		return fmt.Errorf("batch %d: want 1 (send and read, a call per datagram) to %d (sendmmsg and recvmmsg)", w.Batch, MaxBatch)
	case w.Rate > 0 && w.Pipeline > 1:
		return fmt.Errorf("pipeline %d with a rate: an open loop's %s flows send on their schedule whatever is outstanding; -pipeline is the closed loop's", w.Pipeline, w.Proto)
	}
	return nil
}

// resolveAddr parses HOST:PORT with a numeric host (or localhost, or a resolvable
// name), or unix:PATH for a Unix domain socket, into a socket family and address.
func resolveAddr(addr string) (family int, sa unix.Sockaddr, err error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if path == "" {
			return 0, nil, fmt.Errorf("addr %q: want unix:/path/to.sock", addr)
		}
		if len(path) >= len(unix.RawSockaddrUnix{}.Path) {
			return 0, nil, fmt.Errorf("addr %q: path longer than %d bytes", addr, len(unix.RawSockaddrUnix{}.Path)-1)
		}
		return unix.AF_UNIX, &unix.SockaddrUnix{Name: path}, nil
	}
	ap, err := resolveInet(addr)
	if err != nil {
		return 0, nil, err
	}
	a := ap.Addr().Unmap()
	if a.Is4() {
		return unix.AF_INET, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}, nil
	}
	return unix.AF_INET6, &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}, nil
}

func resolveInet(addr string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return ap, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("addr %q: want IP:PORT or unix:PATH", addr)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("addr %q: bad port", addr)
	}
	if host == "localhost" {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(p)), nil
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("addr %q: cannot resolve host", addr)
	}
	ip, _ := netip.AddrFromSlice(ips[0])
	return netip.AddrPortFrom(ip.Unmap(), uint16(p)), nil
}

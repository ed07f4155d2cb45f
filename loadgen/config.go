// Package loadgen is the load engine: event loops on raw epoll, one per client CPU,
// each owning a slice of the connections. It ramps connections up at a bounded
// number of connects in flight, drives them closed-loop (-pipeline K requests
// outstanding per connection) or open-loop on a schedule (latency from the intended
// send time: coordinated omission corrected), verifies every reply byte, and
// records latency in HdrHistograms per loop, merged at the end.
//
// The request cycle does no allocation and starts no goroutine: requests and
// expected replies are precomputed (payloads rotate through 26 patterns so a stale
// or misrouted reply is caught), reads land in one buffer per loop and are compared
// in place, and each loop's histograms and per-second counters exist before the run.
package loadgen

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"concbench/internal/result"
)

// Config is a run of the engine: the workload (documented field by field in
// result.Workload) and hooks. Only Addr is required.
type Config struct {
	result.Workload

	// OnMeasure, if set, is called once when the measured window starts (after the
	// warm-up) and once when the run stops, with the instant. It runs on the
	// coordinating goroutine, not a loop: it may take a few milliseconds.
	OnMeasure func(start bool, at time.Time) `json:"-"`
	// OnLoad, if set, is called when the ramp is over and load starts.
	OnLoad func(at time.Time) `json:"-"`
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
)

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
	def(&w.Conns, DefaultConns)
	def(&w.Pipeline, DefaultPipeline)
	def(&w.Size, DefaultSize)
	def(&w.ConnectInFlight, DefaultConnectInFlight)
	if w.Loops == 0 {
		w.Loops = max(1, len(w.CPUs))
	}
	defDur(&w.Duration, DefaultDuration)
	defDur(&w.Timeout, DefaultTimeout)
	defDur(&w.ConnectTimeout, DefaultTimeout)
	defDur(&w.Backoff, DefaultBackoff)
	bad := func(format string, a ...any) (result.Workload, error) {
		return w, fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, a...))
	}
	switch {
	case w.Proto != "echo" && w.Proto != "rpc":
		return bad("proto %q: want echo or rpc", w.Proto)
	case w.Conns < 0 || w.Pipeline < 0 || w.Size < 0 || w.Loops < 0 || w.ConnectInFlight < 0:
		return bad("counts must not be negative")
	case w.Rate < 0:
		return bad("rate %v must not be negative", w.Rate)
	case w.Duration < 0 || w.Warmup < 0 || w.Timeout < 0 || w.ConnectTimeout < 0 || w.Backoff < 0:
		return bad("durations must not be negative")
	case w.Reconnect && w.Pipeline != 1:
		return bad("-reconnect sends one request per connection: pipeline must be 1")
	case w.Requests < 0:
		return bad("requests %d must not be negative", w.Requests)
	case w.Requests > 0 && w.Rate > 0:
		return bad("a request count is for closed loop only")
	}
	if w.Loops > w.Conns {
		w.Loops = w.Conns
	}
	if _, _, err := resolveAddr(w.Addr); err != nil {
		return bad("%v", err)
	}
	return w, nil
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

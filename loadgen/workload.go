package loadgen

// The workload every loop of a run shares: the protocol's kind of reply check, the
// requests and expected replies precomputed before the run (so the request cycle
// never builds one), the open-loop schedule's steps, the clock base and the stop
// flag.

import (
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"concbench/internal/proto"
	"concbench/internal/testfiles"
)

// protoKind is how a protocol's replies are verified.
type protoKind uint8

const (
	kEcho  protoKind = iota // compared with a precomputed reply
	kRPC                    // compared with a precomputed reply, frame header first
	kDgram                  // udp-echo: each datagram checked by its flow (flows.go)
	kFile                   // parsed by a fileReply
	kHTTP                   // parsed by an httpReply
)

// profile is what one kind of connection sends and expects: the active load's
// requests, or the idle connections' heartbeats.
type profile struct {
	reqs   [][]byte // the requests a connection sends in turn, from the first again after the last
	reps   [][]byte // their expected replies (echo, rpc)
	rot    int      // len(reqs)
	expect expect   // what file and http replies must carry
}

// HeartbeatSize is the payload of an echo or rpc heartbeat, bytes.
const HeartbeatSize = 8

// shared is what every loop of a run reads: the workload, precomputed requests and
// replies, the clock base and the stop flag.
type shared struct {
	cfg      Config
	sa       unix.Sockaddr
	family   int
	kind     protoKind
	act      profile // the active connections'
	hb       profile // the idle connections' heartbeats (Workload.Idle)
	src      []unix.Sockaddr
	halfShut bool // reconnect mode: half-close after the request
	base     time.Time
	stop     atomic.Bool
	open     bool    // open loop
	periodNS float64 // open loop: conns/rate in ns, the schedule's step per connection (exp: its mean)
	exp      bool    // open loop: exponential gaps (Workload.Arrival "exp")
	phaseNS  float64 // open loop: 1/rate in ns, the step between consecutive connections

	// dgram: the workload is udp-echo, each connection a datagram flow
	// (flows.go).
	dgram bool

	// gate: the steady-state gate decides when the window opens (see Run);
	// window is then when it does, in ns since base (0: not yet), set once by
	// the coordinator and read by the loops. priming (closed loop under the
	// gate): each connection sends one request and waits until the gate says the
	// connections are primed (all served, or the server's ceiling).
	gate    bool
	window  atomic.Int64
	priming atomic.Bool
	// windowErr is why the window did not open, when Config.WindowAt had a
	// say (written by the coordinating goroutine before the loops stop).
	windowErr error
}

// newShared precomputes the requests and expected replies, of the active load and
// of the heartbeats. Payloads are lowercase letters rotating through 26 patterns
// (fewer for huge sizes), so the reply to one request differs from the reply to
// the next.
func newShared(cfg Config, base time.Time) (*shared, error) {
	family, sa, err := resolveAddr(cfg.Addr)
	if err != nil {
		return nil, err
	}
	s := &shared{cfg: cfg, base: base, family: family, sa: sa, halfShut: cfg.Reconnect,
		gate: cfg.Requests == 0 && !cfg.Reconnect}
	s.priming.Store(s.gate && cfg.Rate == 0)
	if cfg.Rate > 0 {
		s.open = true
		s.periodNS = float64(cfg.Conns) / cfg.Rate * 1e9
		s.exp = cfg.Arrival == ArrivalExp
		s.phaseNS = 1e9 / cfg.Rate
	}
	if s.src, err = sourceAddrs(cfg.Src, family); err != nil {
		return nil, err
	}
	switch cfg.Proto {
	case "file":
		s.kind = kFile
	case "http":
		s.kind = kHTTP
		s.halfShut = false // "Connection: close" instead
	case "rpc":
		s.kind = kRPC
	case proto.UDPEcho:
		s.kind, s.dgram = kDgram, true
		return s, nil // no requests to precompute, and no heartbeats
	}
	s.act = newProfile(s.kind, cfg.Size, cfg.File, cfg.Path, cfg.Addr, cfg.Reconnect)
	// A heartbeat is one small request of the run's protocol: a short payload, or
	// the smallest standard file.
	smallest := testfiles.Std[0].Name
	s.hb = newProfile(s.kind, HeartbeatSize, smallest, "/"+smallest, cfg.Addr, false)
	return s, nil
}

// newProfile precomputes a kind's requests: size payload bytes (echo, rpc), file
// (file) or path (http).
func newProfile(kind protoKind, size int, file, path, addr string, reconnect bool) profile {
	switch kind {
	case kFile:
		return profile{rot: 1, reqs: [][]byte{proto.AppendFrame(nil, []byte(file))}, expect: expectFor("file", file)}
	case kHTTP:
		return profile{rot: 1, reqs: [][]byte{httpRequest(path, addr, reconnect)}, expect: expectFor("http", path)}
	}
	p := profile{rot: 26}
	if size > 1<<16 {
		p.rot = 1
	}
	lower := make([]byte, size+p.rot)
	for i := range lower {
		lower[i] = 'a' + byte(i%26)
	}
	for r := range p.rot {
		payload := lower[r : r+size]
		if kind == kRPC {
			p.reqs = append(p.reqs, proto.AppendFrame(nil, payload))
			p.reps = append(p.reps, proto.AppendFrame(nil, proto.AppendUpper(nil, payload)))
		} else {
			p.reqs = append(p.reqs, append([]byte(nil), payload...))
			p.reps = append(p.reps, proto.AppendUpper(nil, payload))
		}
	}
	return p
}

// httpRequest is the GET every http request sends. Host is the address as given
// (localhost for a Unix domain socket); in reconnect mode it asks the server to
// close after the response.
func httpRequest(path, addr string, reconnect bool) []byte {
	host := addr
	if strings.HasPrefix(addr, "unix:") {
		host = "localhost"
	}
	req := "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: concbench-loadgen\r\n"
	if reconnect {
		req += "Connection: close\r\n"
	}
	return []byte(req + "\r\n")
}

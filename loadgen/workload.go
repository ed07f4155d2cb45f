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
)

// protoKind is how a protocol's replies are verified.
type protoKind uint8

const (
	kEcho protoKind = iota // compared with a precomputed reply
	kRPC                   // compared with a precomputed reply, frame header first
	kFile                  // parsed by a fileReply
	kHTTP                  // parsed by an httpReply
)

// shared is what every loop of a run reads: the workload, precomputed requests and
// replies, the clock base and the stop flag.
type shared struct {
	cfg      Config
	sa       unix.Sockaddr
	family   int
	kind     protoKind
	reqs     [][]byte // request for sequence s is reqs[s % rot]
	reps     [][]byte // its expected reply (echo, rpc)
	rot      uint64
	expect   expect // what file and http replies must carry
	halfShut bool   // reconnect mode: half-close after the request
	base     time.Time
	stop     atomic.Bool
	open     bool    // open loop
	periodNS float64 // open loop: conns/rate in ns, the schedule's step per connection
	phaseNS  float64 // open loop: 1/rate in ns, the step between consecutive connections

	// gate: the steady-state gate decides when the window opens (see Run);
	// window is then when it does, in ns since base (0: not yet), set once by
	// the coordinator and read by the loops. priming (closed loop under the
	// gate): each connection sends one request and waits until the gate says the
	// connections are primed (all served, or the server's ceiling).
	gate    bool
	window  atomic.Int64
	priming atomic.Bool
}

// newShared precomputes the requests and expected replies. Payloads are lowercase
// letters rotating through 26 patterns (fewer for huge sizes), so the reply to one
// request differs from the reply to the next.
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
		s.phaseNS = 1e9 / cfg.Rate
	}
	switch cfg.Proto {
	case "file":
		s.kind, s.rot = kFile, 1
		s.reqs = [][]byte{proto.AppendFrame(nil, []byte(cfg.File))}
		s.expect = expectFor("file", cfg.File)
		return s, nil
	case "http":
		s.kind, s.rot = kHTTP, 1
		s.reqs = [][]byte{httpRequest(cfg.Path, cfg.Addr, cfg.Reconnect)}
		s.expect = expectFor("http", cfg.Path)
		s.halfShut = false // "Connection: close" instead
		return s, nil
	case "rpc":
		s.kind = kRPC
	}
	s.rot = 26
	if cfg.Size > 1<<16 {
		s.rot = 1
	}
	lower := make([]byte, cfg.Size+int(s.rot))
	for i := range lower {
		lower[i] = 'a' + byte(i%26)
	}
	for r := range int(s.rot) {
		payload := lower[r : r+cfg.Size]
		if s.kind == kRPC {
			s.reqs = append(s.reqs, proto.AppendFrame(nil, payload))
			s.reps = append(s.reps, proto.AppendFrame(nil, proto.AppendUpper(nil, payload)))
		} else {
			s.reqs = append(s.reqs, append([]byte(nil), payload...))
			s.reps = append(s.reps, proto.AppendUpper(nil, payload))
		}
	}
	return s, nil
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

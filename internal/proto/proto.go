// Package proto holds the wire protocols that every model serves: per-connection,
// incremental, non-blocking sessions that turn received bytes into reply bytes and
// never touch a socket. A model owns every read and write; a session only computes.
//
// Wire formats:
//
//   - echo: a raw byte stream. Every received byte comes back in order with ASCII
//     a–z mapped to A–Z; all other bytes unchanged. After the client's FIN the
//     server writes everything still owed, then closes.
//   - rpc: requests and replies are frames: a 4-byte big-endian unsigned length L,
//     then L bytes of payload. Each request frame gets exactly one reply frame whose
//     payload is the request payload uppercased as in echo, in request order. L = 0 is
//     valid and gets an empty reply frame. L above the maximum frame size closes the
//     connection without a reply (a protocol error). Frames may be split across reads
//     and many may arrive in one read. Per-request work (see Work) runs once per frame,
//     before its reply is produced.
//   - file: downloads over rpc frames. A request is one frame holding a file name
//     relative to the served root (at most MaxFileName bytes); the reply is a frame
//     "OK <size>", the content as frames of at most FileChunk (64 KiB) bytes, then a
//     zero-length frame; or one frame "ERR <reason>". Details in file.go.
//   - http: HTTP/1.1 and 1.0 GET and HEAD of the regular files under the root:
//     keep-alive, pipelining, percent-decoding before confinement, 400/404/405/414/
//     431/501/505. Details in http.go.
//   - udp-echo: datagrams. Each comes back to its sender as one datagram of the
//     same length with ASCII a–z uppercased; no session, no connection. Served
//     through Datagram, not Session. Details in udpecho.go.
package proto

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Sentinel errors. A session returns an error wrapping ErrProtocol when its input is
// malformed; the model must then close that connection (and only that one).
var (
	ErrProtocol      = errors.New("protocol error")
	ErrFrameTooLarge = fmt.Errorf("%w: frame length above maximum", ErrProtocol)
	ErrUnknown       = errors.New("unknown protocol")
	ErrOutputCap     = fmt.Errorf("%w: replies owed above the output cap (a client that does not read)", ErrProtocol)
	// ErrClose: the session is done with the connection once its output is written
	// (HTTP's "Connection: close", or an error reply).
	ErrClose = errors.New("close after reply")
)

// DefaultMaxFrame is the largest rpc payload accepted when Options.MaxFrame is 0.
const DefaultMaxFrame = 1 << 20

// Session is the protocol state of one connection.
type Session interface {
	// Feed consumes src (bytes just read from the peer, in order) and appends to out
	// every reply that src completes. It never retains src; it may keep a copy of an
	// incomplete request. A non-nil error ends the connection: one wrapping ErrClose
	// means everything appended is owed and must be written before the close (and no
	// more input is fed); otherwise it wraps ErrProtocol, the connection must be
	// closed at once, and what was appended (the replies to earlier, complete
	// requests) goes out only as far as the socket takes it then. An error may wrap
	// both: a reply explaining the client's mistake, then the close.
	Feed(out *Out, src []byte) error
}

// Protocol creates sessions. It is safe for concurrent use.
type Protocol interface {
	Name() string
	NewSession() Session
}

// Options configure a protocol. The zero value is valid: no work, 1 MiB frames.
type Options struct {
	// MaxFrame is the largest rpc payload accepted, in bytes; 0 means DefaultMaxFrame.
	MaxFrame int `json:"max_frame"`
	// Work is what each rpc request costs besides I/O.
	Work Work `json:"work"`
	// Root is the directory the file and http protocols serve (they need one).
	Root string `json:"root,omitempty"`
	// MaxOutput caps the reply bytes one connection may owe in memory before the
	// file and http protocols answer another request; 0 means DefaultMaxOutput.
	// Their small requests can ask for large replies: a client that pipelines
	// requests without reading is closed (ErrOutputCap) instead of growing memory.
	MaxOutput int `json:"max_output,omitempty"`
}

// DefaultMaxOutput is Options.MaxOutput's default.
const DefaultMaxOutput = 4 << 20

// MaxOutFiles caps the open files one connection's owed replies may hold (each is
// a descriptor); past it the file and http protocols stop with ErrOutputCap.
const MaxOutFiles = 256

var constructors = map[string]func(Options) (Protocol, error){
	"echo": func(Options) (Protocol, error) { return echo{}, nil },
	"rpc":  newRPC,
}

// ServesFiles reports whether the named protocol serves files from Options.Root.
func ServesFiles(name string) bool { return name == "file" || name == "http" }

// Names lists the protocols, sorted.
func Names() []string {
	names := make([]string, 0, len(constructors))
	for n := range constructors {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// New returns the named protocol. An unknown name gives an error wrapping
// ErrUnknown that lists the valid names.
func New(name string, opts Options) (Protocol, error) {
	c, ok := constructors[name]
	if !ok {
		return nil, fmt.Errorf("%w %q (valid: %s)", ErrUnknown, name, strings.Join(Names(), ", "))
	}
	if opts.MaxFrame < 0 {
		return nil, fmt.Errorf("max frame %d: must be >= 0", opts.MaxFrame)
	}
	return c(opts)
}

// AppendUpper appends src to dst with ASCII a–z mapped to A–Z.
func AppendUpper(dst, src []byte) []byte {
	n := len(dst)
	dst = append(dst, src...)
	b := dst[n:]
	for i, c := range b {
		if c-'a' < 26 {
			b[i] = c - ('a' - 'A')
		}
	}
	return dst
}

type echo struct{}

func (echo) Name() string        { return "echo" }
func (echo) NewSession() Session { return echoSession{} }

type echoSession struct{}

func (echoSession) Feed(out *Out, src []byte) error {
	out.Buf = AppendUpper(out.Buf, src)
	return nil
}

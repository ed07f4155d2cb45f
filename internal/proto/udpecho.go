package proto

import "fmt"

// udp-echo: the datagram protocol. Each datagram is a request on its own and
// comes back to its sender as one datagram of the same length with ASCII a–z
// uppercased, as echo does for a stream. There is no session: a datagram
// carries no state from the one before it, and no connection ties a peer to a
// thread or process. A datagram larger than the model's receive buffer
// (Config.MaxDatagram) is dropped whole and counted, never echoed in part.

// UDPEcho is the name of the datagram protocol.
const UDPEcho = "udp-echo"

// Datagram limits. An IPv4 UDP datagram's payload is at most 65535 bytes less
// its IP (20) and UDP (8) headers; an IPv6 one's 65535 less the UDP header.
const (
	MaxDatagramIPv4 = 65535 - 20 - 8
	MaxDatagramIPv6 = 65535 - 8
	// DefaultMaxDatagram is a server's receive buffer per datagram when not
	// set: the largest payload IPv4 can carry.
	DefaultMaxDatagram = MaxDatagramIPv4
)

func init() {
	constructors[UDPEcho] = func(Options) (Protocol, error) { return udpEcho{}, nil }
}

// Datagram is a protocol served over datagrams: each is answered alone.
type Datagram interface {
	Protocol
	// Reply turns the datagram p into its reply, in place, and returns it.
	Reply(p []byte) []byte
}

// IsDatagram reports whether the named protocol is served over datagrams
// (udp-echo) rather than over connections.
func IsDatagram(name string) bool { return name == UDPEcho }

type udpEcho struct{}

var _ Datagram = udpEcho{}

func (udpEcho) Name() string { return UDPEcho }

// NewSession exists for the Protocol interface only: no model feeds a
// datagram protocol through a stream session (Config.Validate sends udp-echo
// to the models' datagram path). One that did would see every byte refused.
func (udpEcho) NewSession() Session { return notStream{} }

func (udpEcho) Reply(p []byte) []byte {
	Upper(p)
	return p
}

type notStream struct{}

func (notStream) Feed(*Out, []byte) error {
	return fmt.Errorf("%w: %s is a datagram protocol, not served over a stream", ErrProtocol, UDPEcho)
}

// Upper maps ASCII a–z in p to A–Z, in place.
func Upper(p []byte) {
	for i, c := range p {
		if c-'a' < 26 {
			p[i] = c - ('a' - 'A')
		}
	}
}

package loadgen

// Source addresses: a connection's 4-tuple must be unique, and one source address
// to one server port gives only the ephemeral port range (about 28,000 ports by
// default). Spread over several source addresses, connections go past it: each
// socket is bound to its address before connect, with IP_BIND_ADDRESS_NO_PORT
// so that the port is still chosen at connect, per destination.

import (
	"fmt"
	"net/netip"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// sourceAddrs parses Workload.Src: addresses ("127.0.0.2") and ranges of them
// ("127.0.0.2-127.0.0.250"), of the target's family.
func sourceAddrs(src []string, family int) ([]unix.Sockaddr, error) {
	var out []unix.Sockaddr
	for _, s := range src {
		ips, err := expandRange(s)
		if err != nil {
			return nil, err
		}
		for _, ip := range ips {
			switch {
			case family == unix.AF_INET && ip.Is4():
				out = append(out, &unix.SockaddrInet4{Addr: ip.As4()})
			case family == unix.AF_INET6 && ip.Is6() && !ip.Is4In6():
				out = append(out, &unix.SockaddrInet6{Addr: ip.As16()})
			default:
				return nil, fmt.Errorf("source %s: not of the server address's family (or a Unix socket, which has no source address)", ip)
			}
		}
	}
	return out, nil
}

// maxSources bounds a source range, against a typo that would expand to
// millions.
const maxSources = 1 << 16

// expandRange expands "A" or "A-B" (A ≤ B, same family) into its addresses.
func expandRange(s string) ([]netip.Addr, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := netip.ParseAddr(strings.TrimSpace(lo))
	if err != nil {
		return nil, fmt.Errorf("source %q: want an IP address or a range A-B (e.g. 127.0.0.2-127.0.0.250)", s)
	}
	if !isRange {
		return []netip.Addr{a}, nil
	}
	b, err := netip.ParseAddr(strings.TrimSpace(hi))
	if err != nil || a.BitLen() != b.BitLen() || b.Less(a) {
		return nil, fmt.Errorf("source %q: want a range A-B of one family with A ≤ B", s)
	}
	var out []netip.Addr
	for ip := a; ; ip = ip.Next() {
		if len(out) == maxSources {
			return nil, fmt.Errorf("source %q: more than %d addresses", s, maxSources)
		}
		out = append(out, ip)
		if ip == b {
			return out, nil
		}
	}
}

// autoSources picks loopback source addresses for conns connections to one
// loopback IPv4 server port when one address's ports (ports of them) would not
// do, keeping a tenth of each address's ports free for the rest of the machine:
// 127.0.0.1, 127.0.0.2, …. nil when one address is enough.
func autoSources(conns, ports int) []string {
	per := ports * 9 / 10
	if per <= 0 || conns <= per {
		return nil
	}
	n := (conns + per - 1) / per
	if n > 254 {
		n = 254 // 127.0.0.1 to 127.0.0.254; beyond, give -src
	}
	return []string{fmt.Sprintf("127.0.0.1-127.0.0.%d", n)}
}

// bindSource binds fd to the source address sa with the port left to connect.
func bindSource(fd int, sa unix.Sockaddr) error {
	// IP_BIND_ADDRESS_NO_PORT: the port is picked at connect for the 4-tuple,
	// not at bind for the address alone (which would cap the address at the port
	// range over every destination).
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	if err := unix.Bind(fd, sa); err != nil {
		return os.NewSyscallError("bind", err)
	}
	return nil
}

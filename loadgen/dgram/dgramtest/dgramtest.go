// Package dgramtest is a faulty udp-echo server for tests: it does to the
// replies what a lossy network and a sloppy server do, by a fixed rule on
// each request's sequence number, so that a test knows exactly what the
// client's account (dgram.Tally) must say.
//
// The rule, for each flow's requests (sequence numbers from 0): the reply to
// every 10th is dropped (seq%10 == 9), one in 100 is sent twice
// (seq%100 == 0), the replies to 501 and 502 are swapped (501's is held until
// 502's is sent), and 250's is corrupted (its last byte).
package dgramtest

import (
	"net"
	"sync"
	"testing"

	"concbench/loadgen/dgram"
)

// Rule is what the server does to the reply to request seq.
type Rule struct {
	Drop, Twice, Corrupt, Hold bool
	// Release: the reply held (Hold) is sent after this one's.
	Release bool
}

// RuleOf is the rule for request seq of any flow.
func RuleOf(seq uint64) Rule {
	return Rule{
		Drop:    seq%10 == 9,
		Twice:   seq%100 == 0,
		Corrupt: seq == 250,
		Hold:    seq == 501,
		Release: seq == 502,
	}
}

// Want is the account of n requests sent in order on each of flows flows
// (sequence numbers 0 to n-1), every one of whose fates is known: the
// dropped ones lost, the corrupted one a mismatch (and not lost), the held
// one answered after the next, reordered.
func Want(flows, n int) dgram.Tally {
	var t dgram.Tally
	for seq := range uint64(n) {
		r := RuleOf(seq)
		t.Sent++
		switch {
		case r.Drop:
			t.Lost++
			continue
		case r.Corrupt:
			t.Mismatched++
		default:
			t.Answered++
		}
		if r.Twice {
			t.Duplicated++
		}
		if r.Hold && seq+1 < uint64(n) {
			t.Reordered++
		}
	}
	return dgram.Tally{
		Sent: t.Sent * uint64(flows), Answered: t.Answered * uint64(flows), Lost: t.Lost * uint64(flows),
		Duplicated: t.Duplicated * uint64(flows), Reordered: t.Reordered * uint64(flows), Mismatched: t.Mismatched * uint64(flows),
	}
}

// Replies is what the server sends back for requests of one flow sent in
// order, each answered as it comes (a simulation without a socket).
func Replies(reqs [][]byte) [][]byte {
	var out, held [][]byte
	for _, req := range reqs {
		out = append(out, reply(req, &held)...)
	}
	return out
}

// reply is the replies to req, in the order sent, by RuleOf; held keeps a
// reply held back until its release.
func reply(req []byte, held *[][]byte) [][]byte {
	h, err := dgram.Decode(req)
	if err != nil {
		return nil // not a request: no reply
	}
	r := RuleOf(h.Seq)
	if r.Drop {
		return nil
	}
	rep := dgram.Expected(nil, req)
	if r.Corrupt {
		rep[len(rep)-1] = '!'
	}
	if r.Hold {
		*held = append(*held, rep)
		return nil
	}
	out := [][]byte{rep}
	if r.Twice {
		out = append(out, rep)
	}
	if r.Release {
		out = append(out, *held...)
		*held = (*held)[:0]
	}
	return out
}

// Start starts the faulty server on a loopback UDP port and returns its
// address; it stops when the test ends.
func Start(tb testing.TB) string {
	tb.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	// Room for every flow's pipeline at once: a datagram the kernel drops
	// here would be a loss the rule did not make.
	_ = conn.SetReadBuffer(4 << 20)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1<<16)
		type flow struct {
			peer string
			id   uint32
		}
		held := map[flow]*[][]byte{}
		for {
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			h, _ := dgram.Decode(buf[:n])
			key := flow{from.String(), h.Flow}
			if held[key] == nil {
				held[key] = new([][]byte)
			}
			for _, rep := range reply(buf[:n], held[key]) {
				if _, err := conn.WriteToUDP(rep, from); err != nil {
					return
				}
			}
		}
	}()
	tb.Cleanup(func() {
		conn.Close()
		wg.Wait()
	})
	return conn.LocalAddr().String()
}

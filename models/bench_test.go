package models_test

import (
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"concbench/models"
)

// BenchmarkRoundTrip measures 64-byte echo round trips against every model, with
// the client in the same process (so the figures are rough: client and server share
// the CPUs; the load generator is the instrument for real comparisons). Each
// connection keeps one request outstanding, so a model that cannot hold that many
// connections at once (a pool of fewer blocking workers) is skipped, not left to
// wait forever. Fork's figure includes spawning a child per connection.
func BenchmarkRoundTrip(b *testing.B) {
	for _, model := range models.Names() {
		for _, conns := range []int{1, 50} {
			b.Run(fmt.Sprintf("%s/c=%d", model, conns), func(b *testing.B) {
				if limit := maxConns(b, model); limit < conns {
					b.Skipf("%s holds at most %d connections at once in tests", model, limit)
				}
				s := start(b, model, "echo", nil)
				benchRoundTrips(b, s.addr, conns)
			})
		}
	}
}

func benchRoundTrips(b *testing.B, addr string, conns int) {
	cs := make([]net.Conn, conns)
	for i := range cs {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		cs[i] = c
	}
	req := []byte("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!?")
	want := upper(req)
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i, c := range cs {
		n := b.N / conns
		if i < b.N%conns {
			n++
		}
		wg.Go(func() {
			got := make([]byte, len(req))
			for range n {
				if _, err := c.Write(req); err != nil {
					errs <- err
					return
				}
				if _, err := io.ReadFull(c, got); err != nil {
					errs <- err
					return
				}
				if string(got) != string(want) {
					errs <- fmt.Errorf("reply %q, want %q", got, want)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

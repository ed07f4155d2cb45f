package main

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"concbench/models"
)

// TestMemoryBounded: 100 clients that send without ever reading their replies do
// not grow the server's memory: every model stops reading a connection whose
// output it cannot write (back-pressure at -high-water, or a blocking write), so
// what the clients push stays in kernel socket buffers, bounded by them, and the
// server's RSS (its whole process tree) grows by at most 1 MiB a client while
// the clients have written far more than that. A fresh client is still served
// meanwhile.
func TestMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: floods every model")
	}
	bin := build(t)
	const clients = 100
	const perClient = 1 << 20 // allowed RSS growth a client
	extra := map[string][]string{
		"fork":     {"-max-procs", "200"},
		"procpool": {"-workers", "104"}, // one worker a client, and a few for the probe
		"prefork":  {"-workers", "2"},
	}
	for _, model := range models.Names() {
		t.Run(model, func(t *testing.T) {
			srv := startBinary(t, bin, model, extra[model]...)
			defer srv.stop(t)
			conns := make([]net.Conn, clients)
			for i := range conns {
				c, err := net.DialTimeout("tcp", srv.addr, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				conns[i] = c
				// One round trip: the connection is being served (a child or
				// worker holds it) before the baseline is taken.
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.Write([]byte("x")); err != nil {
					t.Fatal(err)
				}
				if _, err := c.Read(make([]byte, 1)); err != nil {
					t.Fatalf("client %d: %v", i, err)
				}
			}
			base := srv.tree(t).RSSBytes

			// Flood: write 64 KiB chunks until a write has stalled for 500 ms
			// (the server stopped reading) or 4 s have passed.
			var written atomic.Int64
			var wg sync.WaitGroup
			chunk := make([]byte, 64<<10)
			end := time.Now().Add(4 * time.Second)
			for _, c := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for time.Now().Before(end) {
						c.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
						n, err := c.Write(chunk)
						written.Add(int64(n))
						if err != nil {
							if !errors.Is(err, os.ErrDeadlineExceeded) {
								t.Errorf("write: %v", err)
							}
							return
						}
					}
				}()
			}
			var peak int64
			sample := time.NewTicker(100 * time.Millisecond)
			defer sample.Stop()
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
		flood:
			for {
				select {
				case <-done:
					break flood
				case <-sample.C:
					peak = max(peak, srv.tree(t).RSSBytes)
				}
			}
			peak = max(peak, srv.tree(t).RSSBytes)
			growth := peak - base
			t.Logf("%s: clients wrote %d MiB without reading; server RSS %d MiB -> peak %d MiB (+%d KiB a client)",
				model, written.Load()>>20, base>>20, peak>>20, growth/clients>>10)
			if growth > clients*perClient {
				t.Errorf("server RSS grew by %d MiB for %d clients that do not read (bound %d MiB)", growth>>20, clients, clients*perClient>>20)
			}
			if written.Load() < 4*clients*perClient {
				t.Errorf("the clients wrote only %d MiB: too little to show a bound", written.Load()>>20)
			}
			// A fresh client is served while the flooders are stalled.
			checkHello(t, model, "tcp", srv.addr)
		})
	}
}

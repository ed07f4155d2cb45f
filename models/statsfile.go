package models

import (
	"encoding/json"
	"io"
	"sync"
	"time"
)

// StatsLine is one line of a server's -stats file (JSON lines, one every 100 ms by
// default, and a last one at shutdown): when it was taken and the counters then.
//
//	{"unix_ms":1795000000123,"elapsed_ms":100,"accepted":10,"active":10,"closed":0,
//	 "proto_errors":0,"io_errors":0,"refused":0,"accept_pauses":0,"idle_closed":0,
//	 "output_capped":0,"gauges":{...}}
type StatsLine struct {
	UnixMS    int64 `json:"unix_ms"`    // wall clock, milliseconds since the epoch
	ElapsedMS int64 `json:"elapsed_ms"` // milliseconds since the writer started
	StatsSnapshot
}

// WriteStats writes a StatsLine to w every interval until the returned stop is
// called, which writes a final line and returns once the writer is done.
func WriteStats(w io.Writer, s *Stats, every time.Duration) (stop func()) {
	start := time.Now()
	enc := json.NewEncoder(w)
	write := func() {
		now := time.Now()
		enc.Encode(StatsLine{UnixMS: now.UnixMilli(), ElapsedMS: now.Sub(start).Milliseconds(), StatsSnapshot: s.Snapshot()})
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				write()
				return
			case <-t.C:
				write()
			}
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
}

package proto

import (
	"fmt"
	"strings"
	"time"
)

// WorkKind names what a request costs besides I/O.
type WorkKind string

// The kinds of per-request work.
const (
	WorkNone  WorkKind = "none"  // no work
	WorkCPU   WorkKind = "cpu"   // busy loop on the serving thread for D
	WorkSleep WorkKind = "sleep" // blocking sleep of the serving thread (or goroutine) for D
)

// Work is the per-request cost, written `none`, `cpu:DUR` or `sleep:DUR`
// (DUR in time.ParseDuration form, e.g. `cpu:50us`, `sleep:1ms`). The zero value is none.
// It marshals to and from that text, so results record it as written.
type Work struct {
	Kind WorkKind
	D    time.Duration
}

// ParseWork parses `none`, `cpu:DUR` or `sleep:DUR`.
func ParseWork(s string) (Work, error) {
	if s == "" || s == string(WorkNone) {
		return Work{}, nil
	}
	kind, dur, ok := strings.Cut(s, ":")
	if !ok || (kind != string(WorkCPU) && kind != string(WorkSleep)) {
		return Work{}, fmt.Errorf("work %q: want none, cpu:DUR or sleep:DUR (e.g. cpu:50us, sleep:1ms)", s)
	}
	d, err := time.ParseDuration(dur)
	if err != nil {
		return Work{}, fmt.Errorf("work %q: %w", s, err)
	}
	if d <= 0 {
		return Work{}, fmt.Errorf("work %q: duration must be positive", s)
	}
	return Work{Kind: WorkKind(kind), D: d}, nil
}

func (w Work) String() string {
	if w.Kind == "" || w.Kind == WorkNone {
		return string(WorkNone)
	}
	return string(w.Kind) + ":" + w.D.String()
}

// MarshalText writes the flag form.
func (w Work) MarshalText() ([]byte, error) { return []byte(w.String()), nil }

// UnmarshalText parses the flag form.
func (w *Work) UnmarshalText(b []byte) error {
	v, err := ParseWork(string(b))
	if err != nil {
		return err
	}
	*w = v
	return nil
}

// Set implements flag.Value.
func (w *Work) Set(s string) error { return w.UnmarshalText([]byte(s)) }

// Do performs the work on the calling goroutine: a busy loop for cpu, a blocking
// sleep for sleep (which blocks the whole loop of an event-driven model, as a
// blocking handler would).
func (w Work) Do() {
	switch w.Kind {
	case WorkCPU:
		for start := time.Now(); time.Since(start) < w.D; {
		}
	case WorkSleep:
		time.Sleep(w.D)
	}
}

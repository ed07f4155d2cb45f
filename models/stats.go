package models

import (
	"sync"
	"sync/atomic"
)

// counters are the counters every model keeps, as a plain struct of atomics: a
// fixed layout with no pointer, mutex or map, so that it may live in memory shared
// between processes — prefork's workers count straight into a slot of a shared
// mapping, as nginx's stub_status does — as well as in a Stats of this process.
// A zeroed one is valid.
type counters struct {
	accepted, active, closed, protoErrors, ioErrors, refused, acceptPauses atomic.Int64
	idleClosed, outputCapped                                               atomic.Int64
	// The datagram protocols' counters (see Counts).
	dgramIn, dgramOut, dropOversize, dropSendFull, dropSendError atomic.Int64
}

// load reads the counters (each atomically; the set is not one snapshot).
func (c *counters) load() Counts {
	return Counts{
		Accepted: c.accepted.Load(), Active: c.active.Load(), Closed: c.closed.Load(),
		ProtoErrors: c.protoErrors.Load(), IOErrors: c.ioErrors.Load(),
		Refused: c.refused.Load(), AcceptPauses: c.acceptPauses.Load(),
		IdleClosed: c.idleClosed.Load(), OutputCapped: c.outputCapped.Load(),
		DatagramsIn: c.dgramIn.Load(), DatagramsOut: c.dgramOut.Load(), DroppedOversize: c.dropOversize.Load(),
		DroppedSendFull: c.dropSendFull.Load(), DroppedSendError: c.dropSendError.Load(),
	}
}

// store sets the counters to v.
func (c *counters) store(v Counts) {
	c.accepted.Store(v.Accepted)
	c.active.Store(v.Active)
	c.closed.Store(v.Closed)
	c.protoErrors.Store(v.ProtoErrors)
	c.ioErrors.Store(v.IOErrors)
	c.refused.Store(v.Refused)
	c.acceptPauses.Store(v.AcceptPauses)
	c.idleClosed.Store(v.IdleClosed)
	c.outputCapped.Store(v.OutputCapped)
	c.dgramIn.Store(v.DatagramsIn)
	c.dgramOut.Store(v.DatagramsOut)
	c.dropOversize.Store(v.DroppedOversize)
	c.dropSendFull.Store(v.DroppedSendFull)
	c.dropSendError.Store(v.DroppedSendError)
}

func (c *counters) opened() { c.accepted.Add(1); c.active.Add(1) }
func (c *counters) done()   { c.active.Add(-1); c.closed.Add(1) }

// Counts are the common counters at one moment.
type Counts struct {
	Accepted     int64 `json:"accepted"`      // connections accepted
	Active       int64 `json:"active"`        // connections open now
	Closed       int64 `json:"closed"`        // connections closed, for any reason
	ProtoErrors  int64 `json:"proto_errors"`  // connections closed for malformed input
	IOErrors     int64 `json:"io_errors"`     // connections closed by a read or write error (reset, EPIPE)
	Refused      int64 `json:"refused"`       // connections accepted and closed at once (e.g. select's FD_SETSIZE)
	AcceptPauses int64 `json:"accept_pauses"` // times accepting was paused for lack of descriptors
	IdleClosed   int64 `json:"idle_closed"`   // connections closed for no byte read or written for Config.IdleTimeout
	OutputCapped int64 `json:"output_capped"` // connections closed for owing more than Config.MaxOutput bytes of replies

	// The datagram protocols (udp-echo) have no connection: a server counts
	// datagrams, and every one it received and did not answer under one
	// reason. Datagrams the kernel dropped before the server read them (its
	// receive buffer full) are the rcvbuf_drops gauge.
	DatagramsIn      int64 `json:"datagrams_in,omitempty"`       // datagrams received
	DatagramsOut     int64 `json:"datagrams_out,omitempty"`      // replies sent
	DroppedOversize  int64 `json:"dropped_oversize,omitempty"`   // larger than Config.MaxDatagram: dropped whole, never echoed in part
	DroppedSendFull  int64 `json:"dropped_send_full,omitempty"`  // reply dropped: the socket's send buffer was full (EAGAIN)
	DroppedSendError int64 `json:"dropped_send_error,omitempty"` // reply dropped: the send failed otherwise (logged once)
}

// add adds o to c, counter by counter.
func (c *Counts) add(o Counts) {
	c.Accepted += o.Accepted
	c.Active += o.Active
	c.Closed += o.Closed
	c.ProtoErrors += o.ProtoErrors
	c.IOErrors += o.IOErrors
	c.Refused += o.Refused
	c.AcceptPauses += o.AcceptPauses
	c.IdleClosed += o.IdleClosed
	c.OutputCapped += o.OutputCapped
	c.DatagramsIn += o.DatagramsIn
	c.DatagramsOut += o.DatagramsOut
	c.DroppedOversize += o.DroppedOversize
	c.DroppedSendFull += o.DroppedSendFull
	c.DroppedSendError += o.DroppedSendError
}

// Stats are a server's counters and gauges, safe for concurrent use; NewEnv makes
// them. Read them with Snapshot. Besides the common counters a model may publish
// gauges of its own (children live, workers busy, threads live, queue length…)
// with Gauge.
type Stats struct {
	// *counters is where the model counts: the Stats' own, or (a prefork
	// worker) a slot of memory shared with its parent.
	*counters

	mu         sync.Mutex
	gauges     map[string]func() int64
	onSnapshot func()
}

// newStats returns Stats counting in c, or in counters of their own if c is nil.
func newStats(c *counters) *Stats {
	if c == nil {
		c = new(counters)
	}
	return &Stats{counters: c}
}

// OnSnapshot registers f to run at the start of every Snapshot, for a model whose
// counters live elsewhere (prefork's workers count in shared memory) to bring
// them up to date first. f must be safe to call from any goroutine.
func (s *Stats) OnSnapshot(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onSnapshot = f
}

// Gauge publishes a model-specific figure under name; f is called at every
// Snapshot and must be safe to call from any goroutine. Registering a name again
// replaces it.
func (s *Stats) Gauge(name string, f func() int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gauges == nil {
		s.gauges = map[string]func() int64{}
	}
	s.gauges[name] = f
}

// StatsSnapshot is Stats at one moment.
type StatsSnapshot struct {
	Counts
	// Gauges are the model's own figures by name (see each model's doc).
	Gauges map[string]int64 `json:"gauges,omitempty"`
}

// Snapshot reads the counters and gauges.
func (s *Stats) Snapshot() StatsSnapshot {
	s.mu.Lock()
	refresh := s.onSnapshot
	s.mu.Unlock()
	if refresh != nil {
		refresh()
	}
	return StatsSnapshot{Counts: s.load(), Gauges: s.readGauges()}
}

func (s *Stats) readGauges() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.gauges) == 0 {
		return nil
	}
	g := make(map[string]int64, len(s.gauges))
	for name, f := range s.gauges {
		g[name] = f()
	}
	return g
}

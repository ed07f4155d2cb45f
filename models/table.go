package models

import "context"

// table is the client table of select and poll: the live connections in a slice
// (the seed's client[], compacted), each knowing its index, rebuilt into the
// syscall's sets on every pass. It is the drainer of those two models.
type table struct {
	*loop
	gate    *acceptGate
	clients []*evConn
}

// insert adds a connection taken with l.add at the end of the table.
func (t *table) insert(c *evConn) {
	c.idx = len(t.clients)
	t.clients = append(t.clients, c)
}

// drop swap-removes c from the table and releases it; the connection that was
// last in the table takes c's place.
func (t *table) drop(c *evConn) {
	last := t.clients[len(t.clients)-1]
	t.clients[c.idx] = last
	last.idx = c.idx
	t.clients[len(t.clients)-1] = nil
	t.clients = t.clients[:len(t.clients)-1]
	t.release(c)
}

// prune drops every connection for which gone reports true.
func (t *table) prune(gone func(*evConn) bool) {
	for i := 0; i < len(t.clients); {
		if c := t.clients[i]; gone(c) {
			t.drop(c) // t.clients[i] is now another connection
			continue
		}
		i++
	}
}

// pass is what the loop does before each pass over the table: the shutdown step
// (loopClock.stopping) and the idle sweep. It reports whether the loop must end.
func (t *table) pass(ctx context.Context) (stop bool) {
	if t.stopping(ctx, t) {
		return true
	}
	if t.sweepDue() {
		t.prune(func(c *evConn) bool {
			if !t.idleExpired(c) {
				return false
			}
			t.env.Stats.idleClosed.Add(1)
			return true
		})
	}
	return false
}

// startDrain: the listener leaves the sets for good, and every connection is
// settled once in draining mode.
func (t *table) startDrain() {
	t.gate.close()
	t.prune(t.finished)
}

func (t *table) drainDone() bool { return len(t.clients) == 0 }

package models

// epoll-et: one thread, edge-triggered epoll (EPOLLET), as in the seed's notes: every
// descriptor non-blocking, and a ready descriptor reported once per change, so the
// loop must read and write until EAGAIN or lose the event. Connections are
// registered once for EPOLLIN|EPOLLOUT and never modified; readiness is latched per
// connection and cleared only by EAGAIN. A connection that keeps sending is cut off
// after a read budget and driven again on the next pass, so it cannot hold the loop.
//
// Where it comes from: Linux 2.5.44 (2002); the mode of nginx, and of Go's own
// netpoller.
//
// Strengths: the fewest epoll syscalls of any model (no epoll_ctl after ADD), fewer
// wake-ups. Limits: one thread, so one core; a slow handler stalls everything; a
// read that stops before EAGAIN without being requeued would hang a connection —
// the classic ET bug this loop guards against.

func init() {
	Register("epoll-et", "one thread, edge-triggered epoll: fewest syscalls, must drain to EAGAIN; one core",
		func() Model { return epollModel{edge: true} })
}

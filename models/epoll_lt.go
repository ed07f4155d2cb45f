package models

// epoll-lt: one thread, epoll(7) in its default level-triggered mode, as in the seed's
// notes: epoll_create, epoll_ctl ADD/MOD/DEL, epoll_wait. A ready descriptor is
// reported on every epoll_wait until it is no longer ready, so the loop may do one
// read per event and come back; interest is changed with EPOLL_CTL_MOD (EPOLLOUT only
// while output is queued, no EPOLLIN while back-pressured).
//
// Where it comes from: Linux 2.5.44 (2002), the answer to the C10K problem; the
// shape of libevent, Redis and Node's libuv on Linux.
//
// Strengths: epoll_wait returns only the ready descriptors, so a pass costs
// O(ready), not O(connections); forgiving (a missed read is reported again).
// Limits: one thread, so one core; a slow handler (-work sleep:…) stalls every
// connection; an epoll_ctl per change of interest.

func init() {
	Register("epoll-lt", "one thread, level-triggered epoll: O(ready) per pass, forgiving; one core",
		func() Model { return epollModel{edge: false} })
}

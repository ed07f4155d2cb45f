package loadgen

// dueHeap is a binary min-heap of connection indexes ordered by one of their
// deadlines: conns[i].due (the open-loop schedule of one loop, positions in
// heapPos) or, with expiry set, conns[i].expAt (the datagram flows' expiry,
// positions in expPos). It never allocates after its first growth (its
// capacity is the loop's connection count).
type dueHeap struct {
	idx    []int32
	conns  []conn
	expiry bool
}

// key is connection ci's deadline in this heap.
func (h *dueHeap) key(ci int32) int64 {
	if h.expiry {
		return h.conns[ci].expAt
	}
	return h.conns[ci].due
}

// setPos records connection ci's position in this heap (-1: not in it).
func (h *dueHeap) setPos(ci, pos int32) {
	if h.expiry {
		h.conns[ci].expPos = pos
	} else {
		h.conns[ci].heapPos = pos
	}
}

func (h *dueHeap) less(i, j int) bool { return h.key(h.idx[i]) < h.key(h.idx[j]) }

func (h *dueHeap) swap(i, j int) {
	h.idx[i], h.idx[j] = h.idx[j], h.idx[i]
	h.setPos(h.idx[i], int32(i))
	h.setPos(h.idx[j], int32(j))
}

func (h *dueHeap) push(ci int32) {
	h.idx = append(h.idx, ci)
	i := len(h.idx) - 1
	h.setPos(ci, int32(i))
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			break
		}
		h.swap(i, p)
		i = p
	}
}

// top returns the connection due first; ok is false when the heap is empty.
func (h *dueHeap) top() (ci int32, ok bool) {
	if len(h.idx) == 0 {
		return 0, false
	}
	return h.idx[0], true
}

// popDue pops the connection due first if its deadline is at or before now.
func (h *dueHeap) popDue(now int64) (ci int32, ok bool) {
	if len(h.idx) == 0 || h.key(h.idx[0]) > now {
		return 0, false
	}
	return h.pop(), true
}

func (h *dueHeap) pop() int32 {
	ci := h.idx[0]
	last := len(h.idx) - 1
	h.swap(0, last)
	h.idx = h.idx[:last]
	h.setPos(ci, -1)
	i := 0
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < last && h.less(l, m) {
			m = l
		}
		if r < last && h.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		h.swap(i, m)
		i = m
	}
	return ci
}

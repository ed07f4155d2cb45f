package loadgen

// dueHeap is a binary min-heap of connection indexes ordered by conns[i].due: the
// open-loop schedule of one loop. It never allocates after its first growth (its
// capacity is the loop's connection count).
type dueHeap struct {
	idx   []int32
	conns []conn
}

func (h *dueHeap) less(i, j int) bool { return h.conns[h.idx[i]].due < h.conns[h.idx[j]].due }

func (h *dueHeap) swap(i, j int) {
	h.idx[i], h.idx[j] = h.idx[j], h.idx[i]
	h.conns[h.idx[i]].heapPos = int32(i)
	h.conns[h.idx[j]].heapPos = int32(j)
}

func (h *dueHeap) push(ci int32) {
	h.idx = append(h.idx, ci)
	i := len(h.idx) - 1
	h.conns[ci].heapPos = int32(i)
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

func (h *dueHeap) pop() int32 {
	ci := h.idx[0]
	last := len(h.idx) - 1
	h.swap(0, last)
	h.idx = h.idx[:last]
	h.conns[ci].heapPos = -1
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

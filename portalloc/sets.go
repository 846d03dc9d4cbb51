package portalloc

import "math/rand/v2"

// denseSet is a set of port indices with O(1) add, remove, membership and
// uniform random pick: the members are packed at the front of items and
// pos maps an index to its slot (or -1). Removing swaps the last member into
// the hole, which does not bias the draw: pick chooses a slot uniformly and
// every member occupies exactly one slot.
type denseSet struct {
	items []uint16 // items[:len] are the members
	pos   []int32  // pos[i] is the slot of index i in items, or -1
}

func newDenseSet(n int) denseSet {
	s := denseSet{items: make([]uint16, 0, n), pos: make([]int32, n)}
	for i := range s.pos {
		s.pos[i] = -1
	}
	return s
}

func (s *denseSet) len() int { return len(s.items) }

func (s *denseSet) has(i int32) bool { return s.pos[i] >= 0 }

func (s *denseSet) add(i int32) {
	if s.pos[i] >= 0 {
		return
	}
	s.pos[i] = int32(len(s.items))
	s.items = append(s.items, uint16(i)) // within capacity: never allocates
}

func (s *denseSet) remove(i int32) {
	slot := s.pos[i]
	if slot < 0 {
		return
	}
	last := len(s.items) - 1
	moved := s.items[last]
	s.items[slot] = moved
	s.pos[moved] = slot
	s.items = s.items[:last]
	s.pos[i] = -1
}

// pick returns a member drawn uniformly at random; the set must not be empty.
// rand.Rand.IntN is unbiased (Lemire's method with rejection), unlike a bare
// modulo.
func (s *denseSet) pick(r *rand.Rand) int32 {
	return int32(s.items[r.IntN(len(s.items))])
}

// links are the next/prev pointers of the intrusive FIFO lists. A port is on
// at most one list at a time, so all lists of an Allocator share one links.
type links struct {
	next, prev []int32
}

func newLinks(n int) *links {
	l := &links{next: make([]int32, n), prev: make([]int32, n)}
	for i := range l.next {
		l.next[i], l.prev[i] = -1, -1
	}
	return l
}

// fifo is an intrusive doubly linked list of port indices in the order they
// entered it, which is also deadline order because each list has one fixed
// duration. Push, remove and front are O(1) and never allocate.
type fifo struct {
	l          *links
	head, tail int32
}

func newFIFO(l *links) fifo { return fifo{l: l, head: -1, tail: -1} }

func (f *fifo) front() int32 { return f.head }

func (f *fifo) next(i int32) int32 { return f.l.next[i] }

func (f *fifo) push(i int32) {
	f.l.prev[i], f.l.next[i] = f.tail, -1
	if f.tail >= 0 {
		f.l.next[f.tail] = i
	} else {
		f.head = i
	}
	f.tail = i
}

func (f *fifo) remove(i int32) {
	p, n := f.l.prev[i], f.l.next[i]
	if p >= 0 {
		f.l.next[p] = n
	} else {
		f.head = n
	}
	if n >= 0 {
		f.l.prev[n] = p
	} else {
		f.tail = p
	}
	f.l.prev[i], f.l.next[i] = -1, -1
}

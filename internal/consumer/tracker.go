package consumer

import (
	"context"
	"sync"
	"time"
)

// tracker tracks the records fetched from one partition and which of them
// are settled, and yields the offset that may be committed (design
// invariant 1): every fetched offset below [tracker.Watermark] is settled.
// It is the consumer's alone: made when a partition is assigned, filled by
// its fetch loop, settled by the records' jobs and read by the commits.
//
// One tracker serves one assignment of one partition; build a new one
// (from the committed offset) when the partition is assigned again. It is
// safe for concurrent use: records are added by the fetch loop and settled
// from the goroutines that deliver them.
//
// Fetched records are kept in a ring buffer in offset order, each with a
// settled flag; the settled front is popped as it forms, so each record
// costs O(1) amortised, plus an O(log n) search (n = records pending) when
// gaps in the offsets defeat the direct offset arithmetic. Memory is one
// small entry per pending record; the buffer shrinks again after a burst.
type tracker struct {
	mu      sync.Mutex
	buf     []entry       // ring; len(buf) is 0 or a power of two
	head    int           // index in buf of the oldest record
	n       int           // records in the ring (unsettled, or settled behind an unsettled one)
	pending int           // records in the ring that are not settled
	last    int64         // the last offset added (next-1 before the first Add)
	wm      int64         // the watermark
	room    chan struct{} // closed when n drops below roomAt; nil unless WaitRoom waits
	roomAt  int
}

type entry struct {
	offset  int64
	at      time.Time
	settled bool
}

const minRing = 16

// newTracker returns a tracker for a partition whose next fetched offset
// will be next (the committed offset the fetch starts from). Its watermark
// starts at next.
func newTracker(next int64) *tracker {
	return &tracker{last: next - 1, wm: next}
}

// Add records a fetched record with the time it was fetched (or produced).
// Offsets must be added strictly increasing; gaps are fine (compaction,
// transaction markers). An offset not above the last one added, or below
// the tracker's starting offset, is ignored: it is either already covered
// by the watermark or a caller bug, and tracking it could only move the
// watermark backwards.
func (t *tracker) Add(offset int64, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if offset <= t.last {
		return
	}
	if t.n == len(t.buf) {
		t.resize(max(2*len(t.buf), minRing))
	}
	t.buf[(t.head+t.n)&(len(t.buf)-1)] = entry{offset: offset, at: at}
	t.n++
	t.pending++
	t.last = offset
}

// Settle marks a record settled: accepted by CXone or durably held by the
// DLQ topic. Settling an offset twice, or one that was never added (or is
// already below the watermark), is a no-op.
func (t *tracker) Settle(offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i, ok := t.find(offset)
	if !ok {
		return
	}
	e := &t.buf[(t.head+i)&(len(t.buf)-1)]
	if e.settled {
		return
	}
	e.settled = true
	t.pending--
	if i != 0 {
		return // an earlier record is still unsettled
	}
	mask := len(t.buf) - 1
	for t.n > 0 && t.buf[t.head].settled {
		t.wm = t.buf[t.head].offset + 1
		t.buf[t.head] = entry{}
		t.head = (t.head + 1) & mask
		t.n--
	}
	if len(t.buf) > minRing && t.n <= len(t.buf)/4 {
		t.resize(len(t.buf) / 2)
	}
	if t.room != nil && t.n < t.roomAt {
		close(t.room)
		t.room = nil
	}
}

// Watermark returns the offset to commit: every fetched offset below it is
// settled, and it is the first offset not yet known to be settled. It
// never moves backwards. With gaps, once every fetched offset up to X is
// settled the watermark is X+1 (committing X+1 when X+1 does not exist is
// harmless: the next fetch resumes at the next offset that does).
func (t *tracker) Watermark() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.wm
}

// Pending returns the number of records added and not yet settled.
func (t *tracker) Pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pending
}

// Len returns the number of records the tracker holds: from the oldest
// unsettled one to the last added, settled or not. None of them can be
// committed before the oldest settles, and all of them would be fetched
// again after a crash.
func (t *tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

// WaitRoom waits until the tracker holds fewer than limit records (Len), or
// returns ctx.Err() if ctx ends first. Records leave only when the oldest
// unsettled one settles, so one record that never settles makes WaitRoom
// wait as long. One waiter at a time.
func (t *tracker) WaitRoom(ctx context.Context, limit int) error {
	t.mu.Lock()
	if t.n < limit {
		t.mu.Unlock()
		return nil
	}
	if t.room == nil {
		t.room = make(chan struct{})
	}
	t.roomAt = limit
	ch := t.room
	t.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Oldest returns the oldest unsettled record and the time given to Add for
// it; ok is false when nothing is pending. It is the record that holds the
// watermark back.
func (t *tracker) Oldest() (offset int64, at time.Time, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == 0 {
		return 0, time.Time{}, false
	}
	e := t.buf[t.head] // the settled front is always popped, so this one is unsettled
	return e.offset, e.at, true
}

// find returns the position (0 = oldest) of offset in the ring.
func (t *tracker) find(offset int64) (int, bool) {
	if t.n == 0 || offset > t.last {
		return 0, false
	}
	mask := len(t.buf) - 1
	first := t.buf[t.head].offset
	if offset < first {
		return 0, false
	}
	// Offsets increase by at least one per position, so the position is at
	// most offset-first, and exactly that when there is no gap before it.
	d := offset - first
	if d < int64(t.n) {
		if t.buf[(t.head+int(d))&mask].offset == offset {
			return int(d), true
		}
	}
	lo, hi := 0, t.n-1
	if d < int64(hi) {
		hi = int(d)
	}
	for lo <= hi {
		mid := int(uint(lo+hi) >> 1)
		switch o := t.buf[(t.head+mid)&mask].offset; {
		case o == offset:
			return mid, true
		case o < offset:
			lo = mid + 1
		default:
			hi = mid - 1
		}
	}
	return 0, false
}

// resize moves the ring into a buffer of size (a power of two ≥ t.n).
func (t *tracker) resize(size int) {
	nb := make([]entry, size)
	if t.n > 0 {
		k := copy(nb, t.buf[t.head:min(t.head+t.n, len(t.buf))])
		copy(nb[k:t.n], t.buf)
	}
	t.buf, t.head = nb, 0
}

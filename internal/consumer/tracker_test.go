package consumer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func at(off int64) time.Time { return t0.Add(time.Duration(off) * time.Millisecond) }

// step is one operation on a tracker: add (settle=false) or settle an
// offset, then expect the watermark and pending count.
type step struct {
	settle  bool
	offset  int64
	wm      int64
	pending int
}

func add(o, wm int64, pending int) step    { return step{false, o, wm, pending} }
func settle(o, wm int64, pending int) step { return step{true, o, wm, pending} }

func TestTrackerSequences(t *testing.T) {
	tests := []struct {
		name  string
		next  int64
		steps []step
	}{
		{"empty", 7, nil},
		{"in order", 10, []step{
			add(10, 10, 1), add(11, 10, 2), add(12, 10, 3),
			settle(10, 11, 2), settle(11, 12, 1), settle(12, 13, 0),
		}},
		{"out of order", 0, []step{
			add(0, 0, 1), add(1, 0, 2), add(2, 0, 3), add(3, 0, 4),
			settle(2, 0, 3), settle(3, 0, 2), settle(1, 0, 1), settle(0, 4, 0),
		}},
		{"reverse then front", 5, []step{
			add(5, 5, 1), add(6, 5, 2), add(7, 5, 3),
			settle(7, 5, 2), settle(5, 6, 1), settle(6, 8, 0),
		}},
		{"gaps", 100, []step{
			add(103, 100, 1), add(110, 100, 2), add(111, 100, 3), add(250, 100, 4),
			settle(111, 100, 3), settle(103, 104, 2), // 104..109 do not exist
			settle(250, 104, 1), settle(110, 251, 0),
		}},
		{"gap then unsettled front", 0, []step{
			add(0, 0, 1), add(5, 0, 2), settle(0, 1, 1), // 1 is committable, 5 is not settled
			add(6, 1, 2), settle(6, 1, 1), settle(5, 7, 0),
		}},
		{"settle twice and unknown", 0, []step{
			add(0, 0, 1), add(2, 0, 2),
			settle(1, 0, 2), settle(3, 0, 2), settle(-1, 0, 2), // never added
			settle(2, 0, 1), settle(2, 0, 1), // twice
			settle(0, 3, 0), settle(0, 3, 0), settle(2, 3, 0), // below the watermark
		}},
		{"non-increasing and early adds ignored", 10, []step{
			add(9, 10, 0), // below the committed offset
			add(12, 10, 1), add(12, 10, 1), add(11, 10, 1),
			settle(11, 10, 1), settle(12, 13, 0),
			add(12, 13, 0), add(5, 13, 0), add(13, 13, 1),
		}},
		{"drain and refill", 0, []step{
			add(0, 0, 1), settle(0, 1, 0), add(1, 1, 1), add(2, 1, 2),
			settle(2, 1, 1), settle(1, 3, 0), add(9, 3, 1), settle(9, 10, 0),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTracker(tc.next)
			if got := tr.Watermark(); got != tc.next {
				t.Fatalf("initial watermark %d, want %d", got, tc.next)
			}
			if _, _, ok := tr.Oldest(); ok {
				t.Fatal("Oldest ok on an empty tracker")
			}
			for i, s := range tc.steps {
				if s.settle {
					tr.Settle(s.offset)
				} else {
					tr.Add(s.offset, at(s.offset))
				}
				if got := tr.Watermark(); got != s.wm {
					t.Fatalf("step %d %+v: watermark %d, want %d", i, s, got, s.wm)
				}
				if got := tr.Pending(); got != s.pending {
					t.Fatalf("step %d %+v: pending %d, want %d", i, s, got, s.pending)
				}
			}
		})
	}
}

func TestTrackerOldest(t *testing.T) {
	tr := newTracker(0)
	for _, o := range []int64{0, 1, 4, 9} {
		tr.Add(o, at(o))
	}
	want := func(off int64) {
		t.Helper()
		o, ts, ok := tr.Oldest()
		if !ok || o != off || !ts.Equal(at(off)) {
			t.Fatalf("Oldest = %d, %v, %v; want %d, %v", o, ts, ok, off, at(off))
		}
	}
	want(0)
	tr.Settle(1)
	want(0)
	tr.Settle(0)
	want(4) // 1 is settled too
	tr.Settle(9)
	want(4)
	tr.Settle(4)
	if _, _, ok := tr.Oldest(); ok {
		t.Fatal("Oldest ok with everything settled")
	}
}

// model is the obvious reference: every fetched offset and whether it is
// settled; the watermark is X+1 for the largest fetched X with everything
// up to it settled, else the starting offset.
type model struct {
	offs    []int64
	settled map[int64]bool
	done    int // offs[:done] are all settled
	wm      int64
}

func (m *model) watermark() int64 {
	for m.done < len(m.offs) && m.settled[m.offs[m.done]] {
		m.wm = m.offs[m.done] + 1
		m.done++
	}
	return m.wm
}

// TestTrackerProperty settles records in random orders while adding more,
// and checks every step against the model: the watermark never passes an
// unsettled record, never moves back, and reaches last+1 once everything
// is settled; Pending and Oldest agree.
func TestTrackerProperty(t *testing.T) {
	for seed := range uint64(50) {
		t.Run("", func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, seed*7919))
			next := r.Int64N(1000)
			tr := newTracker(next)
			m := model{settled: map[int64]bool{}, wm: next}
			var open []int64 // fetched, unsettled, in offset order
			off, prev := next, next
			n := 200 + r.IntN(2000)
			window := 1 + r.IntN(300)
			for len(m.offs) < n || len(open) > 0 {
				if len(m.offs) < n && (len(open) == 0 || (len(open) < window && r.IntN(2) == 0)) {
					if r.IntN(4) == 0 {
						off += r.Int64N(20) // a gap
					}
					tr.Add(off, at(off))
					m.offs = append(m.offs, off)
					open = append(open, off)
					off++
				} else {
					i := r.IntN(len(open))
					if r.IntN(3) == 0 {
						i = r.IntN(min(len(open), 3)) // favour the front
					}
					o := open[i]
					open = slices.Delete(open, i, i+1)
					tr.Settle(o)
					m.settled[o] = true
					if r.IntN(10) == 0 {
						tr.Settle(o) // twice
					}
				}
				wm := tr.Watermark()
				if wm < prev {
					t.Fatalf("watermark moved back from %d to %d", prev, wm)
				}
				prev = wm
				if want := m.watermark(); wm != want {
					t.Fatalf("watermark %d, want %d", wm, want)
				}
				if len(open) > 0 {
					lowest := open[0]
					if wm > lowest {
						t.Fatalf("watermark %d passes unsettled %d", wm, lowest)
					}
					o, ts, ok := tr.Oldest()
					if !ok || o != lowest || !ts.Equal(at(lowest)) {
						t.Fatalf("Oldest = %d, %v; want %d", o, ok, lowest)
					}
				} else if wm != m.offs[len(m.offs)-1]+1 {
					t.Fatalf("all settled: watermark %d, want %d", wm, m.offs[len(m.offs)-1]+1)
				}
				if got := tr.Pending(); got != len(open) {
					t.Fatalf("pending %d, want %d", got, len(open))
				}
			}
		})
	}
}

// TestTrackerConcurrent adds from one goroutine, settles from many, and
// watches the watermark from another: it only moves forward and ends at
// last+1.
func TestTrackerConcurrent(t *testing.T) {
	const n, workers = 20000, 8
	tr := newTracker(0)
	work := make(chan int64, 256)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for o := range work {
				tr.Settle(o)
			}
		})
	}
	stop := make(chan struct{})
	watched := make(chan error, 1)
	go func() {
		var prev int64
		for {
			select {
			case <-stop:
				watched <- nil
				return
			default:
			}
			wm := tr.Watermark()
			if wm < prev {
				watched <- fmt.Errorf("watermark moved back from %d to %d", prev, wm)
				return
			}
			prev = wm
			tr.Pending()
			tr.Oldest()
		}
	}()
	var last int64
	for i := range int64(n) {
		last = i * 2 // gaps everywhere
		tr.Add(last, t0)
		work <- last
	}
	close(work)
	wg.Wait()
	close(stop)
	if err := <-watched; err != nil {
		t.Fatal(err)
	}
	if wm, p := tr.Watermark(), tr.Pending(); wm != last+1 || p != 0 {
		t.Fatalf("watermark %d pending %d, want %d and 0", wm, p, last+1)
	}
}

// TestTrackerShrinks checks the ring gives memory back after a burst.
func TestTrackerShrinks(t *testing.T) {
	tr := newTracker(0)
	for o := range int64(10000) {
		tr.Add(o, t0)
	}
	big := len(tr.buf)
	for o := range int64(10000) {
		tr.Settle(o)
	}
	if len(tr.buf) > minRing || len(tr.buf) >= big {
		t.Fatalf("ring is %d entries after draining (was %d)", len(tr.buf), big)
	}
	tr.Add(10000, t0)
	tr.Settle(10000)
	if tr.Watermark() != 10001 {
		t.Fatalf("watermark %d", tr.Watermark())
	}
}

func BenchmarkTrackerAddSettle(b *testing.B) {
	b.Run("in order", func(b *testing.B) {
		tr := newTracker(0)
		b.ReportAllocs()
		var o int64
		for b.Loop() {
			tr.Add(o, t0)
			tr.Settle(o)
			o++
		}
	})
	b.Run("window 1024 shuffled with gaps", func(b *testing.B) {
		tr := newTracker(0)
		r := rand.New(rand.NewPCG(1, 2))
		const w = 1024
		var win [w]int64
		var o int64
		for i := range win {
			win[i] = o
			tr.Add(o, t0)
			o += 1 + int64(r.IntN(2))
		}
		b.ReportAllocs()
		for b.Loop() {
			i := r.IntN(w)
			tr.Settle(win[i])
			win[i] = o
			tr.Add(o, t0)
			o += 1 + int64(r.IntN(2))
		}
	})
}

// TestTrackerWaitRoom: Len counts every record from the oldest unsettled
// one on, settled or not; WaitRoom waits while it is at the cap, ends with
// its context, and returns as soon as the oldest record settles and the
// settled ones behind it go. Time is the subject: synctest's clock.
func TestTrackerWaitRoom(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTracker(100)
		now := time.Now()
		for o := int64(100); o < 110; o++ {
			tr.Add(o, now)
		}
		for o := int64(101); o < 110; o++ {
			tr.Settle(o)
		}
		if got, pending := tr.Len(), tr.Pending(); got != 10 || pending != 1 {
			t.Fatalf("Len %d, Pending %d; want 10 and 1", got, pending)
		}
		if err := tr.WaitRoom(t.Context(), 11); err != nil {
			t.Fatalf("WaitRoom below the cap: %v", err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
		defer cancel()
		start := time.Now()
		if err := tr.WaitRoom(ctx, 10); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != time.Hour {
			t.Fatalf("WaitRoom at the cap: %v after %v, want deadline exceeded after 1h", err, time.Since(start))
		}
		done := make(chan error, 1)
		go func() { done <- tr.WaitRoom(t.Context(), 10) }()
		synctest.Wait() // the waiter is blocked for good unless WaitRoom returned
		select {
		case err := <-done:
			t.Fatalf("WaitRoom returned (%v) with the oldest record unsettled", err)
		default:
		}
		tr.Settle(100)
		synctest.Wait()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatal("WaitRoom still waits after the oldest record settled")
		}
		if got, wm := tr.Len(), tr.Watermark(); got != 0 || wm != 110 {
			t.Fatalf("Len %d, watermark %d; want 0 and 110", got, wm)
		}
	})
}

package dispatch

// Bounded memory (invariant 4) and revocation: Submit blocking at
// maxInFlight, cancellation, Drop and WaitPartition. The tests that show a
// call waiting run in synctest bubbles: synctest.Wait proves it waits (every
// goroutine is blocked) where a real-time pause could only guess, and their
// deadlines pass on the bubble's clock.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestSubmitBlocksAtMax fills the dispatcher, shows Submit waits (and gives
// up with its ctx) and resumes as soon as a slot frees.
func TestSubmitBlocksAtMax(t *testing.T) {
	const max = 4
	for _, mode := range []Mode{ModeKey, ModePartition, ModeNone} {
		t.Run(string(mode), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				d := New(mode, max)
				started := make(chan int, max+1)
				var release [max + 1]chan struct{}
				for i := range max + 1 {
					release[i] = make(chan struct{})
				}
				job := func(i int) Job {
					return Job{Partition: i, Offset: int64(i), Key: []byte{byte(i)}, Run: func() {
						started <- i
						<-release[i]
					}}
				}
				for i := range max {
					submit(t, d, job(i))
					recv(t, started, "a job to start")
				}

				ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
				defer cancel()
				err := d.Submit(ctx, Job{Partition: 9, Run: func() { t.Error("Run of a job whose Submit failed") }})
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Submit on a full dispatcher: %v, want deadline exceeded", err)
				}
				if got := d.InFlight(); got != max {
					t.Fatalf("InFlight %d after a failed Submit, want %d", got, max)
				}

				ctx, cancel = context.WithCancel(t.Context())
				waiting := make(chan error, 1)
				go func() { waiting <- d.Submit(ctx, Job{Partition: 9, Run: func() { t.Error("Run of a cancelled job") }}) }()
				cancel()
				if err := recv(t, waiting, "cancelled Submit"); !errors.Is(err, context.Canceled) {
					t.Fatalf("cancelled Submit: %v", err)
				}

				submitted := make(chan error, 1)
				go func() { submitted <- d.Submit(testCtx(t), job(max)) }()
				close(release[0])
				if err := recv(t, submitted, "Submit after a slot freed"); err != nil {
					t.Fatal(err)
				}
				if got := recv(t, started, "the late job to start"); got != max {
					t.Fatalf("job %d started, want %d", got, max)
				}
				for i := 1; i <= max; i++ {
					close(release[i])
				}
				if err := d.Wait(testCtx(t)); err != nil {
					t.Fatal(err)
				}
				checkIdle(t, d)
			})
		})
	}
}

// TestHeldNeverExceedsMax submits from several goroutines at once and
// checks from inside Run that no more than max jobs are held or running.
func TestHeldNeverExceedsMax(t *testing.T) {
	const max = 8
	d := New(ModeKey, max)
	var running atomic.Int32
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Go(func() {
			for i := range 500 {
				key := []byte(fmt.Sprint(i % 16))
				if i%5 == 0 {
					key = nil
				}
				submit(t, d, Job{Partition: p, Offset: int64(i), Key: key, Run: func() {
					if n := running.Add(1); n > max {
						t.Errorf("%d jobs running, max %d", n, max)
					}
					if n := d.InFlight(); n > max || n < 1 {
						t.Errorf("InFlight %d inside Run, max %d", n, max)
					}
					jitter()
					running.Add(-1)
				}})
			}
		})
	}
	wg.Wait()
	if err := d.Wait(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	checkIdle(t, d)
	if got := d.InFlight(); got != 0 {
		t.Fatalf("InFlight %d after Wait", got)
	}
}

func TestSubmitErrors(t *testing.T) {
	d := New(ModeKey, 2)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		job  Job
		want error
	}{
		{"cancelled ctx with free slots", cancelled, Job{Run: func() { t.Error("ran") }}, context.Canceled},
		{"no Run", context.Background(), Job{Key: []byte("k")}, ErrNoRun},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := d.Submit(tc.ctx, tc.job); !errors.Is(err, tc.want) {
				t.Fatalf("Submit: %v, want %v", err, tc.want)
			}
			if got := d.InFlight(); got != 0 {
				t.Fatalf("InFlight %d", got)
			}
		})
	}
	if err := d.Wait(cancelled); err != nil {
		t.Fatalf("Wait with nothing held: %v", err)
	}
	if err := d.WaitPartition(cancelled, "", 7); err != nil {
		t.Fatalf("WaitPartition with nothing held: %v", err)
	}
}

// TestDropAndWaitPartition revokes partition 0 while partitions 0 and 1
// each have a running job and a queue: only partition 0's queue goes,
// slots free up, and WaitPartition(0) returns while partition 1 still runs.
func TestDropAndWaitPartition(t *testing.T) {
	const queued0, queued1 = 10, 5
	const max = 2 + queued0 + queued1
	for _, mode := range []Mode{ModeKey, ModePartition} {
		t.Run(string(mode), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				d := New(mode, max)
				started := make(chan int, 2)
				rel := [2]chan struct{}{make(chan struct{}), make(chan struct{})}
				var ran1 atomic.Int64
				for p := range 2 {
					submit(t, d, Job{Partition: p, Key: []byte("a"), Run: func() {
						started <- p
						<-rel[p]
					}})
					recv(t, started, "a blocking job to start")
				}
				for i := range queued0 {
					submit(t, d, Job{Partition: 0, Offset: int64(i + 1), Key: []byte("a"),
						Run: func() { t.Errorf("dropped job 0/%d ran", i+1) }})
				}
				for i := range queued1 {
					submit(t, d, Job{Partition: 1, Offset: int64(i + 1), Key: []byte("a"), Run: func() {
						if got := ran1.Add(1); got != int64(i+1) {
							t.Errorf("partition 1 job %d ran as number %d", i+1, got)
						}
					}})
				}
				if got := d.InFlight(); got != max {
					t.Fatalf("InFlight %d, want %d", got, max)
				}
				if got := d.Drop("", 0); got != queued0 {
					t.Fatalf("Drop(0) = %d, want %d", got, queued0)
				}
				if got := d.Drop("", 0); got != 0 {
					t.Fatalf("second Drop(0) = %d", got)
				}
				if got := d.Drop("", 42); got != 0 {
					t.Fatalf("Drop(42) = %d", got)
				}
				if got := d.InFlight(); got != 2+queued1 {
					t.Fatalf("InFlight %d after Drop, want %d", got, 2+queued1)
				}
				// The freed slots take new jobs without waiting.
				done := make(chan struct{}, queued0)
				for i := range queued0 {
					ctx, cancel := context.WithTimeout(t.Context(), safety)
					err := d.Submit(ctx, Job{Partition: 2 + i, Run: func() { done <- struct{}{} }})
					cancel()
					if err != nil {
						t.Fatalf("Submit into a freed slot: %v", err)
					}
				}
				for range queued0 {
					recv(t, done, "a job in a freed slot")
				}

				ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
				defer cancel()
				if err := d.WaitPartition(ctx, "", 0); !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("WaitPartition(0) with a job running: %v", err)
				}
				waited := make(chan error, 1)
				go func() { waited <- d.WaitPartition(testCtx(t), "", 0) }()
				close(rel[0])
				if err := recv(t, waited, "WaitPartition(0)"); err != nil {
					t.Fatal(err)
				}
				if got, want := d.InFlight(), 1+queued1; got != want || ran1.Load() != 0 {
					t.Fatalf("after partition 0 drained: InFlight %d (want %d), partition 1 ran %d", got, want, ran1.Load())
				}
				close(rel[1])
				if err := d.Wait(testCtx(t)); err != nil {
					t.Fatal(err)
				}
				checkIdle(t, d)
				if got := ran1.Load(); got != queued1 {
					t.Fatalf("partition 1 ran %d queued jobs, want %d", got, queued1)
				}
			})
		})
	}
}

// blocker is a job that signals its start and runs until released, or
// until its test ends (so that a failed test leaves no goroutine behind in
// its synctest bubble).
type blocker struct {
	started chan struct{}
	release chan struct{}
	ended   <-chan struct{}
}

func newBlocker(t *testing.T) blocker {
	return blocker{make(chan struct{}), make(chan struct{}), ended(t)}
}

func (b blocker) job(p int, key string, bytes int64) Job {
	var k []byte
	if key != "" {
		k = []byte(key)
	}
	return Job{Partition: p, Key: k, Bytes: bytes, Run: func() {
		close(b.started)
		select {
		case <-b.release:
		case <-b.ended:
		}
	}}
}

// ended is closed when t's test ends, before its synctest bubble checks
// that every goroutine has returned.
func ended(t *testing.T) <-chan struct{} {
	ch := make(chan struct{})
	t.Cleanup(func() { close(ch) })
	return ch
}

// submitAsync submits j on a goroutine; the channel gets Submit's result.
func submitAsync(ctx context.Context, d *Dispatcher, j Job) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- d.Submit(ctx, j) }()
	return ch
}

// stillWaiting checks, in a synctest bubble, that a Submit has not
// returned although every goroutine of the bubble is blocked: nothing
// else can let it in.
func stillWaiting(t *testing.T, ch <-chan error, what string) {
	t.Helper()
	synctest.Wait()
	select {
	case err := <-ch:
		t.Fatalf("%s returned (%v), want it waiting", what, err)
	default:
	}
}

// TestSubmitBlocksOnBytes: with a byte budget, Submit waits while the
// bytes held would pass it, whatever the free slots, and is admitted as
// soon as a job's bytes are given back.
func TestSubmitBlocksOnBytes(t *testing.T) {
	for _, mode := range []Mode{ModeKey, ModePartition, ModeNone} {
		t.Run(string(mode), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				d := New(mode, 100, MaxBytes(100))
				a, b, c := newBlocker(t), newBlocker(t), newBlocker(t)
				submit(t, d, a.job(0, "a", 40))
				submit(t, d, b.job(1, "b", 40))
				recv(t, a.started, "a")
				recv(t, b.started, "b")
				if got := d.InFlightBytes(); got != 80 {
					t.Fatalf("InFlightBytes %d, want 80", got)
				}
				ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
				defer cancel()
				if err := d.Submit(ctx, c.job(2, "c", 40)); !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Submit past the byte budget: %v, want deadline exceeded", err)
				}
				if got, gotBytes := d.InFlight(), d.InFlightBytes(); got != 2 || gotBytes != 80 {
					t.Fatalf("after a failed Submit: InFlight %d, bytes %d", got, gotBytes)
				}
				// 20 bytes still fit.
				small := newBlocker(t)
				submit(t, d, small.job(3, "s", 20))
				recv(t, small.started, "the small job")
				waiting := submitAsync(testCtx(t), d, c.job(2, "c", 40))
				stillWaiting(t, waiting, "Submit of 40 bytes with 100 held")
				close(a.release)
				if err := recv(t, waiting, "Submit after 40 bytes were given back"); err != nil {
					t.Fatal(err)
				}
				recv(t, c.started, "c")
				close(b.release)
				close(c.release)
				close(small.release)
				if err := d.Wait(testCtx(t)); err != nil {
					t.Fatal(err)
				}
				checkIdle(t, d)
				if got := d.InFlightBytes(); got != 0 {
					t.Fatalf("InFlightBytes %d when idle", got)
				}
			})
		})
	}
}

// TestJobLargerThanBudgetRunsAlone: a job larger than the whole byte budget
// never deadlocks: it waits until nothing is held, then runs alone, and
// jobs submitted after it wait behind it (first come, first admitted)
// instead of overtaking it forever.
func TestJobLargerThanBudgetRunsAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := New(ModeKey, 100, MaxBytes(100))
		small := newBlocker(t)
		submit(t, d, small.job(0, "small", 10))
		recv(t, small.started, "the small job")

		huge := newBlocker(t)
		hugeIn := submitAsync(testCtx(t), d, huge.job(1, "huge", 250))
		stillWaiting(t, hugeIn, "Submit of 250 bytes while 10 are held")
		// A job that would fit the budget waits behind the huge one.
		later := newBlocker(t)
		laterIn := submitAsync(testCtx(t), d, later.job(2, "later", 10))
		stillWaiting(t, laterIn, "Submit behind a waiting job")

		close(small.release)
		if err := recv(t, hugeIn, "the huge job admitted once nothing is held"); err != nil {
			t.Fatal(err)
		}
		recv(t, huge.started, "the huge job")
		if got := d.InFlightBytes(); got != 250 {
			t.Fatalf("InFlightBytes %d, want 250", got)
		}
		stillWaiting(t, laterIn, "Submit while a job over the budget runs")
		close(huge.release)
		if err := recv(t, laterIn, "the later job admitted"); err != nil {
			t.Fatal(err)
		}
		recv(t, later.started, "the later job")
		close(later.release)
		if err := d.Wait(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		checkIdle(t, d)
	})
}

// TestCancelledWaiterLetsOthersIn: a Submit that gives up while first in
// line does not hold back those behind it.
func TestCancelledWaiterLetsOthersIn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := New(ModeNone, 100, MaxBytes(100))
		a := newBlocker(t)
		submit(t, d, a.job(0, "", 90))
		recv(t, a.started, "a")
		ctx, cancel := context.WithCancel(t.Context())
		bigIn := submitAsync(ctx, d, Job{Partition: 1, Bytes: 50, Run: func() { t.Error("a cancelled job ran") }})
		stillWaiting(t, bigIn, "Submit of 50 bytes with 90 held")
		b := newBlocker(t)
		smallIn := submitAsync(testCtx(t), d, b.job(2, "", 10))
		stillWaiting(t, smallIn, "Submit behind a waiting one")
		cancel()
		if err := recv(t, bigIn, "the cancelled Submit"); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled Submit: %v", err)
		}
		if err := recv(t, smallIn, "the Submit behind the cancelled one"); err != nil {
			t.Fatal(err)
		}
		recv(t, b.started, "b")
		close(a.release)
		close(b.release)
		if err := d.Wait(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		checkIdle(t, d)
		if got := d.InFlightBytes(); got != 0 {
			t.Fatalf("InFlightBytes %d when idle", got)
		}
	})
}

// TestLaneShare: a lane (a key; a partition in partition mode) whose job
// never finishes holds at most its share of the slots: the Submit of its
// next job waits — only that Submit — while other lanes take the other
// slots; it goes on once the lane shrinks.
func TestLaneShare(t *testing.T) {
	const max, share = 8, 3
	for _, mode := range []Mode{ModeKey, ModePartition} {
		t.Run(string(mode), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				d := New(mode, max, LaneShare(share))
				stuck := newBlocker(t)
				submit(t, d, stuck.job(0, "hot", 1))
				recv(t, stuck.started, "the stuck job")
				var ran atomic.Int32
				for range share - 1 {
					submit(t, d, Job{Partition: 0, Key: []byte("hot"), Run: func() { ran.Add(1) }})
				}
				if held, lane := d.PartitionInFlight("", 0); held != share || lane != share {
					t.Fatalf("partition 0: %d held, longest lane %d, want %d", held, lane, share)
				}
				ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
				defer cancel()
				if err := d.Submit(ctx, Job{Partition: 0, Key: []byte("hot"), Run: func() {}}); !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Submit past the lane's share: %v, want deadline exceeded", err)
				}
				nextIn := submitAsync(testCtx(t), d, Job{Partition: 0, Key: []byte("hot"), Run: func() { ran.Add(1) }})
				stillWaiting(t, nextIn, "Submit past the lane's share")
				// Every other slot serves other lanes.
				others := make([]blocker, max-share)
				for i := range others {
					others[i] = newBlocker(t)
					submit(t, d, others[i].job(1+i, fmt.Sprint("k", i), 1))
					recv(t, others[i].started, "another lane's job")
				}
				if got := d.InFlight(); got != max {
					t.Fatalf("InFlight %d, want %d", got, max)
				}
				for _, o := range others {
					close(o.release)
				}
				stillWaiting(t, nextIn, "Submit past the lane's share with free slots")
				close(stuck.release)
				if err := recv(t, nextIn, "Submit once the lane shrank"); err != nil {
					t.Fatal(err)
				}
				if err := d.Wait(testCtx(t)); err != nil {
					t.Fatal(err)
				}
				checkIdle(t, d)
				if got := ran.Load(); got != share {
					t.Fatalf("%d of the lane's queued jobs ran, want %d", got, share)
				}
			})
		})
	}
}

// TestDropReleasesBytesAndLanes: dropping a partition's queued jobs gives
// their bytes back and lets a Submit waiting for its lane in.
func TestDropReleasesBytesAndLanes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := New(ModeKey, 10, MaxBytes(100), LaneShare(2))
		stuck := newBlocker(t)
		submit(t, d, stuck.job(0, "hot", 10))
		recv(t, stuck.started, "the stuck job")
		submit(t, d, Job{Partition: 0, Key: []byte("hot"), Bytes: 80, Run: func() { t.Error("a dropped job ran") }})
		// 5 bytes fit the budget: only the lane's share holds this one (it
		// is submitted first, so that it waits for no one in the budget's
		// line).
		laneIn := submitAsync(testCtx(t), d, Job{Partition: 0, Key: []byte("hot"), Bytes: 5, Run: func() {}})
		stillWaiting(t, laneIn, "Submit past the lane's share")
		bytesIn := submitAsync(testCtx(t), d, Job{Partition: 1, Bytes: 50, Run: func() {}})
		stillWaiting(t, bytesIn, "Submit past the byte budget")
		if got := d.Drop("", 0); got != 1 {
			t.Fatalf("Drop(0) = %d, want 1", got)
		}
		if err := recv(t, bytesIn, "Submit after Drop gave bytes back"); err != nil {
			t.Fatal(err)
		}
		if err := recv(t, laneIn, "Submit after Drop shrank the lane"); err != nil {
			t.Fatal(err)
		}
		close(stuck.release)
		if err := d.Wait(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		checkIdle(t, d)
		if got := d.InFlightBytes(); got != 0 {
			t.Fatalf("InFlightBytes %d when idle", got)
		}
	})
}

// TestBytesNeverExceedBudget submits jobs of random sizes from several
// goroutines and checks from inside Run that the bytes held never pass the
// budget, except for a job larger than it held alone.
func TestBytesNeverExceedBudget(t *testing.T) {
	const budget = 1000
	d := New(ModeKey, 64, MaxBytes(budget), LaneShare(8))
	var wg sync.WaitGroup
	var alone atomic.Int32
	for p := range 4 {
		wg.Go(func() {
			for i := range 300 {
				size := int64(1 + (i*37+p*11)%300)
				if i%97 == 0 {
					size = budget + 500
				}
				submit(t, d, Job{Partition: p, Offset: int64(i), Key: []byte(fmt.Sprint(i % 5)), Bytes: size, Run: func() {
					held, n := d.InFlightBytes(), d.InFlight()
					switch {
					case size > budget:
						if held != size {
							t.Errorf("a job of %d bytes runs with %d bytes held (%d jobs)", size, held, n)
						}
						alone.Add(1)
					case held > budget:
						t.Errorf("%d bytes held, budget %d", held, budget)
					}
					jitter()
				}})
			}
		})
	}
	wg.Wait()
	if err := d.Wait(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	checkIdle(t, d)
	if alone.Load() == 0 {
		t.Fatal("no job over the budget ran")
	}
}

// TestPartitionsOfTwoTopics: partition 0 of two topics are two partitions
// — a key of one does not wait for the same key of the other, and
// dropping or waiting for one leaves the other's jobs alone.
func TestPartitionsOfTwoTopics(t *testing.T) {
	for _, mode := range []Mode{ModeKey, ModePartition} {
		t.Run(string(mode), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				d := New(mode, 10)
				started := make(chan string, 2)
				rel := map[string]chan struct{}{"a": make(chan struct{}), "b": make(chan struct{})}
				for _, topic := range []string{"a", "b"} {
					submit(t, d, Job{Topic: topic, Partition: 0, Key: []byte("k"), Run: func() {
						started <- topic
						<-rel[topic]
					}})
				}
				// Both run at once: neither waits behind the other's lane.
				got := map[string]bool{recv(t, started, "a first job to start"): true, recv(t, started, "a second job to start"): true}
				if !got["a"] || !got["b"] {
					t.Fatalf("started %v; want a and b", got)
				}
				var ranB atomic.Int64
				submit(t, d, Job{Topic: "a", Partition: 0, Offset: 1, Key: []byte("k"), Run: func() { t.Error("dropped job a/0/1 ran") }})
				submit(t, d, Job{Topic: "b", Partition: 0, Offset: 1, Key: []byte("k"), Run: func() { ranB.Add(1) }})
				if held, _ := d.PartitionInFlight("a", 0); held != 2 {
					t.Fatalf("a/0 holds %d; want 2", held)
				}
				if n := d.Drop("a", 0); n != 1 {
					t.Fatalf(`Drop("a", 0) = %d; want 1`, n)
				}
				if held, _ := d.PartitionInFlight("b", 0); held != 2 {
					t.Fatalf("b/0 holds %d after a/0 was dropped; want 2", held)
				}
				close(rel["a"])
				if err := d.WaitPartition(testCtx(t), "a", 0); err != nil {
					t.Fatal(err)
				}
				if held, _ := d.PartitionInFlight("b", 0); held != 2 || ranB.Load() != 0 {
					t.Fatalf("b/0 holds %d, ran %d once a/0 drained; want 2 held, 0 ran", held, ranB.Load())
				}
				close(rel["b"])
				if err := d.Wait(testCtx(t)); err != nil {
					t.Fatal(err)
				}
				if ranB.Load() != 1 {
					t.Fatalf("b/0/1 ran %d times", ranB.Load())
				}
				checkIdle(t, d)
			})
		})
	}
}

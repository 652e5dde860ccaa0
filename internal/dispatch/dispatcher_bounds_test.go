package dispatch

// Bounded memory (invariant 4) and revocation: Submit blocking at
// maxInFlight, cancellation, Drop and WaitPartition.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestSubmitBlocksAtMax fills the dispatcher, shows Submit waits (and gives
// up with its ctx) and resumes as soon as a slot frees.
func TestSubmitBlocksAtMax(t *testing.T) {
	const max = 4
	for _, mode := range []Mode{ModeKey, ModePartition, ModeNone} {
		t.Run(string(mode), func(t *testing.T) {
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
	if err := d.WaitPartition(cancelled, 7); err != nil {
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
			if got := d.Drop(0); got != queued0 {
				t.Fatalf("Drop(0) = %d, want %d", got, queued0)
			}
			if got := d.Drop(0); got != 0 {
				t.Fatalf("second Drop(0) = %d", got)
			}
			if got := d.Drop(42); got != 0 {
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
			if err := d.WaitPartition(ctx, 0); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("WaitPartition(0) with a job running: %v", err)
			}
			waited := make(chan error, 1)
			go func() { waited <- d.WaitPartition(testCtx(t), 0) }()
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
	}
}

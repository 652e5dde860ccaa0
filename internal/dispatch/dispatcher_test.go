package dispatch

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// safety bounds a wait for something that must happen; tests never sleep
// to let something happen.
const safety = 10 * time.Second

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), safety)
	t.Cleanup(cancel)
	return ctx
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(safety):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func submit(t *testing.T, d *Dispatcher, j Job) {
	t.Helper()
	if err := d.Submit(testCtx(t), j); err != nil {
		t.Fatalf("Submit(%d/%d): %v", j.Partition, j.Offset, err)
	}
}

// checkIdle checks, after Wait, that nothing is left behind: no held
// count, no key lane, no queued job.
func checkIdle(t *testing.T, d *Dispatcher) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.held != 0 {
		t.Errorf("held %d after Wait", d.held)
	}
	for p, pt := range d.parts {
		if pt.held != 0 || len(pt.lanes) != 0 || pt.lane.running || len(pt.lane.q) != 0 {
			t.Errorf("partition %v after Wait: held %d, %d key lanes, lane running %v with %d queued",
				p, pt.held, len(pt.lanes), pt.lane.running, len(pt.lane.q))
		}
	}
}

// jitter makes a Run take a random short time: mostly nothing or a yield,
// sometimes a sleep, so that Runs of different groups overlap.
func jitter() {
	switch n := rand.IntN(16); {
	case n < 8:
	case n < 14:
		for range n - 7 {
			runtime.Gosched()
		}
	default:
		time.Sleep(time.Duration(rand.IntN(30)) * time.Microsecond)
	}
}

// TestOrder submits interleaved jobs and checks, for every ordering group
// of the mode, that its Run calls never overlap and happen in Submit order.
func TestOrder(t *testing.T) {
	tests := []struct {
		name     string
		mode     Mode
		max, n   int
		job      func(i int) (partition int, key string)
		parallel bool // different groups must have overlapped
	}{
		{"key/200 keys x 50 jobs", ModeKey, 64, 200 * 50,
			func(i int) (int, string) { k := i % 200; return k % 4, fmt.Sprint("key-", k) }, true},
		{"key/one key in 8 partitions is 8 keys", ModeKey, 16, 8 * 300,
			func(i int) (int, string) { return i % 8, "same" }, true},
		{"partition/8 partitions, many keys", ModePartition, 16, 8 * 300,
			func(i int) (int, string) { return i % 8, fmt.Sprint("key-", i%37) }, true},
		{"partition/one partition", ModePartition, 16, 500,
			func(i int) (int, string) { return 0, fmt.Sprint("key-", i) }, false},
		{"key/one key", ModeKey, 16, 500,
			func(i int) (int, string) { return 3, "k" }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			type group struct {
				busy atomic.Int32
				next atomic.Int64
			}
			groups := map[string]*group{}
			var running, peak atomic.Int32
			d := New(tc.mode, tc.max)
			seqs := map[string]int64{}
			for i := range tc.n {
				p, key := tc.job(i)
				id := fmt.Sprint(p)
				if tc.mode == ModeKey {
					id += "/" + key
				}
				g := groups[id]
				if g == nil {
					g = &group{}
					groups[id] = g
				}
				seq := seqs[id]
				seqs[id]++
				submit(t, d, Job{Partition: p, Offset: int64(i), Key: []byte(key), Run: func() {
					if !g.busy.CompareAndSwap(0, 1) {
						t.Errorf("group %s: job %d overlaps another job of its group", id, seq)
					}
					if now := running.Add(1); now > peak.Load() {
						peak.Store(now) // racy max, good enough to see overlap
					}
					if got := g.next.Load(); got != seq {
						t.Errorf("group %s: job %d ran when job %d was due", id, seq, got)
					}
					jitter()
					g.next.Store(seq + 1)
					running.Add(-1)
					g.busy.Store(0)
				}})
			}
			if err := d.Wait(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			checkIdle(t, d)
			for id, g := range groups {
				if got := g.next.Load(); got != seqs[id] {
					t.Errorf("group %s: %d jobs ran, want %d", id, got, seqs[id])
				}
			}
			if tc.parallel && peak.Load() < 2 {
				t.Errorf("different groups never overlapped (peak %d)", peak.Load())
			}
			if !tc.parallel && peak.Load() != 1 {
				t.Errorf("peak concurrency %d in a single group", peak.Load())
			}
		})
	}
}

// TestConcurrency proves which jobs run at once: each row's 64 jobs block
// on a barrier, and all 64 must be running together.
func TestConcurrency(t *testing.T) {
	const n = 64
	tests := []struct {
		name string
		mode Mode
		job  func(i int) (partition int, key string)
	}{
		{"key/64 keys in one partition", ModeKey, func(i int) (int, string) { return 0, fmt.Sprint(i) }},
		{"key/64 keyless jobs in one partition", ModeKey, func(i int) (int, string) { return 0, "" }},
		{"key/one key in 64 partitions", ModeKey, func(i int) (int, string) { return i, "k" }},
		{"partition/64 partitions", ModePartition, func(i int) (int, string) { return i, "k" }},
		{"none/64 jobs of one key and partition", ModeNone, func(i int) (int, string) { return 0, "k" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := New(tc.mode, n)
			started := make(chan struct{}, n)
			release := make(chan struct{})
			for i := range n {
				p, key := tc.job(i)
				submit(t, d, Job{Partition: p, Offset: int64(i), Key: []byte(key), Run: func() {
					started <- struct{}{}
					<-release
				}})
			}
			for i := range n {
				recv(t, started, fmt.Sprintf("job %d of %d to start", i+1, n))
			}
			if got := d.InFlight(); got != n {
				t.Errorf("InFlight %d, want %d", got, n)
			}
			close(release)
			if err := d.Wait(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			checkIdle(t, d)
		})
	}
}

// TestRunFailures: a Run that panics (or exits its goroutine) is done, and
// the next job of its key still runs, in order.
func TestRunFailures(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name       string
		run        func()
		panicked   bool
		badHandler bool
	}{
		{"panic string", func() { panic("boom") }, true, false},
		{"panic error", func() { panic(boom) }, true, false},
		{"panic nil", func() { panic(nil) }, true, false},
		{"runtime.Goexit", runtime.Goexit, false, false},
		{"panic with a panicking handler", func() { panic("boom") }, true, true},
	}
	for _, tc := range tests {
		for _, mode := range []Mode{ModeKey, ModePartition, ModeNone} {
			t.Run(tc.name+"/"+string(mode), func(t *testing.T) {
				d := New(mode, 4)
				var handled atomic.Int32
				d.OnPanic(func(j Job, v any) {
					handled.Add(1)
					if j.Offset != 0 || v == nil {
						t.Errorf("OnPanic(%d, %v)", j.Offset, v)
					}
					if tc.badHandler {
						panic("handler")
					}
				})
				ran := make(chan int64, 2)
				gate := make(chan struct{})
				submit(t, d, Job{Offset: 0, Key: []byte("k"), Run: func() { <-gate; tc.run() }})
				for o := int64(1); o <= 2; o++ {
					submit(t, d, Job{Offset: o, Key: []byte("k"), Run: func() { ran <- o }})
				}
				close(gate)
				got := []int64{recv(t, ran, "job 1"), recv(t, ran, "job 2")}
				if mode != ModeNone && (got[0] != 1 || got[1] != 2) {
					t.Errorf("ran %v, want [1 2]", got)
				}
				if err := d.Wait(testCtx(t)); err != nil {
					t.Fatal(err)
				}
				checkIdle(t, d)
				if want := map[bool]int32{true: 1}[tc.panicked]; handled.Load() != want {
					t.Errorf("OnPanic called %d times, want %d", handled.Load(), want)
				}
			})
		}
	}
}

// TestQueuedJobsHaveNoGoroutine queues many jobs behind one key and checks
// the goroutine count stays flat.
func TestQueuedJobsHaveNoGoroutine(t *testing.T) {
	d := New(ModeKey, 2000)
	release := make(chan struct{})
	started := make(chan struct{})
	before := runtime.NumGoroutine()
	submit(t, d, Job{Key: []byte("k"), Run: func() { close(started); <-release }})
	recv(t, started, "the first job")
	var n atomic.Int32
	for i := range 1000 {
		submit(t, d, Job{Offset: int64(i + 1), Key: []byte("k"), Run: func() { n.Add(1) }})
	}
	if got := runtime.NumGoroutine(); got > before+5 {
		t.Errorf("%d goroutines with 1001 jobs of one key held, %d before", got, before)
	}
	close(release)
	if err := d.Wait(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	checkIdle(t, d)
	if n.Load() != 1000 {
		t.Fatalf("%d queued jobs ran", n.Load())
	}
}

func TestParseMode(t *testing.T) {
	tests := []struct {
		in   string
		want Mode
		err  bool
	}{
		{"key", ModeKey, false},
		{"", ModeKey, false},
		{" Partition ", ModePartition, false},
		{"NONE", ModeNone, false},
		{"keys", "", true},
		{"ordered", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseMode(tc.in)
			if got != tc.want || (err != nil) != tc.err {
				t.Fatalf("ParseMode(%q) = %q, %v", tc.in, got, err)
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	tests := []struct {
		name string
		mode Mode
		max  int
	}{
		{"unknown mode", "keys", 1},
		{"empty mode", "", 1},
		{"zero max", ModeKey, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("New did not panic")
				}
			}()
			New(tc.mode, tc.max)
		})
	}
}

func benchDispatch(b *testing.B, mode Mode) {
	d := New(mode, 256)
	keys := make([][]byte, 1024)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "key-%d", i)
	}
	var n atomic.Int64
	run := func() { n.Add(1) }
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := d.Submit(ctx, Job{Partition: i & 7, Offset: int64(i), Key: keys[i&1023], Run: run}); err != nil {
			b.Fatal(err)
		}
		i++
	}
	if err := d.Wait(ctx); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkDispatchKey(b *testing.B)       { benchDispatch(b, ModeKey) }
func BenchmarkDispatchPartition(b *testing.B) { benchDispatch(b, ModePartition) }
func BenchmarkDispatchNone(b *testing.B)      { benchDispatch(b, ModeNone) }

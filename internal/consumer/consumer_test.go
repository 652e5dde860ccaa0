package consumer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cxbridge/cxbridge/internal/dispatch"
	"github.com/cxbridge/cxbridge/internal/testkafka"
)

// The consumer's generation alone, at the shipped defaults (DrainTimeout
// 3s, ShutdownTimeout 30s, CommitInterval 1s), on synctest's clock: a
// generation of the test's (testGen: its functions end together, as a
// kafka.Generation's do, and it records the commits), records from a log in
// memory (memLog), and the real dispatcher. The end-to-end proofs with a
// broker are in internal/itest.

// memLog is one partition's log in memory.
type memLog struct {
	mu    sync.Mutex
	recs  []kafka.Message
	grown chan struct{} // closed and replaced by append
}

// append adds one record per key at the next offsets.
func (l *memLog) append(partition int, keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		l.recs = append(l.recs, kafka.Message{Partition: partition, Offset: int64(len(l.recs)), Key: []byte(k), Value: []byte("v")})
	}
	if l.grown != nil {
		close(l.grown)
		l.grown = nil
	}
}

// memReader reads a memLog from an offset, and waits at its end.
type memReader struct {
	log   *memLog
	topic string
	next  int64
}

func (r *memReader) FetchMessage(ctx context.Context) (kafka.Message, error) {
	for {
		r.log.mu.Lock()
		if r.next < int64(len(r.log.recs)) {
			m := r.log.recs[r.next]
			m.Topic = r.topic
			r.next++
			r.log.mu.Unlock()
			return m, nil
		}
		if r.log.grown == nil {
			r.log.grown = make(chan struct{})
		}
		grown := r.log.grown
		r.log.mu.Unlock()
		select {
		case <-grown:
		case <-ctx.Done():
			return kafka.Message{}, ctx.Err()
		}
	}
}

// testGen is a generation: its functions' ctx ends when it ends (end, or
// one of them returning, as with kafka.Generation), and it records every
// commit and leave.
type testGen struct {
	id   int32
	ctx  context.Context
	end  context.CancelFunc
	wg   sync.WaitGroup
	mu   sync.Mutex
	fail int // commits still to fail
	log  []commitCall
	left int
}

type commitCall struct {
	at      time.Time
	offsets map[int]int64 // of topic "in"
	all     map[string]map[int]int64
	err     error
}

var errCommit = errors.New("commit refused (test)")

// newTestGen returns generation id, which ends at the latest with t (so
// that a failed test leaves no goroutine behind in its synctest bubble).
func newTestGen(t *testing.T, id int32) *testGen {
	g := &testGen{id: id}
	g.ctx, g.end = context.WithCancel(context.Background())
	t.Cleanup(g.end)
	return g
}

func (g *testGen) generation(assigned map[int]int64) *generation {
	return g.generationOf(map[string]map[int]int64{"in": assigned})
}

// generationOf is a generation with partitions of several topics
// assigned (topic → partition → start offset).
func (g *testGen) generationOf(assigned map[string]map[int]int64) *generation {
	as := map[string][]kafka.PartitionAssignment{}
	for topic, parts := range assigned {
		for _, id := range slices.Sorted(maps.Keys(parts)) {
			as[topic] = append(as[topic], kafka.PartitionAssignment{ID: id, Offset: parts[id]})
		}
	}
	return &generation{
		id: g.id, member: fmt.Sprintf("member-%d", g.id), assigned: as,
		start: func(fn func(context.Context)) {
			g.wg.Go(func() {
				fn(g.ctx)
				g.end()
			})
		},
		commit: func(offsets map[string]map[int]int64) error {
			g.mu.Lock()
			defer g.mu.Unlock()
			call := commitCall{at: time.Now(), offsets: maps.Clone(offsets["in"]), all: map[string]map[int]int64{}}
			for topic, o := range offsets {
				call.all[topic] = maps.Clone(o)
			}
			if g.fail > 0 {
				g.fail--
				call.err = errCommit
			}
			g.log = append(g.log, call)
			return call.err
		},
		leave: func(context.Context) error {
			g.mu.Lock()
			defer g.mu.Unlock()
			g.left++
			return nil
		},
	}
}

// leaves returns how often the member left the group itself.
func (g *testGen) leaves() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.left
}

// calls returns the commits so far.
func (g *testGen) calls() []commitCall {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.log)
}

// committed returns the offsets committed successfully, in order, of
// partition p of topic "in".
func (g *testGen) committed(p int) []int64 { return g.committedOf("in", p) }

// committedOf returns the offsets committed successfully, in order, of
// partition p of topic.
func (g *testGen) committedOf(topic string, p int) []int64 {
	var out []int64
	for _, c := range g.calls() {
		if o, ok := c.all[topic][p]; ok && c.err == nil {
			out = append(out, o)
		}
	}
	return out
}

// ran is one call of the Processor.
type ran struct {
	topic     string
	partition int
	offset    int64
	end       time.Time
	settled   bool
	ctxErr    error // of the ctx it ran under, when it returned
}

// rig is a Consumer with in-memory logs and the real dispatcher.
type rig struct {
	t    *testing.T
	c    *Consumer
	disp *dispatch.Dispatcher
	logs map[TopicPartition]*memLog

	mu   sync.Mutex
	runs []ran
}

// newRig makes a consumer at the defaults whose Processor is process,
// recorded.
func newRig(t *testing.T, process func(context.Context, kafka.Message) bool) *rig {
	r := &rig{t: t, disp: dispatch.New(dispatch.ModeKey, 100), logs: map[TopicPartition]*memLog{}}
	// A record still blocked when the test ends (it failed) ends with it,
	// so that the bubble is left with no goroutine behind.
	testEnded, endTest := context.WithCancel(context.Background())
	t.Cleanup(endTest)
	c, err := New(Config{Brokers: []string{"unused:9092"}, Topic: "in", GroupID: "g"}, r.disp, func(ctx context.Context, msg kafka.Message, _ time.Time) bool {
		pctx, cancel := context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(testEnded, cancel)()
		settled := process(pctx, msg)
		r.mu.Lock()
		r.runs = append(r.runs, ran{topic: msg.Topic, partition: msg.Partition, offset: msg.Offset, end: time.Now(), settled: settled, ctxErr: ctx.Err()})
		r.mu.Unlock()
		return settled
	})
	if err != nil {
		t.Fatal(err)
	}
	c.newFetcher = func(p *partition) fetcher {
		return &memReader{log: r.logOf(p.topic, p.id), topic: p.topic, next: p.start}
	}
	r.c = c
	return r
}

func (r *rig) log(p int) *memLog { return r.logOf("in", p) }

// logOf is the log of partition p of topic.
func (r *rig) logOf(topic string, p int) *memLog {
	tp := TopicPartition{topic, p}
	if r.logs[tp] == nil {
		r.logs[tp] = &memLog{}
	}
	return r.logs[tp]
}

// ran returns the Processor's calls so far for partition p of topic "in",
// by offset.
func (r *rig) ran(p int) map[int64][]ran { return r.ranOf("in", p) }

// ranOf returns the Processor's calls so far for partition p of topic, by
// offset.
func (r *rig) ranOf(topic string, p int) map[int64][]ran {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[int64][]ran{}
	for _, x := range r.runs {
		if x.topic == topic && x.partition == p {
			out[x.offset] = append(out[x.offset], x)
		}
	}
	return out
}

// run runs generation g with assigned (partition → start offset) until
// runGeneration returns, which closes the channel.
func (r *rig) run(ctx context.Context, g *testGen, assigned map[int]int64) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.c.runGeneration(ctx, g.generation(assigned))
	}()
	return done
}

// closeGroup ends g the way Run's Close of the group does at shutdown.
func (r *rig) closeGroup(g *testGen) {
	r.c.closing.Store(true)
	g.end()
	g.wg.Wait()
}

// await waits for ch to close, within an hour: on synctest's clock an hour
// passes at once when nothing else can happen, so a regression that never
// closes ch fails here instead of ticking the commit loop's clock forever.
// Outside a bubble it is an hour of real time, bounded by go test's
// -timeout; the test against a broker uses its own deadline.
func await(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(time.Hour):
		t.Fatalf("waited an hour for %s", what)
	}
}

// keys returns n distinct keys.
func keys(n int) []string {
	k := make([]string, n)
	for i := range k {
		k[i] = fmt.Sprint("k", i)
	}
	return k
}

// blockUntilEnd is a record that never settles: it waits for its ctx (the
// drain budget spent) and returns false.
func blockUntilEnd(ctx context.Context) bool {
	<-ctx.Done()
	return false
}

// TestCommitNeverPassesAnUnsettledRecord: with offset 3 unsettled and
// every other record settled, the commits carry 3 and nothing past it;
// once 3 settles the next commit carries 10. Commits only move forward.
func TestCommitNeverPassesAnUnsettledRecord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		r := newRig(t, func(ctx context.Context, msg kafka.Message) bool {
			if msg.Offset == 3 {
				select {
				case <-release:
				case <-ctx.Done():
					return false
				}
			}
			return true
		})
		r.log(0).append(0, keys(10)...)
		g := newTestGen(t, 1)
		ctx, cancel := context.WithCancel(t.Context())
		done := r.run(ctx, g, map[int]int64{0: 0})
		synctest.Wait()
		time.Sleep(5 * time.Second) // five commit intervals
		synctest.Wait()
		if got := g.committed(0); !slices.Equal(got, []int64{3}) {
			t.Fatalf("with offset 3 unsettled and 0-2, 4-9 settled, commits %v; want [3]", got)
		}
		st := r.c.Status()
		if len(st.Partitions) != 1 || st.Partitions[0].Pending != 1 || st.Partitions[0].Tracked != 7 || st.Partitions[0].Committed != 3 {
			t.Fatalf("status %+v; want 1 pending, 7 tracked (3-9), watermark 3", st)
		}
		close(release)
		synctest.Wait()
		time.Sleep(time.Second)
		synctest.Wait()
		if got := g.committed(0); !slices.Equal(got, []int64{3, 10}) {
			t.Fatalf("after offset 3 settled, commits %v; want [3 10]", got)
		}
		cancel()
		await(t, done, "runGeneration to return")
		r.closeGroup(g)
		if got := g.committed(0); !slices.Equal(got, []int64{3, 10}) {
			t.Fatalf("after shutdown, commits %v; want [3 10] (nothing new to commit)", got)
		}
	})
}

// TestShutdownDrainBudget: at shutdown a partition's held records get
// ShutdownTimeout (30s) to finish, the generation going on meanwhile;
// a record still running then is interrupted (its ctx ends) and the commit
// stops below it. Should the generation end during the drain, what is
// left is capped at DrainTimeout (3s), and the member leaves the group
// itself once drained.
func TestShutdownDrainBudget(t *testing.T) {
	const shutdownTimeout, drainTimeout = 30 * time.Second, 3 * time.Second

	t.Run("records finishing within the budget are waited for", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newRig(t, func(ctx context.Context, msg kafka.Message) bool {
				if msg.Offset == 1 {
					time.Sleep(10 * time.Second)
				}
				return true
			})
			r.log(0).append(0, keys(5)...)
			g := newTestGen(t, 1)
			ctx, cancel := context.WithCancel(t.Context())
			done := r.run(ctx, g, map[int]int64{0: 0})
			synctest.Wait()
			start := time.Now()
			cancel()
			await(t, done, "runGeneration to return")
			if took := time.Since(start); took != 10*time.Second {
				t.Errorf("the shutdown drain took %v; want 10s, the running record's time", took)
			}
			// The generation goes on during the shutdown drain, and so do
			// its periodic commits: 1 (offset 1 still running) at the first
			// interval, 5 at the end of the drain.
			if got := g.committed(0); !slices.Equal(got, []int64{1, 5}) {
				t.Errorf("commits %v; want [1 5]", got)
			}
			r.closeGroup(g)
		})
	})

	t.Run("a record still running when the budget is spent is interrupted", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newRig(t, func(ctx context.Context, msg kafka.Message) bool {
				if msg.Offset == 1 {
					return blockUntilEnd(ctx)
				}
				return true
			})
			r.log(0).append(0, keys(5)...)
			g := newTestGen(t, 1)
			ctx, cancel := context.WithCancel(t.Context())
			done := r.run(ctx, g, map[int]int64{0: 0})
			synctest.Wait()
			start := time.Now()
			cancel()
			await(t, done, "runGeneration to return")
			if took := time.Since(start); took != shutdownTimeout {
				t.Errorf("the shutdown drain took %v; want ShutdownTimeout's default, %v", took, shutdownTimeout)
			}
			runs := r.ran(0)
			if x := runs[1]; len(x) != 1 || x[0].settled || x[0].ctxErr == nil || x[0].end.Sub(start) != shutdownTimeout {
				t.Errorf("offset 1 ran %+v; want once, unsettled, its ctx ended at %v", x, shutdownTimeout)
			}
			if got := g.committed(0); !slices.Equal(got, []int64{1}) {
				t.Errorf("commits %v; want [1]: offset 1 never settled", got)
			}
			if g.ctx.Err() != nil {
				t.Error("the generation ended during the shutdown drain; it goes on until the group is closed")
			}
			r.closeGroup(g)
			if n := g.leaves(); n != 0 {
				t.Errorf("left the group %d times itself; Close leaves it", n)
			}
		})
	})

	t.Run("a rebalance during the drain caps the rest at DrainTimeout", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newRig(t, func(ctx context.Context, msg kafka.Message) bool {
				if msg.Offset == 1 {
					return blockUntilEnd(ctx)
				}
				return true
			})
			r.log(0).append(0, keys(5)...)
			g := newTestGen(t, 1)
			ctx, cancel := context.WithCancel(t.Context())
			done := r.run(ctx, g, map[int]int64{0: 0})
			synctest.Wait()
			start := time.Now()
			cancel()
			time.Sleep(5 * time.Second)
			g.end() // a rebalance: the generation ends, the member has not closed the group
			await(t, done, "runGeneration to return")
			g.wg.Wait()
			want := 5*time.Second + drainTimeout
			if took := time.Since(start); took != want {
				t.Errorf("the shutdown drain took %v; want %v (5s, then DrainTimeout's default)", took, want)
			}
			if x := r.ran(0)[1]; len(x) != 1 || x[0].settled || x[0].end.Sub(start) != want {
				t.Errorf("offset 1 ran %+v; want once, unsettled, interrupted at %v", x, want)
			}
			if got := g.committed(0); !slices.Equal(got, []int64{1}) {
				t.Errorf("commits %v; want [1]", got)
			}
			if n := g.leaves(); n != 1 {
				t.Errorf("left the group %d times; want once, after the drain", n)
			}
		})
	})
}

// TestFailedCommitIsRetried: a refused commit leaves the partition's
// committed offset where it was, so the next commit round sends the same
// watermark again until it is taken; nothing is skipped and, once taken,
// nothing is sent again.
func TestFailedCommitIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var hooked []error
		r := newRig(t, func(context.Context, kafka.Message) bool { return true })
		r.c.cfg.Hooks.Commit = func(_ string, p int, off int64, err error) {
			mu.Lock()
			defer mu.Unlock()
			hooked = append(hooked, err)
		}
		r.log(0).append(0, keys(5)...)
		g := newTestGen(t, 1)
		g.fail = 2
		ctx, cancel := context.WithCancel(t.Context())
		start := time.Now()
		done := r.run(ctx, g, map[int]int64{0: 0})
		synctest.Wait()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		calls := g.calls()
		var got []string
		for _, c := range calls {
			got = append(got, fmt.Sprintf("%v@%v:%v", c.offsets, c.at.Sub(start), c.err != nil))
		}
		want := []string{"map[0:5]@1s:true", "map[0:5]@2s:true", "map[0:5]@3s:false"}
		if !slices.Equal(got, want) {
			t.Fatalf("commits (offsets@time:failed) %v; want %v", got, want)
		}
		mu.Lock()
		if len(hooked) != 3 || hooked[0] == nil || hooked[1] == nil || hooked[2] != nil {
			t.Errorf("Hooks.Commit saw %v; want two errors, then nil", hooked)
		}
		mu.Unlock()
		cancel()
		await(t, done, "runGeneration to return")
		r.closeGroup(g)
		if n := len(g.calls()); n != 3 {
			t.Errorf("%d commits after shutdown; want still 3", n)
		}
	})
}

// TestGenerationChange: when a generation ends (a rebalance), each
// partition drains within DrainTimeout and commits with the generation
// that fetched its records; the next generation starts at the offsets it
// is assigned, fetches the unsettled record and those after it again, and
// commits with itself only.
func TestGenerationChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var gen2 bool
		var mu sync.Mutex
		r := newRig(t, func(ctx context.Context, msg kafka.Message) bool {
			mu.Lock()
			second := gen2
			mu.Unlock()
			if msg.Partition == 0 && msg.Offset == 5 && !second {
				return blockUntilEnd(ctx)
			}
			return true
		})
		r.log(0).append(0, keys(10)...)
		r.log(1).append(1, keys(10)...)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()

		g1 := newTestGen(t, 1)
		done1 := r.run(ctx, g1, map[int]int64{0: 0, 1: 0})
		synctest.Wait() // every record has run but offset 0/5; no commit interval has passed
		if n := len(g1.calls()); n != 0 {
			t.Fatalf("%d commits before the first commit interval", n)
		}
		start := time.Now()
		g1.end()
		await(t, done1, "runGeneration to return")
		g1.wg.Wait()
		if took := time.Since(start); took != 3*time.Second {
			t.Errorf("the rebalance drain took %v; want DrainTimeout's default, 3s", took)
		}
		if got0, got1 := g1.committed(0), g1.committed(1); !slices.Equal(got0, []int64{5}) || !slices.Equal(got1, []int64{10}) {
			t.Fatalf("generation 1 committed %v on partition 0 and %v on 1; want [5] and [10]", got0, got1)
		}
		if st := r.c.Status(); st.Joined {
			t.Errorf("status %+v between generations; want not joined", st)
		}

		mu.Lock()
		gen2 = true
		mu.Unlock()
		g2 := newTestGen(t, 2)
		done2 := r.run(ctx, g2, map[int]int64{0: 5}) // partition 0 again, from what generation 1 committed
		synctest.Wait()
		if st := r.c.Status(); !st.Joined || st.Generation != 2 || len(st.Partitions) != 1 || st.Partitions[0].Partition != 0 {
			t.Errorf("status %+v; want joined, generation 2, partition 0 alone", st)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if got := g2.committed(0); !slices.Equal(got, []int64{10}) {
			t.Errorf("generation 2 committed %v on partition 0; want [10]", got)
		}
		if n := len(g1.calls()); n != 2 {
			t.Errorf("generation 1 saw %d commits; want its 2 final ones and none after it ended", n)
		}
		runs := r.ran(0)
		for o := int64(0); o < 10; o++ {
			want := 1
			if o >= 5 {
				want = 2 // 5 interrupted in generation 1, 6-9 settled behind it: all fetched again in 2
			}
			if len(runs[o]) != want {
				t.Errorf("partition 0 offset %d ran %d times; want %d", o, len(runs[o]), want)
			}
		}
		if x := runs[5]; len(x) == 2 && (x[0].settled || !x[1].settled) {
			t.Errorf("offset 5 ran %+v; want unsettled, then settled", x)
		}
		cancel()
		await(t, done2, "runGeneration to return")
		r.closeGroup(g2)
	})
}

// TestRevocationWithRecordsInFlight: a revoked partition stops fetching at
// once; its running records may finish within DrainTimeout (3s), and those
// queued behind them in their key's lane run too; a record still running
// then is interrupted and the records queued behind it are dropped, never
// run. The final commit stops at the first unsettled record, and the
// dispatcher holds nothing of the partition afterwards.
func TestRevocationWithRecordsInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, func(ctx context.Context, msg kafka.Message) bool {
			switch msg.Offset {
			case 0:
				time.Sleep(time.Second)
			case 2:
				return blockUntilEnd(ctx)
			}
			return true
		})
		// 0 and 1 share key a (1 waits for 0), 2 and 3 key b (3 waits for
		// 2), 4 has key c.
		r.log(0).append(0, "a", "a", "b", "b", "c")
		g := newTestGen(t, 1)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		done := r.run(ctx, g, map[int]int64{0: 0})
		synctest.Wait()
		start := time.Now()
		g.end()
		r.log(0).append(0, "d", "e") // offsets 5 and 6, after the revocation
		await(t, done, "runGeneration to return")
		g.wg.Wait()
		if took := time.Since(start); took != 3*time.Second {
			t.Errorf("the drain took %v; want DrainTimeout's default, 3s", took)
		}
		runs := r.ran(0)
		at := func(o int64) string {
			if len(runs[o]) == 0 {
				return "never"
			}
			x := runs[o][0]
			return fmt.Sprintf("%d×%v:%v", len(runs[o]), x.end.Sub(start), x.settled)
		}
		want := map[int64]string{0: "1×1s:true", 1: "1×1s:true", 2: "1×3s:false", 3: "never", 4: "1×0s:true", 5: "never", 6: "never"}
		for o := range int64(7) {
			if got := at(o); got != want[o] {
				t.Errorf("offset %d: ran %s; want %s (count×end:settled)", o, got, want[o])
			}
		}
		if got := g.committed(0); !slices.Equal(got, []int64{2}) {
			t.Errorf("commits %v; want [2]", got)
		}
		if held, _ := r.disp.PartitionInFlight("in", 0); held != 0 || r.disp.InFlight() != 0 {
			t.Errorf("the dispatcher holds %d records of the partition (%d in all) after the drain; want none", held, r.disp.InFlight())
		}
	})
}

// TestCommitEveryCommitsBeforeTheInterval: CommitEvery (1000) settled
// records commit at once, without waiting for CommitInterval (1s).
func TestCommitEveryCommitsBeforeTheInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, func(context.Context, kafka.Message) bool { return true })
		r.log(0).append(0, keys(1500)...)
		g := newTestGen(t, 1)
		ctx, cancel := context.WithCancel(t.Context())
		start := time.Now()
		done := r.run(ctx, g, map[int]int64{0: 0})
		synctest.Wait()
		calls := g.calls()
		if len(calls) == 0 || calls[0].at != start {
			t.Fatalf("commits %+v; want one at once, before the first interval", calls)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if got := g.committed(0); got[len(got)-1] != 1500 {
			t.Errorf("commits %v; want the last at 1500", got)
		}
		cancel()
		await(t, done, "runGeneration to return")
		r.closeGroup(g)
	})
}

// TestMaxUncommittedPausesTheFetch: with MaxUncommitted set, a partition
// whose oldest record does not settle stops fetching once it holds that
// many records, and goes on as soon as the record settles.
func TestMaxUncommittedPausesTheFetch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		r := newRig(t, func(ctx context.Context, msg kafka.Message) bool {
			if msg.Offset == 0 {
				select {
				case <-release:
				case <-ctx.Done():
					return false
				}
			}
			return true
		})
		r.c.cfg.MaxUncommitted = 5
		r.log(0).append(0, keys(20)...)
		g := newTestGen(t, 1)
		ctx, cancel := context.WithCancel(t.Context())
		done := r.run(ctx, g, map[int]int64{0: 0})
		synctest.Wait()
		time.Sleep(time.Minute)
		synctest.Wait()
		if st := r.c.Status(); st.Partitions[0].Tracked != 5 || len(r.ran(0)) != 4 {
			t.Fatalf("tracked %d, %d records ran; want 5 tracked (0-4) and 1-4 ran, the fetch paused", st.Partitions[0].Tracked, len(r.ran(0)))
		}
		close(release)
		synctest.Wait()
		if n := len(r.ran(0)); n != 20 {
			t.Errorf("%d records ran after the oldest settled; want all 20", n)
		}
		cancel()
		await(t, done, "runGeneration to return")
		r.closeGroup(g)
		if got := g.committed(0); got[len(got)-1] != 20 {
			t.Errorf("commits %v; want the last at 20", got)
		}
	})
}

// TestGenerationReadsTheBrokerReadCommitted: the generation with the
// partition reader of a real broker (the embedded one, or KAFKA_BROKERS):
// records of an aborted transaction are never processed, and the
// watermark passes the transaction markers and the aborted records, so
// the commit reaches the partition's end offset, which no record does.
func TestGenerationReadsTheBrokerReadCommitted(t *testing.T) {
	b := testkafka.Start(t, testkafka.Config{Partitions: 1, Topics: []string{"in"}})
	topic := b.Topic("in")
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs...), kgo.TransactionalID(topic+"-txn"),
		kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	// Offsets: 0-2 committed, 3 its marker, 4-5 aborted, 6 its marker,
	// 7-8 committed, 9 its marker; the end offset is 10.
	for _, tx := range []struct {
		values []string
		commit bool
	}{{[]string{"a", "b", "c"}, true}, {[]string{"x", "y"}, false}, {[]string{"d", "e"}, true}} {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for _, v := range tx.values {
			if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(v), Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(tx.commit)); err != nil {
			t.Fatal(err)
		}
	}

	var mu sync.Mutex
	var values []string
	disp := dispatch.New(dispatch.ModeKey, 100)
	committed := make(chan int64, 100)
	c, err := New(Config{Brokers: b.Addrs, Topic: topic, GroupID: "unused", Hooks: Hooks{Commit: func(_ string, _ int, off int64, err error) {
		if err == nil {
			committed <- off
		}
	}}}, disp, func(_ context.Context, msg kafka.Message, _ time.Time) bool {
		mu.Lock()
		defer mu.Unlock()
		values = append(values, string(msg.Value))
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.transport.CloseIdleConnections()
	g := newTestGen(t, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.runGeneration(ctx, g.generation(map[int]int64{0: 0}))
	}()
	for off := int64(-1); off != 10; {
		select {
		case off = <-committed:
		case <-ctx.Done():
			t.Fatalf("no commit of offset 10 within a minute; last %d", off)
		}
	}
	g.end()
	select {
	case <-done:
	case <-time.After(30 * time.Second): // DrainTimeout is 3s
		t.Fatal("runGeneration did not return within 30s of the generation's end")
	}
	g.wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(values) // distinct keys: they run concurrently
	if want := []string{"a", "b", "c", "d", "e"}; !slices.Equal(values, want) {
		t.Errorf("processed %q; want %q: the committed transactions' records, once each", values, want)
	}
	if got := g.committed(0); got[len(got)-1] != 10 {
		t.Errorf("commits %v; want the last at 10", got)
	}
}

// TestTwoTopics: a generation with partition 0 of two topics — the same
// partition number — keeps them apart everywhere: each has its own
// tracker (offset 3 of "in" unsettled holds "in" back, not "other"), the
// commits carry each topic's watermark under its topic, the hooks and the
// status name the topic, and the shutdown drain of one does not wait for,
// or drop, the other's records.
func TestTwoTopics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		r := newRig(t, func(ctx context.Context, msg kafka.Message) bool {
			if msg.Topic == "in" && msg.Offset == 3 {
				select {
				case <-release:
				case <-ctx.Done():
					return false
				}
			}
			return true
		})
		r.c.cfg.Topics = []string{"in", "other"}
		var mu sync.Mutex
		var hooked []string
		var assigned []TopicPartition
		r.c.cfg.Hooks.Commit = func(topic string, p int, off int64, err error) {
			mu.Lock()
			defer mu.Unlock()
			hooked = append(hooked, fmt.Sprintf("%s/%d@%d", topic, p, off))
		}
		r.c.cfg.Hooks.Assigned = func(_ int32, tps []TopicPartition) { assigned = tps }
		r.logOf("in", 0).append(0, keys(10)...)
		r.logOf("other", 0).append(0, keys(4)...)
		r.logOf("other", 1).append(1, keys(2)...)
		g := newTestGen(t, 1)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			r.c.runGeneration(ctx, g.generationOf(map[string]map[int]int64{"in": {0: 0}, "other": {0: 0, 1: 5}}))
		}()
		synctest.Wait()
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if want := []TopicPartition{{"in", 0}, {"other", 0}, {"other", 1}}; !slices.Equal(assigned, want) {
			t.Fatalf("Hooks.Assigned got %v; want %v", assigned, want)
		}
		if got := g.committedOf("in", 0); !slices.Equal(got, []int64{3}) {
			t.Errorf("in/0 commits %v; want [3] (offset 3 unsettled)", got)
		}
		if got := g.committedOf("other", 0); !slices.Equal(got, []int64{4}) {
			t.Errorf("other/0 commits %v; want [4] (every record settled)", got)
		}
		// other/1 starts at 5, past its log's records: its watermark
		// stays at 5, committed once.
		if got := g.committedOf("other", 1); !slices.Equal(got, []int64{5}) {
			t.Errorf("other/1 commits %v; want [5]", got)
		}
		if c := g.calls()[0]; len(c.all) != 2 || c.all["in"][0] != 3 || c.all["other"][0] != 4 {
			t.Errorf("first commit %v; want one request with both topics", c.all)
		}
		st := r.c.Status()
		var got []string
		for _, p := range st.Partitions {
			got = append(got, fmt.Sprintf("%s/%d:%d/%d", p.Topic, p.Partition, p.Committed, p.Pending))
		}
		if want := []string{"in/0:3/1", "other/0:4/0", "other/1:5/0"}; !slices.Equal(got, want) {
			t.Errorf("status (topic/partition:watermark/pending) %v; want %v", got, want)
		}
		if held, _ := r.disp.PartitionInFlight("other", 0); held != 0 {
			t.Errorf("other/0 holds %d records; want 0 (in/0's unsettled record is not its)", held)
		}
		if held, _ := r.disp.PartitionInFlight("in", 0); held != 1 {
			t.Errorf("in/0 holds %d records; want 1", held)
		}
		// Shutdown: in/0 waits for its record within the budget; the
		// others drain at once. Released after 2s, it settles, and the
		// final commit carries 10.
		cancel()
		time.Sleep(2 * time.Second)
		close(release)
		await(t, done, "runGeneration to return")
		r.closeGroup(g)
		if got := g.committedOf("in", 0); !slices.Equal(got, []int64{3, 10}) {
			t.Errorf("in/0 commits %v after shutdown; want [3 10]", got)
		}
		if got := g.committedOf("other", 0); !slices.Equal(got, []int64{4}) {
			t.Errorf("other/0 commits %v after shutdown; want [4]", got)
		}
		if n := len(r.ranOf("in", 0)) + len(r.ranOf("other", 0)); n != 14 {
			t.Errorf("%d records ran; want 14 (10 of in/0, 4 of other/0)", n)
		}
		mu.Lock()
		defer mu.Unlock()
		slices.Sort(hooked)
		if want := []string{"in/0@10", "in/0@3", "other/0@4", "other/1@5"}; !slices.Equal(hooked, want) {
			t.Errorf("Hooks.Commit saw %v; want %v", hooked, want)
		}
	})
}

package dlq

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/cxbridge/cxbridge/internal/event"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

func TestWriterWritesWithAcksAll(t *testing.T) {
	c, brokers := newCluster(t)
	var (
		mu   sync.Mutex
		acks []int16
	)
	c.ControlKey(int16(kmsg.Produce), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		mu.Lock()
		acks = append(acks, r.(*kmsg.ProduceRequest).Acks)
		mu.Unlock()
		return nil, nil, false // observe only
	})
	w := newWriter(t, brokers, nil)
	ctx := testCtx(t)

	const writers, each = 4, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for g := range writers {
		wg.Go(func() {
			for i := range each / 2 { // singles, then one batch
				errs <- w.Write(ctx, dlqRecord(g*each+i))
			}
			var batch []kafka.Message
			for i := each / 2; i < each; i++ {
				batch = append(batch, dlqRecord(g*each+i))
			}
			errs <- w.Write(ctx, batch...)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Write: %v", err)
		}
	}

	got, n := byOrigin(t, readTopic(t, brokers, dlqTopic))
	if len(got) != writers*each {
		t.Fatalf("read %d distinct records, want %d", len(got), writers*each)
	}
	partitionOf := map[string]int{}
	for i := range writers * each {
		want, m := dlqRecord(i), got[int64(i)]
		if n[int64(i)] != 1 {
			t.Errorf("record %d written %d times", i, n[int64(i)])
		}
		if !bytes.Equal(m.Key, want.Key) || !bytes.Equal(m.Value, want.Value) || (m.Key == nil) != (want.Key == nil) {
			t.Errorf("record %d: key/value %q/%q, want %q/%q", i, m.Key, m.Value, want.Key, want.Value)
		}
		if (m.Value == nil) != (want.Value == nil) {
			t.Errorf("record %d: value nil=%v, want nil=%v", i, m.Value == nil, want.Value == nil)
		}
		if !sameHeaders(m.Headers, want.Headers) {
			t.Errorf("record %d: headers\n got %s\nwant %s", i, showHeaders(m.Headers), showHeaders(want.Headers))
		}
		if len(m.Key) > 0 {
			if p, seen := partitionOf[string(m.Key)]; seen && p != m.Partition {
				t.Errorf("key %q in partitions %d and %d", m.Key, p, m.Partition)
			}
			partitionOf[string(m.Key)] = m.Partition
			if p := (&kafka.Hash{}).Balance(m, 0, 1, 2, 3, 4, 5); p != m.Partition {
				t.Errorf("key %q in partition %d, hash says %d", m.Key, m.Partition, p)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(acks) == 0 {
		t.Fatal("no produce request seen")
	}
	for _, a := range acks {
		if a != -1 {
			t.Fatalf("produce with acks=%d, want -1 (all)", a)
		}
	}
}

func TestWriterRetriesRefusedProduce(t *testing.T) {
	for _, tc := range []struct {
		err          *kerr.Error
		exactlyOnce  bool // the broker refused before appending
		faultedTimes int
	}{
		{kerr.NotEnoughReplicas, true, 3},
		{kerr.LeaderNotAvailable, true, 3},
		{kerr.NotEnoughReplicasAfterAppend, false, 3}, // appended, yet failed: duplicates
	} {
		t.Run(tc.err.Message, func(t *testing.T) {
			c, brokers := newCluster(t)
			fault := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: dlqTopic, Err: tc.err, Count: tc.faultedTimes})
			var failures atomic.Int32
			w := newWriter(t, brokers, func(cfg *WriterConfig) {
				cfg.OnFailure = func(err error) {
					failures.Add(1)
					if !errors.Is(err, kafka.Error(tc.err.Code)) {
						t.Errorf("attempt failed with %v, want %v", err, tc.err)
					}
				}
			})
			var msgs []kafka.Message
			for i := range 8 {
				msgs = append(msgs, dlqRecord(i))
			}
			if err := w.Write(testCtx(t), msgs...); err != nil {
				t.Fatalf("Write: %v", err)
			}
			if fault.Hits() != tc.faultedTimes || failures.Load() == 0 {
				t.Errorf("fault hits %d, failed attempts %d", fault.Hits(), failures.Load())
			}
			read := readTopic(t, brokers, dlqTopic)
			got, n := byOrigin(t, read)
			for i := range msgs {
				if _, ok := got[int64(i)]; !ok {
					t.Errorf("record %d lost", i)
				}
				if tc.exactlyOnce && n[int64(i)] != 1 {
					t.Errorf("record %d written %d times", i, n[int64(i)])
				}
			}
			if max := len(msgs) + tc.faultedTimes*len(msgs); len(read) > max {
				t.Errorf("%d records read, more than %d", len(read), max)
			}
		})
	}
}

func TestWriterRetriesOnlyFailedRecords(t *testing.T) {
	c, brokers := newCluster(t)
	// Two keys in different partitions; the first partition refuses twice.
	a, b := dlqRecord(2), dlqRecord(3)
	pa, pb := (&kafka.Hash{}).Balance(a, 0, 1, 2, 3, 4, 5), (&kafka.Hash{}).Balance(b, 0, 1, 2, 3, 4, 5)
	if pa == pb {
		t.Fatalf("test keys share partition %d", pa)
	}
	fault := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: dlqTopic, Partitions: []int32{int32(pa)}, Err: kerr.NotEnoughReplicas, Count: 2})
	w := newWriter(t, brokers, nil)
	if err := w.Write(testCtx(t), a, b); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if fault.Hits() != 2 {
		t.Errorf("fault hits = %d, want 2", fault.Hits())
	}
	_, n := byOrigin(t, readTopic(t, brokers, dlqTopic))
	if n[2] != 1 || n[3] != 1 {
		t.Errorf("copies: %v, want one of each", n)
	}
}

func TestWriteReturnsWhenCtxEnds(t *testing.T) {
	t.Run("during backoff", func(t *testing.T) {
		c, brokers := newCluster(t)
		c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: dlqTopic, Err: kerr.NotEnoughReplicas, Count: -1})
		ctx, cancel := context.WithCancel(testCtx(t))
		w := newWriter(t, brokers, func(cfg *WriterConfig) {
			cfg.RetryMin, cfg.RetryMax = time.Hour, time.Hour
			cfg.OnFailure = func(error) { cancel() }
		})
		start := time.Now()
		err := w.Write(ctx, dlqRecord(1))
		if !errors.Is(err, context.Canceled) || !errors.Is(err, kafka.NotEnoughReplicas) {
			t.Errorf("Write = %v, want context.Canceled joined with NOT_ENOUGH_REPLICAS", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Write took %v after cancel", d)
		}
	})
	t.Run("while the broker does not answer", func(t *testing.T) {
		c, brokers := newCluster(t)
		arrived := make(chan struct{}, 1)
		c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
			c.KeepControl()
			select {
			case arrived <- struct{}{}:
			default:
			}
			return nil, nil, true // swallow the request: no answer
		})
		ctx, cancel := context.WithCancel(testCtx(t))
		w := newWriter(t, brokers, nil)
		done := make(chan error, 1)
		go func() { done <- w.Write(ctx, dlqRecord(1)) }()
		awaitSignal(t, arrived, "the produce request")
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Write = %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Write did not return after cancel")
		}
		c.Close() // fail the produce still in flight, so that Close need not wait for its timeout
	})
}

// awaitSignal waits for a value on ch; the test fails after 10 s.
func awaitSignal(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s within 10 s", what)
	}
}

func TestWriterClose(t *testing.T) {
	c, brokers := newCluster(t)
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: dlqTopic, Err: kerr.NotEnoughReplicas, Count: -1})
	failed := make(chan struct{}, 1)
	w := newWriter(t, brokers, func(cfg *WriterConfig) {
		cfg.RetryMin, cfg.RetryMax = time.Hour, time.Hour
		cfg.OnFailure = func(error) { failed <- struct{}{} }
	})
	done := make(chan error, 1)
	go func() { done <- w.Write(testCtx(t), dlqRecord(1)) }()
	awaitSignal(t, failed, "a failed write")
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Write during Close = %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Write did not return within 10 s of Close")
	}
	if err := w.Write(testCtx(t), dlqRecord(2)); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close = %v, want ErrClosed", err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestWriteTooLarge(t *testing.T) {
	c, brokers := newCluster(t)
	if err := c.CreateTopic("small", 1, map[string]string{"max.message.bytes": "2000"}); err != nil {
		t.Fatal(err)
	}
	big := dlqRecord(1)
	big.Value = bytes.Repeat([]byte("x"), 4000)
	for name, mod := range map[string]func(*WriterConfig){
		"client limit": func(cfg *WriterConfig) { cfg.MaxMessageBytes = 1000 },
		"broker limit": func(cfg *WriterConfig) { cfg.Topic = "small" },
	} {
		t.Run(name, func(t *testing.T) {
			var failures atomic.Int32
			w := newWriter(t, brokers, func(cfg *WriterConfig) {
				mod(cfg)
				cfg.OnFailure = func(error) { failures.Add(1) }
			})
			if err := w.Write(testCtx(t), big); !errors.Is(err, ErrTooLarge) {
				t.Errorf("Write = %v, want ErrTooLarge", err)
			}
			if failures.Load() != 0 {
				t.Errorf("%d retries of a write that cannot succeed", failures.Load())
			}
		})
	}
}

// DeadLetter settles a record the DLQ topic cannot take whole instead of
// stalling its partition: one too large for the topic is written without
// its value, marked with its size; one whose key or headers alone are too
// large keeps only its coordinates; one that fits is written whole. (It
// was the worker's processor's fallback before it moved here.)
func TestDeadLetterFallsBack(t *testing.T) {
	c, brokers := newCluster(t)
	if err := c.CreateTopic("small", 1, map[string]string{"max.message.bytes": "2000"}); err != nil {
		t.Fatal(err)
	}
	orig := func(offset int64) kafka.Message {
		return kafka.Message{Topic: "events", Partition: 3, Offset: offset, Key: []byte("k"), Value: []byte("{not json"),
			Headers: []kafka.Header{{Key: "h", Value: []byte("v")}}}
	}
	fits := orig(0)
	bigValue := orig(1)
	bigValue.Value = bytes.Repeat([]byte("x"), 4000)
	bigHeaders := orig(2)
	bigHeaders.Headers = append(bigHeaders.Headers, kafka.Header{Key: "blob", Value: bytes.Repeat([]byte("b"), 3000)})

	var logs testutil.SyncBuffer
	w := newWriter(t, brokers, func(cfg *WriterConfig) {
		cfg.Topic = "small"
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	for _, m := range []kafka.Message{fits, bigValue, bigHeaders} {
		if err := w.DeadLetter(testCtx(t), m, NewEntry(m, event.ReasonInvalidJSON)); err != nil {
			t.Fatalf("DeadLetter of offset %d: %v", m.Offset, err)
		}
	}
	got, n := byOrigin(t, readTopic(t, brokers, "small"))
	for off := range int64(3) {
		if n[off] != 1 {
			t.Fatalf("offset %d: %d DLQ records, want 1", off, n[off])
		}
		e, _, _ := Parse(got[off].Headers)
		if e.Reason != event.ReasonInvalidJSON || e.Topic != "events" || e.Partition != 3 {
			t.Errorf("offset %d: entry %+v", off, e)
		}
	}
	if m := got[0]; string(m.Key) != "k" || string(m.Value) != "{not json" || hasHeader(m.Headers, HeaderValueOmitted) {
		t.Errorf("the record that fits: key %q value %q headers %s", m.Key, m.Value, showHeaders(m.Headers))
	}
	if m := got[1]; string(m.Key) != "k" || m.Value != nil {
		t.Errorf("without value: key %q value %d bytes", m.Key, len(m.Value))
	}
	if v, _ := header(got[1].Headers, HeaderValueOmitted); v != "4000" {
		t.Errorf("without value: value.omitted %q, want 4000", v)
	}
	if v, _ := header(got[1].Headers, "h"); v != "v" {
		t.Errorf("without value: the original header h is %q, want kept", v)
	}
	m := got[2]
	if m.Key != nil || m.Value != nil {
		t.Errorf("coordinates only: key %q value %q", m.Key, m.Value)
	}
	if v, _ := header(m.Headers, HeaderOriginalOmitted); v != strconv.Itoa(len("k")+len("h")+len("v")+len("blob")+3000) {
		t.Errorf("coordinates only: original.omitted %q; headers %s", v, showHeaders(m.Headers))
	}
	for _, h := range m.Headers {
		if !strings.HasPrefix(h.Key, Prefix) {
			t.Errorf("coordinates only: original header %s kept", h.Key)
		}
	}
	if logs.Count("without its value") != 2 || logs.Count("coordinates only") != 1 {
		t.Errorf("fallback logs:\n%s", logs.String())
	}
}

// concurrently runs Write for each of msgs at once (each its own call, as
// the worker's records do) and returns their results in order.
func concurrently(ctx context.Context, w *Writer, msgs []kafka.Message) []error {
	errs := make([]error, len(msgs))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, m := range msgs {
		wg.Go(func() {
			<-start
			errs[i] = w.Write(ctx, m)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// A batch over the topic's max.message.bytes is refused whole, but only a
// record too large by itself is ErrTooLarge: the small records batched with
// it (and batches of small records that together pass the limit) are
// written, each retried on its own.
func TestWriteTooLargeBatchRetriesAlone(t *testing.T) {
	c, brokers := newCluster(t)
	if err := c.CreateTopic("small", 1, map[string]string{"max.message.bytes": "3000"}); err != nil {
		t.Fatal(err)
	}
	var batchRefused atomic.Int32 // produce requests of several records refused as too large
	c.ControlKey(int16(kmsg.Produce), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		for _, tp := range r.(*kmsg.ProduceRequest).Topics {
			for _, p := range tp.Partitions {
				var b kmsg.RecordBatch
				if b.ReadFrom(p.Records) == nil && b.NumRecords > 1 && len(p.Records) > 3000 {
					batchRefused.Add(1)
				}
			}
		}
		return nil, nil, false
	})
	w := newWriter(t, brokers, func(cfg *WriterConfig) {
		cfg.Topic = "small"
		cfg.BatchTimeout = 50 * time.Millisecond // gather the concurrent writes into one batch
	})
	const small = 8
	var msgs []kafka.Message
	for i := range small {
		m := dlqRecord(i)
		m.Value = bytes.Repeat([]byte{'a' + byte(i)}, 1000)
		msgs = append(msgs, m)
	}
	big := dlqRecord(small)
	big.Value = bytes.Repeat([]byte("B"), 4000)
	msgs = append(msgs, big)

	errs := concurrently(testCtx(t), w, msgs)
	for i, err := range errs[:small] {
		if err != nil {
			t.Errorf("small record %d: Write = %v, want nil", i, err)
		}
	}
	if !errors.Is(errs[small], ErrTooLarge) {
		t.Errorf("the record too large by itself: Write = %v, want ErrTooLarge", errs[small])
	}
	if batchRefused.Load() == 0 {
		t.Fatal("no batch of several records was over the limit: the test proves nothing")
	}
	got, n := byOrigin(t, readTopic(t, brokers, "small"))
	for i := range small {
		if n[int64(i)] != 1 || !bytes.Equal(got[int64(i)].Value, msgs[i].Value) {
			t.Errorf("small record %d: %d copies, value kept %v", i, n[int64(i)], bytes.Equal(got[int64(i)].Value, msgs[i].Value))
		}
	}
	if n[small] != 0 {
		t.Errorf("the too large record was written %d times", n[small])
	}
}

func TestCheck(t *testing.T) {
	c, brokers := newCluster(t, kfake.AllowAutoTopicCreation())
	ctx := testCtx(t)
	if err := newWriter(t, brokers, nil).Check(ctx); err != nil {
		t.Errorf("Check(existing topic) = %v", err)
	}

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	failures := 0
	missing := newWriter(t, brokers, func(cfg *WriterConfig) {
		cfg.Topic = "missing"
		cfg.OnFailure = func(error) {
			if failures++; failures == 3 {
				cancel()
			}
		}
	})
	if err := missing.Check(ctx); !errors.Is(err, kafka.UnknownTopicOrPartition) {
		t.Errorf("Check(missing topic) = %v, want UNKNOWN_TOPIC_OR_PARTITION", err)
	}
	// Neither Check nor Write creates the topic, though the broker would.
	if err := missing.Write(wctx, dlqRecord(1)); !errors.Is(err, context.Canceled) || !errors.Is(err, kafka.UnknownTopicOrPartition) {
		t.Errorf("Write(missing topic) = %v, want context.Canceled and UNKNOWN_TOPIC_OR_PARTITION", err)
	}
	if c.TopicInfo("missing") != nil {
		t.Fatal("the DLQ topic was auto-created")
	}
	// A topic created later is seen at once (no metadata cache).
	if err := c.CreateTopic("missing", 2, nil); err != nil {
		t.Fatal(err)
	}
	if err := missing.Check(ctx); err != nil {
		t.Errorf("Check(created topic) = %v", err)
	}

	down, _ := newCluster(t)
	addrs := down.ListenAddrs()
	down.Close()
	gone := newWriter(t, addrs, nil)
	if err := gone.Check(ctx); err == nil {
		t.Error("Check with the broker down = nil")
	}
}

func TestNewWriterValidates(t *testing.T) {
	for _, cfg := range []WriterConfig{
		{Topic: "t"},
		{Brokers: []string{"b:9092"}},
		{Brokers: []string{"b:9092"}, Topic: "t", RetryMin: time.Second, RetryMax: time.Millisecond},
	} {
		if w, err := NewWriter(cfg); err == nil {
			w.Close()
			t.Errorf("NewWriter(%+v) = nil error", cfg)
		}
	}
}

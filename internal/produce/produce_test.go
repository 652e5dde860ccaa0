package produce_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/cxbridge/cxbridge/internal/dlq"
	"github.com/cxbridge/cxbridge/internal/produce"
)

// Bad records come in every kind in turn, each marked with its kind.
func TestGeneratorMarksEveryBadKind(t *testing.T) {
	g := produce.NewGenerator(produce.Config{Keys: 10, InvalidRatio: 0.5, Seed: 7})
	kinds := map[string]int{}
	for range 1000 {
		m, bad := g.Next()
		var mark string
		for _, h := range m.Headers {
			if h.Key == produce.BadHeader {
				mark = string(h.Value)
			}
		}
		if bad != (mark != "") {
			t.Fatalf("bad=%v but header %q", bad, mark)
		}
		if bad {
			kinds[mark]++
		}
	}
	for _, k := range produce.Bad {
		if kinds[k.Name] < 30 {
			t.Errorf("kind %s written %d times in ~500 bad records", k.Name, kinds[k.Name])
		}
	}
}

// A broker that drops the connection of the first produce requests (as a
// restarting one does) costs retries, not records.
func TestRunRetriesFailedWrites(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var dropped atomic.Int64
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		if dropped.Add(1) > 12 {
			c.DropControl()
			return nil, nil, false
		}
		c.KeepControl()
		return nil, errors.New("dropped by the test"), true
	})
	var st produce.Stats
	var retries atomic.Int64
	cfg := produce.Config{Brokers: c.ListenAddrs(), Topic: "in", Count: 500, Batch: 100, Keys: 5, InvalidRatio: 0.1, Seed: 3,
		OnRetry: func(error, time.Duration) { retries.Add(1) }}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := produce.Run(ctx, cfg, &st, nil); err != nil {
		t.Fatal(err)
	}
	if st.Written.Load() != 500 || retries.Load() == 0 {
		t.Fatalf("written %d with %d retries, want 500 after at least one", st.Written.Load(), retries.Load())
	}
	n, bad := 0, 0
	err = dlq.Scan(ctx, dlq.ReaderConfig{Brokers: c.ListenAddrs(), Topic: "in"}, func(m kafka.Message) error {
		n++
		for _, h := range m.Headers {
			if h.Key == produce.BadHeader {
				bad++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A retried write may have landed twice; with none doubled, the bad
	// records are exactly those counted.
	if n < 500 {
		t.Fatalf("topic holds %d records, want at least 500", n)
	}
	if n == 500 && bad != int(st.Invalid.Load()) {
		t.Fatalf("topic holds %d bad records, %d were written", bad, st.Invalid.Load())
	}
	t.Logf("%d produce requests dropped, %d retries, %d records in the topic (%d bad)", dropped.Load()-1, retries.Load(), n, bad)
}

// A broker that refuses every write for RetryFor makes Run give up with an
// error naming the topic, after waits of 100 ms doubling (plus jitter up to
// 100 ms) up to 2 s; a run whose context ends while retrying is a clean stop.
func TestRunGivesUpAfterRetryFor(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		return nil, errors.New("dropped by the test"), true
	})
	var waits []time.Duration
	cfg := produce.Config{Brokers: c.ListenAddrs(), Topic: "in", Count: 10, RetryFor: 700 * time.Millisecond,
		OnRetry: func(_ error, wait time.Duration) { waits = append(waits, wait) }}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var st produce.Stats
	err = produce.Run(ctx, cfg, &st, nil)
	if err == nil || !strings.Contains(err.Error(), "produce to in") {
		t.Fatalf("Run = %v, want the topic's write error", err)
	}
	if len(waits) == 0 {
		t.Fatal("no retry before giving up")
	}
	for i, w := range waits {
		low := min(100*time.Millisecond<<i, 2*time.Second)
		if w < low || w > min(low+100*time.Millisecond, 2*time.Second) {
			t.Errorf("wait %d = %v, want %v to %v", i+1, w, low, low+100*time.Millisecond)
		}
	}
}

// A run whose context ends while a write is retried stops cleanly, also
// without a rate (nothing else in its loop waits on the context).
func TestRunStopsWhenItsContextEnds(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		return nil, errors.New("dropped by the test"), true
	})
	for _, count := range []int{10, 0} {
		ctx, cancel := context.WithCancel(context.Background())
		cfg := produce.Config{Brokers: c.ListenAddrs(), Topic: "in", Count: count, RetryFor: time.Hour,
			OnRetry: func(error, time.Duration) { cancel() }}
		done := make(chan error, 1)
		var st produce.Stats
		go func() { done <- produce.Run(ctx, cfg, &st, nil) }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("count %d: Run = %v, want nil (a clean stop)", count, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("count %d: Run did not return within 30s of its context ending", count)
		}
		cancel()
	}
}

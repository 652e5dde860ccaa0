package produce_test

import (
	"context"
	"errors"
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

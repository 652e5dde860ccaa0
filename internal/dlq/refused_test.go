package dlq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/testkafka"
	"github.com/cxbridge/cxbridge/internal/testutil"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
)

// A record the DLQ topic refuses for good (here INVALID_RECORD, as a
// compacted topic answers a null key) is never dropped: Write retries it,
// alone, with its capped backoff, logs the refusal once and reports it
// through Refused, while the records batched with it at first are written
// at once. Once the topic accepts it, Write returns nil, Refused is 0 and
// the end is logged once.
func TestWriterRefusedForGood(t *testing.T) {
	c, brokers := newCluster(t)
	poison := []byte("poison-record")
	fault := c.Fault(testkafka.RefuseProduce(dlqTopic, poison, kerr.InvalidRecord))
	logs := &testutil.SyncBuffer{}
	var failures, permanent atomic.Int32
	w := newWriter(t, brokers, func(cfg *WriterConfig) {
		cfg.RetryMin, cfg.RetryMax = time.Millisecond, 20*time.Millisecond
		cfg.BatchTimeout = 50 * time.Millisecond
		cfg.Logger = slog.New(slog.NewJSONHandler(logs, nil))
		cfg.OnFailure = func(err error) {
			failures.Add(1)
			if Permanent(err) {
				permanent.Add(1)
			}
		}
	})
	// Same key: one partition, so the writes share a batch.
	var msgs []kafka.Message
	for i := range 6 {
		m := dlqRecord(2)
		m.Value = fmt.Appendf(nil, `{"n":%d}`, i)
		if i == 0 {
			m.Value = poison
		}
		msgs = append(msgs, m)
	}
	ctx := testCtx(t)
	poisonDone := make(chan error, 1)
	var innocentErrs []error
	{
		start := make(chan struct{})
		var wg sync.WaitGroup
		innocentErrs = make([]error, len(msgs)-1)
		go func() { <-start; poisonDone <- w.Write(ctx, msgs[0]) }()
		for i := range innocentErrs {
			wg.Go(func() { <-start; innocentErrs[i] = w.Write(ctx, msgs[i+1]) })
		}
		close(start)
		wg.Wait()
	}
	for i, err := range innocentErrs {
		if err != nil {
			t.Errorf("innocent record %d: Write = %v", i+1, err)
		}
	}
	// The poison record is retried: wait for many refusals.
	deadline := time.Now().Add(10 * time.Second)
	for permanent.Load() < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("%d permanent failures counted, want 10 (%d failures)", permanent.Load(), failures.Load())
		}
		select {
		case err := <-poisonDone:
			t.Fatalf("Write of the refused record returned: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	if n, err := w.Refused(); n != 1 || !errors.Is(err, kafka.InvalidRecord) {
		t.Errorf("Refused() = %d, %v; want 1, INVALID_RECORD", n, err)
	}
	if got := logs.Count("refuses a record for good"); got != 1 {
		t.Errorf("the refusal logged %d times over %d attempts, want once", got, permanent.Load())
	}
	if got := logs.Count("dlq write failed, retrying"); got != 0 {
		t.Errorf("the refusal logged %d times as a transient failure", got)
	}

	fault.Remove()
	select {
	case err := <-poisonDone:
		if err != nil {
			t.Fatalf("Write after the topic accepts again: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Write did not return after the topic accepted again")
	}
	if n, err := w.Refused(); n != 0 || err != nil {
		t.Errorf("Refused() = %d, %v after the write; want 0, nil", n, err)
	}
	if got := logs.Count("accepts the records it refused"); got != 1 {
		t.Errorf("the end of the refusal logged %d times, want once", got)
	}
	values := map[string]int{}
	for _, m := range readTopic(t, brokers, dlqTopic) {
		values[string(m.Value)]++
	}
	for _, m := range msgs {
		if values[string(m.Value)] != 1 {
			t.Errorf("record %q written %d times, want once", m.Value, values[string(m.Value)])
		}
	}
}

func TestPermanent(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{kafka.TopicAuthorizationFailed, true},
		{kafka.PolicyViolation, true},
		{kafka.InvalidRecord, true},
		{kafka.InvalidMessage, true},
		{fmt.Errorf("wrapped: %w", kafka.ClusterAuthorizationFailed), true},
		{errors.Join(kafka.NotEnoughReplicas, kafka.TopicAuthorizationFailed), true},
		{kafka.NotEnoughReplicas, false},
		{kafka.UnknownTopicOrPartition, false},
		{kafka.LeaderNotAvailable, false},
		{kafka.MessageSizeTooLarge, false},
		{context.DeadlineExceeded, false},
		{errors.New("dial tcp: connection refused"), false},
	} {
		if got := Permanent(tc.err); got != tc.want {
			t.Errorf("Permanent(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

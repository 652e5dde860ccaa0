package itest

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/cxbridge/cxbridge/internal/bridge"
	"github.com/cxbridge/cxbridge/internal/consumer"
	"github.com/cxbridge/cxbridge/internal/dlq"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

// A bad record whose headers alone exceed the DLQ topic's limit (the input
// topic takes 3 MiB records, the DLQ 1 MiB) is dead-lettered with its
// coordinates only, and its partition goes on (invariant 7): the record
// after it is accepted and every offset committed.
func TestDLQRecordTooLargeEvenWithoutValue(t *testing.T) {
	s := newStack(t, 1, sim.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topic := s.broker.CreateTopic("big.events", 1, map[string]string{"max.message.bytes": strconv.Itoa(3 << 20)})
	var err error
	blob := bytes.Repeat([]byte("b"), 1536<<10)
	good := goodRecords(1, 1, 5)[0]
	w := s.broker.Writer(topic)
	w.Balancer, w.BatchSize, w.BatchBytes = nil, 1, 3<<20
	err = w.WriteMessages(ctx,
		kafka.Message{Key: []byte("big"), Value: []byte("{not json"), Headers: []kafka.Header{{Key: "blob", Value: blob}, {Key: "small", Value: []byte("x")}}},
		good)
	w.Close()
	if err != nil {
		t.Fatal(err)
	}

	r := s.startWorker(func(st *bridge.Settings) { st.Kafka.InputTopic = topic })
	testutil.WaitFor(t, 30*time.Second, "both records settled", func() bool {
		o, err := consumer.ReadGroupLag(ctx, s.client, s.group, topic)
		return err == nil && o.Committed[0] == 2
	})
	r.stop(t)
	if st := s.sim.Stats(); st.Distinct != 1 {
		t.Fatalf("simulator accepted %d events, want the good one", st.Distinct)
	}
	recs := s.dlqRecords()
	if len(recs) != 1 {
		t.Fatalf("%d DLQ records, want 1", len(recs))
	}
	m := recs[0]
	e, ok, err := dlq.Parse(m.Headers)
	if !ok || err != nil || e.Reason != "invalid_json" || e.Topic != topic || e.Partition != 0 || e.Offset != 0 {
		t.Fatalf("DLQ entry %+v (%v)", e, err)
	}
	if m.Key != nil || m.Value != nil {
		t.Errorf("DLQ record kept key %d bytes, value %d bytes", len(m.Key), len(m.Value))
	}
	marks := map[string]string{}
	for _, h := range m.Headers {
		marks[h.Key] = string(h.Value)
		if h.Key == "blob" || h.Key == "small" {
			t.Errorf("original header %s kept", h.Key)
		}
	}
	if marks[dlq.HeaderValueOmitted] != "9" || marks[dlq.HeaderOriginalOmitted] != strconv.Itoa(3+4+len(blob)+5+1) {
		t.Errorf("omitted marks %q / %q", marks[dlq.HeaderValueOmitted], marks[dlq.HeaderOriginalOmitted])
	}
}

// The DLQ topic takes records of up to 64 KiB; bad records of 12 KB are
// dead-lettered concurrently (kafka-go batches them, and a batch over the
// limit is refused whole) together with one of 100 KB. Only the 100 KB one
// is dead-lettered without its value; every 12 KB one keeps its value.
func TestDLQBatchTooLargeKeepsSmallValues(t *testing.T) {
	const (
		limit = 64 << 10
		small = 40
	)
	s := newStack(t, 3, sim.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dlqSmall := s.broker.CreateTopic("small.dlq", 1, map[string]string{"max.message.bytes": strconv.Itoa(limit)})
	// Produce requests to the DLQ carrying a batch of several records over
	// the limit: what the old writer turned into values dropped. Only the
	// embedded broker lets the test see them; on a real one the outcome
	// alone is checked.
	batches := observeProduce(s.broker, dlqSmall,
		func(r *kmsg.ProduceRequest) bool {
			for _, tp := range r.Topics {
				for _, p := range tp.Partitions {
					var b kmsg.RecordBatch
					if b.ReadFrom(p.Records) == nil && b.NumRecords > 1 && len(p.Records) > limit {
						return true
					}
				}
			}
			return false
		})
	var msgs []kafka.Message
	for i := range small {
		msgs = append(msgs, kafka.Message{Key: fmt.Appendf(nil, "small-%d", i), Value: fmt.Appendf(nil, "{not json %d %s", i, bytes.Repeat([]byte("s"), 12_000))})
	}
	msgs = append(msgs, kafka.Message{Key: []byte("big"), Value: append([]byte("{not json "), bytes.Repeat([]byte("b"), 100_000)...)})
	shuffle(msgs, 8)
	s.write(msgs)

	r := s.startWorker(func(st *bridge.Settings) { st.Kafka.DLQTopic = dlqSmall })
	s.waitCommitted(time.Minute)
	r.stop(t)
	if batches != nil && batches.Hits() == 0 {
		t.Fatal("no batch of several DLQ records went over the limit: the test proves nothing")
	}

	want := map[string][]byte{}
	for _, m := range msgs {
		want[string(m.Key)] = m.Value
	}
	var recs []kafka.Message
	err := dlq.Scan(ctx, dlq.ReaderConfig{Brokers: s.broker.Addrs, Topic: dlqSmall}, func(m kafka.Message) error {
		recs = append(recs, m)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, m := range recs {
		key := string(m.Key)
		seen[key]++
		omitted := ""
		for _, h := range m.Headers {
			if h.Key == dlq.HeaderValueOmitted {
				omitted = string(h.Value)
			}
		}
		switch {
		case key == "big":
			if m.Value != nil || omitted != strconv.Itoa(len(want[key])) {
				t.Errorf("big: value of %d bytes, omitted mark %q; want no value and %d", len(m.Value), omitted, len(want[key]))
			}
		case !bytes.Equal(m.Value, want[key]) || omitted != "":
			t.Errorf("%s: value of %d bytes (want %d), omitted mark %q: a small record lost its value", key, len(m.Value), len(want[key]), omitted)
		}
	}
	for key := range want {
		if seen[key] != 1 {
			t.Errorf("%s in the DLQ %d times, want once", key, seen[key])
		}
	}
	if batches != nil {
		t.Logf("%d DLQ records; %d produce requests carried a batch over the limit", len(recs), batches.Hits())
	}
}

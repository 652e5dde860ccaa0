package itest

import (
	"bytes"
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/bridge"
	"github.com/cxbridge/cxbridge/internal/consumer"
	"github.com/cxbridge/cxbridge/internal/dlq"
	"github.com/cxbridge/cxbridge/internal/sim"
)

// A bad record whose headers alone exceed the DLQ topic's limit (the input
// topic takes 3 MiB records, the DLQ 1 MiB) is dead-lettered with its
// coordinates only, and its partition goes on (invariant 7): the record
// after it is accepted and every offset committed.
func TestDLQRecordTooLargeEvenWithoutValue(t *testing.T) {
	const topic = "big.events"
	s := newStack(t, 1, sim.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := s.client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: 1, ReplicationFactor: 1,
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: "max.message.bytes", ConfigValue: strconv.Itoa(3 << 20)}},
	}}})
	if err != nil || res.Errors[topic] != nil {
		t.Fatalf("create %s: %v %v", topic, err, res.Errors)
	}
	blob := bytes.Repeat([]byte("b"), 1536<<10)
	good := goodRecords(1, 1, 5)[0]
	w := &kafka.Writer{Addr: kafka.TCP(s.broker.Addrs...), Topic: topic, BatchSize: 1, BatchBytes: 3 << 20,
		BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
	err = w.WriteMessages(ctx,
		kafka.Message{Key: []byte("big"), Value: []byte("{not json"), Headers: []kafka.Header{{Key: "blob", Value: blob}, {Key: "small", Value: []byte("x")}}},
		good)
	w.Close()
	if err != nil {
		t.Fatal(err)
	}

	r := s.startWorker(func(st *bridge.Settings) { st.Kafka.InputTopic = topic })
	waitFor(t, 30*time.Second, "both records settled", func() bool {
		o, err := consumer.ReadOffsets(ctx, s.client, groupID, topic)
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

package dlq

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/event"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	dlqTopic   = "dlq"
	partitions = 6
)

func newCluster(t *testing.T, opts ...kfake.Opt) (*kfake.Cluster, []string) {
	t.Helper()
	opts = append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(partitions, dlqTopic), kfake.Ports(0)}, opts...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, c.ListenAddrs()
}

func newWriter(t *testing.T, brokers []string, mod func(*WriterConfig)) *Writer {
	t.Helper()
	cfg := WriterConfig{Brokers: brokers, Topic: dlqTopic, RetryMin: time.Millisecond, RetryMax: 4 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	w, err := NewWriter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// readTopic returns every record of topic, read with Scan.
func readTopic(t *testing.T, brokers []string, topic string) []kafka.Message {
	t.Helper()
	var out []kafka.Message
	err := Scan(testCtx(t), ReaderConfig{Brokers: brokers, Topic: topic}, func(m kafka.Message) error {
		out = append(out, m)
		return nil
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	return out
}

// dlqRecord returns the DLQ record of the i-th test input; its original
// offset (i) identifies it.
func dlqRecord(i int) kafka.Message {
	orig := kafka.Message{
		Topic: "events", Partition: i % 3, Offset: int64(i), Time: time.UnixMilli(1_772_000_000_000 + int64(i)),
		Value:   []byte(fmt.Sprintf(`{"n":%d}`, i)),
		Headers: []kafka.Header{{Key: "traceparent", Value: []byte("00-abc-" + strconv.Itoa(i))}},
	}
	switch i % 4 {
	case 0: // no key
	case 1:
		orig.Key = []byte{}
		orig.Value = []byte{}
	default:
		orig.Key = []byte("key-" + strconv.Itoa(i%7))
	}
	e := NewEntry(orig, event.ReasonRetriesExhausted)
	e.Error, e.Status, e.Body, e.Attempts = "cxone: 503", 503, "unavailable", 4
	e.FirstAttempt = time.UnixMilli(1_772_000_100_000 + int64(i))
	e.LastAttempt = e.FirstAttempt.Add(time.Second)
	e.CorrelationID = "corr-" + strconv.Itoa(i)
	return Record(orig, e)
}

func sameHeaders(a, b []kafka.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}

func showHeaders(hs []kafka.Header) string {
	var b strings.Builder
	for _, h := range hs {
		fmt.Fprintf(&b, "%s=%q ", h.Key, h.Value)
	}
	return b.String()
}

// byOrigin indexes read-back DLQ records by their original offset, counting copies.
func byOrigin(t *testing.T, ms []kafka.Message) (map[int64]kafka.Message, map[int64]int) {
	t.Helper()
	got, n := map[int64]kafka.Message{}, map[int64]int{}
	for _, m := range ms {
		e, ok, err := Parse(m.Headers)
		if !ok || err != nil {
			t.Fatalf("record %d/%d: Parse ok=%v err=%v", m.Partition, m.Offset, ok, err)
		}
		got[e.Offset] = m
		n[e.Offset]++
	}
	return got, n
}

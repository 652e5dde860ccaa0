package dlq

import (
	"errors"
	"testing"

	"github.com/segmentio/kafka-go"
)

func TestScan(t *testing.T) {
	c, brokers := newCluster(t)
	w := newWriter(t, brokers, nil)
	ctx := testCtx(t)
	const n = 30
	for i := range n {
		if err := w.Write(ctx, dlqRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Drop the first record of a non-empty partition: Scan starts at each
	// partition's first offset, not at 0.
	dropped := -1
	for p := range partitions {
		if info := c.PartitionInfo(dlqTopic, int32(p)); info.HighWatermark > 1 {
			if err := c.DeleteRecords(dlqTopic, int32(p), 1); err != nil {
				t.Fatal(err)
			}
			dropped = p
			break
		}
	}
	if dropped < 0 {
		t.Fatal("no partition with two records")
	}

	cfg := ReaderConfig{Brokers: brokers, Topic: dlqTopic}
	var got []kafka.Message
	err := Scan(ctx, cfg, func(m kafka.Message) error {
		if len(got) == 0 { // written during the scan: not seen
			if err := w.Write(ctx, dlqRecord(n)); err != nil {
				return err
			}
		}
		got = append(got, m)
		return nil
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	if len(got) != n-1 {
		t.Fatalf("scanned %d records, want %d", len(got), n-1)
	}
	last := map[int]int64{}
	for _, m := range got {
		if m.Topic != dlqTopic {
			t.Errorf("topic %q", m.Topic)
		}
		if prev, ok := last[m.Partition]; ok && m.Offset <= prev {
			t.Errorf("partition %d: offset %d after %d", m.Partition, m.Offset, prev)
		}
		if m.Partition == dropped && m.Offset == 0 {
			t.Error("deleted record scanned")
		}
		last[m.Partition] = m.Offset
		e, ok, err := Parse(m.Headers)
		if !ok || err != nil || e.Offset >= n {
			t.Errorf("record %d/%d: %+v ok=%v err=%v", m.Partition, m.Offset, e, ok, err)
		}
	}

	stop := errors.New("stop")
	calls := 0
	err = Scan(ctx, cfg, func(kafka.Message) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Errorf("Scan with a failing fn = %v after %d calls, want stop after 1", err, calls)
	}

	if err := c.CreateTopic("empty", 3, nil); err != nil {
		t.Fatal(err)
	}
	err = Scan(ctx, ReaderConfig{Brokers: brokers, Topic: "empty"}, func(kafka.Message) error { calls++; return nil })
	if err != nil || calls != 1 {
		t.Errorf("Scan(empty topic) = %v, %d calls", err, calls-1)
	}
	err = Scan(ctx, ReaderConfig{Brokers: brokers, Topic: "missing"}, func(kafka.Message) error { return nil })
	if !errors.Is(err, kafka.UnknownTopicOrPartition) {
		t.Errorf("Scan(missing topic) = %v", err)
	}
}

package itest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cxbridge/cxbridge/internal/consumer"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

// Records of aborted Kafka transactions are never published, records of
// committed ones are, and transaction markers (control records) are
// neither published nor dead-lettered: the worker reads at read_committed
// isolation. The group's committed offsets still reach each partition's
// end — the offset after its last marker, which no record reaches.
//
// A transactional producer (franz-go's kgo, the embedded broker supports
// transactions) writes while the worker runs: transactions committed and
// aborted in turn, plain records between them, and an aborted one last,
// so that an abort marker ends every partition.
func TestAbortedTransactionsAreNeverPublished(t *testing.T) {
	const partitions = 3
	s := newStack(t, partitions, sim.Config{})
	w := s.startWorker(nil)
	s.warmUp(partitions, 30*time.Second)

	cl, err := kgo.NewClient(kgo.SeedBrokers(s.broker.Addrs...), kgo.TransactionalID("itest-txn"),
		kgo.DefaultProduceTopic(s.input), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	ts := time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	event := func(id string, i int) []byte {
		return fmt.Appendf(nil, `{"eventType":"custom.itest","source":"itest","timestamp":%q,"correlationId":%q,"data":{"n":%d}}`, ts, id, i)
	}
	var committed, aborted, plain []string
	const txns, per = 8, 12
	for tx := range txns {
		commit := tx%2 == 0 && tx != txns-1 // the last one aborts
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		var recs []*kgo.Record
		for i := range per {
			id := fmt.Sprintf("txn-%d-%d", tx, i)
			recs = append(recs, &kgo.Record{Key: fmt.Appendf(nil, "k-%d", i), Value: event(id, i)})
			if commit {
				committed = append(committed, id)
			} else {
				aborted = append(aborted, id)
			}
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("transaction %d: %v", tx, err)
		}
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatalf("ending transaction %d: %v", tx, err)
		}
		if tx < txns-1 { // plain records between the transactions
			var msgs []kafka.Message
			for i := range 3 {
				id := fmt.Sprintf("plain-%d-%d", tx, i)
				msgs = append(msgs, kafka.Message{Key: fmt.Appendf(nil, "p-%d", i), Value: event(id, i)})
				plain = append(plain, id)
			}
			s.write(msgs)
		}
	}
	want := int64(partitions + len(committed) + len(plain)) // and the warm-up records
	s.waitAccepted(want, time.Minute)
	s.waitCommitted(time.Minute)
	// The end the group must reach is the high watermark itself: with no
	// transaction open, the last stable offset is the high watermark, the
	// offset after each partition's last (abort) marker. Apache Kafka's
	// transaction coordinator writes the markers after EndTransaction has
	// returned, so the high watermark may still move: wait for it.
	var o consumer.GroupLag
	var hwm map[int]int64
	testutil.WaitFor(t, 30*time.Second, "every partition committed up to its high watermark, past the last abort marker", func() bool {
		o, hwm = s.offsets(), s.highWatermarks(partitions)
		for p := range partitions {
			if o.Committed[p] != hwm[p] {
				return false
			}
		}
		return true
	}, func() string { return fmt.Sprintf("committed %v, high watermarks %v", o.Committed, hwm) })
	w.stop(t)

	st := s.sim.Stats()
	t.Logf("%d committed, %d aborted, %d plain records; simulator %+v; committed offsets %v, end %v", len(committed), len(aborted), len(plain), st, o.Committed, o.End)
	for _, id := range aborted {
		if a, ok := s.sim.Lookup(id); ok {
			t.Errorf("%s of an aborted transaction was published (%d times)", id, a.Count)
		}
	}
	for _, id := range append(committed, plain...) {
		if _, ok := s.sim.Lookup(id); !ok {
			t.Errorf("%s was never published", id)
		}
	}
	if st.Distinct != want {
		t.Errorf("simulator accepted %d distinct events, want %d", st.Distinct, want)
	}
	if n := len(s.dlqRecords()); n != 0 {
		t.Errorf("%d records dead-lettered, want none (transaction markers are not records)", n)
	}
}

// highWatermarks returns each partition's high watermark (read_uncommitted
// end offset), by partition.
func (s *stack) highWatermarks(partitions int) map[int]int64 {
	s.t.Helper()
	reqs := make([]kafka.OffsetRequest, partitions)
	for p := range reqs {
		reqs[p] = kafka.LastOffsetOf(p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := s.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{s.input: reqs}})
	if err != nil {
		s.t.Fatal(err)
	}
	out := map[int]int64{}
	for _, p := range res.Topics[s.input] {
		if p.Error != nil {
			s.t.Fatalf("high watermark of partition %d: %v", p.Partition, p.Error)
		}
		out[p.Partition] = p.LastOffset
	}
	return out
}

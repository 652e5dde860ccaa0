package consumer

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/segmentio/kafka-go/protocol"
	fetchAPI "github.com/segmentio/kafka-go/protocol/fetch"
)

func batch(pid int64, txn bool, offsets ...int64) *protocol.RecordBatch {
	recs := make([]protocol.Record, len(offsets))
	for i, o := range offsets {
		recs[i] = protocol.Record{Offset: o, Value: protocol.NewBytes([]byte{byte(o)})}
	}
	var attrs protocol.Attributes
	if txn {
		attrs = protocol.Transactional
	}
	return &protocol.RecordBatch{Attributes: attrs, BaseOffset: offsets[0], ProducerID: pid, Records: protocol.NewRecordReader(recs...)}
}

func marker(pid, offset int64, commit bool) *protocol.ControlBatch {
	typ := int16(0) // abort
	if commit {
		typ = 1
	}
	cr := protocol.ControlRecord{Offset: offset, Type: typ}
	return &protocol.ControlBatch{Attributes: protocol.Transactional | protocol.Control, BaseOffset: offset, ProducerID: pid,
		Records: protocol.NewRecordReader(cr.Record())}
}

// The read_committed filter, as Kafka's consumer applies it: batches of a
// producer's aborted transaction are dropped from the transaction's first
// offset up to that producer's abort marker, markers are never records,
// other producers' batches and plain ones in between are kept, a record
// before the fetch offset is not returned again, a gap between batches
// (compaction) is passed, and every offset passed without a record is
// reported so that the watermark can pass it.
func TestReaderReadCommitted(t *testing.T) {
	var passed []int64
	r := &reader{topic: "t", next: 1, skipped: func(next int64) { passed = append(passed, next) }}
	r.batches = []protocol.RecordReader{
		batch(-1, false, 0, 1), // 0 was delivered before this fetch (fetch offset 1)
		batch(-1, false, 3),    // offset 2 compacted away: a gap between batches
		batch(7, true, 4, 5),   // producer 7's transaction, aborted below
		batch(-1, false, 6),    // a plain record between
		batch(8, true, 7, 8),   // producer 8's transaction, committed below
		marker(7, 9, false),    // abort of producer 7's
		marker(8, 10, true),    // commit of producer 8's
		batch(7, true, 11),     // producer 7's next transaction: committed
		marker(7, 12, true),    // its commit
		batch(9, true, 13, 14), // producer 9's, aborted at the end
		marker(9, 15, false),   // the partition ends with an abort marker
	}
	r.aborted = []fetchAPI.ResponseTransaction{{ProducerID: 7, FirstOffset: 4}, {ProducerID: 9, FirstOffset: 13}}
	var got []int64
	for {
		msg, ok, err := r.nextRecord()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if len(msg.Value) != 1 || int64(msg.Value[0]) != msg.Offset {
			t.Errorf("record %d: value %v", msg.Offset, msg.Value)
		}
		got = append(got, msg.Offset)
	}
	if want := []int64{1, 3, 6, 7, 8, 11}; !slices.Equal(got, want) {
		t.Errorf("records %v, want %v", got, want)
	}
	if want := []int64{3, 6, 10, 11, 13, 15, 16}; !slices.Equal(passed, want) {
		t.Errorf("passed to %v, want %v", passed, want)
	}
	if r.next != 16 {
		t.Errorf("next offset %d, want 16 (after the last marker)", r.next)
	}
}

// stale answers every fetch with one batch whose records all lie before
// the fetch offset, as a batch whose tail was compacted away is returned
// (the protocol package does not give a batch's last offset).
type stale struct{ fetches atomic.Int32 }

var errSpinning = errors.New("1000 fetches without a pause: the reader spins")

func (s *stale) RoundTrip(ctx context.Context, _ net.Addr, _ protocol.Message) (protocol.Message, error) {
	if s.fetches.Add(1) > 1000 { // a reader spinning on synctest's clock would never see its deadline
		return nil, errSpinning
	}
	return &fetchAPI.Response{Topics: []fetchAPI.ResponseTopic{{Topic: "t", Partitions: []fetchAPI.ResponsePartition{{
		HighWatermark: 10, RecordSet: protocol.RecordSet{Records: &protocol.RecordStream{Records: []protocol.RecordReader{batch(-1, false, 3, 4)}}},
	}}}}}, nil
}

// A response that moves nothing is not asked for again at once: the reader
// waits a fetch's wait time between such fetches instead of spinning.
// Time is the subject: on synctest's clock, 475 ms at one fetch per 50 ms
// is exactly 10 fetches (at 0, 50, …, 450 ms); spinning does thousands.
func TestReaderDoesNotSpinOnAStaleBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &stale{}
		var warned atomic.Int32
		r := &reader{tr: tr, topic: "t", next: 5, maxWait: 50 * time.Millisecond, warn: func(string, ...any) { warned.Add(1) }}
		ctx, cancel := context.WithTimeout(t.Context(), 475*time.Millisecond)
		defer cancel()
		if _, err := r.FetchMessage(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("FetchMessage: %v, want the context's deadline", err)
		}
		if n := tr.fetches.Load(); n != 10 {
			t.Errorf("%d fetches in 475 ms, want 10", n)
		}
		if warned.Load() != 1 {
			t.Errorf("warned %d times, want once", warned.Load())
		}
		if r.next != 5 {
			t.Errorf("next offset %d, want 5", r.next)
		}
	})
}

// sequential serves a partition of 10 records a response: the response to
// a fetch at offset o holds the batch of o's ten (a broker returns the
// batch holding the fetch offset whole).
type sequential struct{ fetches atomic.Int32 }

func (s *sequential) RoundTrip(ctx context.Context, _ net.Addr, m protocol.Message) (protocol.Message, error) {
	s.fetches.Add(1)
	at := m.(*fetchAPI.Request).Topics[0].Partitions[0].FetchOffset
	base := at / 10 * 10
	offsets := make([]int64, 10)
	for i := range offsets {
		offsets[i] = base + int64(i)
	}
	return &fetchAPI.Response{Topics: []fetchAPI.ResponseTopic{{Topic: "t", Partitions: []fetchAPI.ResponsePartition{{
		HighWatermark: 1000, RecordSet: protocol.RecordSet{Records: &protocol.RecordStream{Records: []protocol.RecordReader{batch(-1, false, offsets...)}}},
	}}}}}, nil
}

// A response used up is followed by the next fetch at once: only a response
// that moved nothing waits. Before, every response used up counted as one
// that moved nothing (the check compared the offset before and after the
// last call of FetchMessage, not of the response), so the reader waited
// --kafka-fetch-max-wait (500 ms) after each: one response a partition
// every half second, 3,000 records of 1 % 500 KB ones in 13 s on both
// brokers, and the chaos suite's bad-records scenario at full size 3 min
// instead of 48 s on Apache Kafka.
func TestReaderFetchesTheNextResponseAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &sequential{}
		var warned atomic.Int32
		r := &reader{tr: tr, topic: "t", next: 0, maxWait: time.Hour, warn: func(string, ...any) { warned.Add(1) },
			skipped: func(int64) {}}
		start := time.Now()
		for want := range int64(200) {
			msg, err := r.FetchMessage(t.Context())
			if err != nil {
				t.Fatalf("record %d: %v (after %d fetches)", want, err, tr.fetches.Load())
			}
			if msg.Offset != want {
				t.Fatalf("record at %d, want %d", msg.Offset, want)
			}
		}
		if waited := time.Since(start); waited != 0 {
			t.Errorf("200 records took %v on the bubble's clock: the reader waited between responses", waited)
		}
		if n := tr.fetches.Load(); n != 20 {
			t.Errorf("%d fetches for 200 records of 10 a response, want 20", n)
		}
		if warned.Load() != 0 {
			t.Errorf("warned %d times of fetches that move nothing, want none", warned.Load())
		}
	})
}

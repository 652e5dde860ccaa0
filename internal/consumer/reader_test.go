package consumer

import (
	"slices"
	"testing"

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
// before the fetch offset is not returned again, and every offset passed
// without a record is reported so that the watermark can pass it.
func TestReaderReadCommitted(t *testing.T) {
	var passed []int64
	r := &reader{topic: "t", next: 1, skipped: func(next int64) { passed = append(passed, next) }}
	r.batches = []protocol.RecordReader{
		batch(-1, false, 0, 1), // 0 was delivered before this fetch (fetch offset 1)
		batch(7, true, 2, 3),   // producer 7's transaction, aborted below
		batch(-1, false, 4),    // a plain record between
		batch(8, true, 5, 6),   // producer 8's transaction, committed below
		marker(7, 7, false),    // abort of producer 7's
		marker(8, 8, true),     // commit of producer 8's
		batch(7, true, 9),      // producer 7's next transaction: committed
		marker(7, 10, true),    // its commit
		batch(9, true, 11, 12), // producer 9's, aborted at the end
		marker(9, 13, false),   // the partition ends with an abort marker
	}
	r.aborted = []fetchAPI.ResponseTransaction{{ProducerID: 7, FirstOffset: 2}, {ProducerID: 9, FirstOffset: 11}}
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
	if want := []int64{1, 4, 5, 6, 9}; !slices.Equal(got, want) {
		t.Errorf("records %v, want %v", got, want)
	}
	if want := []int64{4, 8, 9, 11, 13, 14}; !slices.Equal(passed, want) {
		t.Errorf("passed to %v, want %v", passed, want)
	}
	if r.next != 14 {
		t.Errorf("next offset %d, want 14 (after the last marker)", r.next)
	}
}

package consumer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	fetchAPI "github.com/segmentio/kafka-go/protocol/fetch"

	"github.com/cxbridge/cxbridge/internal/retry"
)

// reader fetches the records of one partition at read_committed isolation:
// records of open transactions are not returned yet (the broker stops at
// the last stable offset), records of aborted transactions and transaction
// markers (control records) never are.
//
// kafka-go's Reader cannot do this: it asks for read_committed but drops
// the fetch response's list of aborted transactions and hands control
// records over as ordinary messages, so it would deliver aborted records
// and turn every marker into an invalid record. This reader uses
// kafka-go's protocol package (the same transport, TLS and SASL) and
// filters as Kafka's own consumer does: a batch of a transactional
// producer is skipped when the response lists an aborted transaction of
// that producer starting at or before the batch, until that producer's
// abort marker.
//
// Offsets passed without a record (markers, aborted batches) are reported
// to skipped, so that the partition's watermark can pass them: the end
// offset of a partition written transactionally is a marker's offset + 1,
// which no record ever reaches.
//
// It is used by one goroutine. It holds at most one fetch response (about
// maxBytes, or one record batch when a batch is larger, KIP-74), and reads
// one record at a time out of it.
type reader struct {
	tr        kafka.RoundTripper
	client    *kafka.Client // for the log start offset when an offset is out of range
	addr      net.Addr
	topic     string
	partition int
	maxBytes  int
	maxWait   time.Duration
	next      int64            // the next offset to return or pass
	skipped   func(next int64) // offsets below next that were passed hold no record to deliver
	warn      func(msg string, args ...any)
	onFetch   func() // called when a fetch answers or fails (the partition's liveness); may be nil
	// beforeFetch, when set, is called before each fetch request (a
	// fault-injection hook: it may block until ctx ends).
	beforeFetch func(ctx context.Context, topic string, partition int)

	hwm       int64                          // of the last response
	fetched   bool                           // the last response held batches
	fetchedAt int64                          // next when it was fetched: a response that moved nothing leaves it there
	stuck     int                            // responses in a row that moved nothing
	batches   []protocol.RecordReader        // of the current response not yet started, in order
	cur       protocol.RecordReader          // the batch being read; nil between batches
	aborted   []fetchAPI.ResponseTransaction // of the current response, by first offset, not yet reached
	abortPI   map[int64]bool                 // producers whose aborted transaction is being passed
}

// fetchTimeout bounds one fetch beyond the time the broker may hold it.
const fetchTimeout = 10 * time.Second

// fetchRetryMax caps the wait before a failed fetch is tried again.
const fetchRetryMax = 5 * time.Second

// FetchMessage returns the next record to deliver, fetching as needed. It
// returns ctx's error when ctx ends, and the error of a failed fetch (the
// caller retries).
func (r *reader) FetchMessage(ctx context.Context) (kafka.Message, error) {
	for {
		msg, ok, err := r.nextRecord()
		if err != nil || ok {
			return msg, err
		}
		// The response is used up.
		if r.fetched && r.next == r.fetchedAt {
			// A response with batches but nothing at or after the fetch
			// offset: records compacted away at the end of the only batch
			// returned, whose last offset the protocol package does not
			// give. Ask again later rather than at once, and say so.
			r.stuck++
			if r.stuck == 3 {
				r.warn("fetches return no record at or after the fetch offset; retrying", "partition", r.partition, "offset", r.next)
			}
			if err := retry.Sleep(ctx, r.maxWait); err != nil {
				return kafka.Message{}, err
			}
		} else {
			r.stuck = 0
		}
		if err := r.fetch(ctx); err != nil {
			return kafka.Message{}, err
		}
	}
}

// fetch replaces the current response with the next one.
func (r *reader) fetch(ctx context.Context) error {
	if r.beforeFetch != nil {
		r.beforeFetch(ctx, r.topic, r.partition)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	fctx, cancel := context.WithTimeout(ctx, r.maxWait+fetchTimeout)
	defer cancel()
	if r.onFetch != nil {
		defer r.onFetch()
	}
	m, err := r.tr.RoundTrip(fctx, r.addr, &fetchAPI.Request{
		ReplicaID:      -1,
		MaxWaitTime:    int32(r.maxWait / time.Millisecond),
		MinBytes:       1,
		MaxBytes:       int32(r.maxBytes),
		IsolationLevel: int8(kafka.ReadCommitted),
		SessionID:      -1, // no fetch session: a full fetch each time
		SessionEpoch:   -1,
		Topics: []fetchAPI.RequestTopic{{Topic: r.topic, Partitions: []fetchAPI.RequestPartition{{
			Partition: int32(r.partition), CurrentLeaderEpoch: -1, FetchOffset: r.next,
			LogStartOffset: -1, PartitionMaxBytes: int32(r.maxBytes),
		}}}},
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	res, ok := m.(*fetchAPI.Response)
	if !ok || len(res.Topics) != 1 || len(res.Topics[0].Partitions) != 1 {
		return fmt.Errorf("fetch of %s/%d: unexpected response", r.topic, r.partition)
	}
	if res.ErrorCode != 0 {
		return kafka.Error(res.ErrorCode)
	}
	p := &res.Topics[0].Partitions[0]
	if p.ErrorCode != 0 {
		err := kafka.Error(p.ErrorCode)
		if errors.Is(err, kafka.OffsetOutOfRange) {
			return r.outOfRange(ctx, err)
		}
		return err
	}
	r.hwm = p.HighWatermark
	r.aborted = slices.SortedFunc(slices.Values(p.AbortedTransactions), func(a, b fetchAPI.ResponseTransaction) int {
		return cmp.Compare(a.FirstOffset, b.FirstOffset)
	})
	r.batches, r.cur = nil, nil
	switch recs := p.RecordSet.Records.(type) {
	case nil:
	case *protocol.RecordStream:
		r.batches = recs.Records
	default:
		r.batches = []protocol.RecordReader{recs}
	}
	r.fetched, r.fetchedAt = len(r.batches) > 0, r.next
	return nil
}

// outOfRange handles a fetch offset the broker does not have: below the
// log start (the records were deleted by retention) the reader moves to
// the log start, and says so; otherwise err is returned and the fetch is
// tried again later, as kafka-go's Reader does.
func (r *reader) outOfRange(ctx context.Context, err error) error {
	lctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	res, lerr := r.client.ListOffsets(lctx, &kafka.ListOffsetsRequest{
		Topics:         map[string][]kafka.OffsetRequest{r.topic: {kafka.FirstOffsetOf(r.partition)}},
		IsolationLevel: kafka.ReadCommitted,
	})
	if lerr != nil {
		return fmt.Errorf("%w (and reading the log start: %v)", err, lerr)
	}
	for _, po := range res.Topics[r.topic] {
		if po.Partition != r.partition || po.Error != nil || po.FirstOffset <= r.next {
			continue
		}
		r.warn("the partition's records before the log start were deleted before they were fetched; skipping them",
			"partition", r.partition, "from", r.next, "to", po.FirstOffset)
		r.pass(po.FirstOffset)
		return nil
	}
	return err
}

// nextRecord returns the next record of the current response to deliver;
// ok is false when the response is used up.
func (r *reader) nextRecord() (kafka.Message, bool, error) {
	for {
		if r.cur == nil {
			if len(r.batches) == 0 {
				return kafka.Message{}, false, nil
			}
			b := r.batches[0]
			r.batches[0] = nil
			r.batches = r.batches[1:]
			// Batches are contiguous: no record lies between the one
			// before and this one's base offset (compaction leaves gaps).
			if base, ok := baseOffset(b); ok {
				r.pass(base)
			}
			if r.skipBatch(b) {
				continue
			}
			r.cur = b
		}
		rec, err := r.cur.ReadRecord()
		if errors.Is(err, io.EOF) {
			r.cur = nil
			continue
		}
		if err != nil {
			r.batches, r.cur = nil, nil
			return kafka.Message{}, false, fmt.Errorf("reading a record of %s/%d at %d: %w", r.topic, r.partition, r.next, err)
		}
		if rec.Offset < r.next { // a fetch returns whole batches: the start of this one was delivered before
			closeRecord(rec)
			continue
		}
		msg, err := r.message(rec)
		if err != nil {
			r.batches, r.cur = nil, nil
			return kafka.Message{}, false, err
		}
		r.next = rec.Offset + 1
		return msg, true, nil
	}
}

// skipBatch reports whether b holds nothing to deliver — a transaction
// marker, or a batch of an aborted transaction — and passes its offsets.
func (r *reader) skipBatch(b protocol.RecordReader) bool {
	switch b := b.(type) {
	case *protocol.ControlBatch:
		r.pass(readAll(b, b.BaseOffset, func(rec *protocol.Record) {
			if cr, err := protocol.ReadControlRecord(rec); err == nil && cr.Type == 0 { // 0 = abort, 1 = commit
				delete(r.abortPI, b.ProducerID) // the aborted transaction ends here
			}
		}) + 1)
		return true
	case *protocol.RecordBatch:
		for len(r.aborted) > 0 && r.aborted[0].FirstOffset <= b.BaseOffset {
			if r.abortPI == nil {
				r.abortPI = map[int64]bool{}
			}
			r.abortPI[r.aborted[0].ProducerID] = true
			r.aborted = r.aborted[1:]
		}
		if !b.Attributes.Transactional() || !r.abortPI[b.ProducerID] {
			return false
		}
		r.pass(readAll(b, b.BaseOffset, closeRecord) + 1)
		return true
	}
	return false // v0/v1 message sets have no transactions
}

// readAll reads b's records to its end, handing each to f, and returns the
// offset of the last one (base when it has none).
func readAll(b protocol.RecordReader, base int64, f func(*protocol.Record)) (last int64) {
	last = base
	for {
		rec, err := b.ReadRecord()
		if err != nil {
			return last
		}
		last = rec.Offset
		f(rec)
	}
}

// baseOffset returns a v2 batch's first offset.
func baseOffset(b protocol.RecordReader) (int64, bool) {
	switch b := b.(type) {
	case *protocol.RecordBatch:
		return b.BaseOffset, true
	case *protocol.ControlBatch:
		return b.BaseOffset, true
	}
	return 0, false // v0/v1 message sets: their offset is not always the first one's
}

// pass moves the reader to next without a record, and reports it.
func (r *reader) pass(next int64) {
	if next <= r.next {
		return
	}
	r.next = next
	if r.skipped != nil {
		r.skipped(next)
	}
}

// message copies rec out of the response.
func (r *reader) message(rec *protocol.Record) (kafka.Message, error) {
	defer closeRecord(rec)
	key, err := protocol.ReadAll(rec.Key)
	if err != nil {
		return kafka.Message{}, fmt.Errorf("reading the key of %s/%d/%d: %w", r.topic, r.partition, rec.Offset, err)
	}
	value, err := protocol.ReadAll(rec.Value)
	if err != nil {
		return kafka.Message{}, fmt.Errorf("reading the value of %s/%d/%d: %w", r.topic, r.partition, rec.Offset, err)
	}
	msg := kafka.Message{Topic: r.topic, Partition: r.partition, Offset: rec.Offset, HighWaterMark: r.hwm,
		Key: key, Value: value, Time: rec.Time}
	if len(rec.Headers) > 0 {
		msg.Headers = make([]kafka.Header, len(rec.Headers))
		for i, h := range rec.Headers {
			msg.Headers[i] = kafka.Header(h)
		}
	}
	return msg, nil
}

func closeRecord(rec *protocol.Record) {
	if rec.Key != nil {
		rec.Key.Close()
	}
	if rec.Value != nil {
		rec.Value.Close()
	}
}

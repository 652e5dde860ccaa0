package dlq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/segmentio/kafka-go"
)

// ReaderConfig configures Scan.
type ReaderConfig struct {
	Brokers []string
	Topic   string
	// Transport carries TLS, SASL and the client id; nil = plaintext. A
	// caller's Transport is shared and not closed.
	Transport *kafka.Transport
	// MaxBytes bounds one fetch response; default 16 MiB. A record batch
	// larger than that is still returned whole by the broker.
	MaxBytes int
	// From is where each partition's scan starts; a partition missing, or
	// below its first offset, starts at its first offset. Optional.
	From map[int]int64
	// Plan, when set, is called once before the scan with the number of
	// offsets it will cover (for a progress bar).
	Plan func(offsets int64)
}

// Scan calls fn with every record of the topic, partition by partition in
// offset order, from each partition's first offset (or cfg.From) up to its end offset as
// read when the scan starts: records produced during the scan are not seen.
// It joins no group and commits nothing. The records' Topic, Partition,
// Offset and Time are set; their byte slices are their own. An error from fn
// stops the scan and is returned as is.
func Scan(ctx context.Context, cfg ReaderConfig, fn func(kafka.Message) error) error {
	if len(cfg.Brokers) == 0 || cfg.Topic == "" {
		return errors.New("dlq: scan needs brokers and a topic")
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 16 << 20
	}
	addr := kafka.TCP(cfg.Brokers...)
	t := cfg.Transport
	if t == nil {
		t = &kafka.Transport{}
		defer t.CloseIdleConnections()
	}
	parts, err := topicPartitions(ctx, addr, t, cfg.Topic)
	if err != nil {
		return err
	}
	c := &kafka.Client{Addr: addr, Transport: t}
	first, err := listOffsets(ctx, c, cfg.Topic, parts, kafka.FirstOffset)
	if err != nil {
		return err
	}
	last, err := listOffsets(ctx, c, cfg.Topic, parts, kafka.LastOffset)
	if err != nil {
		return err
	}
	var total int64
	for _, p := range parts {
		if from, ok := cfg.From[p]; ok && from > first[p] {
			first[p] = min(from, last[p])
		}
		total += last[p] - first[p]
	}
	if cfg.Plan != nil {
		cfg.Plan(total)
	}
	for _, p := range parts {
		if err := scanPartition(ctx, c, cfg, p, first[p], last[p], fn); err != nil {
			return err
		}
	}
	return nil
}

// listOffsets returns the first or the end offset (which) of each partition.
func listOffsets(ctx context.Context, c *kafka.Client, topic string, parts []int, which int64) (map[int]int64, error) {
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: nil}}
	for _, p := range parts {
		req.Topics[topic] = append(req.Topics[topic], kafka.OffsetRequest{Partition: p, Timestamp: which})
	}
	res, err := c.ListOffsets(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("dlq: topic %s: %w", topic, err)
	}
	out := make(map[int]int64, len(parts))
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("dlq: topic %s partition %d: list offsets: %w", topic, po.Partition, po.Error)
		}
		if which == kafka.FirstOffset {
			out[po.Partition] = po.FirstOffset
		} else {
			out[po.Partition] = po.LastOffset
		}
	}
	for _, p := range parts {
		if _, ok := out[p]; !ok {
			return nil, fmt.Errorf("dlq: topic %s partition %d: no offset listed", topic, p)
		}
	}
	return out, nil
}

// scanPartition reads the records of partition p in [from, end).
func scanPartition(ctx context.Context, c *kafka.Client, cfg ReaderConfig, p int, from, end int64, fn func(kafka.Message) error) error {
	for off := from; off < end; {
		res, err := c.Fetch(ctx, &kafka.FetchRequest{
			Topic: cfg.Topic, Partition: p, Offset: off,
			MinBytes: 1, MaxBytes: int64(cfg.MaxBytes), MaxWait: 500 * time.Millisecond,
		})
		if err != nil {
			return fmt.Errorf("dlq: topic %s partition %d offset %d: %w", cfg.Topic, p, off, err)
		}
		if res.Error != nil {
			return fmt.Errorf("dlq: topic %s partition %d offset %d: %w", cfg.Topic, p, off, res.Error)
		}
		next, err := readRecords(res.Records, cfg.Topic, p, off, end, fn)
		if err != nil {
			return err
		}
		if next == off {
			// Nothing readable at off below end (the rest can only be
			// control records or a gap): the partition is done.
			return nil
		}
		off = next
	}
	return nil
}

// readRecords passes the records of one fetch at offsets in [from, end) to
// fn and returns the offset after the last one seen.
func readRecords(rr kafka.RecordReader, topic string, p int, from, end int64, fn func(kafka.Message) error) (int64, error) {
	if cl, ok := rr.(io.Closer); ok {
		defer cl.Close()
	}
	next := from
	for {
		r, err := rr.ReadRecord()
		if errors.Is(err, io.EOF) {
			return next, nil
		}
		if err != nil {
			return next, fmt.Errorf("dlq: topic %s partition %d offset %d: read: %w", topic, p, next, err)
		}
		if r.Offset < from || r.Offset >= end {
			closeBytes(r)
			continue
		}
		m := kafka.Message{Topic: topic, Partition: p, Offset: r.Offset, Time: r.Time}
		if m.Key, err = readBytes(r.Key); err == nil {
			m.Value, err = readBytes(r.Value)
		}
		closeBytes(r)
		if err != nil {
			return next, fmt.Errorf("dlq: topic %s partition %d offset %d: read: %w", topic, p, r.Offset, err)
		}
		if len(r.Headers) > 0 {
			m.Headers = make([]kafka.Header, len(r.Headers))
			for i, h := range r.Headers {
				m.Headers[i] = kafka.Header{Key: h.Key, Value: clone(h.Value)}
			}
		}
		next = r.Offset + 1
		if err := fn(m); err != nil {
			return next, err
		}
	}
}

// readBytes reads a record's key or value; nil stays nil (a null key/value).
func readBytes(b kafka.Bytes) ([]byte, error) {
	if b == nil {
		return nil, nil
	}
	return io.ReadAll(b)
}

func closeBytes(r *kafka.Record) {
	if r.Key != nil {
		r.Key.Close()
	}
	if r.Value != nil {
		r.Value.Close()
	}
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

// EndOffsets returns the end offset of each partition of cfg.Topic: where a
// Follow that shows only new records starts.
func EndOffsets(ctx context.Context, cfg ReaderConfig) (map[int]int64, error) {
	c, t, done := newClient(cfg)
	defer done()
	_, end, err := partitionEnds(ctx, c, t, cfg.Topic)
	return end, err
}

// partitionEnds returns topic's partitions and the end offset of each.
func partitionEnds(ctx context.Context, c *kafka.Client, t *kafka.Transport, topic string) (parts []int, end map[int]int64, err error) {
	if parts, err = topicPartitions(ctx, c.Addr, t, topic); err != nil {
		return nil, nil, err
	}
	end, err = listOffsets(ctx, c, topic, parts, kafka.LastOffset)
	return parts, end, err
}

// Follow is Scan that does not stop at the end: it calls fn with the records
// from cfg.From (each partition's first offset where From has none) up to
// the end, then polls every poll (default 500 ms) for records written since,
// partitions added since included, until ctx ends. The end of ctx is the
// normal way out and returns nil; an error from fn or from the broker
// returns it.
func Follow(ctx context.Context, cfg ReaderConfig, poll time.Duration, fn func(kafka.Message) error) error {
	if poll <= 0 {
		poll = 500 * time.Millisecond
	}
	if cfg.Transport == nil {
		cfg.Transport = &kafka.Transport{}
		defer cfg.Transport.CloseIdleConnections()
	}
	from := make(map[int]int64, len(cfg.From))
	for p, o := range cfg.From {
		from[p] = o
	}
	cfg.Plan = nil
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		cfg.From = from
		err := Scan(ctx, cfg, func(m kafka.Message) error {
			from[m.Partition] = m.Offset + 1
			return fn(m)
		})
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		timer.Reset(poll)
	}
}

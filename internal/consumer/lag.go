package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/segmentio/kafka-go"
)

// GroupLag is a group's lag on a topic: its committed offsets and the
// topic's end offsets, by partition; Lag is end − committed (end when nothing is committed). The
// end offset is the last stable offset, the end at read_committed
// isolation, which is how the consumer reads: records of a transaction
// still open are not due yet. Once no transaction is open it is the high
// watermark, a transaction marker's offset + 1 when the last thing written
// was a commit or an abort; the consumer's watermark passes markers, so
// the lag still reaches 0.
type GroupLag struct {
	Committed map[int]int64 // -1 when the group has committed nothing
	End       map[int]int64
}

// Lag returns the records not yet committed by the group on partition p.
func (o GroupLag) Lag(p int) int64 {
	c := o.Committed[p]
	if c < 0 {
		c = 0
	}
	return max(o.End[p]-c, 0)
}

// TotalLag sums Lag over every partition.
func (o GroupLag) TotalLag() int64 {
	var n int64
	for p := range o.End {
		n += o.Lag(p)
	}
	return n
}

// ReadGroupLag asks the brokers for group's committed offsets and topic's
// end offsets (not Reader.Stats().Lag, which is wrong with several
// partitions).
func ReadGroupLag(ctx context.Context, c *kafka.Client, group, topic string) (GroupLag, error) {
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return GroupLag{}, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	var parts []int
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			return GroupLag{}, fmt.Errorf("metadata of %s: %w", topic, t.Error)
		}
		for _, p := range t.Partitions {
			parts = append(parts, p.ID)
		}
	}
	reqs := make([]kafka.OffsetRequest, len(parts))
	for i, p := range parts {
		reqs[i] = kafka.LastOffsetOf(p)
	}
	lo, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}, IsolationLevel: kafka.ReadCommitted})
	if err != nil {
		return GroupLag{}, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	o := GroupLag{Committed: map[int]int64{}, End: map[int]int64{}}
	for _, p := range lo.Topics[topic] {
		if p.Error != nil {
			return GroupLag{}, fmt.Errorf("end offset of %s/%d: %w", topic, p.Partition, p.Error)
		}
		o.End[p.Partition] = p.LastOffset
	}
	of, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
	if err != nil {
		return GroupLag{}, fmt.Errorf("committed offsets of %s: %w", group, err)
	}
	for _, p := range parts {
		o.Committed[p] = -1
	}
	if errors.Is(of.Error, kafka.GroupIdNotFound) {
		return o, nil // nothing committed yet
	}
	if of.Error != nil {
		return GroupLag{}, fmt.Errorf("committed offsets of %s: %w", group, of.Error)
	}
	for _, p := range of.Topics[topic] {
		if p.Error == nil {
			o.Committed[p.Partition] = p.CommittedOffset
		}
	}
	return o, nil
}

// GroupLags is a group's lag on several topics, by topic.
type GroupLags map[string]GroupLag

// Lag returns the records not yet committed by the group on tp.
func (l GroupLags) Lag(tp TopicPartition) int64 { return l[tp.Topic].Lag(tp.Partition) }

// Committed returns the group's committed offset of tp, -1 for none.
func (l GroupLags) Committed(tp TopicPartition) int64 {
	if c, ok := l[tp.Topic].Committed[tp.Partition]; ok {
		return c
	}
	return -1
}

// TotalLag sums Lag over every partition of every topic.
func (l GroupLags) TotalLag() int64 {
	var n int64
	for _, o := range l {
		n += o.TotalLag()
	}
	return n
}

// Partitions returns every partition of every topic, ordered by topic and
// partition.
func (l GroupLags) Partitions() []TopicPartition {
	var out []TopicPartition
	for topic, o := range l {
		for p := range o.End {
			out = append(out, TopicPartition{topic, p})
		}
	}
	slices.SortFunc(out, compareTP)
	return out
}

// ReadGroupLags reads the group's lag on each of topics (ReadGroupLag).
func ReadGroupLags(ctx context.Context, c *kafka.Client, group string, topics []string) (GroupLags, error) {
	l := make(GroupLags, len(topics))
	for _, topic := range topics {
		o, err := ReadGroupLag(ctx, c, group, topic)
		if err != nil {
			return nil, err
		}
		l[topic] = o
	}
	return l, nil
}

package bridge

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/consumer"
)

// share is a member's part of the group's work: the partitions it holds ÷
// the partitions of the input topics (all of them), in [0, 1]. A member holding nothing
// has 0; an unknown total (0) counts what it holds as all there is.
func share(held, total int) float64 {
	switch {
	case held <= 0:
		return 0
	case total < held:
		return 1
	}
	return float64(held) / float64(total)
}

// assigned runs at every rebalance, before the generation's partitions
// are fetched: the rate limit (--cxone-rate-limit is the group's) becomes this
// member's share of it. The topics' partition count (summed over the
// input topics) is read from the brokers; when they cannot tell, the last
// count known is used (none: the member takes the whole limit until
// watchLag knows better).
func (w *Worker) assigned(ctx context.Context, partitions []consumer.TopicPartition) {
	w.metrics.Rebalances.Inc()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	n, err := partitionCount(rctx, w.kafkaClient, w.s.Kafka.InputTopics())
	cancel()
	w.mu.Lock()
	if err == nil {
		w.partitions = n
	} else {
		n = w.partitions
	}
	gone := slices.DeleteFunc(w.held, func(p consumer.TopicPartition) bool { return slices.Contains(partitions, p) })
	w.held = slices.Clone(partitions)
	w.mu.Unlock()
	// Series of partitions this member no longer holds go: their owner
	// reports them now (sums over the group stay right).
	for _, tp := range gone {
		w.metrics.ForgetPartitions(tp.Topic, []int{tp.Partition})
	}
	select { // the lag of the partitions held now, at once rather than at the next read
	case w.lagNow <- struct{}{}:
	default:
	}
	if err != nil {
		w.log.Warn("reading the input topic's partition count failed; the rate limit's share uses the last count known", "error", err.Error(), "partitions", n)
	}
	s := share(len(partitions), n)
	w.pub.SetShare(s)
	w.log.Info("rate limit share", "partitions_held", len(partitions), "partitions", n, "share", s, "rate_limit_per_second", w.pub.RateLimit())
}

// partitionCount reads how many partitions the topics have, together.
func partitionCount(ctx context.Context, c *kafka.Client, topics []string) (int, error) {
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return 0, fmt.Errorf("metadata of %s: %w", strings.Join(topics, ","), err)
	}
	n := 0
	for _, topic := range topics {
		i := slices.IndexFunc(md.Topics, func(t kafka.Topic) bool { return t.Name == topic })
		if i < 0 {
			return 0, fmt.Errorf("metadata of %s: topic not found", topic)
		}
		if t := md.Topics[i]; t.Error != nil {
			return 0, fmt.Errorf("metadata of %s: %w", topic, t.Error)
		}
		n += len(md.Topics[i].Partitions)
	}
	return n, nil
}

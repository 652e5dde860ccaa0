package consumer

import (
	"context"
	"errors"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/retry"
)

// errTopicMissing: the broker answered that the input topic does not exist.
var errTopicMissing = errors.New("input topic does not exist")

// awaitTopic returns once the broker knows the input topic, or cannot be
// asked (joining the group then reports the broker's state), or ctx ends.
//
// A group member whose topic does not exist gets no partitions, and
// kafka-go ends each such generation as soon as it starts (its partition
// watcher cannot read the topic), so without this wait the member would
// join generation after generation as fast as the coordinator answers —
// thousands a second — and never say why. Instead it waits, says so once in
// the log and on /readyz, and joins when the topic appears. The check asks
// for the topic's metadata without asking the broker to create it.
func (c *Consumer) awaitTopic(ctx context.Context) error {
	missing := false
	err := retry.Do(ctx, retry.Policy{Base: time.Second, Max: 10 * time.Second}, func(int) error {
		err := c.topicExists(ctx)
		switch {
		case errors.Is(err, errTopicMissing):
			if !missing {
				missing = true
				c.topicMissing.Store(true)
				c.log.Warn("the input topic does not exist; waiting for it before joining the group (create it, or check --kafka-input-topic)",
					"topic", c.cfg.Topic, "group", c.cfg.GroupID)
			}
			return err
		case err != nil:
			c.log.Debug("reading the input topic's metadata failed; joining the group anyway", "topic", c.cfg.Topic, "error", err.Error())
		}
		return nil
	})
	if missing && err == nil {
		c.log.Info("the input topic exists now; joining the group", "topic", c.cfg.Topic)
	}
	c.topicMissing.Store(false)
	return err
}

// topicExists asks the brokers for the input topic's metadata: nil when it
// has partitions, errTopicMissing when the broker says it does not exist
// (or has none), another error when the brokers cannot be asked.
func (c *Consumer) topicExists(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CoordinatorTimeout)
	defer cancel()
	res, err := c.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{c.cfg.Topic}})
	if err != nil {
		return err
	}
	for _, t := range res.Topics {
		if t.Name != c.cfg.Topic {
			continue
		}
		switch {
		case errors.Is(t.Error, kafka.UnknownTopicOrPartition):
			return errTopicMissing
		case t.Error != nil:
			return t.Error
		case len(t.Partitions) == 0:
			return errTopicMissing
		}
		return nil
	}
	return errTopicMissing
}

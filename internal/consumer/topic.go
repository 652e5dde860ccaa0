package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/retry"
)

// errTopicMissing: the broker answered that an input topic does not exist.
var errTopicMissing = errors.New("input topic does not exist")

// awaitTopics returns once the broker knows every input topic, or cannot
// be asked (joining the group then reports the broker's state), or ctx
// ends.
//
// A group member whose topic does not exist gets no partitions of it, and
// kafka-go ends each such generation as soon as it starts (its partition
// watcher cannot read the topic), so without this wait the member would
// join generation after generation as fast as the coordinator answers —
// thousands a second — and never say why. Instead it waits, says so once in
// the log and on /readyz, and joins when the topics exist. The check asks
// for the topics' metadata without asking the broker to create them.
func (c *Consumer) awaitTopics(ctx context.Context) error {
	var missing []string
	err := retry.Do(ctx, retry.Policy{Base: time.Second, Max: 10 * time.Second}, func(int) error {
		absent, err := c.absentTopics(ctx)
		switch {
		case err != nil:
			c.log.Debug("reading the input topics' metadata failed; joining the group anyway", "topics", c.cfg.Topics, "error", err.Error())
			return nil
		case len(absent) == 0:
			return nil
		}
		if !slices.Equal(absent, missing) {
			missing = absent
			published := slices.Clone(absent)
			c.missing.Store(&published)
			c.log.Warn("the input topic does not exist; waiting for it before joining the group (create it, or check --kafka-input-topic)",
				"topics", absent, "group", c.cfg.GroupID)
		}
		return fmt.Errorf("%w: %v", errTopicMissing, absent)
	})
	if missing != nil && err == nil {
		c.log.Info("the input topics exist now; joining the group", "topics", c.cfg.Topics)
	}
	c.missing.Store(nil)
	return err
}

// absentTopics asks the brokers for the input topics' metadata and
// returns those the broker says do not exist (or have no partitions); an
// error when the brokers cannot be asked.
func (c *Consumer) absentTopics(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CoordinatorTimeout)
	defer cancel()
	res, err := c.client.Metadata(ctx, &kafka.MetadataRequest{Topics: c.cfg.Topics})
	if err != nil {
		return nil, err
	}
	var absent []string
	for _, name := range c.cfg.Topics {
		i := slices.IndexFunc(res.Topics, func(t kafka.Topic) bool { return t.Name == name })
		switch {
		case i < 0, errors.Is(res.Topics[i].Error, kafka.UnknownTopicOrPartition), res.Topics[i].Error == nil && len(res.Topics[i].Partitions) == 0:
			absent = append(absent, name)
		case res.Topics[i].Error != nil:
			return nil, res.Topics[i].Error
		}
	}
	return absent, nil
}

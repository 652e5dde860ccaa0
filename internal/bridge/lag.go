package bridge

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/consumer"
)

// lagEvery is how often the group's lag is read from the brokers.
const lagEvery = 5 * time.Second

// watchLag sets cxbridge_consumer_lag for the partitions this member holds,
// from the group's committed offsets and the topic's end offsets (not
// Reader.Stats().Lag, which is wrong with several partitions). Each
// partition is reported by its owner only, so sums over replicas are right.
func (w *Worker) watchLag(ctx context.Context, lag *prometheus.GaugeVec, client *kafka.Client) {
	t := time.NewTicker(lagEvery)
	defer t.Stop()
	topic := w.s.Kafka.InputTopic
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, lagEvery)
		o, err := consumer.ReadOffsets(rctx, client, w.s.Kafka.GroupID, topic)
		cancel()
		if err != nil {
			w.log.Debug("reading the group's lag failed", "error", err.Error())
			continue
		}
		w.mu.Lock()
		w.offsets = o
		w.mu.Unlock()
		lag.Reset()
		for _, p := range w.consumer.Status().Partitions {
			lag.WithLabelValues(topic, strconv.Itoa(p.Partition)).Set(float64(o.Lag(p.Partition)))
		}
	}
}

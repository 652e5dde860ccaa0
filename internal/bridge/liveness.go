package bridge

import (
	"fmt"
	"strings"
	"time"

	"github.com/cxbridge/cxbridge/internal/consumer"
)

// Liveness (/healthz) fails when the member's consumer loop is wedged: it
// holds a partition that has records to fetch (the topic's end is past
// where the member is), has none of them in flight, and its fetch loop has
// made no step — no fetch answered or failed — for twice the longest a
// healthy loop goes between steps (consumer.StepBound: at the shipped
// settings 15.5 s, so the bound is 31 s). Only a restart mends that.
//
// What must not restart a pod is left out on purpose:
//   - a broker outage: fetches fail within their time limit, and each
//     failure is a step; the member loses its generation after the session
//     timeout and then holds nothing;
//   - a CXone outage or a DLQ that refuses records: the partition's records
//     are in flight (fetched, not settled), and its fetch loop waits for
//     room by design;
//   - an idle topic: nothing to fetch.
//
// wedged is the verdict, a pure function of the consumer's status and the
// group's offsets as last read (End unknown: not wedged).
func wedged(st consumer.Status, offsets consumer.GroupLags, bound time.Duration) []consumer.TopicPartition {
	if !st.Joined {
		return nil
	}
	var out []consumer.TopicPartition
	for _, p := range st.Partitions {
		end, ok := offsets[p.Topic].End[p.Partition]
		if !ok || p.Pending > 0 || p.SinceStep <= bound {
			continue
		}
		at := p.Committed
		if c, ok := offsets[p.Topic].Committed[p.Partition]; ok {
			at = max(at, c)
		}
		if end > at {
			out = append(out, consumer.TopicPartition{Topic: p.Topic, Partition: p.Partition})
		}
	}
	return out // Status is sorted by topic, then partition
}

// livenessBound is how long a partition's fetch loop may go without a step
// before the member counts as wedged.
func (w *Worker) livenessBound() time.Duration { return 2 * w.consumer.StepBound() }

// checkLive is /healthz's consumer check.
func (w *Worker) checkLive() (bool, string) {
	st := w.consumer.Status()
	bound := w.livenessBound()
	w.mu.Lock()
	parts := wedged(st, w.offsets, bound)
	was := w.wedged
	w.wedged = len(parts) > 0
	w.mu.Unlock()
	if len(parts) == 0 {
		if was {
			w.log.Info("the consumer loop makes steps again; /healthz is ok")
		}
		return true, "ok"
	}
	ids := make([]string, len(parts))
	for i, p := range parts {
		ids[i] = p.String()
	}
	detail := fmt.Sprintf("consumer wedged: partition(s) %s have records to fetch, none in flight, and their fetch loop made no step for over %s",
		strings.Join(ids, ", "), bound)
	if !was {
		w.log.Error(detail + "; /healthz fails so that the container is restarted")
	}
	return false, detail
}

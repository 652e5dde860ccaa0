package bridge

import (
	"context"
	"time"

	"github.com/cxbridge/cxbridge/internal/consumer"
)

// balanceEvery is how far apart the two reads of the group's offsets are
// that balance compares: the committed offset of a partition moves in
// jumps (a slow record holds it back, then it catches up), so a shorter
// window says more about those jumps than about who got what.
const balanceEvery = 3 * lagEvery

// balance hands the publisher its share of what the group settled since
// the read balanceEvery ago and its part of the group's backlog (see
// balanceInputs), so that a rate limit found from 429s moves towards this
// member's fair part of the group's (see delivery.Publisher.Balance). It
// runs once per window, and only when this member held the same
// partitions in the same generation throughout.
func (w *Worker) balance(base offsetsRead, cur consumer.GroupLags, st consumer.Status) (used bool) {
	if !st.Joined || st.Generation != base.generation {
		return false
	}
	var held []consumer.TopicPartition
	for _, p := range st.Partitions {
		held = append(held, consumer.TopicPartition{Topic: p.Topic, Partition: p.Partition})
	}
	part, got, ok := balanceInputs(base.offsets, cur, held)
	if ok {
		w.pub.Balance(part, got)
	}
	return true
}

// offsetsRead is one read of the group's offsets.
type offsetsRead struct {
	at         time.Time
	generation int32 // this member's, when read (-1: not a member)
	offsets    consumer.GroupLags
}

// balanceInputs compares two reads of the group's offsets: got is the part
// of what the group settled in between (its commits; a partition's first
// commit, or one moved back, counts nothing) that was settled on the
// partitions held (of every input topic), part the share of the group's
// backlog on them now.
// Without a backlog of at least balanceEvery's worth at the rate the
// group settled there is nothing to share out: ok is false.
func balanceInputs(prev, cur consumer.GroupLags, held []consumer.TopicPartition) (part, got float64, ok bool) {
	if prev == nil {
		return 0, 0, false
	}
	settled := map[consumer.TopicPartition]int64{}
	var group int64
	for topic, o := range cur {
		for p, c := range o.Committed {
			if pc, ok := prev[topic].Committed[p]; ok && pc >= 0 && c >= pc {
				settled[consumer.TopicPartition{Topic: topic, Partition: p}] = c - pc
				group += c - pc
			}
		}
	}
	total := cur.TotalLag()
	if group <= 0 || total < group {
		return 0, 0, false
	}
	var own, ownSettled int64
	for _, p := range held {
		own += cur.Lag(p)
		ownSettled += settled[p]
	}
	return float64(own) / float64(total), float64(ownSettled) / float64(group), true
}

// lagEvery is how often the group's lag is read from the brokers.
const lagEvery = 5 * time.Second

// watchLag sets cxbridge_consumer_lag for the partitions this member holds,
// from the group's committed offsets and the topics' end offsets (not
// Reader.Stats().Lag, which is wrong with several partitions). Each
// partition is reported by its owner only, so sums over replicas are right.
func (w *Worker) watchLag(ctx context.Context) {
	t := time.NewTicker(lagEvery)
	defer t.Stop()
	topics := w.s.Kafka.InputTopics()
	var reads []offsetsRead // since the last balance
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-w.lagNow:
		}
		rctx, cancel := context.WithTimeout(ctx, lagEvery)
		o, err := consumer.ReadGroupLags(rctx, w.kafkaClient, w.s.Kafka.GroupID, topics)
		cancel()
		if err != nil {
			w.log.Debug("reading the group's lag failed", "error", err.Error())
			continue
		}
		now := time.Now()
		st := w.consumer.Status() // with this read of the offsets
		gen := int32(-1)
		if st.Joined {
			gen = st.Generation
		}
		w.mu.Lock()
		w.offsets = o
		n := len(o.Partitions())
		recount := n > 0 && n != w.partitions
		if recount {
			w.partitions = n
		}
		held := len(w.held)
		w.mu.Unlock()
		if recount { // partitions added to the topic, or unknown at the rebalance
			w.pub.SetShare(share(held, n))
		}
		if len(reads) > 0 && now.Sub(reads[0].at) >= balanceEvery-lagEvery/2 {
			if w.balance(reads[0], o, st) {
				reads = reads[:0]
			} else {
				reads = reads[1:]
			}
		}
		reads = append(reads, offsetsRead{at: now, generation: gen, offsets: o})
		w.watchGroup(now, o, st)
		lag := map[string]map[int]int64{}
		for _, p := range st.Partitions {
			if lag[p.Topic] == nil {
				lag[p.Topic] = map[int]int64{}
			}
			lag[p.Topic][p.Partition] = o.Lag(consumer.TopicPartition{Topic: p.Topic, Partition: p.Partition})
		}
		w.metrics.ObserveLag(lag)
	}
}

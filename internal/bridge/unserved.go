package bridge

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cxbridge/cxbridge/internal/consumer"
)

// A consumer group can leave partitions to nobody alive: the coordinator
// keeps a dead member that it never expires (the embedded broker does so
// with a member killed while its join was pending, see docs/RELIABILITY.md),
// or a member holds partitions it does not fetch. Nothing in the protocol
// tells the living members: they drain their own partitions and sit idle
// while records pile up on the others. The worker watches for it from the
// group's committed offsets and the topics' end offsets, which it reads
// every lagEvery anyway, and when it sees it leaves the group and joins it
// again: a rebalance drops every member that does not join it.
//
// The rule, applied at every read (groupWatch.observe):
//
//   - A partition is still when it has uncommitted records (end offset >
//     committed offset) and its committed offset has not moved since the
//     last time it had none or moved; it is stalled when it has been still
//     for unservedBound, counted from this member's last assignment at the
//     latest (a rebalance hands partitions to new owners, who need the
//     bound again).
//   - A stalled partition is unserved when this member does not hold it,
//     or holds it without holding any of its records (it does not fetch it).
//   - A stalled partition this member holds with records in hand vetoes any
//     action: CXone (an outage, a 429 storm, slow publishes) or the DLQ is
//     holding its records back, and then it holds back everyone's — every
//     partition stalls — and a rejoin cannot help.
//   - The member acts only when it sees the group serving: one of its own
//     partitions has nothing uncommitted or moved within the bound, or some
//     partition's committed offset moved within the bound. A member with no
//     partition that sees nothing move does nothing (it cannot tell a CXone
//     outage from partitions left to the dead).
//   - It then logs the unserved partitions (once), shows them on /readyz
//     and the status page, sets cxbridge_group_unserved_partitions, and
//     leaves and rejoins the group — again only after a backoff, doubling
//     from unservedBound up to 16 times it while the partitions stay
//     unserved, so that it cannot churn the group.

// unservedBound is how long a partition with uncommitted records may go
// without its committed offset moving, from this member's last assignment
// on, before it counts as unserved: a dead owner is dropped by the
// coordinator after the session timeout and a rebalance that waits up to
// the rebalance timeout; the revoked partitions drain within the drain
// timeout; the new owner commits within the commit interval; this member
// reads the offsets every lagEvery; and the first record a new owner
// fetches may legitimately take every attempt CXone is allowed
// ((max-retries + 1) × cxone-timeout and the waits in between) before the
// committed offset can pass it. 88 s at the shipped settings.
func unservedBound(s Settings) time.Duration {
	hold := time.Duration(s.CXone.MaxRetries+1) * s.CXone.Timeout
	for i := range s.CXone.MaxRetries {
		hold += min(s.CXone.RetryBackoff<<i, s.CXone.MaxBackoff)
	}
	return s.Kafka.SessionTimeout + s.Kafka.RebalanceTimeout + s.Worker.DrainTimeout + s.Worker.CommitInterval + lagEvery + hold
}

// maxRejoinBackoff caps the backoff between rejoins, in bounds.
const maxRejoinBackoff = 16

// unservedPartition is one partition the group leaves unserved.
type unservedPartition struct {
	Topic     string        `json:"topic"`
	Partition int           `json:"partition"`
	Name      string        `json:"-"` // in logs and /readyz: the partition, topic/partition with several topics
	Lag       int64         `json:"lag"`
	For       time.Duration `json:"-"`
	ForS      float64       `json:"for_seconds"`
	Held      bool          `json:"held_by_this_member"` // held, but none of its records fetched
}

// groupVerdict is what one read of the offsets says.
type groupVerdict struct {
	Unserved []unservedPartition
	// Held is why the member does not act although partitions are
	// unserved ("" when it acts or there is nothing to act on).
	Held string
	// Rejoin: leave and rejoin the group now.
	Rejoin bool
}

// note says what the member does about the unserved partitions: "" when
// there are none.
func (v groupVerdict) note() string {
	switch {
	case len(v.Unserved) == 0:
		return ""
	case v.Held != "":
		return "not rejoining: " + v.Held
	}
	return "rejoining the group"
}

// groupWatch applies the rule above to successive reads of the offsets.
type groupWatch struct {
	bound time.Duration

	gen        int32     // this member's generation at the last read
	assignedAt time.Time // when this member got that generation (seen)
	last       map[consumer.TopicPartition]int64
	still      map[consumer.TopicPartition]time.Time // since when the partition is still
	movedAt    map[consumer.TopicPartition]time.Time // when its committed offset last moved

	topics     int       // input topics at the last read
	rejoins    int       // rejoins in the current episode
	nextRejoin time.Time // not before
}

func newGroupWatch(bound time.Duration) *groupWatch {
	return &groupWatch{bound: bound, gen: -1, last: map[consumer.TopicPartition]int64{},
		still: map[consumer.TopicPartition]time.Time{}, movedAt: map[consumer.TopicPartition]time.Time{}}
}

// watchGroup is run with every read of the offsets: it applies the rule,
// publishes what it says (metric, /readyz, status page, logs) and rejoins.
func (w *Worker) watchGroup(now time.Time, o consumer.GroupLags, st consumer.Status) {
	v := w.groupWatch.observe(now, o, st)
	w.mu.Lock()
	if !st.Joined && w.groupWatch.rejoins > 0 && len(w.verdict.Unserved) > 0 {
		// Rejoining: what made it rejoin stays on show until it is a
		// member again and reads the offsets anew.
		v = w.verdict
		v.Rejoin = false
	}
	w.metrics.UnservedPartitions.Set(float64(len(v.Unserved)))
	w.verdict = v
	logged := w.unservedLogged
	w.unservedLogged = len(v.Unserved) > 0
	w.mu.Unlock()
	switch {
	case len(v.Unserved) == 0 && logged:
		w.log.Info("the group serves every partition of the input topic again")
	case len(v.Unserved) > 0 && !logged:
		w.log.Warn("the group leaves partitions of the input topic with uncommitted records unserved",
			"partitions", describeUnserved(v.Unserved), "bound", w.groupWatch.bound.String(), "not_acting_because", v.Held)
	}
	if v.Rejoin {
		if w.consumer.Rejoin() {
			w.metrics.GroupRejoins.Inc()
			w.log.Warn("leaving the consumer group and joining it again, so that it rebalances and drops the members that do not rejoin",
				"partitions", describeUnserved(v.Unserved), "rejoins", w.groupWatch.rejoins, "next_not_before", w.groupWatch.nextRejoin.UTC().Format(time.RFC3339))
		}
	}
}

// observe takes one read of the offsets at now with the member's status
// then, and says what the member should do.
func (g *groupWatch) observe(now time.Time, o consumer.GroupLags, st consumer.Status) groupVerdict {
	all := o.Partitions()
	g.topics = len(o)
	for _, p := range all {
		c, lag := o.Committed(p), o.Lag(p)
		prev, seen := g.last[p]
		g.last[p] = c
		moved := seen && c != prev
		if moved {
			g.movedAt[p] = now
		}
		switch {
		case lag == 0:
			delete(g.still, p)
		case moved || g.still[p].IsZero():
			g.still[p] = now
		}
	}
	if !st.Joined {
		return groupVerdict{} // joining: kafka-go is at it
	}
	if st.Generation != g.gen {
		g.gen, g.assignedAt = st.Generation, now
	}
	held := map[consumer.TopicPartition]consumer.PartitionStatus{}
	for _, p := range st.Partitions {
		held[consumer.TopicPartition{Topic: p.Topic, Partition: p.Partition}] = p
	}
	var v groupVerdict
	var busy []string
	episode, serving := false, false
	for _, p := range all {
		lag := o.Lag(p)
		hp, mine := held[p]
		if now.Sub(g.movedAt[p]) < g.bound || mine && lag == 0 {
			serving = true
		}
		still, ok := g.still[p]
		if !ok || now.Sub(still) < g.bound {
			continue
		}
		episode = true // still for the bound, though maybe not since this member's assignment
		if now.Sub(g.assignedAt) < g.bound {
			continue
		}
		if mine && hp.Tracked > 0 {
			busy = append(busy, g.name(p))
			continue
		}
		d := now.Sub(still)
		v.Unserved = append(v.Unserved, unservedPartition{Topic: p.Topic, Partition: p.Partition, Name: g.name(p), Lag: lag, For: d, ForS: d.Round(time.Second).Seconds(), Held: mine})
	}
	switch {
	case !episode:
		g.rejoins, g.nextRejoin = 0, time.Time{}
		return v
	case len(v.Unserved) == 0:
		return v
	case len(busy) > 0:
		return groupVerdict{Held: fmt.Sprintf("this member's own partitions %v are stalled with records in hand (CXone or the DLQ holds them back): a rejoin would not help", busy)}
	case !serving:
		return groupVerdict{Held: "no partition's committed offset moved within the bound: the group may be held back as a whole (a CXone outage), not by a dead member"}
	case now.Before(g.nextRejoin):
		v.Held = fmt.Sprintf("rejoined %d time(s) already; next rejoin not before %s", g.rejoins, g.nextRejoin.UTC().Format(time.RFC3339))
		return v
	}
	v.Rejoin = true
	g.rejoins++
	backoff := g.bound
	for i := 1; i < g.rejoins && backoff < maxRejoinBackoff*g.bound; i++ {
		backoff *= 2
	}
	g.nextRejoin = now.Add(backoff)
	return v
}

// name is how logs and /readyz name a partition: its number while the
// group reads one topic, topic/partition with several.
func (g *groupWatch) name(p consumer.TopicPartition) string {
	if g.topics > 1 {
		return p.String()
	}
	return strconv.Itoa(p.Partition)
}

// describe says which partitions are unserved, for logs and /readyz.
func describeUnserved(u []unservedPartition) string {
	parts := make([]string, len(u))
	for i, p := range u {
		name := p.Name
		if name == "" {
			name = strconv.Itoa(p.Partition)
		}
		parts[i] = fmt.Sprintf("%s (%d uncommitted, still for %v)", name, p.Lag, p.For.Round(time.Second))
		if p.Held {
			parts[i] += " held by this member without fetching"
		}
	}
	return strings.Join(parts, ", ")
}

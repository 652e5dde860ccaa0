package itest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/bridge"
	"github.com/cxbridge/cxbridge/internal/consumer"
	"github.com/cxbridge/cxbridge/internal/dlq"
	cxevent "github.com/cxbridge/cxbridge/internal/event"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

// One group reading two topics (--input-topic a,b), at the shipped
// defaults but for the stack's fast group timings: both topics have a
// partition 0..2, so any mix-up of (topic, partition) shows. Every good
// record of both is accepted; the group's committed offsets reach the end
// of every partition of each topic; cxbridge_consumer_lag has a series per
// topic that goes to 0; the status page lists both topics' partitions; a
// bad record of the second topic is dead-lettered naming that topic. A
// second worker then joins: the six partitions are split between them,
// and records written to both topics afterwards are all accepted and
// committed, with nothing of either topic left unserved.
func TestTwoTopics(t *testing.T) {
	const partitions = 3
	s := newStack(t, partitions, sim.Config{})
	second := s.broker.CreateTopic("tickets", partitions, nil)
	topics := []string{s.input, second}
	both := func(st *bridge.Settings) { st.Kafka.InputTopic = s.input + "," + second }

	a := s.startWorker(both)
	first := goodRecords(300, 30, 101)
	other := goodRecords(200, 20, 202)
	bad := kafka.Message{Key: []byte("bad-json"), Value: []byte("{not json")}
	s.write(first)
	writeTopic(t, s, second, append(slices.Clone(other[:100]), append([]kafka.Message{bad}, other[100:]...)...))
	s.waitAccepted(int64(len(first)+len(other)), time.Minute)
	o := waitCommittedTopics(t, s, topics, time.Minute)
	for _, topic := range topics {
		if n := len(o[topic].End); n != partitions {
			t.Errorf("%s: offsets of %d partitions; want %d", topic, n, partitions)
		}
	}
	if got, want := sumEnd(o[s.input]), int64(len(first)); got != want {
		t.Errorf("%s: end offsets sum to %d; want %d records", s.input, got, want)
	}
	if got, want := sumEnd(o[second]), int64(len(other)+1); got != want {
		t.Errorf("%s: end offsets sum to %d; want %d records", second, got, want)
	}

	// The worker's own read of the offsets (every 5 s) catches up: the
	// status page shows each partition of each topic committed to its
	// end, and the lag series — one per partition of each topic — are 0.
	atEnd := func() bool {
		n := 0
		for _, p := range a.w.Status().Partitions {
			if p.Committed != o[p.Topic].End[p.Partition] || p.Lag != 0 {
				return false
			}
			n++
		}
		return n == 2*partitions
	}
	testutil.WaitFor(t, 30*time.Second, "the status page showing both topics' 6 partitions committed to their end", atEnd, func() string {
		return fmt.Sprintf("status page %+v; end offsets %+v", a.w.Status().Partitions, o)
	})
	total, byTopic := a.metric("cxbridge_consumer_lag", "topic")
	if total != 0 || len(byTopic) != 2 || lagSeries(a) != 2*partitions {
		t.Errorf("cxbridge_consumer_lag %v by topic %v in %d series; want 0 for each topic, 6 series", total, byTopic, lagSeries(a))
	}
	_, committed := a.metric("cxbridge_committed_offset", "topic")
	for _, topic := range topics {
		if committed[topic] != float64(sumEnd(o[topic])) {
			t.Errorf("cxbridge_committed_offset of %s sums to %v; want %d (its end offsets)", topic, committed[topic], sumEnd(o[topic]))
		}
	}

	// The bad record: dead-lettered once, from the second topic.
	recs := s.dlqRecords()
	if len(recs) != 1 {
		t.Fatalf("%d DLQ records; want 1", len(recs))
	}
	e, ok, err := dlq.Parse(recs[0].Headers)
	if !ok || err != nil || e.Topic != second || e.Reason != cxevent.ReasonInvalidJSON || string(recs[0].Key) != "bad-json" {
		t.Errorf("DLQ record %q: %+v (ok %v, err %v); want from %s, reason invalid_json", recs[0].Key, e, ok, err, second)
	}
	if n, _ := a.metric("cxbridge_records_settled_total", ""); n != float64(len(first)+len(other)+1) {
		t.Errorf("%v records settled; want %d", n, len(first)+len(other)+1)
	}

	// A second member: the six partitions are split, and both topics
	// stay served.
	b := s.startWorker(both)
	testutil.WaitFor(t, 30*time.Second, "both workers holding partitions of one generation, all 6 between them", func() bool {
		sa, sb := a.w.Consumer().Status(), b.w.Consumer().Status()
		return sa.Joined && sb.Joined && sa.Generation == sb.Generation && len(sa.Partitions) > 0 && len(sb.Partitions) > 0 &&
			len(sa.Partitions)+len(sb.Partitions) == 2*partitions
	})
	held := map[string]int{}
	for _, r := range []*running{a, b} {
		for _, p := range r.w.Consumer().Status().Partitions {
			held[fmt.Sprintf("%s/%d", p.Topic, p.Partition)]++
		}
	}
	if len(held) != 2*partitions || slices.Max(slices.Collect(maps.Values(held))) != 1 {
		t.Errorf("partitions held %v; want each of the 6 held once", held)
	}
	more, moreOther := goodRecords(150, 15, 303), goodRecords(150, 15, 404)
	s.write(more)
	writeTopic(t, s, second, moreOther)
	s.waitAccepted(int64(len(first)+len(other)+len(more)+len(moreOther)), time.Minute)
	o = waitCommittedTopics(t, s, topics, time.Minute)
	if got, want := sumEnd(o[s.input])+sumEnd(o[second]), int64(len(first)+len(other)+1+len(more)+len(moreOther)); got != want {
		t.Errorf("end offsets sum to %d after the rebalance; want %d", got, want)
	}
	ca, _ := a.metric("cxbridge_records_consumed_total", "")
	cb, _ := b.metric("cxbridge_records_consumed_total", "")
	if cb == 0 {
		t.Errorf("the second worker consumed nothing (a %v)", ca)
	}
	for _, r := range []*running{a, b} {
		if n, _ := r.metric("cxbridge_group_unserved_partitions", ""); n != 0 {
			t.Errorf("a worker reports %v unserved partitions", n)
		}
	}
	if st := s.sim.Stats(); st.Distinct != int64(len(first)+len(other)+len(more)+len(moreOther)) {
		t.Errorf("simulator %+v; want every good record of both topics once", st)
	}
	b.stop(t)
	a.stop(t)
}

// writeTopic produces msgs to topic, hashed by key.
func writeTopic(t *testing.T, s *stack, topic string, msgs []kafka.Message) {
	t.Helper()
	w := s.broker.Writer(topic)
	defer w.Close()
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatalf("produce to %s: %v", topic, err)
	}
}

// waitCommittedTopics waits until the group has committed every end
// offset of every topic.
func waitCommittedTopics(t *testing.T, s *stack, topics []string, timeout time.Duration) consumer.GroupLags {
	t.Helper()
	var o consumer.GroupLags
	var err error
	testutil.WaitFor(t, timeout, "every offset of every topic committed", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		o, err = consumer.ReadGroupLags(ctx, s.client, s.group, topics)
		return err == nil && len(o) == len(topics) && o.TotalLag() == 0 && len(o.Partitions()) > 0
	}, func() string {
		return fmt.Sprintf("offsets %+v (error %v); simulator %+v", o, err, s.sim.Stats())
	})
	return o
}

func sumEnd(o consumer.GroupLag) int64 {
	var n int64
	for _, e := range o.End {
		n += e
	}
	return n
}

// lagSeries counts r's cxbridge_consumer_lag series.
func lagSeries(r *running) int {
	fams, _ := r.w.Registry().Gather()
	for _, f := range fams {
		if f.GetName() == "cxbridge_consumer_lag" {
			return len(f.GetMetric())
		}
	}
	return 0
}

// With --start-offset latest, a new group starts each partition of each
// topic at that topic's own end when it joins, committed at once: the
// records written to either topic before are skipped, those after are all
// accepted. The topics hold different counts, so a partition started at
// the other topic's offsets would show.
func TestTwoTopicsStartLatest(t *testing.T) {
	const partitions = 3
	s := newStack(t, partitions, sim.Config{})
	second := s.broker.CreateTopic("tickets", partitions, nil)
	topics := []string{s.input, second}
	s.write(goodRecords(300, 30, 501))
	writeTopic(t, s, second, goodRecords(45, 9, 502))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	before, err := consumer.ReadGroupLags(ctx, s.client, s.group, topics)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if sumEnd(before[s.input]) != 300 || sumEnd(before[second]) != 45 {
		t.Fatalf("end offsets before the start %+v; want 300 and 45 records", before)
	}
	r := s.startWorker(func(st *bridge.Settings) {
		st.Kafka.InputTopic = s.input + "," + second
		st.Kafka.StartOffset = "latest"
	})
	// Each partition's resolved start is committed at once: the group's
	// committed offsets become each topic's end offsets of before.
	var o consumer.GroupLags
	testutil.WaitFor(t, 30*time.Second, "the group committed at each topic's end", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		o, err = consumer.ReadGroupLags(ctx, s.client, s.group, topics)
		if err != nil {
			return false
		}
		for _, tp := range before.Partitions() {
			if o.Committed(tp) != before[tp.Topic].End[tp.Partition] {
				return false
			}
		}
		return true
	}, func() string { return fmt.Sprintf("committed %+v; ends before %+v (error %v)", o, before, err) })
	s.write(goodRecords(60, 12, 503))
	writeTopic(t, s, second, goodRecords(30, 6, 504))
	s.waitAccepted(90, time.Minute)
	o = waitCommittedTopics(t, s, topics, time.Minute)
	if sumEnd(o[s.input]) != 360 || sumEnd(o[second]) != 75 {
		t.Errorf("end offsets %+v; want 360 and 75", o)
	}
	if st := s.sim.Stats(); st.Distinct != 90 {
		t.Errorf("simulator %+v; want the 90 records written after the start only", st)
	}
	r.stop(t)
}

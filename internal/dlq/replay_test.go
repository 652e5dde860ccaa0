package dlq

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/event"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// seedDLQ writes records to the DLQ topic: reasons alternate between
// rejected (400) and retries_exhausted (503); one was replayed 3 times
// already and one lost its value.
func seedDLQ(t *testing.T, brokers []string) {
	t.Helper()
	w := newWriter(t, brokers, nil)
	var msgs []kafka.Message
	for i := range 20 {
		orig := kafka.Message{Topic: "events", Partition: i % 3, Offset: int64(i), Key: []byte("k" + strconv.Itoa(i)),
			Value: []byte(`{"n":` + strconv.Itoa(i) + `}`), Headers: []kafka.Header{{Key: "app", Value: []byte("x")}}}
		e := NewEntry(orig, event.ReasonRejected)
		e.Status, e.CorrelationID, e.TraceID = 400, "corr-"+strconv.Itoa(i), "trace-"+strconv.Itoa(i)
		if i%2 == 1 {
			e.Reason, e.Status = event.ReasonRetriesExhausted, 503
		}
		if i == 4 {
			e.Replays = 3
		}
		rec := Record(orig, e)
		if i == 6 {
			rec = WithoutValue(rec)
		}
		msgs = append(msgs, rec)
	}
	if err := w.Write(testCtx(t), msgs...); err != nil {
		t.Fatal(err)
	}
}

// Replay re-produces the selected records with their ids and an incremented
// replay count, refuses what it must, and a second run replays nothing again.
func TestReplay(t *testing.T) {
	_, brokers := newCluster(t, kfake.SeedTopics(partitions, "events"))
	seedDLQ(t, brokers)
	cfg := ReplayConfig{
		Reader: ReaderConfig{Brokers: brokers, Topic: dlqTopic}, Group: "replay-test", To: "events",
		Filter: Filter{Reasons: []string{string(event.ReasonRejected)}, Partition: -1, FromOffset: -1, ToOffset: -1}, MaxReplays: 3,
	}
	dry := cfg
	dry.DryRun = true
	st, err := Replay(testCtx(t), dry)
	if err != nil {
		t.Fatal(err)
	}
	if st.Replayed != 8 || len(readTopic(t, brokers, "events")) != 0 {
		t.Fatalf("dry run: %+v", st)
	}
	st, err = Replay(testCtx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// 10 rejected: #4 replayed too often, #6 without value → 8 replayed; 10 others skipped.
	if st.Scanned != 20 || st.Replayed != 8 || st.Skipped != 10 || st.Refused["replayed too often"] != 1 || st.Refused["value omitted"] != 1 {
		t.Fatalf("stats %+v", st)
	}
	out := readTopic(t, brokers, "events")
	if len(out) != 8 {
		t.Fatalf("%d records replayed, want 8", len(out))
	}
	for _, m := range out {
		n := string(m.Key)[1:]
		if string(m.Value) != `{"n":`+n+`}` {
			t.Fatalf("value changed: %s", m.Value)
		}
		if v, _ := header(m.Headers, HeaderCorrelationID); v != "corr-"+n {
			t.Fatalf("correlation id %q for %s", v, m.Key)
		}
		if v, _ := header(m.Headers, HeaderReplays); v != "1" {
			t.Fatalf("replays %q", v)
		}
		if v, _ := header(m.Headers, "app"); v != "x" {
			t.Fatal("original header lost")
		}
		if _, c := header(m.Headers, HeaderReason); c != 0 {
			t.Fatal("DLQ headers other than the ids were copied")
		}
	}
	st, err = Replay(testCtx(t), cfg)
	if err != nil || st.Scanned != 0 || st.Replayed != 0 {
		t.Fatalf("second run: %+v %v", st, err)
	}
	if n := len(readTopic(t, brokers, "events")); n != 8 {
		t.Fatalf("second run replayed again: %d records", n)
	}
}

// --max stops after N records and the next run goes on from there.
func TestReplayMax(t *testing.T) {
	_, brokers := newCluster(t, kfake.SeedTopics(partitions, "events"))
	seedDLQ(t, brokers)
	cfg := ReplayConfig{Reader: ReaderConfig{Brokers: brokers, Topic: dlqTopic}, Group: "g", To: "events",
		Filter: Filter{Partition: -1, FromOffset: -1, ToOffset: -1}, MaxReplays: 10, Max: 5}
	total := int64(0)
	for range 5 {
		st, err := Replay(testCtx(t), cfg)
		if err != nil {
			t.Fatal(err)
		}
		total += st.Replayed
	}
	if total != 19 || len(readTopic(t, brokers, "events")) != 19 {
		t.Fatalf("replayed %d over the runs, want 19 (all but the one without value)", total)
	}
}

// A Summary counts by reason, status and hour.
func TestInspect(t *testing.T) {
	_, brokers := newCluster(t)
	seedDLQ(t, brokers)
	shown := 0
	s := NewSummary(dlqTopic)
	err := List(testCtx(t), ListConfig{Reader: ReaderConfig{Brokers: brokers, Topic: dlqTopic}, Filter: AllRecords()}, func(m kafka.Message, e Entry, ok bool) error {
		shown++
		s.Add(m, e, ok)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.Records != 20 || shown != 20 || s.ByReason[string(event.ReasonRejected)] != 10 || s.ByReason[string(event.ReasonRetriesExhausted)] != 10 ||
		s.ByStatus[400] != 10 || s.ByStatus[503] != 10 || s.Replayed != 1 || s.Unreadable != 0 || len(s.ByHour) == 0 {
		t.Fatalf("summary %+v", s)
	}
}

// readFrom returns the records of topic at or after the offsets in from
// (all of a partition that from does not name).
func readFrom(t *testing.T, brokers []string, topic string, from map[int]int64) []kafka.Message {
	t.Helper()
	var out []kafka.Message
	err := Scan(testCtx(t), ReaderConfig{Brokers: brokers, Topic: topic, From: from}, func(m kafka.Message) error {
		out = append(out, m)
		return nil
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	return out
}

// keyPartitions produces a record for each key with franz-go's default
// partitioner (murmur2 for keyed records, as Java's default partitioner)
// through a fresh client, and returns the partition each key went to.
func keyPartitions(t *testing.T, brokers []string, topic string, keys []string) map[string]int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	out := map[string]int{}
	for _, k := range keys {
		rec := &kgo.Record{Key: []byte(k), Value: []byte("fresh " + k)}
		if err := cl.ProduceSync(testCtx(t), rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
		out[k] = int(rec.Partition)
	}
	return out
}

// endOffsets returns topic's end offsets.
func endOffsets(t *testing.T, brokers []string, topic string) map[int]int64 {
	t.Helper()
	end, err := EndOffsets(testCtx(t), ReaderConfig{Brokers: brokers, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	return end
}

// A replayed record goes to its original partition while the input topic's
// partition count is unchanged, and where a Java-compatible producer now
// puts its key once partitions were added; the dry run counts the same
// partitions and writes nothing.
func TestReplayKeepsKeyPartition(t *testing.T) {
	_, brokers := newCluster(t, kfake.SeedTopics(3, "events"))
	ctx := testCtx(t)
	var keys []string
	for i := range 40 {
		keys = append(keys, "order-"+strconv.Itoa(i))
	}
	orig := keyPartitions(t, brokers, "events", keys)
	// Dead-letter the keyed records as the worker does: Record of what it read.
	w := newWriter(t, brokers, nil)
	for _, m := range readTopic(t, brokers, "events") {
		if m.Key == nil {
			continue
		}
		if err := w.Write(ctx, Record(m, NewEntry(m, "rejected"))); err != nil {
			t.Fatal(err)
		}
	}
	cfg := ReplayConfig{Reader: ReaderConfig{Brokers: brokers, Topic: dlqTopic}, To: "events", Filter: AllRecords(), MaxReplays: 3}

	replay := func(group string, partitions int, dry bool) (ReplayStats, map[string]int) {
		t.Helper()
		c := cfg
		c.Group, c.Partitions, c.DryRun = group, partitions, dry
		before := endOffsets(t, brokers, "events")
		st, err := Replay(ctx, c)
		if err != nil {
			t.Fatalf("Replay(%s): %v", group, err)
		}
		got := map[string]int{}
		for _, m := range readFrom(t, brokers, "events", before) {
			got[string(m.Key)] = m.Partition
		}
		return st, got
	}

	// Unchanged count: the dry run counts per partition and writes nothing;
	// the real run writes there.
	wantBy := map[int]int64{}
	for _, p := range orig {
		wantBy[p]++
	}
	dry, written := replay("g-unchanged", 0, true)
	if len(written) != 0 || dry.Replayed != 40 || !maps.Equal(dry.ByPartition, wantBy) || dry.ByPlacement[PlacedOriginal] != 40 ||
		dry.Keyed != 40 || dry.AtJavaPartition != 40 || dry.TopicPartitions != 3 {
		t.Fatalf("dry run: wrote %d, stats %+v, want by partition %v", len(written), dry, wantBy)
	}
	st, written := replay("g-unchanged", 0, false)
	if !maps.Equal(st.ByPartition, wantBy) || len(written) != 40 {
		t.Fatalf("replay: %+v, %d written", st, len(written))
	}
	for k, p := range written {
		if p != orig[k] {
			t.Errorf("unchanged count: %s replayed to partition %d, was on %d", k, p, orig[k])
		}
	}

	// Partitions added: 3 → 8.
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	res, err := (&kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr}).CreatePartitions(ctx, &kafka.CreatePartitionsRequest{
		Topics: []kafka.TopicPartitionsConfig{{Name: "events", Count: 8}}})
	if err != nil || res.Errors["events"] != nil {
		t.Fatalf("CreatePartitions: %v %v", err, res.Errors)
	}
	// Without being told, the count is taken as unchanged; the placement
	// check shows the keys no longer sit where murmur2 puts them.
	dry, _ = replay("g-untold", 0, true)
	if dry.ByPlacement[PlacedOriginal] != 40 || dry.AtJavaPartition >= dry.Keyed {
		t.Fatalf("count changed, untold: %+v", dry)
	}
	now := keyPartitions(t, brokers, "events", keys)
	moved := 0
	for _, k := range keys {
		if now[k] != orig[k] {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("no key moved with the new partition count: the test proves nothing")
	}
	st, written = replay("g-changed", 3, false)
	if st.ByPlacement[PlacedMurmur2] != 40 || st.TopicPartitions != 8 || len(written) != 40 {
		t.Fatalf("count changed: %+v, %d written", st, len(written))
	}
	for k, p := range written {
		if p != now[k] {
			t.Errorf("count changed: %s replayed to partition %d, a producer now puts it on %d (was %d)", k, p, now[k], orig[k])
		}
	}
	t.Logf("%d of 40 keys moved with 3 → 8 partitions", moved)

	bad := cfg
	bad.Group, bad.Partitions = "g-bad", 9
	if _, err := Replay(ctx, bad); err == nil || !strings.Contains(err.Error(), "fewer than the 9") {
		t.Fatalf("a count above the current one: %v", err)
	}
}

// ReplayGroups lists the groups with a position in the DLQ topic, and
// ResetReplayGroup removes that position (only that one) so the next run
// starts over.
func TestReplayGroups(t *testing.T) {
	_, brokers := newCluster(t, kfake.SeedTopics(partitions, "events"))
	seedDLQ(t, brokers)
	ctx := testCtx(t)
	rc := ReaderConfig{Brokers: brokers, Topic: dlqTopic}
	all := ReplayConfig{Reader: rc, To: "events", Filter: AllRecords(), MaxReplays: 10}
	run := func(group string, max int) ReplayStats {
		t.Helper()
		c := all
		c.Group, c.Max = group, max
		st, err := Replay(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	run("cxbridge-dlq-replay-all", 0)
	run("partial", 5)
	// A consumer group of the input topic (as the worker's) has no position
	// in the DLQ topic.
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr}
	if err := commit(ctx, c, "worker", "events", map[int]int64{0: 1}); err != nil {
		t.Fatal(err)
	}

	groups, err := ReplayGroups(ctx, rc)
	if err != nil {
		t.Fatal(err)
	}
	if len(groups) != 2 || groups[0].Group != "cxbridge-dlq-replay-all" || groups[0].Remaining != 0 ||
		groups[1].Group != "partial" || groups[1].Remaining == 0 {
		t.Fatalf("groups %+v", groups)
	}
	partialLeft := groups[1].Remaining

	before, err := ResetReplayGroup(ctx, rc, "cxbridge-dlq-replay-all", true)
	if err != nil || before.Remaining != 0 || len(before.Committed) == 0 {
		t.Fatalf("dry reset: %+v %v", before, err)
	}
	if again, _ := ReplayGroups(ctx, rc); len(again) != 2 {
		t.Fatalf("the dry reset changed the groups: %+v", again)
	}
	if _, err := ResetReplayGroup(ctx, rc, "cxbridge-dlq-replay-all", false); err != nil {
		t.Fatal(err)
	}
	groups, err = ReplayGroups(ctx, rc)
	if err != nil || len(groups) != 1 || groups[0].Group != "partial" || groups[0].Remaining != partialLeft {
		t.Fatalf("after the reset: %+v %v", groups, err)
	}
	if st := run("cxbridge-dlq-replay-all", 0); st.Scanned != 20 || st.Replayed != 19 {
		t.Fatalf("the run after the reset did not start over: %+v", st)
	}

	if _, err := ResetReplayGroup(ctx, rc, "worker", false); err == nil || !strings.Contains(err.Error(), "no committed offsets") {
		t.Fatalf("resetting a group without a DLQ position: %v", err)
	}
	off, err := committed(ctx, c, tr, "worker", "events")
	if err != nil || off[0] != 1 {
		t.Fatalf("the worker group's offsets changed: %v %v", off, err)
	}
	if _, err := ResetReplayGroup(ctx, rc, "no-such-group", false); err == nil {
		t.Fatal("resetting an unknown group succeeded")
	}
}

// A filter without the fields added later keeps the key (and so the replay
// group and its position) it had before them: the values were computed
// with Key as it was before OriginalPartitions and RecordSince/Until.
func TestFilterKeyStable(t *testing.T) {
	f := Filter{Reasons: []string{"rejected"}, Statuses: []int{422}, Partition: 2, FromOffset: 10, ToOffset: 20,
		Since: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), Until: time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)}
	if got := f.Key("cxone.events"); got != "i3tqrr" {
		t.Errorf("Key = %s, was i3tqrr", got)
	}
	if got := AllRecords().Key("cxone.events"); got != "dnb5kb" {
		t.Errorf("AllRecords().Key = %s, was dnb5kb", got)
	}
	keys := map[string]bool{}
	for _, g := range []Filter{AllRecords(), {Partition: -1, FromOffset: -1, ToOffset: -1, OriginalPartitions: []int{1}},
		{Partition: -1, FromOffset: -1, ToOffset: -1, RecordSince: f.Since}, {Partition: -1, FromOffset: -1, ToOffset: -1, RecordUntil: f.Until}} {
		keys[g.Key("cxone.events")] = true
	}
	if len(keys) != 4 {
		t.Errorf("the new filter fields do not all change the key: %v", keys)
	}
}

// With several input topics and no --to, each record goes back to its own
// original topic, to its original partition; a record from a topic that
// is not an input topic is refused. The DLQ holds records of orders and
// tickets (partition 1 of each, so a mix-up shows) and one of a retired
// topic.
func TestReplayToEachOriginalTopic(t *testing.T) {
	_, brokers := newCluster(t, kfake.SeedTopics(3, "orders", "tickets", "retired"))
	ctx := testCtx(t)
	w := newWriter(t, brokers, nil)
	var msgs []kafka.Message
	for i, topic := range []string{"orders", "tickets", "orders", "tickets", "retired"} {
		orig := kafka.Message{Topic: topic, Partition: 1, Offset: int64(i), Key: []byte(topic + "-" + strconv.Itoa(i)), Value: []byte(`{"i":` + strconv.Itoa(i) + `}`)}
		msgs = append(msgs, Record(orig, NewEntry(orig, event.ReasonRejected)))
	}
	if err := w.Write(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	st, err := Replay(ctx, ReplayConfig{Reader: ReaderConfig{Brokers: brokers, Topic: dlqTopic}, Group: "g-own", Topics: []string{"orders", "tickets"},
		Filter: AllRecords(), MaxReplays: 3})
	if err != nil {
		t.Fatal(err)
	}
	if st.Replayed != 4 || st.Refused["original topic not an input topic"] != 1 || !maps.Equal(st.ByTopic, map[string]int64{"orders": 2, "tickets": 2}) ||
		st.ByTopicPartition["orders"][1] != 2 || st.ByTopicPartition["tickets"][1] != 2 || st.Topic != "orders,tickets" || st.TopicPartitions != 6 {
		t.Fatalf("stats %+v; want 2 to each of orders/1 and tickets/1, the retired topic's refused", st)
	}
	for topic, want := range map[string][]string{"orders": {"orders-0", "orders-2"}, "tickets": {"tickets-1", "tickets-3"}, "retired": nil} {
		var got []string
		for _, m := range readTopic(t, brokers, topic) {
			if m.Partition != 1 {
				t.Errorf("%s: replayed %q to partition %d; want its original 1", topic, m.Key, m.Partition)
			}
			got = append(got, string(m.Key))
		}
		if slices.Sort(got); !slices.Equal(got, want) {
			t.Errorf("%s holds %v; want %v", topic, got, want)
		}
	}
	// --to still sends everything to the one topic given.
	st, err = Replay(ctx, ReplayConfig{Reader: ReaderConfig{Brokers: brokers, Topic: dlqTopic}, Group: "g-to", To: "retired",
		Filter: AllRecords(), MaxReplays: 3})
	if err != nil || st.Replayed != 5 || st.ByPartition[1] != 5 {
		t.Fatalf("with To: %+v, %v; want all 5 to retired/1", st, err)
	}
}

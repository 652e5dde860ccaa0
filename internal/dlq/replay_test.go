package dlq

import (
	"strconv"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/event"
	"github.com/twmb/franz-go/pkg/kfake"
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

// Inspect summarises by reason, status and hour.
func TestInspect(t *testing.T) {
	_, brokers := newCluster(t)
	seedDLQ(t, brokers)
	shown := 0
	s, err := Inspect(testCtx(t), ReaderConfig{Brokers: brokers, Topic: dlqTopic}, func(kafka.Message, Entry, bool) { shown++ })
	if err != nil {
		t.Fatal(err)
	}
	if s.Records != 20 || shown != 20 || s.ByReason[string(event.ReasonRejected)] != 10 || s.ByReason[string(event.ReasonRetriesExhausted)] != 10 ||
		s.ByStatus[400] != 10 || s.ByStatus[503] != 10 || s.Replayed != 1 || s.Unreadable != 0 || len(s.ByHour) == 0 {
		t.Fatalf("summary %+v", s)
	}
}

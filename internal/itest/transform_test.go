package itest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/bridge"
	"github.com/cxbridge/cxbridge/internal/dlq"
	"github.com/cxbridge/cxbridge/internal/produce"
	"github.com/cxbridge/cxbridge/internal/sim"
)

// The README's example mapping, as given there.
const readmeTransform = `{eventType: ("order." + .status), source: "shop", timestamp: $timestamp, correlationId: .orderId, data: .}`

// A worker with the README's --transform consumes a shop's order records
// (no CXone events): the simulator accepts every good order once, as the
// event the program makes of it (type from the status, the record's
// timestamp, the orderId as correlation id, the order as data), per key in
// order; every bad order is in the DLQ once with the reason the program
// and the validation give it — transform_failed when the program fails,
// invalid_json when the value is not JSON — holding its ORIGINAL value (a
// replay maps it again); every offset is committed. The transform's own
// setting (its 1 s bound) is the shipped default.
func TestTransformOrders(t *testing.T) {
	s := newStack(t, 3, sim.Config{})
	g := produce.NewGenerator(produce.Config{Keys: 20, Size: 300, Seed: 11, Shape: produce.ShapeOrder})
	good := make([]kafka.Message, 600)
	perKey := map[string]int{}
	for i := range good {
		good[i], _ = g.Next()
		good[i].Topic = ""
		perKey[string(good[i].Key)]++
	}
	var bad []kafka.Message
	want := map[string]string{} // key → DLQ reason
	for _, k := range produce.BadOrders {
		for i := range 3 {
			key := fmt.Sprintf("bad-%s-%d", k.Name, i)
			bad = append(bad, kafka.Message{Key: []byte(key), Value: k.Value(), Time: time.Now()})
			want[key] = k.Reason
		}
	}
	s.write(mix(good, bad, 12))
	w := s.startWorker(func(st *bridge.Settings) { st.Worker.Transform.Program = readmeTransform })
	s.waitCommitted(2 * time.Minute)

	// What CXone accepted: each good order once, mapped.
	st := s.sim.Stats()
	if st.Distinct != int64(len(good)) || st.OrderViolations != 0 {
		t.Errorf("simulator: %+v; want %d distinct events, no order violation", st, len(good))
	}
	for i, m := range good {
		var order map[string]any
		dec := json.NewDecoder(bytes.NewReader(m.Value))
		dec.UseNumber()
		if err := dec.Decode(&order); err != nil {
			t.Fatal(err)
		}
		id := order["orderId"].(string)
		acc, ok := s.sim.Lookup(id)
		if !ok {
			t.Errorf("order %s was not accepted", id)
			continue
		}
		wantTS := m.Time.UTC().Format("2006-01-02T15:04:05.000Z")
		if acc.EventType != "order."+order["status"].(string) || acc.Source != "shop" || acc.Timestamp != wantTS || acc.Count != 1 {
			t.Errorf("order %d accepted as %+v; want eventType order.%s, source shop, timestamp %s, once", i, acc, order["status"], wantTS)
		}
		var data map[string]any
		dec = json.NewDecoder(bytes.NewReader(acc.Data))
		dec.UseNumber()
		if err := dec.Decode(&data); err != nil || !reflect.DeepEqual(data, order) {
			t.Errorf("order %s: data %s, want the order %s (%v)", id, acc.Data, m.Value, err)
		}
	}
	for key, n := range perKey {
		if err := checkKeySequence(s.sim.KeySequence(key), n); err != nil {
			t.Errorf("key %s: %v", key, err)
		}
	}

	// The DLQ: every bad order once, with its reason and original value.
	originals := map[string][]byte{}
	for _, m := range bad {
		originals[string(m.Key)] = m.Value
	}
	seen := s.dlqByKey(want)
	for key := range want {
		if seen[key] != 1 {
			t.Errorf("%s is in the DLQ %d times, want once", key, seen[key])
		}
	}
	for _, m := range s.dlqRecords() {
		e, _, _ := dlq.Parse(m.Headers)
		key := string(m.Key)
		if !bytes.Equal(m.Value, originals[key]) {
			t.Errorf("%s: DLQ value %.80q, want the original %.80q", key, m.Value, originals[key])
		}
		wantErr := map[string]string{
			"bad-status_not_string": "transform: cannot add: string (\"order.\") and number (7)",
			"bad-order_array":       "transform: expected an object but got: array",
			"bad-not_json":          "transform: record value is not valid JSON",
			"bad-binary_garbage":    "transform: record value is not valid UTF-8",
		}[strings.TrimRight(key, "-0123456789")]
		if wantErr != "" && !strings.HasPrefix(e.Error, wantErr) {
			t.Errorf("%s: error %q, want it to start %q", key, e.Error, wantErr)
		}
		if e.Attempts != 0 || e.CorrelationID == "" || e.TraceID == "" {
			t.Errorf("%s: entry %+v", key, e)
		}
	}

	// The metrics: the dead letters by reason, transform_failed among them.
	wantByReason := map[string]float64{}
	for _, r := range want {
		wantByReason[r]++
	}
	if _, by := w.metric("cxbridge_dead_letters_total", "reason"); !reflect.DeepEqual(by, wantByReason) {
		t.Errorf("cxbridge_dead_letters_total by reason %v, want %v", by, wantByReason)
	}
	if _, by := w.metric("cxbridge_records_settled_total", "result"); by["accepted"] != float64(len(good)) || by["transform_failed"] != wantByReason["transform_failed"] {
		t.Errorf("cxbridge_records_settled_total by result %v", by)
	}
	w.stop(t)
}

// A dead letter of the program holds the record as it came, so that once
// the mapping is fixed `dlq replay` puts it back and the new program maps
// it: orders whose status is a number fail the README's program
// (transform_failed), are replayed to a worker whose program turns the
// status into a string, and CXone accepts them as that program's events.
func TestTransformReplayMapsAgain(t *testing.T) {
	s := newStack(t, 3, sim.Config{})
	ts := time.Now().UTC().Format(time.RFC3339)
	var msgs []kafka.Message
	for i := range 3 {
		msgs = append(msgs, kafka.Message{Key: fmt.Appendf(nil, "num-%d", i),
			Value: fmt.Appendf(nil, `{"orderId":"o-num-%d","status":%d,"placedAt":%q}`, i, 7+i, ts)})
	}
	good := kafka.Message{Key: []byte("ok"), Value: fmt.Appendf(nil, `{"orderId":"o-ok","status":"paid","placedAt":%q}`, ts)}
	s.write(append(msgs, good))
	w1 := s.startWorker(func(st *bridge.Settings) { st.Worker.Transform.Program = readmeTransform })
	s.waitCommitted(time.Minute)
	w1.stop(t)
	if _, ok := s.sim.Lookup("o-ok"); !ok || s.sim.Stats().Distinct != 1 {
		t.Fatalf("simulator %+v; want only o-ok accepted", s.sim.Stats())
	}
	for _, m := range s.dlqRecords() {
		if e, _, _ := dlq.Parse(m.Headers); e.Reason != "transform_failed" || !bytes.HasPrefix(m.Value, []byte(`{"orderId":"o-num-`)) {
			t.Fatalf("DLQ record %s: reason %s, value %s", m.Key, e.Reason, m.Value)
		}
	}

	const fixed = `{eventType: ("order." + (.status | tostring)), source: "shop", timestamp: $timestamp, correlationId: .orderId, data: .}`
	s.startWorker(func(st *bridge.Settings) { st.Worker.Transform.Program = fixed })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := dlq.AllRecords()
	f.Reasons = []string{"transform_failed"}
	rs, err := dlq.Replay(ctx, dlq.ReplayConfig{Reader: dlq.ReaderConfig{Brokers: s.broker.Addrs, Topic: s.dlqName},
		Group: s.group + "-replay", To: s.input, Filter: f, MaxReplays: 3})
	if err != nil || rs.Replayed != 3 {
		t.Fatalf("replay: %+v, %v; want 3 replayed", rs, err)
	}
	s.waitAccepted(4, time.Minute)
	for i := range 3 {
		id := fmt.Sprintf("o-num-%d", i)
		acc, ok := s.sim.Lookup(id)
		if !ok || acc.EventType != fmt.Sprintf("order.%d", 7+i) || !bytes.Contains(acc.Data, fmt.Appendf(nil, `"status":%d`, 7+i)) {
			t.Errorf("%s accepted %v as %+v", id, ok, acc)
		}
	}
	s.waitCommitted(time.Minute)
	if n := len(s.dlqRecords()); n != 3 {
		t.Errorf("%d DLQ records after the replay, want the 3 of the first run", n)
	}
}

package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/delivery"
	"github.com/cxbridge/cxbridge/internal/dlq"
	"github.com/cxbridge/cxbridge/internal/event"
)

// fakePublisher answers with its func; it fails the test when unset.
type fakePublisher struct {
	t       *testing.T
	publish func(ev *event.Event) delivery.Outcome
}

func (f *fakePublisher) Publish(_ context.Context, ev *event.Event, _ ...slog.Attr) delivery.Outcome {
	if f.publish == nil {
		f.t.Fatal("Publish called unexpectedly")
	}
	return f.publish(ev)
}

// fakeDLQ records dead letters as the DLQ records dlq.Record makes of
// them; err, when set, fails every write.
type fakeDLQ struct {
	mu   sync.Mutex
	msgs []kafka.Message
	err  error
}

func (f *fakeDLQ) DeadLetter(_ context.Context, orig kafka.Message, e dlq.Entry) error {
	if f.err != nil {
		return f.err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.msgs = append(f.msgs, dlq.Record(orig, e))
	return nil
}

// only returns the one record written and its parsed headers; the test
// fails unless exactly one record with valid headers was written.
func (f *fakeDLQ) only(t *testing.T) (kafka.Message, dlq.Entry) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.msgs) != 1 {
		t.Fatalf("%d DLQ writes, want 1", len(f.msgs))
	}
	e, ok, err := dlq.Parse(f.msgs[0].Headers)
	if !ok || err != nil {
		t.Fatalf("parse DLQ headers: %v %v", ok, err)
	}
	return f.msgs[0], e
}

var validValue = []byte(`{"eventType":"custom.user.action","source":"svc","timestamp":"2026-11-28T10:00:00Z","data":{"a":1}}`)

func record(value []byte) kafka.Message {
	return kafka.Message{Topic: "cxone.events", Partition: 3, Offset: 42, Key: []byte("k"), Value: value,
		Time: time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC), Headers: []kafka.Header{{Key: "h", Value: []byte("v")}}}
}

// Each outcome settles (or not) the way the design's policy says, and
// dead letters carry the reason, the answer and the original coordinates.
func TestProcessorOutcomes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		value    []byte
		outcome  delivery.Outcome
		settled  bool
		reason   event.Reason
		status   int
		wantBody string
	}{
		{"accepted", validValue, delivery.Outcome{Result: delivery.Accepted, Status: 200}, true, "", 0, ""},
		{"rejected", validValue, delivery.Outcome{Result: delivery.DeadLettered, Reason: event.ReasonRejected, Status: 422, Body: "bad field", Attempts: 1}, true, "rejected", 422, "bad field"},
		{"forbidden", validValue, delivery.Outcome{Result: delivery.DeadLettered, Reason: event.ReasonForbidden, Status: 403, Attempts: 1}, true, "forbidden", 403, ""},
		{"retries exhausted", validValue, delivery.Outcome{Result: delivery.DeadLettered, Reason: event.ReasonRetriesExhausted, Status: 503, Attempts: 4}, true, "retries_exhausted", 503, ""},
		{"canceled", validValue, delivery.Outcome{Result: delivery.Canceled}, false, "", 0, ""},
		{"not json", []byte("nope"), delivery.Outcome{}, true, "invalid_json", 0, ""},
		{"invalid event", []byte(`{"eventType":""}`), delivery.Outcome{}, true, "invalid_event", 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pub := &fakePublisher{t: t}
			if tc.outcome.Result != "" {
				pub.publish = func(*event.Event) delivery.Outcome { return tc.outcome }
			}
			w := &fakeDLQ{}
			p := NewProcessor(pub, w, nil, ProcessorHooks{})
			msg := record(tc.value)
			if got := p.Process(context.Background(), msg); got != tc.settled {
				t.Fatalf("settled = %v, want %v", got, tc.settled)
			}
			if tc.reason == "" {
				if len(w.msgs) != 0 {
					t.Fatalf("%d DLQ writes, want none", len(w.msgs))
				}
				return
			}
			d, e := w.only(t)
			if string(d.Key) != "k" || string(d.Value) != string(tc.value) {
				t.Fatalf("DLQ key/value changed: %q %q", d.Key, d.Value)
			}
			if e.Reason != tc.reason || e.Status != tc.status || e.Body != tc.wantBody ||
				e.Topic != "cxone.events" || e.Partition != 3 || e.Offset != 42 || e.CorrelationID == "" {
				t.Fatalf("entry %+v", e)
			}
		})
	}
}

// A DLQ write that fails until ctx ends leaves the record unsettled.
func TestProcessorDLQFailureLeavesUnsettled(t *testing.T) {
	t.Parallel()
	w := &fakeDLQ{err: errors.Join(context.Canceled, errors.New("broker down"))}
	p := NewProcessor(&fakePublisher{t: t}, w, nil, ProcessorHooks{})
	if p.Process(context.Background(), record([]byte("{"))) {
		t.Fatal("settled although the DLQ write failed")
	}
}

// A panic while processing dead-letters the record as internal_error: the
// partition does not stall (invariant 7).
func TestProcessorPanicDeadLetters(t *testing.T) {
	t.Parallel()
	pub := &fakePublisher{t: t, publish: func(*event.Event) delivery.Outcome { panic("boom") }}
	w := &fakeDLQ{}
	p := NewProcessor(pub, w, nil, ProcessorHooks{})
	if !p.Process(context.Background(), record(validValue)) {
		t.Fatal("not settled")
	}
	_, e := w.only(t)
	if e.Reason != event.ReasonInternalError || e.Error != "panic: boom" {
		t.Fatalf("entry %+v", e)
	}
}

// The correlation id of a bad record is its header's, so a replay keeps it.
func TestProcessorKeepsHeaderCorrelationID(t *testing.T) {
	t.Parallel()
	w := &fakeDLQ{}
	p := NewProcessor(&fakePublisher{t: t}, w, nil, ProcessorHooks{})
	msg := record([]byte("garbage"))
	msg.Headers = append(msg.Headers, kafka.Header{Key: "X-Correlation-ID", Value: []byte("order-77")})
	p.Process(context.Background(), msg)
	_, e := w.only(t)
	if e.CorrelationID != "order-77" {
		t.Fatalf("correlation id %q", e.CorrelationID)
	}
}

// The log line of a dead letter carries the record's ids and coordinates.
func TestProcessorLogLineFields(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	p := NewProcessor(&fakePublisher{t: t}, &fakeDLQ{}, log, ProcessorHooks{})
	p.Process(context.Background(), record([]byte("not json")))
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	for _, k := range []string{"correlation_id", "trace_id", "topic", "partition", "offset", "reason"} {
		if _, ok := line[k]; !ok {
			t.Errorf("log line lacks %s: %s", k, buf.String())
		}
	}
}

// A bad record whose JSON carries a readable correlationId (and traceId)
// is dead-lettered under the producer's own ids, so that operators find it
// by the id they know; an id that cannot be read falls back to the header,
// then to the derived one.
func TestProcessorKeepsTheRecordsOwnIDs(t *testing.T) {
	t.Parallel()
	big := `{"eventType":"a","source":"s","timestamp":"2026-11-28T10:00:00Z","correlationId":"order-1","traceId":"trace-1","data":{"blob":"` + strings.Repeat("a", 500_001) + `"}}`
	derived := event.DerivedCorrelationID(event.Record{Topic: "cxone.events", Partition: 3, Offset: 42})
	cases := []struct {
		name, value, header, reason, corr, trace string
	}{
		{"invalid event", `{"eventType":"","source":"s","correlationId":"order-1","traceId":"trace-1"}`, "", "invalid_event", "order-1", "trace-1"},
		{"bad timestamp", `{"correlationId":"order-1","eventType":"a","source":"s","timestamp":"yesterday"}`, "", "invalid_event", "order-1", ""},
		{"too large data", big, "", "too_large", "order-1", "trace-1"},
		{"id wins over header", `{"eventType":1,"correlationId":"order-1"}`, "hdr-9", "invalid_event", "order-1", ""},
		{"unreadable id, header", `{"eventType":1,"correlationId":"bad\nid"}`, "hdr-9", "invalid_event", "hdr-9", ""},
		{"id not a string", `{"eventType":1,"correlationId":7}`, "", "invalid_event", derived, ""},
		{"not json", `{"correlationId":"order-1",`, "", "invalid_json", derived, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := &fakeDLQ{}
			p := NewProcessor(&fakePublisher{t: t}, w, nil, ProcessorHooks{})
			msg := record([]byte(c.value))
			if c.header != "" {
				msg.Headers = append(msg.Headers, kafka.Header{Key: "X-Correlation-ID", Value: []byte(c.header)})
			}
			if !p.Process(context.Background(), msg) {
				t.Fatal("not settled")
			}
			_, e := w.only(t)
			if string(e.Reason) != c.reason {
				t.Errorf("reason %q, want %q", e.Reason, c.reason)
			}
			if e.CorrelationID != c.corr {
				t.Errorf("correlation id %q, want %q", e.CorrelationID, c.corr)
			}
			if c.trace != "" && e.TraceID != c.trace {
				t.Errorf("trace id %q, want %q", e.TraceID, c.trace)
			}
		})
	}
}

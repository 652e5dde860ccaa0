package bridge

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/cxbridge/cxbridge/internal/cxone"
	"github.com/cxbridge/cxbridge/internal/delivery"
	"github.com/cxbridge/cxbridge/internal/dlq"
	"github.com/cxbridge/cxbridge/internal/event"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testutil"
	"github.com/cxbridge/cxbridge/internal/testutil/simcx"
	"github.com/cxbridge/cxbridge/internal/tracing"
)

// traced is a Processor with its real parts — a delivery.Publisher to the
// simulator over loopback HTTP, a dlq.Writer to an embedded broker — whose
// spans go to an in-memory exporter.
type traced struct {
	proc    *Processor
	off     *Processor // the same parts, no tracer provider: tracing off
	sim     *sim.Server
	spans   *tracetest.InMemoryExporter
	logs    *testutil.SyncBuffer
	brokers []string
}

const tracedDLQ = "cxbridge.dlq"

// newTraced builds a traced Processor. The W3C propagator is installed
// globally, as tracing.Setup does when tracing is on. The retry backoff is
// shortened (10 ms, not 1 s) only so that the 5xx test does not wait; the
// spans do not depend on it. maxDLQBytes, when > 0, is the DLQ writer's
// MaxMessageBytes (to make its fallbacks happen).
func newTraced(t *testing.T, maxDLQBytes int64) *traced {
	t.Helper()
	otel.SetTextMapPropagator(propagation.TraceContext{})
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // registered first: runs last

	exp := tracetest.NewInMemoryExporter()
	tp := tracing.NewProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	logs := &testutil.SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	simCtx, stopSim := context.WithCancel(context.Background())
	t.Cleanup(stopSim)
	s, base, err := sim.Start(simCtx, "127.0.0.1:0", sim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	hc := cxone.NewHTTPClient(cxone.TransportConfig{MaxConns: 4})
	t.Cleanup(hc.CloseIdleConnections)
	tokens := simcx.Tokens(t, hc, base, cxone.TokensConfig{})
	pub := delivery.New(delivery.Config{MaxRetries: 3, BackoffBase: 10 * time.Millisecond, Logger: log, TracerProvider: tp},
		cxone.NewClient(hc, base, 10*time.Second), tokens)

	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, tracedDLQ), kfake.Ports(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	w, err := dlq.NewWriter(dlq.WriterConfig{Brokers: c.ListenAddrs(), Topic: tracedDLQ, MaxMessageBytes: maxDLQBytes, TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	proc := NewProcessor(pub, w, log, ProcessorHooks{}).WithTracerProvider(tp)
	off := NewProcessor(delivery.New(delivery.Config{MaxRetries: 3, Logger: log}, cxone.NewClient(hc, base, 10*time.Second), tokens), w, log, ProcessorHooks{})
	return &traced{proc: proc, off: off, sim: s, spans: exp, logs: logs, brokers: c.ListenAddrs()}
}

func (tr *traced) process(t *testing.T, msg kafka.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if !tr.proc.Process(ctx, msg) {
		t.Fatal("record not settled")
	}
}

// byName returns the ended spans named name, in order of start.
func (tr *traced) byName(name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range tr.spans.GetSpans() {
		if s.Name == name {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b tracetest.SpanStub) int { return a.StartTime.Compare(b.StartTime) })
	return out
}

// one returns the one ended span named name.
func (tr *traced) one(t *testing.T, name string) tracetest.SpanStub {
	t.Helper()
	got := tr.byName(name)
	if len(got) != 1 {
		t.Fatalf("%d %s spans, want 1; spans: %v", len(got), name, tr.names())
	}
	return got[0]
}

func (tr *traced) names() []string {
	var out []string
	for _, s := range tr.spans.GetSpans() {
		out = append(out, s.Name)
	}
	return out
}

// logged returns the value of key in the log lines whose msg is msg.
func (tr *traced) logged(t *testing.T, msg, key string) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(strings.NewReader(tr.logs.String()))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if line["msg"] == msg {
			v, _ := line[key].(string)
			out = append(out, v)
		}
	}
	return out
}

// dlqRecords reads back the DLQ topic.
func (tr *traced) dlqRecords(t *testing.T) []dlq.Entry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []dlq.Entry
	err := dlq.Scan(ctx, dlq.ReaderConfig{Brokers: tr.brokers, Topic: tracedDLQ}, func(m kafka.Message) error {
		e, ok, err := dlq.Parse(m.Headers)
		if !ok || err != nil {
			t.Fatalf("DLQ record headers: ok=%v err=%v", ok, err)
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func attrs(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes {
		m[kv.Key] = kv.Value
	}
	return m
}

// wantAttrs fails unless s has each of want (values compared as emitted).
func wantAttrs(t *testing.T, s tracetest.SpanStub, want ...attribute.KeyValue) {
	t.Helper()
	got := attrs(s)
	for _, kv := range want {
		if v, ok := got[kv.Key]; !ok || v != kv.Value {
			t.Errorf("span %s: %s = %v (present %v), want %v", s.Name, kv.Key, v.Emit(), ok, kv.Value.Emit())
		}
	}
}

func childOf(t *testing.T, child, parent tracetest.SpanStub) {
	t.Helper()
	if child.Parent.SpanID() != parent.SpanContext.SpanID() || child.SpanContext.TraceID() != parent.SpanContext.TraceID() {
		t.Errorf("span %s: parent %s/%s, want %s (%s/%s)", child.Name, child.Parent.TraceID(), child.Parent.SpanID(),
			parent.Name, parent.SpanContext.TraceID(), parent.SpanContext.SpanID())
	}
}

const (
	producerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	producerSpan  = "00f067aa0ba902b7"
	traceparent   = "00-" + producerTrace + "-" + producerSpan + "-01"
)

func tracedRecord(value []byte, hs ...kafka.Header) kafka.Message {
	return kafka.Message{Topic: "cxone.events", Partition: 3, Offset: 42, Key: []byte("k"), Value: value,
		Time: time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC), Headers: hs}
}

// A record with a traceparent, answered 503 then accepted: its span is the
// child of the producer's span (same trace id), with the record's
// coordinates and outcome; two attempt spans under it, numbered, with
// their status, class and what the policy did next; the traceparent sent
// to CXone on the accepted attempt is that attempt's span; the trace id
// logged is the span's.
func TestTracingRecordWithTraceparentRetriedThenAccepted(t *testing.T) {
	tr := newTraced(t, 0)
	tr.sim.SetFaults(sim.Faults{Script: []sim.Response{{Status: 503}}})
	value := []byte(`{"eventType":"custom.user.action","source":"svc","timestamp":"2026-11-28T10:00:00Z","correlationId":"corr-tp-1","data":{"a":1}}`)
	tr.process(t, tracedRecord(value, kafka.Header{Key: "traceparent", Value: []byte(traceparent)}))

	rec := tr.one(t, RecordSpan)
	if got := rec.SpanContext.TraceID().String(); got != producerTrace {
		t.Errorf("record span trace id %s, want the traceparent's %s", got, producerTrace)
	}
	if got := rec.Parent.SpanID().String(); got != producerSpan || !rec.Parent.IsRemote() {
		t.Errorf("record span parent %s (remote %v), want the traceparent's %s", got, rec.Parent.IsRemote(), producerSpan)
	}
	if rec.SpanKind != trace.SpanKindConsumer {
		t.Errorf("record span kind %v", rec.SpanKind)
	}
	wantAttrs(t, rec,
		attribute.String("messaging.system", "kafka"),
		attribute.String("messaging.operation.type", "process"),
		attribute.String("messaging.destination.name", "cxone.events"),
		attribute.String("messaging.destination.partition.id", "3"),
		attribute.Int64("messaging.kafka.offset", 42),
		attribute.Int("messaging.message.body.size", len(value)),
		attribute.String(AttrTraceID, producerTrace),
		attribute.String(AttrCorrelationID, "corr-tp-1"),
		attribute.String(AttrEventType, "custom.user.action"),
		attribute.String(AttrOutcome, "accepted"),
		attribute.Int(AttrAttempts, 2),
	)
	if rec.Status.Code == codes.Error {
		t.Errorf("accepted record span status %v", rec.Status)
	}

	attempts := tr.byName(delivery.AttemptSpan)
	if len(attempts) != 2 {
		t.Fatalf("%d attempt spans, want 2; spans: %v", len(attempts), tr.names())
	}
	for _, a := range attempts {
		childOf(t, a, rec)
		if a.SpanKind != trace.SpanKindClient {
			t.Errorf("attempt span kind %v", a.SpanKind)
		}
	}
	wantAttrs(t, attempts[0],
		attribute.Int(delivery.AttrAttempt, 1),
		attribute.Int("http.response.status_code", 503),
		attribute.String(delivery.AttrClass, "server_error"),
		attribute.String(delivery.AttrNext, "failed"),
		attribute.String("error.type", "503"),
		attribute.String("http.request.method", "POST"))
	if attempts[0].Status.Code != codes.Error {
		t.Errorf("503 attempt status %v, want Error", attempts[0].Status)
	}
	wantAttrs(t, attempts[1],
		attribute.Int(delivery.AttrAttempt, 2),
		attribute.Int("http.response.status_code", 200),
		attribute.String(delivery.AttrClass, "accepted"),
		attribute.String(delivery.AttrNext, "accepted"))
	if _, ok := attrs(attempts[1])["error.type"]; ok || attempts[1].Status.Code == codes.Error {
		t.Errorf("accepted attempt marked as an error: %v %v", attrs(attempts[1])["error.type"].Emit(), attempts[1].Status)
	}

	acc, ok := tr.sim.Lookup("corr-tp-1")
	if !ok {
		t.Fatal("the simulator did not accept corr-tp-1")
	}
	want := "00-" + producerTrace + "-" + attempts[1].SpanContext.SpanID().String() + "-01"
	if got := acc.Headers.Get("traceparent"); got != want {
		t.Errorf("traceparent sent to CXone %q, want the accepted attempt's %q", got, want)
	}
	if acc.TraceID != producerTrace {
		t.Errorf("traceId sent to CXone %q, want %q", acc.TraceID, producerTrace)
	}
	if got := tr.logged(t, "event published", "trace_id"); !slices.Equal(got, []string{producerTrace}) {
		t.Errorf("logged trace_id %q, want the span's [%s]", got, producerTrace)
	}
	if n := len(tr.spans.GetSpans()); n != 3 {
		t.Errorf("%d spans, want 3: %v", n, tr.names())
	}
}

// A record without a traceparent or trace id: a root span whose trace id
// is the id derived from its coordinates (the UUID's 32 hex digits), the
// one logged and sent to CXone.
func TestTracingRecordWithoutTraceparentTakesItsDerivedTraceID(t *testing.T) {
	tr := newTraced(t, 0)
	value := []byte(`{"eventType":"custom.user.action","source":"svc","timestamp":"2026-11-28T10:00:00Z","correlationId":"corr-root-1","data":{}}`)
	msg := tracedRecord(value)
	tr.process(t, msg)

	_, derived := event.RecordIDs(event.Record{Topic: msg.Topic, Partition: msg.Partition, Offset: msg.Offset})
	id, ok := tracing.TraceIDOf(derived)
	if !ok {
		t.Fatalf("derived trace id %q is not a UUID", derived)
	}
	rec := tr.one(t, RecordSpan)
	if rec.Parent.IsValid() {
		t.Errorf("record span has a parent: %v", rec.Parent.SpanID())
	}
	if got := rec.SpanContext.TraceID(); got != id {
		t.Errorf("record span trace id %s, want %s (of %s)", got, id, derived)
	}
	wantAttrs(t, rec, attribute.String(AttrTraceID, derived), attribute.String(AttrOutcome, "accepted"), attribute.Int(AttrAttempts, 1))
	acc, ok := tr.sim.Lookup("corr-root-1")
	if !ok {
		t.Fatal("not accepted")
	}
	if acc.TraceID != derived || !strings.HasPrefix(acc.Headers.Get("traceparent"), "00-"+id.String()+"-") {
		t.Errorf("sent traceId %q, traceparent %q; want %s and its hex", acc.TraceID, acc.Headers.Get("traceparent"), derived)
	}
	if got := tr.logged(t, "event published", "trace_id"); !slices.Equal(got, []string{derived}) {
		t.Errorf("logged trace_id %q, want [%s]", got, derived)
	}
}

// A record that is not JSON goes to the DLQ: the DLQ write's span is the
// record span's child, with the reason and the fallback used; the trace id
// in cxbridge.dlq.trace.id and in the log is the span's — the
// traceparent's when the record has one, else the derived one; a record
// too large for the DLQ topic shows the without_value fallback.
func TestTracingDeadLetterSpan(t *testing.T) {
	cases := []struct {
		name      string
		maxBytes  int64
		value     []byte
		headers   []kafka.Header
		wantTrace func(msg kafka.Message) string
		fallback  string
	}{
		{"with traceparent", 0, []byte("nope"), []kafka.Header{{Key: "traceparent", Value: []byte(traceparent)}},
			func(kafka.Message) string { return producerTrace }, dlq.FallbackNone},
		{"without traceparent", 0, []byte("nope"), nil,
			func(msg kafka.Message) string {
				_, id := event.RecordIDs(event.Record{Topic: msg.Topic, Partition: msg.Partition, Offset: msg.Offset})
				return id
			}, dlq.FallbackNone},
		{"too large for the DLQ", 4096, bytes.Repeat([]byte("x"), 8192), []kafka.Header{{Key: "traceparent", Value: []byte(traceparent)}},
			func(kafka.Message) string { return producerTrace }, dlq.FallbackWithoutValue},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTraced(t, tc.maxBytes)
			msg := tracedRecord(tc.value, tc.headers...)
			tr.process(t, msg)
			wantID := tc.wantTrace(msg)
			spanID, ok := tracing.TraceIDOf(wantID)
			if !ok {
				t.Fatalf("trace id %q not hex or UUID", wantID)
			}

			rec := tr.one(t, RecordSpan)
			d := tr.one(t, dlq.DLQSpan)
			childOf(t, d, rec)
			if rec.SpanContext.TraceID() != spanID {
				t.Errorf("record span trace id %s, want %s", rec.SpanContext.TraceID(), spanID)
			}
			wantAttrs(t, rec, attribute.String(AttrOutcome, "invalid_json"), attribute.String(AttrTraceID, wantID))
			if rec.Status.Code != codes.Error {
				t.Errorf("dead-lettered record span status %v, want Error", rec.Status)
			}
			wantAttrs(t, d,
				attribute.String(dlq.AttrReason, "invalid_json"),
				attribute.String(dlq.AttrFallback, tc.fallback),
				attribute.String("messaging.system", "kafka"),
				attribute.String("messaging.destination.name", tracedDLQ))
			if d.SpanKind != trace.SpanKindProducer || d.Status.Code == codes.Error {
				t.Errorf("DLQ span kind %v status %v", d.SpanKind, d.Status)
			}
			if got := tr.byName(delivery.AttemptSpan); len(got) != 0 {
				t.Errorf("%d attempt spans for a record never published", len(got))
			}

			entries := tr.dlqRecords(t)
			if len(entries) != 1 || entries[0].TraceID != wantID {
				t.Fatalf("DLQ entries %+v, want one with trace id %s", entries, wantID)
			}
			if got := tr.logged(t, "record dead-lettered", "trace_id"); !slices.Equal(got, []string{wantID}) {
				t.Errorf("logged trace_id %q, want [%s]", got, wantID)
			}
		})
	}
}

// A record CXone rejects: one attempt span (422, rejected) and the DLQ
// span, both children of the record span, in that order.
func TestTracingRejectedRecord(t *testing.T) {
	tr := newTraced(t, 0)
	tr.sim.SetFaults(sim.Faults{Script: []sim.Response{{Status: 422, Body: `{"error":"bad"}`}}})
	tr.process(t, tracedRecord(validValue, kafka.Header{Key: "traceparent", Value: []byte(traceparent)}))
	rec, a, d := tr.one(t, RecordSpan), tr.one(t, delivery.AttemptSpan), tr.one(t, dlq.DLQSpan)
	childOf(t, a, rec)
	childOf(t, d, rec)
	if !a.EndTime.After(a.StartTime) || d.StartTime.Before(a.EndTime) {
		t.Errorf("attempt %v–%v, DLQ write from %v: want the write after the attempt", a.StartTime, a.EndTime, d.StartTime)
	}
	wantAttrs(t, a, attribute.Int("http.response.status_code", 422), attribute.String(delivery.AttrClass, "rejected"),
		attribute.String(delivery.AttrNext, "rejected"))
	wantAttrs(t, d, attribute.String(dlq.AttrReason, "rejected"))
	wantAttrs(t, rec, attribute.String(AttrOutcome, "rejected"), attribute.Int(AttrAttempts, 1))
}

// Off (no provider given, none installed by tracing.Setup), even with the
// W3C propagator installed, a record with a traceparent makes no span and
// its request to CXone carries no traceparent: what CXone gets is what it
// got before tracing existed.
func TestTracingOffSendsNoTraceparent(t *testing.T) {
	tr := newTraced(t, 0)
	value := []byte(`{"eventType":"custom.user.action","source":"svc","timestamp":"2026-11-28T10:00:00Z","correlationId":"corr-off-1","data":{}}`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if !tr.off.Process(ctx, tracedRecord(value, kafka.Header{Key: "traceparent", Value: []byte(traceparent)})) {
		t.Fatal("not settled")
	}
	acc, ok := tr.sim.Lookup("corr-off-1")
	if !ok {
		t.Fatal("not accepted")
	}
	if got := acc.Headers.Get("traceparent"); got != "" {
		t.Errorf("traceparent %q sent with tracing off", got)
	}
	if acc.TraceID != producerTrace || acc.Headers.Get("X-Trace-ID") != producerTrace {
		t.Errorf("traceId %q, X-Trace-ID %q: want the traceparent's %s, as without tracing", acc.TraceID, acc.Headers.Get("X-Trace-ID"), producerTrace)
	}
	if n := len(tr.spans.GetSpans()); n != 0 {
		t.Errorf("%d spans with tracing off: %v", n, tr.names())
	}
}

// The record span runs from the record's fetch (the consumer passes the
// time) to its settlement: time queued counts.
func TestTracingRecordSpanStartsAtFetch(t *testing.T) {
	tr := newTraced(t, 0)
	value := []byte(`{"eventType":"custom.user.action","source":"svc","timestamp":"2026-11-28T10:00:00Z","correlationId":"corr-fetched","data":{}}`)
	fetched := time.Now().Add(-3 * time.Second) // queued for 3 s behind its key
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if !tr.proc.ProcessFetched(ctx, tracedRecord(value), fetched) {
		t.Fatal("record not settled")
	}
	rec := tr.one(t, RecordSpan)
	if !rec.StartTime.Equal(fetched) {
		t.Fatalf("record span starts %v, want the fetch time %v", rec.StartTime, fetched)
	}
	if d := rec.EndTime.Sub(rec.StartTime); d < 3*time.Second {
		t.Fatalf("record span lasts %v: want the 3 s queued and the publish", d)
	}
}

package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/cxbridge/cxbridge/internal/delivery"
	"github.com/cxbridge/cxbridge/internal/dlq"
	"github.com/cxbridge/cxbridge/internal/event"
	"github.com/cxbridge/cxbridge/internal/tracing"
	"github.com/cxbridge/cxbridge/internal/transform"
)

// EventPublisher publishes one valid event. *delivery.Publisher is one.
type EventPublisher interface {
	Publish(ctx context.Context, ev *event.Event, attrs ...slog.Attr) delivery.Outcome
}

// DLQWriter writes dead letters durably, retrying until it succeeds or ctx
// ends, and settles records too large for the DLQ topic (see
// dlq.Writer.DeadLetter). *dlq.Writer is one.
type DLQWriter interface {
	DeadLetter(ctx context.Context, orig kafka.Message, e dlq.Entry) error
}

var (
	_ EventPublisher = (*delivery.Publisher)(nil)
	_ DLQWriter      = (*dlq.Writer)(nil)
)

// ProcessorHooks observe outcomes, for metrics. Optional fields.
type ProcessorHooks struct {
	Consumed     func()
	Settled      func(result string, recordTime time.Time)
	DeadLettered func(reason string)
}

// Processor settles records: map (with a --transform program), decode and
// validate, publish, dead-letter what can never be delivered. Its Process is
// the worker's consumer.Processor.
type Processor struct {
	pub       EventPublisher
	dlq       DLQWriter
	log       *slog.Logger
	hooks     ProcessorHooks
	transform mapper // nil: the record value is the event
	tracer    tracing.Tracer
}

// mapper maps a record value to an event; *transform.Program is one. Its
// errors are *transform.Error (the record cannot be mapped), *event.Error
// (what it mapped to is no valid event) or ctx's.
type mapper interface {
	Event(ctx context.Context, value []byte, in transform.Input) (*event.Event, error)
}

// NewProcessor returns a Processor. Its spans go to the tracer provider
// tracing.Setup installed, if it did, unless WithTracerProvider says
// otherwise; none are made without either.
func NewProcessor(pub EventPublisher, w DLQWriter, log *slog.Logger, hooks ProcessorHooks) *Processor {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Processor{pub: pub, dlq: w, log: log, hooks: hooks, tracer: tracing.NewTracer(nil)}
}

// WithTracerProvider makes p's record spans with tp, and returns p. Call it
// before the first Process.
func (p *Processor) WithTracerProvider(tp trace.TracerProvider) *Processor {
	p.tracer = tracing.NewTracer(tp)
	return p
}

// WithTransform makes p map every record value with prog before decoding
// it (nil: no mapping), and returns p. Call it before the first Process.
func (p *Processor) WithTransform(prog *transform.Program) *Processor {
	p.transform = nil
	if prog != nil {
		p.transform = prog
	}
	return p
}

// Process settles msg. It returns false only when ctx ended first: the
// record then stays unsettled (and uncommitted).
//
// It makes the record's span (RecordSpan), from the call to the outcome,
// whose children are the publish attempts and the DLQ write. Its parent
// is the record's traceparent header, when it has a valid one; without
// one, a root span whose trace id is the record's trace id (the event's
// traceId, else one of the headers, else the id derived from the record's
// coordinates: see event.RecordIDs) when that is a W3C trace id or a UUID,
// else a random one. The record's trace id is always on the span
// (AttrTraceID), as it is in the logs and the DLQ headers.
func (p *Processor) Process(ctx context.Context, msg kafka.Message) (settled bool) {
	return p.ProcessFetched(ctx, msg, time.Now())
}

// ProcessFetched is Process for a record fetched at fetched, where its span
// starts: time queued behind its key or for a slot counts. It is the
// consumer's Processor.
func (p *Processor) ProcessFetched(ctx context.Context, msg kafka.Message, fetched time.Time) (settled bool) {
	if h := p.hooks.Consumed; h != nil {
		h()
	}
	r := &recordSpan{start: fetched}
	defer func() {
		if v := recover(); v != nil {
			p.log.Error("processing a record panicked; dead-lettering it", "panic", fmt.Sprint(v),
				"topic", msg.Topic, "partition", msg.Partition, "offset", msg.Offset)
			corr, traceID := event.RecordIDs(recordOf(msg))
			ctx := p.begin(ctx, r, msg, corr, traceID, "")
			r.outcome = string(event.ReasonInternalError)
			settled = p.deadLetter(ctx, msg, dlq.Entry{Reason: event.ReasonInternalError, Error: fmt.Sprint("panic: ", v), CorrelationID: corr, TraceID: traceID})
		}
		r.end(settled)
	}()
	return p.process(ctx, msg, r)
}

// The record span's name and cxbridge attributes. It also has
// messaging.system (kafka), messaging.operation.type (process),
// messaging.destination.name (the topic), messaging.destination.partition.id,
// messaging.kafka.offset and messaging.message.body.size.
const (
	RecordSpan        = "cxbridge.process"
	AttrTraceID       = "cxbridge.trace_id"       // the record's trace id, as logged and in cxbridge.dlq.trace.id
	AttrCorrelationID = "cxbridge.correlation_id" // the record's correlation id
	AttrEventType     = "cxbridge.event.type"     // a valid event's eventType
	AttrOutcome       = "cxbridge.outcome"        // accepted, canceled, or the DLQ reason
	AttrAttempts      = "cxbridge.attempts"       // HTTP attempts made
)

// recordSpan is the span of one Process call.
type recordSpan struct {
	start    time.Time
	span     trace.Span // nil until begin
	outcome  string     // AttrOutcome
	attempts int
}

// begin starts r's span, once, and returns ctx with it.
func (p *Processor) begin(ctx context.Context, r *recordSpan, msg kafka.Message, correlationID, traceID, eventType string) context.Context {
	if r.span != nil {
		return trace.ContextWithSpan(ctx, r.span)
	}
	if p.tracer.On() {
		ctx = tracing.Extract(ctx, msg.Headers)
		if !trace.SpanContextFromContext(ctx).IsValid() {
			if id, ok := tracing.TraceIDOf(traceID); ok {
				ctx = tracing.WithTraceID(ctx, id)
			}
		}
	}
	ctx, r.span = p.tracer.Start(ctx, RecordSpan, trace.SpanKindConsumer, r.start)
	if r.span.IsRecording() {
		attrs := make([]attribute.KeyValue, 0, 9) // room for the event type
		attrs = append(attrs,
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.destination.name", msg.Topic),
			attribute.String("messaging.destination.partition.id", strconv.Itoa(msg.Partition)),
			attribute.Int64("messaging.kafka.offset", msg.Offset),
			attribute.Int("messaging.message.body.size", len(msg.Value)),
			attribute.String(AttrTraceID, traceID),
			attribute.String(AttrCorrelationID, correlationID),
		)
		if eventType != "" {
			attrs = append(attrs, attribute.String(AttrEventType, eventType))
		}
		r.span.SetAttributes(attrs...)
	}
	return ctx
}

// end ends r's span, if begun: settled or not, with its outcome.
func (r *recordSpan) end(settled bool) {
	if r.span == nil {
		return
	}
	if r.span.IsRecording() {
		if !settled {
			r.outcome = string(delivery.Canceled)
		}
		r.span.SetAttributes(attribute.String(AttrOutcome, r.outcome), attribute.Int(AttrAttempts, r.attempts))
		if settled && r.outcome != string(delivery.Accepted) {
			r.span.SetStatus(codes.Error, "dead-lettered: "+r.outcome)
		}
	}
	r.span.End()
}

func recordOf(msg kafka.Message) event.Record {
	return event.Record{Topic: msg.Topic, Partition: msg.Partition, Offset: msg.Offset, Headers: headers(msg.Headers)}
}

func (p *Processor) process(ctx context.Context, msg kafka.Message, r *recordSpan) bool {
	rec := recordOf(msg)
	var ev *event.Event
	var err error
	if p.transform != nil {
		ev, err = p.mapRecord(ctx, msg, rec)
	} else {
		ev, err = event.Decode(msg.Value, rec)
	}
	if err != nil {
		reason, judged := badRecordReason(err)
		if !judged {
			return false // ctx ended: the record was not judged
		}
		// The record's own ids: the DLQ keeps its original value (which a
		// replay maps again, when there is a program).
		corr, traceID := event.BadRecordIDs(msg.Value, rec)
		ctx = p.begin(ctx, r, msg, corr, traceID, "")
		r.outcome = string(reason)
		return p.deadLetter(ctx, msg, dlq.Entry{Reason: reason, Error: err.Error(), CorrelationID: corr, TraceID: traceID})
	}
	ctx = p.begin(ctx, r, msg, ev.CorrelationID, ev.TraceID, ev.EventType)
	out := p.pub.Publish(ctx, ev,
		slog.String("topic", msg.Topic), slog.Int("partition", msg.Partition), slog.Int64("offset", msg.Offset))
	r.outcome, r.attempts = out.Label(), out.Attempts
	switch {
	case out.Result == delivery.Accepted:
		if h := p.hooks.Settled; h != nil {
			h(string(out.Result), msg.Time)
		}
		return true
	case !out.Settled():
		return false
	}
	e := dlq.Entry{
		Reason: out.Reason, Status: out.Status, Body: out.Body, Attempts: out.Attempts,
		FirstAttempt: out.FirstAttempt, LastAttempt: out.LastAttempt,
		CorrelationID: ev.CorrelationID, TraceID: ev.TraceID,
	}
	if out.Err != nil {
		e.Error = out.Err.Error()
	}
	return p.deadLetter(ctx, msg, e)
}

// deadLetter writes msg to the DLQ; true once the DLQ holds it (acks=all).
func (p *Processor) deadLetter(ctx context.Context, msg kafka.Message, e dlq.Entry) bool {
	e.Topic, e.Partition, e.Offset, e.Timestamp = msg.Topic, msg.Partition, msg.Offset, msg.Time
	e.Replays = dlq.Replays(msg.Headers)
	if err := p.dlq.DeadLetter(ctx, msg, e); err != nil {
		return false // ctx ended during the retries: unsettled, fetched again later
	}
	p.log.Warn("record dead-lettered",
		"reason", string(e.Reason), "error", e.Error, "status_code", e.Status,
		"correlation_id", e.CorrelationID, "trace_id", e.TraceID,
		"topic", msg.Topic, "partition", msg.Partition, "offset", msg.Offset)
	if h := p.hooks.DeadLettered; h != nil {
		h(string(e.Reason))
	}
	if h := p.hooks.Settled; h != nil {
		h(string(e.Reason), msg.Time)
	}
	return true
}

// mapRecord runs the program on msg's value: the event it made, or why the
// record cannot be published (a *transform.Error or an *event.Error), or
// ctx's error when it ended first.
//
// A record the program fails on is run once more before it is judged. The
// program's bound (transform.DefaultTimeout) is wall time: on a host starved
// of CPU, with --max-in-flight records being processed at once, a run that
// needs microseconds of CPU can be kept from it past the bound, and a good
// record would go to the DLQ for it. A program that fails on the record
// fails again (pure programs give the same answer), costing one more run.
func (p *Processor) mapRecord(ctx context.Context, msg kafka.Message, rec event.Record) (*event.Event, error) {
	in := transform.Input{Record: rec, Key: msg.Key, Timestamp: msg.Time}
	var err error
	for range 2 {
		var ev *event.Event
		if ev, err = p.transform.Event(ctx, msg.Value, in); err == nil {
			return ev, nil
		}
		// Run again only a program that failed: an invalid event is what
		// every run makes of the record, a value that is not JSON stays so,
		// and ctx's error ends the attempt.
		if failed, ok := errors.AsType[*transform.Error](err); !ok || failed.Reason == transform.ReasonInvalidJSON {
			break
		}
	}
	return nil, err
}

// badRecordReason is the DLQ reason of a record that cannot be published
// for err, an *event.Error or a *transform.Error; judged is false for
// another error (ctx's: the record was not judged).
func badRecordReason(err error) (reason event.Reason, judged bool) {
	if te, ok := errors.AsType[*transform.Error](err); ok {
		return te.Reason, true
	}
	if ve, ok := errors.AsType[*event.Error](err); ok {
		return ve.Reason, true
	}
	return "", false
}

func headers(hs []kafka.Header) []event.Header {
	if len(hs) == 0 {
		return nil
	}
	out := make([]event.Header, len(hs))
	for i, h := range hs {
		out[i] = event.Header{Key: h.Key, Value: h.Value}
	}
	return out
}

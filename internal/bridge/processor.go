package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/delivery"
	"github.com/cxbridge/cxbridge/internal/dlq"
	"github.com/cxbridge/cxbridge/internal/event"
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
}

// mapper maps a record value to an event; *transform.Program is one.
type mapper interface {
	Apply(ctx context.Context, value []byte, in transform.Input) ([]byte, error)
}

// NewProcessor returns a Processor.
func NewProcessor(pub EventPublisher, w DLQWriter, log *slog.Logger, hooks ProcessorHooks) *Processor {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Processor{pub: pub, dlq: w, log: log, hooks: hooks}
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
func (p *Processor) Process(ctx context.Context, msg kafka.Message) (settled bool) {
	if h := p.hooks.Consumed; h != nil {
		h()
	}
	defer func() {
		if v := recover(); v != nil {
			p.log.Error("processing a record panicked; dead-lettering it", "panic", fmt.Sprint(v),
				"topic", msg.Topic, "partition", msg.Partition, "offset", msg.Offset)
			corr, trace := event.RecordIDs(recordOf(msg))
			settled = p.deadLetter(ctx, msg, dlq.Entry{Reason: event.ReasonInternalError, Error: fmt.Sprint("panic: ", v), CorrelationID: corr, TraceID: trace})
		}
	}()
	return p.process(ctx, msg)
}

func recordOf(msg kafka.Message) event.Record {
	return event.Record{Topic: msg.Topic, Partition: msg.Partition, Offset: msg.Offset, Headers: headers(msg.Headers)}
}

func (p *Processor) process(ctx context.Context, msg kafka.Message) bool {
	rec := recordOf(msg)
	value := msg.Value
	if p.transform != nil {
		out, terr, ok := p.mapRecord(ctx, msg, rec)
		if !ok {
			return false // ctx ended: the record was not judged
		}
		if terr != nil {
			// The record's own ids: the DLQ keeps its original value, which a
			// replay maps again.
			corr, trace := event.BadRecordIDs(msg.Value, rec)
			return p.deadLetter(ctx, msg, dlq.Entry{Reason: transformReason(terr), Error: terr.Error(), CorrelationID: corr, TraceID: trace})
		}
		value = out
	}
	ev, err := event.Decode(value, rec)
	if err != nil {
		var verr *event.Error
		reason := event.ReasonInvalidJSON
		if errors.As(err, &verr) {
			reason = verr.Reason
		}
		corr, trace := event.BadRecordIDs(msg.Value, rec)
		return p.deadLetter(ctx, msg, dlq.Entry{Reason: reason, Error: err.Error(), CorrelationID: corr, TraceID: trace})
	}
	out := p.pub.Publish(ctx, ev,
		slog.String("topic", msg.Topic), slog.Int("partition", msg.Partition), slog.Int64("offset", msg.Offset))
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
// record cannot be mapped; ok is false when ctx ended first.
//
// A record the program fails on is run once more before it is judged. The
// program's bound (transform.DefaultTimeout) is wall time: on a host starved
// of CPU, with --max-in-flight records being processed at once, a run that
// needs microseconds of CPU can be kept from it past the bound, and a good
// record would go to the DLQ for it. A program that fails on the record
// fails again (pure programs give the same answer), costing one more run.
func (p *Processor) mapRecord(ctx context.Context, msg kafka.Message, rec event.Record) (out []byte, failed *transform.Error, ok bool) {
	in := transform.Input{Record: rec, Key: msg.Key, Timestamp: msg.Time}
	for range 2 {
		var err error
		if out, err = p.transform.Apply(ctx, msg.Value, in); err == nil {
			return out, nil, true
		}
		if failed, ok = errors.AsType[*transform.Error](err); !ok {
			return nil, nil, false
		}
		if failed.Reason == transform.ReasonInvalidJSON {
			break // the value itself: no second run can change it
		}
	}
	return nil, failed, true
}

// transformReason is the DLQ reason of a record the program could not map.
func transformReason(err *transform.Error) event.Reason {
	if err.Reason == transform.ReasonInvalidJSON {
		return event.ReasonInvalidJSON
	}
	return event.ReasonTransformFailed
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

package dlq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol/metadata"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/cxbridge/cxbridge/internal/event"
	"github.com/cxbridge/cxbridge/internal/retry"
	"github.com/cxbridge/cxbridge/internal/tracing"
)

// ErrTooLarge marks a write that can never succeed because a record exceeds
// the writer's MaxMessageBytes or, written alone, the broker's limit for the
// DLQ topic (MESSAGE_TOO_LARGE). Write returns it at once instead of
// retrying.
var ErrTooLarge = errors.New("dlq: record too large for the DLQ topic")

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("dlq: writer closed")

// WriterConfig configures a Writer.
type WriterConfig struct {
	Brokers []string // bootstrap brokers, host:port
	Topic   string   // the DLQ topic; it must exist (it is never auto-created)

	// Transport carries TLS, SASL and the client id. nil = a plaintext
	// transport owned (and closed) by the Writer. A caller's Transport is
	// shared, never closed by the Writer.
	Transport *kafka.Transport

	// BatchTimeout is how long kafka-go waits to fill a batch before it
	// sends it. DLQ writes are synchronous, so keep it short. Default 5ms.
	BatchTimeout time.Duration

	// RetryMin and RetryMax bound the exponential backoff between failed
	// writes (retry.Backoff: RetryMin doubling, plus up to RetryMin of
	// jitter, capped at RetryMax). Defaults 100ms and 10s.
	RetryMin, RetryMax time.Duration

	// MaxMessageBytes is the largest record (as kafka-go counts key, value
	// and headers) the writer sends; larger ones fail with ErrTooLarge. It
	// must not exceed the DLQ topic's max.message.bytes. Default 1 MiB.
	MaxMessageBytes int64

	// Logger (optional) logs each failed attempt that will be retried, at
	// Warn — except that a refusal for good (see Permanent) is logged once,
	// at Error, and its end once, at Info. OnFailure (optional, e.g. a
	// metric) is called for each failed attempt that will be retried. The
	// final error (ctx ended, ErrTooLarge, ErrClosed) is the caller's.
	Logger    *slog.Logger
	OnFailure func(err error)

	// TracerProvider makes the span of each DeadLetter. Optional: the one
	// tracing.Setup installed, if it did (see tracing.Tracer).
	TracerProvider trace.TracerProvider
}

// Writer writes DLQ records synchronously with acks=all. It is safe for
// concurrent use; concurrent writes to the same partition share batches,
// except that a record refused as too large or for good is retried alone,
// so that its verdict is its own and it never fails the records of others.
type Writer struct {
	kw        *kafka.Writer
	solo      *kafka.Writer // one record per produce request
	topic     string
	addr      net.Addr
	transport *kafka.Transport // the one used for writes
	own       bool             // transport created here, closed by Close
	retryMin  time.Duration
	retryMax  time.Duration
	log       *slog.Logger
	onFailure func(error)
	tracer    tracing.Tracer

	closeOnce sync.Once
	life      context.Context // ends with Close
	stop      context.CancelFunc

	mu         sync.Mutex
	refused    int    // Writes whose record the topic refuses for good
	refusedErr error  // the latest refusal
	logged     string // the refusal last logged; "" once none is left
}

// NewWriter returns a Writer for cfg. It does not contact the brokers; use
// Check for that.
func NewWriter(cfg WriterConfig) (*Writer, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("dlq: no brokers")
	}
	if cfg.Topic == "" {
		return nil, errors.New("dlq: no topic")
	}
	if cfg.BatchTimeout <= 0 {
		cfg.BatchTimeout = 5 * time.Millisecond
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 100 * time.Millisecond
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 10 * time.Second
	}
	if cfg.RetryMax < cfg.RetryMin {
		return nil, fmt.Errorf("dlq: retry max %v below retry min %v", cfg.RetryMax, cfg.RetryMin)
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = 1 << 20
	}
	w := &Writer{
		topic:     cfg.Topic,
		addr:      kafka.TCP(cfg.Brokers...),
		transport: cfg.Transport,
		retryMin:  cfg.RetryMin,
		retryMax:  cfg.RetryMax,
		log:       cfg.Logger,
		onFailure: cfg.OnFailure,
		tracer:    tracing.NewTracer(cfg.TracerProvider),
	}
	w.life, w.stop = context.WithCancel(context.Background())
	if w.transport == nil {
		w.transport, w.own = &kafka.Transport{}, true
	}
	kw := func(batchSize int) *kafka.Writer {
		return &kafka.Writer{
			Addr:                   w.addr,
			Topic:                  cfg.Topic,
			Balancer:               &kafka.Hash{}, // same key, same partition
			RequiredAcks:           kafka.RequireAll,
			BatchSize:              batchSize,
			BatchTimeout:           cfg.BatchTimeout,
			BatchBytes:             cfg.MaxMessageBytes,
			Async:                  false,
			AllowAutoTopicCreation: false,
			MaxAttempts:            1, // Write retries, with its ctx
			Transport:              w.transport,
		}
	}
	w.kw, w.solo = kw(0), kw(1) // 0: kafka-go's default batch size
	return w, nil
}

// Topic returns the DLQ topic.
func (w *Writer) Topic() string { return w.topic }

// Write produces msgs to the DLQ topic (their Topic fields are ignored) and
// returns nil only once the broker acknowledged every one with acks=all. A
// failed write is retried, only for the records that failed, with
// exponential backoff and jitter until it succeeds or ctx ends; it then
// returns ctx's error joined with the last write error.
//
// kafka-go batches concurrent writes, and a broker's verdict applies to a
// whole batch: a record refused as too large or for good (see Permanent) is
// written again at once on its own before the verdict is believed. Write
// returns ErrTooLarge when a record is too large by itself (the others are
// written), and ErrClosed after Close. A record the topic refuses for good
// by itself (authorization, policy, a compacted topic and a null key) is
// never dropped: it is retried, alone, with the capped backoff until the
// topic accepts it or ctx ends, so that fixing the topic lets it through;
// Refused reports it meanwhile.
//
// Delivery is at least once: a write that failed or was abandoned may still
// have reached the topic, so a retried record can appear twice. Do not modify
// the messages' byte slices after Write returns early, since kafka-go may
// still be sending them.
func (w *Writer) Write(ctx context.Context, msgs ...kafka.Message) error {
	wr := &writing{w: w, pending: make([]kafka.Message, len(msgs))}
	for i, m := range msgs {
		m.Topic = "" // the kafka.Writer's Topic applies; both set is an error
		wr.pending[i] = m
	}
	defer func() {
		if wr.refused {
			w.endRefusal(ctx, len(wr.pending) == 0)
		}
	}()
	// The waits between rounds end with ctx, or with Close.
	waits, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(w.life, cancel)()
	policy := retry.Policy{Base: w.retryMin, Max: w.retryMax, OnRetry: func(attempt int, err error, wait time.Duration) {
		w.retrying(ctx, attempt, len(wr.pending), err, wait)
	}}
	if err := retry.Do(waits, policy, func(int) error { return wr.round(ctx) }); err != nil {
		switch {
		case wr.final != nil:
			return wr.final
		case ctx.Err() != nil:
			return w.ctxErr(ctx, wr.last)
		default: // closed during a wait
			return errors.Join(ErrClosed, wr.last)
		}
	}
	if wr.tooLarge > 0 {
		return fmt.Errorf("%w: %s: %d record(s): %w", ErrTooLarge, w.topic, wr.tooLarge, wr.big)
	}
	return nil
}

// writing is one Write in progress.
type writing struct {
	w        *Writer
	pending  []kafka.Message // the records not written yet
	last     error           // the last failure not caused by ctx
	final    error           // what Write returns without retrying: ErrClosed, ctx's error
	big      error           // the last record too large by itself
	tooLarge int             // how many were
	alone    bool            // write each record on its own from now on
	refused  bool            // counted in w.refused
}

// round is one attempt of a Write: it writes the pending records (again at
// once without those found too large before sending) and returns nil when
// none is left, the error to retry the rest after a wait, or
// retry.Permanent(wr.final).
func (wr *writing) round(ctx context.Context) error {
	w := wr.w
	for len(wr.pending) > 0 {
		if w.life.Err() != nil {
			return wr.end(ErrClosed)
		}
		kw := w.kw
		if wr.alone {
			kw = w.solo
		}
		err := kw.WriteMessages(ctx, wr.pending...)
		switch mtl, ok := errors.AsType[kafka.MessageTooLargeError](err); {
		case err == nil:
			wr.pending = nil
		case errors.Is(err, io.ErrClosedPipe):
			return wr.end(ErrClosed)
		case ok: // over MaxMessageBytes, found before sending: too large by itself
			wr.tooLarge, wr.big = wr.tooLarge+1, mtl
			wr.pending = mtl.Remaining
		default:
			return wr.failed(ctx, err)
		}
	}
	return nil
}

// failed sorts out a failed write of the pending records: each record
// refused as too large or for good is written again on its own before the
// verdict is believed (a verdict on a batch may not be the record's own;
// once alone, it is). It returns nil when none is left to retry, else as
// round does.
func (wr *writing) failed(ctx context.Context, err error) error {
	w := wr.w
	var errs []error
	wr.pending, errs = failed(wr.pending, err)
	if ctx.Err() != nil {
		if err = flatten(err); wr.last == nil || !errors.Is(err, ctx.Err()) {
			wr.last = err
		}
		return wr.end(w.ctxErr(ctx, wr.last))
	}
	var again []kafka.Message
	var againErrs []error
	for i, m := range wr.pending {
		e := errs[i]
		if (isTooLarge(e) || Permanent(e)) && !wr.alone {
			e = w.solo.WriteMessages(ctx, m)
			switch {
			case e == nil:
				continue
			case errors.Is(e, io.ErrClosedPipe):
				return wr.end(ErrClosed)
			case ctx.Err() != nil:
				return wr.end(w.ctxErr(ctx, flatten(e)))
			}
			e = flatten(e)
		}
		if isTooLarge(e) {
			wr.tooLarge, wr.big = wr.tooLarge+1, e
			continue
		}
		again, againErrs = append(again, m), append(againErrs, e)
	}
	wr.pending = again
	if len(wr.pending) == 0 {
		return nil
	}
	err = joinDistinct(againErrs)
	wr.last = err
	if slices.ContainsFunc(againErrs, Permanent) {
		wr.alone = true // never again in a batch with the records of others
		if !wr.refused {
			wr.refused = true
			w.startRefusal(ctx, err, len(wr.pending))
		}
	}
	return err
}

// end ends the Write with err, without a retry.
func (wr *writing) end(err error) error {
	wr.final = err
	return retry.Permanent(err)
}

// retrying reports a failed write that will be retried after wait: to
// OnFailure, and to the log unless it is a refusal for good (logged once,
// by startRefusal).
func (w *Writer) retrying(ctx context.Context, attempt, records int, err error, wait time.Duration) {
	if w.onFailure != nil {
		w.onFailure(err)
	}
	if w.log != nil && !Permanent(err) {
		w.log.LogAttrs(ctx, slog.LevelWarn, "dlq write failed, retrying",
			slog.String("topic", w.topic), slog.Int("attempt", attempt),
			slog.Int("records", records), slog.Duration("backoff", wait),
			slog.String("error", err.Error()))
	}
}

// DeadLetter writes the DLQ record of orig (Record(orig, e)) like Write,
// and settles orig even when the DLQ topic cannot take that record whole,
// instead of stalling its partition: a record too large for the topic is
// written without its value (WithoutValue), and one whose key or headers
// alone are too large with nothing of orig but its coordinates
// (WithoutOriginal). Each fallback is logged at Warn. It returns nil once
// the topic holds one of them, else Write's error (ctx ended, ErrClosed).
//
// It makes a span (DLQSpan) in ctx's trace, with the reason and the
// fallback that the topic took (AttrFallback).
func (w *Writer) DeadLetter(ctx context.Context, orig kafka.Message, e Entry) (err error) {
	ctx, span := w.tracer.Start(ctx, DLQSpan, trace.SpanKindProducer, time.Time{})
	fallback := FallbackNone
	defer func() { w.endSpan(span, e, fallback, err) }()
	rec := Record(orig, e)
	err = w.Write(ctx, rec)
	if errors.Is(err, ErrTooLarge) {
		w.warn(ctx, "record too large for the DLQ topic: dead-lettering it without its value", orig,
			slog.Int("bytes", len(orig.Value)))
		fallback = FallbackWithoutValue
		err = w.Write(ctx, WithoutValue(rec))
	}
	if errors.Is(err, ErrTooLarge) {
		w.warn(ctx, "record key and headers too large for the DLQ topic: dead-lettering its coordinates only", orig,
			slog.Int("headers", len(orig.Headers)), slog.Int("key_bytes", len(orig.Key)))
		fallback = FallbackWithoutOriginal
		err = w.Write(ctx, WithoutOriginal(rec))
	}
	return err
}

// The DLQ write's span name, attributes (besides messaging.system,
// messaging.operation.type and messaging.destination.name) and fallbacks.
const (
	DLQSpan      = "cxbridge.dlq.write"
	AttrReason   = "cxbridge.dlq.reason"
	AttrFallback = "cxbridge.dlq.fallback" // the last form of the record tried: one of the Fallback values

	FallbackNone            = "none"             // the whole record (Record)
	FallbackWithoutValue    = "without_value"    // WithoutValue: the record was too large
	FallbackWithoutOriginal = "without_original" // WithoutOriginal: its key or headers were too large
)

func (w *Writer) endSpan(span trace.Span, e Entry, fallback string, err error) {
	if span.IsRecording() {
		reason := e.Reason
		if reason == "" {
			reason = event.ReasonUnknown
		}
		span.SetAttributes(
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", w.topic),
			attribute.String(AttrReason, string(reason)),
			attribute.String(AttrFallback, fallback),
		)
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "DLQ write failed")
		}
	}
	span.End()
}

// warn logs msg about the original record orig, with its coordinates.
func (w *Writer) warn(ctx context.Context, msg string, orig kafka.Message, attrs ...slog.Attr) {
	if w.log == nil {
		return
	}
	attrs = append(attrs, slog.String("topic", orig.Topic), slog.Int("partition", orig.Partition), slog.Int64("offset", orig.Offset))
	w.log.LogAttrs(ctx, slog.LevelWarn, msg, attrs...)
}

// joinDistinct joins errs, each distinct message once.
func joinDistinct(errs []error) error {
	var out []error
	seen := map[string]bool{}
	for _, e := range errs {
		if e != nil && !seen[e.Error()] {
			seen[e.Error()] = true
			out = append(out, e)
		}
	}
	if len(out) == 1 {
		return out[0]
	}
	return errors.Join(out...)
}

// Permanent reports whether err is a refusal that retrying cannot change
// until someone changes the topic, its ACLs or its configuration: the
// topic or cluster not authorized, a policy violation, a record the topic
// rejects (INVALID_RECORD: a compacted topic and a null key; CORRUPT_MESSAGE),
// an invalid topic or timestamp, SASL refusing the credentials. Write
// retries these too (an operator may fix the cause) but logs them once and
// reports them through Refused; OnFailure can tell them apart with it.
func Permanent(err error) bool {
	for _, code := range permanentCodes { // errors.Is looks into joined errors too
		if errors.Is(err, code) {
			return true
		}
	}
	return false
}

var permanentCodes = []kafka.Error{
	kafka.TopicAuthorizationFailed, kafka.ClusterAuthorizationFailed, kafka.TransactionalIDAuthorizationFailed,
	kafka.PolicyViolation, kafka.InvalidRecord, kafka.InvalidMessage, kafka.InvalidTopic, kafka.InvalidTimestamp,
	kafka.UnsupportedForMessageFormat, kafka.InvalidRequiredAcks,
	kafka.SASLAuthenticationFailed, kafka.UnsupportedSASLMechanism, kafka.IllegalSASLState,
}

// Refused returns how many Writes in progress hold a record the DLQ topic
// refuses for good (see Permanent), and the latest refusal.
func (w *Writer) Refused() (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.refused, w.refusedErr
}

// startRefusal counts a Write whose records the topic refuses for good and
// logs the refusal, once while it lasts (again when its error changes).
func (w *Writer) startRefusal(ctx context.Context, err error, records int) {
	w.mu.Lock()
	w.refused++
	w.refusedErr = err
	logIt := err.Error() != w.logged
	if logIt {
		w.logged = err.Error()
	}
	n := w.refused
	w.mu.Unlock()
	if logIt && w.log != nil {
		w.log.LogAttrs(ctx, slog.LevelError, "the DLQ topic refuses a record for good; retrying it alone until the topic accepts it (nothing is dropped, its partition is not committed past it)",
			slog.String("topic", w.topic), slog.Int("records", records), slog.Int("writes_refused", n),
			slog.Duration("max_backoff", w.retryMax), slog.String("error", err.Error()))
	}
}

// endRefusal uncounts a refused Write (written: true when the topic took
// its records at last) and logs when no refused one is left.
func (w *Writer) endRefusal(ctx context.Context, written bool) {
	w.mu.Lock()
	w.refused--
	last := w.refused == 0
	if last {
		w.refusedErr, w.logged = nil, ""
	}
	w.mu.Unlock()
	if last && written && w.log != nil {
		w.log.LogAttrs(ctx, slog.LevelInfo, "the DLQ topic accepts the records it refused", slog.String("topic", w.topic))
	}
}

func (w *Writer) ctxErr(ctx context.Context, last error) error {
	if errors.Is(last, ctx.Err()) {
		return fmt.Errorf("dlq: write to %s: %w", w.topic, last)
	}
	return fmt.Errorf("dlq: write to %s: %w", w.topic, errors.Join(ctx.Err(), last))
}

// failed returns the messages a kafka.WriteErrors reports as failed with
// their errors, or all of them with err for any other error.
func failed(msgs []kafka.Message, err error) ([]kafka.Message, []error) {
	all := func() ([]kafka.Message, []error) {
		errs := make([]error, len(msgs))
		for i := range errs {
			errs[i] = err
		}
		return msgs, errs
	}
	var we kafka.WriteErrors
	if !errors.As(err, &we) || len(we) != len(msgs) {
		return all()
	}
	out := msgs[:0:0]
	var errs []error
	for i, e := range we {
		if e != nil {
			out = append(out, msgs[i])
			errs = append(errs, e)
		}
	}
	if len(out) == 0 { // cannot happen: an error with no failed record
		return all()
	}
	return out, errs
}

// flatten turns a kafka.WriteErrors, which has no Unwrap, into the join of
// its distinct errors, so that errors.Is and errors.As see them.
func flatten(err error) error {
	var we kafka.WriteErrors
	if !errors.As(err, &we) {
		return err
	}
	if e := joinDistinct(we); e != nil {
		return e
	}
	return err
}

// isTooLarge reports whether err says a record (or the batch it was in) is
// over a size limit.
func isTooLarge(err error) bool {
	var mtl kafka.MessageTooLargeError
	return errors.As(err, &mtl) || errors.Is(err, kafka.MessageSizeTooLarge) || errors.Is(err, kafka.RecordListTooLarge)
}

// Check reports whether the DLQ topic exists and each of its partitions has a
// leader, with a fresh metadata request (kafka-go's Transport serves metadata
// from a cache that keeps the last good answer through an outage, so Check
// opens its own connection each time). It never writes nor creates the topic.
func (w *Writer) Check(ctx context.Context) error {
	_, err := topicPartitions(ctx, w.addr, w.transport, w.topic)
	return err
}

// topicPartitions returns the partitions of topic, failing unless each has a
// leader, from a metadata request on a transport of its own that copies the
// connection settings (dial, TLS, SASL, client id) of base.
func topicPartitions(ctx context.Context, addr net.Addr, base *kafka.Transport, topic string) ([]int, error) {
	t := &kafka.Transport{MetadataTopics: []string{topic}}
	if base != nil {
		t.Dial, t.DialTimeout, t.ClientID = base.Dial, base.DialTimeout, base.ClientID
		t.TLS, t.SASL, t.Resolver, t.Context = base.TLS, base.SASL, base.Resolver, base.Context
	}
	defer t.CloseIdleConnections()
	r, err := t.RoundTrip(ctx, addr, &metadata.Request{TopicNames: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("dlq: topic %s: metadata: %w", topic, err)
	}
	res, ok := r.(*metadata.Response)
	if !ok {
		return nil, fmt.Errorf("dlq: topic %s: unexpected metadata response %T", topic, r)
	}
	for _, tp := range res.Topics {
		if tp.Name != topic {
			continue
		}
		if tp.ErrorCode != 0 {
			return nil, fmt.Errorf("dlq: topic %s: %w", topic, kafka.Error(tp.ErrorCode))
		}
		if len(tp.Partitions) == 0 {
			return nil, fmt.Errorf("dlq: topic %s: no partitions", topic)
		}
		ps := make([]int, 0, len(tp.Partitions))
		for _, p := range tp.Partitions {
			if p.ErrorCode != 0 {
				return nil, fmt.Errorf("dlq: topic %s partition %d: %w", topic, p.PartitionIndex, kafka.Error(p.ErrorCode))
			}
			if p.LeaderID < 0 {
				return nil, fmt.Errorf("dlq: topic %s partition %d: no leader", topic, p.PartitionIndex)
			}
			ps = append(ps, int(p.PartitionIndex))
		}
		slices.Sort(ps)
		return ps, nil
	}
	return nil, fmt.Errorf("dlq: topic %s: %w", topic, kafka.UnknownTopicOrPartition)
}

// Close stops retries in progress (their Write returns ErrClosed), waits for
// the produce requests in flight (bounded by kafka-go's 10s write timeout)
// and releases the connections of a transport the Writer owns.
func (w *Writer) Close() error {
	var err error
	w.closeOnce.Do(func() {
		w.stop()
		err = errors.Join(w.kw.Close(), w.solo.Close())
		if w.own {
			w.transport.CloseIdleConnections()
		}
	})
	return err
}

package delivery

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/cxbridge/cxbridge/internal/cxone"
	"github.com/cxbridge/cxbridge/internal/event"
	"github.com/cxbridge/cxbridge/internal/retry"
)

// Publish delivers ev and returns its outcome: Accepted; DeadLettered, with
// the reason (rejected, forbidden, retries_exhausted, too_large); or
// Canceled when ctx ended first. It waits, without spending the retry
// budget, while the breaker is open, the 429 gate is closed or no token can
// be had; a failed attempt spends the budget only on evidence against the
// event (see evidence). attrs are added to the outcome's log line (the
// record's coordinates).
func (p *Publisher) Publish(ctx context.Context, ev *event.Event, attrs ...slog.Attr) Outcome {
	start := time.Now()
	out := p.publish(ctx, ev)
	out.Latency = time.Since(start)
	p.logOutcome(ctx, ev, out, attrs)
	return out
}

// publish attempts ev until the outcome policy (decide, spend) settles it
// or ctx ends, and carries out each of the policy's actions.
func (p *Publisher) publish(ctx context.Context, ev *event.Event) Outcome {
	var out Outcome
	body, err := ev.Body()
	if err != nil {
		out.Result, out.Reason, out.Err = DeadLettered, event.ReasonTooLarge, err
		return out
	}
	var st state
	for {
		token, done, probe, err := p.acquire(ctx, &out)
		if err != nil {
			return canceled(out, err)
		}
		st.probe = probe
		res, sent, span := p.attempt(ctx, &out, token, ev, body, st.resent)
		act, next := decide(answer{class: res.Class, connLost: res.ConnLost}, st)
		st = next
		endAttempt(span, res, act)
		if act.invalidate {
			p.tokens.Invalidate(token) // only if no one has replaced it yet
		}
		done(act.breaker)
		if act.normal {
			p.evidence.answeredNormally(sent)
		}
		switch act.step {
		case settle:
			if act.raise {
				p.limiter.up()
			}
			out.Result, out.Reason = act.result, act.reason
			if act.result == Accepted {
				out.Body, out.Err = "", nil
			}
			return out
		case interrupt:
			return canceled(out, ctx.Err())
		case again:
			if h := p.cfg.Hooks.Resend; h != nil && act.newConn {
				h()
			}
		case authBackoff:
			if err := retry.Sleep(ctx, retry.Backoff(st.authFailures-1, p.cfg.BackoffBase, p.cfg.MaxBackoff)); err != nil {
				return canceled(out, err)
			}
		case rateLimited:
			p.rateLimited(res, out.LastAttempt)
		case failed:
			var exhausted bool
			st, exhausted, err = p.backOff(ctx, st, sent)
			switch {
			case err != nil:
				return canceled(out, err)
			case exhausted:
				out.Result, out.Reason = DeadLettered, event.ReasonRetriesExhausted
				return out
			}
		}
	}
}

// acquire waits for a turn to attempt — at the 429 gate and the rate
// limit, for the breaker to let an attempt through, for a token — without
// spending the retry budget. done takes the attempt's result for the
// breaker; probe tells that the attempt is a half-open probe. A token that
// cannot be had is out.Err until one can. err is ctx's when it ended.
func (p *Publisher) acquire(ctx context.Context, out *Outcome) (token string, done func(error), probe bool, err error) {
	for {
		if err := p.waitTurn(ctx); err != nil {
			return "", nil, false, err
		}
		done, probe, wait, changed := p.breaker.allow()
		if done == nil { // open, or half-open with its probes taken: wait, spend nothing
			if err := sleepUntilChange(ctx, wait, changed); err != nil {
				return "", nil, false, err
			}
			continue
		}
		token, err := p.tokens.Token(ctx)
		if err == nil {
			return token, done, probe, nil
		}
		if ctx.Err() != nil {
			done(errAttemptExcluded)
			return "", nil, false, ctx.Err()
		}
		if cxone.IsConfigError(err) {
			done(errAttemptExcluded) // CXone is not at fault: our settings are
		} else {
			done(errAttemptFailed)
		}
		out.Err = err
		if err := retry.Sleep(ctx, max(time.Until(p.tokens.NextTry()), p.breaker.poll)); err != nil {
			return "", nil, false, err
		}
	}
}

// attempt sends ev once (on a new connection when resent: not another
// kept-alive one, maybe broken by the same event), notes it in out and
// returns its result, its mark in the order of sending and its span (in
// whose context the request carries its traceparent), for endAttempt.
func (p *Publisher) attempt(ctx context.Context, out *Outcome, token string, ev *event.Event, body []byte, resent bool) (cxone.Result, mark, trace.Span) {
	now := time.Now()
	if out.Attempts == 0 {
		out.FirstAttempt = now
	}
	out.LastAttempt = now
	out.Attempts++
	actx, span := p.tracer.Start(ctx, AttemptSpan, trace.SpanKindClient, now)
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String("http.request.method", "POST"),
			attribute.Int(AttrAttempt, out.Attempts),
			attribute.Bool(AttrNewConnection, resent),
		)
	}
	sent := p.evidence.send()
	if resent {
		actx = cxone.NewConnection(actx)
	}
	res := p.send.Attempt(actx, token, ev, body)
	if h := p.cfg.Hooks.Attempt; h != nil && res.Class != cxone.Canceled {
		h(res.Class, res.Latency)
	}
	out.Status, out.Body, out.Err = res.Status, res.Body, res.Err
	return res, sent, span
}

// The attempt span's name and attributes (besides http.request.method,
// http.response.status_code and error.type).
const (
	AttemptSpan       = "cxone.publish"
	AttrAttempt       = "cxbridge.attempt"                // 1 for the first attempt of a publish
	AttrClass         = "cxbridge.cxone.class"            // cxone.Class of the answer
	AttrNext          = "cxbridge.attempt.next"           // what the outcome policy does next: see nextLabel
	AttrNewConnection = "cxbridge.attempt.new_connection" // sent on a connection of its own (a resend)
)

// endAttempt ends the span of an attempt whose result is res and on which
// the outcome policy decided act.
func endAttempt(span trace.Span, res cxone.Result, act action) {
	if span.IsRecording() {
		attrs := make([]attribute.KeyValue, 0, 4)
		if res.Status > 0 {
			attrs = append(attrs, attribute.Int("http.response.status_code", res.Status))
		}
		attrs = append(attrs, attribute.String(AttrClass, string(res.Class)), attribute.String(AttrNext, nextLabel(act)))
		if res.Class != cxone.Accepted {
			attrs = append(attrs, attribute.String("error.type", errorType(res)))
			span.SetStatus(codes.Error, string(res.Class))
		}
		span.SetAttributes(attrs...)
		if res.Err != nil && res.Class != cxone.Canceled {
			span.RecordError(res.Err)
		}
	}
	span.End()
}

// nextLabel names what the policy does after an attempt: accepted, or the
// DLQ reason, when it settles; otherwise resend (attempt again without a
// backoff of its own: after a stale token, on a new connection after a
// lost one, or after a failed half-open probe, through the breaker),
// auth_retry (back off after a refused fresh token), rate_limited (wait for
// the 429 gate), failed (a counted failure: back off and attempt again,
// unless it spent the retry budget: the record's outcome then says
// retries_exhausted) or canceled.
func nextLabel(act action) string {
	switch act.step {
	case settle:
		if act.result == DeadLettered {
			return string(act.reason)
		}
		return string(act.result)
	case interrupt:
		return string(Canceled)
	case again:
		return "resend"
	case authBackoff:
		return "auth_retry"
	case rateLimited:
		return "rate_limited"
	case failed:
		return "failed"
	}
	return act.step.String()
}

// errorType is the attempt's error.type: the HTTP status for an answer,
// else the class (timeout, network_error, canceled).
func errorType(res cxone.Result) string {
	if res.Status > 0 {
		return strconv.Itoa(res.Status)
	}
	return string(res.Class)
}

// rateLimited closes the 429 gate for everyone for the Retry-After of res
// (capped, jittered) and lowers the rate limit; sent is when the attempt
// that drew the 429 started.
func (p *Publisher) rateLimited(res cxone.Result, sent time.Time) {
	wait := p.cfg.DefaultRetryAfter
	if res.HasRetryAfter {
		wait = res.RetryAfter
	}
	p.gate.Close(time.Now().Add(retry.Jitter(min(wait, p.cfg.MaxBackoff), 0.1)))
	p.limiter.down(sent)
}

// backOff waits after a counted failure of the attempt sent, and spends
// the retry budget when CXone answered others normally around it (spend).
// It returns exhausted, without waiting more, once the budget is spent.
func (p *Publisher) backOff(ctx context.Context, st state, sent mark) (next state, exhausted bool, err error) {
	wait := retry.Backoff(st.failures, p.cfg.BackoffBase, p.cfg.MaxBackoff)
	against := p.evidence.after(sent) // CXone answered others normally while this attempt was out
	if !against && p.evidence.before(sent) {
		// CXone worked just before: see whether it does just after.
		first := min(wait, evidenceMargin)
		if err := retry.Sleep(ctx, first); err != nil {
			return st, false, err
		}
		wait -= first
		against = p.evidence.after(sent)
	}
	if st, exhausted = spend(st, against, p.cfg.MaxRetries); exhausted {
		return st, true, nil
	}
	if h := p.cfg.Hooks.Retry; h != nil {
		h()
	}
	return st, false, retry.Sleep(ctx, wait)
}

// waitTurn waits at the 429 gate and for the client-side rate limit, and
// at the gate again if a 429 closed it while this publisher waited for its
// turn at the limit: nobody sends while the gate is closed. (A publisher
// that went on would draw another 429, and lower the limit once more, for
// each turn the limit gives during the Retry-After.)
func (p *Publisher) waitTurn(ctx context.Context) error {
	for {
		waited, err := p.gate.Wait(ctx)
		if waited > 0 && p.cfg.Hooks.GateWait != nil {
			p.cfg.Hooks.GateWait(waited)
		}
		if err != nil {
			return err
		}
		if err := p.limiter.wait(ctx); err != nil {
			return err
		}
		if !p.gate.ClosedUntil().After(time.Now()) {
			return nil
		}
	}
}

// sleepUntilChange waits d, or until changed is closed (the breaker's
// state changed), or until ctx ends (its error).
func sleepUntilChange(ctx context.Context, d time.Duration, changed <-chan struct{}) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-changed:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// canceled ends a publish interrupted by its context; Err keeps the last
// failure seen (a TLS error, say) next to the context's.
func canceled(out Outcome, err error) Outcome {
	out.Result = Canceled
	if err == nil {
		err = context.Canceled
	}
	if out.Err != nil && !errors.Is(out.Err, err) {
		err = errors.Join(err, out.Err)
	}
	out.Err = err
	return out
}

func (p *Publisher) logOutcome(ctx context.Context, ev *event.Event, out Outcome, attrs []slog.Attr) {
	level := slog.LevelDebug
	msg := "event published"
	switch {
	case out.Result == Canceled:
		msg = "publish interrupted"
	case out.Reason == event.ReasonRetriesExhausted:
		level, msg = slog.LevelError, "event dead-lettered"
	case out.DeadLetter():
		level, msg = slog.LevelWarn, "event dead-lettered"
	}
	log := p.cfg.Logger
	if !log.Enabled(ctx, level) {
		return
	}
	all := make([]slog.Attr, 0, 10+len(attrs))
	all = append(all,
		slog.String("correlation_id", ev.CorrelationID),
		slog.String("trace_id", ev.TraceID),
		slog.String("event_type", ev.EventType),
		slog.String("outcome", out.Label()),
		slog.Int("status_code", out.Status),
		slog.Float64("latency_ms", float64(out.Latency.Microseconds())/1000),
		slog.Int("attempts", out.Attempts),
	)
	if out.Body != "" {
		all = append(all, slog.String("response_body", out.Body))
	}
	if out.Err != nil && !errors.Is(out.Err, context.Canceled) {
		all = append(all, slog.String("error", out.Err.Error()))
	}
	all = append(all, attrs...)
	log.LogAttrs(ctx, level, msg, all...)
}

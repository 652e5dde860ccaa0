package delivery

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/cxbridge/cxbridge/internal/cxone"
	"github.com/cxbridge/cxbridge/internal/event"
	"github.com/cxbridge/cxbridge/internal/retry"
)

// Publish delivers ev and returns its outcome: Accepted; a DLQ result
// (Rejected, Forbidden, RetriesExhausted, TooLarge); or Canceled when ctx
// ended first. It waits, without spending the retry budget, while the
// breaker is open, the 429 gate is closed or no token can be had; a failed
// attempt spends the budget only on evidence against the event (see
// evidence). attrs are added to the outcome's log line (the record's
// coordinates).
func (p *Publisher) Publish(ctx context.Context, ev *event.Event, attrs ...slog.Attr) Outcome {
	start := time.Now()
	out := p.publish(ctx, ev)
	out.Latency = time.Since(start)
	p.logOutcome(ctx, ev, out, attrs)
	return out
}

func (p *Publisher) publish(ctx context.Context, ev *event.Event) Outcome {
	var out Outcome
	body, err := ev.Body()
	if err != nil {
		out.Result, out.Err = TooLarge, err
		return out
	}
	// retries is the budget spent (failures with evidence against ev);
	// failures counts every failed attempt, for the backoff. resent tells
	// that this attempt is the retry at once of one whose connection was
	// lost.
	retries, failures, authFailures := 0, 0, 0
	resent := false
	for {
		if err := p.waitTurn(ctx); err != nil {
			return canceled(out, err)
		}
		done, probe, wait, changed := p.breaker.allow()
		if done == nil { // open, or half-open with its probes taken: wait, spend nothing
			if err := sleepUntilChange(ctx, wait, changed); err != nil {
				return canceled(out, err)
			}
			continue
		}
		token, err := p.tokens.Token(ctx)
		if err != nil {
			if ctx.Err() != nil {
				done(errAttemptExcluded)
				return canceled(out, ctx.Err())
			}
			if cxone.IsConfigError(err) {
				done(errAttemptExcluded) // CXone is not at fault: our settings are
			} else {
				done(errAttemptFailed)
			}
			out.Err = err
			if err := retry.Sleep(ctx, max(time.Until(p.tokens.NextTry()), p.breaker.poll)); err != nil {
				return canceled(out, err)
			}
			continue
		}

		now := time.Now()
		if out.Attempts == 0 {
			out.FirstAttempt = now
		}
		out.LastAttempt = now
		out.Attempts++
		sent := p.evidence.send()
		actx := ctx
		if resent {
			actx = cxone.NewConnection(ctx) // not another kept-alive one, maybe broken by the same event
		}
		res := p.send.Attempt(actx, token, ev, body)
		if h := p.cfg.Hooks.Attempt; h != nil && res.Class != cxone.Canceled {
			h(res.Class, res.Latency)
		}
		out.Status, out.Body, out.Err = res.Status, res.Body, res.Err
		wasResent := resent
		resent = false

		switch res.Class {
		case cxone.Accepted:
			done(nil)
			p.evidence.answeredNormally(sent)
			p.limiter.up()
			out.Result, out.Body, out.Err = Accepted, "", nil
			return out
		case cxone.Rejected:
			done(nil) // CXone is healthy; the event is at fault
			p.evidence.answeredNormally(sent)
			out.Result = Rejected
			return out
		case cxone.Forbidden:
			done(nil)
			p.evidence.answeredNormally(sent)
			out.Result = Forbidden
			return out
		case cxone.Canceled:
			done(errAttemptExcluded)
			return canceled(out, ctx.Err())
		case cxone.Unauthorized:
			p.tokens.Invalidate(token) // only if no one has replaced it yet
			authFailures++
			if authFailures == 1 {
				done(errAttemptExcluded) // a stale token: refresh and go again at once
				continue
			}
			done(errAttemptFailed) // a fresh token refused too: an auth outage trips the breaker
			if err := retry.Sleep(ctx, retry.Backoff(authFailures-1, p.cfg.BackoffBase, p.cfg.MaxBackoff)); err != nil {
				return canceled(out, err)
			}
		case cxone.RateLimited:
			done(errAttemptExcluded)
			wait := p.cfg.DefaultRetryAfter
			if res.HasRetryAfter {
				wait = res.RetryAfter
			}
			p.gate.Close(time.Now().Add(retry.Jitter(min(wait, p.cfg.MaxBackoff), 0.1)))
			p.limiter.down(out.LastAttempt)
		default: // server error, redirect, timeout, network error
			if res.ConnLost && !wasResent {
				// The connection broke under the request (a reset, a close):
				// one event of the network, not an answer of CXone. Send it
				// again at once, on a new connection, counting nothing —
				// neither for the breaker, nor the backoff, nor the budget;
				// only a second loss in a row counts. The request may have
				// reached CXone: delivery is at least once, and the event
				// goes again with the same correlation id.
				done(errAttemptExcluded)
				resent = true
				if h := p.cfg.Hooks.Resend; h != nil {
					h()
				}
				continue
			}
			done(errAttemptFailed)
			if probe {
				continue // a failed half-open probe spends nothing: the breaker holds us
			}
			failures++
			wait := retry.Backoff(failures, p.cfg.BackoffBase, p.cfg.MaxBackoff)
			against := p.evidence.after(sent) // CXone answered others normally while this attempt was out
			if !against && p.evidence.before(sent) {
				// CXone worked just before: see whether it does just after.
				first := min(wait, evidenceMargin)
				if err := retry.Sleep(ctx, first); err != nil {
					return canceled(out, err)
				}
				wait -= first
				against = p.evidence.after(sent)
			}
			if against { // the event's fault, not CXone's: spend the budget
				retries++
				if retries > p.cfg.MaxRetries {
					out.Result = RetriesExhausted
					return out
				}
			}
			if h := p.cfg.Hooks.Retry; h != nil {
				h()
			}
			if err := retry.Sleep(ctx, wait); err != nil {
				return canceled(out, err)
			}
		}
	}
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
	case out.Result == RetriesExhausted:
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
		slog.String("outcome", string(out.Result)),
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

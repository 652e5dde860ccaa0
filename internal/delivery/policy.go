package delivery

import (
	"github.com/cxbridge/cxbridge/internal/cxone"
	"github.com/cxbridge/cxbridge/internal/event"
)

// The outcome policy: what a publish does with each answer CXone gives one
// of its attempts. decide is the whole of it, a pure function of the
// answer and of what the publish knows (its state); spend is the retry
// budget's part. Publisher.publish carries the actions out: the waits,
// the breaker, the gate, the token cache, the evidence. README's outcome
// table states the same policy for users; TestDecide proves each row.

// answer is what the policy reads of one attempt's answer.
type answer struct {
	class cxone.Class // cxone.Classify of its status or transport error
	// connLost: the connection broke under the request (a reset, a close:
	// cxone.Result.ConnLost), no answer of CXone.
	connLost bool
}

// state is what one publish knows when an answer comes. The zero state is
// a publish's first attempt.
type state struct {
	probe        bool // the attempt was a half-open probe of the breaker
	resent       bool // the attempt was the resend at once of one whose connection was lost
	authFailures int  // 401s answered to this publish, this one included once decided
	failures     int  // counted failures, for the backoff
	retries      int  // the retry budget spent: counted failures with evidence against the event
}

// step is what a publish does next.
type step int

const (
	settle      step = iota + 1 // end: action.result (Accepted, or DeadLettered for action.reason)
	interrupt                   // the caller's context ended: Canceled, not settled
	again                       // attempt again at once
	authBackoff                 // back off (401s with fresh tokens), then attempt again
	rateLimited                 // close the 429 gate for Retry-After and lower the rate limit, then attempt again
	failed                      // a counted failure: back off, and spend the budget on evidence against the event (spend)
)

func (s step) String() string {
	switch s {
	case settle:
		return "settle"
	case interrupt:
		return "interrupt"
	case again:
		return "again"
	case authBackoff:
		return "authBackoff"
	case rateLimited:
		return "rateLimited"
	case failed:
		return "failed"
	}
	return "step(?)"
}

// action is the policy's verdict on one answer.
type action struct {
	step   step
	result Result       // settle: Accepted or DeadLettered
	reason event.Reason // settle with DeadLettered: why
	// breaker is what the circuit breaker counts the attempt as: nil a
	// success, errAttemptFailed a failure, errAttemptExcluded nothing.
	breaker error
	// normal: CXone answered normally (a 2xx, or a verdict on the event),
	// evidence for the retry budgets of the publishes in flight.
	normal bool
	// raise: the client-side rate limit may rise (a 2xx).
	raise bool
	// invalidate: the token was refused; drop it (one refresh for everyone).
	invalidate bool
	// newConn: attempt again on a new connection, not another kept-alive
	// one that the same event may break too.
	newConn bool
}

// decide is the outcome policy for one answer a of a publish in state s:
// the action, and the publish's next state.
func decide(a answer, s state) (action, state) {
	probe, resent := s.probe, s.resent
	s.probe, s.resent = false, false
	switch a.class {
	case cxone.Accepted:
		return action{step: settle, result: Accepted, normal: true, raise: true}, s
	case cxone.Rejected: // CXone is healthy; the event is at fault
		return action{step: settle, result: DeadLettered, reason: event.ReasonRejected, normal: true}, s
	case cxone.Forbidden:
		return action{step: settle, result: DeadLettered, reason: event.ReasonForbidden, normal: true}, s
	case cxone.Canceled:
		return action{step: interrupt, breaker: errAttemptExcluded}, s
	case cxone.Unauthorized:
		s.authFailures++
		if s.authFailures == 1 { // a stale token: refresh and go again at once
			return action{step: again, breaker: errAttemptExcluded, invalidate: true}, s
		}
		// A fresh token refused too: an auth outage trips the breaker.
		return action{step: authBackoff, breaker: errAttemptFailed, invalidate: true}, s
	case cxone.RateLimited: // never spends, never trips the breaker
		return action{step: rateLimited, breaker: errAttemptExcluded}, s
	}
	// Server error, redirect, timeout, network error.
	if a.connLost && !resent {
		// The connection broke under the request: one event of the
		// network, not an answer of CXone. Send it again at once, on a new
		// connection, counting nothing — neither for the breaker, nor the
		// backoff, nor the budget; only a second loss in a row counts. The
		// request may have reached CXone: delivery is at least once, and the
		// event goes again with the same correlation id.
		s.resent = true
		return action{step: again, breaker: errAttemptExcluded, newConn: true}, s
	}
	if probe { // a failed half-open probe spends nothing: the breaker holds us
		return action{step: again, breaker: errAttemptFailed}, s
	}
	s.failures++
	return action{step: failed, breaker: errAttemptFailed}, s
}

// spend is the retry budget's verdict on a counted failure (step failed)
// of a publish in state s allowed maxRetries: against tells whether CXone
// answered other publishes normally around the failed attempt (see
// evidence). Only such a failure spends the budget; the event is
// dead-lettered (retries_exhausted) once more than maxRetries are spent.
func spend(s state, against bool, maxRetries int) (next state, exhausted bool) {
	if !against { // maybe an outage: CXone's fault, not the event's
		return s, false
	}
	s.retries++
	return s, s.retries > maxRetries
}

package delivery

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"

	"github.com/cxbridge/cxbridge/internal/cxone"
	"github.com/cxbridge/cxbridge/internal/event"
)

// TestDecide proves the outcome policy row by row, from the HTTP status or
// transport error (through cxone.Classify) and the publish's state to the
// action and the next state. The rows follow README's outcome table.
func TestDecide(t *testing.T) {
	t.Parallel()
	live := context.Background()
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}

	accepted := action{step: settle, result: Accepted, normal: true, raise: true}
	dead := func(r event.Reason) action {
		return action{step: settle, result: DeadLettered, reason: r, normal: true}
	}
	counted := action{step: failed, breaker: errAttemptFailed}

	cases := []struct {
		row    string
		status int
		err    error
		parent context.Context
		lost   bool // the connection broke under the request
		in     state
		want   action
		next   state
	}{
		// 2xx: settled.
		{row: "200", status: 200, want: accepted},
		{row: "202", status: 202, want: accepted},
		{row: "204 after a resend", status: 204, in: state{resent: true}, want: accepted},
		{row: "200 to a half-open probe", status: 200, in: state{probe: true}, want: accepted},
		{row: "200 keeps the counts", status: 200, in: state{authFailures: 1, failures: 2, retries: 1}, want: accepted,
			next: state{authFailures: 1, failures: 2, retries: 1}},
		// 4xx other than 401, 403, 429: rejected, no retry; CXone works.
		{row: "400", status: 400, want: dead(event.ReasonRejected)},
		{row: "404", status: 404, want: dead(event.ReasonRejected)},
		{row: "409", status: 409, want: dead(event.ReasonRejected)},
		{row: "413", status: 413, want: dead(event.ReasonRejected)},
		{row: "422", status: 422, want: dead(event.ReasonRejected)},
		{row: "418", status: 418, want: dead(event.ReasonRejected)},
		{row: "400 after failures", status: 400, in: state{failures: 3, retries: 2}, want: dead(event.ReasonRejected),
			next: state{failures: 3, retries: 2}},
		// 403: forbidden.
		{row: "403", status: 403, want: dead(event.ReasonForbidden)},
		// 401: drop the token; the first retries at once, a second backs off
		// and trips the breaker; never a dead letter.
		{row: "401 first", status: 401, want: action{step: again, breaker: errAttemptExcluded, invalidate: true},
			next: state{authFailures: 1}},
		{row: "401 with a fresh token", status: 401, in: state{authFailures: 1},
			want: action{step: authBackoff, breaker: errAttemptFailed, invalidate: true}, next: state{authFailures: 2}},
		{row: "401 again", status: 401, in: state{authFailures: 5, failures: 1},
			want: action{step: authBackoff, breaker: errAttemptFailed, invalidate: true}, next: state{authFailures: 6, failures: 1}},
		// 429: wait at the gate; never spends, never trips the breaker.
		{row: "429", status: 429, want: action{step: rateLimited, breaker: errAttemptExcluded}},
		{row: "429 after failures", status: 429, in: state{failures: 4, retries: 3}, want: action{step: rateLimited, breaker: errAttemptExcluded},
			next: state{failures: 4, retries: 3}},
		// 5xx, timeout, network error, 3xx: a counted failure (backoff; the
		// budget only on evidence, see TestSpend).
		{row: "500", status: 500, want: counted, next: state{failures: 1}},
		{row: "502", status: 502, want: counted, next: state{failures: 1}},
		{row: "503 after two", status: 503, in: state{failures: 2, retries: 1}, want: counted, next: state{failures: 3, retries: 1}},
		{row: "504", status: 504, want: counted, next: state{failures: 1}},
		{row: "1xx", status: 101, want: counted, next: state{failures: 1}},
		{row: "timeout", err: context.DeadlineExceeded, parent: live, want: counted, next: state{failures: 1}},
		{row: "network error", err: refused, parent: live, want: counted, next: state{failures: 1}},
		{row: "301", status: 301, want: counted, next: state{failures: 1}},
		{row: "302", status: 302, want: counted, next: state{failures: 1}},
		{row: "307", status: 307, want: counted, next: state{failures: 1}},
		// A failed half-open probe: the breaker holds the publish, nothing counted.
		{row: "503 to a probe", status: 503, in: state{probe: true, failures: 2}, want: action{step: again, breaker: errAttemptFailed},
			next: state{failures: 2}},
		// A connection lost under the publish: sent again at once on a new
		// connection, counting nothing; a second loss in a row counts.
		{row: "connection lost", err: refused, parent: live, lost: true,
			want: action{step: again, breaker: errAttemptExcluded, newConn: true}, next: state{resent: true}},
		{row: "connection lost to a probe", err: refused, parent: live, lost: true, in: state{probe: true},
			want: action{step: again, breaker: errAttemptExcluded, newConn: true}, next: state{resent: true}},
		{row: "connection lost twice in a row", err: refused, parent: live, lost: true, in: state{resent: true},
			want: counted, next: state{failures: 1}},
		{row: "503 after a resend", status: 503, in: state{resent: true}, want: counted, next: state{failures: 1}},
		// The caller's context ended: interrupted, not CXone's fault.
		{row: "canceled", err: context.Canceled, parent: ended, want: action{step: interrupt, breaker: errAttemptExcluded}},
		{row: "canceled after a loss", err: refused, parent: ended, lost: true, in: state{resent: true, failures: 1},
			want: action{step: interrupt, breaker: errAttemptExcluded}, next: state{failures: 1}},
	}
	for _, tc := range cases {
		class := cxone.Classify(tc.status, tc.err, tc.parent)
		got, next := decide(answer{class: class, connLost: tc.lost}, tc.in)
		if got != tc.want {
			t.Errorf("%s (%s, %+v): action %+v, want %+v", tc.row, class, tc.in, got, tc.want)
		}
		if next != tc.next {
			t.Errorf("%s (%s, %+v): next state %+v, want %+v", tc.row, class, tc.in, next, tc.next)
		}
		if (got.step == settle) != (got.result != "") || (got.reason != "") != (got.result == DeadLettered) {
			t.Errorf("%s: result %q, reason %q for step %s", tc.row, got.result, got.reason, got.step)
		}
	}
}

// Every class has a decision, and only Accepted, Rejected and Forbidden
// settle a publish: nothing CXone's outage can answer dead-letters at once.
func TestDecideEveryClass(t *testing.T) {
	t.Parallel()
	settles := map[cxone.Class]bool{cxone.Accepted: true, cxone.Rejected: true, cxone.Forbidden: true}
	for _, c := range []cxone.Class{cxone.Accepted, cxone.Rejected, cxone.Forbidden, cxone.Unauthorized, cxone.RateLimited,
		cxone.ServerError, cxone.Redirect, cxone.Timeout, cxone.NetworkError, cxone.Canceled} {
		for _, s := range []state{{}, {probe: true}, {resent: true}, {authFailures: 3, failures: 7, retries: 2}} {
			a, _ := decide(answer{class: c}, s)
			if a.step == 0 {
				t.Errorf("%s in %+v: no step", c, s)
			}
			if (a.step == settle) != settles[c] {
				t.Errorf("%s in %+v: step %s", c, s, a.step)
			}
			if a.breaker != nil && !errors.Is(a.breaker, errAttemptFailed) && !errors.Is(a.breaker, errAttemptExcluded) {
				t.Errorf("%s: breaker verdict %v", c, a.breaker)
			}
		}
	}
}

// TestSpend proves the retry budget: only a failure with evidence against
// the event spends; the one past maxRetries dead-letters.
func TestSpend(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		in         state
		against    bool
		maxRetries int
		next       state
		exhausted  bool
	}{
		{name: "no evidence spends nothing", in: state{failures: 9}, maxRetries: 3, next: state{failures: 9}},
		{name: "no evidence, budget spent", in: state{failures: 9, retries: 3}, maxRetries: 3, next: state{failures: 9, retries: 3}},
		{name: "first against", in: state{failures: 1}, against: true, maxRetries: 3, next: state{failures: 1, retries: 1}},
		{name: "last allowed", in: state{failures: 3, retries: 2}, against: true, maxRetries: 3, next: state{failures: 3, retries: 3}},
		{name: "past the budget", in: state{failures: 4, retries: 3}, against: true, maxRetries: 3,
			next: state{failures: 4, retries: 4}, exhausted: true},
		{name: "no retries allowed", in: state{failures: 1}, against: true, maxRetries: 0,
			next: state{failures: 1, retries: 1}, exhausted: true},
	}
	for _, tc := range cases {
		next, exhausted := spend(tc.in, tc.against, tc.maxRetries)
		if next != tc.next || exhausted != tc.exhausted {
			t.Errorf("%s: spend(%+v, %v, %d) = %+v, %v; want %+v, %v", tc.name, tc.in, tc.against, tc.maxRetries,
				next, exhausted, tc.next, tc.exhausted)
		}
	}
}

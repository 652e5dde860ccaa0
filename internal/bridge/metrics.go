package bridge

import (
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/cxbridge/cxbridge/internal/cxone"
	"github.com/cxbridge/cxbridge/internal/delivery"
	"github.com/cxbridge/cxbridge/internal/dlq"
	"github.com/cxbridge/cxbridge/internal/telemetry"
)

// The metrics are telemetry's; this file maps the states of their owners
// (CXone's attempt classes, the breaker, the token cache, the DLQ writer)
// to the label values and numbers telemetry takes.

// attemptOutcomes are the outcome label values of
// cxbridge_publish_attempts_total, present from the start: every attempt
// class but Canceled (the caller's context ended: not an attempt's outcome).
var attemptOutcomes = []string{
	string(cxone.Accepted), string(cxone.Rejected), string(cxone.Forbidden), string(cxone.Unauthorized),
	string(cxone.RateLimited), string(cxone.ServerError), string(cxone.Redirect), string(cxone.Timeout), string(cxone.NetworkError),
}

// breakerValue maps a breaker state to cxbridge_breaker_state's value.
func breakerValue(s gobreaker.State) float64 {
	switch s {
	case gobreaker.StateHalfOpen:
		return 1
	case gobreaker.StateOpen:
		return 2
	}
	return 0
}

// tokenResult maps a token request's error to cxbridge_token_refreshes_total's result.
func tokenResult(err error) string {
	switch {
	case err == nil:
		return telemetry.TokenOK
	case cxone.IsConfigError(err):
		return telemetry.TokenConfigError
	}
	return telemetry.TokenTransientError
}

// dlqFailureKind maps a failed DLQ write to cxbridge_dlq_write_failures_total's kind.
func dlqFailureKind(err error) string {
	if dlq.Permanent(err) {
		return telemetry.DLQWritePermanent
	}
	return telemetry.DLQWriteTransient
}

// publishHooks feed the publisher's events to m.
func publishHooks(m *telemetry.Metrics) delivery.Hooks {
	return delivery.Hooks{
		Attempt:  func(c cxone.Class, d time.Duration) { m.ObserveAttempt(string(c), d) },
		Retry:    m.Retries.Inc,
		Resend:   m.Resends.Inc,
		GateWait: func(d time.Duration) { m.RateLimitWait.Add(d.Seconds()) },
		BreakerState: func(_, to gobreaker.State) {
			m.ObserveBreaker(to.String(), breakerValue(to))
		},
	}
}

// processorHooks feed the processor's outcomes to m.
func processorHooks(m *telemetry.Metrics) ProcessorHooks {
	return ProcessorHooks{
		Consumed:     m.Consumed.Inc,
		Settled:      m.ObserveSettled,
		DeadLettered: m.ObserveDeadLetter,
	}
}

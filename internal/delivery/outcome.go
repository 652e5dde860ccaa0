package delivery

import (
	"time"

	"github.com/cxbridge/cxbridge/internal/event"
)

// Result is how a Publish call ended.
type Result string

// Results.
const (
	Accepted     Result = "accepted"
	DeadLettered Result = "dead_lettered" // to go to the DLQ: Outcome.Reason says why
	Canceled     Result = "canceled"      // ctx ended first: not settled, to be published again
)

// Outcome is the settled (or interrupted) result of publishing one event.
type Outcome struct {
	Result Result
	// Reason is why the event goes to the DLQ (event.ReasonRejected,
	// ReasonForbidden, ReasonRetriesExhausted, ReasonTooLarge) when Result
	// is DeadLettered; empty otherwise.
	Reason   event.Reason
	Status   int    // the last HTTP status, 0 when there was none
	Body     string // the last error answer's body, truncated
	Err      error  // the last transport or encoding error
	Attempts int    // HTTP attempts made
	// FirstAttempt and LastAttempt are when the first and last attempts
	// started; zero when none was made.
	FirstAttempt, LastAttempt time.Time
	Latency                   time.Duration // from the call to the outcome
}

// Settled reports whether the event is done with: accepted, or to be dead-lettered.
func (o Outcome) Settled() bool { return o.Result != Canceled }

// DeadLetter reports whether the event must go to the DLQ.
func (o Outcome) DeadLetter() bool { return o.Result == DeadLettered }

// Label names the outcome in logs and metrics: "accepted", "canceled", or
// the DLQ reason.
func (o Outcome) Label() string {
	if o.Result == DeadLettered {
		return string(o.Reason)
	}
	return string(o.Result)
}

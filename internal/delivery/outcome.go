package delivery

import (
	"time"

	"github.com/cxbridge/cxbridge/internal/event"
)

// Result is how a Publish call ended.
type Result string

// Results. Every one but Accepted and Canceled is a DLQ reason.
const (
	Accepted         Result = "accepted"
	Rejected         Result = "rejected"          // a 4xx other than 401/403/429
	Forbidden        Result = "forbidden"         // 403
	RetriesExhausted Result = "retries_exhausted" // server errors past the retry budget
	TooLarge         Result = Result(event.ReasonTooLarge)
	Canceled         Result = "canceled" // ctx ended first: not settled, to be published again
)

// Outcome is the settled (or interrupted) result of publishing one event.
type Outcome struct {
	Result   Result
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
func (o Outcome) DeadLetter() bool { return o.Result != Accepted && o.Result != Canceled }

package event

import "fmt"

// Reason says why a record goes to the DLQ: the value of its
// cxbridge.dlq.reason header and the reason label of the dead-letter
// metrics. It is the one list of them; the packages that decide a reason
// (this one for decoding, delivery for CXone's answers, bridge for a panic)
// use these values.
type Reason string

// The reasons a record can fail decoding or validation (Decode, Parse).
const (
	ReasonInvalidJSON  Reason = "invalid_json"  // not JSON, or not UTF-8
	ReasonInvalidEvent Reason = "invalid_event" // JSON, but not an object or breaking a field rule
	ReasonTooLarge     Reason = "too_large"     // data over 500,000 bytes, or record/body over 1 MiB
)

// ReasonTransformFailed is the reason of a record the --transform program
// could not map to an event: the program failed, ran too long, or yielded
// no value, several values or one that is not an object (package transform
// decides it).
const ReasonTransformFailed Reason = "transform_failed"

// The reasons CXone's answers give (the outcome policy of package delivery).
const (
	ReasonRejected         Reason = "rejected"          // a 4xx other than 401, 403, 429: the event is at fault
	ReasonForbidden        Reason = "forbidden"         // 403: scope or event type not allowed
	ReasonRetriesExhausted Reason = "retries_exhausted" // failures past the retry budget, on evidence against the event
)

// The reasons of the worker itself.
const (
	// ReasonInternalError is the reason of a record whose processing
	// panicked: a bug, but its partition must not stall on it.
	ReasonInternalError Reason = "internal_error"
	// ReasonUnknown is written when a DLQ record is given no reason.
	ReasonUnknown Reason = "unknown"
)

// Error is a decoding or validation failure. Field is the top-level field at
// fault, empty when the whole value is.
type Error struct {
	Reason Reason
	Field  string
	Msg    string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return "event: " + e.Msg
	}
	return "event: " + e.Field + ": " + e.Msg
}

func errorf(reason Reason, field, format string, args ...any) *Error {
	return &Error{Reason: reason, Field: field, Msg: fmt.Sprintf(format, args...)}
}

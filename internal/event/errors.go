package event

import "fmt"

// Reason says why a record cannot be published. It is the DLQ reason.
type Reason string

// The reasons a record can fail decoding or validation.
const (
	ReasonInvalidJSON  Reason = "invalid_json"  // not JSON, or not UTF-8
	ReasonInvalidEvent Reason = "invalid_event" // JSON, but not an object or breaking a field rule
	ReasonTooLarge     Reason = "too_large"     // data over 500,000 bytes, or record/body over 1 MiB
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

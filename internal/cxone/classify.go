package cxone

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
)

// Class is what one publish attempt's answer means. The names are the
// outcome label of the attempt metrics. What a publish does with each
// class is the outcome policy of package delivery (its decide function).
type Class string

// Attempt classes.
const (
	Accepted     Class = "accepted"      // 2xx
	Rejected     Class = "rejected"      // 4xx other than 401, 403, 429: the event is at fault
	Forbidden    Class = "forbidden"     // 403: scope or event type not allowed
	Unauthorized Class = "unauthorized"  // 401: the token is at fault
	RateLimited  Class = "rate_limited"  // 429
	ServerError  Class = "server_error"  // 5xx and any other status
	Redirect     Class = "redirect"      // 3xx: never followed, never a success
	Timeout      Class = "timeout"       // the attempt's deadline passed
	NetworkError Class = "network_error" // no answer: connection refused, reset, TLS, …
	Canceled     Class = "canceled"      // the caller's context ended: not CXone's fault
)

// Classify maps one attempt's HTTP status or transport error to its class.
// parent is the caller's context: when it has ended the error is Canceled;
// otherwise a deadline (the attempt's own timeout) is a Timeout.
func Classify(status int, err error, parent context.Context) Class {
	if err != nil {
		switch {
		case parent != nil && parent.Err() != nil:
			return Canceled
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), isNetTimeout(err):
			return Timeout
		default:
			return NetworkError
		}
	}
	switch {
	case status >= 200 && status < 300:
		return Accepted
	case status == http.StatusUnauthorized:
		return Unauthorized
	case status == http.StatusForbidden:
		return Forbidden
	case status == http.StatusTooManyRequests:
		return RateLimited
	case status >= 400 && status < 500:
		return Rejected
	case status >= 300 && status < 400:
		return Redirect
	default: // 5xx, and 1xx that should never reach us
		return ServerError
	}
}

func isNetTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

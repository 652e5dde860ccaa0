package cxone

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// CXone's endpoints are never followed to another address: a 3xx is an
// answer like any other, classified by the caller. A followed redirect
// turns a POST into a GET of whatever page the Location names, and a 200
// from that page would count as a published event that never reached
// CXone.

// noRedirects is http.Client.CheckRedirect for every CXone request: the
// 3xx answer itself is returned, its Location not requested.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// withoutRedirects returns a copy of hc that never follows a redirect
// (hc's transport, jar and timeout are kept).
func withoutRedirects(hc *http.Client) *http.Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	c := *hc
	c.CheckRedirect = noRedirects
	return &c
}

// maxLocation bounds the Location kept in an error.
const maxLocation = 512

// RedirectError is a 3xx answer from a CXone endpoint, which is never
// followed. Location is the answer's Location header, resolved against the
// request's URL, with any password in it masked; "" when there was none.
type RedirectError struct {
	Status   int
	Location string
}

func (e *RedirectError) Error() string {
	loc := e.Location
	if loc == "" {
		loc = "no Location"
	} else {
		loc = "Location " + loc
	}
	return fmt.Sprintf("redirected with status %d (%s); redirects are not followed", e.Status, loc)
}

// IsRedirect reports whether err is (or wraps) a *RedirectError.
func IsRedirect(err error) bool {
	var re *RedirectError
	return errors.As(err, &re)
}

// redirectError describes resp, a 3xx answer.
func redirectError(resp *http.Response) *RedirectError {
	e := &RedirectError{Status: resp.StatusCode}
	raw := resp.Header.Get("Location")
	if raw == "" {
		return e
	}
	loc := raw
	if u, err := resp.Location(); err == nil {
		loc = u.Redacted()
	} else if strings.Contains(raw, "@") {
		loc = "(unparsable, not shown: it may hold credentials)"
	}
	loc = strings.ToValidUTF8(loc, "\uFFFD")
	if len(loc) > maxLocation {
		loc = strings.ToValidUTF8(loc[:maxLocation], "") + "…"
	}
	e.Location = loc
	return e
}

package cxone

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"
)

// Every answer CXone can give maps to the class the outcome policy expects.
func TestClassify(t *testing.T) {
	t.Parallel()
	live := context.Background()
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []struct {
		name   string
		status int
		err    error
		parent context.Context
		want   Class
	}{
		{"200", 200, nil, live, Accepted},
		{"202", 202, nil, live, Accepted},
		{"400", 400, nil, live, Rejected},
		{"404", 404, nil, live, Rejected},
		{"409", 409, nil, live, Rejected},
		{"413", 413, nil, live, Rejected},
		{"422", 422, nil, live, Rejected},
		{"401", 401, nil, live, Unauthorized},
		{"403", 403, nil, live, Forbidden},
		{"429", 429, nil, live, RateLimited},
		{"500", 500, nil, live, ServerError},
		{"502", 502, nil, live, ServerError},
		{"503", 503, nil, live, ServerError},
		{"504", 504, nil, live, ServerError},
		{"301", 301, nil, live, Redirect},
		{"302", 302, nil, live, Redirect},
		{"303", 303, nil, live, Redirect},
		{"307", 307, nil, live, Redirect},
		{"308", 308, nil, live, Redirect},
		{"304", 304, nil, live, Redirect},
		{"1xx", 103, nil, live, ServerError},
		{"attempt deadline", 0, fmt.Errorf("post: %w", context.DeadlineExceeded), live, Timeout},
		{"net timeout", 0, &net.OpError{Op: "dial", Err: timeoutErr{}}, live, Timeout},
		{"connection refused", 0, &net.OpError{Op: "dial", Err: errors.New("connection refused")}, live, NetworkError},
		{"caller gone", 0, context.Canceled, ended, Canceled},
		{"caller gone beats deadline", 0, context.DeadlineExceeded, ended, Canceled},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.status, tc.err, tc.parent); got != tc.want {
				t.Fatalf("Classify(%d, %v) = %s, want %s", tc.status, tc.err, got, tc.want)
			}
		})
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// Retry-After is read as seconds and as an HTTP date.
func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1", time.Second, true},
		{" 120 ", 2 * time.Minute, true},
		{"0", 0, true},
		{"1.5", 1500 * time.Millisecond, true},
		{now.Add(3 * time.Second).Format(http.TimeFormat), 3 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"Sat, 28 Nov 2026 12:00:10 GMT", 10 * time.Second, true},
		{"99999999999", 24 * time.Hour, true},
		{"", 0, false},
		{"-1", 0, false},
		{"NaN", 0, false},
		{"soon", 0, false},
	}
	for _, tc := range cases {
		got, ok := ParseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"1", "Sat, 28 Nov 2026 12:00:10 GMT", "-1", "1e400", "NaN", "Inf"} {
		f.Add(s)
	}
	now := time.Now()
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := ParseRetryAfter(s, now)
		if d < 0 || d > 24*time.Hour || (!ok && d != 0) {
			t.Fatalf("ParseRetryAfter(%q) = %v, %v", s, d, ok)
		}
	})
}

// Package retry holds the waits of every retry loop: exponential backoff
// with jitter, jitter alone, and a sleep that ends with its context.
package retry

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is the wait before retry number n (1 for the first retry):
// min(base·2^(n-1) + U(0, base), max) — the tutorial's min(2^attempt +
// U(0,1), 30 s) with base 1 s.
func Backoff(n int, base, maxWait time.Duration) time.Duration {
	if n < 1 {
		n = 1
	}
	d := base << min(n-1, 30)
	if d <= 0 || d > maxWait { // overflow or past the cap
		d = maxWait
	}
	d += time.Duration(rand.Int64N(int64(base) + 1))
	return min(d, maxWait)
}

// Jitter stretches d by up to frac (0.1 = up to 10 % longer), so that
// callers told to wait the same time do not all return at once.
func Jitter(d time.Duration, frac float64) time.Duration {
	if d <= 0 || frac <= 0 {
		return d
	}
	return d + time.Duration(rand.Float64()*frac*float64(d))
}

// Sleep waits d or until ctx ends, whichever is first, and returns ctx.Err()
// when ctx ended (also when d ≤ 0).
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

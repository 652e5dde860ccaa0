// Package retry holds the waits of every retry loop: exponential backoff
// with jitter, jitter alone, and a sleep that ends with its context.
package retry

import (
	"context"
	"errors"
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

// Policy is one retry loop's schedule: the wait before retry n is
// Backoff(n, Base, Max). MaxAttempts bounds the attempts (0: until the
// operation succeeds, gives up, or the context ends).
type Policy struct {
	Base, Max   time.Duration
	MaxAttempts int
	// OnRetry, when set, is told each failure that will be retried, the
	// attempt that failed (1 for the first) and the wait before the next.
	OnRetry func(attempt int, err error, wait time.Duration)
}

// Wait is the wait before retry n (1 for the first retry).
func (p Policy) Wait(n int) time.Duration { return Backoff(n, p.Base, p.Max) }

// permanent marks an error that no retry can mend.
type permanent struct{ err error }

func (e permanent) Error() string { return e.err.Error() }
func (e permanent) Unwrap() error { return e.err }

// Permanent wraps err so that Do returns it at once instead of retrying.
// Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// Do calls op (attempt 1, 2, …) until it returns nil, returns an error
// wrapped by Permanent (Do returns the error inside), has had MaxAttempts
// attempts (Do returns the last error), or ctx ends between attempts (Do
// returns ctx's error joined with the last error, so both errors.Is).
func Do(ctx context.Context, p Policy, op func(attempt int) error) error {
	for attempt := 1; ; attempt++ {
		err := op(attempt)
		if err == nil {
			return nil
		}
		if perm, ok := err.(permanent); ok {
			return perm.err
		}
		if p.MaxAttempts > 0 && attempt >= p.MaxAttempts {
			return err
		}
		wait := p.Wait(attempt)
		if p.OnRetry != nil {
			p.OnRetry(attempt, err, wait)
		}
		if cerr := Sleep(ctx, wait); cerr != nil {
			return errors.Join(cerr, err)
		}
	}
}

package retry

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// Waits double from the base, carry up to one base of jitter, and stop at the cap.
func TestBackoffGrowsAndIsCapped(t *testing.T) {
	t.Parallel()
	base, capd := 100*time.Millisecond, 2*time.Second
	for range 200 {
		for n := 1; n <= 8; n++ {
			d := Backoff(n, base, capd)
			lo := min(base<<(n-1), capd)
			hi := min(lo+base, capd)
			if d < lo || d > hi {
				t.Fatalf("Backoff(%d) = %v, want in [%v, %v]", n, d, lo, hi)
			}
		}
	}
	if d := Backoff(1000, time.Second, 30*time.Second); d != 30*time.Second {
		t.Fatalf("huge n: %v", d)
	}
}

// Jitter only lengthens, by at most the fraction.
func TestJitter(t *testing.T) {
	t.Parallel()
	for range 1000 {
		d := Jitter(time.Second, 0.1)
		if d < time.Second || d > 1100*time.Millisecond {
			t.Fatalf("Jitter = %v", d)
		}
	}
	if Jitter(0, 0.1) != 0 {
		t.Fatal("Jitter(0)")
	}
}

// Do retries until success, with the policy's waits between attempts.
func TestDoRetriesUntilSuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var waits []time.Duration
		p := Policy{Base: 100 * time.Millisecond, Max: time.Second,
			OnRetry: func(_ int, _ error, wait time.Duration) { waits = append(waits, wait) }}
		start := time.Now()
		calls := 0
		err := Do(t.Context(), p, func(attempt int) error {
			calls++
			if attempt != calls {
				t.Fatalf("attempt %d on call %d", attempt, calls)
			}
			if attempt < 4 {
				return errors.New("not yet")
			}
			return nil
		})
		if err != nil || calls != 4 || len(waits) != 3 {
			t.Fatalf("err %v, calls %d, waits %v", err, calls, waits)
		}
		var sum time.Duration
		for _, w := range waits {
			sum += w
		}
		if got := time.Since(start); got != sum {
			t.Fatalf("Do took %v, its waits add to %v", got, sum)
		}
	})
}

// A permanent error ends Do at once and comes back unwrapped; MaxAttempts
// bounds the attempts; a context that ends stops the waiting.
func TestDoStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bad := errors.New("bad credentials")
		calls := 0
		err := Do(t.Context(), Policy{Base: time.Second, Max: time.Second}, func(int) error {
			calls++
			return Permanent(bad)
		})
		if err != bad || calls != 1 {
			t.Fatalf("permanent: err %v, calls %d", err, calls)
		}

		flaky := errors.New("flaky")
		calls = 0
		err = Do(t.Context(), Policy{Base: time.Second, Max: time.Second, MaxAttempts: 3}, func(int) error {
			calls++
			return flaky
		})
		if err != flaky || calls != 3 {
			t.Fatalf("max attempts: err %v, calls %d", err, calls)
		}

		ctx, cancel := context.WithTimeout(t.Context(), 2500*time.Millisecond)
		defer cancel()
		calls = 0
		err = Do(ctx, Policy{Base: time.Second, Max: time.Second}, func(int) error {
			calls++
			return flaky
		})
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, flaky) {
			t.Fatalf("ctx: err %v", err)
		}
		if calls < 2 || calls > 3 {
			t.Fatalf("ctx: %d calls in 2.5 s at ~1 s waits", calls)
		}
		if Permanent(nil) != nil {
			t.Fatal("Permanent(nil) is not nil")
		}
	})
}

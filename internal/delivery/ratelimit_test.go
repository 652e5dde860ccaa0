package delivery

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// Without a configured limit: none until a 429, then half of what CXone
// accepted in the last second, doubling each second until the next 429,
// then climbing, and dropped once far above the rate CXone refused.
func TestDiscoveredLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newDiscoveredLimit()
		if a.rate() != 0 {
			t.Fatalf("rate %v before any 429, want none", a.rate())
		}
		for range 1000 { // no limit: never waits
			if err := a.wait(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		for range 100 {
			a.up()
		}
		t0 := time.Now()
		a.down(t0)
		if a.rate() != 50 {
			t.Fatalf("rate %v after a 429 with 100 accepted that second, want 50", a.rate())
		}
		a.down(t0.Add(maxReserve / 2)) // sent under the old rate: says nothing
		if a.rate() != 50 {
			t.Fatalf("rate %v after a 429 to an attempt admitted before the halving, want 50", a.rate())
		}
		time.Sleep(time.Second)
		a.up()
		if a.rate() != 101 {
			t.Fatalf("rate %v a second later, want 101 (slow start doubles)", a.rate())
		}
		time.Sleep(time.Second)
		a.down(time.Now())
		if a.rate() != 50.5 {
			t.Fatalf("rate %v after the next 429, want 50.5", a.rate())
		}
		// No 429 any more: it climbs ever faster and is dropped at 4 × 101.
		var secs int
		for a.rate() > 0 {
			time.Sleep(time.Second)
			a.up()
			if secs++; secs > 30 {
				t.Fatalf("still limited to %v after %d s without a 429", a.rate(), secs)
			}
		}
		if secs < 3 || secs > 8 {
			t.Fatalf("dropped after %d s without a 429, want 3–8", secs)
		}
		t.Logf("dropped %d s after the last 429", secs)
	})
}

// A waiter queued behind a low rate is let through soon after the rate
// rises: it never holds a reservation made at the old rate for long.
func TestLimitWaitFollowsRateChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newDiscoveredLimit()
		a.down(time.Now()) // engaged at the floor: 1 per second
		ctx := context.Background()
		done := make(chan time.Duration, 50)
		start := time.Now()
		for range 50 {
			go func() {
				if err := a.wait(ctx); err != nil {
					t.Error(err)
				}
				done <- time.Since(start)
			}()
		}
		time.Sleep(time.Second)
		a.mu.Lock()
		a.current = 1000
		a.set()
		a.mu.Unlock()
		var last time.Duration
		for range 50 {
			last = max(last, <-done)
		}
		if last > time.Second+2*maxReserve {
			t.Fatalf("the last of 50 waiters went %v after the start, want within %v of the rate rising at 1s", last, 2*maxReserve)
		}
	})
}

package delivery

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// heldBack marks the limit as holding publishers back (as wait does when a
// publisher must wait) and counts an accepted publish every 100 ms for d.
func heldBack(a *adaptiveLimit, d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); {
		time.Sleep(stepEvery)
		a.waited.Store(true)
		a.up()
	}
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// Without a configured limit: none until a 429, then what CXone accepted
// in the last second, doubling each second until the next 429, which
// halves it; then back to the rate of that 429 along a curve that
// flattens out near it, and beyond it only slowly at first.
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
		if a.rate() != 100 {
			t.Fatalf("rate %v after a 429 with 100 accepted that second, want 100", a.rate())
		}
		a.down(t0.Add(maxReserve / 2)) // sent under the old rate: says nothing
		if a.rate() != 100 {
			t.Fatalf("rate %v after a 429 to an attempt admitted before the decrease, want 100", a.rate())
		}
		heldBack(a, 2*time.Second)
		if r := a.rate(); r < 399 || r > 401 {
			t.Fatalf("rate %v after 2 s of slow start from 100, want 400 (doubling each second)", r)
		}
		a.down(time.Now())
		if r := a.rate(); r < 199 || r > 201 {
			t.Fatalf("rate %v after a 429 ending the slow start at 400, want half of it", r)
		}
		// Back to 400 in slowExitK seconds, most of the way in the first third.
		heldBack(a, secs(slowExitK/3))
		if r := a.rate(); r < 330 || r > 360 {
			t.Fatalf("rate %v a third of the way back to 400 from 200, want 330–360 (steep at first)", r)
		}
		heldBack(a, secs(slowExitK*2/3))
		if r := a.rate(); r < 398 || r > 401 {
			t.Fatalf("rate %v %v s after the slow start ended, want back at 400", r, slowExitK)
		}
		// A 429 at the peak: a twentieth off, back in approachK, flat near it.
		a.down(time.Now())
		if r := a.rate(); r < 379 || r > 381 {
			t.Fatalf("rate %v after a 429 at 400, want 380", r)
		}
		heldBack(a, secs(approachK-5))
		if r := a.rate(); r < 399 || r > 400 {
			t.Fatalf("rate %v %v s after the 429, want just under 400", r, approachK-5)
		}
		heldBack(a, secs(5+0.4*probeTau)) // beyond the peak: slowly at first
		if r := a.rate(); r < 400 || r > 400*1.03 {
			t.Fatalf("rate %v %v s beyond the peak, want at most 3 %% above it", r, 0.4*probeTau)
		}
		// Then ever faster: 25 % beyond it after τ·(ln 1.25)^¼ (48 s), and
		// from there, still without a 429, the quota has moved: the slow
		// start again.
		var beyond time.Duration
		for a.rate() <= 400*reslowAt {
			heldBack(a, stepEvery)
			if beyond += stepEvery; beyond > 2*time.Minute {
				t.Fatalf("rate %v 2 min beyond the peak", a.rate())
			}
		}
		if want := secs(probeTau * math.Pow(math.Log(reslowAt), 0.25)); beyond < want-2*time.Second-secs(0.4*probeTau) || beyond > want+time.Second-secs(0.4*probeTau) {
			t.Fatalf("25 %% beyond the peak %v after the first %v s beyond it, want %v", beyond, 0.4*probeTau, want-secs(0.4*probeTau))
		}
		r0 := a.rate()
		heldBack(a, 2*time.Second)
		if r := a.rate(); r < 3.9*r0 || r > 4.1*r0 {
			t.Fatalf("rate %v 2 s after passing %v, want 4 × (the slow start again)", r, r0)
		}
		a.down(time.Now())
		if a.slow || a.peak < 3.9*r0 {
			t.Fatalf("slow start %v, peak %v after a 429: want the slow start ended at the refused rate", a.slow, a.peak)
		}
		// Refused below the last peak: the quota shrank, and so does the peak.
		r0 = a.rate()
		a.down(time.Now())
		heldBack(a, 5*time.Second)
		r1 := a.rate()
		a.down(time.Now())
		if a.peak >= r1 || a.peak <= r1*beta {
			t.Fatalf("peak %v after a 429 at %v, below the last peak %v: want between %v and %v", a.peak, r1, r0, r1*beta, r1)
		}
	})
}

// Time counts only while the limit holds publishers back: a worker with
// little to send never climbs to a limit it has not tried.
func TestDiscoveredLimitRisesOnlyWhenItHoldsBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newDiscoveredLimit()
		for range 100 {
			a.up()
		}
		a.down(time.Now()) // slow start at 100/s
		for range 60 {     // 60 s of 10 publishes a second, never held
			for range 10 {
				time.Sleep(100 * time.Millisecond)
				if err := a.wait(context.Background()); err != nil {
					t.Fatal(err)
				}
				a.up()
			}
		}
		if r := a.rate(); r != 100 {
			t.Fatalf("rate %v after a minute at a tenth of it, want 100 unchanged", r)
		}
		// Publishers held back: it rises again.
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				for a.wait(ctx) == nil {
					a.up()
				}
			})
		}
		time.Sleep(time.Second)
		cancel()
		wg.Wait()
		if r := a.rate(); r < 180 {
			t.Fatalf("rate %v after a second of 50 publishers held back in slow start, want about 200", r)
		}
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

// --rate-limit is the group's: a member allows its share of it, a 429
// halves that, and it recovers up to the share, not beyond; the rate is
// the one waiters actually get.
func TestConfiguredLimitShare(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newAdaptiveLimit(300)
		if r := a.rate(); r != 300 {
			t.Fatalf("rate %v before any share is known, want all of 300", r)
		}
		a.setShare(2.0 / 6)
		if r := a.rate(); r != 100 {
			t.Fatalf("rate %v with 2 of 6 partitions, want 100", r)
		}
		if got := attemptsIn(a, 10*time.Second); got < 990 || got > 1010 {
			t.Fatalf("%d attempts allowed in 10 s at a share of 100/s, want about 1000", got)
		}
		a.down(time.Now())
		if r := a.rate(); r != 50 {
			t.Fatalf("rate %v after a 429, want half the share: 50", r)
		}
		a.setShare(3.0 / 6) // a rebalance while lowered: lowered as much within the new share
		if r := a.rate(); r != 75 {
			t.Fatalf("rate %v with 3 of 6 partitions after the 429, want 75 (half of 150)", r)
		}
		for range 30 {
			time.Sleep(time.Second)
			a.up()
		}
		if r := a.rate(); r != 150 {
			t.Fatalf("rate %v 30 s after the 429, want recovered to the share, 150", r)
		}
		a.setShare(1)
		if r := a.rate(); r != 300 {
			t.Fatalf("rate %v holding every partition, want all of 300", r)
		}
		a.setShare(0)
		if r := a.rate(); r != 0.5 {
			t.Fatalf("rate %v holding nothing, want the least there is, 0.5", r)
		}
		a.setShare(1.0 / 6)
		if r := a.rate(); r != 50 {
			t.Fatalf("rate %v with 1 of 6 partitions after holding none, want 50", r)
		}
		a.down(time.Now().Add(time.Second))
		a.down(time.Now().Add(2 * time.Second))
		a.down(time.Now().Add(3 * time.Second))
		a.down(time.Now().Add(4 * time.Second))
		a.down(time.Now().Add(5 * time.Second))
		if r := a.rate(); r != 2.5 {
			t.Fatalf("rate %v after many 429s at a share of 50, want the floor, a twentieth: 2.5", r)
		}
	})
}

// attemptsIn counts the attempts a's waiters are let through in d, with
// 20 waiters always waiting.
func attemptsIn(a *adaptiveLimit, d time.Duration) int {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var n atomic.Int64
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			for a.wait(ctx) == nil {
				n.Add(1)
			}
		})
	}
	wg.Wait()
	return int(n.Load())
}

// A limit found from 429s is scaled by the change of share at a
// rebalance: what was found for the partitions held before is spread over
// those held now. Before any 429 there is nothing to scale.
func TestDiscoveredLimitShare(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newDiscoveredLimit()
		a.setShare(0.5)
		if r := a.rate(); r != 0 {
			t.Fatalf("rate %v before any 429, want none", r)
		}
		for range 120 {
			a.up()
		}
		a.down(time.Now()) // slow start at 120 while holding half the partitions
		heldBack(a, time.Second)
		a.down(time.Now()) // ends at 120, peak 240
		if r := a.rate(); r < 119 || r > 121 {
			t.Fatalf("rate %v, want 120", r)
		}
		a.setShare(1.0 / 6) // 3 → 1 of 6 partitions
		if r := a.rate(); r < 39 || r > 41 {
			t.Fatalf("rate %v after going from 3 to 1 of 6 partitions, want a third: 40", r)
		}
		if a.peak < 79 || a.peak > 81 {
			t.Fatalf("peak %v, want a third of 240", a.peak)
		}
		a.setShare(0) // holds nothing: kept as it was
		a.setShare(2.0 / 6)
		if r := a.rate(); r < 79 || r > 81 {
			t.Fatalf("rate %v after holding nothing, then 2 of 6 partitions, want twice the 40 of 1: 80", r)
		}
	})
}

// A member that got less of what the group settled than its part of the
// backlog raises its limit found from 429s, one that got more lowers it:
// half way, by at most 4 × a step (4 × when it got nothing through). A
// configured limit, or one not found yet, is left alone.
func TestDiscoveredLimitBalance(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newAdaptiveLimit(100)
		c.balance(0.5, 0.1)
		if r := c.rate(); r != 100 {
			t.Fatalf("configured rate %v after a balance, want 100 unchanged", r)
		}
		a := newDiscoveredLimit()
		a.balance(0.5, 0.1)
		if r := a.rate(); r != 0 {
			t.Fatalf("rate %v after a balance before any 429, want none", r)
		}
		for range 200 {
			a.up()
		}
		a.down(time.Now())
		a.balance(0.5, 0.1)
		if r := a.rate(); r != 200 {
			t.Fatalf("rate %v after a balance in the slow start, want 200 unchanged", r)
		}
		heldBack(a, time.Second)
		a.down(time.Now()) // 400 drew a 429: 200, peak 400
		check := func(part, got, want, wantPeak float64) {
			t.Helper()
			a.balance(part, got)
			if r := a.rate(); math.Abs(r-want) > 0.01 || math.Abs(a.peak-wantPeak) > 0.01 {
				t.Fatalf("balance(%v, %v): rate %v, peak %v; want %v, %v", part, got, r, a.peak, want, wantPeak)
			}
		}
		check(1.0/3, 1.0/3, 200, 400)  // got its part: unchanged
		check(0.34, 0.33, 200, 400)    // within 3 %: unchanged
		check(0.5, 0.4, 225, 450)      // got 0.4 of 0.5: half way to 1.25 ×
		check(0.5, 0.1, 225*3, 450*3)  // got a fifth of its part: half way to 5 ×
		check(0.9, 0.1, 675*4, 1350*4) // got a ninth of its part: 4 × at most
		check(0.2, 0.3, 2700*(1+0.2/0.3)/2, 5400*(1+0.2/0.3)/2)
		check(0, 0.9, 2250*0.5, 4500*0.5) // none of the backlog left: half way to none
		check(0, 0, 1125, 2250)           // neither backlog nor commits: unchanged
		check(0.3, 0, 1125*4, 2250*4)     // got nothing through of its part: 4 ×
	})
}

// accepting holds publishers back and counts perSec/10 accepted publishes
// every 100 ms for d.
func accepting(a *adaptiveLimit, perSec int, d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); {
		time.Sleep(stepEvery)
		for range max(perSec/10, 1) {
			a.waited.Store(true)
			a.up()
		}
	}
}

// throttled429 is a 429 as a storm brings it: the 429 gate held
// everything for a second, then CXone took one publish and refused the
// next.
func throttled429(a *adaptiveLimit) {
	time.Sleep(time.Second)
	a.up()
	time.Sleep(100 * time.Millisecond)
	a.down(time.Now())
}

// A limit that engaged before anything got through (the first 429 came
// with nothing accepted in the last second, as when a worker starts into a
// throttle, or CXone refuses everything for a while) stays in its slow
// start at its starting rate through further 429s after which still
// nothing got through, and doubles from there each second once CXone takes
// publishes again. Before, the second 429 ended the slow start with its
// starting rate (2/s) as the peak, and the limit stayed near it for over a
// minute: a draining worker could not publish what it held before its
// shutdown timeout.
func TestDiscoveredLimitEngagedBeforeAnythingGotThrough(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newDiscoveredLimit()
		a.down(time.Now())
		if r := a.rate(); r != 2 {
			t.Fatalf("rate %v after a first 429 with nothing accepted, want 2", r)
		}
		for i := range 10 { // the gate opens each second, and CXone refuses again
			time.Sleep(time.Second)
			a.down(time.Now())
			if r := a.rate(); r != 2 {
				t.Fatalf("rate %v after 429 %d with nothing through, want 2 still", r, i+2)
			}
		}
		heldBack(a, 6*time.Second+stepEvery/2)
		if r := a.rate(); r < 100 {
			t.Fatalf("rate %v 6 s after CXone took publishes again, want ≥ 100 (2 doubled each second)", r)
		}
		a.down(time.Now()) // now something got through: the slow start ends as ever
		if !(a.peak > 100 && !a.slow) {
			t.Fatalf("after a 429 with publishes through: peak %v slow %v, want the slow start ended at its rate", a.peak, a.slow)
		}
	})
}

// A throttle (CXone's quota far below the limit, as in a 429 storm) is
// told apart from a quota the limit sits just under by what got through
// between two 429s. 429s after which a tenth of the limit got through (a
// quota twice over) take a twentieth each, as ever; three in a row after
// which almost nothing did are a throttle, and halve it from then on.
// Once no 429 has come for 1.5–4.5 s the limit goes back to what CXone
// took in a second before the throttle, in 2 s; holds it (the quota was
// found before the throttle) for another quiet 1.5–4.5 s; then goes
// beyond it in a slow start, and a 429 there puts it back where it was.
func TestDiscoveredLimitThrottle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newDiscoveredLimit()
		accepting(a, 200, time.Second)
		a.down(time.Now()) // slow start at 200
		accepting(a, 400, time.Second)
		a.down(time.Now()) // ends at 200, peak 400
		accepting(a, 400, secs(slowExitK+2))
		if r := a.rate(); r < 399 || r > 401 {
			t.Fatalf("rate %v, want back at the peak of 400", r)
		}
		// A quota twice over: 40 accepted in the 0.1 s after each gate.
		for i := range 3 {
			time.Sleep(time.Second)
			accepting(a, 400, 100*time.Millisecond)
			r := a.rate()
			a.down(time.Now())
			if got, want := a.rate(), r*beta; math.Abs(got-want) > 0.01 || a.resume != 0 {
				t.Fatalf("rate %v, throttle %v after 429 %d at %v with a tenth of the limit through since the one before, want %v, none", got, a.resume, i+1, r, want)
			}
		}
		accepting(a, 400, 30*time.Second) // back at the peak
		// A storm: its first 429 comes after the traffic before it (a
		// twentieth off, as ever), then one publish gets through between
		// two 429s.
		r0 := a.rate()
		a.down(time.Now())
		throttled429(a)
		throttled429(a)
		if r, want := a.rate(), r0*beta*beta*beta; math.Abs(r-want) > 1 || a.resume != 0 {
			t.Fatalf("rate %v, throttle %v after two 429s with nothing through, want %v, none yet", r, a.resume, want)
		}
		throttled429(a)
		if r, want := a.rate(), r0*beta*beta*beta/2; math.Abs(r-want) > 1 {
			t.Fatalf("rate %v after the third, want halved: %v", r, want)
		}
		// What CXone took in a second before the throttle (400), faded by a
		// twentieth for each second since.
		if a.resume < 320 || a.resume > 400 {
			t.Fatalf("the rate to go back to %v, want what CXone took before the throttle: 320–400", a.resume)
		}
		resume := a.resume
		throttled429(a)
		throttled429(a)
		if r, want := a.rate(), r0*beta*beta*beta/8; math.Abs(r-want) > 1 {
			t.Fatalf("rate %v after two more, want halved twice: %v", r, want)
		}
		// The storm is over: back to the rate before it within 4.5 + 2 s.
		low := a.rate()
		var took time.Duration
		for !a.returned {
			accepting(a, int(low), stepEvery)
			if took += stepEvery; took > secs(1.5*quietMin+returnK+0.5) {
				t.Fatalf("rate %v %v after the last 429, want back at %v", a.rate(), took, resume)
			}
		}
		if took < secs(0.5*quietMin+returnK) {
			t.Fatalf("back at the rate before the throttle %v after the last 429, want after at least %v s", took, 0.5*quietMin+returnK)
		}
		if r := a.rate(); math.Abs(r-resume) > 1 || math.Abs(a.peak-resume) > 0.01 {
			t.Fatalf("rate %v, peak %v, want both back at %v", r, a.peak, resume)
		}
		// Held for 1.5–4.5 s without a 429, then beyond.
		took = 0
		for !a.slow {
			accepting(a, int(resume), stepEvery)
			if took += stepEvery; took > secs(1.5*quietMin+0.5) {
				t.Fatalf("rate %v held %v, want a slow start beyond it after at most %v s", a.rate(), took, 1.5*quietMin)
			}
		}
		accepting(a, int(resume), time.Second)
		if r := a.rate(); r < 1.8*resume {
			t.Fatalf("rate %v a second into the slow start beyond %v, want about twice it", r, resume)
		}
		a.down(time.Now()) // the quota is back where it was
		if r := a.rate(); math.Abs(r-resume) > 1 || math.Abs(a.peak-resume) > 0.01 || a.resume != 0 || a.slow {
			t.Fatalf("rate %v, peak %v, throttle %v, slow %v after a 429 beyond it, want %v, %v, none, no", r, a.peak, a.resume, a.slow, resume, resume)
		}
	})
}

// In a throttle, a return refused well below the rate before it says the
// throttle is not over: the next waits twice as long, and after maxFails
// the quota is taken as shrunk for good. One refused near it ends the
// throttle with the peak at the rate before it.
func TestDiscoveredLimitThrottleNotOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		throttle := func() *adaptiveLimit {
			a := newDiscoveredLimit()
			accepting(a, 200, time.Second)
			a.down(time.Now())
			accepting(a, 400, time.Second)
			a.down(time.Now())
			accepting(a, 400, secs(slowExitK+2))
			for range thinRun + 2 {
				throttled429(a)
			}
			if a.resume == 0 {
				t.Fatal("no throttle after five 429s with nothing through")
			}
			return a
		}
		returning := func(a *adaptiveLimit) {
			t.Helper()
			for took := time.Duration(0); !a.returning; took += stepEvery {
				if took > secs(1.5*quietMin*math.Exp2(float64(a.fails))+0.5) {
					t.Fatalf("no return %v after the last 429, fails %d", took, a.fails)
				}
				accepting(a, int(a.rate()), stepEvery)
			}
			accepting(a, int(a.rate()), 500*time.Millisecond)
		}
		a := throttle()
		resume := a.resume
		for fails := 1; fails <= maxFails; fails++ {
			returning(a)
			if a.rate() >= backShare*resume {
				t.Fatalf("rate %v half a second into the return, want below %v", a.rate(), backShare*resume)
			}
			a.down(time.Now())
			if fails < maxFails && (a.fails != fails || a.resume != resume || a.quiet < quietMin*math.Exp2(float64(fails))/2 || a.quiet > quietMin*math.Exp2(float64(fails))*1.5) {
				t.Fatalf("after %d returns refused: fails %d, throttle %v, quiet %.1f s; want %d, %v, %v s ± 50 %%", fails, a.fails, a.resume, a.quiet, fails, resume, quietMin*math.Exp2(float64(fails)))
			}
		}
		if a.resume != 0 || a.returning || a.returned {
			t.Fatalf("throttle %v, returning %v, returned %v after %d returns refused, want over: the quota shrank", a.resume, a.returning, a.returned, maxFails)
		}
		a = throttle()
		resume = a.resume
		returning(a)
		for a.rate() < backShare*resume {
			accepting(a, int(a.rate()), stepEvery)
		}
		r := a.rate()
		a.down(time.Now())
		if a.resume != 0 || math.Abs(a.peak-max(r, resume)) > 0.01 || math.Abs(a.rate()-r*beta) > 0.01 {
			t.Fatalf("throttle %v, peak %v, rate %v after a return refused at %v (%v before the throttle), want over, %v, %v", a.resume, a.peak, a.rate(), r, resume, max(r, resume), r*beta)
		}
	})
}

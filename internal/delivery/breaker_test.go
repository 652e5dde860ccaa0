package delivery_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/cxbridge/cxbridge/internal/cxone"
	"github.com/cxbridge/cxbridge/internal/delivery"
	"github.com/cxbridge/cxbridge/internal/event"
	"github.com/cxbridge/cxbridge/internal/retry"
)

// The breaker's open period is jittered: at the shipped defaults, on the
// fake clock, CXone answers 503 to everything while three records wait,
// and the breaker opens and reopens (each failed probe) 1,000 times. Each
// open period — from the report of the opening to the report of the
// half-open state, and so the next probe — lasts from ½ to 1½ of
// --breaker-open-timeout, never less, spread over that whole range (not a
// fixed period that a periodic fault can keep in step with); nothing is
// sent while it lasts and the breaker reports itself open throughout; the
// records spend nothing (they are still waiting when the test ends).
func TestBreakerOpenPeriodJittered(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const opens, bins = 1000, 10
		cfg := shippedConfig(t)
		floor, ceil := cfg.Breaker.OpenTimeout/2, cfg.Breaker.OpenTimeout*3/2

		type change struct {
			at       time.Time
			from, to gobreaker.State
		}
		var (
			mu       sync.Mutex
			changes  []change
			attempts []time.Time
		)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		cfg.Hooks.BreakerState = func(from, to gobreaker.State) {
			mu.Lock()
			defer mu.Unlock()
			changes = append(changes, change{time.Now(), from, to})
			n := 0
			for _, c := range changes {
				if c.to == gobreaker.StateOpen {
					n++
				}
			}
			if n > opens {
				cancel()
			}
		}
		send := senderFunc(func(ctx context.Context, ev *event.Event) cxone.Result {
			mu.Lock()
			attempts = append(attempts, time.Now())
			mu.Unlock()
			if err := retry.Sleep(ctx, 20*time.Millisecond); err != nil {
				return cxone.Result{Class: cxone.Canceled, Err: err}
			}
			return cxone.Result{Class: cxone.ServerError, Status: 503}
		})
		pub := delivery.New(cfg, send, staticTokens{})

		// The state as reported, sampled every 100 ms.
		type sample struct {
			at    time.Time
			state gobreaker.State
		}
		var samples []sample
		var wg sync.WaitGroup
		wg.Go(func() {
			for ctx.Err() == nil {
				samples = append(samples, sample{time.Now(), pub.BreakerState()})
				_ = retry.Sleep(ctx, 100*time.Millisecond)
			}
		})
		outs := make([]delivery.Outcome, 3)
		for i := range outs {
			wg.Go(func() { outs[i] = pub.Publish(ctx, &event.Event{CorrelationID: fmt.Sprint("r", i)}) })
		}
		wg.Wait()

		for i, out := range outs {
			if out.Result != delivery.Canceled {
				t.Errorf("r%d: %s after %d attempts, want it still waiting (canceled)", i, out.Label(), out.Attempts)
			}
		}
		// The open periods: each opening to the next change, which must be
		// to half-open (nothing else can end an open period).
		var periods []time.Duration
		type span struct{ from, to time.Time }
		var open []span
		for i, c := range changes {
			if c.to != gobreaker.StateOpen || i+1 == len(changes) {
				continue
			}
			next := changes[i+1]
			if next.to != gobreaker.StateHalfOpen {
				t.Fatalf("change %d: %s → %s after an opening, want half-open", i+1, next.from, next.to)
			}
			periods = append(periods, next.at.Sub(c.at))
			open = append(open, span{c.at, next.at})
		}
		if len(periods) < opens {
			t.Fatalf("%d open periods, want %d (changes %d)", len(periods), opens, len(changes))
		}
		hist := make([]int, bins)
		var sum time.Duration
		lo, hi := periods[0], periods[0]
		for i, d := range periods {
			if d < floor || d >= ceil {
				t.Fatalf("open period %d lasted %v, want within [%v, %v)", i, d, floor, ceil)
			}
			hist[int(d-floor)*bins/int(ceil-floor)]++
			sum += d
			lo, hi = min(lo, d), max(hi, d)
		}
		mean := sum / time.Duration(len(periods))
		t.Logf("%d open periods at --breaker-open-timeout %v: %v to %v, mean %v; per tenth of [%v, %v): %v",
			len(periods), cfg.Breaker.OpenTimeout, lo, hi, mean, floor, ceil, hist)
		// Uniform over the range: each tenth holds 100 on average (σ ≈ 9.5);
		// fewer than 50 is 5σ off (p < 10⁻⁶), as is a mean 5 % off the
		// setting (σ of the mean ≈ 0.9 % of it).
		for b, n := range hist {
			if n < len(periods)/bins/2 {
				t.Errorf("open periods not spread over the range: %d of %d in its tenth %d (%v)", n, len(periods), b, hist)
			}
		}
		if d := mean - cfg.Breaker.OpenTimeout; d < -cfg.Breaker.OpenTimeout/20 || d > cfg.Breaker.OpenTimeout/20 {
			t.Errorf("mean open period %v, want %v ± 5 %%", mean, cfg.Breaker.OpenTimeout)
		}
		// Nothing sent, and open reported, inside an open period.
		in := func(at time.Time) bool {
			for _, s := range open {
				if at.After(s.from) && at.Before(s.to) {
					return true
				}
			}
			return false
		}
		for _, at := range attempts {
			if in(at) {
				t.Fatalf("an attempt was sent during an open period, at %v", at)
			}
		}
		checked := 0
		for _, s := range samples {
			if in(s.at) {
				checked++
				if s.state != gobreaker.StateOpen {
					t.Fatalf("breaker state %s during an open period, at %v", s.state, s.at)
				}
			}
		}
		if checked < len(periods) {
			t.Errorf("only %d state samples inside open periods", checked)
		}
	})
}

type senderFunc func(ctx context.Context, ev *event.Event) cxone.Result

func (f senderFunc) Attempt(ctx context.Context, _ string, ev *event.Event, _ []byte) cxone.Result {
	return f(ctx, ev)
}

// The breaker's probes cannot keep in step with a periodic fault: at the
// shipped defaults, on the fake clock, CXone flaps for 6 minutes — down
// half of each period, up the other half — with a period of 1, 1.5 and 2
// times --breaker-open-timeout, while a record arrives every 100 ms; at
// least half of the records that arrived in the first 5 minutes are
// accepted before the flapping ends. The old fixed open period (10 s, with
// a period of 10 s: 1×) sent every probe into a down phase: none was.
//
// With the jittered period, less than half needs no probe to succeed for
// the last 3½ minutes or so, some 28 probes or more (each comes at most
// 1½ × the setting after the last). At the period of the setting each
// probe lands at a uniformly random phase (the open period's range is one
// period wide): it fails with probability ~0.51 (down, or up too late for
// its 20 ms answer), whatever happened before, so P < 0.51²⁸ ≈ 10⁻⁸; at
// twice it a flap cycle has no successful probe with probability ≤ ~1/8
// (see itest TestFlappingOutage), so P < (1/8)²¹; in between, likewise.
func TestBreakerProbesDoNotLockWithFlapping(t *testing.T) {
	t.Parallel()
	for _, periods := range []float64{1, 1.5, 2} {
		t.Run(fmt.Sprint(periods, "x"), func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				const flapFor, every = 6 * time.Minute, 100 * time.Millisecond
				cfg := shippedConfig(t)
				period := time.Duration(periods * float64(cfg.Breaker.OpenTimeout))
				f := &fakeCXone{start: time.Now(), latency: 20 * time.Millisecond, attempts: map[string]int{},
					answer: func(at time.Duration, _ string) cxone.Class {
						if at < flapFor && at%period < period/2 {
							return cxone.ServerError
						}
						return cxone.Accepted
					}}
				pub := delivery.New(cfg, f, staticTokens{})
				ctx, cancel := context.WithTimeout(context.Background(), 24*time.Hour)
				defer cancel()
				n := int(flapFor / every)
				outs := make([]delivery.Outcome, n)
				var wg sync.WaitGroup
				for i := range n {
					wg.Go(func() {
						time.Sleep(time.Duration(i) * every)
						outs[i] = pub.Publish(ctx, &event.Event{CorrelationID: fmt.Sprint("f", i)})
					})
				}
				wg.Wait()
				early, during := int((flapFor-time.Minute)/every), 0
				end := f.start.Add(flapFor)
				for i, out := range outs {
					if out.Result != delivery.Accepted {
						t.Fatalf("f%d: %s after %d attempts, want accepted", i, out.Label(), out.Attempts)
					}
					if i < early && out.LastAttempt.Before(end) {
						during++
					}
				}
				t.Logf("flap period %v (%v × --breaker-open-timeout): %d of the %d records of the first %v accepted during the flapping",
					period, periods, during, early, flapFor-time.Minute)
				if during < early/2 {
					t.Errorf("%d of %d records accepted while CXone flapped, want at least half: the probes keep missing the up phases", during, early)
				}
			})
		})
	}
}
